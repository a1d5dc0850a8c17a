//! Applying what a provider reports about a call (status events and keypad input), from
//! webhooks or the simulator alike. Idempotent: a repeated delivery changes nothing.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::Engine;
use crate::config::file::Person;
use crate::domain::alert::Acknowledger;
use crate::domain::call::{AnsweredBy, CallEvent, CallRecord, CallStatus, InputEvent};
use crate::domain::escalation::{Ahead, Event, Target};
use crate::domain::intent::{self, SpeechResult, Understood, Via};
use crate::domain::menu::{self, MenuChoice, Reply};
use crate::domain::message::{self, DetailFacts, Response};
use crate::store::{AckAudit, AckOutcome, AuditEvent, AuditKind, CallMark, StoreError};

/// Where an event came from, for the audit trail and the dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A phone network, by its provider's name.
    Network(&'static str),
    Simulator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Network(name) => name,
            Source::Simulator => "simulator",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// Already seen, or older than what is recorded: nothing changed.
    NoChange,
    UnknownCall,
}

/// A menu choice and its audit entry.
struct Choice {
    audit: AuditEvent,
    understood: Understood,
}

/// Who answered the call, as far as machine detection has said.
enum Answerer {
    Known(AnsweredBy),
    /// No result yet; `held_before`: a spoken acknowledgement on this call was already held.
    Unknown {
        held_before: bool,
    },
}

/// The `menu.choice` detail key of a held spoken acknowledgement (its value: the input's
/// provider timestamp), for people reading the timeline.
const HELD: &str = "held_for_machine_detection";

impl Engine {
    /// Whether another call of the same step is still ringing or in progress.
    async fn others_live(&self, call: &CallRecord) -> Result<bool, StoreError> {
        Ok(self
            .store
            .list_calls(Some(&call.alert_id), 100)
            .await?
            .iter()
            .any(|c| {
                c.id != call.id
                    && c.step == call.step
                    && c.round == call.round
                    && !c.status.is_terminal()
            }))
    }

    /// The call an event is about. When the webhook's URL names our call (and, unsigned,
    /// proves it with that call's token), the event may act on that call only, whatever
    /// provider id its body claims.
    async fn find_call(
        &self,
        provider_call_id: &str,
        call_id: Option<uuid::Uuid>,
    ) -> Result<Option<CallRecord>, StoreError> {
        Ok(self
            .store
            .find_call(provider_call_id, call_id)
            .await?
            .filter(|call| call_id.is_none_or(|id| id == call.id)))
    }

    /// A call status event. The call's status only moves forward.
    pub async fn handle_call_event(
        &self,
        event: &CallEvent,
        source: Source,
    ) -> Result<EventOutcome, StoreError> {
        let now = self.now();
        let Some(call) = self
            .find_call(&event.provider_call_id, event.call_id)
            .await?
        else {
            if let Some(test) = self
                .find_test_call(&event.provider_call_id, event.call_id)
                .await?
            {
                return self.test_call_event(&test, event, source).await;
            }
            tracing::warn!(
                provider_call_id = %event.provider_call_id,
                status = event.kind.name(),
                "call event for an unknown call; ignored"
            );
            return Ok(EventOutcome::UnknownCall);
        };
        let audit = AuditEvent::on_call(
            &call,
            source.as_str(),
            AuditKind::Call(event.kind),
            Some(format!(
                "{}:{}:{}:{}",
                source.as_str(),
                event.provider_call_id,
                event.kind.name(),
                event.detail.as_deref().unwrap_or("")
            )),
            json!({
                "provider_call_id": event.provider_call_id,
                "detail": event.detail,
                "provider_time": event.at,
            }),
            now,
        );
        let changed = self
            .store
            .call_event(
                call.id,
                event.kind.status(),
                event.kind.answered_by(),
                &audit,
            )
            .await?;
        match changed {
            // An acknowledged call that ended only gets its end time.
            Some(updated) if updated.status == call.status => Ok(EventOutcome::Applied),
            Some(updated) => {
                if updated.status.is_terminal() {
                    self.metrics
                        .call_ended(&updated.provider, updated.status.as_str());
                }
                tracing::info!(
                    alert_id = %updated.alert_id,
                    call_id = %event.provider_call_id,
                    status = %updated.status,
                    "call status"
                );
                if updated.status.is_unsuccessful_end() {
                    // Busy, failed, unanswered, voicemail, or hung up without pressing 1.
                    let others_live = self.others_live(&updated).await?;
                    let can_sms = updated
                        .person
                        .as_ref()
                        .and_then(|p| self.directory().staff.get(p).map(|p| p.sms.is_some()))
                        .unwrap_or(false);
                    let event = Event::CallUnsuccessful {
                        person: updated.person.clone().unwrap_or_default(),
                        can_sms,
                        others_live,
                    };
                    self.escalation_event(&updated, Some(event)).await?;
                }
                Ok(EventOutcome::Applied)
            }
            None => Ok(EventOutcome::NoChange),
        }
    }

    /// A key press, a spoken answer or silence on the call menu; returns what the nurse
    /// hears next, and in which language.
    pub async fn handle_input(
        &self,
        input: &InputEvent,
        source: Source,
    ) -> Result<Turn, StoreError> {
        let now = self.now();
        let Some(call) = self
            .find_call(&input.provider_call_id, input.call_id)
            .await?
        else {
            if let Some(test) = self
                .find_test_call(&input.provider_call_id, input.call_id)
                .await?
            {
                return self.test_call_input(&test, input, source).await;
            }
            tracing::warn!(provider_call_id = %input.provider_call_id, "menu input for an unknown call; ignored");
            return Ok(Turn {
                reply: Reply::Say {
                    text: menu::UNKNOWN_CALL.into(),
                },
                language: self.language_for(None),
            });
        };
        let language = self.language_for(call.person.as_deref());
        let reply = self.answer(&call, input, source, now).await?;
        Ok(Turn { reply, language })
    }

    async fn answer(
        &self,
        call: &CallRecord,
        input: &InputEvent,
        source: Source,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let (speech_on, min_confidence) = self.speech();
        let speech: &[SpeechResult] = if speech_on { &input.speech } else { &[] };
        let mut understood = intent::understand(&input.digits, speech, min_confidence);
        let mut held = false;
        if understood.via == Via::Speech {
            // Voicemail never acknowledges: once the call is known to be a machine, what it
            // "says" is a greeting, not an answer.
            if call.status == CallStatus::Machine {
                understood.choice = MenuChoice::NotUnderstood;
            } else if understood.choice.acknowledges() {
                match answerer(call, input, source) {
                    Answerer::Known(AnsweredBy::Machine) => {
                        understood.choice = MenuChoice::NotUnderstood
                    }
                    Answerer::Unknown { held_before: false } => {
                        understood.choice = MenuChoice::NotUnderstood;
                        held = true;
                    }
                    Answerer::Known(AnsweredBy::Human)
                    | Answerer::Unknown { held_before: true } => {}
                }
            }
        }
        let dedupe = input
            .at
            .as_ref()
            .map(|at| format!("{}:input:{}:{at}", source.as_str(), input.provider_call_id));
        tracing::info!(
            alert_id = %call.alert_id,
            call_id = call.provider_call_id.as_deref().unwrap_or(""),
            choice = understood.choice.as_str(),
            via = understood.via.as_str(),
            "menu choice"
        );
        // One audit entry per choice, with what it was made from. When the choice
        // acknowledges, it is written in the acknowledgement's own transaction.
        let mut detail = json!({
            "choice": understood.choice.as_str(),
            "via": understood.via.as_str(),
            "digits": input.digits,
            "timed_out": input.timed_out,
            "text": understood.text,
            "confidence": understood.confidence,
        });
        if held {
            // Marks the hold, and which input it was, so that a repeated delivery of this
            // webhook is not mistaken for the nurse saying it again.
            detail[HELD] = json!(input.at);
        }
        let choice = Choice {
            audit: AuditEvent::on_call(
                call,
                source.as_str(),
                AuditKind::MenuChoice,
                dedupe,
                detail,
                now,
            ),
            understood,
        };
        match choice.understood.choice {
            MenuChoice::Acknowledge => return self.acknowledge(call, choice, now).await,
            MenuChoice::ConnectRoom => return self.connect_room(call, choice, now).await,
            _ => {}
        }
        let understood = choice.understood.clone();
        let mark = match understood.choice {
            MenuChoice::Decline => Some(CallMark::Declined),
            _ if held => Some(CallMark::SpeechAckHeld {
                input: input.at.clone(),
            }),
            _ => None,
        };
        let fresh = match mark {
            Some(mark) => {
                let fresh = self.store.mark_call(call.id, mark, &choice.audit).await?;
                if fresh {
                    self.count_choice(&understood);
                }
                fresh
            }
            None => self.record_choice(&choice).await?,
        };
        match understood.choice {
            MenuChoice::Repeat => self.repeat(call).await,
            MenuChoice::Details => self.details(call, now).await,
            MenuChoice::JoinConference => self.join_conference(call, now).await,
            MenuChoice::Decline => {
                tracing::info!(alert_id = %call.alert_id, via = understood.via.as_str(), "declined on the phone: escalating");
                // A repeated delivery is told what happens as things stand.
                let event = match fresh {
                    true => Some(Event::Declined {
                        others_live: self.others_live(call).await?,
                    }),
                    false => None,
                };
                let ahead = self.escalation_event(call, event).await?;
                Ok(Reply::Say {
                    text: self.after_decline(call, &ahead, now),
                })
            }
            MenuChoice::NotUnderstood | MenuChoice::Acknowledge | MenuChoice::ConnectRoom => {
                let options = self.options_for(&call.alert_id).await?;
                if held {
                    // Not counted as a re-prompt: holding must never end the nurse's call.
                    return Ok(menu::ask_again(options));
                }
                let before = if fresh {
                    self.store.bump_prompts(call.id).await?
                } else {
                    call.prompts - 1
                };
                Ok(menu::reprompt_or_goodbye(before, options))
            }
        }
    }

    /// Records a menu choice that does not acknowledge; false when this delivery was already
    /// recorded.
    async fn record_choice(&self, choice: &Choice) -> Result<bool, StoreError> {
        let fresh = self.store.record_event(&choice.audit).await?;
        if fresh {
            self.count_choice(&choice.understood);
        }
        Ok(fresh)
    }

    /// Every choice on every call is counted here once (a repeated webhook is not).
    fn count_choice(&self, understood: &Understood) {
        self.metrics
            .menu_choice(understood.choice.as_str(), understood.via.as_str());
    }

    /// The menu's options for the alert's calls (the plain menu if the alert is gone).
    async fn options_for(&self, alert_id: &str) -> Result<menu::MenuOptions, StoreError> {
        Ok(match self.store.load_alert(alert_id).await? {
            Some(alert) => self.menu_options(&alert),
            None => menu::MenuOptions {
                connect: false,
                speech: self.speech().0,
            },
        })
    }

    /// Acknowledges the alert on this call, in one transaction with the input; hangs up the
    /// others still being called.
    async fn acknowledge_call(
        &self,
        call: &CallRecord,
        choice: Choice,
        now: DateTime<Utc>,
    ) -> Result<AckOutcome, StoreError> {
        let via = choice.understood.via;
        let by = match call.phone() {
            Some(phone) => Acknowledger::phone(&phone),
            None => Acknowledger::named("phone", &call.to_number),
        };
        let audit = AckAudit {
            input: choice.audit,
            acknowledged: AuditEvent::on_call(
                call,
                "engine",
                AuditKind::AlertAcknowledged,
                Some(format!("ack:{}", call.alert_id)),
                json!({"by": by.as_str(), "via": "phone", "input": via.as_str(), "text": choice.understood.text}),
                now,
            ),
        };
        let acked = self
            .store
            .acknowledge_by_call(call.id, &by, now, &audit)
            .await?;
        let outcome = acked.outcome;
        if outcome != AckOutcome::AlreadyAcknowledgedHere {
            self.count_choice(&choice.understood);
        }
        if outcome == AckOutcome::Acknowledged {
            tracing::info!(
                alert_id = %call.alert_id,
                call_id = call.provider_call_id.as_deref().unwrap_or(""),
                input = via.as_str(),
                "ACKNOWLEDGED by phone"
            );
            self.metrics.call_ended(&call.provider, "answered");
            self.metrics
                .acknowledged("phone", "acknowledged", acked.seconds_to(now));
            // Everyone else still being called can stop.
            super::escalate::hang_up(self, &call.alert_id, &acked.live).await?;
        }
        Ok(outcome)
    }

    async fn acknowledge(
        &self,
        call: &CallRecord,
        choice: Choice,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let text = match self.acknowledge_call(call, choice, now).await? {
            AckOutcome::Acknowledged | AckOutcome::AlreadyAcknowledgedHere => menu::ACKNOWLEDGED,
            AckOutcome::AlreadyHandled => menu::ALREADY_HANDLED,
            AckOutcome::NoSuchAlert => menu::UNKNOWN_CALL,
        };
        Ok(Reply::Say { text: text.into() })
    }

    /// Key 4: acknowledges, then connects the call to the room's configured destination. A
    /// room without one is said so, acknowledges nothing, and the menu goes on.
    async fn connect_room(
        &self,
        call: &CallRecord,
        choice: Choice,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let Some(alert) = self.store.load_alert(&call.alert_id).await? else {
            self.record_choice(&choice).await?;
            return Ok(Reply::Say {
                text: menu::UNKNOWN_CALL.into(),
            });
        };
        let room = message::room_label(&alert);
        let destination = self
            .directory()
            .room(&alert)
            .and_then(|r| r.connect.clone());
        let Some(to) = destination else {
            if self.record_choice(&choice).await? {
                tracing::warn!(alert_id = %alert.id, "asked to connect to the room, but it has no [[rooms]] connect in alertcall.toml");
                self.store
                    .record_event(&AuditEvent::on_call(
                        call,
                        "engine",
                        AuditKind::CallBridgeUnavailable,
                        None,
                        json!({"room": room}),
                        now,
                    ))
                    .await?;
            }
            return Ok(menu::no_destination(&room, self.menu_options(&alert)));
        };
        match self.acknowledge_call(call, choice, now).await? {
            AckOutcome::Acknowledged | AckOutcome::AlreadyAcknowledgedHere => {
                let first = self
                    .store
                    .record_event(&AuditEvent::on_call(
                        call,
                        "engine",
                        AuditKind::CallBridged,
                        Some(format!("bridge:{}", call.id)),
                        json!({
                            "room": room,
                            "endpoint": to.kind(),
                            "destination": to.masked(),
                            "person": call.person,
                        }),
                        now,
                    ))
                    .await?;
                if first {
                    tracing::info!(
                        alert_id = %call.alert_id,
                        call_id = call.provider_call_id.as_deref().unwrap_or(""),
                        endpoint = to.kind(),
                        destination = %to.masked(),
                        "connecting the nurse to the room"
                    );
                }
                Ok(Reply::Connect {
                    text: menu::connecting(&room),
                    to,
                })
            }
            AckOutcome::AlreadyHandled => Ok(Reply::Say {
                text: menu::ALREADY_HANDLED.into(),
            }),
            AckOutcome::NoSuchAlert => Ok(Reply::Say {
                text: menu::UNKNOWN_CALL.into(),
            }),
        }
    }

    /// Key 5: the call joins the alert's responders' conference (the same name for every
    /// responder); the join goes to the timeline. It does not acknowledge: the escalation goes
    /// on and may bring more responders.
    async fn join_conference(
        &self,
        call: &CallRecord,
        now: DateTime<Utc>,
    ) -> Result<Reply, StoreError> {
        let alert = self.store.load_alert(&call.alert_id).await?;
        if super::escalate::conference_over(alert.as_ref()) {
            return Ok(Reply::Say {
                text: menu::ALREADY_HANDLED.into(),
            });
        }
        let name = menu::conference_name(&call.alert_id);
        let audit = AuditEvent::on_call(
            call,
            "engine",
            AuditKind::ConferenceJoined,
            Some(format!("conference:{}", call.id)),
            json!({"conference": name, "person": call.person}),
            now,
        );
        let first = self
            .store
            .mark_call(call.id, CallMark::JoinedConference, &audit)
            .await?;
        if first {
            tracing::info!(
                alert_id = %call.alert_id,
                call_id = call.provider_call_id.as_deref().unwrap_or(""),
                person = call.person.as_deref().unwrap_or(""),
                "joined the responders' conference"
            );
        }
        Ok(Reply::Conference {
            text: menu::JOINING_CONFERENCE.into(),
            name,
        })
    }

    /// Key 9: what the nurse needs to decide, then the menu again.
    async fn details(&self, call: &CallRecord, now: DateTime<Utc>) -> Result<Reply, StoreError> {
        let Some(alert) = self
            .store
            .load_alert(&call.alert_id)
            .await?
            .filter(|a| a.status.needs_paging())
        else {
            return Ok(Reply::Say {
                text: menu::ALREADY_HANDLED.into(),
            });
        };
        let directory = self.directory();
        let mut calls = self.store.list_calls(Some(&alert.id), 100).await?;
        calls.sort_by_key(|c| c.created_at);
        let steps: HashSet<(i32, i32)> = calls.iter().map(|c| (c.step, c.round)).collect();
        // Each other person once, with their latest call.
        let mut others: Vec<(String, Response)> = Vec::new();
        let mut seen: Vec<Option<String>> = Vec::new();
        for c in calls.iter().rev() {
            if c.id == call.id || (c.person.is_some() && c.person == call.person) {
                continue;
            }
            if c.person.is_some() && seen.contains(&c.person) {
                continue;
            }
            seen.push(c.person.clone());
            let response = if c.status == CallStatus::Answered {
                Response::Acknowledged
            } else if c.declined_at.is_some() {
                Response::Declined
            } else if c.conference_joined_at.is_some() && !c.status.is_terminal() {
                Response::InConference
            } else {
                match c.status {
                    CallStatus::Pending | CallStatus::Initiated | CallStatus::Ringing => {
                        Response::BeingCalled
                    }
                    CallStatus::InProgress => Response::OnThePhone,
                    CallStatus::Failed => Response::Unreachable,
                    _ => Response::NoAnswer,
                }
            };
            let name = c
                .person
                .as_ref()
                .and_then(|p| directory.staff.get(p))
                .map(|p| p.name.clone())
                .unwrap_or_else(|| "a colleague".into());
            others.push((name, response));
        }
        others.reverse();
        let include_patient_name = directory
            .room(&alert)
            .and_then(|r| r.include_patient_name_in_details)
            .unwrap_or(self.messages().include_patient_name);
        let local_time = directory.time_zone.as_ref().and_then(|tz| {
            let at =
                jiff::Timestamp::from_millisecond(alert.triggered_at.timestamp_millis()).ok()?;
            Some(at.to_zoned(tz.clone()).strftime("%H:%M").to_string())
        });
        let facts = DetailFacts {
            minutes_ago: (now - alert.triggered_at).num_minutes(),
            local_time,
            escalations: steps.len().saturating_sub(1),
            others,
            include_patient_name,
        };
        let text = message::details(&alert, &facts);
        Ok(menu::details_prompt(&text, self.menu_options(&alert)))
    }

    /// What the nurse who declined is told: what the escalation will actually do next.
    fn after_decline(
        &self,
        call: &CallRecord,
        ahead: &Ahead<Person>,
        now: DateTime<Utc>,
    ) -> String {
        let directory = self.directory();
        let ahead = ahead.map(|p| menu::Named {
            name: p.name.clone(),
            is_caller: call.person.as_deref() == Some(p.id.as_str()),
        });
        let zone = directory
            .time_zone
            .clone()
            .unwrap_or_else(jiff::tz::TimeZone::system);
        let clock = |at: DateTime<Utc>| {
            jiff::Timestamp::from_millisecond(at.timestamp_millis())
                .map(|t| t.to_zoned(zone.clone()).strftime("%H:%M").to_string())
                .unwrap_or_default()
        };
        menu::after_decline(&ahead, now, &clock, self.fallback_names().as_deref())
    }

    /// The names of the hospital's fallback contacts (`ALERTCALL_FALLBACK_PHONE`, which wins,
    /// else `[hospital] fallback`), or None when there is none; a number has no name.
    fn fallback_names(&self) -> Option<Vec<String>> {
        if self.config.fallback_phone.is_some() {
            return Some(Vec::new());
        }
        let directory = self.directory();
        (!directory.fallback.is_empty()).then(|| {
            directory
                .fallback
                .iter()
                .filter_map(|target| match target {
                    Target::Person(id) => directory.staff.get(id).map(|p| p.name.clone()),
                    Target::OnCall(_) | Target::Everyone(_) => None,
                })
                .collect()
        })
    }

    async fn repeat(&self, call: &CallRecord) -> Result<Reply, StoreError> {
        let alert = self
            .store
            .load_alert(&call.alert_id)
            .await?
            .filter(|a| a.status.needs_paging());
        Ok(match alert {
            Some(alert) => menu::announcement_prompt(&call.message, self.menu_options(&alert)),
            None => Reply::Say {
                text: menu::ALREADY_HANDLED.into(),
            },
        })
    }
}

/// What machine detection has said about the call (`calls.answered_by`), and whether a spoken
/// acknowledgement was already held on it.
///
/// With `bargeIn` the recogniser listens from the first word, so a greeting's speech can
/// arrive before Vonage's `machine` event. A spoken acknowledgement is therefore acted on
/// at once only when the call is known to be a person (`human`). While the result is not
/// known yet, the first one is held: the nurse is asked again (not counted against the
/// re-prompt limit), and a second one on the same call is acted on. So a nurse who answers
/// before detection finishes is asked once more rather than refused forever (detection may
/// never report, and the menu must keep working), while a greeting would have to say two
/// separate short "yes"-like sentences, with nothing that sounds like a greeting, before
/// the `machine` event. Keys are never held: a machine does not press 1.
fn answerer(call: &CallRecord, input: &InputEvent, source: Source) -> Answerer {
    if source == Source::Simulator {
        // The simulated phone is a person by construction (it has no voicemail), and its
        // `human` event goes through a queue that a quick click on the say box can overtake.
        return Answerer::Known(AnsweredBy::Human);
    }
    if let Some(by) = call.answered_by {
        return Answerer::Known(by);
    }
    // Without the provider's timestamp a repeated delivery cannot be told apart; any
    // earlier hold then counts.
    let held_before = call.speech_ack_held_at.is_some()
        && (input.at.is_none() || call.speech_ack_held_input != input.at);
    Answerer::Unknown { held_before }
}

/// What the nurse hears next, and in which language (theirs, else the hospital's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub reply: Reply,
    pub language: String,
}
