//! The call menu a nurse hears: what each key (or spoken answer) does, and what is said back.

use chrono::{DateTime, Utc};

use crate::domain::escalation::Ahead;
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
    /// `sip:room2@intercom.example.org`, `sips:...`, or an E.164 number. The scheme is written
    /// in lower case whatever the configuration says: Vonage accepts only `^sips?:`.
    pub fn parse(text: &str) -> Result<Destination, String> {
        let text = text.trim();
        if let Some((scheme, rest)) = text.split_once(':')
            && ["sip", "sips"].contains(&scheme.to_ascii_lowercase().as_str())
        {
            let ok = text.len() <= 256
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
                && sip_host(rest).is_some();
            if !ok {
                return Err(format!(
                    "{text:?} is not a SIP URI such as sip:room2@intercom.example.org"
                ));
            }
            return Ok(Destination::Sip(format!(
                "{}:{rest}",
                scheme.to_ascii_lowercase()
            )));
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

/// The host of a SIP URI after its scheme (`user@host:port;params?headers`), if it has one:
/// without a host there is nothing to connect to.
fn sip_host(rest: &str) -> Option<&str> {
    let address = rest.split([';', '?']).next().unwrap_or("");
    let host_port = match address.rsplit_once('@') {
        Some(("", _)) => return None,
        Some((_, host_port)) => host_port,
        None => address,
    };
    let (host, allowed): (&str, fn(char) -> bool) = match host_port.strip_prefix('[') {
        // An IPv6 reference: `[2001:db8::1]:5061`.
        Some(v6) => (v6.split_once(']')?.0, |c| {
            c.is_ascii_hexdigit() || c == ':' || c == '.'
        }),
        None => (host_port.split(':').next().unwrap_or(""), |c| {
            c.is_ascii_alphanumeric() || c == '.' || c == '-'
        }),
    };
    (!host.is_empty() && host.chars().all(allowed)).then_some(host)
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

/// The whole menu, as spoken after the announcement. It must stay short: the announcement
/// takes up to 1,200 of the 1,500 characters Vonage speaks.
pub fn menu_text(options: MenuOptions) -> String {
    let mut text = format!("{MENU} Press 9 for details, or 5 to join the responders' call.");
    if options.connect {
        text.push_str(" Press 4 to be connected to the room.");
    }
    if options.speech {
        // The phrases the speech matcher takes for each key (domain::intent).
        let connect = if options.connect { " connect me," } else { "" };
        text.push_str(&format!(
            " You can also say yes, repeat, details, busy,{connect} or join the call."
        ));
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
pub const ACKNOWLEDGED: &str = "Alert acknowledged. Thank you.";
/// Said when the room's leg of a connected call ends (or never answers): the nurse is not left
/// in silence, and knows the acknowledgement stands.
pub const CONNECTION_ENDED: &str =
    "The connection to the room has ended. The alert stays acknowledged. Goodbye.";
pub const ALREADY_HANDLED: &str =
    "This alert has already been acknowledged or resolved. No action is needed. Goodbye.";
pub const NOT_UNDERSTOOD: &str = "Sorry, I did not get that.";
pub const GOODBYE: &str = "No acknowledgement was received. Goodbye.";
pub const UNKNOWN_CALL: &str = "Sorry, this call does not match an open alert. Goodbye.";

/// Someone an escalation will notify, as the nurse on the phone is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    /// The person on this call.
    pub is_caller: bool,
}

/// "Dev Patel", "Dev Patel and Sam Lee", "Dev Patel, Sam Lee and Ana Ruiz".
fn and_list(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What a nurse who pressed 3 (or said "busy") hears: what the escalation will actually do
/// next. `clock` gives an instant's wall-clock time in the hospital's zone; `fallback` names
/// the hospital's fallback contacts when there are any (empty: a number without a name).
pub fn after_decline(
    ahead: &Ahead<Named>,
    now: DateTime<Utc>,
    clock: &dyn Fn(DateTime<Utc>) -> String,
    fallback: Option<&[String]>,
) -> String {
    let names = |people: &[Named], caller: bool| -> Vec<String> {
        people
            .iter()
            .filter(|p| p.is_caller == caller)
            .map(|p| p.name.clone())
            .collect()
    };
    let said = match ahead {
        Ahead::Over => return ALREADY_HANDLED.into(),
        Ahead::Notify { people, by_text } => {
            let (verb, done) = match by_text {
                true => ("Texting", "texted"),
                false => ("Calling", "called"),
            };
            let others = names(people, false);
            match (others.is_empty(), people.iter().any(|p| p.is_caller)) {
                (true, _) => format!("You will be {done} again straight away."),
                (false, false) => format!("{verb} {} next.", and_list(&others)),
                (false, true) => format!("{verb} {} next, and you again.", and_list(&others)),
            }
        }
        Ahead::Waiting { .. } => "Others are still being called for this alert.".into(),
        Ahead::Again {
            at,
            people,
            just_now,
        } => {
            let minutes = ((*at - now).num_seconds().max(0) + 30) / 60;
            let when = match minutes {
                0 | 1 => format!("at {}, in about a minute", clock(*at)),
                m => format!("at {}, in {m} minutes", clock(*at)),
            };
            let mut who = names(people, false);
            let again = if people.iter().any(|p| p.is_caller) {
                who.insert(0, "You".into());
                format!("{} will be called again {when}.", and_list(&who))
            } else if who.is_empty() {
                format!("Nobody on the rota can be called now; it is tried again {when}.")
            } else {
                format!("{} will be called again {when}.", and_list(&who))
            };
            let told = if *just_now {
                "is being told"
            } else {
                "has been told"
            };
            let fallback = match fallback {
                None => String::new(),
                Some([]) => format!(" The hospital's fallback contact {told}."),
                Some(names) => format!(
                    " {}, the hospital's fallback contact, {told}.",
                    and_list(names)
                ),
            };
            format!("There is nobody else on the rota. {again}{fallback}")
        }
    };
    format!("Understood. {said} Goodbye.")
}

/// "Alert acknowledged. Thank you. Connecting you to Room 2."
pub fn connecting(room: &str) -> String {
    format!("{ACKNOWLEDGED} Connecting you to {room}.")
}

/// "Room 12 has no connection configured." and the menu again; the call goes on.
pub fn no_destination(room: &str, options: MenuOptions) -> Reply {
    Reply::Prompt {
        text: format!(
            "{room} has no connection configured, so the call cannot be connected. {}",
            menu_text(options)
        ),
    }
}

/// "Sorry, I did not get that." and the menu again.
pub fn ask_again(options: MenuOptions) -> Reply {
    Reply::Prompt {
        text: format!("{NOT_UNDERSTOOD} {}", menu_text(options)),
    }
}

/// The reply to a key that is not understood, given how many times the nurse has been
/// re-prompted before.
pub fn reprompt_or_goodbye(reprompts_before: i32, options: MenuOptions) -> Reply {
    if reprompts_before < MAX_REPROMPTS {
        ask_again(options)
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
        assert!(
            all.ends_with("say yes, repeat, details, busy, connect me, or join the call."),
            "{all}"
        );
        let no_room = menu_text(MenuOptions {
            connect: false,
            speech: true,
        });
        assert!(
            no_room.ends_with("say yes, repeat, details, busy, or join the call."),
            "{no_room}"
        );
        // Every phrase offered is one the matcher understands as its key.
        use crate::domain::intent::match_speech;
        for (said, key) in [
            ("yes", "1"),
            ("repeat", "2"),
            ("busy", "3"),
            ("connect me", "4"),
            ("join the call", "5"),
            ("details", "9"),
        ] {
            assert_eq!(match_speech(said), MenuChoice::from_digits(key), "{said}");
        }
    }

    #[test]
    fn replies_stay_within_what_vonage_speaks() {
        let all = MenuOptions {
            connect: true,
            speech: true,
        };
        // The longest announcement the renderer makes, then the whole menu.
        let alert = crate::domain::alert::Alert {
            id: "a1".into(),
            patient_id: Some("P001".into()),
            patient_name: Some("N".repeat(5000)),
            room_id: None,
            room_name: Some("R".repeat(5000)),
            severity: "critical".into(),
            status: crate::domain::alert::AlertStatus::Active,
            alert_type: None,
            title: None,
            message: Some("x".repeat(5000)),
            triggered_at: chrono::Utc::now(),
            unreadable_triggered_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
        };
        let settings = crate::domain::message::MessageSettings {
            hospital_name: "H".repeat(5000),
            include_patient_name: true,
        };
        let announced = crate::domain::message::announcement(&alert, &settings);
        // The label every reply names the room by (capped where it is made).
        let long_room = crate::domain::message::room_label(&alert);
        assert!(long_room.chars().count() <= 100, "{long_room}");
        for text in [
            announcement_prompt(&announced, all).text().to_string(),
            no_destination(&long_room, all).text().to_string(),
            connecting(&long_room),
        ] {
            assert!(text.chars().count() <= 1500, "{} characters", text.len());
        }
        assert!(no_destination(&long_room, all).text().contains("Press 1"));
    }

    #[test]
    fn a_decline_is_told_what_happens_next() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let at = now + chrono::Duration::minutes(5);
        let clock = |t: DateTime<Utc>| if t == at { "10:35".into() } else { "?".into() };
        let person = |name: &str, is_caller| Named {
            name: name.into(),
            is_caller,
        };
        let say = |ahead: Ahead<Named>, fallback: Option<&[String]>| {
            after_decline(&ahead, now, &clock, fallback)
        };
        let notify = |people, by_text| Ahead::Notify { people, by_text };
        assert_eq!(
            say(notify(vec![person("Dev Patel", false)], false), None),
            "Understood. Calling Dev Patel next. Goodbye."
        );
        assert_eq!(
            say(
                notify(
                    vec![person("Dev Patel", false), person("Sam Lee", false)],
                    true
                ),
                None
            ),
            "Understood. Texting Dev Patel and Sam Lee next. Goodbye."
        );
        assert_eq!(
            say(notify(vec![person("Ana", true)], false), None),
            "Understood. You will be called again straight away. Goodbye."
        );
        let again = |people, just_now| Ahead::Again {
            at,
            people,
            just_now,
        };
        assert_eq!(
            say(again(vec![person("Ana", true)], true), None),
            "Understood. There is nobody else on the rota. You will be called again at 10:35, \
             in 5 minutes. Goodbye."
        );
        let desk = ["Charge desk".to_string()];
        assert_eq!(
            say(again(vec![person("Dev Patel", false)], true), Some(&desk)),
            "Understood. There is nobody else on the rota. Dev Patel will be called again at \
             10:35, in 5 minutes. Charge desk, the hospital's fallback contact, is being told. \
             Goodbye."
        );
        assert_eq!(
            say(again(vec![], false), Some(&[])),
            "Understood. There is nobody else on the rota. Nobody on the rota can be called \
             now; it is tried again at 10:35, in 5 minutes. The hospital's fallback contact \
             has been told. Goodbye."
        );
        assert_eq!(
            say(Ahead::Waiting { until: at }, None),
            "Understood. Others are still being called for this alert. Goodbye."
        );
        assert_eq!(say(Ahead::Over, None), ALREADY_HANDLED);
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
    fn sip_schemes_are_lower_case_and_need_a_host() {
        let sip = |text: &str| match Destination::parse(text) {
            Ok(Destination::Sip(uri)) => Ok(uri),
            other => Err(format!("{other:?}")),
        };
        // Vonage's schema: `^sips?:`, case-sensitive.
        assert_eq!(
            sip("SIP:room2@intercom.example.org").unwrap(),
            "sip:room2@intercom.example.org"
        );
        assert_eq!(
            sip(" Sips:Video@GW.example.org ").unwrap(),
            "sips:Video@GW.example.org"
        );
        for good in [
            "sip:intercom.example.org",
            "sip:room2@10.0.0.7:5060;transport=tcp",
            "sips:room2@[2001:db8::1]:5061",
            "sip:room2@intercom.example.org?subject=alert",
        ] {
            assert_eq!(sip(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "SIP:",
            "sips:",
            "sip:room2@",
            "sip:@intercom.example.org",
            "sip:;transport=tls",
            "sip:room2@:5060",
            "sip:room2@[]",
            "sip:room2@bad_host!",
        ] {
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
