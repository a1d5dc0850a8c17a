//! Taking in new critical alerts: the store's change feed (Postgres NOTIFY, SQLite
//! `data_version`) for speed, and a periodic sweep as the safety net.

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::store::{FeedEvent, Lease, Page, PageState, StoreError};

/// Back-off between attempts while the database is unreachable.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

pub(super) async fn run(engine: Arc<Engine>) {
    let mut sweep = tokio::time::interval(engine.config.sweep_interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut feed = None;
    loop {
        if feed.is_none() {
            match engine.store.feed(engine.config.sqlite_watch_interval).await {
                Ok(f) => feed = Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch for new alerts; sweeping meanwhile");
                    engine.set_database_ok(false);
                }
            }
        }
        let event = tokio::select! {
            _ = sweep.tick() => FeedEvent::Sweep,
            next = async {
                match feed.as_mut() {
                    Some(f) => f.next().await,
                    None => {
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        Ok(FeedEvent::Sweep)
                    }
                }
            } => match next {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the new-alert feed; sweeping and reconnecting");
                    engine.set_database_ok(false);
                    tokio::time::sleep(RECONNECT_DELAY).await;
                    FeedEvent::Sweep
                }
            },
        };
        let only = match &event {
            FeedEvent::NewAlert(id) => Some(id.as_str()),
            FeedEvent::Sweep => None,
        };
        take_in(&engine, only).await;
        if only.is_none() {
            match engine.store.wake_closed(engine.now()).await {
                Ok(0) => {}
                Ok(_) => engine.wake(),
                Err(e) => {
                    engine.metrics.database_error();
                    tracing::warn!(error = %e, "could not look for alerts closed elsewhere");
                }
            }
            if let Err(e) = engine.end_conferences().await {
                tracing::warn!(error = %e, "could not look for conferences of closed alerts");
            }
        }
    }
}

/// Creates and claims pages for new critical alerts, and starts calling at once.
pub(super) async fn take_in(engine: &Arc<Engine>, only: Option<&str>) {
    loop {
        let now = engine.now();
        let lease = Lease::new(&engine.owner, now, engine.config.lease);
        let not_before = now
            - chrono::Duration::from_std(engine.config.max_alert_age)
                .unwrap_or(chrono::Duration::MAX);
        let taken = match engine.store.intake(only, not_before, &lease).await {
            Err(e) if only.is_none() => {
                engine.store_failed(&e);
                one_by_one(engine, not_before, &lease).await
            }
            taken => taken,
        };
        let pages = match taken {
            Ok(pages) => {
                engine.set_database_ok(true);
                if !pages.is_empty() {
                    engine.stored();
                }
                pages
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not take in new alerts; will retry");
                engine.database_failed(&e);
                return;
            }
        };
        let full_batch = pages.len() >= 1000;
        for page in pages {
            if page.state == PageState::Stale {
                tracing::warn!(
                    alert_id = %page.alert_id,
                    max_age = ?engine.config.max_alert_age,
                    "critical alert is older than ALERTCALL_MAX_ALERT_AGE when first seen: not calling"
                );
                continue;
            }
            tracing::info!(alert_id = %page.alert_id, "new critical alert");
            engine.metrics.alert_detected();
            super::dispatch::spawn_page(engine.clone(), page, lease.clone());
        }
        if only.is_some() || !full_batch {
            return;
        }
    }
}

/// After a batch intake failed: takes the alerts in one at a time, so that one alert the
/// database refuses (a trigger, a constraint, a bad value) does not hold back the others. Each
/// refused alert is logged and retried at the next sweep; if it stays refused, `reach` shows it
/// as not taken in and the fallback contact is told. An error here (the list cannot be read)
/// means the database itself is away.
async fn one_by_one(
    engine: &Engine,
    not_before: chrono::DateTime<chrono::Utc>,
    lease: &Lease,
) -> Result<Vec<Page>, StoreError> {
    let views = engine
        .store
        .alert_views(&super::reach::active_critical())
        .await?;
    let mut pages = Vec::new();
    for view in views.iter().filter(|v| v.page.is_none()) {
        match engine
            .store
            .intake(Some(&view.alert.id), not_before, lease)
            .await
        {
            Ok(taken) => pages.extend(taken),
            Err(e) => {
                engine.store_failed(&e);
                tracing::warn!(alert_id = %view.alert.id, error = %e, "the database refused to take this alert in; retrying at every sweep");
            }
        }
    }
    Ok(pages)
}
