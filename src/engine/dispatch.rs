//! Claiming due pages and acting on them with the escalation state machine: notify a step,
//! move on when a wait runs out, flag an exhausted policy. Every outcome is written back to
//! the page with its next due time, so a restart resumes exactly where the last process
//! stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use std::collections::VecDeque;

use super::{Engine, escalate};
use crate::config::file::Person;
use crate::domain::alert::{Alert, AlertStatus};
use crate::domain::call::CallEventKind;
use crate::domain::escalation::{self, Action, Event, Policy};
use crate::domain::menu;
use crate::domain::message;
use crate::domain::phone::Phone;
use crate::store::{
    AuditEvent, AuditKind, Lease, NewCall, Page, PageOutcome, PageState, PageUpdate,
};
use crate::telephony::{CallRequest, ProviderError};

/// The longest the dispatcher sleeps without looking at the database.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// After a refusal of our credentials, try again this often (someone must fix them).
const CONFIG_RETRY: Duration = Duration::from_secs(60);

pub(super) async fn run(engine: Arc<Engine>) {
    // The heartbeat asks whether this loop ran in its interval: go round at least twice in it.
    let max_idle = MAX_IDLE.min(engine.config.heartbeat_every / 2);
    loop {
        engine.dispatch_looped();
        let claimed = claim(&engine).await;
        if claimed > 0 && engine.in_flight.available_permits() > 0 {
            continue;
        }
        let sleep = match engine.store.next_due_at().await {
            Ok(Some(due)) => (due - engine.now()).to_std().unwrap_or(Duration::ZERO),
            Ok(None) => max_idle,
            Err(_) => max_idle,
        }
        .clamp(
            Duration::from_millis(5),
            max_idle.max(Duration::from_millis(5)),
        );
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = engine.wake.notified() => {}
        }
    }
}

async fn claim(engine: &Arc<Engine>) -> usize {
    let free = engine.in_flight.available_permits();
    if free == 0 {
        return 0;
    }
    let lease = Lease::new(&engine.owner, engine.now(), engine.config.lease);
    match engine.store.claim_due(&lease, free as i64).await {
        Ok(pages) => {
            engine.set_database_ok(true);
            if !pages.is_empty() {
                engine.stored();
            }
            let n = pages.len();
            for page in pages {
                spawn_page(engine.clone(), page, lease.clone());
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not claim due work; will retry");
            engine.database_failed(&e);
            0
        }
    }
}

/// Works on one claimed page in its own task.
pub(super) fn spawn_page(engine: Arc<Engine>, page: Page, lease: Lease) {
    let lock = engine
        .working
        .lock()
        .expect("working lock")
        .entry(page.alert_id.clone())
        .or_default()
        .clone();
    tokio::spawn(async move {
        let alert_id = page.alert_id.clone();
        let (guard, page) = match lock.clone().try_lock_owned() {
            Ok(guard) => (guard, Some(page)),
            Err(_) => {
                // This process was still working on the alert when the page was claimed
                // again (a webhook moved the escalation on, or a lease ran out while queued):
                // act once that work is done, and only if the claim is still ours then.
                let guard = lock.clone().lock_owned().await;
                let current = engine.store.owned_page(&alert_id, &lease.owner).await;
                (guard, current.ok().flatten())
            }
        };
        if let Some(page) = page
            && let Ok(_permit) = engine.in_flight.clone().acquire_owned().await
        {
            match work(&engine, &page, &lease).await {
                Ok(()) => engine.stored(),
                Err(e) => {
                    // The lease runs out and the page is retried, by this or another instance.
                    engine.metrics.database_error();
                    engine.store_failed(&e);
                    tracing::warn!(alert_id = %page.alert_id, error = %e, "could not process alert; it will be retried");
                }
            }
        }
        drop(guard);
        let mut working = engine.working.lock().expect("working lock");
        // Nobody else waits for this alert's lock (the map and `lock` hold the only two).
        if working
            .get(&alert_id)
            .is_some_and(|l| Arc::strong_count(l) == 2)
        {
            working.remove(&alert_id);
        }
        drop(lock);
    });
}

async fn work(
    engine: &Arc<Engine>,
    page: &Page,
    lease: &Lease,
) -> Result<(), crate::store::StoreError> {
    let now = engine.now();
    let Some(alert) = engine.store.load_alert(&page.alert_id).await? else {
        return finish(
            engine,
            page,
            lease,
            PageState::Cancelled,
            None,
            "alert deleted",
        )
        .await;
    };
    let first_attempt =
        page.state == PageState::Due && page.step == 0 && page.round == 0 && page.attempts == 0;
    if let Some(raw) = &alert.unreadable_triggered_at
        && first_attempt
    {
        tracing::error!(
            alert_id = ?alert.id,
            triggered_at = %raw,
            first_seen = %alert.triggered_at,
            "alerts.triggered_at cannot be read: calling anyway, timed from when alertcall first saw the alert"
        );
    }
    let directory = engine.directory();
    let Some(policy) = escalate::policy_for(&directory, page, &alert) else {
        tracing::error!(alert_id = %alert.id, "NO ESCALATION POLICY matches this alert: nobody can be called; add one to alertcall.toml");
        return finish(
            engine,
            page,
            lease,
            PageState::Failed,
            None,
            "no policy matches",
        )
        .await;
    };
    let state = escalate::state_of(page, now);
    if !alert.status.needs_paging() {
        escalate::hang_up_live(engine, &alert.id).await?;
        let state = match alert.status {
            AlertStatus::Acknowledged => PageState::Acknowledged,
            _ => PageState::Cancelled,
        };
        return finish(engine, page, lease, state, None, "alert no longer active").await;
    }
    let (mut next, actions) = escalation::next(policy, state, &Event::Timer, now);
    let mut pending: VecDeque<Action> = actions.into();
    // Each step notified here can only move the state forward; the bound is a safety net.
    let mut budget = 4 * (policy.steps.len() + 1) * policy.rounds.max(1) as usize;
    while let Some(action) = pending.pop_front() {
        budget = budget.saturating_sub(1);
        if budget == 0 {
            break;
        }
        match action {
            Action::Notify { step, round } => {
                match notify(engine, page, lease, &alert, policy, step, round).await? {
                    Notified::Retry { due, reason } => {
                        // Nobody could be reached because of the provider: this step, later.
                        let again = page.state == PageState::Due && page.step == step as i32;
                        let update = PageUpdate {
                            state: PageState::Due,
                            step: step as i32,
                            round: round as i32,
                            policy: Some(policy.name.clone()),
                            due_at: Some(due),
                            attempts: if again { page.attempts + 1 } else { 1 },
                            last_error: Some(reason.clone()),
                        };
                        let outcome = outcome(engine, page, lease, update, &reason);
                        let updated = engine.store.finish_page(&outcome, &[]).await?;
                        wake_for(engine, &outcome, updated);
                        return Ok(());
                    }
                    Notified::Placed {
                        placed,
                        unreachable,
                    } => {
                        // The wait counts from when the step's calls went out, not from
                        // when the work on it began.
                        if let escalation::Phase::Waiting { until } = next.phase {
                            let spent = engine.now() - now;
                            next.phase = escalation::Phase::Waiting {
                                until: until + spent,
                            };
                        }
                        for person in unreachable {
                            let can_sms = directory
                                .staff
                                .get(&person)
                                .is_some_and(|p| p.sms.is_some());
                            let event = Event::CallUnsuccessful {
                                person,
                                can_sms,
                                others_live: placed > 0,
                            };
                            let (after, more) = escalation::next(policy, next, &event, now);
                            next = after;
                            pending.extend(more);
                        }
                    }
                }
            }
            Action::SmsFallback { person } => {
                escalate::sms_fallback(engine, &alert, &person).await?
            }
            Action::HangUpAll => escalate::hang_up_live(engine, &alert.id).await?,
            Action::MarkExhausted => escalate::mark_exhausted(engine, &alert, policy).await?,
        }
    }
    let update = escalate::update_of(policy, next, now);
    let outcome = outcome(engine, page, lease, update, "escalation");
    let updated = engine.store.finish_page(&outcome, &[]).await?;
    wake_for(engine, &outcome, updated);
    Ok(())
}

/// The page's next state (releasing the lease) and, if it changes, the audit entry saying why.
fn outcome(
    engine: &Engine,
    page: &Page,
    lease: &Lease,
    update: PageUpdate,
    reason: &str,
) -> PageOutcome {
    let now = engine.now();
    let page_audit =
        (update.state != page.state || update.step != page.step || update.round != page.round)
            .then(|| AuditEvent {
                alert_id: Some(page.alert_id.clone()),
                call_id: None,
                source: "engine".into(),
                kind: AuditKind::Page(update.state),
                dedupe_key: None,
                detail: json!({"reason": reason, "step": update.step, "round": update.round, "policy": update.policy}),
                at: now,
            })
            .into_iter()
            .collect();
    PageOutcome {
        alert_id: page.alert_id.clone(),
        owner: lease.owner.clone(),
        update,
        page_audit,
        now,
    }
}

/// The dispatcher may be sleeping past a new due time.
pub(super) fn wake_for(engine: &Engine, outcome: &PageOutcome, updated: bool) {
    if updated && outcome.update.due_at.is_some() {
        engine.wake();
    }
}

/// Writes the page's next state at the same step (releasing the lease) and records why.
async fn finish(
    engine: &Engine,
    page: &Page,
    lease: &Lease,
    state: PageState,
    due_at: Option<DateTime<Utc>>,
    reason: &str,
) -> Result<(), crate::store::StoreError> {
    let retry = state == PageState::Due;
    let update = PageUpdate {
        state,
        step: page.step,
        round: page.round,
        policy: page.policy.clone(),
        due_at,
        attempts: if retry { page.attempts + 1 } else { 0 },
        last_error: retry.then(|| reason.to_string()),
    };
    let outcome = outcome(engine, page, lease, update, reason);
    let updated = engine.store.finish_page(&outcome, &[]).await?;
    wake_for(engine, &outcome, updated);
    Ok(())
}

/// What notifying a step came to.
enum Notified {
    /// `placed` calls are ringing; `unreachable` people could not be called at all.
    Placed {
        placed: usize,
        unreachable: Vec<String>,
    },
    /// No call went out because of the provider (configuration, rate limit, outage).
    Retry { due: DateTime<Utc>, reason: String },
}

/// Calls (and texts) everyone the step names.
async fn notify(
    engine: &Arc<Engine>,
    page: &Page,
    lease: &Lease,
    alert: &Alert,
    policy: &Policy,
    step: usize,
    round: u32,
) -> Result<Notified, crate::store::StoreError> {
    let directory = engine.directory();
    let now = engine.now();
    let Some(step_def) = policy.steps.get(step) else {
        return Ok(Notified::Placed {
            placed: 0,
            unreachable: vec![],
        });
    };
    let people = escalate::people(&directory, &step_def.targets, now);
    if people.is_empty() {
        tracing::error!(alert_id = %alert.id, policy = %policy.name, step, "this escalation step names nobody on call right now");
    }
    let mut placed = 0;
    let mut unreachable = Vec::new();
    let mut retry: Option<(Duration, String)> = None;
    for person in &people {
        if step_def.sms && !step_def.call {
            escalate::sms_fallback(engine, alert, &person.id).await?;
            placed += 1;
            continue;
        }
        let Some(phone) = person.phone.clone() else {
            unreachable.push(person.id.clone());
            continue;
        };
        let at = Position {
            policy: &policy.name,
            step: step as i32,
            round: round as i32,
            via: crate::domain::escalation::reached_through(
                &step_def.targets,
                &directory.schedules,
                jiff::Timestamp::from_millisecond(now.timestamp_millis()).unwrap_or_default(),
                &person.id,
            ),
        };
        match call_person(engine, Some((page, lease)), alert, person, &phone, at).await? {
            Called::Placed => placed += 1,
            Called::Unreachable => unreachable.push(person.id.clone()),
            Called::Later(wait, reason) => {
                retry = Some(retry.map_or((wait, reason.clone()), |(w, r)| (w.max(wait), r)));
            }
        }
    }
    if placed > 0 {
        engine.metrics.escalation_step();
    }
    match retry {
        Some((wait, reason)) if placed == 0 => Ok(Notified::Retry {
            due: engine.now() + chrono::Duration::from_std(wait).unwrap_or_default(),
            reason,
        }),
        _ => {
            if people.is_empty() {
                unreachable.push(String::new());
            }
            Ok(Notified::Placed {
                placed,
                unreachable,
            })
        }
    }
}

enum Called {
    Placed,
    /// This call can never go through (e.g. an invalid number).
    Unreachable,
    /// Try again after this long.
    Later(Duration, String),
}

/// Where in its escalation a call is placed.
#[derive(Clone)]
struct Position<'a> {
    policy: &'a str,
    step: i32,
    round: i32,
    /// The step's target that named the person (`oncall:icu`) and the shift they cover.
    via: Option<(String, Option<String>)>,
}

/// The policy and step recorded on a call to the fallback contact: no step of any policy, so
/// its end moves no escalation, while its "press 1" acknowledges like any call's.
const FALLBACK: Position<'static> = Position {
    policy: "fallback",
    step: -1,
    round: -1,
    via: None,
};

/// Whether `call` went to the fallback contact (not to a step of a policy).
pub(super) fn is_fallback(call: &crate::domain::call::CallRecord) -> bool {
    call.step == FALLBACK.step
}

/// Calls the fallback contact about an alert nobody is being reached about.
pub(super) async fn call_fallback(
    engine: &Arc<Engine>,
    alert: &Alert,
    person: &Person,
    to: &Phone,
) -> Result<(), crate::store::StoreError> {
    // Placed or not, the outcome is logged and recorded on the call; a call that fails or
    // that nobody picks up is made again by `reach::watch` (`domain::reach::fallback_again`).
    call_person(engine, None, alert, person, to, FALLBACK)
        .await
        .map(|_| ())
}

/// Places one call through the provider and records it. `claim`: the page and lease it is
/// placed under (none for the fallback contact).
async fn call_person(
    engine: &Arc<Engine>,
    claim: Option<(&Page, &Lease)>,
    alert: &Alert,
    person: &Person,
    to: &Phone,
    at: Position<'_>,
) -> Result<Called, crate::store::StoreError> {
    let Position {
        policy,
        step,
        round,
        via,
    } = at;
    let announcement = message::announcement(alert, &engine.messages());
    let call = engine
        .store
        .create_call(&NewCall {
            id: Uuid::new_v4(),
            alert_id: alert.id.clone(),
            provider: engine.provider.name().to_string(),
            to_number: to.e164().to_string(),
            message: announcement.clone(),
            step,
            round,
            person: Some(person.id.clone()),
            policy: policy.to_string(),
            at: engine.now(),
        })
        .await?;
    engine.limiter.acquire().await;
    // Waiting for a slot may have taken a while: make sure the page is still ours.
    if let Some((page, lease)) = claim
        && !still_ours(engine, page, lease).await?
    {
        tracing::info!(alert_id = %alert.id, "another instance took over this alert");
        engine
            .store
            .call_failed(
                call.id,
                "not placed: another instance took over",
                engine.now(),
                None,
                &[],
            )
            .await?;
        return Ok(Called::Later(Duration::ZERO, "taken over".into()));
    }
    let provider = engine.provider.name();
    let request = CallRequest {
        call_id: call.id,
        to: to.clone(),
        greeting: menu::announcement_prompt(&announcement, engine.menu_options(alert)),
        language: engine.language_for(Some(&person.id)),
        speech: engine.speech().0,
        patient_name: crate::domain::message::patient_name(alert),
    };
    let result = engine.provider.place_call(&request).await;
    engine
        .provider_health
        .record(provider, result.as_ref().map(|_| ()));
    let now = engine.now();
    match result {
        Ok(placed) => {
            let audit = AuditEvent::on_call(
                &call,
                "engine",
                AuditKind::CallPlaced,
                None,
                json!({"provider_call_id": placed.provider_call_id, "person": person.id, "step": step, "round": round,
                    "via": via.as_ref().map(|v| &v.0), "shift": via.as_ref().and_then(|v| v.1.as_ref())}),
                now,
            );
            engine
                .store
                .call_placed(call.id, &placed.provider_call_id, now, None, &[audit])
                .await?;
            engine.metrics.call_placed(provider, "placed");
            if step == 0 && round == 0 {
                engine
                    .metrics
                    .first_dial((now - alert.triggered_at).as_seconds_f64());
            }
            tracing::info!(
                alert_id = %alert.id,
                call_id = %placed.provider_call_id,
                person = %person.id,
                to = %to.masked(),
                step,
                provider,
                latency_ms = (now - alert.triggered_at).num_milliseconds(),
                "calling nurse"
            );
            Ok(Called::Placed)
        }
        Err(err) => {
            let audit = AuditEvent::on_call(
                &call,
                "engine",
                AuditKind::Call(CallEventKind::Failed),
                None,
                json!({"error": err.to_string(), "person": person.id}),
                now,
            );
            engine
                .store
                .call_failed(call.id, &err.to_string(), now, None, &[audit])
                .await?;
            let (result, kind) = match &err {
                ProviderError::Permanent(_) => ("refused", "permanent"),
                ProviderError::Config(_) => ("error", "configuration"),
                ProviderError::Transient { .. } => ("error", "transient"),
            };
            engine.metrics.call_placed(engine.provider.name(), result);
            engine.metrics.provider_error(engine.provider.name(), kind);
            Ok(match &err {
                ProviderError::Permanent(_) => {
                    tracing::error!(alert_id = %alert.id, to = %to.masked(), error = %err, "the provider refused this call for good");
                    Called::Unreachable
                }
                ProviderError::Config(_) => {
                    tracing::error!(alert_id = %alert.id, error = %err, "CANNOT PLACE CALLS: fix the provider configuration; retrying every minute");
                    Called::Later(CONFIG_RETRY, err.to_string())
                }
                ProviderError::Transient { retry_after, .. } => {
                    let attempts = claim.map_or(0, |(page, _)| page.attempts);
                    let wait = retry_delay(attempts, *retry_after, fastrand::f64());
                    tracing::warn!(alert_id = %alert.id, error = %err, retry_in = ?wait, "call failed; retrying");
                    Called::Later(wait, err.to_string())
                }
            })
        }
    }
}

/// Renews the lease when a good part of it went by; false when another instance took over.
async fn still_ours(
    engine: &Engine,
    page: &Page,
    lease: &Lease,
) -> Result<bool, crate::store::StoreError> {
    let renewed = lease.renewed(engine.now(), engine.config.lease);
    let quarter = chrono::Duration::from_std(engine.config.lease / 4).unwrap_or_default();
    Ok(renewed.now <= lease.now + quarter
        || engine.store.renew_lease(&page.alert_id, &renewed).await?)
}

/// Exponential back-off with jitter for a failed call: 0.5 s, 1 s, 2 s, ... capped at 30 s,
/// each scaled by 0.5–1.0 at random so instances do not retry in lockstep; a provider's
/// `Retry-After` is honoured (up to 5 minutes).
pub fn retry_delay(attempts: i32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(after) = retry_after {
        return after.min(Duration::from_secs(300));
    }
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_caps_and_honours_retry_after() {
        let d = |a, j| retry_delay(a, None, j);
        assert_eq!(d(0, 1.0), Duration::from_millis(500));
        assert_eq!(d(1, 1.0), Duration::from_secs(1));
        assert_eq!(d(3, 1.0), Duration::from_secs(4));
        assert_eq!(d(10, 1.0), Duration::from_secs(30));
        assert_eq!(d(1000, 0.0), Duration::from_secs(15));
        assert_eq!(d(0, 0.0), Duration::from_millis(250));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(9999)), 0.3),
            Duration::from_secs(300)
        );
    }
}
