//! Response-time analytics over a time range, computed from the same rows the seed's
//! monitoring SQL reads (so both agree): `alerts` with `metadata.call`, and our calls and pages.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::alert::AlertStatus;
use crate::domain::call::{CallOutcome, CallRecord, CallStatus};
use crate::store::{AlertView, PageState};

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

impl Durations {
    fn of(mut seconds: Vec<f64>) -> Durations {
        seconds.sort_by(f64::total_cmp);
        // Nearest rank: the smallest value with at least p% of the values at or below it.
        let rank = |p: f64| {
            let n = seconds.len();
            (n > 0).then(|| seconds[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        Durations {
            count: seconds.len() as u64,
            p50_seconds: rank(0.5),
            p90_seconds: rank(0.9),
            max_seconds: seconds.last().copied(),
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

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64()
}

/// Computes the analytics of `alerts` (triggered in the range) and `calls` (created in it).
/// `name_of` gives a staff member's name.
pub fn compute(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    alerts: &[AlertView],
    calls: &[CallRecord],
    name_of: impl Fn(&str) -> Option<String>,
) -> Analytics {
    let paged: Vec<&AlertView> = alerts.iter().filter(|a| a.page.is_some()).collect();
    // Acknowledged, possibly resolved since: acknowledged_at stays.
    let ack_seconds = |a: &&AlertView| {
        let alert = &a.alert;
        alert
            .acknowledged_at
            .map(|at| seconds(alert.triggered_at, at))
    };
    let escalated = |a: &&&AlertView| a.page.as_ref().is_some_and(|p| p.step > 0 || p.round > 0);
    let exhausted = |a: &&&AlertView| {
        a.page
            .as_ref()
            .is_some_and(|p| p.state == PageState::Exhausted)
    };

    let mut hours: BTreeMap<(DateTime<Utc>, String), u64> = BTreeMap::new();
    for a in alerts {
        let hour = a
            .alert
            .triggered_at
            .duration_trunc(TimeDelta::hours(1))
            .unwrap_or(a.alert.triggered_at);
        *hours.entry((hour, a.alert.severity.clone())).or_default() += 1;
    }

    let placed: Vec<&CallRecord> = calls
        .iter()
        .filter(|c| c.provider_call_id.is_some())
        .collect();
    let answered = |c: &&&CallRecord| c.status == CallStatus::Answered;
    let mut nurses: BTreeMap<String, Vec<&CallRecord>> = BTreeMap::new();
    for c in &placed {
        nurses
            .entry(c.person.clone().unwrap_or_default())
            .or_default()
            .push(c);
    }
    let per_nurse = nurses
        .into_iter()
        .map(|(person, calls)| {
            let answered_calls: Vec<&&CallRecord> = calls.iter().filter(answered).collect();
            NurseStats {
                name: name_of(&person).unwrap_or_else(|| person.clone()),
                calls: calls.len() as u64,
                answered: answered_calls.len() as u64,
                answer_rate: ratio(answered_calls.len() as u64, calls.len() as u64),
                time_to_answer: Durations::of(
                    answered_calls
                        .iter()
                        .filter_map(|c| Some(seconds(c.initiated_at?, c.answered_at?)))
                        .collect(),
                ),
                outcomes: CallOutcome::ALL
                    .into_iter()
                    .filter_map(|o| {
                        let n = calls.iter().filter(|c| c.outcome() == o).count() as u64;
                        (n > 0).then(|| OutcomeCount {
                            outcome: o.as_str().into(),
                            label: o.label().into(),
                            calls: n,
                        })
                    })
                    .collect(),
                person,
            }
        })
        .collect();

    let mut units: BTreeMap<String, Vec<&AlertView>> = BTreeMap::new();
    for a in &paged {
        let unit = a.page.as_ref().and_then(|p| p.policy.clone());
        units.entry(unit.unwrap_or_default()).or_default().push(a);
    }
    let per_unit = units
        .into_iter()
        .map(|(unit, alerts)| {
            let acks: Vec<f64> = alerts.iter().filter_map(ack_seconds).collect();
            UnitStats {
                unit,
                alerts: alerts.len() as u64,
                acknowledged: acks.len() as u64,
                escalated: alerts.iter().filter(escalated).count() as u64,
                exhausted: alerts.iter().filter(exhausted).count() as u64,
                time_to_acknowledge: Durations::of(acks),
            }
        })
        .collect();

    let with_call: Vec<&AlertView> = alerts.iter().filter(|a| a.has_call).collect();
    let monitoring = Monitoring {
        total_calls: with_call.len() as u64,
        answered: with_call
            .iter()
            .filter(|a| a.call_status.as_deref() == Some("answered"))
            .count() as u64,
        acknowledged: with_call
            .iter()
            .filter(|a| a.alert.status == AlertStatus::Acknowledged)
            .count() as u64,
    };

    let acks: Vec<f64> = paged.iter().filter_map(ack_seconds).collect();
    let calls_answered = placed.iter().filter(answered).count() as u64;
    Analytics {
        from,
        to,
        alerts: alerts.len() as u64,
        alerts_paged: paged.len() as u64,
        calls: placed.len() as u64,
        calls_answered,
        answer_rate: ratio(calls_answered, placed.len() as u64),
        acknowledged: acks.len() as u64,
        acknowledgement_rate: ratio(acks.len() as u64, paged.len() as u64),
        time_to_acknowledge: Durations::of(acks),
        escalated: paged.iter().filter(escalated).count() as u64,
        exhausted: paged.iter().filter(exhausted).count() as u64,
        monitoring,
        per_hour: hours
            .into_iter()
            .map(|((hour, severity), count)| HourCount {
                hour,
                severity,
                count,
            })
            .collect(),
        per_nurse,
        per_unit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d = Durations::of((1..=10).map(f64::from).collect());
        assert_eq!(d.count, 10);
        assert_eq!(d.p50_seconds, Some(5.0));
        assert_eq!(d.p90_seconds, Some(9.0));
        assert_eq!(d.max_seconds, Some(10.0));
        let one = Durations::of(vec![7.5]);
        assert_eq!(
            (one.p50_seconds, one.p90_seconds, one.max_seconds),
            (Some(7.5), Some(7.5), Some(7.5))
        );
        assert_eq!(Durations::of(vec![]), Durations::default());
    }
}
