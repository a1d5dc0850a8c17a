//! What people do from the dashboard, the API and the CLI: acknowledge or resolve an alert.
//! Escalation stops at once and ringing calls are hung up, as when the hospital app closes it.

use serde_json::json;

use super::Engine;
use crate::domain::alert::Acknowledger;
use crate::hl7::report;
use crate::store::{AckOutcome, AckResult, AuditEvent, AuditKind, Store, StoreError};

/// Acknowledges an active alert as `by`, and records it (`via`: sms, dashboard, api, cli).
pub async fn acknowledge(
    store: &dyn Store,
    alert_id: &str,
    by: &Acknowledger,
    via: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AckResult, StoreError> {
    let acked = store.acknowledge_alert(alert_id, by, now).await?;
    if acked.outcome == AckOutcome::Acknowledged {
        store
            .record_event(&AuditEvent {
                alert_id: Some(alert_id.to_string()),
                call_id: None,
                source: via.into(),
                kind: AuditKind::AlertAcknowledged,
                dedupe_key: Some(format!("ack:{alert_id}")),
                detail: json!({"by": by.as_str(), "via": via}),
                at: now,
            })
            .await?;
    }
    Ok(acked)
}

/// Resolves an active or acknowledged alert as `by`, and records it; false when it was
/// neither. Without an engine (the CLI) the running service hangs up its calls when its sweep
/// sees the alert closed.
pub async fn resolve(
    store: &dyn Store,
    alert_id: &str,
    by: &Acknowledger,
    via: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, StoreError> {
    if !store.resolve_alert(alert_id).await? {
        return Ok(false);
    }
    store
        .record_event(&AuditEvent {
            alert_id: Some(alert_id.to_string()),
            call_id: None,
            source: via.into(),
            kind: AuditKind::AlertResolved,
            dedupe_key: Some(format!("resolved:{alert_id}")),
            detail: json!({"by": by.as_str(), "via": via}),
            at: now,
        })
        .await?;
    tracing::info!(alert_id, via, by = %by.for_log(), "RESOLVED");
    Ok(true)
}

impl Engine {
    /// Acknowledges an alert for someone outside a call (SMS reply, person, token); stops its
    /// escalation and hangs up its calls.
    pub async fn acknowledge_as(
        &self,
        alert_id: &str,
        by: &Acknowledger,
        via: &str,
    ) -> Result<AckOutcome, StoreError> {
        let now = self.now();
        let acked = acknowledge(&*self.store, alert_id, by, via, now).await?;
        self.stored();
        if acked.outcome == AckOutcome::Acknowledged {
            tracing::info!(alert_id, via, by = %by.for_log(), "ACKNOWLEDGED");
            self.metrics
                .acknowledged(via, "acknowledged", acked.seconds_to(now));
            let who = report::Participant {
                id: by.for_log(),
                name: None,
            };
            report::queue(self, alert_id, report::Status::Accepted, via, Some(who)).await;
            self.closed(alert_id).await?;
        }
        Ok(acked.outcome)
    }

    /// Resolves an active or acknowledged alert; false when it was neither. Its calls are
    /// hung up at once.
    pub async fn resolve_as(
        &self,
        alert_id: &str,
        by: &Acknowledger,
        via: &str,
    ) -> Result<bool, StoreError> {
        if !resolve(&*self.store, alert_id, by, via, self.now()).await? {
            return Ok(false);
        }
        self.metrics.acknowledged(via, "resolved", None);
        self.closed(alert_id).await?;
        Ok(true)
    }

    /// An alert was closed here: hang up its calls now and let the dispatcher close its page.
    pub(crate) async fn closed(&self, alert_id: &str) -> Result<(), StoreError> {
        super::escalate::hang_up_live(self, alert_id).await?;
        self.store.wake_closed_alert(alert_id, self.now()).await?;
        self.wake();
        Ok(())
    }
}
