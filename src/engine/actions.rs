//! What people do from the dashboard, the API and the CLI: acknowledge or resolve an alert.
//! Escalation stops at once and ringing calls are hung up, as when the hospital app closes it.

use serde_json::json;

use super::Engine;
use crate::domain::alert::Acknowledger;
use crate::store::{AckOutcome, AuditEvent, Store, StoreError};

/// Acknowledges an active alert as `by`, and records it (`via`: dashboard, api, cli).
pub async fn acknowledge(
    store: &dyn Store,
    alert_id: &str,
    by: &Acknowledger,
    via: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<AckOutcome, StoreError> {
    let outcome = store.acknowledge_alert(alert_id, by, now).await?;
    if outcome == AckOutcome::Acknowledged {
        store
            .record_event(&AuditEvent {
                alert_id: Some(alert_id.to_string()),
                call_id: None,
                source: via.into(),
                kind: "alert.acknowledged".into(),
                dedupe_key: Some(format!("ack:{alert_id}")),
                detail: json!({"by": by.as_str(), "via": via}),
                at: now,
            })
            .await?;
    }
    Ok(outcome)
}

impl Engine {
    /// Acknowledges an alert for a person or token; stops its escalation.
    pub async fn acknowledge_as(
        &self,
        alert_id: &str,
        by: &Acknowledger,
        via: &str,
    ) -> Result<AckOutcome, StoreError> {
        let now = self.now();
        let outcome = acknowledge(&*self.store, alert_id, by, via, now).await?;
        if outcome == AckOutcome::Acknowledged {
            tracing::info!(alert_id, via, "ACKNOWLEDGED ({})", by.as_str());
            self.acknowledged_metric(alert_id, via, now).await?;
            self.closed(alert_id).await?;
        }
        Ok(outcome)
    }

    /// Resolves an active or acknowledged alert; false when it was neither.
    pub async fn resolve_as(
        &self,
        alert_id: &str,
        by: &Acknowledger,
        via: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        if !self.store.resolve_alert(alert_id).await? {
            return Ok(false);
        }
        self.store
            .record_event(&AuditEvent {
                alert_id: Some(alert_id.to_string()),
                call_id: None,
                source: via.into(),
                kind: "alert.resolved".into(),
                dedupe_key: Some(format!("resolved:{alert_id}")),
                detail: json!({"by": by.as_str(), "via": via}),
                at: now,
            })
            .await?;
        tracing::info!(alert_id, via, "RESOLVED ({})", by.as_str());
        self.metrics.acknowledged(via, "resolved", None);
        self.closed(alert_id).await?;
        Ok(true)
    }

    /// Counts an acknowledgement (`via` phone, sms, dashboard, api) and its time since the
    /// alert was triggered.
    pub(super) async fn acknowledged_metric(
        &self,
        alert_id: &str,
        via: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let triggered = self
            .store
            .load_alert(alert_id)
            .await?
            .map(|a| a.triggered_at);
        self.metrics.acknowledged(
            via,
            "acknowledged",
            triggered.map(|t| (now - t).as_seconds_f64()),
        );
        Ok(())
    }

    /// An alert was closed here: hang up its calls now and let the dispatcher close its page.
    async fn closed(&self, alert_id: &str) -> Result<(), StoreError> {
        super::escalate::hang_up_live(self, alert_id).await?;
        self.store.wake_closed(self.now()).await?;
        self.wake();
        Ok(())
    }
}
