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
    let room = alert
        .room_name
        .as_deref()
        .or(alert.room_id.as_deref())
        .map(clean)
        .filter(|r| !r.is_empty())
        .map(|r| {
            if r.to_lowercase().starts_with("room") {
                r
            } else {
                format!("Room {r}")
            }
        });
    let patient = settings
        .include_patient_name
        .then(|| alert.patient_name.as_deref().map(clean))
        .flatten()
        .filter(|p| !p.is_empty())
        .map(|p| format!("patient {p}"));
    let place: Vec<String> = room.into_iter().chain(patient).collect();
    if !place.is_empty() {
        out.push(' ');
        out.push_str(&place.join(", "));
        out.push('.');
    }
    let what = alert
        .message
        .as_deref()
        .or(alert.title.as_deref())
        .or(alert.alert_type.as_deref())
        .map(clean)
        .filter(|m| !m.is_empty());
    if let Some(what) = what {
        out.push(' ');
        out.push_str(&what);
        if !what.ends_with(['.', '!', '?']) {
            out.push('.');
        }
    }
    out.push_str(" Please respond immediately.");
    truncate_chars(out, MAX_ANNOUNCEMENT_CHARS)
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
}
