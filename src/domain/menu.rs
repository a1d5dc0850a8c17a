//! The keypad menu a nurse hears: what each key does, and what is said back.

/// How many times a nurse is asked again after an unknown key or silence before we hang up.
pub const MAX_REPROMPTS: i32 = 2;

/// What the call should do next, in provider-neutral words; each provider renders it
/// (Vonage as an NCCO, the simulator as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Say `text` (the keypad may interrupt it) and then wait for one key.
    Prompt { text: String },
    /// Say `text` and end the call.
    Say { text: String },
}

impl Reply {
    pub fn text(&self) -> &str {
        match self {
            Reply::Prompt { text } | Reply::Say { text } => text,
        }
    }

    pub fn ends_call(&self) -> bool {
        matches!(self, Reply::Say { .. })
    }
}

/// What a key press means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuChoice {
    Acknowledge,
    Repeat,
    /// 3: "I cannot respond": escalate to the next step at once.
    Decline,
    /// An unknown key or no key at all.
    NotUnderstood,
}

impl MenuChoice {
    /// Only the first key counts (the menu asks for one digit).
    pub fn from_digits(digits: &str) -> MenuChoice {
        match digits.trim().chars().next() {
            Some('1') => MenuChoice::Acknowledge,
            Some('2') => MenuChoice::Repeat,
            Some('3') => MenuChoice::Decline,
            _ => MenuChoice::NotUnderstood,
        }
    }
}

pub const MENU: &str = "Press 1 to acknowledge this alert. Press 2 to hear it again. \
                        Press 3 if you cannot respond.";
pub const DECLINED: &str = "Understood. The next person is being called. Goodbye.";
pub const ACKNOWLEDGED: &str = "Alert acknowledged. Thank you.";
pub const ALREADY_HANDLED: &str =
    "This alert has already been acknowledged or resolved. No action is needed. Goodbye.";
pub const NOT_UNDERSTOOD: &str = "Sorry, I did not get that.";
pub const GOODBYE: &str = "No acknowledgement was received. Goodbye.";
pub const UNKNOWN_CALL: &str = "Sorry, this call does not match an open alert. Goodbye.";

/// The reply to a key that is not 1, given how many times the nurse has been re-prompted before.
pub fn reprompt_or_goodbye(reprompts_before: i32) -> Reply {
    if reprompts_before < MAX_REPROMPTS {
        Reply::Prompt {
            text: format!("{NOT_UNDERSTOOD} {MENU}"),
        }
    } else {
        Reply::Say {
            text: GOODBYE.to_string(),
        }
    }
}

/// The announcement followed by the menu: what the nurse hears when they pick up, and after 2.
pub fn announcement_prompt(announcement: &str) -> Reply {
    Reply::Prompt {
        text: format!("{announcement} {MENU}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_choices() {
        assert_eq!(MenuChoice::from_digits("1"), MenuChoice::Acknowledge);
        assert_eq!(MenuChoice::from_digits(" 1"), MenuChoice::Acknowledge);
        assert_eq!(MenuChoice::from_digits("2"), MenuChoice::Repeat);
        assert_eq!(MenuChoice::from_digits("3"), MenuChoice::Decline);
        assert_eq!(MenuChoice::from_digits("9"), MenuChoice::NotUnderstood);
        assert_eq!(MenuChoice::from_digits(""), MenuChoice::NotUnderstood);
        assert_eq!(MenuChoice::from_digits("*"), MenuChoice::NotUnderstood);
    }

    #[test]
    fn reprompts_twice_then_says_goodbye() {
        assert!(matches!(reprompt_or_goodbye(0), Reply::Prompt { .. }));
        assert!(matches!(reprompt_or_goodbye(1), Reply::Prompt { .. }));
        assert_eq!(
            reprompt_or_goodbye(2),
            Reply::Say {
                text: GOODBYE.into()
            }
        );
    }
}
