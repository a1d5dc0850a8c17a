//! The kinds of audit-trail entries: each kind's stored name is written here once. The trail is a
//! record for people (the timeline renders it, `domain::timeline`); no decision reads it, so a
//! kind is named for what happened, and the names of rows already stored never change.

use std::borrow::Cow;
use std::fmt;

use super::PageState;
use crate::domain::call::CallEventKind;
use crate::domain::test_call::TestCallState;
use crate::hl7::oru::Phase;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditKind {
    /// The timeline's first line (never stored: the alert row says it).
    AlertTriggered,
    AlertAcknowledged,
    AlertResolved,
    /// Nobody is being reached about the alert (`engine::reach`).
    AlertUnreached,
    CallPlaced,
    /// The provider's status event (`call.ringing`, ...). `call.failed` is also a call the
    /// provider refused to place.
    Call(CallEventKind),
    /// A provider's error report about a call (its error webhook).
    CallError,
    CallHungUp,
    /// Key 4: the nurse connected to the room.
    CallBridged,
    /// Key 4 for a room with no destination.
    CallBridgeUnavailable,
    MenuChoice,
    ConferenceJoined,
    ConferenceEnded,
    EscalationExhausted,
    FallbackNotified,
    /// The escalation's state changes.
    Page(PageState),
    SmsSent,
    /// The person has no SMS number.
    SmsNotSent,
    /// The provider refused the text (or reported it failed).
    SmsFailed,
    /// A delivery receipt with the provider's status word (`delivered`, `expired`, ...).
    SmsReceipt(String),
    /// An HL7 alarm message, by phase.
    Hl7(Phase),
    Hl7LinkDown,
    /// A test call's state (no alert; the test call's id as the call).
    TestCall(TestCallState),
}

impl AuditKind {
    /// A delivery receipt's kind: a `failed` receipt is the same entry as a text refused.
    pub fn sms_receipt(status: &str) -> AuditKind {
        match status {
            "failed" => AuditKind::SmsFailed,
            other => AuditKind::SmsReceipt(other.to_string()),
        }
    }

    /// The name stored in `call_events.kind`.
    pub fn as_str(&self) -> Cow<'static, str> {
        let name = match self {
            AuditKind::AlertTriggered => "alert.triggered",
            AuditKind::AlertAcknowledged => "alert.acknowledged",
            AuditKind::AlertResolved => "alert.resolved",
            AuditKind::AlertUnreached => "alert.unreached",
            AuditKind::CallPlaced => "call.placed",
            AuditKind::Call(kind) => return format!("call.{}", kind.name()).into(),
            AuditKind::CallError => "call.error",
            AuditKind::CallHungUp => "call.hung_up",
            AuditKind::CallBridged => "call.bridged",
            AuditKind::CallBridgeUnavailable => "call.bridge_unavailable",
            AuditKind::MenuChoice => "menu.choice",
            AuditKind::ConferenceJoined => "conference.joined",
            AuditKind::ConferenceEnded => "conference.ended",
            AuditKind::EscalationExhausted => "escalation.exhausted",
            AuditKind::FallbackNotified => "fallback.notified",
            AuditKind::Page(state) => return format!("page.{}", state.as_str()).into(),
            AuditKind::SmsSent => "sms.sent",
            AuditKind::SmsNotSent => "sms.not_sent",
            AuditKind::SmsFailed => "sms.failed",
            AuditKind::SmsReceipt(status) => return format!("sms.{status}").into(),
            AuditKind::Hl7(phase) => return format!("hl7.{}", phase.as_str()).into(),
            AuditKind::Hl7LinkDown => "hl7.link_down",
            AuditKind::TestCall(state) => return format!("test_call.{}", state.as_str()).into(),
        };
        Cow::Borrowed(name)
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::timeline::{Context, Entry, sentence};

    /// The names stored before the kinds were typed: rows already written keep reading the same.
    #[test]
    fn the_stored_names_do_not_change() {
        let table = [
            (AuditKind::AlertTriggered, "alert.triggered"),
            (AuditKind::AlertAcknowledged, "alert.acknowledged"),
            (AuditKind::AlertResolved, "alert.resolved"),
            (AuditKind::AlertUnreached, "alert.unreached"),
            (AuditKind::CallPlaced, "call.placed"),
            (AuditKind::Call(CallEventKind::PickedUp), "call.picked_up"),
            (AuditKind::Call(CallEventKind::Failed), "call.failed"),
            (AuditKind::CallError, "call.error"),
            (AuditKind::CallHungUp, "call.hung_up"),
            (AuditKind::CallBridged, "call.bridged"),
            (AuditKind::CallBridgeUnavailable, "call.bridge_unavailable"),
            (AuditKind::MenuChoice, "menu.choice"),
            (AuditKind::ConferenceJoined, "conference.joined"),
            (AuditKind::ConferenceEnded, "conference.ended"),
            (AuditKind::EscalationExhausted, "escalation.exhausted"),
            (AuditKind::FallbackNotified, "fallback.notified"),
            (AuditKind::Page(PageState::Waiting), "page.waiting"),
            (AuditKind::SmsSent, "sms.sent"),
            (AuditKind::SmsNotSent, "sms.not_sent"),
            (AuditKind::SmsFailed, "sms.failed"),
            (AuditKind::sms_receipt("failed"), "sms.failed"),
            (AuditKind::sms_receipt("delivered"), "sms.delivered"),
            (AuditKind::Hl7(Phase::End), "hl7.end"),
            (AuditKind::Hl7LinkDown, "hl7.link_down"),
            (
                AuditKind::TestCall(TestCallState::NoAnswer),
                "test_call.no_answer",
            ),
        ];
        for (kind, name) in table {
            assert_eq!(kind.to_string(), name);
        }
    }

    /// Every kind the engine writes about an alert has its own sentence on the timeline: a
    /// renamed kind would fall back to "<kind> (from <source>)" and fail here.
    #[test]
    fn the_timeline_has_a_sentence_for_every_alert_kind() {
        let mut kinds = vec![
            AuditKind::AlertTriggered,
            AuditKind::AlertAcknowledged,
            AuditKind::AlertResolved,
            AuditKind::AlertUnreached,
            AuditKind::CallPlaced,
            AuditKind::CallError,
            AuditKind::CallHungUp,
            AuditKind::CallBridged,
            AuditKind::CallBridgeUnavailable,
            AuditKind::MenuChoice,
            AuditKind::ConferenceJoined,
            AuditKind::ConferenceEnded,
            AuditKind::EscalationExhausted,
            AuditKind::FallbackNotified,
            AuditKind::SmsSent,
            AuditKind::SmsNotSent,
            AuditKind::SmsFailed,
            AuditKind::Page(PageState::Due),
        ];
        // `call.other` (a status the provider added) reads as its name.
        kinds.extend(
            CallEventKind::ALL
                .into_iter()
                .filter(|k| *k != CallEventKind::Other)
                .map(AuditKind::Call),
        );
        let cx = Context {
            names: Default::default(),
            policies: &[],
            schedules: &[],
            time_zone: jiff::tz::TimeZone::UTC,
            calls: Default::default(),
            whole_numbers: false,
        };
        let detail = serde_json::json!({});
        for kind in kinds {
            let name = kind.to_string();
            let entry = Entry {
                at: chrono::DateTime::UNIX_EPOCH,
                kind: &name,
                source: "test",
                call_id: None,
                detail: &detail,
            };
            assert!(
                !sentence(&entry, &cx).contains("(from test)"),
                "{name} has no sentence"
            );
        }
    }
}
