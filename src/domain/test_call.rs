//! A test call (`alertcall test-call`): one real call through the configured provider and its
//! real menu, with a fixed test announcement instead of an alert, to prove before go-live that
//! a phone rings, hears alertcall and that its "1" comes back. It belongs to no alert, so it
//! acknowledges nothing and moves no escalation.

use crate::domain::call::CallEventKind;
use crate::domain::intent::{Understood, Via};
use crate::domain::menu::{self, MenuChoice, Reply};

/// What the phone hears: no patient, no alert.
pub const ANNOUNCEMENT: &str =
    "This is a test call from alertcall. Press 1 to confirm you can hear this.";
pub const CONFIRMED: &str =
    "Thank you. The test worked: alertcall can reach you on this phone. Goodbye.";
pub const DECLINED: &str = "Understood. This was only a test; nobody else is called. Goodbye.";
pub const NO_ANSWER: &str = "No 1 was received. This was only a test. Goodbye.";
/// A spoken yes before the provider has said a person answered: a voicemail greeting must
/// not pass the test, so the keypad is asked for.
pub const PRESS_ONE: &str = "To confirm, please press 1.";

/// Where a test call stands. It only moves forward (`rank`): events arrive out of order and
/// more than once. Pressing 1 wins over every other end, as on an alert's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestCallState {
    /// Waiting for a slot under the calls-per-second limit, or for the provider's answer.
    Placing,
    /// The provider accepted the call.
    Calling,
    Ringing,
    /// Picked up, by a person or a machine.
    Answered,
    /// The provider says a person (not voicemail) answered.
    AnsweredByPerson,
    /// Pressed 1 (or said yes once a person was known to be on the line).
    Acknowledged,
    /// Pressed 3 ("I cannot respond").
    Declined,
    NoAnswer,
    Busy,
    /// Declined while ringing.
    Rejected,
    Voicemail,
    /// Answered, and ended without a 1.
    HungUp,
    Cancelled,
    /// The provider refused or could not complete the call (`reason` says why).
    Failed,
}

impl TestCallState {
    pub const ALL: [TestCallState; 14] = [
        TestCallState::Placing,
        TestCallState::Calling,
        TestCallState::Ringing,
        TestCallState::Answered,
        TestCallState::AnsweredByPerson,
        TestCallState::Acknowledged,
        TestCallState::Declined,
        TestCallState::NoAnswer,
        TestCallState::Busy,
        TestCallState::Rejected,
        TestCallState::Voicemail,
        TestCallState::HungUp,
        TestCallState::Cancelled,
        TestCallState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TestCallState::Placing => "placing",
            TestCallState::Calling => "calling",
            TestCallState::Ringing => "ringing",
            TestCallState::Answered => "answered",
            TestCallState::AnsweredByPerson => "answered_by_person",
            TestCallState::Acknowledged => "acknowledged",
            TestCallState::Declined => "declined",
            TestCallState::NoAnswer => "no_answer",
            TestCallState::Busy => "busy",
            TestCallState::Rejected => "rejected",
            TestCallState::Voicemail => "voicemail",
            TestCallState::HungUp => "hung_up",
            TestCallState::Cancelled => "cancelled",
            TestCallState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TestCallState> {
        TestCallState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A state replaces only a lower one; every end but the acknowledgement shares a rank, so
    /// the first end reported stands.
    pub fn rank(self) -> i32 {
        match self {
            TestCallState::Placing => 0,
            TestCallState::Calling => 1,
            TestCallState::Ringing => 2,
            TestCallState::Answered => 3,
            TestCallState::AnsweredByPerson => 4,
            TestCallState::Acknowledged => 6,
            _ => 5,
        }
    }

    /// The call is over: this is its outcome.
    pub fn is_final(self) -> bool {
        self.rank() >= 5
    }

    /// The state a provider's call event reports, if any.
    pub fn from_event(kind: CallEventKind) -> Option<TestCallState> {
        Some(match kind {
            CallEventKind::Started => TestCallState::Calling,
            CallEventKind::Ringing => TestCallState::Ringing,
            CallEventKind::PickedUp => TestCallState::Answered,
            CallEventKind::Human => TestCallState::AnsweredByPerson,
            CallEventKind::Machine => TestCallState::Voicemail,
            CallEventKind::Busy => TestCallState::Busy,
            CallEventKind::Cancelled => TestCallState::Cancelled,
            CallEventKind::Unanswered | CallEventKind::Timeout => TestCallState::NoAnswer,
            CallEventKind::Rejected => TestCallState::Rejected,
            CallEventKind::Failed => TestCallState::Failed,
            CallEventKind::Completed => TestCallState::HungUp,
            CallEventKind::Other => return None,
        })
    }

    /// What happened, in plain words (`reason`: the provider's, when it gave one).
    pub fn describe(self, reason: Option<&str>) -> String {
        let said = match self {
            TestCallState::Placing => "placing the call",
            TestCallState::Calling => "the provider accepted the call",
            TestCallState::Ringing => "the phone is ringing",
            TestCallState::Answered => "answered; waiting for a key",
            TestCallState::AnsweredByPerson => "answered by a person; waiting for 1",
            TestCallState::Acknowledged => {
                "1 was pressed: the phone rang, heard the announcement, and its answer reached \
                 alertcall"
            }
            TestCallState::Declined => "answered, but 3 (cannot respond) was pressed instead of 1",
            TestCallState::NoAnswer => "nobody answered",
            TestCallState::Busy => "the line was busy",
            TestCallState::Rejected => "the call was declined while it rang",
            TestCallState::Voicemail => "voicemail or an answering machine picked up",
            TestCallState::HungUp => "answered, but the call ended without a 1",
            TestCallState::Cancelled => "the call was cancelled before anyone answered",
            TestCallState::Failed => "the call failed",
        };
        match reason.filter(|r| !r.is_empty()) {
            Some(reason) => format!("{said}: {reason}"),
            None => said.to_string(),
        }
    }

    /// What to do next once the call is over (or, for a call still going, when the wait ran
    /// out).
    pub fn next_step(self) -> &'static str {
        match self {
            TestCallState::Acknowledged => "Nothing to do: alerts can reach this phone.",
            TestCallState::Declined => "The menu works; run the test again and press 1.",
            TestCallState::NoAnswer | TestCallState::Rejected | TestCallState::Cancelled => {
                "Check the number, and that the phone is on and in reach, then run the test again."
            }
            TestCallState::Busy => "Run the test again when the line is free.",
            TestCallState::Voicemail => {
                "Check that the number is the nurse's own phone and that calls are not diverted \
                 to voicemail, then run the test again and press 1."
            }
            TestCallState::HungUp | TestCallState::Answered | TestCallState::AnsweredByPerson => {
                "If 1 was pressed, the provider's webhooks do not reach alertcall: check that \
                 ALERTCALL_PUBLIC_URL is reachable from the internet (`alertcall check` prints \
                 the URLs), then run the test again."
            }
            TestCallState::Failed => {
                "Fix what the provider says (`alertcall check` validates the configuration), \
                 then run the test again."
            }
            TestCallState::Placing => {
                "The provider has not accepted the call: look at the `alertcall serve` log and \
                 `alertcall check`."
            }
            TestCallState::Calling | TestCallState::Ringing => {
                "The provider reported no outcome: if the phone rang, the provider's webhooks do \
                 not reach alertcall; check that ALERTCALL_PUBLIC_URL is reachable from the \
                 internet, then run the test again."
            }
        }
    }
}

impl std::fmt::Display for TestCallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a choice on the test call's menu comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Confirm,
    Decline,
    Repeat,
    /// A spoken yes before a person is known to be on the line.
    PressOne,
    NotUnderstood,
}

/// A key always counts; a spoken yes only once a person is known to have answered (or on the
/// simulator, whose phone is a person by construction). The alert-only keys (4, 5, 9) mean
/// nothing here.
pub fn answer(understood: &Understood, person_known: bool) -> Answer {
    match understood.choice {
        MenuChoice::Acknowledge if understood.via == Via::Dtmf || person_known => Answer::Confirm,
        MenuChoice::Acknowledge => Answer::PressOne,
        MenuChoice::Decline => Answer::Decline,
        MenuChoice::Repeat => Answer::Repeat,
        MenuChoice::Details
        | MenuChoice::ConnectRoom
        | MenuChoice::JoinConference
        | MenuChoice::NotUnderstood => Answer::NotUnderstood,
    }
}

/// The announcement and what the phone can answer: what is heard on pick-up and after 2.
pub fn greeting(speech: bool) -> Reply {
    Reply::Prompt {
        text: prompt_text(speech),
    }
}

fn prompt_text(speech: bool) -> String {
    match speech {
        true => format!("{ANNOUNCEMENT} You can also say yes."),
        false => ANNOUNCEMENT.to_string(),
    }
}

/// The reply to a spoken yes that cannot be taken yet.
pub fn press_one() -> Reply {
    Reply::Prompt {
        text: PRESS_ONE.into(),
    }
}

/// The reply to a key that is not understood, given how many re-prompts came before: the
/// announcement again, as the alert menu does, and goodbye after the same number of tries.
pub fn ask_again(reprompts_before: i32, speech: bool) -> Reply {
    if reprompts_before < menu::MAX_REPROMPTS {
        Reply::Prompt {
            text: format!("{} {}", menu::NOT_UNDERSTOOD, prompt_text(speech)),
        }
    } else {
        Reply::Say {
            text: NO_ANSWER.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by(choice: MenuChoice, via: Via) -> Understood {
        Understood {
            choice,
            via,
            text: None,
            confidence: None,
        }
    }

    #[test]
    fn states_only_move_forward_and_1_wins() {
        use TestCallState::*;
        for state in TestCallState::ALL {
            assert_eq!(TestCallState::parse(state.as_str()), Some(state));
        }
        assert!(Placing.rank() < Calling.rank() && Calling.rank() < Ringing.rank());
        assert!(Ringing.rank() < Answered.rank() && Answered.rank() < AnsweredByPerson.rank());
        for end in [
            Declined, NoAnswer, Busy, Rejected, Voicemail, HungUp, Cancelled, Failed,
        ] {
            assert!(end.is_final() && end.rank() < Acknowledged.rank(), "{end}");
            // A second end (Vonage's `completed` after `unanswered`) changes nothing.
            assert_eq!(end.rank(), HungUp.rank(), "{end}");
        }
        assert!(!AnsweredByPerson.is_final());
    }

    #[test]
    fn events_map_to_states() {
        use CallEventKind as K;
        assert_eq!(
            TestCallState::from_event(K::Unanswered),
            Some(TestCallState::NoAnswer)
        );
        assert_eq!(
            TestCallState::from_event(K::Timeout),
            Some(TestCallState::NoAnswer)
        );
        assert_eq!(
            TestCallState::from_event(K::Machine),
            Some(TestCallState::Voicemail)
        );
        assert_eq!(
            TestCallState::from_event(K::Completed),
            Some(TestCallState::HungUp)
        );
        assert_eq!(TestCallState::from_event(K::Other), None);
    }

    #[test]
    fn only_1_or_a_yes_from_a_person_confirms() {
        assert_eq!(
            answer(&by(MenuChoice::Acknowledge, Via::Dtmf), false),
            Answer::Confirm
        );
        assert_eq!(
            answer(&by(MenuChoice::Acknowledge, Via::Speech), false),
            Answer::PressOne
        );
        assert_eq!(
            answer(&by(MenuChoice::Acknowledge, Via::Speech), true),
            Answer::Confirm
        );
        for choice in [
            MenuChoice::ConnectRoom,
            MenuChoice::Details,
            MenuChoice::JoinConference,
        ] {
            assert_eq!(answer(&by(choice, Via::Dtmf), true), Answer::NotUnderstood);
        }
        assert_eq!(
            answer(&by(MenuChoice::Decline, Via::Dtmf), true),
            Answer::Decline
        );
    }

    #[test]
    fn the_menu_asks_twice_more_then_says_goodbye() {
        assert_eq!(
            greeting(false).text(),
            "This is a test call from alertcall. Press 1 to confirm you can hear this."
        );
        assert!(greeting(true).text().ends_with("You can also say yes."));
        assert!(ask_again(0, false).awaits_input());
        assert!(ask_again(1, false).text().starts_with(menu::NOT_UNDERSTOOD));
        assert!(ask_again(2, false).ends_call());
    }

    #[test]
    fn outcomes_say_what_happened_and_what_to_do() {
        assert_eq!(
            TestCallState::Failed.describe(Some("Vonage answered 400 Bad Request: Invalid number")),
            "the call failed: Vonage answered 400 Bad Request: Invalid number"
        );
        assert_eq!(TestCallState::NoAnswer.describe(None), "nobody answered");
        assert!(
            TestCallState::HungUp
                .next_step()
                .contains("ALERTCALL_PUBLIC_URL")
        );
    }
}
