//! Between the escalation state machine (`domain::escalation`) and the world: which policy
//! an alert follows, who a step names right now, what a page row means as a state, and the
//! side effects (hang-ups, texts, the exhausted flag).

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Engine;
use crate::config::file::{Directory, Person};
use crate::domain::alert::{Alert, AlertStatus};
use crate::domain::call::CallRecord;
use crate::domain::escalation::{self, Action, Ahead, Event, Phase, Policy, State, Step, Target};
use crate::store::{AuditEvent, AuditKind, LiveCall, Page, PageState, PageUpdate, StoreError};

/// The policy an alert follows: the one it started with (kept across reloads), else the
/// first that matches.
pub(super) fn policy_for<'a>(
    directory: &'a Directory,
    page: &Page,
    alert: &Alert,
) -> Option<&'a Policy> {
    page.policy
        .as_deref()
        .and_then(|name| directory.policies.iter().find(|p| p.name == name))
        .or_else(|| escalation::choose(&directory.policies, alert))
}

/// A page row as an escalation state. A page being processed is due, so its time is `now`.
pub(super) fn state_of(page: &Page, now: DateTime<Utc>) -> State {
    let phase = match page.state {
        PageState::Due => Phase::Due,
        PageState::Waiting => Phase::Waiting { until: now },
        PageState::Exhausted => Phase::Exhausted { next: now },
        PageState::Acknowledged => Phase::Acknowledged,
        PageState::Cancelled | PageState::Failed | PageState::Stale => Phase::Cancelled,
    };
    State {
        step: page.step.max(0) as usize,
        round: page.round.max(0) as u32,
        phase,
    }
}

/// An escalation state as a page row.
pub(super) fn update_of(policy: &Policy, state: State, now: DateTime<Utc>) -> PageUpdate {
    let (page_state, due_at) = match state.phase {
        Phase::Due => (PageState::Due, Some(now)),
        Phase::Waiting { until } => (PageState::Waiting, Some(until)),
        Phase::Exhausted { next } => (PageState::Exhausted, Some(next)),
        Phase::Acknowledged => (PageState::Acknowledged, None),
        Phase::Cancelled => (PageState::Cancelled, None),
    };
    PageUpdate {
        state: page_state,
        step: state.step as i32,
        round: state.round as i32,
        policy: Some(policy.name.clone()),
        due_at,
        attempts: 0,
        last_error: None,
    }
}

/// Everyone a step's targets name at `now`, each once, in order.
pub(super) fn people(directory: &Directory, targets: &[Target], now: DateTime<Utc>) -> Vec<Person> {
    let at = jiff::Timestamp::from_millisecond(now.timestamp_millis()).unwrap_or_default();
    crate::domain::escalation::target_ids(targets, &directory.schedules, at)
        .into_iter()
        .filter_map(|id| directory.staff.get(&id).cloned())
        .collect()
}

/// Hangs up every call of the alert still ringing or in progress.
pub(super) async fn hang_up_live(engine: &Engine, alert_id: &str) -> Result<(), StoreError> {
    let live: Vec<LiveCall> = engine
        .store
        .list_calls(Some(alert_id), 100)
        .await?
        .into_iter()
        .filter(|c| !c.status.is_terminal())
        .filter_map(|c| {
            Some(LiveCall {
                id: c.id.to_string(),
                provider_call_id: c.provider_call_id?,
            })
        })
        .collect();
    hang_up(engine, alert_id, &live).await
}

/// How far back the sweep looks for calls that may still be in a conference (a call lasts at
/// most its length timer, minutes).
const CONFERENCE_HORIZON: chrono::Duration = chrono::Duration::hours(2);

/// Our ids of the alert's calls that joined its responders' conference.
async fn conference_calls(
    engine: &Engine,
    alert_id: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    Ok(engine
        .store
        .list_calls(Some(alert_id), 100)
        .await?
        .into_iter()
        .filter(|c| c.conference_joined_at.is_some())
        .map(|c| c.id.to_string())
        .collect())
}

/// The responders' conference ends with the alert: when it is resolved or otherwise closed
/// (or gone). An acknowledgement alone leaves the responders talking.
pub(super) fn conference_over(alert: Option<&Alert>) -> bool {
    !alert.is_some_and(|a| matches!(a.status, AlertStatus::Active | AlertStatus::Acknowledged))
}

/// Hangs up these calls (someone acknowledged, or the alert was resolved). Each call is
/// hung up once, however many paths (webhook, dispatcher, instances) ask for it. Calls in the
/// alert's responders' conference are left on until the alert is closed.
pub(super) async fn hang_up(
    engine: &Engine,
    alert_id: &str,
    calls: &[LiveCall],
) -> Result<(), StoreError> {
    if calls.is_empty() {
        return Ok(());
    }
    let mut keep = conference_calls(engine, alert_id).await?;
    if !keep.is_empty() && conference_over(engine.store.load_alert(alert_id).await?.as_ref()) {
        keep.clear();
    }
    for call in calls.iter().filter(|c| !keep.contains(&c.id)) {
        let provider_call_id = call.provider_call_id.as_str();
        let first = engine
            .store
            .record_event(&AuditEvent {
                alert_id: Some(alert_id.to_string()),
                call_id: uuid::Uuid::parse_str(&call.id).ok(),
                source: "engine".into(),
                kind: AuditKind::CallHungUp,
                dedupe_key: Some(format!("hangup:{provider_call_id}")),
                detail: json!({"provider_call_id": provider_call_id}),
                at: engine.now(),
            })
            .await?;
        if !first {
            continue;
        }
        match engine.provider.hang_up(provider_call_id).await {
            Ok(()) => {
                tracing::info!(
                    alert_id,
                    call_id = provider_call_id,
                    "hung up: the alert no longer needs this call"
                )
            }
            Err(e) => {
                engine
                    .metrics
                    .provider_error(engine.provider.name(), "hang_up");
                tracing::warn!(alert_id, call_id = provider_call_id, error = %e, "could not hang up a call")
            }
        }
    }
    Ok(())
}

impl Engine {
    /// Ends the responders' conference of every alert closed since someone joined it: its
    /// calls are hung up. Runs with the sweep, because a resolution after an acknowledgement
    /// wakes no page.
    pub(super) async fn end_conferences(&self) -> Result<(), StoreError> {
        let since = self.now() - CONFERENCE_HORIZON;
        for alert_id in self.store.alerts_in_conference(since).await? {
            if !conference_over(self.store.load_alert(&alert_id).await?.as_ref()) {
                continue;
            }
            let members = conference_calls(self, &alert_id).await?;
            let live: Vec<LiveCall> = self
                .store
                .list_calls(Some(&alert_id), 100)
                .await?
                .into_iter()
                .filter(|c| !c.status.is_terminal() && members.contains(&c.id.to_string()))
                .filter_map(|c| {
                    Some(LiveCall {
                        id: c.id.to_string(),
                        provider_call_id: c.provider_call_id?,
                    })
                })
                .collect();
            if live.is_empty() {
                continue;
            }
            let first = self
                .store
                .record_event(&AuditEvent {
                    alert_id: Some(alert_id.clone()),
                    call_id: None,
                    source: "engine".into(),
                    kind: AuditKind::ConferenceEnded,
                    dedupe_key: Some(format!("conference-ended:{alert_id}")),
                    detail: json!({"conference": crate::domain::menu::conference_name(&alert_id), "calls": live.len()}),
                    at: self.now(),
                })
                .await?;
            if first {
                tracing::info!(
                    alert_id,
                    calls = live.len(),
                    "the alert is closed: ending its responders' conference"
                );
            }
            hang_up(self, &alert_id, &live).await?;
        }
        Ok(())
    }
}

/// How long a reply to a text can acknowledge its alert.
const REPLY_WINDOW: chrono::Duration = chrono::Duration::hours(2);

/// Texts a person about the alert (a step's SMS channel, or the fallback when their call did
/// not get through), with a code a reply may carry.
pub(super) async fn sms_fallback(
    engine: &Engine,
    alert: &Alert,
    person: &str,
) -> Result<(), StoreError> {
    let number = engine
        .directory()
        .staff
        .get(person)
        .and_then(|p| p.sms.clone());
    text(engine, alert, person, number, "").await
}

/// Texts `number` (or records that `person` has none) about the alert, `prefix` first.
async fn text(
    engine: &Engine,
    alert: &Alert,
    person: &str,
    number: Option<crate::domain::phone::Phone>,
    prefix: &str,
) -> Result<(), StoreError> {
    let now = engine.now();
    let audit = |kind: AuditKind, detail: serde_json::Value| AuditEvent {
        alert_id: Some(alert.id.clone()),
        call_id: None,
        source: "engine".into(),
        kind,
        dedupe_key: None,
        detail,
        at: now,
    };
    let Some(number) = number else {
        return engine
            .store
            .record_event(&audit(
                AuditKind::SmsNotSent,
                json!({"person": person, "reason": "no sms number"}),
            ))
            .await
            .map(|_| ());
    };
    let code = format!("{:04}", fastrand::u16(0..10000));
    // Never invite a reply that would be refused (SMS-reply acknowledgement still off).
    let replies = crate::telephony::webhook_token::sms_reply_ack(&engine.config, &engine.store)
        .await
        .unwrap_or(false);
    let ask = if replies {
        "Reply 1 to acknowledge"
    } else {
        "Answer the call or use the dashboard to acknowledge"
    };
    let text = format!(
        "{prefix}{} {ask} (ref {code}).",
        crate::domain::message::announcement(alert, &engine.messages())
    );
    let id = uuid::Uuid::new_v4();
    engine
        .store
        .create_sms(&crate::store::NewSms {
            id,
            alert_id: alert.id.clone(),
            person: Some(person.to_string()),
            to_number: number.e164().to_string(),
            code,
            provider: engine.provider.name().into(),
            body: text.clone(),
            at: now,
        })
        .await?;
    let request = crate::telephony::SmsRequest {
        to: number.clone(),
        text,
        client_ref: id.simple().to_string(),
        patient_name: crate::domain::message::patient_name(alert),
    };
    match engine.provider.send_sms(&request).await {
        Ok(message_id) => {
            engine.metrics.sms(engine.provider.name(), "sent");
            tracing::info!(alert_id = %alert.id, person, to = %number.masked(), "SMS sent");
            engine
                .store
                .sms_sent(id, Some(&message_id), "submitted", now)
                .await?;
            engine
                .store
                .record_event(&audit(
                    AuditKind::SmsSent,
                    json!({"person": person, "message_id": message_id}),
                ))
                .await?;
        }
        Err(e) => {
            engine.metrics.sms(engine.provider.name(), "error");
            engine.metrics.provider_error(engine.provider.name(), "sms");
            tracing::error!(alert_id = %alert.id, person, error = %e, "SMS could not be sent");
            engine.store.sms_sent(id, None, "failed", now).await?;
            engine
                .store
                .record_event(&audit(
                    AuditKind::SmsFailed,
                    json!({"person": person, "error": e.to_string()}),
                ))
                .await?;
        }
    }
    Ok(())
}

/// Calls and texts the fallback contact (`[hospital] fallback`, `ALERTCALL_FALLBACK_PHONE`)
/// about an alert nobody is being reached about. The call is an ordinary call: its "press 1"
/// acknowledges the alert.
///
/// `again`: `None` for the first time (called and texted), `Some(n)` for the n-th call again
/// after calls nobody picked up (`reach::fallback_again`; called only, the text was sent).
/// `said`: whether "nobody to tell" was already logged for this alert (a later try of the
/// first time, e.g. once someone is on shift on an `oncall:` fallback).
pub(super) async fn notify_fallback(
    engine: &std::sync::Arc<Engine>,
    alert: &Alert,
    unreached: &crate::domain::reach::Unreached,
    again: Option<usize>,
    said: bool,
) -> Result<(), StoreError> {
    let directory = engine.directory();
    let people = people(&directory, &directory.fallback, engine.now());
    if people.is_empty() {
        if !said {
            tracing::error!(alert_id = %alert.id, "no fallback contact to tell: set [hospital] fallback in alertcall.toml or ALERTCALL_FALLBACK_PHONE");
        }
        return Ok(());
    }
    let reason = unreached.reason.as_str();
    let first = engine
        .store
        .record_event(&AuditEvent {
            alert_id: Some(alert.id.clone()),
            call_id: None,
            source: "engine".into(),
            kind: AuditKind::FallbackNotified,
            dedupe_key: Some(match again {
                None => format!("fallback:{}:{reason}", alert.id),
                Some(n) => format!("fallback:{}:{reason}:{n}", alert.id),
            }),
            detail: json!({"reason": reason, "again": again, "people": people.iter().map(|p| &p.id).collect::<Vec<_>>()}),
            at: engine.now(),
        })
        .await?;
    if !first {
        return Ok(());
    }
    let prefix = format!("NOBODY REACHED: {} ", unreached.message);
    for person in &people {
        if let Some(n) = again {
            tracing::warn!(alert_id = %alert.id, person = %person.id, reason, call = n + 1, "nobody picked up the fallback contact's call: calling again");
        } else {
            tracing::warn!(alert_id = %alert.id, person = %person.id, reason, "calling and texting the fallback contact");
        }
        if let Some(phone) = &person.phone {
            super::dispatch::call_fallback(engine, alert, person, phone).await?;
        }
        if again.is_none() {
            let number = person.sms.clone().or_else(|| person.phone.clone());
            text(engine, alert, &person.id, number, &prefix).await?;
        }
    }
    Ok(())
}

impl Engine {
    /// A text from a nurse: "1" (optionally with the ref from our text) acknowledges the
    /// newest alert texted to that number. Returns the acknowledged alert's id.
    pub async fn handle_inbound_sms(
        &self,
        from: &str,
        text: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = self.now();
        let number = if from.starts_with('+') {
            from.to_string()
        } else {
            format!("+{from}")
        };
        let Ok(phone) = crate::domain::phone::Phone::parse(&number) else {
            tracing::warn!("inbound SMS from something that is not a phone number; ignored");
            return Ok(None);
        };
        let mut words = text.split_whitespace();
        if words.next() != Some("1") {
            tracing::info!(from = %phone.masked(), "inbound SMS is not a 1; ignored");
            return Ok(None);
        }
        let code: Option<String> = words
            .map(|w| w.chars().filter(char::is_ascii_digit).collect::<String>())
            .find(|w| w.len() == 4);
        let Some(sms) = self
            .store
            .sms_for_reply(phone.e164(), code.as_deref(), now - REPLY_WINDOW)
            .await?
        else {
            tracing::warn!(from = %phone.masked(), "a 1 by SMS from a number we did not text recently; ignored");
            return Ok(None);
        };
        let by = crate::domain::alert::Acknowledger::named("sms", phone.e164());
        if self.acknowledge_as(&sms.alert_id, &by, "sms").await?
            != crate::store::AckOutcome::Acknowledged
        {
            return Ok(None);
        }
        Ok(Some(sms.alert_id))
    }

    /// A delivery receipt for a text.
    pub async fn handle_sms_status(
        &self,
        message_id: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let Some(sms) = self.store.sms_status(message_id, status, now).await? else {
            tracing::warn!(
                message_id,
                "delivery receipt for an unknown message; ignored"
            );
            return Ok(());
        };
        if matches!(status, "rejected" | "undeliverable" | "failed") {
            tracing::error!(alert_id = %sms.alert_id, status, "an SMS was not delivered");
        }
        self.store
            .record_event(&AuditEvent {
                alert_id: Some(sms.alert_id.clone()),
                call_id: None,
                source: self.provider.name().into(),
                kind: AuditKind::sms_receipt(status),
                dedupe_key: Some(format!("sms:{message_id}:{status}")),
                detail: json!({"message_id": message_id}),
                at: now,
            })
            .await
            .map(|_| ())
    }
}

/// The policy ran out: flag the alert loudly (logs, metadata, audit trail).
pub(super) async fn mark_exhausted(
    engine: &Engine,
    alert: &Alert,
    policy: &Policy,
) -> Result<(), StoreError> {
    tracing::error!(
        alert_id = %alert.id,
        policy = %policy.name,
        "ESCALATION EXHAUSTED: nobody acknowledged this critical alert; the last step will be called again every {:?}",
        policy.renotify_every
    );
    let now = engine.now();
    let mut tx = engine.store.call_tx().await?;
    tx.flag_alert(
        &alert.id,
        "escalation",
        &json!({"status": "exhausted", "policy": policy.name, "at": crate::domain::call::rfc3339(now)}),
    )
    .await?;
    let first = tx
        .record(&AuditEvent {
            alert_id: Some(alert.id.clone()),
            call_id: None,
            source: "engine".into(),
            kind: AuditKind::EscalationExhausted,
            dedupe_key: Some(format!("exhausted:{}", alert.id)),
            detail: json!({"policy": policy.name}),
            at: now,
        })
        .await?;
    tx.commit().await?;
    if first {
        engine.metrics.escalation_exhausted();
    }
    Ok(())
}

impl Engine {
    /// Feeds a call's outcome (unsuccessful end, decline) into its alert's escalation, and
    /// says what happens next (without an event, or for a call no longer of the current step:
    /// what happens next as things stand). A step to notify is left to the dispatcher (the
    /// page becomes due now), so webhooks never place calls themselves.
    pub(super) async fn escalation_event(
        &self,
        call: &CallRecord,
        event: Option<Event>,
    ) -> Result<Ahead<Person>, StoreError> {
        let now = self.now();
        let Some(alert) = self.store.load_alert(&call.alert_id).await? else {
            return Ok(Ahead::Over);
        };
        let directory = self.directory();
        let reach = |step: &Step| reachable(&directory, step, now);
        let mut tx = self.store.call_tx().await?;
        let Some(page) = tx.page(&call.alert_id).await? else {
            tx.commit().await?;
            return Ok(Ahead::Over);
        };
        let Some(policy) = policy_for(&directory, &page, &alert) else {
            tx.commit().await?;
            return Ok(Ahead::Over);
        };
        let due = page.due_at.unwrap_or(now);
        let mut state = state_of(&page, now);
        state.phase = match state.phase {
            Phase::Waiting { .. } => Phase::Waiting { until: due },
            Phase::Exhausted { .. } => Phase::Exhausted { next: due },
            other => other,
        };
        // Only the current step's calls move the escalation; a late end of an earlier
        // step's call changes nothing.
        let current = page.step == call.step && page.round == call.round;
        let Some(event) = event.filter(|_| current) else {
            tx.commit().await?;
            return Ok(settled(
                &alert,
                escalation::ahead(policy, state, &[], now, reach),
            ));
        };
        // A `due` page at this call's step is being notified right now (the call exists):
        // for this event it is already waiting. Moving it on releases the lease, so the
        // notifier's own "waiting" write is dropped instead of undoing this.
        if page.state == PageState::Due {
            state.phase = Phase::Waiting { until: due };
        }
        let (next, actions) = escalation::next(policy, state, &event, now);
        let ahead = escalation::ahead(policy, next, &actions, now, reach);
        let mut after_commit = Vec::new();
        let mut next_state = next;
        for action in actions {
            match action {
                // The dispatcher notifies: make the new step due now.
                Action::Notify { step, round } => {
                    next_state = State {
                        step,
                        round,
                        phase: Phase::Due,
                    };
                }
                other => after_commit.push(other),
            }
        }
        if next_state != state {
            let update = update_of(policy, next_state, now);
            tx.set_page(&call.alert_id, &update, now).await?;
            tx.record(&AuditEvent {
                alert_id: Some(call.alert_id.clone()),
                call_id: Some(call.id),
                source: "engine".into(),
                kind: AuditKind::Page(update.state),
                dedupe_key: None,
                detail: json!({"reason": event_name(&event), "step": update.step, "round": update.round, "policy": update.policy}),
                at: now,
            })
            .await?;
        }
        tx.commit().await?;
        self.wake();
        for action in after_commit {
            match action {
                Action::SmsFallback { person } => sms_fallback(self, &alert, &person).await?,
                Action::HangUpAll => hang_up_live(self, &alert.id).await?,
                Action::MarkExhausted => mark_exhausted(self, &alert, policy).await?,
                Action::Notify { .. } => {}
            }
        }
        Ok(settled(&alert, ahead))
    }
}

/// An alert closed elsewhere ends its escalation whatever its page still says.
fn settled(alert: &Alert, ahead: Ahead<Person>) -> Ahead<Person> {
    if alert.status.needs_paging() {
        ahead
    } else {
        Ahead::Over
    }
}

/// The people a step reaches at `now`, as the dispatcher notifies them: by phone, or every
/// one of them on a step that only texts.
pub(super) fn reachable(directory: &Directory, step: &Step, now: DateTime<Utc>) -> Vec<Person> {
    people(directory, &step.targets, now)
        .into_iter()
        .filter(|p| (step.sms && !step.call) || p.phone.is_some())
        .collect()
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Timer => "wait expired",
        Event::CallUnsuccessful { .. } => "call not answered",
        Event::Declined { .. } => "declined (pressed 3)",
        Event::Acknowledged => "acknowledged",
        Event::ResolvedElsewhere => "resolved elsewhere",
    }
}
