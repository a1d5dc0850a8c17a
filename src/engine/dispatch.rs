//! Claiming due pages and acting on them: place a call, or note that the wait for "press 1"
//! ran out. Every outcome is written back to the page with its next due time, so a restart
//! resumes exactly where the last process stopped.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Engine;
use crate::domain::alert::{Alert, AlertStatus};
use crate::domain::menu;
use crate::domain::message;
use crate::store::{AuditEvent, Lease, NewCall, Page, PageOutcome, PageState, PageUpdate};
use crate::telephony::{CallRequest, ProviderError};

/// The longest the dispatcher sleeps without looking at the database.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// After a refusal of our credentials, try again this often (someone must fix them).
const CONFIG_RETRY: Duration = Duration::from_secs(60);

pub(super) async fn run(engine: Arc<Engine>) {
    loop {
        let claimed = claim(&engine).await;
        if claimed > 0 && engine.in_flight.available_permits() > 0 {
            continue;
        }
        let sleep = match engine.store.next_due_at().await {
            Ok(Some(due)) => (due - engine.now()).to_std().unwrap_or(Duration::ZERO),
            Ok(None) => MAX_IDLE,
            Err(_) => MAX_IDLE,
        }
        .clamp(Duration::from_millis(5), MAX_IDLE);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = engine.wake.notified() => {}
        }
    }
}

async fn claim(engine: &Arc<Engine>) -> usize {
    let free = engine.in_flight.available_permits();
    if free == 0 {
        return 0;
    }
    let lease = Lease::new(&engine.owner, engine.now(), engine.config.lease);
    match engine.store.claim_due(&lease, free as i64).await {
        Ok(pages) => {
            engine.set_database_ok(true);
            let n = pages.len();
            for page in pages {
                spawn_page(engine.clone(), page, lease.clone());
            }
            n
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not claim due work; will retry");
            engine.set_database_ok(false);
            0
        }
    }
}

/// Works on one claimed page in its own task.
pub(super) fn spawn_page(engine: Arc<Engine>, page: Page, lease: Lease) {
    if !engine
        .working
        .lock()
        .expect("working lock")
        .insert(page.alert_id.clone())
    {
        return;
    }
    tokio::spawn(async move {
        if let Ok(_permit) = engine.in_flight.clone().acquire_owned().await
            && let Err(e) = work(&engine, &page, &lease).await
        {
            // The lease runs out and the page is retried, by this or another instance.
            tracing::warn!(alert_id = %page.alert_id, error = %e, "could not process alert; it will be retried");
        }
        engine
            .working
            .lock()
            .expect("working lock")
            .remove(&page.alert_id);
    });
}

async fn work(
    engine: &Arc<Engine>,
    page: &Page,
    lease: &Lease,
) -> Result<(), crate::store::StoreError> {
    let Some(alert) = engine.store.load_alert(&page.alert_id).await? else {
        return finish(engine, page, PageState::Cancelled, None, "alert deleted").await;
    };
    if !alert.status.needs_paging() {
        let state = match alert.status {
            AlertStatus::Acknowledged => PageState::Acknowledged,
            _ => PageState::Cancelled,
        };
        return finish(engine, page, state, None, "alert no longer active").await;
    }
    match page.state {
        PageState::Due => place_call(engine, page, lease, &alert).await,
        PageState::Waiting => {
            tracing::error!(
                alert_id = %alert.id,
                wait = ?engine.config.ack_wait,
                "NO ACKNOWLEDGEMENT: nobody pressed 1 for this critical alert"
            );
            finish(
                engine,
                page,
                PageState::Exhausted,
                None,
                "no acknowledgement",
            )
            .await
        }
        other => {
            // Final states carry no due time; a claim on one is a leftover. Drop it.
            finish(engine, page, other, None, "nothing to do").await
        }
    }
}

/// The page's next state (releasing the lease) and, if it changes, the audit entry saying why.
fn outcome(
    engine: &Engine,
    page: &Page,
    state: PageState,
    due_at: Option<DateTime<Utc>>,
    reason: &str,
) -> PageOutcome {
    let now = engine.now();
    let retry = state == PageState::Due;
    let page_audit = (state != page.state)
        .then(|| AuditEvent {
            alert_id: Some(page.alert_id.clone()),
            call_id: None,
            source: "engine".into(),
            kind: format!("page.{}", state.as_str()),
            dedupe_key: None,
            detail: json!({"reason": reason, "step": page.step, "round": page.round}),
            at: now,
        })
        .into_iter()
        .collect();
    PageOutcome {
        alert_id: page.alert_id.clone(),
        owner: engine.owner.clone(),
        update: PageUpdate {
            state,
            step: page.step,
            round: page.round,
            due_at,
            attempts: if retry { page.attempts + 1 } else { 0 },
            last_error: retry.then(|| reason.to_string()),
        },
        page_audit,
        now,
    }
}

/// The dispatcher may be sleeping past a new due time.
fn wake_for(engine: &Engine, outcome: &PageOutcome, updated: bool) {
    if updated && outcome.update.due_at.is_some() {
        engine.wake();
    }
}

/// Writes the page's next state (releasing the lease) and records why.
async fn finish(
    engine: &Engine,
    page: &Page,
    state: PageState,
    due_at: Option<DateTime<Utc>>,
    reason: &str,
) -> Result<(), crate::store::StoreError> {
    let outcome = outcome(engine, page, state, due_at, reason);
    let updated = engine.store.finish_page(&outcome, &[]).await?;
    wake_for(engine, &outcome, updated);
    Ok(())
}

async fn place_call(
    engine: &Arc<Engine>,
    page: &Page,
    lease: &Lease,
    alert: &Alert,
) -> Result<(), crate::store::StoreError> {
    let to = engine.config.nurse_phone.clone();
    let announcement = message::announcement(alert, &engine.config.messages);
    let now = engine.now();
    let call = engine
        .store
        .create_call(&NewCall {
            id: Uuid::new_v4(),
            alert_id: alert.id.clone(),
            provider: engine.provider.name().to_string(),
            to_number: to.e164().to_string(),
            message: announcement.clone(),
            step: page.step,
            at: now,
        })
        .await?;
    engine.limiter.acquire().await;
    // Waiting for a slot may have taken a while: make sure the page is still ours.
    let renewed = Lease::new(&engine.owner, engine.now(), engine.config.lease);
    let quarter = chrono::Duration::from_std(engine.config.lease / 4).unwrap_or_default();
    if renewed.now > lease.now + quarter
        && !engine.store.renew_lease(&page.alert_id, &renewed).await?
    {
        tracing::info!(alert_id = %alert.id, "another instance took over this alert");
        engine
            .store
            .call_failed(
                call.id,
                "not placed: another instance took over",
                renewed.now,
                None,
                &[],
            )
            .await?;
        return Ok(());
    }
    let request = CallRequest {
        call_id: call.id,
        to: to.clone(),
        greeting: menu::announcement_prompt(&announcement),
    };
    let result = engine.provider.place_call(&request).await;
    let now = engine.now();
    match result {
        Ok(placed) => {
            let due = now
                + chrono::Duration::from_std(engine.config.ack_wait)
                    .unwrap_or(chrono::Duration::MAX);
            let next = outcome(engine, page, PageState::Waiting, Some(due), "call placed");
            let audit = call_audit(
                alert,
                call.id,
                "call.placed",
                json!({"provider_call_id": placed.provider_call_id}),
                now,
            );
            engine
                .store
                .call_placed(
                    call.id,
                    &placed.provider_call_id,
                    now,
                    Some(&next),
                    &[audit],
                )
                .await?;
            wake_for(engine, &next, true);
            tracing::info!(
                alert_id = %alert.id,
                call_id = %placed.provider_call_id,
                to = %to.masked(),
                provider = engine.provider.name(),
                latency_ms = (now - alert.triggered_at).num_milliseconds(),
                "calling nurse"
            );
            Ok(())
        }
        Err(err) => {
            let (state, due, reason) = match &err {
                ProviderError::Permanent(_) => {
                    tracing::error!(alert_id = %alert.id, to = %to.masked(), error = %err, "the provider refused this call for good");
                    (PageState::Failed, None, err.to_string())
                }
                ProviderError::Config(_) => {
                    tracing::error!(alert_id = %alert.id, error = %err, "CANNOT PLACE CALLS: fix the provider configuration; retrying every minute");
                    (
                        PageState::Due,
                        Some(now + chrono::Duration::from_std(CONFIG_RETRY).unwrap_or_default()),
                        err.to_string(),
                    )
                }
                ProviderError::Transient { retry_after, .. } => {
                    let wait = retry_delay(page.attempts, *retry_after, fastrand::f64());
                    tracing::warn!(alert_id = %alert.id, error = %err, retry_in = ?wait, "call failed; retrying");
                    (
                        PageState::Due,
                        Some(now + chrono::Duration::from_std(wait).unwrap_or_default()),
                        err.to_string(),
                    )
                }
            };
            let next = outcome(engine, page, state, due, &reason);
            let audit = call_audit(
                alert,
                call.id,
                "call.failed",
                json!({"error": err.to_string()}),
                now,
            );
            engine
                .store
                .call_failed(call.id, &err.to_string(), now, Some(&next), &[audit])
                .await?;
            wake_for(engine, &next, true);
            Ok(())
        }
    }
}

fn call_audit(
    alert: &Alert,
    call_id: Uuid,
    kind: &str,
    detail: serde_json::Value,
    at: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        alert_id: Some(alert.id.clone()),
        call_id: Some(call_id),
        source: "engine".into(),
        kind: kind.into(),
        dedupe_key: None,
        detail,
        at,
    }
}

/// Exponential back-off with jitter for a failed call: 0.5 s, 1 s, 2 s, ... capped at 30 s,
/// each scaled by 0.5–1.0 at random so instances do not retry in lockstep; a provider's
/// `Retry-After` is honoured (up to 5 minutes).
pub fn retry_delay(attempts: i32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(after) = retry_after {
        return after.min(Duration::from_secs(300));
    }
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
    base.min(Duration::from_secs(30))
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_caps_and_honours_retry_after() {
        let d = |a, j| retry_delay(a, None, j);
        assert_eq!(d(0, 1.0), Duration::from_millis(500));
        assert_eq!(d(1, 1.0), Duration::from_secs(1));
        assert_eq!(d(3, 1.0), Duration::from_secs(4));
        assert_eq!(d(10, 1.0), Duration::from_secs(30));
        assert_eq!(d(1000, 0.0), Duration::from_secs(15));
        assert_eq!(d(0, 0.0), Duration::from_millis(250));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(7)), 0.3),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(9999)), 0.3),
            Duration::from_secs(300)
        );
    }
}
