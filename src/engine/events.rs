//! Applying what a provider reports about a call (status events and keypad input), from
//! webhooks or the simulator alike. Idempotent: a repeated delivery changes nothing.

use serde_json::json;

use super::Engine;
use crate::domain::alert::Acknowledger;
use crate::domain::call::{CallEvent, CallRecord, InputEvent};
use crate::domain::escalation::Event;
use crate::domain::menu::{self, MenuChoice, Reply};
use crate::store::{AckAudit, AckOutcome, AuditEvent, StoreError};

/// Where an event came from, for the audit trail and the dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Vonage,
    Simulator,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Vonage => "vonage",
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

    /// A call status event. The call's status only moves forward.
    pub async fn handle_call_event(
        &self,
        event: &CallEvent,
        source: Source,
    ) -> Result<EventOutcome, StoreError> {
        let now = self.now();
        let Some(call) = self
            .store
            .find_call(&event.provider_call_id, event.call_id)
            .await?
        else {
            tracing::warn!(
                provider_call_id = %event.provider_call_id,
                status = event.kind.name(),
                "call event for an unknown call; ignored"
            );
            return Ok(EventOutcome::UnknownCall);
        };
        let changed = match event.kind.status() {
            Some(status) => self.store.apply_call_status(call.id, status, now).await?,
            None => None,
        };
        self.store
            .record_event(&AuditEvent {
                alert_id: Some(call.alert_id.clone()),
                call_id: Some(call.id),
                source: source.as_str().into(),
                kind: format!("call.{}", event.kind.name()),
                dedupe_key: Some(format!(
                    "{}:{}:{}:{}",
                    source.as_str(),
                    event.provider_call_id,
                    event.kind.name(),
                    event.detail.as_deref().unwrap_or("")
                )),
                detail: json!({
                    "provider_call_id": event.provider_call_id,
                    "detail": event.detail,
                    "provider_time": event.at,
                }),
                at: now,
            })
            .await?;
        match changed {
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
                    self.escalation_event(&updated, event).await?;
                }
                Ok(EventOutcome::Applied)
            }
            None => Ok(EventOutcome::NoChange),
        }
    }

    /// A key press (or silence) on the call menu; returns what the nurse hears next.
    pub async fn handle_input(
        &self,
        input: &InputEvent,
        source: Source,
    ) -> Result<Reply, StoreError> {
        let now = self.now();
        let Some(call) = self
            .store
            .find_call(&input.provider_call_id, input.call_id)
            .await?
        else {
            tracing::warn!(provider_call_id = %input.provider_call_id, "keypad input for an unknown call; ignored");
            return Ok(Reply::Say {
                text: menu::UNKNOWN_CALL.into(),
            });
        };
        let input_audit = AuditEvent {
            alert_id: Some(call.alert_id.clone()),
            call_id: Some(call.id),
            source: source.as_str().into(),
            kind: "input".into(),
            dedupe_key: input
                .at
                .as_ref()
                .map(|at| format!("{}:input:{}:{at}", source.as_str(), input.provider_call_id)),
            detail: json!({"digits": input.digits, "timed_out": input.timed_out}),
            at: now,
        };
        let choice = MenuChoice::from_digits(&input.digits);
        if choice == MenuChoice::Acknowledge {
            return self.acknowledge(&call, input_audit, now).await;
        }
        let fresh = self.store.record_event(&input_audit).await?;
        if choice == MenuChoice::Repeat {
            return self.repeat(&call).await;
        }
        if choice == MenuChoice::Decline {
            tracing::info!(alert_id = %call.alert_id, "declined on the phone (pressed 3): escalating");
            if fresh {
                let others_live = self.others_live(&call).await?;
                self.escalation_event(&call, Event::Declined { others_live })
                    .await?;
            }
            return Ok(Reply::Say {
                text: menu::DECLINED.into(),
            });
        }
        let before = if fresh {
            self.store.bump_prompts(call.id).await?
        } else {
            call.prompts - 1
        };
        Ok(menu::reprompt_or_goodbye(before))
    }

    async fn acknowledge(
        &self,
        call: &CallRecord,
        input: AuditEvent,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reply, StoreError> {
        let by = match call.phone() {
            Some(phone) => Acknowledger::phone(&phone),
            None => Acknowledger::named("phone", &call.to_number),
        };
        let audit = AckAudit {
            input,
            acknowledged: AuditEvent {
                alert_id: Some(call.alert_id.clone()),
                call_id: Some(call.id),
                source: "engine".into(),
                kind: "alert.acknowledged".into(),
                dedupe_key: Some(format!("ack:{}", call.alert_id)),
                detail: json!({"by": by.as_str(), "via": "phone"}),
                at: now,
            },
        };
        let (outcome, live) = self
            .store
            .acknowledge_by_call(call.id, &by, now, &audit)
            .await?;
        let text = match outcome {
            AckOutcome::Acknowledged => {
                tracing::info!(
                    alert_id = %call.alert_id,
                    call_id = call.provider_call_id.as_deref().unwrap_or(""),
                    "ACKNOWLEDGED by phone (pressed 1)"
                );
                self.metrics.call_ended(&call.provider, "answered");
                self.acknowledged_metric(&call.alert_id, "phone", now)
                    .await?;
                // Everyone else still being called can stop.
                super::escalate::hang_up(self, &call.alert_id, &live).await?;
                menu::ACKNOWLEDGED
            }
            AckOutcome::AlreadyAcknowledgedHere => menu::ACKNOWLEDGED,
            AckOutcome::AlreadyHandled => menu::ALREADY_HANDLED,
            AckOutcome::NoSuchAlert => menu::UNKNOWN_CALL,
        };
        Ok(Reply::Say { text: text.into() })
    }

    async fn repeat(&self, call: &CallRecord) -> Result<Reply, StoreError> {
        let active = self
            .store
            .load_alert(&call.alert_id)
            .await?
            .is_some_and(|a| a.status.needs_paging());
        Ok(if active {
            menu::announcement_prompt(&call.message)
        } else {
            Reply::Say {
                text: menu::ALREADY_HANDLED.into(),
            }
        })
    }
}
