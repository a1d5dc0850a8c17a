//! The spoken (and later texted) announcement of an alert. One renderer for every channel.

use crate::domain::alert::Alert;

/// Vonage reads at most 1,500 characters of `talk` text; leave room for the menu.
const MAX_ANNOUNCEMENT_CHARS: usize = 1200;

/// What goes into an announcement besides the alert itself.
#[derive(Debug, Clone)]
pub struct MessageSettings {
    pub hospital_name: String,
    /// Units may choose to keep patient names out of what is spoken and texted.
    pub include_patient_name: bool,
}

/// "Critical alert at Haven Hospital. Room 2, patient Dheeraj Vislawath. Seizure activity
/// detected. Please respond immediately."
pub fn announcement(alert: &Alert, settings: &MessageSettings) -> String {
    let mut out = format!(
        "{} alert at {}.",
        capitalise(&clean(&alert.severity)),
        clean(&settings.hospital_name)
    );
    push_place_and_what(&mut out, alert, settings);
    out.push_str(" Please respond immediately.");
    truncate_chars(out, MAX_ANNOUNCEMENT_CHARS)
}

/// How another person called about the alert has responded, for the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Acknowledged,
    Declined,
    InConference,
    OnThePhone,
    BeingCalled,
    NoAnswer,
    Unreachable,
}

impl Response {
    fn words(self) -> &'static str {
        match self {
            Response::Acknowledged => "acknowledged",
            Response::Declined => "declined",
            Response::InConference => "is in the responders' call",
            Response::OnThePhone => "answered but has not acknowledged",
            Response::BeingCalled => "is being called",
            Response::NoAnswer => "did not respond",
            Response::Unreachable => "could not be reached",
        }
    }
}

/// What the details say besides the alert itself (gathered by the engine).
#[derive(Debug, Clone)]
pub struct DetailFacts {
    /// How long ago the alert was triggered, in whole minutes.
    pub minutes_ago: i64,
    /// The local clock time it was triggered, e.g. "20:15", when the hospital's zone is known.
    pub local_time: Option<String>,
    pub escalations: usize,
    /// Everyone else called, by name, with how they responded.
    pub others: Vec<(String, Response)>,
    /// Whether this unit lets patient names be repeated in the details.
    pub include_patient_name: bool,
}

/// "Details. This is a seizure alert, triggered 4 minutes ago, at 20:15. It has been escalated
/// 1 time. Also called: Ben Okafor, did not respond. Room 2, patient Dheeraj Vislawath.
/// Seizure activity detected."
pub fn details(alert: &Alert, facts: &DetailFacts) -> String {
    let kind = alert
        .alert_type
        .as_deref()
        .or(alert.title.as_deref())
        .map(clean)
        .filter(|k| !k.is_empty())
        .map(|k| k.replace('_', " "))
        .unwrap_or_else(|| clean(&alert.severity));
    let ago = match facts.minutes_ago {
        m if m <= 0 => "less than a minute ago".to_string(),
        1 => "1 minute ago".to_string(),
        m => format!("{m} minutes ago"),
    };
    let mut out = format!("Details. This is a {kind} alert, triggered {ago}");
    if let Some(at) = &facts.local_time {
        out.push_str(&format!(", at {}", clean(at)));
    }
    out.push('.');
    out.push_str(&match facts.escalations {
        0 => " It has not been escalated.".to_string(),
        1 => " It has been escalated 1 time.".to_string(),
        n => format!(" It has been escalated {n} times."),
    });
    if facts.others.is_empty() {
        out.push_str(" Nobody else has been called.");
    } else {
        let others: Vec<String> = facts
            .others
            .iter()
            .map(|(name, response)| format!("{}, {}", clean(name), response.words()))
            .collect();
        out.push_str(&format!(" Also called: {}.", others.join("; ")));
    }
    push_place_and_what(
        &mut out,
        alert,
        &MessageSettings {
            hospital_name: String::new(),
            include_patient_name: facts.include_patient_name,
        },
    );
    truncate_chars(out, MAX_ANNOUNCEMENT_CHARS)
}

/// " <room, patient>. <what happened>": the same words in the announcement and the details.
fn push_place_and_what(out: &mut String, alert: &Alert, settings: &MessageSettings) {
    let place = place(alert, settings);
    if !place.is_empty() {
        out.push(' ');
        out.push_str(&place);
        out.push('.');
    }
    if let Some(what) = what(alert) {
        out.push(' ');
        out.push_str(&what);
    }
}

/// "Room 2", or the room id when the room has no name.
pub fn room_label(alert: &Alert) -> String {
    room(alert).unwrap_or_else(|| "The room".to_string())
}

/// Room labels come from the hospital's database: a long one must not push what is said past
/// the 1,500 characters Vonage speaks, nor bury the menu after it.
const MAX_ROOM_CHARS: usize = 80;

fn room(alert: &Alert) -> Option<String> {
    alert
        .room_name
        .as_deref()
        .or(alert.room_id.as_deref())
        .map(clean)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let r = truncate_chars(r, MAX_ROOM_CHARS);
            if r.to_lowercase().starts_with("room") {
                r
            } else {
                format!("Room {r}")
            }
        })
}

/// "Room 2, patient Dheeraj Vislawath" (the name only when the settings allow it).
fn place(alert: &Alert, settings: &MessageSettings) -> String {
    let patient = settings
        .include_patient_name
        .then(|| alert.patient_name.as_deref().map(clean))
        .flatten()
        .filter(|p| !p.is_empty())
        .map(|p| format!("patient {p}"));
    let place: Vec<String> = room(alert).into_iter().chain(patient).collect();
    place.join(", ")
}

/// The alert's own words, ending with a full stop.
fn what(alert: &Alert) -> Option<String> {
    let what = alert
        .message
        .as_deref()
        .or(alert.title.as_deref())
        .or(alert.alert_type.as_deref())
        .map(clean)
        .filter(|m| !m.is_empty())?;
    Some(if what.ends_with(['.', '!', '?']) {
        what
    } else {
        format!("{what}.")
    })
}

/// The patient's name as calls and texts write it, whether or not they include it.
pub fn patient_name(alert: &Alert) -> Option<String> {
    alert
        .patient_name
        .as_deref()
        .map(clean)
        .filter(|n| !n.is_empty())
}

/// Text from the database is spoken by a TTS engine: drop control characters and markup
/// that SSML would interpret, and collapse white space.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '<' | '>'))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "Alert".to_string(),
    }
}

fn truncate_chars(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((byte, _)) => s[..byte].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::AlertStatus;
    use chrono::Utc;

    fn alert() -> Alert {
        Alert {
            id: "a1".into(),
            patient_id: Some("P001".into()),
            patient_name: Some("Dheeraj Vislawath".into()),
            room_id: Some("r2".into()),
            room_name: Some("Room 2".into()),
            severity: "critical".into(),
            status: AlertStatus::Active,
            alert_type: Some("seizure".into()),
            title: None,
            message: Some("Seizure activity detected".into()),
            triggered_at: Utc::now(),
            unreadable_triggered_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
        }
    }

    fn settings(include_patient_name: bool) -> MessageSettings {
        MessageSettings {
            hospital_name: "Haven Hospital".into(),
            include_patient_name,
        }
    }

    #[test]
    fn reads_like_the_seed() {
        assert_eq!(
            announcement(&alert(), &settings(true)),
            "Critical alert at Haven Hospital. Room 2, patient Dheeraj Vislawath. \
             Seizure activity detected. Please respond immediately."
        );
    }

    #[test]
    fn can_leave_the_patient_name_out() {
        let text = announcement(&alert(), &settings(false));
        assert!(!text.contains("Dheeraj"), "{text}");
        assert!(text.contains("Room 2."), "{text}");
    }

    #[test]
    fn copes_with_missing_fields_and_hostile_text() {
        let mut a = alert();
        a.room_name = None;
        a.room_id = Some("12".into());
        a.patient_name = None;
        a.message = Some("<speak>bad</speak>\n\u{7}  x".into());
        let text = announcement(&a, &settings(true));
        assert_eq!(
            text,
            "Critical alert at Haven Hospital. Room 12. speakbad/speak x. Please respond immediately."
        );
        a.message = Some("é".repeat(5000));
        assert_eq!(
            announcement(&a, &settings(true)).chars().count(),
            MAX_ANNOUNCEMENT_CHARS
        );
    }

    fn facts(include_patient_name: bool) -> DetailFacts {
        DetailFacts {
            minutes_ago: 4,
            local_time: Some("20:15".into()),
            escalations: 1,
            others: vec![
                ("Ben Okafor".into(), Response::NoAnswer),
                ("Eve Lind".into(), Response::InConference),
            ],
            include_patient_name,
        }
    }

    #[test]
    fn details_say_what_when_who_and_where() {
        assert_eq!(
            details(&alert(), &facts(true)),
            "Details. This is a seizure alert, triggered 4 minutes ago, at 20:15. It has been \
             escalated 1 time. Also called: Ben Okafor, did not respond; Eve Lind, is in the \
             responders' call. Room 2, patient Dheeraj Vislawath. Seizure activity detected."
        );
        let private = details(&alert(), &facts(false));
        assert!(!private.contains("Dheeraj"), "{private}");
        assert!(private.contains("Room 2."), "{private}");
        let mut quiet = facts(false);
        quiet.others.clear();
        quiet.escalations = 0;
        quiet.minutes_ago = 0;
        quiet.local_time = None;
        let text = details(&alert(), &quiet);
        assert!(
            text.starts_with(
                "Details. This is a seizure alert, triggered less than a minute ago. It has not \
                 been escalated. Nobody else has been called."
            ),
            "{text}"
        );
    }
}
