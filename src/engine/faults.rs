//! Whether the database is storing what we write. A full disk, an I/O error or read-only
//! files fail writes while reads (and `/readyz`'s ping) still answer; the failures are
//! counted, logged once when they start and when they end, and shown in `/readyz` until a
//! write succeeds again or none has failed for `HOLD`. Database files that cannot be written
//! at all (read-only, or moved or deleted under us) do not heal in place: `serve` logs it and
//! exits with an error, for the supervisor to restart it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Engine;
use crate::store::StoreError;

/// How long one failed write keeps `/readyz` reporting failing writes when nothing is
/// written after it (the dispatcher retries a failed page within a lease, 30 s by default).
const HOLD: Duration = Duration::from_secs(60);

pub(super) struct WriteFaults {
    /// The last write that failed, while no write has succeeded since.
    last: Mutex<Option<Instant>>,
    /// The database files cannot be written at all: `serve` stops.
    unwritable: tokio::sync::watch::Sender<bool>,
}

impl Default for WriteFaults {
    fn default() -> Self {
        WriteFaults {
            last: Mutex::new(None),
            unwritable: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Engine {
    /// Notes a store error: a write fault is counted and shown in readiness.
    pub fn store_failed(&self, error: &StoreError) {
        if !error.is_write_fault() {
            return;
        }
        if error.is_unwritable() && !self.write_faults.unwritable.send_replace(true) {
            tracing::error!(%error, "the database files cannot be written (read-only, or moved or deleted while open): stopping, for the supervisor to restart alertcall once they are fixed");
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

    /// Resolves once the database files turn out not to be writable at all.
    pub async fn unwritable(&self) {
        let mut rx = self.write_faults.unwritable.subscribe();
        let _ = rx.wait_for(|unwritable| *unwritable).await;
    }

    pub fn is_unwritable(&self) -> bool {
        *self.write_faults.unwritable.borrow()
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
