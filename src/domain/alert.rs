//! Alerts as the hospital's `alerts` table holds them.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The severity that alertcall pages for, exactly as the hospital app writes it.
pub const CRITICAL: &str = "critical";

/// One alert row, joined with the patient's and room's names.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub room_id: Option<String>,
    pub room_name: Option<String>,
    pub severity: String,
    pub status: AlertStatus,
    pub alert_type: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
    /// When the alert was triggered, or, when `alerts.triggered_at` could not be read, when
    /// alertcall first saw it.
    pub triggered_at: DateTime<Utc>,
    /// `alerts.triggered_at` as written, when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable_triggered_at: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
}

impl Alert {
    /// The hospital's app may write any case (`Critical`, `CRITICAL`): all are critical.
    pub fn is_critical(&self) -> bool {
        self.severity.eq_ignore_ascii_case(CRITICAL)
    }
}

/// Why alertcall does not call about an alert it first saw older than `max_age`
/// (`ALERTCALL_MAX_ALERT_AGE`): "skipped: older than 24 h when alertcall started".
pub fn skipped_reason(max_age: std::time::Duration) -> String {
    format!(
        "skipped: older than {} when alertcall started",
        human_duration(max_age)
    )
}

/// "24 h", "90 min", "45 s": a setting as people write it.
pub fn human_duration(d: std::time::Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `alerts.status`. The hospital app may write values we do not know; they are kept verbatim
/// and treated as "no longer needs paging" only when they are not `active`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Resolved,
    Other(String),
}

impl AlertStatus {
    pub fn parse(s: &str) -> AlertStatus {
        match s {
            "active" => AlertStatus::Active,
            "acknowledged" => AlertStatus::Acknowledged,
            "resolved" => AlertStatus::Resolved,
            other => AlertStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Other(s) => s,
        }
    }

    /// Whether somebody still has to be told about this alert.
    pub fn needs_paging(&self) -> bool {
        *self == AlertStatus::Active
    }
}

impl From<AlertStatus> for String {
    fn from(value: AlertStatus) -> Self {
        value.as_str().to_string()
    }
}

/// What `alertcall alert raise` and the API insert, the way the hospital app would.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub severity: String,
    pub patient_id: Option<String>,
    /// A room id, or a room name that is looked up in `rooms`.
    pub room: Option<String>,
    pub alert_type: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
}

/// Who acknowledged an alert, as written to `alerts.acknowledged_by`: never blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledger(String);

impl Acknowledger {
    /// A nurse who pressed 1 on the phone: identified by the number that was called.
    pub fn phone(number: &crate::domain::phone::Phone) -> Self {
        Acknowledger(format!("phone:{}", number.e164()))
    }

    /// Someone acting through the CLI, API or dashboard.
    pub fn named(via: &str, who: &str) -> Self {
        let who = who.trim();
        let who = if who.is_empty() { "unknown" } else { who };
        Acknowledger(format!("{via}:{who}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: a phone number in it is masked (`sms:+1385*****51`).
    pub fn for_log(&self) -> String {
        match self.0.split_once(':') {
            Some((via, who)) => match crate::domain::phone::Phone::parse(who) {
                Ok(phone) => format!("{via}:{}", phone.masked()),
                Err(_) => self.0.clone(),
            },
            None => self.0.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_alerts_say_the_real_age_setting() {
        let h = |s| std::time::Duration::from_secs(s);
        assert_eq!(
            skipped_reason(h(86_400)),
            "skipped: older than 24 h when alertcall started"
        );
        assert_eq!(human_duration(h(172_800)), "48 h");
        assert_eq!(human_duration(h(5_400)), "90 min");
        assert_eq!(human_duration(h(45)), "45 s");
    }
    use crate::domain::phone::Phone;

    #[test]
    fn logs_show_who_acknowledged_with_numbers_masked() {
        let phone = Phone::parse("+13854019951").unwrap();
        let sms = Acknowledger::named("sms", phone.e164());
        assert_eq!(sms.as_str(), "sms:+13854019951");
        assert!(!sms.for_log().contains("4019951"), "{}", sms.for_log());
        assert!(sms.for_log().starts_with("sms:+1"));
        assert_eq!(
            Acknowledger::named("dashboard", "eve").for_log(),
            "dashboard:eve"
        );
    }
}
