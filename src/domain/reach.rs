//! "Is someone being reached about this alert?" One answer, read by the board, the health
//! API, the metrics, the heartbeat and the fallback contact: for an active critical alert,
//! either an escalation is in progress (someone is being called, or will be in a moment),
//! or nobody is being reached, with the reason, what happens next and the fix.
//!
//! Pure: the engine gathers the alert's page, the people its step names now, the provider's
//! health and the clock, and this decides.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;

use crate::domain::alert::Alert;
use crate::domain::call::{CallRecord, CallStatus};

/// Failed attempts in a row, on one alert or across the provider, after which a provider that
/// answers 5xx or times out counts as unable to place calls (the retries continue).
pub const RETRY_BUDGET: u32 = 3;

/// Why nobody is being reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No escalation policy matches the alert.
    NoPolicy,
    /// The step resolves to nobody who can be called (a gap in a schedule, no phone).
    NobodyOnCall,
    /// The provider cannot place calls (credentials refused, key cannot sign, outage).
    ProviderDown,
    /// Older than `ALERTCALL_MAX_ALERT_AGE` when first seen: deliberately not called.
    Skipped,
    /// Every step and round was called and nobody acknowledged.
    Exhausted,
    /// The provider refused the call for good (an invalid number).
    FailedForGood,
    /// Active and critical, but alertcall has not taken it in (no page) well past the
    /// sweeps that should have: the intake keeps failing on it.
    NotTakenIn,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::NoPolicy,
        Reason::NobodyOnCall,
        Reason::ProviderDown,
        Reason::Skipped,
        Reason::Exhausted,
        Reason::FailedForGood,
        Reason::NotTakenIn,
    ];

    /// The name in the health API and the metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoPolicy => "no_policy",
            Reason::NobodyOnCall => "nobody_on_call",
            Reason::ProviderDown => "provider_down",
            Reason::Skipped => "skipped",
            Reason::Exhausted => "exhausted",
            Reason::FailedForGood => "failed_for_good",
            Reason::NotTakenIn => "not_taken_in",
        }
    }

    /// Whether the fallback contact is called and texted. Not for a provider that cannot
    /// place calls (the fallback could not be called either), nor for an alert skipped by
    /// the operator's age limit.
    pub fn calls_fallback(self) -> bool {
        !matches!(self, Reason::ProviderDown | Reason::Skipped)
    }
}

/// Whether the provider can place calls, as the engine has seen it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProviderHealth {
    #[default]
    Ok,
    /// Our credentials or key are refused or unusable: nothing goes out until a person
    /// fixes the configuration.
    Refused(String),
    /// Failures worth retrying (5xx, timeouts) in a row; the last one's words.
    Failing { failures: u32, last: String },
}

impl ProviderHealth {
    pub fn can_call(&self) -> bool {
        match self {
            ProviderHealth::Ok => true,
            ProviderHealth::Refused(_) => false,
            ProviderHealth::Failing { failures, .. } => *failures < RETRY_BUDGET,
        }
    }

    /// `ok`, `refused` or `failing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderHealth::Ok => "ok",
            ProviderHealth::Refused(_) => "refused",
            ProviderHealth::Failing { .. } => "failing",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            ProviderHealth::Ok => None,
            ProviderHealth::Refused(why) => Some(why),
            ProviderHealth::Failing { last, .. } => Some(last),
        }
    }
}

/// Where the alert's page stands, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not taken in yet: no page, as this instance has seen it `since` then (an alert that
    /// arrived a moment ago, or one the intake keeps failing on).
    NotPaged { since: DateTime<Utc> },
    /// The current step is to be notified at `at`; `attempts` failed before because of the
    /// provider, the last with `last_error`.
    Due {
        at: Option<DateTime<Utc>>,
        attempts: u32,
        last_error: Option<String>,
    },
    /// The step's calls went out; its wait ends at `until`.
    Waiting { until: Option<DateTime<Utc>> },
    /// Every round ran; the last step is notified again at `next`.
    Exhausted { next: Option<DateTime<Utc>> },
    /// No policy matched when it arrived.
    NoPolicy,
    /// Older than the age limit when first seen.
    Stale,
    /// Acknowledged or closed.
    Closed,
}

/// Someone a step names right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    /// Has a phone (or, on a texting step, an SMS number).
    pub reachable: bool,
}

/// The alert's newest call, when the provider refused it without placing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub person: String,
    pub why: String,
}

/// Everything the answer depends on, gathered by the engine.
#[derive(Debug, Clone)]
pub struct Situation<'a> {
    pub alert: &'a Alert,
    pub progress: Progress,
    /// The policy the alert follows, and its 0-based step now.
    pub policy: Option<&'a str>,
    pub step: usize,
    /// Who that step (for an exhausted alert, the step notified again) names now.
    pub people: &'a [Person],
    /// Set when the alert's newest call was refused for good.
    pub refused: Option<Refused>,
    pub provider: &'a str,
    pub provider_health: &'a ProviderHealth,
    /// Names of the fallback contacts (empty: none configured).
    pub fallback: &'a [String],
    pub max_alert_age: Duration,
    /// How long an alert may stay without a page before that is a fault, not a moment's
    /// delay (a few sweeps).
    pub intake_grace: Duration,
    pub time_zone: &'a TimeZone,
    pub now: DateTime<Utc>,
}

/// Nobody is being reached: why, what happens next, and what fixes it, each a plain sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    pub reason: Reason,
    pub message: String,
    pub next: String,
    pub fix: String,
}

/// `None` while someone is being reached (or an escalation is under way), else why not.
pub fn assess(s: &Situation) -> Option<Unreached> {
    let provider_down = !s.provider_health.can_call()
        || matches!(s.progress, Progress::Due { attempts, .. } if attempts >= RETRY_BUDGET);
    match &s.progress {
        Progress::NotPaged { since }
            if (s.now - *since).to_std().unwrap_or_default() >= s.intake_grace =>
        {
            Some(not_taken_in(s, *since))
        }
        Progress::NotPaged { .. } | Progress::Closed | Progress::Waiting { .. } => None,
        Progress::Stale => Some(skipped(s)),
        Progress::NoPolicy => Some(no_policy(s)),
        Progress::Due { at, last_error, .. } if provider_down => {
            Some(provider(s, *at, last_error.as_deref()))
        }
        Progress::Due { .. } => None,
        Progress::Exhausted { next } if provider_down => Some(provider(s, *next, None)),
        Progress::Exhausted { next } => Some(exhausted(s, *next)),
    }
}

fn skipped(s: &Situation) -> Unreached {
    Unreached {
        reason: Reason::Skipped,
        message: format!(
            "Not called: this alert was already older than {} (ALERTCALL_MAX_ALERT_AGE) when \
             alertcall first saw it.",
            age(s.max_alert_age)
        ),
        next: "Nobody will be called about it.".into(),
        fix: "If the patient still needs someone, send them now; then resolve the alert (the \
              board or `alertcall alert resolve`). Raise ALERTCALL_MAX_ALERT_AGE only if alerts \
              this old must still be called."
            .into(),
    }
}

fn not_taken_in(s: &Situation, since: DateTime<Utc>) -> Unreached {
    Unreached {
        reason: Reason::NotTakenIn,
        message: format!(
            "alertcall has not taken this alert in: it has had no page since {} (the intake \
             keeps failing on it), so nobody is being called.",
            clock(since, s)
        ),
        next: format!(
            "The intake retries at every sweep (ALERTCALL_SWEEP_INTERVAL). {}",
            fallback(s)
        ),
        fix: "Read alertcall's error log for this alert id (the database refusing writes, a \
              trigger or a permission on alertcall's tables); /readyz shows failing writes."
            .into(),
    }
}

fn no_policy(s: &Situation) -> Unreached {
    let a = s.alert;
    let field = |v: Option<&str>| v.map_or_else(|| "none".to_string(), |v| format!("{v:?}"));
    Unreached {
        reason: Reason::NoPolicy,
        message: format!(
            "No escalation policy matches this alert (severity {:?}, type {}, room {}): nobody \
             is being called.",
            a.severity,
            field(a.alert_type.as_deref()),
            field(a.room_name.as_deref().or(a.room_id.as_deref())),
        ),
        next: format!("Nobody will be called. {}", fallback(s)),
        fix: "Add a policy that matches it to alertcall.toml (or widen the severities, \
              alert_types or rooms of one), reload (SIGHUP), and run `alertcall check`."
            .into(),
    }
}

fn provider(s: &Situation, at: Option<DateTime<Utc>>, last_error: Option<&str>) -> Unreached {
    let why = s
        .provider_health
        .detail()
        .or(last_error)
        .unwrap_or("it failed repeatedly");
    let refused = matches!(s.provider_health, ProviderHealth::Refused(_));
    let provider = proper_name(s.provider);
    let retry = at.map_or_else(String::new, |t| format!(" at {}", clock(t, s)));
    Unreached {
        reason: Reason::ProviderDown,
        message: format!("{provider} cannot place calls: {why}."),
        next: format!(
            "Retrying{retry}. Nobody, not even the fallback contact, can be phoned until {} \
             places calls again.",
            provider
        ),
        fix: if refused {
            "Check VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY / VONAGE_PRIVATE_KEY_PATH: the \
             key must be the application's private key (not its public key); then restart and \
             run `alertcall check`."
                .into()
        } else {
            format!(
                "Check {}'s status page and this server's network route to it; calls resume by \
                 themselves when it answers. Meanwhile phone the ward directly.",
                provider
            )
        },
    }
}

fn exhausted(s: &Situation, next: Option<DateTime<Utc>>) -> Unreached {
    let policy = s.policy.unwrap_or("?");
    let step = s.step + 1;
    let when = next.map_or_else(|| "shortly".to_string(), |t| format!("at {}", clock(t, s)));
    let reachable: Vec<&str> = s
        .people
        .iter()
        .filter(|p| p.reachable)
        .map(|p| p.name.as_str())
        .collect();
    if reachable.is_empty() {
        let named = if s.people.is_empty() {
            "nobody (an empty slot in its schedule)".to_string()
        } else {
            format!(
                "only people without a phone number ({})",
                names(s.people.iter().map(|p| p.name.as_str()))
            )
        };
        return Unreached {
            reason: Reason::NobodyOnCall,
            message: format!(
                "Nobody can be called: step {step} of policy {policy:?} names {named} right now."
            ),
            next: format!("alertcall looks again {when}. {}", fallback(s)),
            fix: "Put someone on call for this slot (a shift or an override in alertcall.toml) \
                  or give the person a phone number, then reload (SIGHUP); `alertcall check` \
                  lists the gaps."
                .into(),
        };
    }
    if let Some(r) = &s.refused {
        return Unreached {
            reason: Reason::FailedForGood,
            message: format!("The call to {} was refused for good: {}.", r.person, r.why),
            next: format!(
                "Calling again {when} will fail the same way. {}",
                fallback(s)
            ),
            fix: format!(
                "Correct {}'s phone number in alertcall.toml (or NURSE_PHONE_NUMBER), in E.164 \
                 form such as +13854019951, then reload (SIGHUP).",
                r.person
            ),
        };
    }
    Unreached {
        reason: Reason::Exhausted,
        message: format!("Every step of policy {policy:?} was called and nobody pressed 1."),
        next: format!(
            "Next call to {} {when}. {}",
            names(reachable.into_iter()),
            fallback(s)
        ),
        fix: "Send someone to the patient now and acknowledge the alert (board, phone or \
              `alertcall alert ack`); review the policy's steps and rounds."
            .into(),
    }
}

fn fallback(s: &Situation) -> String {
    if s.fallback.is_empty() {
        "No fallback contact is configured ([hospital] fallback or ALERTCALL_FALLBACK_PHONE)."
            .into()
    } else {
        format!(
            "The fallback contact ({}) is called and texted.",
            names(s.fallback.iter().map(String::as_str))
        )
    }
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// At most this many calls to the fallback contact about one unreached alert.
pub const FALLBACK_CALLS: usize = 5;

/// Whether the fallback contact is to be called again about an alert that still reaches
/// nobody, given the fallback calls made about it so far: when every one ended without being
/// picked up (failed, unanswered, busy, ...), the newest at least `retry` ago, and fewer than
/// `FALLBACK_CALLS` were made. Returns the number of that call (1 for the first retry).
/// No call yet is not a retry: the first call goes out when the alert becomes unreached.
pub fn fallback_again(calls: &[CallRecord], retry: Duration, now: DateTime<Utc>) -> Option<usize> {
    // Completed: Vonage reports it only for a call that was connected (picked up).
    let picked_up_or_ringing = |c: &CallRecord| {
        !c.status.is_terminal() || matches!(c.status, CallStatus::Answered | CallStatus::Completed)
    };
    if calls.is_empty() || calls.len() >= FALLBACK_CALLS || calls.iter().any(picked_up_or_ringing) {
        return None;
    }
    let last = calls
        .iter()
        .map(|c| c.ended_at.unwrap_or(c.created_at))
        .max()?;
    ((now - last).to_std().unwrap_or_default() >= retry).then_some(calls.len())
}

/// A provider's name as a sentence shows it: `Vonage` for `vonage`.
fn proper_name(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// `10:35` in the hospital's time zone (with the date when it is not today).
fn clock(t: DateTime<Utc>, s: &Situation) -> String {
    let zoned = |t: DateTime<Utc>| {
        jiff::Timestamp::from_millisecond(t.timestamp_millis())
            .unwrap_or_default()
            .to_zoned(s.time_zone.clone())
    };
    let (at, today) = (zoned(t), zoned(s.now));
    if at.date() == today.date() {
        at.strftime("%H:%M").to_string()
    } else {
        at.strftime("%Y-%m-%d %H:%M").to_string()
    }
}

/// `24 h`, `90 min`, `45 s`.
fn age(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::AlertStatus;
    use chrono::TimeZone as _;

    fn alert() -> Alert {
        Alert {
            id: "a1".into(),
            patient_id: None,
            patient_name: None,
            room_id: Some("ICU-4".into()),
            room_name: None,
            severity: "critical".into(),
            status: AlertStatus::Active,
            alert_type: Some("fall".into()),
            title: None,
            message: None,
            triggered_at: Utc.with_ymd_and_hms(2026, 12, 3, 10, 0, 0).unwrap(),
            acknowledged_at: None,
            acknowledged_by: None,
            unreadable_triggered_at: None,
        }
    }

    #[test]
    fn a_critical_alert_in_any_case_is_critical() {
        for (severity, critical) in [("Critical", true), ("CRITICAL", true), ("high", false)] {
            let a = Alert {
                severity: severity.into(),
                ..alert()
            };
            assert_eq!(a.is_critical(), critical, "{severity}");
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).unwrap()
    }

    struct Case {
        progress: Progress,
        people: Vec<Person>,
        refused: Option<Refused>,
        health: ProviderHealth,
        fallback: Vec<String>,
    }

    fn case(progress: Progress) -> Case {
        Case {
            progress,
            people: vec![Person {
                name: "Dev Patel".into(),
                reachable: true,
            }],
            refused: None,
            health: ProviderHealth::Ok,
            fallback: vec!["Charge desk".into()],
        }
    }

    fn assess_case(c: &Case) -> Option<Unreached> {
        let alert = alert();
        let tz = TimeZone::UTC;
        assess(&Situation {
            alert: &alert,
            progress: c.progress.clone(),
            policy: Some("icu"),
            step: 1,
            people: &c.people,
            refused: c.refused.clone(),
            provider: "vonage",
            provider_health: &c.health,
            fallback: &c.fallback,
            max_alert_age: Duration::from_secs(24 * 3600),
            intake_grace: Duration::from_secs(15),
            time_zone: &tz,
            now: at(10, 30),
        })
    }

    fn due(attempts: u32) -> Progress {
        Progress::Due {
            at: Some(at(10, 31)),
            attempts,
            last_error: Some("Vonage answered 503".into()),
        }
    }

    #[test]
    fn an_escalation_in_progress_reaches_someone() {
        for progress in [
            Progress::NotPaged {
                since: at(10, 30) - chrono::Duration::seconds(14),
            },
            Progress::Closed,
            Progress::Waiting { until: None },
            due(0),
            due(RETRY_BUDGET - 1),
        ] {
            assert_eq!(assess_case(&case(progress.clone())), None, "{progress:?}");
        }
    }

    #[test]
    fn an_alert_left_without_a_page_past_the_grace_is_not_taken_in() {
        let u = assess_case(&case(Progress::NotPaged { since: at(10, 28) })).unwrap();
        assert_eq!(u.reason, Reason::NotTakenIn);
        assert!(u.message.contains("no page since 10:28"), "{}", u.message);
        assert!(
            u.next
                .contains("The fallback contact (Charge desk) is called")
        );
        assert!(u.fix.contains("error log"));
        assert!(u.reason.calls_fallback());
    }

    #[test]
    fn no_policy_names_the_alert_and_the_fallback() {
        let u = assess_case(&case(Progress::NoPolicy)).unwrap();
        assert_eq!(u.reason, Reason::NoPolicy);
        assert!(
            u.message
                .contains("severity \"critical\", type \"fall\", room \"ICU-4\"")
        );
        assert!(
            u.next
                .contains("The fallback contact (Charge desk) is called and texted")
        );
        assert!(u.fix.contains("alertcall check"));
        let mut none = case(Progress::NoPolicy);
        none.fallback.clear();
        let u = assess_case(&none).unwrap();
        assert!(
            u.next.contains("No fallback contact is configured"),
            "{u:?}"
        );
    }

    #[test]
    fn skipped_says_the_age_limit() {
        let u = assess_case(&case(Progress::Stale)).unwrap();
        assert_eq!(u.reason, Reason::Skipped);
        assert!(u.message.contains("older than 24 h"), "{u:?}");
        assert!(!u.reason.calls_fallback());
    }

    #[test]
    fn exhausted_says_who_is_called_next_and_when() {
        let u = assess_case(&case(Progress::Exhausted {
            next: Some(at(10, 35)),
        }))
        .unwrap();
        assert_eq!(u.reason, Reason::Exhausted);
        assert!(
            u.next.starts_with("Next call to Dev Patel at 10:35."),
            "{u:?}"
        );
        assert!(u.reason.calls_fallback());
    }

    #[test]
    fn a_step_naming_nobody_reachable_is_nobody_on_call() {
        let mut gap = case(Progress::Exhausted {
            next: Some(at(10, 35)),
        });
        gap.people.clear();
        let u = assess_case(&gap).unwrap();
        assert_eq!(u.reason, Reason::NobodyOnCall);
        assert!(
            u.message.contains("step 2 of policy \"icu\" names nobody"),
            "{u:?}"
        );
        let mut no_phone = gap;
        no_phone.people = vec![Person {
            name: "Ana".into(),
            reachable: false,
        }];
        let u = assess_case(&no_phone).unwrap();
        assert_eq!(u.reason, Reason::NobodyOnCall);
        assert!(u.message.contains("without a phone number (Ana)"), "{u:?}");
    }

    #[test]
    fn a_refused_number_is_failed_for_good() {
        let mut c = case(Progress::Exhausted { next: None });
        c.refused = Some(Refused {
            person: "Dev Patel".into(),
            why: "Invalid number".into(),
        });
        let u = assess_case(&c).unwrap();
        assert_eq!(u.reason, Reason::FailedForGood);
        assert_eq!(
            u.message,
            "The call to Dev Patel was refused for good: Invalid number."
        );
        assert!(u.fix.contains("Correct Dev Patel's phone number"), "{u:?}");
    }

    #[test]
    fn a_provider_that_cannot_call_is_provider_down() {
        let mut refused = case(due(1));
        refused.health = ProviderHealth::Refused("cannot sign the Vonage JWT".into());
        let u = assess_case(&refused).unwrap();
        assert_eq!(u.reason, Reason::ProviderDown);
        assert_eq!(
            u.message,
            "Vonage cannot place calls: cannot sign the Vonage JWT."
        );
        assert!(u.fix.contains("private key"), "{u:?}");
        assert!(u.next.starts_with("Retrying at 10:31."), "{u:?}");
        assert!(!u.reason.calls_fallback());

        // Retries beyond the budget, seen on this alert (any instance) ...
        let u = assess_case(&case(due(RETRY_BUDGET))).unwrap();
        assert_eq!(u.reason, Reason::ProviderDown);
        assert!(u.message.contains("Vonage answered 503"), "{u:?}");
        assert!(u.fix.contains("status page"), "{u:?}");
        // ... or across the provider.
        let mut failing = case(Progress::Exhausted { next: None });
        failing.health = ProviderHealth::Failing {
            failures: RETRY_BUDGET,
            last: "timed out".into(),
        };
        assert_eq!(assess_case(&failing).unwrap().reason, Reason::ProviderDown);
    }

    #[test]
    fn times_are_local_and_dated_when_not_today() {
        let alert = alert();
        let tz = TimeZone::get("America/Denver").unwrap();
        let s = Situation {
            alert: &alert,
            progress: Progress::NoPolicy,
            policy: None,
            step: 0,
            people: &[],
            refused: None,
            provider: "vonage",
            provider_health: &ProviderHealth::Ok,
            fallback: &[],
            max_alert_age: Duration::from_secs(90 * 60),
            intake_grace: Duration::from_secs(15),
            time_zone: &tz,
            now: at(10, 30),
        };
        assert_eq!(clock(at(10, 35), &s), "03:35");
        assert_eq!(clock(at(23, 0), &s), "16:00");
        assert_eq!(
            clock(at(7, 0) + chrono::Duration::days(1), &s),
            "2026-12-04 00:00"
        );
        assert_eq!(age(s.max_alert_age), "90 min");
    }

    fn fallback_call(status: CallStatus, ended: Option<DateTime<Utc>>) -> CallRecord {
        CallRecord {
            alert_id: "a1".into(),
            to_number: "+13855550160".into(),
            step: -1,
            round: -1,
            person: Some("desk".into()),
            created_at: at(10, 0),
            ended_at: ended,
            ..CallRecord::example(status)
        }
    }

    #[test]
    fn the_fallback_is_called_again_after_a_call_nobody_picked_up() {
        let retry = Duration::from_secs(120);
        let unanswered = fallback_call(CallStatus::Unanswered, Some(at(10, 27)));
        // Not before the retry interval, then the second call.
        assert_eq!(
            fallback_again(std::slice::from_ref(&unanswered), retry, at(10, 28)),
            None
        );
        assert_eq!(
            fallback_again(std::slice::from_ref(&unanswered), retry, at(10, 29)),
            Some(1)
        );
        // A failed placement (no end time) counts from when it was made.
        let failed = fallback_call(CallStatus::Failed, None);
        assert_eq!(fallback_again(&[failed], retry, at(10, 2)), Some(1));
        // Not while one rings, not once one was picked up, not past the limit, not before
        // the first call.
        let ringing = fallback_call(CallStatus::Ringing, None);
        assert_eq!(
            fallback_again(&[unanswered.clone(), ringing], retry, at(10, 30)),
            None
        );
        let heard = fallback_call(CallStatus::Completed, Some(at(10, 1)));
        assert_eq!(
            fallback_again(&[unanswered.clone(), heard], retry, at(10, 30)),
            None
        );
        let five = vec![unanswered; FALLBACK_CALLS];
        assert_eq!(fallback_again(&five, retry, at(11, 0)), None);
        assert_eq!(fallback_again(&[], retry, at(11, 0)), None);
    }
}
