//! The board's rules: the one word that says where an alert stands, and the order alerts are
//! shown in.

use chrono::{DateTime, Utc};

use crate::domain::call::{CallOutcome, CallRecord, CallStatus};
use crate::store::{PageState, PageView};

/// One word for the board: the alert's state if it is closed, else what its live calls (those
/// still ringing or in progress) are doing, else where its escalation is.
pub fn live_status(status: &str, page: Option<&PageView>, calling: &[CallRecord]) -> String {
    if status != "active" {
        return status.to_string();
    }
    if page.is_some_and(|p| p.state == PageState::Exhausted) {
        return "exhausted".into();
    }
    // In the calls' own words: someone picked up (nothing decided yet), else ringing.
    if calling.iter().any(|c| c.outcome() == CallOutcome::PickedUp) {
        return CallOutcome::PickedUp.label().into();
    }
    if calling.iter().any(|c| c.status == CallStatus::Ringing) {
        return CallOutcome::Ringing.label().into();
    }
    if !calling.is_empty() {
        return "calling".into();
    }
    match page {
        Some(p) if p.state == PageState::Stale => "skipped".into(),
        Some(p) => p.state.as_str().into(),
        None => "not paged".into(),
    }
}

/// Where an alert goes on the board: by severity (in any case), an exhausted alert before the
/// others of its severity, then the oldest first.
pub fn order(
    severity: &str,
    live_status: &str,
    triggered_at: DateTime<Utc>,
) -> (u8, bool, DateTime<Utc>) {
    (
        severity_rank(severity),
        live_status != "exhausted",
        triggered_at,
    )
}

fn severity_rank(severity: &str) -> u8 {
    match severity.to_ascii_lowercase().as_str() {
        "critical" => 0,
        "high" => 1,
        "medium" => 2,
        "low" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(state: PageState) -> PageView {
        PageView {
            state,
            step: 0,
            round: 0,
            policy: None,
            due_at: None,
            attempts: 0,
            last_error: None,
        }
    }

    fn call(status: CallStatus) -> CallRecord {
        CallRecord::example(status)
    }

    #[test]
    fn a_closed_alert_says_its_state_and_an_active_one_what_its_calls_do() {
        let waiting = page(PageState::Waiting);
        let exhausted = page(PageState::Exhausted);
        let stale = page(PageState::Stale);
        let ringing = [call(CallStatus::Initiated), call(CallStatus::Ringing)];
        let picked_up = [call(CallStatus::Ringing), call(CallStatus::InProgress)];
        let table: [(&str, Option<&PageView>, &[CallRecord], &str); 9] = [
            ("acknowledged", Some(&waiting), &ringing, "acknowledged"),
            ("resolved", None, &[], "resolved"),
            ("active", Some(&exhausted), &picked_up, "exhausted"),
            ("active", Some(&waiting), &picked_up, "picked up"),
            ("active", Some(&waiting), &ringing, "ringing"),
            (
                "active",
                Some(&waiting),
                &[call(CallStatus::Initiated)],
                "calling",
            ),
            ("active", Some(&waiting), &[], "waiting"),
            ("active", Some(&stale), &[], "skipped"),
            ("active", None, &[], "not paged"),
        ];
        for (status, page, calling, want) in table {
            assert_eq!(live_status(status, page, calling), want, "{status} {want}");
        }
    }

    #[test]
    fn critical_first_in_any_case_exhausted_first_within_a_severity_then_oldest() {
        let t = |s: i64| DateTime::UNIX_EPOCH + chrono::Duration::seconds(s);
        let mut board = [
            ("low", "waiting", t(0)),
            ("High", "ringing", t(1)),
            ("critical", "waiting", t(2)),
            ("CRITICAL", "exhausted", t(3)),
            ("odd", "waiting", t(4)),
            ("Critical", "ringing", t(1)),
        ];
        board.sort_by_key(|(severity, live, at)| order(severity, live, *at));
        let shown: Vec<(&str, &str)> = board.iter().map(|(s, l, _)| (*s, *l)).collect();
        assert_eq!(
            shown,
            [
                ("CRITICAL", "exhausted"),
                ("Critical", "ringing"),
                ("critical", "waiting"),
                ("High", "ringing"),
                ("low", "waiting"),
                ("odd", "waiting"),
            ]
        );
    }
}
