//! Calls: provider-neutral status, events, and the rule that a call's recorded state only
//! moves forward.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::phone::Phone;

/// A call's status as recorded in `alertcall` tables and mirrored to `metadata.call.call_status`.
///
/// `Answered` keeps the seed's meaning: the nurse **pressed 1**. A pickup (which voicemail also
/// produces) is `InProgress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Our row exists; the provider has not accepted the request yet.
    Pending,
    Initiated,
    Ringing,
    InProgress,
    /// Pressed 1: the alert was acknowledged on this call.
    Answered,
    /// Picked up by an answering machine or voicemail.
    Machine,
    Completed,
    Unanswered,
    Busy,
    Timeout,
    Rejected,
    Cancelled,
    Failed,
}

impl CallStatus {
    pub const ALL: [CallStatus; 13] = [
        CallStatus::Pending,
        CallStatus::Initiated,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Answered,
        CallStatus::Machine,
        CallStatus::Completed,
        CallStatus::Unanswered,
        CallStatus::Busy,
        CallStatus::Timeout,
        CallStatus::Rejected,
        CallStatus::Cancelled,
        CallStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Pending => "pending",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in_progress",
            CallStatus::Answered => "answered",
            CallStatus::Machine => "machine",
            CallStatus::Completed => "completed",
            CallStatus::Unanswered => "unanswered",
            CallStatus::Busy => "busy",
            CallStatus::Timeout => "timeout",
            CallStatus::Rejected => "rejected",
            CallStatus::Cancelled => "cancelled",
            CallStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<CallStatus> {
        CallStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Terminal statuses are final: a late `ringing` never undoes them.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            CallStatus::Pending
                | CallStatus::Initiated
                | CallStatus::Ringing
                | CallStatus::InProgress
        )
    }

    /// The call ended without anyone pressing 1 (for escalation: "not acknowledged").
    pub fn is_unsuccessful_end(self) -> bool {
        self.is_terminal() && self != CallStatus::Answered
    }

    fn rank(self) -> u8 {
        match self {
            CallStatus::Pending => 0,
            CallStatus::Initiated => 1,
            CallStatus::Ringing => 2,
            CallStatus::InProgress => 3,
            _ => 4,
        }
    }

    /// The status after `next` is observed, or `None` when `next` would move the call backwards
    /// or sideways (events arrive out of order and more than once).
    ///
    /// Rules: an acknowledgement (`Answered`) wins over everything; otherwise a terminal status
    /// is final, and a non-terminal status only moves forward.
    pub fn advance(self, next: CallStatus) -> Option<CallStatus> {
        if self == next || self == CallStatus::Answered {
            return None;
        }
        if next == CallStatus::Answered {
            return Some(next);
        }
        if self.is_terminal() {
            return None;
        }
        (next.rank() > self.rank()).then_some(next)
    }
}

impl std::fmt::Display for CallStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a call, in the one vocabulary every screen uses (board, alert page,
/// history, API, CLI, analytics). `CallStatus` stays what the database and the seed's
/// `metadata.call.call_status` hold; this is how people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Ringing,
    /// Picked up (by a person), nothing decided yet, or hung up without deciding.
    PickedUp,
    /// Pressed 1 (or 4) or said yes: the alert was acknowledged on this call.
    Acknowledged,
    /// Pressed 3 or said "busy", or declined the ringing call.
    Declined,
    NoAnswer,
    Busy,
    Voicemail,
    Failed,
    /// Hung up by alertcall because someone else acknowledged (or the alert was closed).
    Cancelled,
}

impl CallOutcome {
    pub const ALL: [CallOutcome; 9] = [
        CallOutcome::Ringing,
        CallOutcome::PickedUp,
        CallOutcome::Acknowledged,
        CallOutcome::Declined,
        CallOutcome::NoAnswer,
        CallOutcome::Busy,
        CallOutcome::Voicemail,
        CallOutcome::Failed,
        CallOutcome::Cancelled,
    ];

    /// The outcome of a call with `status`; `declined` when the nurse declined on the call
    /// (pressed 3), which its status (`completed`, as the seed records it) does not say.
    pub fn of(status: CallStatus, declined: bool) -> CallOutcome {
        match status {
            CallStatus::Answered => CallOutcome::Acknowledged,
            _ if declined => CallOutcome::Declined,
            CallStatus::Pending | CallStatus::Initiated | CallStatus::Ringing => {
                CallOutcome::Ringing
            }
            CallStatus::InProgress | CallStatus::Completed => CallOutcome::PickedUp,
            CallStatus::Machine => CallOutcome::Voicemail,
            CallStatus::Unanswered | CallStatus::Timeout => CallOutcome::NoAnswer,
            CallStatus::Busy => CallOutcome::Busy,
            CallStatus::Rejected => CallOutcome::Declined,
            CallStatus::Cancelled => CallOutcome::Cancelled,
            CallStatus::Failed => CallOutcome::Failed,
        }
    }

    /// The machine name (`no_answer`), as the API's `outcome` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ringing => "ringing",
            CallOutcome::PickedUp => "picked_up",
            CallOutcome::Acknowledged => "acknowledged",
            CallOutcome::Declined => "declined",
            CallOutcome::NoAnswer => "no_answer",
            CallOutcome::Busy => "busy",
            CallOutcome::Voicemail => "voicemail",
            CallOutcome::Failed => "failed",
            CallOutcome::Cancelled => "cancelled",
        }
    }

    /// What people read (`no answer`): the one place these words are written.
    pub fn label(self) -> &'static str {
        match self {
            CallOutcome::PickedUp => "picked up",
            CallOutcome::NoAnswer => "no answer",
            other => other.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<CallOutcome> {
        CallOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What a provider told us about a call, in provider-neutral words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    /// The provider's id for the call (Vonage `uuid`).
    pub provider_call_id: String,
    /// Our id, when the webhook URL carried it (`?call=`); lets an event that races the
    /// create-call response still find its call.
    pub call_id: Option<Uuid>,
    pub kind: CallEventKind,
    /// The provider's reason, e.g. `invalid_number`.
    pub detail: Option<String>,
    /// The provider's timestamp for the event, used to make repeated deliveries idempotent.
    pub at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    Started,
    Ringing,
    /// Picked up: by a person **or** a machine.
    PickedUp,
    Human,
    Machine,
    Busy,
    Cancelled,
    Unanswered,
    Timeout,
    Rejected,
    Failed,
    Completed,
    /// Anything else the provider reports (kept in the audit trail, changes no state).
    Other,
}

impl CallEventKind {
    pub const ALL: [CallEventKind; 13] = [
        CallEventKind::Started,
        CallEventKind::Ringing,
        CallEventKind::PickedUp,
        CallEventKind::Human,
        CallEventKind::Machine,
        CallEventKind::Busy,
        CallEventKind::Cancelled,
        CallEventKind::Unanswered,
        CallEventKind::Timeout,
        CallEventKind::Rejected,
        CallEventKind::Failed,
        CallEventKind::Completed,
        CallEventKind::Other,
    ];

    pub fn parse(name: &str) -> Option<CallEventKind> {
        CallEventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What this event says about who picked up, if anything.
    pub fn answered_by(self) -> Option<AnsweredBy> {
        match self {
            CallEventKind::Human => Some(AnsweredBy::Human),
            CallEventKind::Machine => Some(AnsweredBy::Machine),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CallEventKind::Started => "started",
            CallEventKind::Ringing => "ringing",
            CallEventKind::PickedUp => "picked_up",
            CallEventKind::Human => "human",
            CallEventKind::Machine => "machine",
            CallEventKind::Busy => "busy",
            CallEventKind::Cancelled => "cancelled",
            CallEventKind::Unanswered => "unanswered",
            CallEventKind::Timeout => "timeout",
            CallEventKind::Rejected => "rejected",
            CallEventKind::Failed => "failed",
            CallEventKind::Completed => "completed",
            CallEventKind::Other => "other",
        }
    }

    /// The status this event implies for the call, if any.
    pub fn status(self) -> Option<CallStatus> {
        Some(match self {
            CallEventKind::Started => CallStatus::Initiated,
            CallEventKind::Ringing => CallStatus::Ringing,
            CallEventKind::PickedUp | CallEventKind::Human => CallStatus::InProgress,
            CallEventKind::Machine => CallStatus::Machine,
            CallEventKind::Busy => CallStatus::Busy,
            CallEventKind::Cancelled => CallStatus::Cancelled,
            CallEventKind::Unanswered => CallStatus::Unanswered,
            CallEventKind::Timeout => CallStatus::Timeout,
            CallEventKind::Rejected => CallStatus::Rejected,
            CallEventKind::Failed => CallStatus::Failed,
            CallEventKind::Completed => CallStatus::Completed,
            CallEventKind::Other => return None,
        })
    }
}

/// Who picked up a call, as the provider's machine detection says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnsweredBy {
    Human,
    Machine,
}

impl AnsweredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::Machine => "machine",
        }
    }

    pub fn parse(s: &str) -> Option<AnsweredBy> {
        [AnsweredBy::Human, AnsweredBy::Machine]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// What is known after `next` is reported: a machine result stands (a greeting's speech
    /// can be followed by a late `human`), a person's does until a machine is reported.
    pub fn then(this: Option<AnsweredBy>, next: AnsweredBy) -> AnsweredBy {
        match this {
            Some(AnsweredBy::Machine) => AnsweredBy::Machine,
            _ => next,
        }
    }
}

/// A keypad (DTMF) or speech result from the call menu.
#[derive(Debug, Clone, PartialEq)]
pub struct InputEvent {
    pub provider_call_id: String,
    pub call_id: Option<Uuid>,
    /// Empty when nothing was pressed.
    pub digits: String,
    pub timed_out: bool,
    /// What the recogniser heard, best first; empty when nothing was said (or speech is off).
    pub speech: Vec<crate::domain::intent::SpeechResult>,
    pub at: Option<String>,
}

/// One call attempt as alertcall records it.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub id: Uuid,
    pub alert_id: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub to_number: String,
    pub status: CallStatus,
    pub message: String,
    pub step: i32,
    pub round: i32,
    /// The staff id of the person called, when known.
    pub person: Option<String>,
    pub created_at: DateTime<Utc>,
    pub initiated_at: Option<DateTime<Utc>>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// When the nurse declined on this call (pressed 3 or said "busy").
    pub declined_at: Option<DateTime<Utc>>,
    /// What the provider's machine detection said, once it has.
    pub answered_by: Option<AnsweredBy>,
    /// When a spoken acknowledgement was held because detection had not said yet
    /// (`engine::events`), and the provider's timestamp of that input (a repeated delivery of it
    /// is not the nurse saying it again).
    pub speech_ack_held_at: Option<DateTime<Utc>>,
    pub speech_ack_held_input: Option<String>,
    /// When the call joined the alert's responders' conference (key 5).
    pub conference_joined_at: Option<DateTime<Utc>>,
    pub prompts: i32,
    pub error: Option<String>,
}

impl CallRecord {
    pub fn outcome(&self) -> CallOutcome {
        CallOutcome::of(self.status, self.declined_at.is_some())
    }

    /// The phone number that was called (stored validated, so this only fails on a
    /// hand-edited row).
    pub fn phone(&self) -> Option<Phone> {
        Phone::parse(&self.to_number).ok()
    }

    /// `alerts.metadata -> 'call'`: the shape the seed documented, plus the network that
    /// carried the call (`provider`). This is the one place that decides what it contains.
    pub fn metadata_call(&self) -> serde_json::Value {
        serde_json::json!({
            "provider": self.provider,
            "phone_number": self.to_number,
            "call_status": self.status.as_str(),
            "call_id": self.provider_call_id.clone().unwrap_or_default(),
            "message": self.message,
            "initiated_at": self.initiated_at.map(rfc3339),
            "answered_at": self.answered_at.map(rfc3339),
        })
    }
}

/// A call of alert `a` to +13854019951, with nothing recorded but its status (tests change what
/// they need).
#[cfg(test)]
impl CallRecord {
    pub(crate) fn example(status: CallStatus) -> CallRecord {
        CallRecord {
            id: Uuid::nil(),
            alert_id: "a".into(),
            provider: "vonage".into(),
            provider_call_id: None,
            to_number: "+13854019951".into(),
            status,
            message: String::new(),
            step: 0,
            round: 0,
            person: None,
            created_at: DateTime::UNIX_EPOCH,
            initiated_at: None,
            answered_at: None,
            ended_at: None,
            declined_at: None,
            answered_by: None,
            speech_ack_held_at: None,
            speech_ack_held_input: None,
            conference_joined_at: None,
            prompts: 0,
            error: None,
        }
    }
}

/// RFC 3339 UTC with milliseconds, the format written into `metadata`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::CallStatus::*;
    use super::*;

    #[test]
    fn status_only_moves_forward() {
        let table = [
            (Pending, Initiated, Some(Initiated)),
            (Initiated, Ringing, Some(Ringing)),
            (Ringing, Initiated, None),
            (InProgress, Ringing, None),
            (Ringing, InProgress, Some(InProgress)),
            (Ringing, Busy, Some(Busy)),
            (Busy, Completed, None),
            (Completed, Ringing, None),
            (InProgress, Completed, Some(Completed)),
            (Ringing, Ringing, None),
            (InProgress, Answered, Some(Answered)),
            // A pressed 1 is the strongest fact, even after a late-arriving end.
            (Completed, Answered, Some(Answered)),
            (Machine, Answered, Some(Answered)),
            // Nothing overwrites an acknowledgement.
            (Answered, Completed, None),
            (Answered, Ringing, None),
            (Answered, Failed, None),
            (Pending, Failed, Some(Failed)),
            (Initiated, Machine, Some(Machine)),
            (Machine, Completed, None),
        ];
        for (from, next, want) in table {
            assert_eq!(from.advance(next), want, "{from} + {next}");
        }
    }

    #[test]
    fn every_status_round_trips_through_its_name() {
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CallStatus::parse("nonsense"), None);
    }

    #[test]
    fn every_status_has_one_outcome_and_a_decline_wins_unless_acknowledged() {
        let table = [
            (Pending, "ringing"),
            (Initiated, "ringing"),
            (Ringing, "ringing"),
            (InProgress, "picked up"),
            (Answered, "acknowledged"),
            (Machine, "voicemail"),
            (Completed, "picked up"),
            (Unanswered, "no answer"),
            (Busy, "busy"),
            (Timeout, "no answer"),
            (Rejected, "declined"),
            (Cancelled, "cancelled"),
            (Failed, "failed"),
        ];
        for (status, label) in table {
            assert_eq!(CallOutcome::of(status, false).label(), label, "{status}");
        }
        assert_eq!(CallOutcome::of(Completed, true), CallOutcome::Declined);
        assert_eq!(CallOutcome::of(Answered, true), CallOutcome::Acknowledged);
        for o in CallOutcome::ALL {
            assert_eq!(CallOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(CallOutcome::parse("answered"), None);
    }

    #[test]
    fn metadata_call_has_the_seed_shape() {
        let t = DateTime::parse_from_rfc3339("2026-11-24T20:15:20.101Z")
            .unwrap()
            .with_timezone(&Utc);
        let call = CallRecord {
            provider_call_id: Some("63f6".into()),
            message: "Critical alert".into(),
            created_at: t,
            initiated_at: Some(t),
            answered_at: Some(t),
            ..CallRecord::example(Answered)
        };
        assert_eq!(
            call.metadata_call(),
            serde_json::json!({
                "provider": "vonage",
                "phone_number": "+13854019951",
                "call_status": "answered",
                "call_id": "63f6",
                "message": "Critical alert",
                "initiated_at": "2026-11-24T20:15:20.101Z",
                "answered_at": "2026-11-24T20:15:20.101Z",
            })
        );
    }
}
