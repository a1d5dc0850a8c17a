//! Whether the database is storing what we write. A full disk, an I/O error or read-only
//! files fail writes while reads (and `/readyz`'s ping) still answer; the failures are
//! counted, logged once when they start and when they end, and shown in `/readyz` until a
//! write succeeds again or none has failed for `HOLD`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Engine;
use crate::store::StoreError;

/// How long one failed write keeps `/readyz` reporting failing writes when nothing is
/// written after it (the dispatcher retries a failed page within a lease, 30 s by default).
const HOLD: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct WriteFaults {
    /// The last write that failed, while no write has succeeded since.
    last: Mutex<Option<Instant>>,
}

impl Engine {
    /// Notes a store error: a write fault is counted and shown in readiness.
    pub fn store_failed(&self, error: &StoreError) {
        if !error.is_write_fault() {
            return;
        }
        self.metrics.database_write_failure();
        let was = self
            .write_faults
            .last
            .lock()
            .expect("write faults lock")
            .replace(Instant::now());
        if was.is_none() {
            tracing::error!(%error, "database writes are failing (disk full, I/O error or read-only files): acknowledgements and calls are retried until they succeed");
        }
    }

    /// Notes a write that succeeded.
    pub fn stored(&self) {
        if self
            .write_faults
            .last
            .lock()
            .expect("write faults lock")
            .take()
            .is_some()
        {
            tracing::info!("database writes succeed again");
        }
    }

    /// Whether database writes are failing now (for `/readyz`).
    pub fn writes_failing(&self) -> bool {
        self.write_faults
            .last
            .lock()
            .expect("write faults lock")
            .is_some_and(|at| at.elapsed() < HOLD)
    }
}
