//! Status back to the alarm's source (IHE PCD-05 `ORA^R41`), when `[hl7] report_status`
//! names the Alarm Reporter's MLLP address: a call about the alarm was answered
//! (`delivered`), someone pressed 1 (`accepted`, with who in PRT), a nurse declined
//! (`declined`), the escalation moved on to its next step (`escalated`).
//!
//! The engine says what happened (`queue`); the report is rendered then and kept in the
//! database until the source acknowledged it with `AA`, so a source that is away, or a
//! restart, loses none. One sender per instance sends the reports one at a time, in the
//! order they were queued, retrying the first with a growing pause while the source is away.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hl7_parser::message::Separators;

use super::ack::msh;
use super::send::Client;
use crate::domain::call::CallRecord;
use crate::engine::Engine;
use crate::store::{Hl7Origin, Hl7Report, NewHl7Report, StoreError};

/// What happened to an alarm, as reported back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A call about it was answered.
    Delivered,
    /// Someone took it (pressed 1, replied to a text, acknowledged on the dashboard).
    Accepted,
    /// A nurse declined it on the phone.
    Declined,
    /// Its escalation called the next step.
    Escalated,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Accepted => "accepted",
            Status::Declined => "declined",
            Status::Escalated => "escalated",
        }
    }
}

/// Who a report is about: the person called (their staff id and name), or whoever
/// acknowledged outside a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: String,
    pub name: Option<String>,
}

/// How often the sender looks for reports to send.
const POLL: Duration = Duration::from_millis(250);
/// How long one attempt may take (connect, send, ACK), and how long another instance leaves a
/// report it saw taken alone.
const ATTEMPT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts while the source is away.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Queues a report that `status` happened on `call`, about the person called (by staff id
/// and name; a number dialled directly is masked).
pub async fn queue_for_call(engine: &Engine, call: &CallRecord, status: Status) {
    let participant = match &call.person {
        Some(id) => Participant {
            id: id.clone(),
            name: engine.directory().staff.get(id).map(|p| p.name.clone()),
        },
        None => Participant {
            id: crate::domain::phone::mask(&call.to_number),
            name: None,
        },
    };
    queue(
        engine,
        &call.alert_id,
        status,
        &call.id.to_string(),
        Some(participant),
    )
    .await;
}

/// Queues a report that `status` happened to `alert_id` (`key` tells this happening from
/// others of the same status: a call, a step), when `[hl7] report_status` is set and the
/// alert came through HL7. Never fails the caller: what happened is already committed, and a
/// report that cannot be queued is logged as lost.
pub async fn queue(
    engine: &Engine,
    alert_id: &str,
    status: Status,
    key: &str,
    participant: Option<Participant>,
) {
    if engine.directory().hl7_report_status.is_none() {
        return;
    }
    let queued = async {
        let Some(origin) = engine.store.hl7_origin(alert_id).await? else {
            return Ok(false);
        };
        let now = engine.now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let message = render(&origin, alert_id, status, participant.as_ref(), &id, now);
        engine
            .store
            .queue_hl7_report(&NewHl7Report {
                id,
                alert_id: alert_id.to_string(),
                status: status.as_str().to_string(),
                dedupe_key: format!("{alert_id}:{}:{key}", status.as_str()),
                message,
                at: now,
            })
            .await
    };
    match queued.await {
        Ok(true) => tracing::debug!(
            alert_id,
            status = status.as_str(),
            "HL7 status report queued"
        ),
        Ok(false) => {}
        Err(e) => {
            engine.store_failed(&e);
            tracing::error!(alert_id, status = status.as_str(), error = %e, "an HL7 status report could not be queued: the alarm's source will not hear of it");
            engine.metrics.hl7_report("lost");
        }
    }
}

/// The `ORA^R41` for one status: who we are and who the source is (MSH), the patient (PID,
/// when the alarm named one), the alarm (OBR-3 as the source names it, OBR-2 our alert id),
/// the participant (PRT) and the status (OBX-5).
fn render(
    origin: &Hl7Origin,
    alert_id: &str,
    status: Status,
    participant: Option<&Participant>,
    our_id: &str,
    now: DateTime<Utc>,
) -> String {
    let sep = Separators::default();
    let e = |v: &str| sep.encode(v).to_string();
    let mut segments = vec![msh(
        sep,
        [
            "alertcall",
            "",
            &origin.sending_application,
            origin.sending_facility.as_deref().unwrap_or(""),
        ],
        "ORA^R41^ORA_R41",
        our_id,
        now,
        ["P", "2.6"],
    )];
    if let Some(patient) = &origin.patient_id {
        segments.push(format!("PID|||{}", e(patient)));
    }
    // OBR-3 names the alarm as its source does, its instance id in the source's namespace;
    // OBR-4 the event by its MDC text (the numeric code differs between vendors).
    let namespace = origin.sending_application.split('^').next().unwrap_or("");
    segments.push(format!(
        "OBR|1|{}^alertcall|{}^{}|^{}^MDC",
        e(alert_id),
        e(&origin.alarm_id),
        e(namespace),
        e(origin.event_code.as_deref().unwrap_or("MDC_EVT_ALARM")),
    ));
    if let Some(p) = participant {
        segments.push(format!(
            "PRT|1|UC||RCT^Result Copies To^HL70912|{}^{}",
            e(&p.id),
            e(p.name.as_deref().unwrap_or("")),
        ));
    }
    segments.push(format!(
        "OBX|1|ST|ALERT_STATUS^Alert status^L|1|{}||||||F|||{}",
        status.as_str(),
        now.format("%Y%m%d%H%M%S%.3f+0000"),
    ));
    segments.join("\r") + "\r"
}

/// Sends queued reports until `shutdown` resolves.
pub async fn run(engine: Arc<Engine>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut link: Option<(String, Client)> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = &mut shutdown => return,
        }
        let Some(to) = engine.directory().hl7_report_status.clone() else {
            link = None;
            continue;
        };
        if let Err(e) = send_due(&engine, &to, &mut link).await {
            engine.store_failed(&e);
            tracing::error!(error = %e, "the HL7 status reports could not be read; trying again");
        }
    }
}

/// Sends the due reports in order; stops at the first that must wait or fails.
async fn send_due(
    engine: &Engine,
    to: &str,
    link: &mut Option<(String, Client)>,
) -> Result<(), StoreError> {
    let reports = engine.store.unsent_hl7_reports(100).await?;
    engine
        .metrics
        .hl7_reports_unsent(i64::try_from(reports.len()).unwrap_or(i64::MAX));
    for report in reports {
        let now = engine.now();
        if report.next_attempt_at > now
            || !engine
                .store
                .claim_hl7_report(
                    &report,
                    now + chrono::Duration::from_std(ATTEMPT).unwrap_or_default(),
                )
                .await?
        {
            return Ok(());
        }
        match send(to, link, &report).await {
            Ok(()) => {
                engine
                    .store
                    .hl7_report_sent(&report.id, engine.now())
                    .await?;
                engine.metrics.hl7_report("sent");
                tracing::info!(alert_id = %report.alert_id, status = %report.status, to, "HL7 status report acknowledged by the alarm's source");
            }
            Err(why) => {
                *link = None;
                let attempts = report.attempts + 1;
                let retry_at = now + retry_after(attempts);
                engine
                    .store
                    .hl7_report_failed(&report.id, &why, retry_at)
                    .await?;
                engine.metrics.hl7_report("failed");
                tracing::error!(
                    alert_id = %report.alert_id,
                    status = %report.status,
                    to,
                    attempts,
                    queued_since = %report.created_at,
                    error = %why,
                    "an HL7 status report did not reach the alarm's source ([hl7] report_status); it stays queued and is tried again"
                );
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The pause after `attempts` failed attempts: 1 s, 2 s, 4 s, ... up to `MAX_RETRY`.
fn retry_after(attempts: i32) -> chrono::Duration {
    let seconds = 1u64 << attempts.clamp(1, 16).saturating_sub(1);
    chrono::Duration::from_std(Duration::from_secs(seconds).min(MAX_RETRY)).unwrap_or_default()
}

/// One report over the open connection (opened first when there is none); Ok when the
/// source answered `AA`.
async fn send(
    to: &str,
    link: &mut Option<(String, Client)>,
    report: &Hl7Report,
) -> Result<(), String> {
    if link.as_ref().is_none_or(|(at, _)| at != to) {
        *link = Some((to.to_string(), Client::connect(to, ATTEMPT).await?));
    }
    let (_, client) = link.as_mut().expect("connected above");
    let ack = client.send(&report.message).await?;
    if ack.accepted() {
        Ok(())
    } else {
        Err(ack.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Hl7Origin {
        Hl7Origin {
            sending_application: "ACME_GW^0012A4FFFE000001^EUI-64".into(),
            sending_facility: Some("ICU".into()),
            alarm_id: "ALM-77".into(),
            event_code: Some("MDC_EVT_HI_GT_LIM".into()),
            patient_id: Some("P-1".into()),
        }
    }

    #[test]
    fn an_accepted_report_names_the_alarm_and_who_took_it() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .into();
        let who = Participant {
            id: "ana".into(),
            name: Some("Ana | Ward^3".into()),
        };
        let ora = render(&origin(), "42", Status::Accepted, Some(&who), "R1", now);
        assert_eq!(
            ora,
            "MSH|^~\\&|alertcall||ACME_GW^0012A4FFFE000001^EUI-64|ICU|20261203100000.000+0000||ORA^R41^ORA_R41|R1|P|2.6\r\
             PID|||P-1\r\
             OBR|1|42^alertcall|ALM-77^ACME_GW|^MDC_EVT_HI_GT_LIM^MDC\r\
             PRT|1|UC||RCT^Result Copies To^HL70912|ana^Ana \\F\\ Ward\\S\\3\r\
             OBX|1|ST|ALERT_STATUS^Alert status^L|1|accepted||||||F|||20261203100000.000+0000\r"
        );
        let escalated = render(
            &Hl7Origin {
                patient_id: None,
                ..origin()
            },
            "42",
            Status::Escalated,
            None,
            "R2",
            now,
        );
        assert!(!escalated.contains("PID|") && !escalated.contains("PRT|"));
        assert!(escalated.contains("|escalated|"));
    }

    #[test]
    fn retries_wait_longer_each_time_up_to_a_cap() {
        let s = |n| retry_after(n).num_seconds();
        assert_eq!([s(1), s(2), s(3), s(4)], [1, 2, 4, 8]);
        assert_eq!(s(6), 30);
        assert_eq!(s(1000), 30);
    }
}
