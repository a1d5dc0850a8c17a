//! SQLite, the embedded default. WAL mode so readers never block the writer; write
//! transactions start `IMMEDIATE` so two writers queue instead of failing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite, SqliteConnection, Transaction};
use uuid::Uuid;

use sqlx::AssertSqlSafe;

use super::*;
use crate::domain::alert::CRITICAL;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/sqlite/0001_init.sql")),
    (2, include_str!("migrations/sqlite/0002_sessions.sql")),
    (
        3,
        include_str!("migrations/sqlite/0003_webhook_secrets.sql"),
    ),
    (
        4,
        include_str!("migrations/sqlite/0004_session_credential.sql"),
    ),
    (5, include_str!("migrations/sqlite/0005_test_calls.sql")),
    (6, include_str!("migrations/sqlite/0006_hl7.sql")),
    (7, include_str!("migrations/sqlite/0007_hl7_links.sql")),
    (8, include_str!("migrations/sqlite/0008_declined.sql")),
];

/// A time column the hospital writes, as text for `timestamp::read`: whatever its storage
/// class (an epoch number becomes its digits; a BLOB, which need not be UTF-8, its hex).
macro_rules! raw_time {
    ($column:literal) => {
        concat!(
            "CASE WHEN typeof(",
            $column,
            ") = 'blob' THEN 'x''' || hex(",
            $column,
            ") || '''' \
             ELSE CAST(",
            $column,
            " AS TEXT) END"
        )
    };
}

const CALL_COLUMNS: &str = "id, alert_id, provider, provider_call_id, to_number, status, message, \
     step, round, person, created_at, initiated_at, answered_at, ended_at, declined_at, prompts, error";
const PAGE_COLUMNS: &str = "alert_id, state, step, round, policy, attempts, due_at";

/// The room with this `room_id` or `room_name` (?1), an id match first.
const ROOM_LOOKUP: &str = "SELECT CAST(room_id AS TEXT) FROM rooms WHERE room_id = ?1 OR room_name = ?1 \
     ORDER BY (room_id = ?1) DESC LIMIT 1";

/// Inserts `alert`, whose `room` is a `rooms.room_id`; yields its id.
fn insert_alert_query(
    alert: &NewAlert,
) -> sqlx::query::QueryScalar<'_, Sqlite, String, sqlx::sqlite::SqliteArguments> {
    sqlx::query_scalar(
        "INSERT INTO alerts (patient_id, room_id, severity, alert_type, title, message) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING CAST(id AS TEXT)",
    )
    .bind(&alert.patient_id)
    .bind(&alert.room)
    .bind(&alert.severity)
    .bind(&alert.alert_type)
    .bind(&alert.title)
    .bind(&alert.message)
}

/// Our timestamps as text that sorts in time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

pub struct SqliteStore {
    pool: SqlitePool,
    options: SqliteConnectOptions,
    /// The database file as opened (none in memory), checked at every intake.
    file: Option<OpenedFile>,
}

/// A file by its device and inode, which a rename, a delete or a replacement at its path
/// changes (the check SQLite's `SQLITE_FCNTL_HAS_MOVED` makes, which WAL mode skips).
struct OpenedFile {
    path: std::path::PathBuf,
    id: (u64, u64),
}

impl OpenedFile {
    fn at(path: &std::path::Path) -> Option<OpenedFile> {
        Some(OpenedFile {
            path: path.to_path_buf(),
            id: file_id(path)?,
        })
    }

    fn check(&self) -> Result<(), StoreError> {
        if file_id(&self.path) == Some(self.id) {
            Ok(())
        } else {
            Err(StoreError::Moved(self.path.display().to_string()))
        }
    }
}

fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::Invalid(format!("DATABASE_URL is not a valid SQLite URL: {e}"))
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Every acknowledgement must survive a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A transaction whose COMMIT failed (a full disk) is rolled back when dropped; if
            // SQLite had already rolled it back itself, that ROLLBACK fails and sqlx still
            // counts the connection as inside a transaction, refusing every BEGIN on it. Such
            // a connection is closed, never handed out again.
            .after_release(|conn, _| {
                Box::pin(async move {
                    // Runs the rollback queued when the transaction was dropped.
                    conn.ping().await?;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::warn!(
                            "closing a SQLite connection left inside a failed transaction"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(options.clone())
            .await
            .doing("opening the SQLite database")?;
        // Once open, the file is never created again: a connection opened after it moved
        // away would start an empty database at the path, and SQLite deletes a WAL it finds
        // beside an empty file, the WAL the open connections still write to.
        let options = options.create_if_missing(false);
        pool.set_connect_options(options.clone());
        let file = OpenedFile::at(options.get_filename());
        Ok(SqliteStore {
            pool,
            options,
            file,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Options for a separate connection (the `data_version` watcher needs its own).
    pub fn connect_options(&self) -> &SqliteConnectOptions {
        &self.options
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .doing("starting a write transaction")
    }
}

/// A SQLite write transaction (`BEGIN IMMEDIATE`, so it holds the write lock from the start)
/// for the shared call steps in `store/mod.rs`.
struct SqliteCallTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl CallTx for SqliteCallTx {
    async fn call(&mut self, call_id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM alertcall_calls WHERE id = ?"
        )))
        .bind(call_id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .doing("reading a call")?;
        row.map(CallRecord::try_from).transpose()
    }

    async fn save_row(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alertcall_calls SET status = ?2, provider_call_id = ?3, initiated_at = ?4, \
             answered_at = ?5, ended_at = ?6, error = ?7, declined_at = ?8 WHERE id = ?1",
        )
        .bind(call.id.to_string())
        .bind(call.status.as_str())
        .bind(&call.provider_call_id)
        .bind(ts_opt(call.initiated_at))
        .bind(ts_opt(call.answered_at))
        .bind(ts_opt(call.ended_at))
        .bind(&call.error)
        .bind(ts_opt(call.declined_at))
        .execute(&mut *self.tx)
        .await
        .doing("updating a call")?;
        Ok(())
    }

    async fn mirror(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alerts SET metadata = json_set( \
               CASE WHEN json_valid(metadata) AND json_type(metadata) = 'object' THEN metadata ELSE '{}' END, \
               '$.call', json(?2)) \
             WHERE id = ?1 AND (?3 OR ( \
               coalesce(CASE WHEN json_valid(metadata) THEN json_extract(metadata, '$.call.call_status') END, '') <> 'answered' \
               AND NOT EXISTS (SELECT 1 FROM alertcall_calls c WHERE c.alert_id = ?1 AND c.created_at > ?4)))",
        )
        .bind(&call.alert_id)
        .bind(call.metadata_call().to_string())
        .bind(call.status == CallStatus::Answered)
        .bind(ts(call.created_at))
        .execute(&mut *self.tx)
        .await
        .doing("mirroring the call into alerts.metadata")?;
        Ok(())
    }

    async fn acknowledge_alert(
        &mut self,
        alert_id: &str,
        by: &Acknowledger,
        at: DateTime<Utc>,
        answered: Option<&CallRecord>,
    ) -> Result<Option<Option<String>>, StoreError> {
        sqlx::query_scalar(concat!(
            "UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?2, acknowledged_by = ?3, \
               metadata = CASE WHEN ?4 IS NULL THEN metadata ELSE json_set( \
                 CASE WHEN json_valid(metadata) AND json_type(metadata) = 'object' THEN metadata ELSE '{}' END, \
                 '$.call', json(?4)) END \
             WHERE id = ?1 AND status = 'active' RETURNING ",
            raw_time!("triggered_at")
        ))
        .bind(alert_id)
        .bind(ts(at))
        .bind(by.as_str())
        .bind(answered.map(|c| c.metadata_call().to_string()))
        .fetch_optional(&mut *self.tx)
        .await
        .doing("acknowledging the alert")
    }

    async fn alert_exists(&mut self, alert_id: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM alerts WHERE id = ?")
            .bind(alert_id)
            .fetch_optional(&mut *self.tx)
            .await
            .doing("looking up an alert")?;
        Ok(found.is_some())
    }

    async fn close_page(&mut self, alert_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alertcall_pages SET state = 'acknowledged', due_at = NULL, lease_owner = NULL, \
             updated_at = ?2 WHERE alert_id = ?1 AND state IN ('due', 'waiting', 'exhausted')",
        )
        .bind(alert_id)
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await
        .doing("closing the page")?;
        Ok(())
    }

    async fn record(&mut self, event: &AuditEvent) -> Result<bool, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alertcall_call_events (alert_id, call_id, source, kind, dedupe_key, detail, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&event.alert_id)
        .bind(event.call_id.map(|c| c.to_string()))
        .bind(&event.source)
        .bind(&event.kind)
        .bind(&event.dedupe_key)
        .bind(event.detail.to_string())
        .bind(ts(event.at))
        .fetch_optional(&mut *self.tx)
        .await
        .doing("recording an audit event")?;
        Ok(id.is_some())
    }

    async fn update_page(&mut self, outcome: &PageOutcome) -> Result<bool, StoreError> {
        let update = &outcome.update;
        let done = sqlx::query(
            "UPDATE alertcall_pages SET state = ?3, step = ?4, round = ?5, \
               due_at = CASE WHEN ?6 IS NOT NULL AND EXISTS (SELECT 1 FROM alerts a \
                 WHERE a.id = alertcall_pages.alert_id AND a.status <> 'active') THEN ?9 ELSE ?6 END, \
             attempts = ?7, last_error = ?8, lease_owner = NULL, updated_at = ?9, policy = ?10 \
             WHERE alert_id = ?1 AND lease_owner = ?2 AND state NOT IN ('acknowledged', 'cancelled')",
        )
        .bind(&outcome.alert_id)
        .bind(&outcome.owner)
        .bind(update.state.as_str())
        .bind(update.step)
        .bind(update.round)
        .bind(ts_opt(update.due_at))
        .bind(update.attempts)
        .bind(&update.last_error)
        .bind(ts(outcome.now))
        .bind(&update.policy)
        .execute(&mut *self.tx)
        .await
        .doing("updating a page")?;
        if done.rows_affected() == 0 {
            // Closed meanwhile (before any call recorded its policy): still keep which
            // policy (unit) it followed, for the dashboard and analytics.
            sqlx::query(
                "UPDATE alertcall_pages SET policy = ?2 WHERE alert_id = ?1 AND policy IS NULL",
            )
            .bind(&outcome.alert_id)
            .bind(&update.policy)
            .execute(&mut *self.tx)
            .await
            .doing("recording a page's policy")?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn page(&mut self, alert_id: &str) -> Result<Option<Page>, StoreError> {
        let row: Option<PageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {PAGE_COLUMNS} FROM alertcall_pages WHERE alert_id = ?"
        )))
        .bind(alert_id)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("reading a page")?;
        row.map(Page::try_from).transpose()
    }

    async fn set_page(
        &mut self,
        alert_id: &str,
        update: &PageUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alertcall_pages SET state = ?2, step = ?3, round = ?4, due_at = ?5, \
             policy = coalesce(?6, policy), lease_owner = NULL, updated_at = ?7 \
             WHERE alert_id = ?1 AND state NOT IN ('acknowledged', 'cancelled')",
        )
        .bind(alert_id)
        .bind(update.state.as_str())
        .bind(update.step)
        .bind(update.round)
        .bind(ts_opt(update.due_at))
        .bind(&update.policy)
        .bind(ts(now))
        .execute(&mut *self.tx)
        .await
        .doing("moving a page")?;
        Ok(done.rows_affected() == 1)
    }

    async fn flag_alert(
        &mut self,
        alert_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alerts SET metadata = json_set( \
               CASE WHEN json_valid(metadata) AND json_type(metadata) = 'object' THEN metadata ELSE '{}' END, \
               '$.' || ?2, json(?3)) WHERE id = ?1",
        )
        .bind(alert_id)
        .bind(key)
        .bind(value.to_string())
        .execute(&mut *self.tx)
        .await
        .doing("flagging the alert")?;
        Ok(())
    }

    async fn live_calls(
        &mut self,
        alert_id: &str,
        except: Uuid,
    ) -> Result<Vec<LiveCall>, StoreError> {
        sqlx::query_as(concat!(
            "SELECT id, provider_call_id FROM alertcall_calls WHERE alert_id = ?1 AND id <> ?2 \
             AND provider_call_id IS NOT NULL \
             AND status IN ",
            live_statuses!()
        ))
        .bind(alert_id)
        .bind(except.to_string())
        .fetch_all(&mut *self.tx)
        .await
        .doing("listing live calls")
    }

    async fn hl7_source(&mut self, source: &str) -> Result<Option<Hl7Link>, StoreError> {
        sqlx::query_as(
            "SELECT source, state, last_heard_at, alert_id FROM alertcall_hl7_links \
             WHERE source = ?1",
        )
        .bind(source)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("reading an HL7 link")
    }

    async fn set_hl7_source(&mut self, link: &Hl7Link) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall_hl7_links (source, state, last_heard_at, alert_id) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (source) DO UPDATE SET \
             state = excluded.state, last_heard_at = excluded.last_heard_at, \
             alert_id = excluded.alert_id",
        )
        .bind(&link.source)
        .bind(&link.state)
        .bind(ts(link.last_heard_at))
        .bind(&link.alert_id)
        .execute(&mut *self.tx)
        .await
        .doing("writing an HL7 link")?;
        Ok(())
    }

    async fn hl7_first_seen(
        &mut self,
        source: &str,
        control_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO alertcall_hl7_messages (source, control_id, received_at) \
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(source)
        .bind(control_id)
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await
        .doing("recording an HL7 message")?;
        Ok(done.rows_affected() == 1)
    }

    async fn hl7_alarm(
        &mut self,
        source: &str,
        alarm_id: &str,
    ) -> Result<Option<String>, StoreError> {
        // The transaction holds SQLite's write lock already (BEGIN IMMEDIATE).
        sqlx::query_scalar(
            "SELECT alert_id FROM alertcall_hl7_alarms WHERE source = ? AND alarm_id = ?",
        )
        .bind(source)
        .bind(alarm_id)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("looking up an HL7 alarm")
    }

    async fn hl7_link(
        &mut self,
        source: &str,
        alarm_id: &str,
        alert_id: &str,
        phase: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall_hl7_alarms (source, alarm_id, alert_id, phase, updated_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, alarm_id) \
             DO UPDATE SET phase = excluded.phase, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(alarm_id)
        .bind(alert_id)
        .bind(phase)
        .bind(ts(at))
        .execute(&mut *self.tx)
        .await
        .doing("linking an HL7 alarm to its alert")?;
        Ok(())
    }

    async fn room_named(&mut self, name: &str) -> Result<String, StoreError> {
        let found: Option<String> = sqlx::query_scalar(ROOM_LOOKUP)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .doing("looking up the room")?;
        match found {
            Some(id) => Ok(id),
            None => sqlx::query_scalar(
                "INSERT INTO rooms (room_id, room_name) VALUES (?, ?) \
                 RETURNING CAST(room_id AS TEXT)",
            )
            .bind(Uuid::new_v4().to_string())
            .bind(name)
            .fetch_one(&mut *self.tx)
            .await
            .doing("adding a room"),
        }
    }

    async fn ensure_patient(&mut self, id: &str, name: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO patients (patient_id, name) VALUES (?, ?) \
             ON CONFLICT (patient_id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .execute(&mut *self.tx)
        .await
        .doing("adding a patient")?;
        Ok(())
    }

    async fn insert_alert(&mut self, alert: &NewAlert) -> Result<String, StoreError> {
        insert_alert_query(alert)
            .fetch_one(&mut *self.tx)
            .await
            .doing("inserting an alert")
    }

    async fn alert_state(
        &mut self,
        alert_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        sqlx::query_as("SELECT severity, status FROM alerts WHERE CAST(id AS TEXT) = ?")
            .bind(alert_id)
            .fetch_optional(&mut *self.tx)
            .await
            .doing("reading an alert")
    }

    async fn revise_alert(
        &mut self,
        alert_id: &str,
        severity: &str,
        message: Option<&str>,
        resolve: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alerts SET severity = ?2, message = coalesce(?3, message), \
               status = CASE WHEN ?4 AND status IN ('active', 'acknowledged') THEN 'resolved' \
                        ELSE status END \
             WHERE CAST(id AS TEXT) = ?1",
        )
        .bind(alert_id)
        .bind(severity)
        .bind(message)
        .bind(resolve)
        .execute(&mut *self.tx)
        .await
        .doing("revising an alert")?;
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.doing("committing")
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn call_tx(&self) -> Result<Box<dyn CallTx>, StoreError> {
        Ok(Box::new(SqliteCallTx {
            tx: self.begin().await?,
        }))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS alertcall_schema_migrations ( \
               version INTEGER PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .doing("creating the migrations table")?;
        let applied: Vec<i32> =
            sqlx::query_scalar("SELECT version FROM alertcall_schema_migrations")
                .fetch_all(&mut *tx)
                .await
                .doing("reading applied migrations")?;
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            sqlx::raw_sql(AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .doing("applying a migration")?;
            sqlx::query(
                "INSERT INTO alertcall_schema_migrations (version, applied_at) VALUES (?, ?)",
            )
            .bind(version)
            .bind(ts(Utc::now()))
            .execute(&mut *tx)
            .await
            .doing("recording a migration")?;
            tracing::info!(version, "applied SQLite migration");
        }
        tx.commit().await.doing("committing migrations")
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .doing("reading the SQLite database")?;
        Ok(())
    }

    async fn intake(
        &self,
        only: Option<&str>,
        not_before: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<Page>, StoreError> {
        // Alerts written at the path would never be seen in a file that moved away.
        if let Some(file) = &self.file {
            file.check()?;
        }
        let only_clause = if only.is_some() { "AND a.id = ?5" } else { "" };
        let sql = format!(
            "WITH candidates AS ( \
               SELECT CAST(a.id AS TEXT) AS alert_id, \
                      julianday(a.triggered_at) < julianday(?2) AS stale FROM alerts a \
               WHERE a.severity = '{CRITICAL}' AND a.status = 'active' {only_clause} \
                 AND NOT EXISTS (SELECT 1 FROM alertcall_pages p WHERE p.alert_id = CAST(a.id AS TEXT)) \
               ORDER BY a.triggered_at LIMIT 1000) \
             INSERT INTO alertcall_pages (alert_id, state, due_at, lease_owner, created_at, updated_at) \
             SELECT alert_id, CASE WHEN stale THEN 'stale' ELSE 'due' END, \
                    CASE WHEN stale THEN NULL ELSE ?4 END, \
                    CASE WHEN stale THEN NULL ELSE ?3 END, ?1, ?1 \
             FROM candidates WHERE true ON CONFLICT (alert_id) DO NOTHING RETURNING {PAGE_COLUMNS}"
        );
        let rows = sqlx::query_as::<_, PageRow>(AssertSqlSafe(sql))
            .bind(ts(lease.now))
            .bind(ts(not_before))
            .bind(&lease.owner)
            .bind(ts(lease.until))
            .bind(only.unwrap_or_default())
            .fetch_all(&self.pool)
            .await
            .doing("taking in new critical alerts")?;
        pages_from_rows(rows)
    }

    async fn wake_closed(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE alertcall_pages SET due_at = ?1 \
             WHERE state IN ('due', 'waiting', 'exhausted') AND due_at > ?1 \
               AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = alertcall_pages.alert_id AND a.status <> 'active')",
        )
        .bind(ts(now))
        .execute(&self.pool)
        .await
        .doing("waking pages of closed alerts")?;
        Ok(done.rows_affected())
    }

    async fn claim_due(&self, lease: &Lease, limit: i64) -> Result<Vec<Page>, StoreError> {
        let rows = sqlx::query_as::<_, PageRow>(AssertSqlSafe(format!(
            "UPDATE alertcall_pages SET lease_owner = ?1, due_at = ?2, updated_at = ?3 \
             WHERE alert_id IN ( \
               SELECT alert_id FROM alertcall_pages WHERE due_at <= ?3 \
               ORDER BY due_at LIMIT ?4) \
             RETURNING {PAGE_COLUMNS}"
        )))
        .bind(&lease.owner)
        .bind(ts(lease.until))
        .bind(ts(lease.now))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .doing("claiming due pages")?;
        pages_from_rows(rows)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT min(due_at) FROM alertcall_pages WHERE due_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .doing("finding the next due page")
    }

    async fn renew_lease(&self, alert_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alertcall_pages SET due_at = ?3 WHERE alert_id = ?1 AND lease_owner = ?2 \
             AND state IN ('due', 'waiting')",
        )
        .bind(alert_id)
        .bind(&lease.owner)
        .bind(ts(lease.until))
        .execute(&self.pool)
        .await
        .doing("renewing a lease")?;
        Ok(done.rows_affected() == 1)
    }

    async fn feed(&self, poll: Duration) -> Result<Box<dyn AlertFeed>, StoreError> {
        Ok(Box::new(SqliteFeed {
            options: self.options.clone(),
            conn: None,
            version: None,
            poll,
        }))
    }

    async fn owned_page(&self, alert_id: &str, owner: &str) -> Result<Option<Page>, StoreError> {
        let row: Option<PageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {PAGE_COLUMNS} FROM alertcall_pages WHERE alert_id = ?1 AND lease_owner = ?2"
        )))
        .bind(alert_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a claimed page")?;
        row.map(Page::try_from).transpose()
    }

    async fn hl7_links(&self) -> Result<Vec<Hl7Link>, StoreError> {
        sqlx::query_as("SELECT source, state, last_heard_at, alert_id FROM alertcall_hl7_links")
            .fetch_all(&self.pool)
            .await
            .doing("reading the HL7 links")
    }

    async fn page_state(&self, alert_id: &str) -> Result<Option<PageState>, StoreError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM alertcall_pages WHERE alert_id = ?")
                .bind(alert_id)
                .fetch_optional(&self.pool)
                .await
                .doing("reading a page")?;
        state.as_deref().map(PageState::parse).transpose()
    }

    async fn load_alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let row =
            sqlx::query_as::<_, AlertRow>(AssertSqlSafe(format!("{ALERT_SELECT} WHERE a.id = ?")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .doing("loading an alert")?;
        Ok(row.map(Alert::from))
    }

    async fn insert_alert(&self, alert: &NewAlert) -> Result<String, StoreError> {
        let room_id: Option<String> = match &alert.room {
            None => None,
            Some(room) => Some(
                sqlx::query_scalar(ROOM_LOOKUP)
                .bind(room)
                .fetch_optional(&self.pool)
                .await
                .doing("looking up the room")?
                .ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "no room has room_id or room_name {room:?}; add it to the rooms table or \
                         use an existing one"
                    ))
                })?,
            ),
        };
        insert_alert_query(&NewAlert {
            room: room_id,
            ..alert.clone()
        })
        .fetch_one(&self.pool)
        .await
        .doing("inserting an alert")
    }

    async fn alert_views(&self, filter: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "{ALERT_SELECT} WHERE (?1 IS NULL OR a.status = ?1) \
               AND (?2 IS NULL OR a.severity = ?2) \
               AND (?3 IS NULL OR {ALERT_TIME} >= julianday(?3)) \
               AND (?4 IS NULL OR {ALERT_TIME} < julianday(?4)) \
               AND (?6 IS NULL OR CAST(a.id AS TEXT) = ?6) \
             ORDER BY {ALERT_TIME} DESC LIMIT ?5"
        )))
        .bind(&filter.status)
        .bind(&filter.severity)
        .bind(ts_opt(filter.since))
        .bind(ts_opt(filter.until))
        .bind(filter.limit)
        .bind(&filter.id)
        .fetch_all(&self.pool)
        .await
        .doing("listing alerts")?;
        Ok(views_from_rows(rows))
    }

    async fn resolve_alert(&self, alert_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alerts SET status = 'resolved' \
             WHERE CAST(id AS TEXT) = ? AND status IN ('active', 'acknowledged')",
        )
        .bind(alert_id)
        .execute(&self.pool)
        .await
        .doing("resolving the alert")?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_call(&self, call: &NewCall) -> Result<CallRecord, StoreError> {
        // One commit (one fsync) for both.
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE alertcall_pages SET policy = ?2 WHERE alert_id = ?1 AND policy IS NULL",
        )
        .bind(&call.alert_id)
        .bind(&call.policy)
        .execute(&mut *tx)
        .await
        .doing("recording a page's policy")?;
        let row: CallRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO alertcall_calls (id, alert_id, step, provider, to_number, status, message, created_at, round, person) \
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING {CALL_COLUMNS}"
        )))
        .bind(call.id.to_string())
        .bind(&call.alert_id)
        .bind(call.step)
        .bind(&call.provider)
        .bind(&call.to_number)
        .bind(&call.message)
        .bind(ts(call.at))
        .bind(call.round)
        .bind(&call.person)
        .fetch_one(&mut *tx)
        .await
        .doing("recording a new call")?;
        tx.commit().await.doing("committing a new call")?;
        row.try_into()
    }

    async fn find_call(
        &self,
        provider_call_id: &str,
        call_id: Option<Uuid>,
    ) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM alertcall_calls WHERE provider_call_id = ?"
        )))
        .bind(provider_call_id)
        .fetch_optional(&self.pool)
        .await
        .doing("finding a call by provider id")?;
        if let Some(row) = row {
            return row.try_into().map(Some);
        }
        let Some(call_id) = call_id else {
            return Ok(None);
        };
        let row: Option<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE alertcall_calls SET provider_call_id = ?2 \
             WHERE id = ?1 AND (provider_call_id IS NULL OR provider_call_id = ?2) RETURNING {CALL_COLUMNS}"
        )))
        .bind(call_id.to_string())
        .bind(provider_call_id)
        .fetch_optional(&self.pool)
        .await
        .doing("adopting a provider call id")?;
        row.map(CallRecord::try_from).transpose()
    }

    async fn bump_prompts(&self, call_id: Uuid) -> Result<i32, StoreError> {
        let after: Option<i32> = sqlx::query_scalar(
            "UPDATE alertcall_calls SET prompts = prompts + 1 WHERE id = ? RETURNING prompts",
        )
        .bind(call_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("counting a re-prompt")?;
        Ok(after.map_or(0, |n| n - 1))
    }

    async fn create_sms(&self, sms: &NewSms) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall_sms (id, alert_id, person, to_number, code, provider, status, body, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8)",
        )
        .bind(sms.id.to_string())
        .bind(&sms.alert_id)
        .bind(&sms.person)
        .bind(&sms.to_number)
        .bind(&sms.code)
        .bind(&sms.provider)
        .bind(&sms.body)
        .bind(ts(sms.at))
        .execute(&self.pool)
        .await
        .doing("recording a text message")?;
        Ok(())
    }

    async fn sms_sent(
        &self,
        id: Uuid,
        provider_message_id: Option<&str>,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alertcall_sms SET provider_message_id = ?2, status = ?3, updated_at = ?4 WHERE id = ?1",
        )
        .bind(id.to_string())
        .bind(provider_message_id)
        .bind(status)
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .doing("recording a sent text message")?;
        Ok(())
    }

    async fn sms_status(
        &self,
        provider_message_id: &str,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<SmsRecord>, StoreError> {
        sqlx::query_as(
            "UPDATE alertcall_sms SET status = ?2, updated_at = ?3 WHERE provider_message_id = ?1 \
             RETURNING id, alert_id, person, to_number, code, provider_message_id, status",
        )
        .bind(provider_message_id)
        .bind(status)
        .bind(ts(at))
        .fetch_optional(&self.pool)
        .await
        .doing("recording a delivery receipt")
    }

    async fn sms_for_reply(
        &self,
        number: &str,
        code: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Option<SmsRecord>, StoreError> {
        sqlx::query_as(
            "SELECT id, alert_id, person, to_number, code, provider_message_id, status FROM alertcall_sms \
             WHERE to_number = ?1 AND created_at >= ?3 AND (?2 IS NULL OR code = ?2) \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(number)
        .bind(code)
        .bind(ts(since))
        .fetch_optional(&self.pool)
        .await
        .doing("finding the message a reply answers")
    }

    async fn call_history(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let rows: Vec<CallRow> = sqlx::query_as(AssertSqlSafe(format!(concat!(
            "SELECT {CALL_COLUMNS} FROM alertcall_calls c WHERE (?1 IS NULL OR c.alert_id = ?1) \
               AND (?2 IS NULL OR c.created_at >= ?2) \
               AND (?3 IS NULL OR c.created_at < ?3) \
               AND (?4 IS NULL OR c.person = ?4) \
               AND (?5 IS NULL OR c.status = ?5) \
               AND (?6 IS NULL OR c.alert_id IN \
                    (SELECT alert_id FROM alertcall_pages WHERE policy = ?6)) \
               AND (NOT ?8 OR c.status IN ",
            live_statuses!(),
            ") \
             ORDER BY c.created_at DESC LIMIT ?7"
            ),
            CALL_COLUMNS = CALL_COLUMNS
        )))
        .bind(&filter.alert_id)
        .bind(ts_opt(filter.since))
        .bind(ts_opt(filter.until))
        .bind(&filter.person)
        .bind(&filter.status)
        .bind(&filter.unit)
        .bind(filter.limit)
        .bind(filter.live)
        .fetch_all(&self.pool)
        .await
        .doing("listing calls")?;
        calls_from_rows(rows)
    }

    async fn list_events(&self, alert_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, alert_id, call_id, source, kind, json(detail) AS detail, created_at \
             FROM alertcall_call_events WHERE alert_id = ? ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await
        .doing("listing audit events")?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alertcall_call_events")
            .fetch_one(&self.pool)
            .await
            .doing("reading the newest audit entry")
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO alertcall_settings (name, value) VALUES (?, ?) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .doing("storing a setting")?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("the setting {name}")))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM alertcall_settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a setting")
    }

    async fn create_session(&self, token_hash: &str, session: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall_sessions (token_hash, username, role, credential, csrf, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(&session.user)
        .bind(&session.role)
        .bind(&session.credential)
        .bind(&session.csrf)
        .bind(ts(session.expires_at))
        .execute(&self.pool)
        .await
        .doing("starting a session")?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let row: Option<(String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT username, role, credential, csrf, expires_at FROM alertcall_sessions \
             WHERE token_hash = ? AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .doing("looking up a session")?;
        Ok(
            row.map(|(user, role, credential, csrf, expires_at)| Session {
                user,
                role,
                credential,
                csrf,
                expires_at,
            }),
        )
    }

    async fn delete_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM alertcall_sessions WHERE token_hash = ? OR expires_at <= ?")
            .bind(token_hash)
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .doing("ending a session")?;
        Ok(())
    }

    async fn live_alerts_with_event(
        &self,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        // Recent calls first (indexed by created_at), then their alert's events (indexed by
        // alert): never a scan of the whole audit trail.
        sqlx::query_scalar(
            concat!("SELECT DISTINCT c.alert_id FROM alertcall_calls c \
             WHERE c.created_at >= ?2 \
               AND c.status IN ", live_statuses!(), " \
               AND EXISTS (SELECT 1 FROM alertcall_call_events e WHERE e.alert_id = c.alert_id AND e.kind = ?1)"),
        )
        .bind(kind)
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .doing("listing alerts with live calls and an audit event")
    }

    async fn create_test_call(&self, call: &NewTestCall) -> Result<TestCallRecord, StoreError> {
        let row: TestCallRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO alertcall_test_calls (id, person, to_number, provider, state, state_rank, requested_by, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) RETURNING {TEST_CALL_COLUMNS}"
        )))
        .bind(call.id.to_string())
        .bind(&call.person)
        .bind(&call.to_number)
        .bind(&call.provider)
        .bind(TestCallState::Placing.as_str())
        .bind(TestCallState::Placing.rank())
        .bind(&call.requested_by)
        .bind(ts(call.at))
        .fetch_one(&self.pool)
        .await
        .doing("recording a test call")?;
        row.try_into()
    }

    async fn test_call(&self, id: Uuid) -> Result<Option<TestCallRecord>, StoreError> {
        let row: Option<TestCallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {TEST_CALL_COLUMNS} FROM alertcall_test_calls WHERE id = ?1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("reading a test call")?;
        row.map(TestCallRecord::try_from).transpose()
    }

    async fn advance_test_call(
        &self,
        id: Uuid,
        state: TestCallState,
        reason: Option<&str>,
        provider_call_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if let Some(provider_call_id) = provider_call_id {
            sqlx::query(
                "UPDATE alertcall_test_calls SET provider_call_id = ?2 \
                 WHERE id = ?1 AND provider_call_id IS NULL",
            )
            .bind(id.to_string())
            .bind(provider_call_id)
            .execute(&self.pool)
            .await
            .doing("recording a test call's provider id")?;
        }
        let moved = sqlx::query(
            "UPDATE alertcall_test_calls SET state = ?2, state_rank = ?3, \
             reason = COALESCE(?4, reason), updated_at = ?5 \
             WHERE id = ?1 AND state_rank < ?3",
        )
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(state.rank())
        .bind(reason)
        .bind(ts(at))
        .execute(&self.pool)
        .await
        .doing("moving a test call on")?;
        Ok(moved.rows_affected() > 0)
    }

    async fn bump_test_call_prompts(&self, id: Uuid) -> Result<i32, StoreError> {
        let after: Option<i32> = sqlx::query_scalar(
            "UPDATE alertcall_test_calls SET prompts = prompts + 1 WHERE id = ?1 RETURNING prompts",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("counting a test call's re-prompt")?;
        Ok(after.map_or(0, |n| n - 1))
    }
}

/// The alert's time for ordering and filtering: `triggered_at` when SQLite can read it, else
/// when alertcall first saw the alert (`timestamp::read` does the same for the row itself).
const ALERT_TIME: &str = "coalesce(julianday(a.triggered_at), julianday(pg.created_at))";

const ALERT_SELECT: &str = concat!(
    "SELECT CAST(a.id AS TEXT) AS id, CAST(a.patient_id AS TEXT) AS patient_id, \
     p.name AS patient_name, CAST(a.room_id AS TEXT) AS room_id, r.room_name AS room_name, \
     a.severity, a.status, a.alert_type, a.title, a.message, ",
    raw_time!("a.triggered_at"),
    " AS triggered_at, ",
    raw_time!("a.acknowledged_at"),
    " AS acknowledged_at, a.acknowledged_by, \
     CASE WHEN json_valid(a.metadata) THEN json_extract(a.metadata, '$.call.call_status') END \
       AS call_status, \
     CASE WHEN json_valid(a.metadata) THEN json_type(a.metadata, '$.call') IS NOT NULL ELSE 0 END \
       AS has_call, \
     pg.state AS page_state, pg.step AS page_step, pg.round AS page_round, \
     pg.policy AS page_policy, pg.due_at AS page_due_at, pg.created_at AS first_seen, \
     pg.attempts AS page_attempts, pg.last_error AS page_last_error, \
     CASE WHEN json_valid(a.metadata) THEN \
       CAST(json_extract(a.metadata, '$.hl7.sending_application') AS TEXT) END AS hl7_application, \
     CASE WHEN json_valid(a.metadata) THEN \
       CAST(json_extract(a.metadata, '$.hl7.device') AS TEXT) END AS hl7_device \
     FROM alerts a \
     LEFT JOIN patients p ON p.patient_id = a.patient_id \
     LEFT JOIN rooms r ON r.room_id = a.room_id \
     LEFT JOIN alertcall_pages pg ON pg.alert_id = CAST(a.id AS TEXT)"
);

/// Notices commits by other processes: `PRAGMA data_version` changes whenever another
/// connection commits to the file, and costs no I/O to read.
struct SqliteFeed {
    options: SqliteConnectOptions,
    conn: Option<SqliteConnection>,
    version: Option<i64>,
    poll: Duration,
}

#[async_trait]
impl AlertFeed for SqliteFeed {
    async fn next(&mut self) -> Result<FeedEvent, StoreError> {
        loop {
            let conn = match self.conn.as_mut() {
                Some(conn) => conn,
                None => {
                    let conn = SqliteConnection::connect_with(&self.options)
                        .await
                        .doing("opening the SQLite watch connection")?;
                    self.version = None;
                    self.conn.insert(conn)
                }
            };
            let version: i64 = match sqlx::query_scalar("PRAGMA data_version")
                .fetch_one(&mut *conn)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    self.conn = None;
                    return Err(e).doing("reading PRAGMA data_version");
                }
            };
            let changed = self.version != Some(version);
            self.version = Some(version);
            if changed {
                return Ok(FeedEvent::Sweep);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}
