//! Link supervision (IHE PCD ACM watchdogs). An alarm gateway that sends watchdog messages
//! (event `MDC_EVT_WATCHDOG`, priority `PN`) is supervised from its first one: when nothing
//! from it arrives for `[hl7] watchdog_timeout`, its silence is an alarm in itself, a
//! critical alert of type `hl7_link_down` in the hospital's `alerts` table, paged like any
//! other. It is resolved when the source is heard again. A final watchdog with alarm state
//! `inactive` signs the source off: its silence after that is no alarm.
//!
//! The last-heard time is in the database (`hl7_links`), so every instance supervises every
//! source whichever instance the gateway talks to, and the row lock makes one alert of it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::oru::{Alarm, Phase};
use crate::domain::alert::{Acknowledger, CRITICAL, NewAlert, human_duration};
use crate::engine::Engine;
use crate::store::{AuditEvent, AuditKind, CallTx, Hl7Link, StoreError};

/// `[hl7] watchdog_timeout` when not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The alert type of a silent source: policies match it like any alert type.
pub const LINK_DOWN: &str = "hl7_link_down";
/// The watchdog's event code (OBX-3's MDC text).
const WATCHDOG: &str = "MDC_EVT_WATCHDOG";

const UP: &str = "up";
const DOWN: &str = "down";
const CLOSED: &str = "closed";

/// Whether this alarm is a watchdog: acknowledged and tracked, never an alert.
pub fn is_watchdog(alarm: &Alarm) -> bool {
    alarm.event_code == WATCHDOG
}

/// A final watchdog: the source signs off on purpose.
fn signs_off(watchdog: &Alarm) -> bool {
    watchdog.phase == Phase::End || watchdog.state.as_deref() == Some("inactive")
}

/// In the intake's transaction: `source` was heard at `now` (with this watchdog, if the
/// message carried one). A watchdog puts the source under supervision (or signs it off);
/// any message from a supervised source keeps it up. Returns the link-down alert this
/// resolved, for the caller to hang up its calls after the commit.
pub async fn heard(
    tx: &mut CallTx,
    source: &str,
    watchdog: Option<&Alarm>,
    now: DateTime<Utc>,
) -> Result<Option<String>, StoreError> {
    let link = tx.hl7_source(source).await?;
    let state = match (watchdog, &link) {
        (Some(w), _) if signs_off(w) => CLOSED,
        (Some(_), _) => UP,
        // Alarms from a source that never sent a watchdog, or signed off, are not supervised.
        (None, None) => return Ok(None),
        (None, Some(l)) if l.state == CLOSED => return Ok(None),
        (None, Some(_)) => UP,
    };
    tx.set_hl7_source(&Hl7Link {
        source: source.to_string(),
        state: state.to_string(),
        last_heard_at: now,
        alert_id: None,
    })
    .await?;
    let Some(alert_id) = link.and_then(|l| l.alert_id.filter(|_| l.state == DOWN)) else {
        return Ok(None);
    };
    match tx.alert_state(&alert_id).await? {
        Some((severity, status)) if matches!(status.as_str(), "active" | "acknowledged") => {
            tx.revise_alert(&alert_id, &severity, None, true).await?;
            tx.record(&AuditEvent {
                alert_id: Some(alert_id.clone()),
                call_id: None,
                source: "hl7".into(),
                kind: AuditKind::AlertResolved,
                dedupe_key: Some(format!("resolved:{alert_id}")),
                detail: json!({"by": Acknowledger::named("hl7", application(source)).as_str(), "via": "hl7", "link": "up"}),
                at: now,
            })
            .await?;
            tracing::info!(alert_id = %alert_id, source = %application(source), "HL7 link up again: its link-down alert is resolved");
            Ok(Some(alert_id))
        }
        // Resolved by someone already, or deleted.
        _ => Ok(None),
    }
}

/// The sending application of a source (`MSH-3`, without the facility).
fn application(source: &str) -> &str {
    source.split('|').next().unwrap_or(source)
}

/// Checks the supervised sources until `shutdown` resolves, a few times per timeout.
pub async fn run(engine: Arc<Engine>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let timeout = engine.directory().hl7_watchdog_timeout();
        let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = &mut shutdown => return,
        }
        if let Err(e) = check(&engine, timeout).await {
            engine.store_failed(&e);
            tracing::error!(error = %e, "the HL7 links could not be checked; trying again");
        }
    }
}

/// One round: every source silent past `timeout` goes down; the gauge counts each state.
async fn check(engine: &Engine, timeout: Duration) -> Result<(), StoreError> {
    let now = engine.now();
    let silent = |l: &Hl7Link| l.state == UP && silent_for(l, now) > timeout;
    let mut links = engine.store.hl7_links().await?;
    if links.iter().any(silent) {
        for link in links.iter().filter(|l| silent(l)) {
            down(engine, &link.source, timeout, now).await?;
        }
        links = engine.store.hl7_links().await?;
    }
    for state in [UP, DOWN, CLOSED] {
        let n = links.iter().filter(|l| l.state == state).count();
        engine
            .metrics
            .hl7_links(state, i64::try_from(n).unwrap_or(i64::MAX));
    }
    Ok(())
}

fn silent_for(link: &Hl7Link, now: DateTime<Utc>) -> Duration {
    (now - link.last_heard_at).to_std().unwrap_or_default()
}

/// Raises the link-down alert of `source`, unless it was heard meanwhile or another
/// instance raised it.
async fn down(
    engine: &Engine,
    source: &str,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = engine.store.call_tx().await?;
    let Some(link) = tx.hl7_source(source).await? else {
        return Ok(());
    };
    if link.state != UP || silent_for(&link, now) <= timeout {
        return Ok(());
    }
    let application = application(source);
    let name = application.split('^').next().unwrap_or(application);
    let id = tx
        .insert_alert(&NewAlert {
            severity: CRITICAL.to_string(),
            patient_id: None,
            room: None,
            alert_type: Some(LINK_DOWN.to_string()),
            title: Some("HL7 link down".to_string()),
            message: Some(format!(
                "The alarm gateway {name} has sent nothing for {}. Bedside alarms from it may \
                 not be reaching alertcall. Check the gateway and its network link.",
                human_duration(timeout)
            )),
        })
        .await?;
    tx.flag_alert(
        &id,
        "hl7",
        &json!({
            "sending_application": application,
            "link": DOWN,
            "last_heard_at": link.last_heard_at,
        }),
    )
    .await?;
    tx.record(&AuditEvent {
        alert_id: Some(id.clone()),
        call_id: None,
        source: "hl7".into(),
        kind: AuditKind::Hl7LinkDown,
        dedupe_key: Some(format!("hl7.link_down:{id}")),
        detail: json!({
            "source": application,
            "last_heard_at": link.last_heard_at,
            "watchdog_timeout_seconds": timeout.as_secs_f64(),
        }),
        at: now,
    })
    .await?;
    tx.set_hl7_source(&Hl7Link {
        state: DOWN.to_string(),
        alert_id: Some(id.clone()),
        ..link
    })
    .await?;
    tx.commit().await?;
    tracing::error!(
        alert_id = %id,
        source = %application,
        watchdog_timeout = %human_duration(timeout),
        "HL7 LINK DOWN: a supervised alarm gateway sent nothing for longer than the watchdog timeout; raised a critical hl7_link_down alert"
    );
    engine.wake();
    Ok(())
}
