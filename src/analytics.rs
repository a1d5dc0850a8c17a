//! Response-time analytics over a time range, aggregated by the database (`store::Aggregates`)
//! from the same rows the seed's monitoring SQL reads (so both agree): `alerts` with
//! `metadata.call`, and our calls and pages. Any range, a year or all time, takes the same
//! memory here: a few rows per unit, hour, nurse and call status.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::call::{CallOutcome, CallStatus};
use crate::store::{Aggregated, CallCounts, HourCounts, Spread};

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct Analytics {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Alerts triggered in the range, of any severity.
    pub alerts: u64,
    /// Alerts alertcall paged (critical ones).
    pub alerts_paged: u64,
    /// Calls the provider accepted in the range.
    pub calls: u64,
    /// Calls on which the nurse pressed 1 (`call_status = 'answered'`, the seed's meaning).
    pub calls_answered: u64,
    /// calls_answered / calls; null without calls.
    pub answer_rate: Option<f64>,
    /// Paged alerts that were acknowledged (by phone, SMS or a person; some since resolved).
    pub acknowledged: u64,
    /// acknowledged / alerts_paged; null without paged alerts.
    pub acknowledgement_rate: Option<f64>,
    /// Triggered to acknowledged, over the acknowledged paged alerts.
    pub time_to_acknowledge: Durations,
    /// Paged alerts that went past their first step.
    pub escalated: u64,
    /// Paged alerts whose policy ran out without an acknowledgement.
    pub exhausted: u64,
    /// The seed's response-rate query over the range.
    pub monitoring: Monitoring,
    pub per_hour: Vec<HourCount>,
    pub per_nurse: Vec<NurseStats>,
    pub per_unit: Vec<UnitStats>,
}

/// Exactly the seed's response-rate query: alerts with `metadata.call`, how many of those
/// have `call_status = 'answered'`, and how many are acknowledged.
#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct Monitoring {
    pub total_calls: u64,
    pub answered: u64,
    pub acknowledged: u64,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema, PartialEq)]
pub struct Durations {
    pub count: u64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

/// Nearest-rank percentiles (the smallest value with at least p% of the values at or below
/// it), as the database took them.
impl From<&Spread> for Durations {
    fn from(s: &Spread) -> Durations {
        Durations {
            count: count(s.n_values),
            p50_seconds: s.p50,
            p90_seconds: s.p90,
            max_seconds: s.longest,
        }
    }
}

/// Alerts per hour and severity: the seed's alerts-per-hour query.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct HourCount {
    /// The start of the hour, in UTC (the seed's `date_trunc('hour', …)` on a UTC session).
    pub hour: DateTime<Utc>,
    pub severity: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct NurseStats {
    /// Staff id (`nurse` for NURSE_PHONE_NUMBER).
    pub person: String,
    pub name: String,
    pub calls: u64,
    pub answered: u64,
    /// answered / calls, leaving out the calls hung up because someone else had already
    /// acknowledged (outcome `cancelled`); null without such calls.
    pub answer_rate: Option<f64>,
    /// Seconds from the call being placed to 1 being pressed.
    pub time_to_answer: Durations,
    /// The calls by outcome (calls' `outcome`: acknowledged, declined, no_answer,
    /// cancelled, ...), in that order; outcomes without calls are left out.
    pub outcomes: Vec<OutcomeCount>,
}

/// How many calls came to one outcome.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct OutcomeCount {
    pub outcome: String,
    /// As people read it ("no answer").
    pub label: String,
    pub calls: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct UnitStats {
    /// The escalation policy the alerts followed.
    pub unit: String,
    pub alerts: u64,
    pub acknowledged: u64,
    pub escalated: u64,
    pub exhausted: u64,
    pub time_to_acknowledge: Durations,
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The analytics of alerts triggered and calls made from `from` to `to`, from what the
/// database aggregated of them. `name_of` gives a staff member's name.
pub fn compute(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agg: &Aggregated,
    name_of: impl Fn(&str) -> Option<String>,
) -> Analytics {
    let hours = |f: fn(&HourCounts) -> i64| agg.hours.iter().map(|h| count(f(h))).sum::<u64>();
    let paged = agg.units.iter().find(|u| u.grp.is_none());
    let of_paged = |f: fn(&Spread) -> i64| paged.map_or(0, |u| count(f(u)));
    let alerts_paged = of_paged(|u| u.n_rows);
    let acknowledged = of_paged(|u| u.n_values);

    let mut per_unit: Vec<UnitStats> = agg
        .units
        .iter()
        .filter_map(|u| {
            Some(UnitStats {
                unit: u.grp.clone()?,
                alerts: count(u.n_rows),
                acknowledged: count(u.n_values),
                escalated: count(u.escalated),
                exhausted: count(u.exhausted),
                time_to_acknowledge: Durations::from(u),
            })
        })
        .collect();
    per_unit.sort_by(|a, b| a.unit.cmp(&b.unit));

    let mut people: Vec<&str> = agg.calls.iter().map(|c| c.person.as_str()).collect();
    people.sort_unstable();
    people.dedup();
    let per_nurse: Vec<NurseStats> = people
        .into_iter()
        .map(|person| nurse(person, agg, name_of(person)))
        .collect();

    let calls: u64 = per_nurse.iter().map(|n| n.calls).sum();
    let calls_answered: u64 = per_nurse.iter().map(|n| n.answered).sum();
    Analytics {
        from,
        to,
        alerts: hours(|h| h.alerts),
        alerts_paged,
        calls,
        calls_answered,
        answer_rate: ratio(calls_answered, calls),
        acknowledged,
        acknowledgement_rate: ratio(acknowledged, alerts_paged),
        time_to_acknowledge: paged.map(Durations::from).unwrap_or_default(),
        escalated: of_paged(|u| u.escalated),
        exhausted: of_paged(|u| u.exhausted),
        monitoring: Monitoring {
            total_calls: hours(|h| h.with_call),
            answered: hours(|h| h.call_answered),
            acknowledged: hours(|h| h.call_acknowledged),
        },
        per_hour: agg
            .hours
            .iter()
            .map(|h| HourCount {
                hour: DateTime::from_timestamp(h.hour, 0).unwrap_or(from),
                severity: h.severity.clone(),
                count: count(h.alerts),
            })
            .collect(),
        per_nurse,
        per_unit,
    }
}

/// One person's calls. The answer rate leaves out the calls alertcall hung up because
/// someone else had already acknowledged (or the alert was closed): that nurse had no
/// chance to answer.
fn nurse(person: &str, agg: &Aggregated, name: Option<String>) -> NurseStats {
    let mine = || agg.calls.iter().filter(|c| c.person == person);
    let outcome_of = |c: &CallCounts| {
        CallStatus::parse(&c.status).map(|status| CallOutcome::of(status, c.declined))
    };
    let calls_with = |outcome: CallOutcome| {
        mine()
            .filter(|c| outcome_of(c) == Some(outcome))
            .map(|c| count(c.calls))
            .sum::<u64>()
    };
    let calls: u64 = mine().map(|c| count(c.calls)).sum();
    let answered: u64 = mine()
        .filter(|c| c.status == CallStatus::Answered.as_str())
        .map(|c| count(c.calls))
        .sum();
    NurseStats {
        person: person.to_string(),
        name: name.unwrap_or_else(|| person.to_string()),
        calls,
        answered,
        answer_rate: ratio(answered, calls - calls_with(CallOutcome::Cancelled)),
        time_to_answer: agg
            .to_answer
            .iter()
            .find(|s| s.grp.as_deref() == Some(person))
            .map(Durations::from)
            .unwrap_or_default(),
        outcomes: CallOutcome::ALL
            .into_iter()
            .filter_map(|o| {
                let n = calls_with(o);
                (n > 0).then(|| OutcomeCount {
                    outcome: o.as_str().into(),
                    label: o.label().into(),
                    calls: n,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(person: &str, status: CallStatus, declined: bool, n: i64) -> CallCounts {
        CallCounts {
            person: person.into(),
            status: status.as_str().into(),
            declined,
            calls: n,
        }
    }

    #[test]
    fn a_nurse_is_not_blamed_for_calls_cancelled_by_someone_elses_acknowledgement() {
        let agg = Aggregated {
            hours: vec![],
            units: vec![],
            calls: vec![
                calls("amy", CallStatus::Answered, false, 2),
                calls("amy", CallStatus::Unanswered, false, 2),
                calls("amy", CallStatus::Cancelled, false, 6),
                calls("amy", CallStatus::Completed, true, 1),
                calls("bob", CallStatus::Cancelled, false, 1),
            ],
            to_answer: vec![],
        };
        let a = compute(Utc::now(), Utc::now(), &agg, |p| Some(p.to_uppercase()));
        let amy = &a.per_nurse[0];
        assert_eq!((amy.name.as_str(), amy.calls, amy.answered), ("AMY", 11, 2));
        assert_eq!(
            amy.answer_rate,
            Some(2.0 / 5.0),
            "the 6 cancelled calls are left out"
        );
        let outcomes: Vec<(&str, u64)> = amy
            .outcomes
            .iter()
            .map(|o| (o.outcome.as_str(), o.calls))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("acknowledged", 2),
                ("declined", 1),
                ("no_answer", 2),
                ("cancelled", 6)
            ]
        );
        assert_eq!(
            a.per_nurse[1].answer_rate, None,
            "bob only had cancelled calls"
        );
        assert_eq!((a.calls, a.calls_answered), (12, 2));
    }

    #[test]
    fn paged_figures_come_from_the_overall_group_and_units_from_theirs() {
        let unit = |grp: Option<&str>, n_rows: i64, n_values: i64| Spread {
            grp: grp.map(str::to_string),
            n_rows,
            n_values,
            p50: (n_values > 0).then_some(5.0),
            p90: (n_values > 0).then_some(9.0),
            longest: (n_values > 0).then_some(10.0),
            escalated: 1,
            exhausted: n_rows - n_values,
        };
        let hour = |hour: i64, severity: &str, alerts: i64| HourCounts {
            hour,
            severity: severity.into(),
            alerts,
            with_call: 1,
            call_answered: 1,
            call_acknowledged: 0,
        };
        let agg = Aggregated {
            hours: vec![hour(0, "critical", 6), hour(3600, "high", 10)],
            units: vec![
                unit(None, 6, 2),
                unit(Some("icu"), 4, 2),
                unit(Some(""), 2, 0),
            ],
            calls: vec![],
            to_answer: vec![],
        };
        let a = compute(Utc::now(), Utc::now(), &agg, |_| None);
        assert_eq!((a.alerts, a.alerts_paged, a.acknowledged), (16, 6, 2));
        assert_eq!((a.escalated, a.exhausted), (1, 4));
        assert_eq!(a.acknowledgement_rate, Some(2.0 / 6.0));
        assert_eq!(a.time_to_acknowledge.p90_seconds, Some(9.0));
        assert_eq!(
            (
                a.monitoring.total_calls,
                a.monitoring.answered,
                a.monitoring.acknowledged
            ),
            (2, 2, 0)
        );
        let units: Vec<(&str, u64)> = a
            .per_unit
            .iter()
            .map(|u| (u.unit.as_str(), u.alerts))
            .collect();
        assert_eq!(units, [("", 2), ("icu", 4)]);
        assert_eq!(a.per_unit[0].time_to_acknowledge, Durations::default());
        assert_eq!(a.per_hour[1].hour.timestamp(), 3600);
    }
}
