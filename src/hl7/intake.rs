//! What an understood `ORU^R40` does to the `alerts` table, in one transaction: a new alarm
//! becomes an alert (its room and patient added when missing), an update changes it, an end
//! resolves it. A message whose control id was taken before changes nothing.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::oru::{Alarm, Header, Location, Phase, Report};
use super::supervise;
use crate::domain::alert::{Acknowledger, NewAlert};
use crate::engine::Engine;
use crate::store::{AuditEvent, AuditKind, StoreError};

/// What a committed message did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The control id was taken before: nothing was written again.
    pub duplicate: bool,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    /// Alerts resolved because their alarm ended at its source.
    pub ended: Vec<String>,
}

/// Writes `report` and commits; the caller acknowledges only after this returns `Ok`.
pub async fn apply(
    engine: &Engine,
    header: &Header,
    report: &Report,
    peer: IpAddr,
) -> Result<Applied, StoreError> {
    let now = engine.now();
    let priorities = engine.directory().hl7_priorities.clone();
    let source = header.source();
    let mut applied = Applied::default();
    let mut tx = engine.store.call_tx().await?;
    if !tx.hl7_first_seen(&source, &header.control_id, now).await? {
        applied.duplicate = true;
        return Ok(applied);
    }
    let room = match report.location.as_ref().and_then(room_name) {
        Some(name) => Some(tx.room_named(&name).await?),
        None => None,
    };
    if let Some(p) = &report.patient {
        tx.ensure_patient(&p.id, p.name.as_deref()).await?;
    }
    let watchdog = report.alarms.iter().find(|a| supervise::is_watchdog(a));
    if let Some(id) = supervise::heard(&mut tx, &source, watchdog, now).await? {
        applied.ended.push(id);
    }
    // A watchdog is acknowledged and tracked, never an alert.
    for alarm in report.alarms.iter().filter(|a| !supervise::is_watchdog(a)) {
        let severity = priorities.severity(alarm.priority.as_deref(), alarm.kind.as_deref());
        let mut meta = metadata(header, alarm, report.location.as_ref(), peer);
        let known = tx.hl7_alarm(&source, &alarm.instance_id).await?;
        let alert_id = match known {
            // An alarm that ends before we heard it start has nothing to close.
            None if alarm.phase == Phase::End => continue,
            None => {
                let id = tx
                    .insert_alert(&NewAlert {
                        severity,
                        patient_id: report.patient.as_ref().map(|p| p.id.clone()),
                        room: room.clone(),
                        alert_type: Some(alarm.event_code.clone()),
                        title: Some(title(alarm)),
                        message: Some(message(alarm)),
                    })
                    .await?;
                applied.created.push(id.clone());
                id
            }
            Some(id) => {
                let Some((current, status)) = tx.alert_state(&id).await? else {
                    // The hospital deleted the alert: nothing left to change.
                    continue;
                };
                let end = alarm.phase == Phase::End;
                if end && !matches!(status.as_str(), "active" | "acknowledged") {
                    // Ended before, here or by someone: the end changes nothing.
                    continue;
                }
                // An ended alarm keeps the severity it was paged with.
                let severity = if end { current } else { severity };
                tx.revise_alert(&id, &severity, alarm.text.as_deref(), end)
                    .await?;
                if end {
                    meta["ended_at_source"] = json!(true);
                    tx.record(&AuditEvent {
                        alert_id: Some(id.clone()),
                        call_id: None,
                        source: "hl7".into(),
                        kind: AuditKind::AlertResolved,
                        dedupe_key: Some(format!("resolved:{id}")),
                        detail: json!({"by": by(header).as_str(), "via": "hl7", "ended_at_source": true}),
                        at: now,
                    })
                    .await?;
                    applied.ended.push(id.clone());
                } else {
                    applied.updated.push(id.clone());
                }
                id
            }
        };
        tx.flag_alert(&alert_id, "hl7", &meta).await?;
        tx.hl7_link(
            &source,
            &alarm.instance_id,
            &alert_id,
            alarm.phase.as_str(),
            now,
        )
        .await?;
        tx.record(&AuditEvent {
            alert_id: Some(alert_id.clone()),
            call_id: None,
            source: "hl7".into(),
            kind: AuditKind::Hl7(alarm.phase),
            dedupe_key: Some(format!(
                "hl7:{source}:{}:{}",
                header.control_id, alarm.instance_id
            )),
            detail: json!({
                "control_id": header.control_id,
                "event_code": alarm.event_code,
                "priority": alarm.priority,
                "state": alarm.state,
            }),
            at: now,
        })
        .await?;
    }
    tx.commit().await?;
    Ok(applied)
}

/// After the commit: new and changed alerts are looked at now (a critical one is paged at
/// once), and the calls of alerts whose alarm ended are hung up.
pub async fn after_commit(engine: &Engine, applied: &Applied) {
    if !applied.created.is_empty() || !applied.updated.is_empty() {
        engine.wake();
    }
    for id in &applied.ended {
        tracing::info!(alert_id = %id, via = "hl7", "RESOLVED: the alarm ended at its source");
        engine.metrics.acknowledged("hl7", "resolved", None);
        if let Err(e) = engine.closed(id).await {
            // The sweep finds the resolved alert and hangs up within one interval.
            tracing::warn!(alert_id = %id, error = %e, "could not hang up the calls of an ended alarm yet");
        }
    }
}

/// Who closed an alert whose alarm ended: the sending application.
pub fn by(header: &Header) -> Acknowledger {
    Acknowledger::named("hl7", &header.sending_application)
}

/// The room as the hospital names it: PV1-3's room, or the point of care when there is no
/// room (a corridor, a bay).
fn room_name(location: &Location) -> Option<String> {
    location
        .room
        .clone()
        .or_else(|| location.point_of_care.clone())
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
}

/// `alerts.title`: what kind of alarm, for the board.
fn title(alarm: &Alarm) -> String {
    let mut title = "Bedside alarm".to_string();
    let details: Vec<&str> = [alarm.priority.as_deref(), alarm.kind.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    if !details.is_empty() {
        title.push_str(&format!(" ({})", details.join(", ")));
    }
    title
}

/// `alerts.message`: what is read out. The alarm's text, or its event code in words
/// (`MDC_EVT_LEAD_OFF` → "lead off").
fn message(alarm: &Alarm) -> String {
    alarm.text.clone().unwrap_or_else(|| {
        alarm
            .event_code
            .trim_start_matches("MDC_EVT_")
            .replace('_', " ")
            .to_lowercase()
    })
}

/// `alerts.metadata.hl7`: the alarm's identity and facets, so that later rounds (status back
/// to the source, the dashboard's device column) find what they need.
fn metadata(header: &Header, alarm: &Alarm, location: Option<&Location>, peer: IpAddr) -> Value {
    json!({
        "sending_application": header.sending_application,
        "sending_facility": header.sending_facility,
        "alarm_id": alarm.instance_id,
        "control_id": header.control_id,
        "event_code": alarm.event_code,
        "phase": alarm.phase.as_str(),
        "phase_sent": alarm.phase_text,
        "state": alarm.state,
        "inactivation_state": alarm.inactivation_state,
        "priority": alarm.priority,
        "kind": alarm.kind,
        "device": alarm.device,
        "observed_at": alarm.observed_at,
        "location": location.map(|l| json!({
            "point_of_care": l.point_of_care,
            "room": l.room,
            "bed": l.bed,
            "facility": l.facility,
        })),
        "peer": peer.to_string(),
        "ended_at_source": false,
    })
}
