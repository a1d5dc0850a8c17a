//! Test calls (`alertcall test-call`): placed through the configured provider with the real
//! per-call webhook URLs and the real menu, answered through the same webhooks (or the
//! simulator) as an alert's calls. They live in their own table, and nothing here reads or
//! writes an alert, a page or an alert's calls: a test call acknowledges nothing, escalates
//! nothing and is in no call history or analytics.

use std::sync::Arc;

use serde_json::json;
use uuid::Uuid;

use super::{Engine, EventOutcome, Source, Turn};
use crate::config::file::Directory;
use crate::domain::call::{CallEvent, InputEvent};
use crate::domain::intent::{self, SpeechResult};
use crate::domain::menu::Reply;
use crate::domain::phone::Phone;
use crate::domain::test_call::{self, Answer, TestCallState};
use crate::store::{AuditEvent, AuditKind, NewTestCall, StoreError, TestCallRecord};
use crate::telephony::CallRequest;

/// Why a test call cannot be placed to what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Neither a person in alertcall.toml nor a number a phone network can ring.
    #[error("{0}")]
    Unknown(String),
    /// The person has no phone to call.
    #[error("{0}")]
    NoPhone(String),
}

/// The person and number `to` names: a staff id (as the escalation resolves `person:<id>`),
/// else a number in E.164 form, checked as every number is (`Phone::parse`).
pub fn target(directory: &Directory, to: &str) -> Result<(Option<String>, Phone), TargetError> {
    let to = to.trim();
    if let Some(person) = directory.staff.get(to) {
        return match &person.phone {
            Some(phone) => Ok((Some(person.id.clone()), phone.clone())),
            None => Err(TargetError::NoPhone(format!(
                "{} ({to}) has no phone in alertcall.toml to call",
                person.name
            ))),
        };
    }
    let numberish = to.starts_with('+')
        || (to.chars().any(|c| c.is_ascii_digit())
            && to
                .chars()
                .all(|c| c.is_ascii_digit() || " -.()".contains(c)));
    if numberish {
        return Phone::parse(to)
            .map(|phone| (None, phone))
            .map_err(|e| TargetError::Unknown(e.to_string()));
    }
    let mut people: Vec<&str> = directory.staff.keys().map(String::as_str).collect();
    people.sort_unstable();
    Err(TargetError::Unknown(format!(
        "no person {to:?} in alertcall.toml (the people are: {}); or give a number in E.164 \
         form such as +13854019951",
        people.join(", ")
    )))
}

impl Engine {
    /// Records a test call to `to` and places it in the background; returns it `placing`.
    pub async fn start_test_call(
        self: &Arc<Self>,
        to: Phone,
        person: Option<String>,
        requested_by: &str,
    ) -> Result<TestCallRecord, StoreError> {
        let now = self.now();
        let call = self
            .store
            .create_test_call(&NewTestCall {
                id: Uuid::new_v4(),
                person: person.clone(),
                to_number: to.e164().to_string(),
                provider: self.provider.name().to_string(),
                requested_by: requested_by.to_string(),
                at: now,
            })
            .await?;
        self.store
            .record_event(&audit(
                call.id,
                "engine",
                TestCallState::Placing,
                json!({"to": to.masked(), "person": person, "requested_by": requested_by}),
                now,
            ))
            .await?;
        tracing::info!(
            test_call = %call.id,
            to = %to.masked(),
            person = person.as_deref().unwrap_or(""),
            requested_by,
            provider = %call.provider,
            "TEST CALL requested"
        );
        let engine = self.clone();
        let id = call.id;
        tokio::spawn(async move {
            if let Err(e) = engine.place_test_call(id, to, person).await {
                tracing::error!(test_call = %id, error = %e, "TEST CALL: its progress cannot be recorded; `alertcall test-call` will not see an outcome");
            }
        });
        Ok(call)
    }

    /// Places a recorded test call, under the same calls-per-second limit as every call.
    async fn place_test_call(
        &self,
        id: Uuid,
        to: Phone,
        person: Option<String>,
    ) -> Result<(), StoreError> {
        self.limiter.acquire().await;
        let speech = self.speech().0;
        let request = CallRequest {
            call_id: id,
            to,
            greeting: test_call::greeting(speech),
            language: self.language_for(person.as_deref()),
            speech,
            patient_name: None,
        };
        let result = self.provider.place_call(&request).await;
        // What the provider answered is news about the provider, test call or not.
        self.provider_health
            .record(self.provider.name(), result.as_ref().map(|_| ()));
        let source = "engine";
        match result {
            Ok(placed) => {
                let id_given = Some(placed.provider_call_id.as_str());
                self.move_test_call(id, TestCallState::Calling, None, id_given, source)
                    .await?
            }
            Err(e) => {
                let why = e.to_string();
                self.move_test_call(id, TestCallState::Failed, Some(&why), None, source)
                    .await?
            }
        };
        Ok(())
    }

    /// Moves a test call on; each change is one audit entry (kind `test_call.<state>`, no
    /// alert) and one log line.
    async fn move_test_call(
        &self,
        id: Uuid,
        state: TestCallState,
        reason: Option<&str>,
        provider_call_id: Option<&str>,
        source: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let moved = self
            .store
            .advance_test_call(id, state, reason, provider_call_id, now)
            .await?;
        if moved {
            self.store
                .record_event(&audit(
                    id,
                    source,
                    state,
                    json!({"reason": reason, "provider_call_id": provider_call_id}),
                    now,
                ))
                .await?;
            let said = state.describe(reason);
            if state == TestCallState::Failed {
                tracing::warn!(test_call = %id, state = %state, "TEST CALL: {said}");
            } else {
                tracing::info!(test_call = %id, state = %state, "TEST CALL: {said}");
            }
        }
        Ok(moved)
    }

    /// The test call an event is about, if it is one: the one the webhook URL names (our id),
    /// unless its recorded provider id differs.
    pub(super) async fn find_test_call(
        &self,
        provider_call_id: &str,
        call_id: Option<Uuid>,
    ) -> Result<Option<TestCallRecord>, StoreError> {
        let Some(id) = call_id else {
            return Ok(None);
        };
        Ok(self.store.test_call(id).await?.filter(|call| {
            call.provider_call_id
                .as_deref()
                .is_none_or(|p| p == provider_call_id)
        }))
    }

    /// A provider's status event on a test call.
    pub(super) async fn test_call_event(
        &self,
        call: &TestCallRecord,
        event: &CallEvent,
        source: Source,
    ) -> Result<EventOutcome, StoreError> {
        let Some(state) = TestCallState::from_event(event.kind) else {
            return Ok(EventOutcome::NoChange);
        };
        let provider_call_id = Some(event.provider_call_id.as_str());
        let moved = self
            .move_test_call(
                call.id,
                state,
                event.detail.as_deref(),
                provider_call_id,
                source.as_str(),
            )
            .await?;
        Ok(match moved {
            true => EventOutcome::Applied,
            false => EventOutcome::NoChange,
        })
    }

    /// A key press, a spoken answer or silence on a test call's menu.
    pub(super) async fn test_call_input(
        &self,
        call: &TestCallRecord,
        input: &InputEvent,
        source: Source,
    ) -> Result<Turn, StoreError> {
        let (speech_on, min_confidence) = self.speech();
        let speech: &[SpeechResult] = if speech_on { &input.speech } else { &[] };
        let understood = intent::understand(&input.digits, speech, min_confidence);
        // The simulated phone is a person by construction (it has no voicemail).
        let person_known =
            source == Source::Simulator || call.state == TestCallState::AnsweredByPerson;
        let reply = match test_call::answer(&understood, person_known) {
            Answer::Confirm => {
                self.end_test_call(
                    call,
                    TestCallState::Acknowledged,
                    test_call::CONFIRMED,
                    source,
                )
                .await?
            }
            Answer::Decline => {
                self.end_test_call(call, TestCallState::Declined, test_call::DECLINED, source)
                    .await?
            }
            Answer::Repeat => test_call::greeting(speech_on),
            Answer::PressOne => test_call::press_one(),
            Answer::NotUnderstood => {
                let before = self.store.bump_test_call_prompts(call.id).await?;
                test_call::ask_again(before, speech_on)
            }
        };
        Ok(Turn {
            reply,
            language: self.language_for(call.person.as_deref()),
        })
    }

    /// The answer that ends a test call with its outcome.
    async fn end_test_call(
        &self,
        call: &TestCallRecord,
        outcome: TestCallState,
        text: &str,
        source: Source,
    ) -> Result<Reply, StoreError> {
        self.move_test_call(call.id, outcome, None, None, source.as_str())
            .await?;
        Ok(Reply::Say { text: text.into() })
    }
}

/// An audit entry about a test call: no alert, the test call's id as the call.
fn audit(
    id: Uuid,
    source: &str,
    state: TestCallState,
    detail: serde_json::Value,
    at: chrono::DateTime<chrono::Utc>,
) -> AuditEvent {
    AuditEvent {
        alert_id: None,
        call_id: Some(id),
        source: source.into(),
        kind: AuditKind::TestCall(state),
        dedupe_key: None,
        detail,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::Person;

    fn directory() -> Directory {
        let mut directory = Directory::default();
        for (id, phone) in [("ana", Some("+13854019951")), ("cho", None)] {
            directory.staff.insert(
                id.into(),
                Person {
                    id: id.into(),
                    name: format!("{id} the nurse"),
                    phone: phone.map(|p| Phone::parse(p).unwrap()),
                    sms: None,
                    language: None,
                },
            );
        }
        directory
    }

    #[test]
    fn a_person_or_a_number_is_called_and_anything_else_is_explained() {
        let d = directory();
        assert_eq!(
            target(&d, "ana"),
            Ok((Some("ana".into()), Phone::parse("+13854019951").unwrap()))
        );
        assert_eq!(
            target(&d, " +1 385-401-9952 "),
            Ok((None, Phone::parse("+13854019952").unwrap()))
        );
        let err = |to| target(&d, to).unwrap_err().to_string();
        assert_eq!(
            err("cho"),
            "cho the nurse (cho) has no phone in alertcall.toml to call"
        );
        assert!(
            err("385-401-9951").contains("(if this is a US/Canada number: +13854019951)"),
            "{}",
            err("385-401-9951")
        );
        assert!(err("+1385401995").contains("a digit is missing or extra"));
        assert!(
            err("bob").contains("no person \"bob\" in alertcall.toml (the people are: ana, cho)"),
            "{}",
            err("bob")
        );
    }
}
