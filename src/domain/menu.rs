//! The call menu a nurse hears: what each key (or spoken answer) does, and what is said back.

use crate::domain::phone::Phone;

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
    /// Say `text`, then connect the call to `to` (the room's intercom or video gateway).
    Connect { text: String, to: Destination },
    /// Say `text`, then join the named conference of the alert's responders.
    Conference { text: String, name: String },
}

impl Reply {
    pub fn text(&self) -> &str {
        match self {
            Reply::Prompt { text }
            | Reply::Say { text }
            | Reply::Connect { text, .. }
            | Reply::Conference { text, .. } => text,
        }
    }

    /// Whether the phone waits for a key (or an answer) after this reply.
    pub fn awaits_input(&self) -> bool {
        matches!(self, Reply::Prompt { .. })
    }

    pub fn ends_call(&self) -> bool {
        matches!(self, Reply::Say { .. })
    }
}

/// Where a call can be connected: a phone number or a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Phone(Phone),
    /// `sip:` or `sips:` URI.
    Sip(String),
}

impl Destination {
    /// `sip:room2@intercom.example.org`, `sips:...`, or an E.164 number.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("sip:") || lower.starts_with("sips:") {
            let rest = &text[text.find(':').map_or(0, |i| i + 1)..];
            if rest.is_empty()
                || text.len() > 256
                || text.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(format!(
                    "{text:?} is not a SIP URI such as sip:room2@intercom.example.org"
                ));
            }
            return Ok(Destination::Sip(text.to_string()));
        }
        Phone::parse(text)
            .map(Destination::Phone)
            .map_err(|e| format!("must be a phone number in E.164 form or a sip: URI ({e})"))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Phone(_) => "phone",
            Destination::Sip(_) => "sip",
        }
    }

    /// For logs and the audit trail: phone numbers masked, SIP URIs without their user part.
    pub fn masked(&self) -> String {
        match self {
            Destination::Phone(p) => p.masked(),
            Destination::Sip(uri) => match uri.split_once('@') {
                Some((user, host)) => {
                    let scheme = user.split(':').next().unwrap_or("sip");
                    format!("{scheme}:***@{host}")
                }
                None => uri.clone(),
            },
        }
    }
}

/// What a key press (or a spoken answer) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuChoice {
    Acknowledge,
    Repeat,
    /// 3: "I cannot respond": escalate to the next step at once.
    Decline,
    /// 9: the alert's details (type, time, escalations, who else was called).
    Details,
    /// 4: acknowledge, then connect to the alert's room.
    ConnectRoom,
    /// 5: join the responders' conference of this alert (does not acknowledge).
    JoinConference,
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
            Some('4') => MenuChoice::ConnectRoom,
            Some('5') => MenuChoice::JoinConference,
            Some('9') => MenuChoice::Details,
            _ => MenuChoice::NotUnderstood,
        }
    }

    /// Whether this choice acknowledges the alert.
    pub fn acknowledges(self) -> bool {
        matches!(self, MenuChoice::Acknowledge | MenuChoice::ConnectRoom)
    }

    /// The name recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            MenuChoice::Acknowledge => "acknowledge",
            MenuChoice::Repeat => "repeat",
            MenuChoice::Decline => "decline",
            MenuChoice::Details => "details",
            MenuChoice::ConnectRoom => "connect_room",
            MenuChoice::JoinConference => "join_conference",
            MenuChoice::NotUnderstood => "not_understood",
        }
    }
}

/// The first three keys, as the seed's nurses know them.
pub const MENU: &str = "Press 1 to acknowledge this alert. Press 2 to hear it again. \
                        Press 3 if you cannot respond.";

/// What the menu offers beyond the first three keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MenuOptions {
    /// The alert's room has a destination to connect to (key 4).
    pub connect: bool,
    /// Spoken answers are understood.
    pub speech: bool,
}

/// The whole menu, as spoken after the announcement.
pub fn menu_text(options: MenuOptions) -> String {
    let mut text = format!("{MENU} Press 9 for details, or 5 to join the responders' call.");
    if options.connect {
        text.push_str(" Press 4 to be connected to the room.");
    }
    if options.speech {
        text.push_str(" You can also say yes, repeat, details, or busy.");
    }
    text
}

/// The conference every responder of one alert joins (deterministic, so every instance and
/// every call picks the same one).
pub fn conference_name(alert_id: &str) -> String {
    let safe: String = alert_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    format!("alertcall-{safe}")
}

pub const JOINING_CONFERENCE: &str = "Joining the responders' call for this alert. \
                                      This does not acknowledge the alert.";
pub const DECLINED: &str = "Understood. The next person is being called. Goodbye.";
pub const ACKNOWLEDGED: &str = "Alert acknowledged. Thank you.";
pub const ALREADY_HANDLED: &str =
    "This alert has already been acknowledged or resolved. No action is needed. Goodbye.";
pub const NOT_UNDERSTOOD: &str = "Sorry, I did not get that.";
pub const GOODBYE: &str = "No acknowledgement was received. Goodbye.";
pub const UNKNOWN_CALL: &str = "Sorry, this call does not match an open alert. Goodbye.";

/// "Room 12 has no connection configured." and the menu again; the call goes on.
pub fn no_destination(room: &str, options: MenuOptions) -> Reply {
    Reply::Prompt {
        text: format!(
            "{room} has no connection configured, so the call cannot be connected. {}",
            menu_text(options)
        ),
    }
}

/// The reply to a key that is not understood, given how many times the nurse has been
/// re-prompted before.
pub fn reprompt_or_goodbye(reprompts_before: i32, options: MenuOptions) -> Reply {
    if reprompts_before < MAX_REPROMPTS {
        Reply::Prompt {
            text: format!("{NOT_UNDERSTOOD} {}", menu_text(options)),
        }
    } else {
        Reply::Say {
            text: GOODBYE.to_string(),
        }
    }
}

/// The announcement followed by the menu: what the nurse hears when they pick up, and after 2.
pub fn announcement_prompt(announcement: &str, options: MenuOptions) -> Reply {
    Reply::Prompt {
        text: format!("{announcement} {}", menu_text(options)),
    }
}

/// The details followed by the menu (after 9 or "details").
pub fn details_prompt(details: &str, options: MenuOptions) -> Reply {
    Reply::Prompt {
        text: format!("{details} {}", menu_text(options)),
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
        assert_eq!(MenuChoice::from_digits("4"), MenuChoice::ConnectRoom);
        assert_eq!(MenuChoice::from_digits("5"), MenuChoice::JoinConference);
        assert_eq!(MenuChoice::from_digits("9"), MenuChoice::Details);
        assert_eq!(MenuChoice::from_digits("7"), MenuChoice::NotUnderstood);
        assert_eq!(MenuChoice::from_digits(""), MenuChoice::NotUnderstood);
        assert_eq!(MenuChoice::from_digits("*"), MenuChoice::NotUnderstood);
    }

    #[test]
    fn reprompts_twice_then_says_goodbye() {
        let o = MenuOptions::default();
        assert!(matches!(reprompt_or_goodbye(0, o), Reply::Prompt { .. }));
        assert!(matches!(reprompt_or_goodbye(1, o), Reply::Prompt { .. }));
        assert_eq!(
            reprompt_or_goodbye(2, o),
            Reply::Say {
                text: GOODBYE.into()
            }
        );
    }

    #[test]
    fn the_menu_offers_what_the_alert_has() {
        let plain = menu_text(MenuOptions::default());
        assert!(plain.starts_with(MENU), "{plain}");
        assert!(plain.contains("Press 9") && plain.contains("5 to join"));
        assert!(!plain.contains("Press 4") && !plain.contains("say yes"));
        let all = menu_text(MenuOptions {
            connect: true,
            speech: true,
        });
        assert!(all.contains("Press 4") && all.contains("say yes"), "{all}");
    }

    #[test]
    fn destinations_parse_and_mask() {
        let sip = Destination::parse("sip:room2@intercom.example.org").unwrap();
        assert_eq!(sip.kind(), "sip");
        assert_eq!(sip.masked(), "sip:***@intercom.example.org");
        let phone = Destination::parse("+13855550102").unwrap();
        assert_eq!(phone.kind(), "phone");
        assert!(!phone.masked().contains("5550102"));
        assert!(Destination::parse("sips:video@gw.example.org").is_ok());
        for bad in ["sip:", "sip:a b@x", "555", "room 2", ""] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conference_names_are_stable_and_safe() {
        let id = "5b9f0a7e-2c1d-4e8f-9a3b-0c1d2e3f4a5b";
        assert_eq!(conference_name(id), format!("alertcall-{id}"));
        assert_eq!(conference_name("a b;c"), "alertcall-abc");
    }
}
