//! How long the HL7 intake's bookkeeping is kept (`[hl7] keep_messages`, 7 days): the control
//! ids of the messages taken, which recognise a message sent again, and the status reports
//! the source acknowledged. The alarm-to-alert links stay: a late repeat of an old alarm
//! still lands on its alert rather than making a new one.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

/// `[hl7] keep_messages` when not set.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often old rows are removed.
const EVERY: Duration = Duration::from_secs(600);

/// Removes old rows now and every `EVERY` until `shutdown` resolves.
pub async fn run(engine: Arc<Engine>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut shutdown => return,
        }
        let keep = engine.directory().hl7_keep_messages();
        let before = engine.now() - chrono::Duration::from_std(keep).unwrap_or_default();
        match engine.store.prune_hl7(before).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(rows = n, kept = %crate::domain::alert::human_duration(keep), "old HL7 message ids and sent status reports removed")
            }
            Err(e) => {
                engine.store_failed(&e);
                tracing::warn!(error = %e, "old HL7 message ids could not be removed; trying again later");
            }
        }
    }
}
