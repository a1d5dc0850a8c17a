//! Escalation policies and the escalation state machine:
//! `(policy, state, event, now) -> (state, actions)`. Pure: the engine stores the state and
//! its due time, feeds in events, and carries out the actions.

use std::time::Duration;

use chrono::{DateTime, Utc};

use jiff::Timestamp;

use crate::domain::alert::{Alert, CRITICAL};
use crate::domain::schedule::Schedule;

/// Which alerts a policy applies to; an empty list matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    pub severities: Vec<String>,
    pub alert_types: Vec<String>,
    /// Room ids or names.
    pub rooms: Vec<String>,
}

impl Matcher {
    /// Case and surrounding spaces do not matter: `"Critical"` in alertcall.toml matches the
    /// hospital app's `critical`, as a person reading the file would expect.
    pub fn matches(&self, alert: &Alert) -> bool {
        let any = |list: &[String], value: Option<&str>| {
            list.is_empty() || value.is_some_and(|v| list.iter().any(|x| same(x, v)))
        };
        self.takes_severity(&alert.severity)
            && any(&self.alert_types, alert.alert_type.as_deref())
            && (self.rooms.is_empty()
                || any(&self.rooms, alert.room_id.as_deref())
                || any(&self.rooms, alert.room_name.as_deref()))
    }
}

impl Matcher {
    pub fn takes_severity(&self, severity: &str) -> bool {
        self.severities.is_empty() || self.severities.iter().any(|s| same(s, severity))
    }
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Whether every critical alert, of any type and in any room, matches a policy: the name of
/// the first policy that takes them all, or a sentence saying which would match none.
pub fn critical_coverage(policies: &[Policy]) -> Result<String, String> {
    let critical: Vec<&Policy> = policies
        .iter()
        .filter(|p| p.matcher.takes_severity(CRITICAL))
        .collect();
    if let Some(all) = critical
        .iter()
        .find(|p| p.matcher.alert_types.is_empty() && p.matcher.rooms.is_empty())
    {
        return Ok(all.name.clone());
    }
    if critical.is_empty() {
        return Err(format!(
            "no policy matches severity \"{CRITICAL}\": no critical alert would be called; \
             add \"{CRITICAL}\" to a policy's severities (or leave severities out)"
        ));
    }
    // Each list is finite, so a type and a room that no policy names match none of them.
    let listed = |field: fn(&Matcher) -> &Vec<String>| {
        let mut all: Vec<&str> = critical
            .iter()
            .flat_map(|p| field(&p.matcher).iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    let types = listed(|m| &m.alert_types);
    let rooms = listed(|m| &m.rooms);
    let of_type = if types.is_empty() {
        "of any type".to_string()
    } else {
        format!("of a type other than {}", types.join(", "))
    };
    let in_room = if rooms.is_empty() {
        "in any room".to_string()
    } else {
        format!("in a room other than {}", rooms.join(", "))
    };
    Err(format!(
        "a critical alert {of_type} {in_room} matches no policy and would be called to nobody; \
         add a last policy with severities = [\"{CRITICAL}\"] and no alert_types or rooms"
    ))
}

/// Everyone the targets name at `at`, each once, in order (ids; the staff list says who).
pub fn target_ids(targets: &[Target], schedules: &[Schedule], at: Timestamp) -> Vec<String> {
    let schedule = |name: &str| schedules.iter().find(|s| s.name == name);
    let mut ids: Vec<String> = Vec::new();
    for target in targets {
        match target {
            Target::Person(id) => ids.push(id.clone()),
            Target::OnCall(name) => {
                if let Some(s) = schedule(name) {
                    ids.extend(s.on_call(at).into_iter().map(|c| c.person));
                }
            }
            Target::Everyone(name) => {
                if let Some(s) = schedule(name) {
                    ids.extend(s.everyone());
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

/// How `person` was reached at `at`: the first target naming them, as written in
/// alertcall.toml (`oncall:icu`), and the shift they cover when it is an on-call target.
pub fn reached_through(
    targets: &[Target],
    schedules: &[Schedule],
    at: Timestamp,
    person: &str,
) -> Option<(String, Option<String>)> {
    targets.iter().find_map(|target| {
        let one = target_ids(std::slice::from_ref(target), schedules, at);
        if !one.iter().any(|id| id == person) {
            return None;
        }
        let shift = match target {
            Target::OnCall(name) => schedules
                .iter()
                .find(|s| &s.name == name)
                .and_then(|s| s.on_call(at).into_iter().find(|c| c.person == person))
                .map(|c| c.shift),
            _ => None,
        };
        Some((target.to_string(), shift))
    })
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Person(id) => write!(f, "person:{id}"),
            Target::OnCall(schedule) => write!(f, "oncall:{schedule}"),
            Target::Everyone(schedule) => write!(f, "everyone:{schedule}"),
        }
    }
}

/// A stretch of time in which a policy's step would reach nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub policy: String,
    /// 0-based.
    pub step: usize,
    pub from: Timestamp,
    pub until: Timestamp,
    /// "nobody is on call on icu", "fay has no phone or sms number the step uses".
    pub why: String,
}

/// How a person can be reached: (has a phone to call, has a number to text).
pub type Contact = (bool, bool);

/// Every stretch in `[from, until)` in which a step of `policy` would reach nobody: an empty
/// slot in a schedule it uses, or only people without a number the step uses. `contact`
/// says how each staff id can be reached (`None`: no such person).
pub fn gaps(
    policy: &Policy,
    schedules: &[Schedule],
    contact: impl Fn(&str) -> Option<Contact>,
    from: Timestamp,
    until: Timestamp,
) -> Vec<Gap> {
    let mut out: Vec<Gap> = Vec::new();
    for (index, step) in policy.steps.iter().enumerate() {
        let mut edges = vec![from];
        for target in &step.targets {
            if let Target::OnCall(name) = target
                && let Some(s) = schedules.iter().find(|s| &s.name == name)
            {
                edges.extend(s.handovers_between(from, until));
            }
        }
        edges.sort();
        edges.dedup();
        for (i, &start) in edges.iter().enumerate() {
            let end = edges.get(i + 1).copied().unwrap_or(until);
            let ids = target_ids(&step.targets, schedules, start);
            let reached = ids.iter().any(|id| {
                contact(id).is_some_and(|(phone, sms)| (step.call && phone) || (step.sms && sms))
            });
            if reached {
                continue;
            }
            let why = if ids.is_empty() {
                let names: Vec<String> = step
                    .targets
                    .iter()
                    .map(|t| match t {
                        Target::Person(id) => format!("person:{id}"),
                        Target::OnCall(s) => format!("oncall:{s}"),
                        Target::Everyone(s) => format!("everyone:{s}"),
                    })
                    .collect();
                format!("nobody is on call ({})", names.join(", "))
            } else {
                let channel = match (step.call, step.sms) {
                    (true, true) => "phone or sms number",
                    (true, false) => "phone number",
                    _ => "sms number",
                };
                format!("{} has no {channel}", ids.join(", "))
            };
            match out.last_mut() {
                Some(last)
                    if last.policy == policy.name
                        && last.step == index
                        && last.until == start
                        && last.why == why =>
                {
                    last.until = end;
                }
                _ => out.push(Gap {
                    policy: policy.name.clone(),
                    step: index,
                    from: start,
                    until: end,
                    why,
                }),
            }
        }
    }
    out
}

/// Who a step notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Person(String),
    /// Whoever is on call on this schedule now.
    OnCall(String),
    /// Everyone on this schedule.
    Everyone(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub targets: Vec<Target>,
    pub call: bool,
    pub sms: bool,
    /// How long to wait for an acknowledgement before the next step.
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub matcher: Matcher,
    pub steps: Vec<Step>,
    /// How many times the steps run in all (1: once).
    pub rounds: u32,
    /// After the last round, how often the last step is notified again until someone
    /// acknowledges.
    pub renotify_every: Duration,
}

/// The first policy that matches the alert.
pub fn choose<'a>(policies: &'a [Policy], alert: &Alert) -> Option<&'a Policy> {
    policies.iter().find(|p| p.matcher.matches(alert))
}

/// Where one alert's escalation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub step: usize,
    pub round: u32,
    pub phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The current step must be notified now.
    Due,
    /// The current step was notified; at `until` the next one is.
    Waiting {
        until: DateTime<Utc>,
    },
    /// Every round ran without an acknowledgement; the last step is notified again at `next`.
    Exhausted {
        next: DateTime<Utc>,
    },
    Acknowledged,
    /// Resolved or acknowledged outside alertcall.
    Cancelled,
}

impl State {
    pub fn start() -> State {
        State {
            step: 0,
            round: 0,
            phase: Phase::Due,
        }
    }

    /// When the engine must next feed a `Timer` event.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        match self.phase {
            Phase::Waiting { until } => Some(until),
            Phase::Exhausted { next } => Some(next),
            Phase::Due | Phase::Acknowledged | Phase::Cancelled => None,
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.phase, Phase::Acknowledged | Phase::Cancelled)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The state's due time came (or, in `Due`, the escalation starts).
    Timer,
    /// A call of the current step ended without a 1 (busy, failed, unanswered, voicemail).
    CallUnsuccessful {
        person: String,
        /// The person has an SMS number and the policy may text them.
        can_sms: bool,
        /// Other calls of this step are still ringing or in progress.
        others_live: bool,
    },
    /// Pressed 3: this person cannot respond.
    Declined {
        others_live: bool,
    },
    Acknowledged,
    /// Acknowledged or resolved outside alertcall (dashboard, hospital app).
    ResolvedElsewhere,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Notify every target of this step, by its channels.
    Notify { step: usize, round: u32 },
    /// Text this person that a call did not get through.
    SmsFallback { person: String },
    /// Hang up every call of this alert still ringing or in progress.
    HangUpAll,
    /// The policy ran out without an acknowledgement: flag the alert, loudly.
    MarkExhausted,
}

fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Applies one event. Events that do not apply in the current phase change nothing, so a
/// late or repeated event (an acknowledgement racing a wait expiry, say) is harmless.
pub fn next(
    policy: &Policy,
    state: State,
    event: &Event,
    now: DateTime<Utc>,
) -> (State, Vec<Action>) {
    if state.is_final() || policy.steps.is_empty() {
        return (state, vec![]);
    }
    match event {
        Event::Acknowledged => (
            State {
                phase: Phase::Acknowledged,
                ..state
            },
            vec![Action::HangUpAll],
        ),
        Event::ResolvedElsewhere => (
            State {
                phase: Phase::Cancelled,
                ..state
            },
            vec![Action::HangUpAll],
        ),
        Event::Timer => match state.phase {
            Phase::Due => notify(policy, state.step, state.round, now),
            Phase::Waiting { until } if now >= until => advance(policy, state, now, vec![]),
            Phase::Exhausted { next } if now >= next => {
                let last = policy.steps.len() - 1;
                (
                    State {
                        step: last,
                        phase: Phase::Exhausted {
                            next: after(now, policy.renotify_every),
                        },
                        ..state
                    },
                    vec![Action::Notify {
                        step: last,
                        round: state.round,
                    }],
                )
            }
            _ => (state, vec![]),
        },
        Event::CallUnsuccessful {
            person,
            can_sms,
            others_live,
        } => {
            let step = &policy.steps[state.step.min(policy.steps.len() - 1)];
            let mut actions = Vec::new();
            if *can_sms && step.sms {
                actions.push(Action::SmsFallback {
                    person: person.clone(),
                });
            }
            match state.phase {
                // Nobody left to answer this step: move on without waiting out the wait.
                Phase::Waiting { .. } if !others_live => advance(policy, state, now, actions),
                _ => (state, actions),
            }
        }
        Event::Declined { others_live } => match state.phase {
            Phase::Waiting { .. } if !others_live => advance(policy, state, now, vec![]),
            _ => (state, vec![]),
        },
    }
}

fn notify(policy: &Policy, step: usize, round: u32, now: DateTime<Utc>) -> (State, Vec<Action>) {
    (
        State {
            step,
            round,
            phase: Phase::Waiting {
                until: after(now, policy.steps[step].wait),
            },
        },
        vec![Action::Notify { step, round }],
    )
}

/// The next step, the next round, or exhaustion.
fn advance(
    policy: &Policy,
    state: State,
    now: DateTime<Utc>,
    mut actions: Vec<Action>,
) -> (State, Vec<Action>) {
    let (step, round) = if state.step + 1 < policy.steps.len() {
        (state.step + 1, state.round)
    } else if state.round + 1 < policy.rounds.max(1) {
        (0, state.round + 1)
    } else {
        actions.push(Action::MarkExhausted);
        return (
            State {
                phase: Phase::Exhausted {
                    next: after(now, policy.renotify_every),
                },
                ..state
            },
            actions,
        );
    };
    let (state, more) = notify(policy, step, round, now);
    actions.extend(more);
    (state, actions)
}

/// What an escalation does next, as told to the person who just declined: the same
/// decision `next` made, followed as far as the dispatcher will carry it out at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ahead<P> {
    /// These people are notified now; `by_text`: the step texts them rather than calls.
    Notify { people: Vec<P>, by_text: bool },
    /// Others of the current step are still being notified; the escalation moves on at
    /// `until` if nobody acknowledges.
    Waiting { until: DateTime<Utc> },
    /// Every step and round has run: the last step's people are notified again at `at`.
    /// `just_now`: this very event ran the policy out.
    Again {
        at: DateTime<Utc>,
        people: Vec<P>,
        just_now: bool,
    },
    /// Acknowledged or closed: nothing more happens.
    Over,
}

impl<P> Ahead<P> {
    /// The same outlook with each person turned into something else (a name, say).
    pub fn map<Q>(&self, f: impl Fn(&P) -> Q) -> Ahead<Q> {
        match self {
            Ahead::Notify { people, by_text } => Ahead::Notify {
                people: people.iter().map(&f).collect(),
                by_text: *by_text,
            },
            Ahead::Waiting { until } => Ahead::Waiting { until: *until },
            Ahead::Again {
                at,
                people,
                just_now,
            } => Ahead::Again {
                at: *at,
                people: people.iter().map(&f).collect(),
                just_now: *just_now,
            },
            Ahead::Over => Ahead::Over,
        }
    }
}

/// Follows `(state, actions)` (the output of `next`) to who is notified next. `reach` gives
/// the people a step can reach now; a step that reaches nobody is passed over at once, as the
/// dispatcher does when a step's calls cannot be placed.
pub fn ahead<P>(
    policy: &Policy,
    mut state: State,
    actions: &[Action],
    now: DateTime<Utc>,
    reach: impl Fn(&Step) -> Vec<P>,
) -> Ahead<P> {
    let mut just_now = actions.contains(&Action::MarkExhausted);
    let mut notify = actions.iter().find_map(|a| match a {
        Action::Notify { step, .. } => Some(*step),
        _ => None,
    });
    if notify.is_none() && state.phase == Phase::Due {
        notify = Some(state.step);
    }
    // Each pass moves the state forward; the bound is a safety net.
    for _ in 0..=(policy.steps.len() * policy.rounds.max(1) as usize) {
        let Some(step) = notify.take().and_then(|s| policy.steps.get(s)) else {
            break;
        };
        let people = reach(step);
        if !people.is_empty() {
            return Ahead::Notify {
                people,
                by_text: step.sms && !step.call,
            };
        }
        if state.phase == Phase::Due {
            (state, _) = next(policy, state, &Event::Timer, now);
        }
        let nobody = Event::CallUnsuccessful {
            person: String::new(),
            can_sms: false,
            others_live: false,
        };
        let (after, more) = next(policy, state, &nobody, now);
        state = after;
        just_now |= more.contains(&Action::MarkExhausted);
        notify = more.iter().find_map(|a| match a {
            Action::Notify { step, .. } => Some(*step),
            _ => None,
        });
    }
    match state.phase {
        Phase::Waiting { until } => Ahead::Waiting { until },
        Phase::Exhausted { next } => Ahead::Again {
            at: next,
            people: policy.steps.last().map(&reach).unwrap_or_default(),
            just_now,
        },
        Phase::Due => Ahead::Waiting { until: now },
        Phase::Acknowledged | Phase::Cancelled => Ahead::Over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alert::AlertStatus;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn step(who: &str, wait: u64) -> Step {
        Step {
            targets: vec![Target::Person(who.into())],
            call: true,
            sms: true,
            wait: Duration::from_secs(wait),
        }
    }

    /// Primary nurse, backup nurse, charge nurse; 30 s each; twice; then every 5 minutes.
    fn policy() -> Policy {
        Policy {
            name: "icu".into(),
            matcher: Matcher::default(),
            steps: vec![step("primary", 30), step("backup", 30), step("charge", 30)],
            rounds: 2,
            renotify_every: Duration::from_secs(300),
        }
    }

    fn waiting(step: usize, round: u32, until: i64) -> State {
        State {
            step,
            round,
            phase: Phase::Waiting { until: t(until) },
        }
    }

    fn notify(step: usize, round: u32) -> Action {
        Action::Notify { step, round }
    }

    fn unsuccessful(others_live: bool) -> Event {
        Event::CallUnsuccessful {
            person: "primary".into(),
            can_sms: true,
            others_live,
        }
    }

    /// name, state, event, now (s), expected state, expected actions.
    type Case = (&'static str, State, Event, i64, State, Vec<Action>);

    #[test]
    fn every_rule() {
        let p = policy();
        let exhausted = |next: i64| State {
            step: 2,
            round: 1,
            phase: Phase::Exhausted { next: t(next) },
        };
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("start notifies step 1", State::start(), Event::Timer, 0,
                waiting(0, 0, 30), vec![notify(0, 0)]),
            ("no ack within the wait: next step", waiting(0, 0, 30), Event::Timer, 30,
                waiting(1, 0, 60), vec![notify(1, 0)]),
            ("an early timer changes nothing", waiting(0, 0, 30), Event::Timer, 29,
                waiting(0, 0, 30), vec![]),
            ("last step of round 1: round 2 from the top", waiting(2, 0, 90), Event::Timer, 90,
                waiting(0, 1, 120), vec![notify(0, 1)]),
            ("last step of the last round: exhausted", waiting(2, 1, 180), Event::Timer, 180,
                exhausted(480), vec![Action::MarkExhausted]),
            ("exhausted: the last step again, slowly", exhausted(480), Event::Timer, 480,
                exhausted(780), vec![notify(2, 1)]),
            ("exhausted, early timer", exhausted(480), Event::Timer, 400, exhausted(480), vec![]),
            ("a failed call: SMS and the next step at once", waiting(0, 0, 30), unsuccessful(false), 5,
                waiting(1, 0, 35), vec![Action::SmsFallback { person: "primary".into() }, notify(1, 0)]),
            ("a failed call while others still ring: SMS only", waiting(0, 0, 30), unsuccessful(true), 5,
                waiting(0, 0, 30), vec![Action::SmsFallback { person: "primary".into() }]),
            ("no SMS number: just the next step", waiting(0, 0, 30),
                Event::CallUnsuccessful { person: "primary".into(), can_sms: false, others_live: false }, 5,
                waiting(1, 0, 35), vec![notify(1, 0)]),
            ("decline (3) during step 1 of 3: step 2 at once", waiting(0, 0, 30),
                Event::Declined { others_live: false }, 8, waiting(1, 0, 38), vec![notify(1, 0)]),
            ("decline while a colleague's phone still rings", waiting(0, 0, 30),
                Event::Declined { others_live: true }, 8, waiting(0, 0, 30), vec![]),
            ("acknowledged: hang up the rest, stop", waiting(1, 0, 60), Event::Acknowledged, 40,
                State { step: 1, round: 0, phase: Phase::Acknowledged }, vec![Action::HangUpAll]),
            ("acknowledged after exhaustion", exhausted(480), Event::Acknowledged, 500,
                State { step: 2, round: 1, phase: Phase::Acknowledged }, vec![Action::HangUpAll]),
            ("resolved elsewhere: stop", waiting(0, 0, 30), Event::ResolvedElsewhere, 10,
                State { step: 0, round: 0, phase: Phase::Cancelled }, vec![Action::HangUpAll]),
            ("a wait expiring after the ack changes nothing",
                State { step: 0, round: 0, phase: Phase::Acknowledged }, Event::Timer, 30,
                State { step: 0, round: 0, phase: Phase::Acknowledged }, vec![]),
            ("a late failed call after the ack changes nothing",
                State { step: 0, round: 0, phase: Phase::Acknowledged }, unsuccessful(false), 31,
                State { step: 0, round: 0, phase: Phase::Acknowledged }, vec![]),
        ];
        for (name, state, event, now, want_state, want_actions) in table {
            let (got_state, got_actions) = next(&p, state, &event, t(now));
            assert_eq!(got_state, want_state, "{name}: state");
            assert_eq!(got_actions, want_actions, "{name}: actions");
        }
    }

    #[test]
    fn acknowledgement_racing_a_wait_expiry_wins_either_way() {
        let p = policy();
        let s = waiting(0, 0, 30);
        // Ack first, then the timer: acknowledged, nothing else is notified.
        let (s1, _) = next(&p, s, &Event::Acknowledged, t(30));
        assert_eq!(next(&p, s1, &Event::Timer, t(30)), (s1, vec![]));
        // Timer first, then the ack: step 2 was notified, and is hung up at once.
        let (s2, a2) = next(&p, s, &Event::Timer, t(30));
        assert_eq!(a2, vec![notify(1, 0)]);
        let (s3, a3) = next(&p, s2, &Event::Acknowledged, t(30));
        assert_eq!(s3.phase, Phase::Acknowledged);
        assert_eq!(a3, vec![Action::HangUpAll]);
    }

    #[test]
    fn a_one_step_policy_is_the_seed_setup() {
        let p = Policy {
            name: "default".into(),
            matcher: Matcher::default(),
            steps: vec![step("nurse", 60)],
            rounds: 1,
            renotify_every: Duration::from_secs(300),
        };
        let (s, a) = next(&p, State::start(), &Event::Timer, t(0));
        assert_eq!(a, vec![notify(0, 0)]);
        let (s, a) = next(&p, s, &Event::Timer, t(60));
        assert_eq!(a, vec![Action::MarkExhausted]);
        assert_eq!(s.due_at(), Some(t(360)));
    }

    /// `ahead` with each step reaching the people its `Target::Person`s name, except `away`.
    fn ahead_of(p: &Policy, state: State, event: Event, now: i64, away: &[&str]) -> Ahead<String> {
        let (s, a) = next(p, state, &event, t(now));
        ahead(p, s, &a, t(now), |step| {
            step.targets
                .iter()
                .filter_map(|x| match x {
                    Target::Person(id) if !away.contains(&id.as_str()) => Some(id.clone()),
                    _ => None,
                })
                .collect()
        })
    }

    #[test]
    fn ahead_says_what_the_escalation_does_next() {
        let p = policy();
        let declined = Event::Declined { others_live: false };
        let notify = |who: &str| Ahead::Notify {
            people: vec![who.to_string()],
            by_text: false,
        };
        assert_eq!(
            ahead_of(&p, waiting(0, 0, 30), declined.clone(), 8, &[]),
            notify("backup")
        );
        // A step that reaches nobody is passed over at once, as the dispatcher does.
        assert_eq!(
            ahead_of(&p, waiting(0, 0, 30), declined.clone(), 8, &["backup"]),
            notify("charge")
        );
        assert_eq!(
            ahead_of(&p, waiting(2, 0, 90), declined.clone(), 8, &[]),
            notify("primary"),
            "round 2 starts from the top"
        );
        assert_eq!(
            ahead_of(
                &p,
                waiting(0, 0, 30),
                Event::Declined { others_live: true },
                8,
                &[]
            ),
            Ahead::Waiting { until: t(30) }
        );
        assert_eq!(
            ahead_of(&p, waiting(2, 1, 180), declined.clone(), 100, &[]),
            Ahead::Again {
                at: t(400),
                people: vec!["charge".to_string()],
                just_now: true
            }
        );
        // Nobody reachable anywhere: straight to exhaustion, the last step (nobody) later.
        assert_eq!(
            ahead_of(
                &p,
                waiting(0, 1, 130),
                declined.clone(),
                100,
                &["backup", "charge", "primary"]
            ),
            Ahead::Again {
                at: t(400),
                people: vec![],
                just_now: true
            }
        );
        let exhausted = State {
            step: 2,
            round: 1,
            phase: Phase::Exhausted { next: t(480) },
        };
        assert_eq!(
            ahead_of(&p, exhausted, declined.clone(), 300, &[]),
            Ahead::Again {
                at: t(480),
                people: vec!["charge".to_string()],
                just_now: false
            }
        );
        let acked = State {
            phase: Phase::Acknowledged,
            ..exhausted
        };
        assert_eq!(ahead_of(&p, acked, declined, 300, &[]), Ahead::Over);
    }

    #[test]
    fn policies_are_chosen_by_alert_fields() {
        let alert = |severity: &str, kind: &str, room: &str| Alert {
            id: "a".into(),
            patient_id: None,
            patient_name: None,
            room_id: Some(room.into()),
            room_name: Some(format!("Room {room}")),
            severity: severity.into(),
            status: AlertStatus::Active,
            alert_type: Some(kind.into()),
            title: None,
            message: None,
            triggered_at: t(0),
            unreadable_triggered_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
        };
        let mut cardiac = policy();
        cardiac.name = "cardiac".into();
        cardiac.matcher.alert_types = vec!["cardiac".into()];
        let mut icu = policy();
        icu.name = "icu".into();
        icu.matcher.rooms = vec!["Room 7".into(), "R8".into()];
        let mut fallback = policy();
        fallback.name = "default".into();
        let policies = [cardiac, icu, fallback];
        let name = |a: &Alert| choose(&policies, a).unwrap().name.clone();
        assert_eq!(name(&alert("critical", "cardiac", "2")), "cardiac");
        assert_eq!(name(&alert("critical", "fall", "7")), "icu");
        assert_eq!(name(&alert("critical", "fall", "R8")), "icu");
        assert_eq!(name(&alert("critical", "fall", "2")), "default");
    }

    #[test]
    fn matching_ignores_case() {
        let mut p = policy();
        p.matcher.severities = vec!["Critical".into()];
        p.matcher.alert_types = vec!["Seizure".into()];
        p.matcher.rooms = vec!["icu 1".into()];
        let alert = Alert {
            id: "a".into(),
            patient_id: None,
            patient_name: None,
            room_id: Some("r1".into()),
            room_name: Some("ICU 1".into()),
            severity: "critical".into(),
            status: AlertStatus::Active,
            alert_type: Some("seizure".into()),
            title: None,
            message: None,
            triggered_at: t(0),
            acknowledged_at: None,
            acknowledged_by: None,
            unreadable_triggered_at: None,
        };
        assert!(p.matcher.matches(&alert));
    }

    #[test]
    fn coverage_names_what_no_policy_takes() {
        let mut capitalised = policy();
        capitalised.matcher.severities = vec!["Critical".into()];
        assert_eq!(critical_coverage(&[capitalised]), Ok("icu".into()));

        let mut high = policy();
        high.matcher.severities = vec!["high".into()];
        let err = critical_coverage(std::slice::from_ref(&high)).unwrap_err();
        assert!(
            err.contains("no policy matches severity \"critical\""),
            "{err}"
        );

        let mut seizures = policy();
        seizures.matcher.alert_types = vec!["seizure".into()];
        let mut icu = policy();
        icu.matcher.rooms = vec!["ICU 1".into()];
        let err = critical_coverage(&[high, seizures, icu]).unwrap_err();
        assert!(
            err.contains("of a type other than seizure in a room other than ICU 1"),
            "{err}"
        );
    }

    #[test]
    fn gaps_list_empty_slots_and_people_without_a_phone() {
        use crate::domain::schedule::{Override, Shift};
        use jiff::civil::{Time, date};
        let tz = jiff::tz::TimeZone::get("America/Denver").unwrap();
        let local = |d: jiff::civil::Date, h: i8| tz.to_timestamp(d.at(h, 0, 0, 0)).unwrap();
        // Only a day shift: nights are empty. Bob has no phone.
        let ward = Schedule {
            name: "ward".into(),
            time_zone: tz.clone(),
            shifts: vec![Shift {
                name: "day".into(),
                start: Time::constant(7, 0, 0, 0),
                end: Time::constant(19, 0, 0, 0),
                people: vec!["ana".into()],
                rotation_days: 1,
                rotation_start: date(2026, 1, 5),
            }],
            overrides: vec![Override {
                person: "bob".into(),
                replaces: None,
                start: local(date(2026, 3, 2), 9),
                end: local(date(2026, 3, 2), 11),
            }],
        };
        let p = Policy {
            name: "ward".into(),
            matcher: Matcher::default(),
            steps: vec![Step {
                targets: vec![Target::OnCall("ward".into())],
                call: true,
                sms: false,
                wait: Duration::from_secs(30),
            }],
            rounds: 1,
            renotify_every: Duration::from_secs(300),
        };
        let contact = |id: &str| match id {
            "ana" => Some((true, false)),
            "bob" => Some((false, true)),
            _ => None,
        };
        let from = local(date(2026, 3, 2), 8);
        let until = local(date(2026, 3, 3), 8);
        let found = gaps(&p, std::slice::from_ref(&ward), contact, from, until);
        let spans: Vec<_> = found
            .iter()
            .map(|g| (g.from, g.until, g.why.as_str()))
            .collect();
        assert_eq!(
            spans,
            vec![
                (
                    local(date(2026, 3, 2), 9),
                    local(date(2026, 3, 2), 11),
                    "bob has no phone number"
                ),
                (
                    local(date(2026, 3, 2), 19),
                    local(date(2026, 3, 3), 7),
                    "nobody is on call (oncall:ward)"
                ),
            ]
        );
    }
}
