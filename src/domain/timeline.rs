//! An alert's timeline in sentences a charge nurse reads without knowing the system: one
//! sentence per audit entry, with people's names, in the hospital's time. The raw entry
//! stays beside it for IT.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;
use serde_json::Value;

use super::escalation::{Policy, Target, target_ids};
use super::schedule::Schedule;

/// One audit entry, as the store keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub at: DateTime<Utc>,
    /// `call.placed`, `menu.choice`, `page.due`, ...
    pub kind: &'a str,
    /// engine, vonage, simulator, cli, dashboard, api, hl7, hospital.
    pub source: &'a str,
    pub call_id: Option<&'a str>,
    pub detail: &'a Value,
}

/// A call of the alert, as its entries refer to it.
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    /// Staff id.
    pub person: Option<&'a str>,
    /// The number called (E.164).
    pub to: &'a str,
}

/// What the sentences need besides the entry: who is who, the escalation policies, the
/// hospital's time zone, the alert's calls, and whether numbers are shown whole.
pub struct Context<'a> {
    /// Staff id to name (alertcall.toml).
    pub names: HashMap<&'a str, &'a str>,
    pub policies: &'a [Policy],
    pub schedules: &'a [Schedule],
    /// `[hospital] time_zone`: times are shown as HH:MM:SS there.
    pub time_zone: TimeZone,
    /// Our call id to the call.
    pub calls: HashMap<String, CallRef<'a>>,
    /// Admins see numbers whole; viewers masked (`+13*******51`).
    pub whole_numbers: bool,
}

impl Context<'_> {
    fn name(&self, person: &str) -> String {
        self.names
            .get(person)
            .map_or_else(|| person.to_string(), |n| n.to_string())
    }

    fn number(&self, number: &str) -> String {
        if self.whole_numbers {
            number.to_string()
        } else {
            super::phone::mask(number)
        }
    }

    /// Who an entry is about: its `person`, else its call's person, else its call's number.
    fn who(&self, e: &Entry) -> String {
        let call = e.call_id.and_then(|id| self.calls.get(id));
        match (text(e.detail, "person"), call) {
            (Some(person), _) => self.name(person),
            (
                None,
                Some(CallRef {
                    person: Some(person),
                    ..
                }),
            ) => self.name(person),
            (None, Some(call)) => self.number(call.to),
            (None, None) => "the nurse".into(),
        }
    }

    /// "HH:MM:SS" in the hospital's zone.
    pub fn clock(&self, at: DateTime<Utc>) -> String {
        jiff::Timestamp::from_millisecond(at.timestamp_millis())
            .map(|t| {
                t.to_zoned(self.time_zone.clone())
                    .strftime("%H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| at.format("%H:%M:%S").to_string())
    }

    /// "everyone on ICU (4 people)": whom a policy's step names, and how many that was at `at`.
    fn step_targets(&self, policy: &str, step: usize, at: DateTime<Utc>) -> Option<String> {
        let step = self
            .policies
            .iter()
            .find(|p| p.name == policy)?
            .steps
            .get(step)?;
        let described: Vec<String> = step
            .targets
            .iter()
            .map(|t| match t {
                Target::Person(id) => self.name(id),
                Target::OnCall(s) => format!("whoever is on call for {s}"),
                Target::Everyone(s) => format!("everyone on {s}"),
            })
            .collect();
        let at = jiff::Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or_default();
        let n = target_ids(&step.targets, self.schedules, at).len();
        Some(format!("{} ({})", described.join(", "), people(n)))
    }
}

fn people(n: usize) -> String {
    match n {
        1 => "1 person".into(),
        n => format!("{n} people"),
    }
}

fn text<'v>(detail: &'v Value, field: &str) -> Option<&'v str> {
    detail.get(field)?.as_str().filter(|s| !s.is_empty())
}

fn int(detail: &Value, field: &str) -> Option<i64> {
    detail.get(field)?.as_i64()
}

/// How an answer was given: "pressing 3", "saying "I'm busy"".
fn answer(detail: &Value, input_field: &str) -> String {
    let said = text(detail, "text").unwrap_or("");
    match text(detail, input_field) {
        Some("speech") => format!("saying \"{said}\""),
        _ if said.is_empty() => "pressing nothing".into(),
        _ => format!("pressing {said}"),
    }
}

/// Who did something from outside a call: `dashboard:ana` -> "ana on the dashboard".
fn actor(by: &str) -> String {
    match by.split_once(':') {
        Some(("dashboard", who)) => format!("{who} on the dashboard"),
        Some(("api", who)) => format!("{who} through the API"),
        Some(("cli", who)) => format!("{who} from the command line"),
        Some(("hl7", who)) => format!("{who} (HL7 alarm ended)"),
        _ => by.to_string(),
    }
}

/// The entry as a sentence: "10:26:24 Dev Patel declined (pressed 3)". Every kind gets one;
/// a kind this version does not know reads as its name and source.
pub fn sentence(e: &Entry, cx: &Context) -> String {
    format!("{} {}", cx.clock(e.at), what(e, cx))
}

fn what(e: &Entry, cx: &Context) -> String {
    let d = e.detail;
    let who = || cx.who(e);
    let step = || int(d, "step").unwrap_or(0) + 1;
    match e.kind {
        "alert.triggered" => match text(d, "severity") {
            Some(severity) => format!("Alert raised ({severity})"),
            None => "Alert raised".into(),
        },
        "call.placed" => {
            let number = e
                .call_id
                .and_then(|id| cx.calls.get(id))
                .map(|c| format!(" ({})", cx.number(c.to)))
                .unwrap_or_default();
            let why = match (
                text(d, "via").and_then(|v| v.split_once(':')),
                text(d, "shift"),
            ) {
                (Some(("oncall", s)), Some("override")) => format!(", on call for {s} (override)"),
                (Some(("oncall", s)), Some(shift)) => format!(", on call for {s} {shift} shift"),
                (Some(("oncall", s)), None) => format!(", on call for {s}"),
                (Some(("everyone", s)), _) => format!(", everyone on {s} (step {})", step()),
                _ if int(d, "step") == Some(-1) => ", the fallback contact".into(),
                _ => format!(" (step {})", step()),
            };
            format!("Called {}{number}{why}", who())
        }
        "call.failed" | "call.error" => {
            let why = text(d, "error")
                .or(text(d, "reason"))
                .unwrap_or("no reason given");
            format!("The call to {} failed: {why}", who())
        }
        "call.started" => format!("The call to {} went out", who()),
        "call.ringing" => format!("{}'s phone is ringing", who()),
        "call.picked_up" => format!("{} picked up", who()),
        "call.human" => format!("A person is on {}'s line", who()),
        "call.machine" => format!("{}'s voicemail answered", who()),
        "call.busy" => format!("{}'s line was busy", who()),
        "call.unanswered" | "call.timeout" => format!("{} did not answer", who()),
        "call.rejected" => format!("{} declined the call", who()),
        "call.cancelled" => format!(
            "The call to {} was cancelled (someone else acknowledged)",
            who()
        ),
        "call.completed" => format!("The call to {} ended", who()),
        "call.hung_up" => format!("Hung up the call to {}", who()),
        "call.bridged" => match text(d, "room") {
            Some(room) => format!("{} was connected to {room}", who()),
            None => format!("{} was connected to the room", who()),
        },
        "call.bridge_unavailable" => format!(
            "{} asked to be connected to {}, which has no connection set up",
            who(),
            text(d, "room").unwrap_or("the room")
        ),
        "menu.choice" => {
            let how = answer(d, "via");
            match text(d, "choice") {
                Some("decline") => format!("{} declined ({})", who(), past(&how)),
                Some("acknowledge") => format!("{} chose to acknowledge by {how}", who()),
                Some("connect_room") => {
                    format!("{} asked to be connected to the room by {how}", who())
                }
                Some("repeat") => format!("{} asked to hear the alert again", who()),
                Some("details") => format!("{} asked for the details", who()),
                Some("join_conference") => format!("{} asked to join the responders' call", who()),
                _ if d.get("timed_out") == Some(&Value::Bool(true)) => {
                    format!("{} did not answer the menu", who())
                }
                _ => format!("{}'s answer was not understood ({})", who(), past(&how)),
            }
        }
        "alert.acknowledged" => match text(d, "via") {
            Some("phone") => format!("{} acknowledged by {}", who(), answer(d, "input")),
            Some("sms") => format!("{} acknowledged by text", who()),
            _ => format!(
                "Acknowledged by {}",
                actor(text(d, "by").unwrap_or("someone"))
            ),
        },
        "alert.resolved" => format!("Resolved by {}", actor(text(d, "by").unwrap_or("someone"))),
        "alert.unreached" => format!(
            "Nobody is being reached: {}",
            text(d, "message").unwrap_or("see the alert")
        ),
        "conference.joined" => format!("{} joined the responders' call", who()),
        "conference.ended" => "The responders' call ended".into(),
        "escalation.exhausted" => {
            "Nobody acknowledged after every step; the last step will be called again".into()
        }
        "fallback.notified" => {
            let names: Vec<String> = d
                .get("people")
                .and_then(Value::as_array)
                .map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .map(|p| cx.name(p))
                        .collect()
                })
                .unwrap_or_default();
            match names.is_empty() {
                true => "Told the fallback contact".into(),
                false => format!("Told the fallback contact: {}", names.join(", ")),
            }
        }
        "sms.sent" => format!("Texted {}", who()),
        "sms.not_sent" => format!("Could not text {}: no SMS number", who()),
        "sms.failed" => format!("The text to {} failed", who()),
        kind if kind.starts_with("page.") => page(e, cx, &kind["page.".len()..]),
        kind if kind.starts_with("sms.") => format!("Text message {}", &kind["sms.".len()..]),
        kind => format!("{kind} (from {})", e.source),
    }
}

/// "pressing 3" -> "pressed 3", "saying "busy"" -> "said "busy"".
fn past(how: &str) -> String {
    how.replacen("pressing", "pressed", 1)
        .replacen("saying", "said", 1)
}

/// The escalation's state changes (`page.<state>`).
fn page(e: &Entry, cx: &Context, state: &str) -> String {
    let d = e.detail;
    let step = int(d, "step").unwrap_or(0).max(0) as usize;
    let round = int(d, "round").unwrap_or(0).max(0);
    let of_round = match round {
        0 => String::new(),
        r => format!(" (round {})", r + 1),
    };
    let targets = text(d, "policy")
        .and_then(|p| cx.step_targets(p, step, e.at))
        .map(|t| format!(": {t}"))
        .unwrap_or_default();
    let reason = text(d, "reason").unwrap_or("");
    match state {
        "due" if reason == "escalation" || reason.starts_with("declined") || step > 0 => {
            format!("Escalated to step {}{of_round}{targets}", step + 1)
        }
        "due" => format!("Calling step {} again: {reason}", step + 1),
        "waiting" => format!(
            "Waiting for step {}{of_round} to acknowledge{targets}",
            step + 1
        ),
        "acknowledged" => "Escalation stopped: acknowledged".into(),
        "cancelled" => "Escalation stopped: the alert was closed".into(),
        "exhausted" => "Escalation ran out: nobody acknowledged".into(),
        "failed" => format!("Escalation failed: {reason}"),
        "held" => format!("Escalation held at step {}: {reason}", step + 1),
        "stale" => "Escalation stopped: the alert is too old to call about".into(),
        other => format!("Escalation {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cx<'a>(policies: &'a [Policy], whole: bool) -> Context<'a> {
        Context {
            names: HashMap::from([("dev", "Dev Patel"), ("cho", "Cho Min-jun")]),
            policies,
            schedules: &[],
            time_zone: TimeZone::get("America/Denver").unwrap(),
            calls: HashMap::from([
                (
                    "c1".to_string(),
                    CallRef {
                        person: Some("dev"),
                        to: "+13854019954",
                    },
                ),
                (
                    "c2".to_string(),
                    CallRef {
                        person: None,
                        to: "+13854019955",
                    },
                ),
            ]),
            whole_numbers: whole,
        }
    }

    /// 10:26:20 in Denver (winter, UTC-7).
    fn at() -> DateTime<Utc> {
        "2026-12-03T17:26:20.450Z".parse().unwrap()
    }

    fn say(kind: &str, call: Option<&str>, detail: Value, whole: bool) -> String {
        let policies = [Policy {
            name: "ICU".into(),
            matcher: Default::default(),
            steps: vec![
                crate::domain::escalation::Step {
                    targets: vec![Target::OnCall("ICU".into())],
                    call: true,
                    sms: false,
                    wait: std::time::Duration::from_secs(60),
                },
                crate::domain::escalation::Step {
                    targets: vec![Target::Person("dev".into()), Target::Person("cho".into())],
                    call: true,
                    sms: false,
                    wait: std::time::Duration::from_secs(60),
                },
            ],
            rounds: 1,
            renotify_every: std::time::Duration::from_secs(300),
        }];
        let entry = Entry {
            at: at(),
            kind,
            source: "engine",
            call_id: call,
            detail: &detail,
        };
        sentence(&entry, &cx(&policies, whole))
    }

    #[test]
    fn each_kind_reads_as_a_sentence_with_names_in_the_hospitals_time() {
        let table = [
            (
                "alert.triggered",
                None,
                json!({"severity": "critical"}),
                "10:26:20 Alert raised (critical)",
            ),
            (
                "call.placed",
                Some("c1"),
                json!({"person": "dev", "step": 0, "via": "oncall:ICU", "shift": "night"}),
                "10:26:20 Called Dev Patel (+13*******54), on call for ICU night shift",
            ),
            (
                "call.placed",
                Some("c1"),
                json!({"person": "dev", "step": 1, "via": "everyone:ICU"}),
                "10:26:20 Called Dev Patel (+13*******54), everyone on ICU (step 2)",
            ),
            (
                "call.placed",
                Some("c1"),
                json!({"person": "dev", "step": -1}),
                "10:26:20 Called Dev Patel (+13*******54), the fallback contact",
            ),
            (
                "menu.choice",
                Some("c1"),
                json!({"choice": "decline", "via": "dtmf", "text": "3"}),
                "10:26:20 Dev Patel declined (pressed 3)",
            ),
            (
                "menu.choice",
                Some("c1"),
                json!({"choice": "decline", "via": "speech", "text": "I'm busy"}),
                "10:26:20 Dev Patel declined (said \"I'm busy\")",
            ),
            (
                "page.due",
                None,
                json!({"reason": "declined (pressed 3)", "step": 1, "round": 0, "policy": "ICU"}),
                "10:26:20 Escalated to step 2: Dev Patel, Cho Min-jun (2 people)",
            ),
            (
                "alert.acknowledged",
                Some("c1"),
                json!({"by": "phone:+13854019954", "via": "phone", "input": "dtmf", "text": "4"}),
                "10:26:20 Dev Patel acknowledged by pressing 4",
            ),
            (
                "alert.acknowledged",
                None,
                json!({"by": "dashboard:ana", "via": "dashboard"}),
                "10:26:20 Acknowledged by ana on the dashboard",
            ),
            (
                "call.bridged",
                Some("c1"),
                json!({"room": "Room ICU 1", "person": "dev"}),
                "10:26:20 Dev Patel was connected to Room ICU 1",
            ),
            (
                "call.cancelled",
                Some("c1"),
                json!({}),
                "10:26:20 The call to Dev Patel was cancelled (someone else acknowledged)",
            ),
            // A call with no person on record is named by its number.
            (
                "call.busy",
                Some("c2"),
                json!({}),
                "10:26:20 +13*******55's line was busy",
            ),
            (
                "fallback.notified",
                None,
                json!({"people": ["cho"]}),
                "10:26:20 Told the fallback contact: Cho Min-jun",
            ),
            (
                "alert.resolved",
                None,
                json!({"by": "cli:op"}),
                "10:26:20 Resolved by op from the command line",
            ),
        ];
        for (kind, call, detail, want) in table {
            assert_eq!(say(kind, call, detail, false), want, "{kind}");
        }
    }

    #[test]
    fn admins_see_numbers_whole() {
        assert_eq!(
            say("call.placed", Some("c1"), json!({"person": "dev"}), true),
            "10:26:20 Called Dev Patel (+13854019954) (step 1)"
        );
    }

    #[test]
    fn unknown_kinds_and_odd_details_read_plainly_and_never_panic() {
        assert_eq!(
            say("hl7.start", None, json!({"control_id": "1"}), false),
            "10:26:20 hl7.start (from engine)"
        );
        for detail in [
            json!(null),
            json!([1, 2]),
            json!("text"),
            json!({"step": "x", "person": 5}),
        ] {
            for kind in [
                "call.placed",
                "menu.choice",
                "page.due",
                "page.weird",
                "alert.acknowledged",
                "fallback.notified",
                "",
            ] {
                let said = say(kind, Some("nope"), detail.clone(), false);
                assert!(said.starts_with("10:26:20 "), "{said}");
            }
        }
    }
}
