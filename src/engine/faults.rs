//! Whether the database is storing what we write. A full disk or an I/O error fails writes
//! while reads (and `/readyz`'s ping) still answer: the failures are counted, logged once
//! when they start and when they end, and shown in `/readyz` until a write succeeds again or
//! none has failed for `HOLD`. A database that cannot be written for good (read-only, moved
//! away, damaged: `StoreError::unwritable`) stops `serve` instead, for its supervisor to
//! restart it: waiting does not heal it, and a fresh process reopens the file or reconnects.

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
    /// Whether the database cannot be written for good; `serve` stops once it is.
    unwritable: tokio::sync::watch::Sender<bool>,
}

impl Default for WriteFaults {
    fn default() -> Self {
        WriteFaults {
            last: Mutex::default(),
            unwritable: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Engine {
    /// After a store call failed: counted, the write-fault tracking, and the database counts
    /// as unreachable only when it did not answer (one that refused a write or a row answered;
    /// calling that "unreachable" would send the operator the wrong way).
    pub(super) fn database_failed(&self, error: &StoreError) {
        self.store_failed(error);
        if error.database_answered() {
            self.metrics.database_error();
        } else {
            self.set_database_ok(false);
        }
    }

    /// Notes a store error (every failed database operation of the engine's loops and of
    /// the HTTP handlers comes here): a write fault is counted and shown in readiness; an
    /// unwritable database stops `serve`.
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
        if let Some(remedy) = error.unwritable() {
            self.stop_unwritable(error, remedy);
        } else if was.is_none() {
            tracing::error!(%error, "database writes are failing (disk full or I/O error): acknowledgements and calls are retried until they succeed");
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

    /// Logs the one line that says why and asks `serve` to stop (see `unwritable`).
    fn stop_unwritable(&self, error: &StoreError, remedy: &str) {
        if self.write_faults.unwritable.send_replace(true) {
            return;
        }
        tracing::error!(
            database = %crate::config::redact_url(&self.config.database_url),
            %error,
            "the database cannot be written, so alertcall stops (exit status {}) for its supervisor to restart it; to do: {remedy}",
            crate::exit::UNWRITABLE
        );
    }

    /// Resolves once the database cannot be written for good.
    pub async fn unwritable(&self) {
        let mut stopped = self.write_faults.unwritable.subscribe();
        let _ = stopped.wait_for(|unwritable| *unwritable).await;
    }

    /// Whether `serve` stopped because the database cannot be written.
    pub fn database_unwritable(&self) -> bool {
        *self.write_faults.unwritable.borrow()
    }
}
