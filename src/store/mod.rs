//! Persistence behind traits by role (the hospital's alerts, paging, calls, texts, audit,
//! sessions, the change feed), with one implementation (`sql.rs`) over Postgres and SQLite
//! that passes the same tests on both. Each query is written once; what each database says
//! its own way is in `postgres.rs` and `sqlite.rs`. The decisions (how a call's status may
//! move, what `metadata.call` holds) come from `domain`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::alert::{Acknowledger, Alert, AlertStatus, NewAlert};
use crate::domain::call::{AnsweredBy, CallRecord, CallStatus};
use crate::domain::test_call::TestCallState;
use crate::domain::timestamp;

/// The migrations of one database, in `migrations/<dir>/`: each database has every step,
/// written in its own SQL. A Postgres file that starts with `-- no-transaction` runs outside
/// the migrations' transaction, one statement at a time (`CREATE INDEX CONCURRENTLY`).
macro_rules! migrations {
    ($dir:literal) => {
        &[
            (
                1,
                include_str!(concat!("migrations/", $dir, "/0001_init.sql")),
            ),
            (
                2,
                include_str!(concat!("migrations/", $dir, "/0002_sessions.sql")),
            ),
            (
                3,
                include_str!(concat!("migrations/", $dir, "/0003_webhook_secrets.sql")),
            ),
            (
                4,
                include_str!(concat!("migrations/", $dir, "/0004_session_credential.sql")),
            ),
            (
                5,
                include_str!(concat!("migrations/", $dir, "/0005_test_calls.sql")),
            ),
            (
                6,
                include_str!(concat!("migrations/", $dir, "/0006_hl7.sql")),
            ),
            (
                7,
                include_str!(concat!("migrations/", $dir, "/0007_hl7_links.sql")),
            ),
            (
                8,
                include_str!(concat!("migrations/", $dir, "/0008_declined.sql")),
            ),
            (
                9,
                include_str!(concat!("migrations/", $dir, "/0009_severity_any_case.sql")),
            ),
            (
                10,
                include_str!(concat!("migrations/", $dir, "/0010_alerts_indexes.sql")),
            ),
            (
                11,
                include_str!(concat!("migrations/", $dir, "/0011_call_state.sql")),
            ),
            (
                12,
                include_str!(concat!("migrations/", $dir, "/0012_hl7_reports.sql")),
            ),
        ]
    };
}

mod audit;
mod postgres;
mod sql;
mod sqlite;

pub use audit::AuditKind;
pub use sql::{Aggregated, CallCounts, CallTx, HourCounts, Spread, SqlStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error while {doing}: {source}")]
    Database {
        doing: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The SQLite file alertcall opened is no longer at its path. In WAL mode SQLite goes on
    /// writing to the file it has open (its own SQLITE_READONLY_DBMOVED check covers rollback
    /// journals only), so whatever the hospital writes at the path would never be seen.
    #[error("the database file {0} was moved, deleted or replaced while open")]
    Moved(String),
}

/// Adds what was being attempted to a sqlx error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

impl<T> Doing<T> for Result<T, sqlx::Error> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Database { doing, source })
    }
}

impl StoreError {
    /// The database could not be reached (as opposed to a query that failed).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            StoreError::Database {
                source: sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_),
                ..
            }
        )
    }
}

impl StoreError {
    /// The database refused to store data: for good (`unwritable`), or for a while (a full
    /// disk, an I/O error), which heals when space or the device returns.
    pub fn is_write_fault(&self) -> bool {
        if self.unwritable().is_some() {
            return true;
        }
        match self.database_code() {
            // SQLITE_IOERR, SQLITE_FULL.
            Some(Code::Sqlite(code)) => matches!(code & 0xff, 10 | 13),
            // SQLSTATE class 53 (disk full, out of memory) and 58 (I/O error).
            Some(Code::Postgres(state)) => state.starts_with("53") || state.starts_with("58"),
            None => false,
        }
    }

    /// What the operator must do when the database cannot be written for good: waiting does
    /// not help, a restart (which reopens it) may. `None` for everything else, including the
    /// faults that heal by themselves (a full disk, an I/O error, a busy database, a lost
    /// connection).
    pub fn unwritable(&self) -> Option<&'static str> {
        if let StoreError::Moved(_) = self {
            return Some(
                "put the database file back at its path (the restarted alertcall opens whatever \
                 file is there)",
            );
        }
        match self.database_code()? {
            // The primary result code (the low byte of an extended one).
            Code::Sqlite(code) => match code & 0xff {
                // SQLITE_READONLY and its extended codes (a read-only file or directory, a
                // file moved away, a -shm that cannot be written...).
                8 => Some(
                    "make the database file, its -wal and -shm files and their directory \
                     writable by the user alertcall runs as",
                ),
                // SQLITE_CANTOPEN.
                14 => Some(
                    "check that the database file and its directory exist and that the user \
                     alertcall runs as can read and write them",
                ),
                // SQLITE_CORRUPT, SQLITE_NOTADB.
                11 | 26 => Some(
                    "the file is damaged or is not a SQLite database: restore it from a backup",
                ),
                _ => None,
            },
            // read_only_sql_transaction: a standby (the old primary after a failover) or a
            // database set read-only; a new connection may reach the primary.
            Code::Postgres("25006") => Some(
                "the Postgres server is read-only (a standby, or default_transaction_read_only): \
                 point DATABASE_URL at the primary",
            ),
            Code::Postgres(_) => None,
        }
    }

    /// The database answered, with an error of its own (a refused write, a trigger, a
    /// constraint), as opposed to not answering at all (no connection, a pool timeout, a
    /// server shutting down).
    pub fn database_answered(&self) -> bool {
        match self.database_code() {
            // SQLSTATE class 08 (connection exception) and 57 (operator intervention).
            Some(Code::Postgres(state)) => !(state.starts_with("08") || state.starts_with("57")),
            Some(Code::Sqlite(_)) => true,
            None => false,
        }
    }

    /// The database's own code for the error, if it gave one.
    fn database_code(&self) -> Option<Code<'_>> {
        let StoreError::Database {
            source: sqlx::Error::Database(e),
            ..
        } = self
        else {
            return None;
        };
        if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            // The extended result code.
            e.code()?.parse().ok().map(Code::Sqlite)
        } else {
            e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .map(|e| Code::Postgres(e.code()))
        }
    }
}

enum Code<'a> {
    Sqlite(i32),
    /// SQLSTATE.
    Postgres(&'a str),
}

/// What the engine must do next for one alert, and who holds it right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub alert_id: String,
    pub state: PageState,
    pub step: i32,
    pub round: i32,
    /// The escalation policy this alert follows (kept across configuration reloads).
    pub policy: Option<String>,
    pub attempts: i32,
    pub due_at: Option<DateTime<Utc>>,
}

/// One row per alert being paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageState {
    /// A call must be placed at `due_at`.
    Due,
    /// A call was placed; at `due_at` the wait for "press 1" is over.
    Waiting,
    Acknowledged,
    /// The alert was acknowledged or resolved elsewhere before anyone pressed 1.
    Cancelled,
    /// Nobody acknowledged within the wait.
    Exhausted,
    /// The provider refused the call for good (e.g. an invalid number).
    Failed,
    /// Already older than `ALERTCALL_MAX_ALERT_AGE` when first seen: not called.
    Stale,
}

impl PageState {
    pub fn as_str(self) -> &'static str {
        match self {
            PageState::Due => "due",
            PageState::Waiting => "waiting",
            PageState::Acknowledged => "acknowledged",
            PageState::Cancelled => "cancelled",
            PageState::Exhausted => "exhausted",
            PageState::Failed => "failed",
            PageState::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Result<PageState, StoreError> {
        [
            PageState::Due,
            PageState::Waiting,
            PageState::Acknowledged,
            PageState::Cancelled,
            PageState::Exhausted,
            PageState::Failed,
            PageState::Stale,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| StoreError::Invalid(format!("unknown page state {s:?}")))
    }
}

/// A claim on due pages: held by `owner` until `until`, after which another instance may
/// take the page over (the holder crashed or hung).
#[derive(Debug, Clone)]
pub struct Lease {
    /// This claim's token (`lease_owner`): the process, and which of its claims. A page worked
    /// on, moved by a webhook and claimed again by the same process has a new token, so the
    /// first work's late write cannot undo what the webhook decided.
    pub owner: String,
    pub now: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Lease {
    /// A new claim by `process`.
    pub fn new(process: &str, now: DateTime<Utc>, length: Duration) -> Lease {
        static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let claim = CLAIMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Lease {
            owner: format!("{process}#{claim}"),
            now,
            until: until(now, length),
        }
    }

    /// The same claim, held for `length` more from `now`.
    pub fn renewed(&self, now: DateTime<Utc>, length: Duration) -> Lease {
        Lease {
            owner: self.owner.clone(),
            now,
            until: until(now, length),
        }
    }
}

fn until(now: DateTime<Utc>, length: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX)
}

/// The outcome of processing a claimed page: its next state, and when the engine must look
/// at it again (`None`: never).
#[derive(Debug, Clone)]
pub struct PageUpdate {
    pub state: PageState,
    pub step: i32,
    pub round: i32,
    pub policy: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// What the engine writes when it is done with a claimed page.
#[derive(Debug, Clone)]
pub struct PageOutcome {
    pub alert_id: String,
    /// The lease holder; the page is updated only if it still holds it.
    pub owner: String,
    pub update: PageUpdate,
    /// Recorded only if the page was updated (e.g. `page.waiting`).
    pub page_audit: Vec<AuditEvent>,
    pub now: DateTime<Utc>,
}

/// A call about to be placed.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: Uuid,
    pub alert_id: String,
    pub provider: String,
    pub to_number: String,
    pub message: String,
    pub step: i32,
    pub round: i32,
    /// The staff id of the person called.
    pub person: Option<String>,
    /// The escalation policy (unit) the call is placed under: recorded on the alert's page
    /// with the call, if the page has none yet, so the dashboard and analytics know an
    /// alert's unit from its first ring, whatever happens next.
    pub policy: String,
    pub at: DateTime<Utc>,
}

/// A text message about to be sent.
#[derive(Debug, Clone)]
pub struct NewSms {
    pub id: Uuid,
    pub alert_id: String,
    pub person: Option<String>,
    pub to_number: String,
    /// What a reply must contain to acknowledge this alert (with a 1).
    pub code: String,
    pub provider: String,
    pub body: String,
    pub at: DateTime<Utc>,
}

/// A text message as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct SmsRecord {
    pub id: String,
    pub alert_id: String,
    pub person: Option<String>,
    pub to_number: String,
    pub code: String,
    pub provider_message_id: Option<String>,
    pub status: String,
}

/// What a menu choice marks on its call (`Calls::mark_call`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallMark {
    /// Pressed 3 or said "busy".
    Declined,
    /// A spoken acknowledgement held until machine detection says; `input`: the provider's
    /// timestamp of that input.
    SpeechAckHeld { input: Option<String> },
    /// Key 5.
    JoinedConference,
}

/// An entry in the audit trail: every webhook and every action.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub alert_id: Option<String>,
    pub call_id: Option<Uuid>,
    /// `vonage`, `simulator`, `engine`, `cli`, `api`.
    pub source: String,
    pub kind: AuditKind,
    /// Repeated deliveries with the same key are recorded once.
    pub dedupe_key: Option<String>,
    pub detail: serde_json::Value,
    pub at: DateTime<Utc>,
}

impl AuditEvent {
    /// An entry about one call of an alert.
    pub fn on_call(
        call: &CallRecord,
        source: &str,
        kind: AuditKind,
        dedupe_key: Option<String>,
        detail: serde_json::Value,
        at: DateTime<Utc>,
    ) -> AuditEvent {
        AuditEvent {
            alert_id: Some(call.alert_id.clone()),
            call_id: Some(call.id),
            source: source.into(),
            kind,
            dedupe_key,
            detail,
            at,
        }
    }
}

/// One audit-trail entry as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub alert_id: Option<String>,
    pub call_id: Option<String>,
    pub source: String,
    pub kind: String,
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// This request acknowledged the alert.
    Acknowledged,
    /// The same call had already acknowledged it (a repeated webhook).
    AlreadyAcknowledgedHere,
    /// Someone else acknowledged or resolved it first.
    AlreadyHandled,
    NoSuchAlert,
}

/// Which alerts to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub id: Option<String>,
    pub status: Option<String>,
    pub severity: Option<String>,
    /// `triggered_at` at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// `triggered_at` before this instant.
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// An alert with what alertcall knows about it: the call status mirrored into its metadata
/// (the seed's monitoring queries read it) and its page.
#[derive(Debug, Clone)]
pub struct AlertView {
    pub alert: Alert,
    pub call_status: Option<String>,
    /// `metadata.call` is present (the seed's queries count such alerts as called).
    pub has_call: bool,
    pub page: Option<PageView>,
    /// Where an alarm that came through HL7 came from (`metadata.hl7`); `None` for others.
    pub source: Option<AlarmSource>,
}

/// An HL7 source supervised by its watchdogs: `up`, `down` (silent past the watchdog
/// timeout; `alert_id` is the link-down alert) or `closed` (signed off with a final watchdog).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Hl7Link {
    pub source: String,
    pub state: String,
    pub last_heard_at: DateTime<Utc>,
    pub alert_id: Option<String>,
}

/// Where an alert that came through HL7 came from, as `metadata.hl7` and the alert hold it:
/// what a status report back to its source names.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Hl7Origin {
    pub sending_application: String,
    pub sending_facility: Option<String>,
    /// OBR-3 as sent: the alarm instance.
    pub alarm_id: String,
    pub event_code: Option<String>,
    pub patient_id: Option<String>,
}

/// A status report to queue for an alarm's source (`hl7/report.rs`).
#[derive(Debug, Clone)]
pub struct NewHl7Report {
    /// Our message control id (MSH-10).
    pub id: String,
    pub alert_id: String,
    pub status: String,
    /// One report per happening: queuing the same key again adds nothing.
    pub dedupe_key: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A queued status report not yet acknowledged by the source.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Hl7Report {
    pub id: String,
    pub alert_id: String,
    pub status: String,
    pub message: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// The sender of an HL7 alarm: MSH-3's sending application and OBX-18's device, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmSource {
    pub application: String,
    pub device: Option<String>,
}

/// An alert's escalation as stored: where it stands and which policy (the unit) it follows.
#[derive(Debug, Clone)]
pub struct PageView {
    pub state: PageState,
    pub step: i32,
    pub round: i32,
    pub policy: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    /// Notifications of the current step that failed because of the provider, in a row.
    pub attempts: i32,
    /// Why the last of those failed.
    pub last_error: Option<String>,
}

/// Which calls to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub alert_id: Option<String>,
    /// Created at or after this instant.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The staff id called.
    pub person: Option<String>,
    pub status: Option<String>,
    /// The policy (unit) of the call's alert.
    pub unit: Option<String>,
    /// Only calls still ringing or in progress (of any alert).
    pub live: bool,
    pub limit: i64,
}

/// A signed-in person's session; the token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub role: String,
    /// `User::credential` at sign-in: the session ends when the password or role changes.
    pub credential: String,
    /// The token every form action must carry (X-CSRF-Token).
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Everything alertcall keeps, by role; `sql::SqlStore` is the one implementation, on either
/// database.
#[async_trait]
pub trait Store:
    Alerts
    + Paging
    + Calls
    + Texts
    + TestCalls
    + Audit
    + Hl7Reports
    + Sessions
    + Feed
    + Aggregates
    + Send
    + Sync
    + 'static
{
    fn backend(&self) -> &'static str;
    /// Creates the hospital's tables if absent, alertcall's own tables, and the notify trigger.
    async fn migrate(&self) -> Result<(), StoreError>;
    async fn ping(&self) -> Result<(), StoreError>;
    /// The setting `name`, stored as `value` if it had none: the first instance to ask
    /// decides, and every instance sharing the database gets the same answer.
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError>;
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
}

/// The hospital's `alerts`, read and written in the shape the old worker used.
#[async_trait]
pub trait Alerts {
    async fn load_alert(&self, id: &str) -> Result<Option<Alert>, StoreError>;
    async fn insert_alert(&self, alert: &NewAlert) -> Result<String, StoreError>;
    async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        Ok(self
            .alert_views(filter)
            .await?
            .into_iter()
            .map(|v| v.alert)
            .collect())
    }
    async fn alert_views(&self, filter: &AlertFilter) -> Result<Vec<AlertView>, StoreError>;
    /// Marks an active or acknowledged alert resolved; false when it was neither.
    async fn resolve_alert(&self, alert_id: &str) -> Result<bool, StoreError>;
    /// Acknowledges an alert outside a call (SMS, CLI, API, dashboard).
    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &Acknowledger,
        at: DateTime<Utc>,
    ) -> Result<AckResult, StoreError>;
}

/// Analytics over a range, aggregated by the database: the answer is a few rows per unit,
/// hour, nurse and call status however many alerts the range holds.
#[async_trait]
pub trait Aggregates {
    /// Alerts triggered, and calls made, at or after `from` and before `to`.
    async fn aggregates(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Aggregated, StoreError>;
}

/// The engine's durable state and timer: one page per alert being paged, claimed by lease.
#[async_trait]
pub trait Paging {
    /// Creates a page for every active critical alert that has none yet (only `only` when
    /// given) and claims the new pages; alerts triggered before `not_before` get a `stale`
    /// page instead. Seeing an alert twice creates nothing the second time.
    async fn intake(
        &self,
        only: Option<&str>,
        not_before: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<Page>, StoreError>;
    /// Makes the pages of alerts acknowledged or resolved elsewhere due now, so their calls
    /// are hung up and their escalation stops without waiting out a step. Returns how many.
    async fn wake_closed(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// The same for one alert that was just closed: its own pages only, so that alarms ending
    /// at once (an HL7 storm) do not each lock every closed alert's page.
    async fn wake_closed_alert(
        &self,
        alert_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
    /// Claims pages that are due and not held by a live lease.
    async fn claim_due(&self, lease: &Lease, limit: i64) -> Result<Vec<Page>, StoreError>;
    /// When the earliest page falls due (for the dispatcher's sleep).
    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Stores the outcome of processing a claimed page and releases the lease, with `audit`
    /// (always) and the outcome's own audit entries (only if the page was updated). Returns
    /// false, changing no page, when the owner no longer holds it.
    async fn finish_page(
        &self,
        outcome: &PageOutcome,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError>;
    /// Extends a lease the owner still holds (e.g. after waiting for the rate limiter).
    async fn renew_lease(&self, alert_id: &str, lease: &Lease) -> Result<bool, StoreError>;
    /// Every supervised HL7 source (`hl7/supervise.rs`).
    async fn hl7_links(&self) -> Result<Vec<Hl7Link>, StoreError>;
    async fn page_state(&self, alert_id: &str) -> Result<Option<PageState>, StoreError>;
    /// The page, if `owner` holds it.
    async fn owned_page(&self, alert_id: &str, owner: &str) -> Result<Option<Page>, StoreError>;
}

/// Calls placed, their statuses and the key presses that acknowledge alerts.
#[async_trait]
pub trait Calls {
    /// A write transaction on calls, pages, alerts and the audit trail.
    async fn call_tx(&self) -> Result<CallTx, StoreError>;
    async fn create_call(&self, call: &NewCall) -> Result<CallRecord, StoreError>;
    /// The provider accepted the call: record its id, move `pending` to `initiated`, mirror
    /// it, and (in the same transaction) finish the page and write `audit`.
    async fn call_placed(
        &self,
        call_id: Uuid,
        provider_call_id: &str,
        at: DateTime<Utc>,
        page: Option<&PageOutcome>,
        audit: &[AuditEvent],
    ) -> Result<CallRecord, StoreError> {
        let change = |mut call: CallRecord| {
            call.provider_call_id = Some(provider_call_id.to_string());
            call.initiated_at.get_or_insert(at);
            advanced(call.clone(), CallStatus::Initiated, at).unwrap_or(call)
        };
        call_outcome(self.call_tx().await?, call_id, change, page, audit).await
    }
    /// The provider refused the call (or it was never placed): record why, mark it failed,
    /// mirror it, and (in the same transaction) finish the page and write `audit`.
    async fn call_failed(
        &self,
        call_id: Uuid,
        error: &str,
        at: DateTime<Utc>,
        page: Option<&PageOutcome>,
        audit: &[AuditEvent],
    ) -> Result<CallRecord, StoreError> {
        let change = |mut call: CallRecord| {
            call.error = Some(error.to_string());
            advanced(call.clone(), CallStatus::Failed, at).unwrap_or(call)
        };
        call_outcome(self.call_tx().await?, call_id, change, page, audit).await
    }
    /// Finds a call by the provider's id, or by ours while the provider's is not yet recorded
    /// (adopting the provider's id then). A call whose recorded provider id differs is not
    /// returned.
    async fn find_call(
        &self,
        provider_call_id: &str,
        call_id: Option<Uuid>,
    ) -> Result<Option<CallRecord>, StoreError>;
    /// A provider's status event: records `audit` and, in the same transaction, moves the
    /// call's status forward (see `CallStatus::advance`), mirrors it into `alerts.metadata.call`
    /// and keeps what machine detection said. The call as it now is when its status changed,
    /// else `None`.
    async fn call_event(
        &self,
        call_id: Uuid,
        status: Option<CallStatus>,
        answered_by: Option<AnsweredBy>,
        audit: &AuditEvent,
    ) -> Result<Option<CallRecord>, StoreError> {
        let mut tx = self.call_tx().await?;
        let call = tx.call(call_id).await?;
        tx.record(audit).await?;
        let Some(call) = call else {
            tx.commit().await?;
            return Ok(None);
        };
        let detected = answered_by.map(|by| AnsweredBy::then(call.answered_by, by));
        let moved = status.and_then(|s| advanced(call.clone(), s, audit.at));
        let mut saved = moved.clone().unwrap_or_else(|| call.clone());
        saved.answered_by = detected.or(call.answered_by);
        if moved.is_some() {
            tx.save(&saved).await?;
        } else if saved.answered_by != call.answered_by {
            tx.save_row(&saved).await?;
        }
        tx.commit().await?;
        Ok(moved.map(|_| saved))
    }
    /// Records `audit` about a call and, when it is new (not a repeated delivery), marks the
    /// call in the same transaction (a mark already set keeps its first time); false when the
    /// entry was already recorded.
    async fn mark_call(
        &self,
        call_id: Uuid,
        mark: CallMark,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.call_tx().await?;
        let call = tx.call(call_id).await?;
        if !tx.record(audit).await? {
            return Ok(false);
        }
        if let Some(mut call) = call {
            let at = Some(audit.at);
            match mark {
                CallMark::Declined => call.declined_at = call.declined_at.or(at),
                CallMark::SpeechAckHeld { input } => {
                    if call.speech_ack_held_at.is_none() {
                        call.speech_ack_held_at = at;
                        call.speech_ack_held_input = input;
                    }
                }
                CallMark::JoinedConference => {
                    call.conference_joined_at = call.conference_joined_at.or(at)
                }
            }
            tx.save_row(&call).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
    /// Digit 1: acknowledges the alert and marks the call `answered`, in one transaction
    /// that also records the choice (`menu.choice`) and, when it acknowledged, `acknowledged`.
    async fn acknowledge_by_call(
        &self,
        call_id: Uuid,
        by: &Acknowledger,
        at: DateTime<Utc>,
        audit: &AckAudit,
    ) -> Result<AckResult, StoreError> {
        acknowledged_by_call(self.call_tx().await?, call_id, by, at, audit).await
    }
    /// Counts one more re-prompt on a call and returns how many there were before.
    async fn bump_prompts(&self, call_id: Uuid) -> Result<i32, StoreError>;
    async fn list_calls(
        &self,
        alert_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.call_history(&CallFilter {
            alert_id: alert_id.map(str::to_string),
            limit,
            ..CallFilter::default()
        })
        .await
    }
    async fn call_history(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError>;
    /// The alerts with a call created since `since` that is still ringing or in progress and
    /// joined the alert's responders' conference.
    async fn alerts_in_conference(&self, since: DateTime<Utc>) -> Result<Vec<String>, StoreError>;
}

/// Text messages (the SMS fallback) and the replies that answer them.
#[async_trait]
pub trait Texts {
    async fn create_sms(&self, sms: &NewSms) -> Result<(), StoreError>;
    /// Records the provider's id (if it accepted the text) and the status (`submitted` or
    /// `failed`).
    async fn sms_sent(
        &self,
        id: Uuid,
        provider_message_id: Option<&str>,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// A delivery receipt: the message's new status, and the message.
    async fn sms_status(
        &self,
        provider_message_id: &str,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<SmsRecord>, StoreError>;
    /// The newest message to `number` since `since` (with `code`, when the reply gave one).
    async fn sms_for_reply(
        &self,
        number: &str,
        code: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Option<SmsRecord>, StoreError>;
}

/// The append-only audit trail: every webhook and every action.
#[async_trait]
pub trait Audit {
    /// Appends to the audit trail; false when an event with the same dedupe key exists.
    async fn record_event(&self, event: &AuditEvent) -> Result<bool, StoreError>;
    async fn list_events(&self, alert_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// The newest audit-trail id: it grows with every step any instance records.
    async fn last_event_id(&self) -> Result<i64, StoreError>;
}

/// Status reports back to an HL7 alarm's source, queued durably and sent in order
/// (`hl7/report.rs`).
#[async_trait]
pub trait Hl7Reports {
    /// Where an HL7 alert came from; `None` for an alert that did not come through HL7.
    async fn hl7_origin(&self, alert_id: &str) -> Result<Option<Hl7Origin>, StoreError>;
    /// Queues a report; false when one with the same dedupe key was queued before.
    async fn queue_hl7_report(&self, report: &NewHl7Report) -> Result<bool, StoreError>;
    /// The reports not yet acknowledged, in the order they were queued.
    async fn unsent_hl7_reports(&self, limit: i64) -> Result<Vec<Hl7Report>, StoreError>;
    /// Takes a report for sending until `until` (another instance leaves it alone); false
    /// when another instance took it first (its `attempts` moved on).
    async fn claim_hl7_report(
        &self,
        report: &Hl7Report,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Forgets the HL7 message control ids received before `before` and the status reports
    /// sent before it; how many rows went.
    async fn prune_hl7(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// The source acknowledged the report.
    async fn hl7_report_sent(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// The report did not go through: try again at `retry_at`.
    async fn hl7_report_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// Dashboard sign-ins.
#[async_trait]
pub trait Sessions {
    async fn create_session(&self, token_hash: &str, session: &Session) -> Result<(), StoreError>;
    /// The unexpired session with this token hash.
    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError>;
    /// Ends a session, and any that have expired.
    async fn delete_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// Hints that alerts may have arrived.
#[async_trait]
pub trait Feed {
    /// A stream of hints that alerts may have arrived (notifications, file changes).
    async fn feed(&self, poll: Duration) -> Result<Box<dyn AlertFeed>, StoreError>;
}

/// Test calls (`alertcall test-call`): kept apart from alerts, they acknowledge nothing.
#[async_trait]
pub trait TestCalls {
    /// Records a test call (`alertcall test-call`), `placing`.
    async fn create_test_call(&self, call: &NewTestCall) -> Result<TestCallRecord, StoreError>;
    async fn test_call(&self, id: Uuid) -> Result<Option<TestCallRecord>, StoreError>;
    /// Records the provider's id of a test call (if it has none), and moves it to `state` if
    /// that is a step forward (`TestCallState::rank`) with `reason`; true when it moved.
    async fn advance_test_call(
        &self,
        id: Uuid,
        state: TestCallState,
        reason: Option<&str>,
        provider_call_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Counts one more re-prompt on a test call and returns how many there were before.
    async fn bump_test_call_prompts(&self, id: Uuid) -> Result<i32, StoreError>;
}

pub type DynStore = Arc<dyn Store>;

/// What a store's change feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// This alert was just inserted (Postgres NOTIFY).
    NewAlert(String),
    /// Something changed, or notifications may have been lost: sweep.
    Sweep,
}

#[async_trait]
pub trait AlertFeed: Send {
    /// Waits for the next hint. An error means the feed's connection failed; the caller
    /// sweeps (the database is the truth) and asks again, which reconnects.
    async fn next(&mut self) -> Result<FeedEvent, StoreError>;
}

/// Opens the store named by the URL's scheme.
pub async fn connect(url: &str) -> Result<DynStore, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// Row shapes shared by both backends (sqlx decodes them from either).
#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: String,
    patient_id: Option<String>,
    patient_name: Option<String>,
    room_id: Option<String>,
    room_name: Option<String>,
    severity: String,
    status: String,
    alert_type: Option<String>,
    title: Option<String>,
    message: Option<String>,
    /// The times the hospital writes, as text: read by `timestamp::read`, never failing a row.
    triggered_at: Option<String>,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<String>,
    /// The call status mirrored into `metadata.call`, and the page, if any.
    call_status: Option<String>,
    has_call: bool,
    page_state: Option<String>,
    page_step: Option<i32>,
    page_round: Option<i32>,
    page_policy: Option<String>,
    page_due_at: Option<DateTime<Utc>>,
    /// When alertcall first saw the alert (its page's creation): the alert's time when
    /// `triggered_at` cannot be read, the same on every instance and after restarts.
    first_seen: Option<DateTime<Utc>>,
    page_attempts: Option<i32>,
    page_last_error: Option<String>,
    /// `metadata.hl7.sending_application` and `.device`.
    hl7_application: Option<String>,
    hl7_device: Option<String>,
}

impl TryFrom<AlertRow> for AlertView {
    type Error = StoreError;
    fn try_from(mut r: AlertRow) -> Result<Self, StoreError> {
        let page = match r.page_state.take() {
            None => None,
            Some(state) => Some(PageView {
                state: PageState::parse(&state)?,
                step: r.page_step.unwrap_or(0),
                round: r.page_round.unwrap_or(0),
                policy: r.page_policy.take(),
                due_at: r.page_due_at,
                attempts: r.page_attempts.unwrap_or(0),
                last_error: r.page_last_error.take(),
            }),
        };
        let device = r.hl7_device.take().filter(|d| !d.is_empty());
        let source = r.hl7_application.take().map(|application| AlarmSource {
            application,
            device,
        });
        Ok(AlertView {
            source,
            call_status: r.call_status.take(),
            has_call: r.has_call,
            page,
            alert: r.into(),
        })
    }
}

impl From<AlertRow> for Alert {
    fn from(r: AlertRow) -> Self {
        let read = r.triggered_at.as_deref().and_then(timestamp::read);
        let unreadable_triggered_at = match (read, &r.triggered_at) {
            (Some(_), _) => None,
            (None, Some(raw)) => Some(format!("{raw:?}")),
            (None, None) => Some("NULL".to_string()),
        };
        Alert {
            id: r.id,
            patient_id: r.patient_id,
            patient_name: r.patient_name,
            room_id: r.room_id,
            room_name: r.room_name,
            severity: r.severity,
            status: AlertStatus::parse(&r.status),
            alert_type: r.alert_type,
            title: r.title,
            message: r.message,
            // Not yet taken in (not critical, or seen this instant): the time it is read.
            triggered_at: read.or(r.first_seen).unwrap_or_else(Utc::now),
            unreadable_triggered_at,
            acknowledged_at: r.acknowledged_at.as_deref().and_then(timestamp::read),
            acknowledged_by: r.acknowledged_by,
        }
    }
}

/// Alert rows as views: a row that cannot be decoded is logged and left out, never failing
/// the list (the API, the board, the CLI).
pub(crate) fn views_from_rows(rows: Vec<sql::Decoded<AlertRow>>) -> Vec<AlertView> {
    rows.into_iter()
        .filter_map(|sql::Decoded(row)| {
            match row
                .map_err(|e| StoreError::Invalid(e.to_string()))
                .and_then(AlertView::try_from)
            {
                Ok(view) => Some(view),
                Err(e) => {
                    tracing::error!(error = %e, "an alert row cannot be read; left out of the list");
                    None
                }
            }
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallRow {
    id: String,
    alert_id: String,
    provider: String,
    provider_call_id: Option<String>,
    to_number: String,
    status: String,
    message: String,
    step: i32,
    round: i32,
    person: Option<String>,
    created_at: DateTime<Utc>,
    initiated_at: Option<DateTime<Utc>>,
    answered_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    declined_at: Option<DateTime<Utc>>,
    answered_by: Option<String>,
    speech_ack_held_at: Option<DateTime<Utc>>,
    speech_ack_held_input: Option<String>,
    conference_joined_at: Option<DateTime<Utc>>,
    prompts: i32,
    error: Option<String>,
}

impl TryFrom<CallRow> for CallRecord {
    type Error = StoreError;
    fn try_from(r: CallRow) -> Result<Self, StoreError> {
        Ok(CallRecord {
            id: Uuid::parse_str(&r.id)
                .map_err(|_| StoreError::Invalid(format!("call id {:?} is not a uuid", r.id)))?,
            status: CallStatus::parse(&r.status).ok_or_else(|| {
                StoreError::Invalid(format!("call {} has unknown status {:?}", r.id, r.status))
            })?,
            alert_id: r.alert_id,
            provider: r.provider,
            provider_call_id: r.provider_call_id,
            to_number: r.to_number,
            message: r.message,
            step: r.step,
            round: r.round,
            person: r.person,
            created_at: r.created_at,
            initiated_at: r.initiated_at,
            answered_at: r.answered_at,
            ended_at: r.ended_at,
            declined_at: r.declined_at,
            answered_by: r.answered_by.as_deref().and_then(AnsweredBy::parse),
            speech_ack_held_at: r.speech_ack_held_at,
            speech_ack_held_input: r.speech_ack_held_input,
            conference_joined_at: r.conference_joined_at,
            prompts: r.prompts,
            error: r.error,
        })
    }
}

pub(crate) fn calls_from_rows(rows: Vec<CallRow>) -> Result<Vec<CallRecord>, StoreError> {
    rows.into_iter().map(CallRecord::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct PageRow {
    alert_id: String,
    state: String,
    step: i32,
    round: i32,
    policy: Option<String>,
    attempts: i32,
    due_at: Option<DateTime<Utc>>,
}

impl TryFrom<PageRow> for Page {
    type Error = StoreError;
    fn try_from(r: PageRow) -> Result<Self, StoreError> {
        Ok(Page {
            state: PageState::parse(&r.state)?,
            alert_id: r.alert_id,
            step: r.step,
            round: r.round,
            policy: r.policy,
            attempts: r.attempts,
            due_at: r.due_at,
        })
    }
}

pub(crate) fn pages_from_rows(rows: Vec<PageRow>) -> Result<Vec<Page>, StoreError> {
    rows.into_iter().map(Page::try_from).collect()
}

/// Applies the status rule to a call and returns the new record when it changes. The
/// ended/answered timestamps follow the status, decided here once for both backends.
pub(crate) fn advanced(
    mut call: CallRecord,
    status: CallStatus,
    at: DateTime<Utc>,
) -> Option<CallRecord> {
    let Some(next) = call.status.advance(status) else {
        // An acknowledged call keeps its status, and still gets the time it ended.
        if call.status == CallStatus::Answered
            && status.is_unsuccessful_end()
            && call.ended_at.is_none()
        {
            call.ended_at = Some(at);
            return Some(call);
        }
        return None;
    };
    call.status = next;
    if next == CallStatus::Answered {
        call.answered_at.get_or_insert(at);
    }
    if next.is_terminal() && next != CallStatus::Answered {
        call.ended_at.get_or_insert(at);
    }
    if next == CallStatus::Initiated {
        call.initiated_at.get_or_insert(at);
    }
    Some(call)
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    alert_id: Option<String>,
    call_id: Option<String>,
    source: String,
    kind: String,
    detail: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<EventRow> for StoredEvent {
    fn from(r: EventRow) -> Self {
        StoredEvent {
            id: r.id,
            alert_id: r.alert_id,
            call_id: r.call_id,
            source: r.source,
            kind: r.kind,
            detail: r.detail,
            created_at: r.created_at,
        }
    }
}

/// A test call about to be placed (`alertcall test-call`).
#[derive(Debug, Clone)]
pub struct NewTestCall {
    pub id: Uuid,
    /// The staff id called, when the call was asked for by person.
    pub person: Option<String>,
    pub to_number: String,
    pub provider: String,
    /// Who asked: `api:<token name>` or `dashboard:<user>`.
    pub requested_by: String,
    pub at: DateTime<Utc>,
}

/// A test call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCallRecord {
    pub id: Uuid,
    pub person: Option<String>,
    pub to_number: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub state: TestCallState,
    /// The provider's reason for a failure, when it gave one.
    pub reason: Option<String>,
    pub prompts: i32,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const TEST_CALL_COLUMNS: &str = "id, person, to_number, provider, provider_call_id, \
     state, reason, prompts, requested_by, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TestCallRow {
    id: String,
    person: Option<String>,
    to_number: String,
    provider: String,
    provider_call_id: Option<String>,
    state: String,
    reason: Option<String>,
    prompts: i32,
    requested_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TestCallRow> for TestCallRecord {
    type Error = StoreError;
    fn try_from(r: TestCallRow) -> Result<Self, StoreError> {
        Ok(TestCallRecord {
            id: Uuid::parse_str(&r.id).map_err(|_| {
                StoreError::Invalid(format!("test call id {:?} is not a uuid", r.id))
            })?,
            state: TestCallState::parse(&r.state).ok_or_else(|| {
                StoreError::Invalid(format!(
                    "test call {} has unknown state {:?}",
                    r.id, r.state
                ))
            })?,
            person: r.person,
            to_number: r.to_number,
            provider: r.provider,
            provider_call_id: r.provider_call_id,
            reason: r.reason,
            prompts: r.prompts,
            requested_by: r.requested_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Changes a call, finishes its page and writes audit entries, in one transaction.
pub(crate) async fn call_outcome(
    mut tx: CallTx,
    call_id: Uuid,
    change: impl FnOnce(CallRecord) -> CallRecord + Send,
    page: Option<&PageOutcome>,
    audit: &[AuditEvent],
) -> Result<CallRecord, StoreError> {
    let call = tx
        .call(call_id)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("call {call_id}")))?;
    let call = change(call);
    tx.save(&call).await?;
    match page {
        Some(outcome) => {
            finish_in(&mut tx, outcome, audit).await?;
        }
        None => {
            for event in audit {
                tx.record(event).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(call)
}

/// Writes `audit`, updates the page if the owner still holds it, and then its audit entries.
pub(crate) async fn finish_in(
    tx: &mut CallTx,
    outcome: &PageOutcome,
    audit: &[AuditEvent],
) -> Result<bool, StoreError> {
    for event in audit {
        tx.record(event).await?;
    }
    let updated = tx.update_page(outcome).await?;
    if updated {
        for event in &outcome.page_audit {
            tx.record(event).await?;
        }
    }
    Ok(updated)
}

/// The audit entries written with an acknowledgement by phone.
#[derive(Debug, Clone)]
pub struct AckAudit {
    /// The key press itself (deduplicated like any webhook).
    pub input: AuditEvent,
    /// Written only if this key press acknowledged the alert.
    pub acknowledged: AuditEvent,
}

/// A call of an alert still ringing or in progress.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveCall {
    pub id: String,
    pub provider_call_id: String,
}

/// Digit 1 on a call: the alert, the call and the audit trail, together or not at all.
/// Also returns the alert's other calls still live, to hang up.
pub(crate) async fn acknowledged_by_call(
    mut tx: CallTx,
    call_id: Uuid,
    by: &Acknowledger,
    at: DateTime<Utc>,
    audit: &AckAudit,
) -> Result<AckResult, StoreError> {
    let Some(call) = tx.call(call_id).await? else {
        return Ok(AckResult::not(AckOutcome::NoSuchAlert));
    };
    tx.record(&audit.input).await?;
    if call.status == CallStatus::Answered {
        tx.commit().await?;
        return Ok(AckResult::not(AckOutcome::AlreadyAcknowledgedHere));
    }
    let alert_id = call.alert_id.clone();
    let answered = advanced(call, CallStatus::Answered, at);
    let Some(triggered_at) = tx
        .acknowledge_alert(&alert_id, by, at, answered.as_ref())
        .await?
    else {
        tx.commit().await?;
        return Ok(AckResult::not(AckOutcome::AlreadyHandled));
    };
    if let Some(call) = &answered {
        tx.save_row(call).await?;
    }
    tx.close_page(&alert_id, at).await?;
    tx.record(&audit.acknowledged).await?;
    let live = tx.live_calls(&alert_id, call_id).await?;
    tx.commit().await?;
    Ok(AckResult {
        outcome: AckOutcome::Acknowledged,
        live,
        triggered_at: triggered_at.as_deref().and_then(timestamp::read),
    })
}

/// What an acknowledgement came to: the outcome, when the alert was triggered (for the time to
/// acknowledge) and, for pressing 1, the other calls still live for the alert (to hang up).
#[derive(Debug)]
pub struct AckResult {
    pub outcome: AckOutcome,
    pub live: Vec<LiveCall>,
    pub triggered_at: Option<DateTime<Utc>>,
}

impl AckResult {
    /// Seconds from the alert's triggering to `now`, when this acknowledged it.
    pub fn seconds_to(&self, now: DateTime<Utc>) -> Option<f64> {
        self.triggered_at.map(|t| (now - t).as_seconds_f64())
    }

    fn not(outcome: AckOutcome) -> AckResult {
        AckResult {
            outcome,
            live: Vec::new(),
            triggered_at: None,
        }
    }
}

/// An acknowledgement from outside a call (CLI, API, dashboard).
pub(crate) async fn acknowledged(
    mut tx: CallTx,
    alert_id: &str,
    by: &Acknowledger,
    at: DateTime<Utc>,
) -> Result<AckResult, StoreError> {
    // The page stays open: the engine notices the closed alert (trigger, file watch or
    // sweep), hangs up whatever still rings for it, and closes the page itself.
    let result = match tx.acknowledge_alert(alert_id, by, at, None).await? {
        Some(triggered_at) => AckResult {
            outcome: AckOutcome::Acknowledged,
            live: Vec::new(),
            triggered_at: triggered_at.as_deref().and_then(timestamp::read),
        },
        None if tx.alert_exists(alert_id).await? => AckResult::not(AckOutcome::AlreadyHandled),
        None => AckResult::not(AckOutcome::NoSuchAlert),
    };
    tx.commit().await?;
    Ok(result)
}
