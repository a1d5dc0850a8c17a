//! The one store, over Postgres and SQLite. Every query is written once, as Postgres writes
//! it, with `$n` placeholders (SQLite accepts them too). A store resolves each query once for
//! its database (`Sql`): alertcall's tables are `alertcall.calls` on Postgres and
//! `alertcall_calls` on SQLite, and the few places where the dialects really differ are
//! named `{fragments}`, written in `postgres.rs` and `sqlite.rs`:
//!
//! | fragment | what it stands for | unsaid |
//! | --- | --- | --- |
//! | `{for_update}` | locks the rows read for the rest of the transaction | nothing (SQLite's write transactions lock the file) |
//! | `{skip_locked}` | the same, passing over rows another transaction locked | nothing |
//! | `{as_alert_id:X}` | `X` as a value of `alerts.id`'s type (`uuid` in Supabase) | `X` |
//! | `{join_key:X}` | `X` as text, to join the hospital's columns of any type | `X` |
//! | `{time_order:X}` | `X` as a value that orders in time (the hospital's times may be text or numbers) | `X` |
//! | `{raw_time:X}` | the hospital's time column `X` as text for `timestamp::read` | — |
//! | `{stale:X}` | the alert `a` was triggered before `X` | — |
//! | `{metadata_set:K, V}` | `metadata` with key `K` set to the JSON `V`, the other keys kept | — |
//! | `{json_text:X, K.L}`, `{has_call:X}` | the JSON `X`'s `K.L` as text, and whether `X` has a `call` | — |
//! | `{uuid:X}` | the text `X` as a `uuid`, which a `uuid` or text column takes | `X` |
//! | `{epoch:X}`, `{floor:X}` | the time `X` in epoch seconds (a fraction kept), and the number `X` rounded down | — |
//! | `{spread_of_vals}` | per `grp` of `vals (grp, s, escalated, exhausted)`: rows, values of `s`, its nearest-rank p50 and p90 and max, the sums | — |
//!
//! Values are bound once, as `Arg`s; each database encodes times its way (`Pool::run`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{
    Arguments, AssertSqlSafe, Database, Encode, FromRow, PgConnection, PgPool, Postgres,
    SqlSafeStr, SqlStr, Sqlite, SqliteConnection, SqlitePool, Transaction, Type,
};
use uuid::Uuid;

use super::*;
use crate::domain::alert::CRITICAL;
use crate::domain::test_call::TestCallState;

mod aggregates;
pub use aggregates::{Aggregated, CallCounts, HourCounts, Spread};

/// The statuses of a call still ringing or in progress (not `CallStatus::is_terminal`), as an
/// SQL list; a unit test keeps the two in step.
macro_rules! live_statuses {
    () => {
        "('pending', 'initiated', 'ringing', 'in_progress')"
    };
}

/// The alert's time for ordering and filtering: `triggered_at`, or when alertcall first saw
/// the alert (its page's creation) if that cannot be read, as `timestamp::read` falls back
/// for the row itself.
macro_rules! alert_time {
    () => {
        "coalesce({time_order:a.triggered_at}, {time_order:pg.created_at})"
    };
}

/// The room with this `room_id` or `room_name` ($1), an id match first.
const ROOM_LOOKUP: &str = "SELECT CAST(room_id AS TEXT) FROM rooms \
     WHERE {join_key:room_id} = $1 OR room_name = $1 \
     ORDER BY ({join_key:room_id} = $1) DESC LIMIT 1";

/// Inserts an alert whose `room` ($2) is a `rooms.room_id`; yields its id.
fn insert_alert_stmt(sql: &Sql, alert: &NewAlert) -> Stmt {
    sql.stmt(
        "INSERT INTO alerts (patient_id, room_id, severity, alert_type, title, message) \
         VALUES ($1, (SELECT room_id FROM rooms WHERE {join_key:room_id} = $2), \
                 $3, $4, $5, $6) \
         RETURNING CAST(id AS TEXT)",
    )
    .bind(&alert.patient_id)
    .bind(&alert.room)
    .bind(&alert.severity)
    .bind(&alert.alert_type)
    .bind(&alert.title)
    .bind(&alert.message)
}

/// The alert's severity in lower case: the hospital's app may write `Critical` or
/// `CRITICAL` (the column keeps what it was given), and each is paged as `critical`.
macro_rules! severity {
    () => {
        "lower(CAST(a.severity AS TEXT))"
    };
}

const CALL_COLUMNS: &str = "id, alert_id, provider, provider_call_id, to_number, status, message, \
     step, round, person, created_at, initiated_at, answered_at, ended_at, declined_at, \
     answered_by, speech_ack_held_at, speech_ack_held_input, conference_joined_at, prompts, error";
const PAGE_COLUMNS: &str = "alert_id, state, step, round, policy, attempts, due_at";
const SMS_COLUMNS: &str = "id, alert_id, person, to_number, code, provider_message_id, status";

/// An alert with its patient, room, mirrored call status and page, as `AlertRow` reads it.
const ALERT_SELECT: &str = "SELECT CAST(a.id AS TEXT) AS id, CAST(a.patient_id AS TEXT) AS patient_id, \
     CAST(p.name AS TEXT) AS patient_name, CAST(a.room_id AS TEXT) AS room_id, \
     CAST(r.room_name AS TEXT) AS room_name, CAST(a.severity AS TEXT) AS severity, \
     CAST(a.status AS TEXT) AS status, CAST(a.alert_type AS TEXT) AS alert_type, \
     CAST(a.title AS TEXT) AS title, CAST(a.message AS TEXT) AS message, \
     {raw_time:a.triggered_at} AS triggered_at, {raw_time:a.acknowledged_at} AS acknowledged_at, \
     CAST(a.acknowledged_by AS TEXT) AS acknowledged_by, \
     {json_text:a.metadata, call.call_status} AS call_status, {has_call:a.metadata} AS has_call, \
     pg.state AS page_state, pg.step AS page_step, pg.round AS page_round, \
     pg.policy AS page_policy, pg.due_at AS page_due_at, pg.created_at AS first_seen, \
     pg.attempts AS page_attempts, pg.last_error AS page_last_error, \
     {json_text:a.metadata, hl7.sending_application} AS hl7_application, \
     {json_text:a.metadata, hl7.device} AS hl7_device \
     FROM alerts a \
     LEFT JOIN patients p ON {join_key:p.patient_id} = {join_key:a.patient_id} \
     LEFT JOIN rooms r ON {join_key:r.room_id} = {join_key:a.room_id} \
     LEFT JOIN alertcall.pages pg ON pg.alert_id = CAST(a.id AS TEXT)";

/// The two databases alertcall runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// The queries of one store, each resolved for its database once.
pub(crate) struct Sql {
    dialect: Dialect,
    /// The SQL type of `alerts.id` on Postgres (the hospital decides; `uuid` in Supabase).
    id_type: Option<String>,
    resolved: Mutex<HashMap<(usize, usize), SqlStr>>,
}

impl Sql {
    fn new(dialect: Dialect, id_type: Option<String>) -> Sql {
        Sql {
            dialect,
            id_type,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// `query` for this database, with no values bound yet.
    pub(crate) fn stmt(&self, query: &'static str) -> Stmt {
        let key = (query.as_ptr() as usize, query.len());
        let mut resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        let sql = resolved
            .entry(key)
            .or_insert_with(|| AssertSqlSafe(self.resolve(query)).into_sql_str())
            .clone();
        Stmt {
            sql,
            args: Vec::new(),
        }
    }

    /// Whether `id` can be a value of `alerts.id`'s type. Checked before using it inside a
    /// transaction, where a failed cast would abort the whole transaction.
    fn id_fits(&self, id: &str) -> bool {
        self.id_type
            .as_deref()
            .is_none_or(|t| postgres::id_fits(t, id))
    }

    fn resolve(&self, query: &str) -> String {
        let query = match self.dialect {
            Dialect::Postgres => query.to_string(),
            Dialect::Sqlite => sqlite::table_names(query),
        };
        let mut out = String::with_capacity(query.len() + 64);
        let mut rest = query.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            out.push_str(&self.fragment(&rest[open + 1..open + close]));
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn fragment(&self, token: &str) -> String {
        let (name, arg) = token.split_once(':').unwrap_or((token, ""));
        let own = match self.dialect {
            Dialect::Postgres => {
                postgres::fragment(name, arg, self.id_type.as_deref().unwrap_or("text"))
            }
            Dialect::Sqlite => sqlite::fragment(name, arg),
        };
        if let Some(own) = own {
            return own;
        }
        match name {
            "critical" => CRITICAL.into(),
            "call_columns" => CALL_COLUMNS.into(),
            "page_columns" => PAGE_COLUMNS.into(),
            "sms_columns" => SMS_COLUMNS.into(),
            "test_call_columns" => TEST_CALL_COLUMNS.into(),
            "hl7_link_columns" => "source, state, last_heard_at, alert_id".into(),
            "alert_select" => self.resolve(ALERT_SELECT),
            "for_update" | "skip_locked" => String::new(),
            "as_alert_id" | "join_key" | "time_order" | "uuid" => arg.into(),
            // An unknown name is left as it is: the database refuses the statement loudly.
            _ => format!("{{{token}}}"),
        }
    }
}

/// A value bound to a statement, encoded by each database its own way.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(i32),
    BigInt(i64),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Json(Option<serde_json::Value>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.into()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}
impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<i32> for Arg {
    fn from(v: i32) -> Arg {
        Arg::Int(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::BigInt(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Arg {
        Arg::Time(Some(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Arg {
        Arg::Time(v)
    }
}
impl From<Option<serde_json::Value>> for Arg {
    fn from(v: Option<serde_json::Value>) -> Arg {
        Arg::Json(v)
    }
}
impl From<&serde_json::Value> for Arg {
    fn from(v: &serde_json::Value) -> Arg {
        Arg::Json(Some(v.clone()))
    }
}

/// A resolved statement and its values, in `$n` order.
pub(crate) struct Stmt {
    sql: SqlStr,
    args: Vec<Arg>,
}

impl Stmt {
    pub(crate) fn bind(mut self, value: impl Into<Arg>) -> Stmt {
        self.args.push(value.into());
        self
    }
}

/// The values as `DB` takes them; `time` is how `DB` stores alertcall's times.
fn arguments<DB, T>(
    args: Vec<Arg>,
    time: fn(DateTime<Utc>) -> T,
) -> Result<DB::Arguments, sqlx::error::BoxDynError>
where
    DB: Database,
    for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
    for<'q> i32: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<T>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<serde_json::Value>: Encode<'q, DB> + Type<DB>,
{
    let mut out = DB::Arguments::default();
    for arg in args {
        match arg {
            Arg::Text(v) => out.add(v)?,
            Arg::Int(v) => out.add(v)?,
            Arg::BigInt(v) => out.add(v)?,
            Arg::Bool(v) => out.add(v)?,
            Arg::Time(v) => out.add(v.map(time))?,
            Arg::Json(v) => out.add(v)?,
        }
    }
    Ok(out)
}

fn postgres_args(args: Vec<Arg>) -> Result<PgArguments, sqlx::Error> {
    arguments::<Postgres, _>(args, |t| t).map_err(sqlx::Error::Encode)
}

fn sqlite_args(args: Vec<Arg>) -> Result<SqliteArguments, sqlx::Error> {
    arguments::<Sqlite, _>(args, sqlite::time).map_err(sqlx::Error::Encode)
}

/// A row type both databases decode.
pub(crate) trait Rows:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}
impl<T> Rows for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A row, or why it could not be decoded: lists leave such rows out instead of failing.
pub(crate) struct Decoded<T>(pub(crate) Result<T, sqlx::Error>);

impl<'r, R: sqlx::Row, T: FromRow<'r, R>> FromRow<'r, R> for Decoded<T> {
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Decoded(T::from_row(row)))
    }
}

/// A connection of either database, on which statements run.
pub(crate) enum Conn<'c> {
    Postgres(&'c mut PgConnection),
    Sqlite(&'c mut SqliteConnection),
}

impl Conn<'_> {
    /// Runs a statement; how many rows it changed.
    pub(crate) async fn execute(self, s: Stmt) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Postgres(c) => sqlx::query_with(s.sql, postgres_args(s.args)?)
                .execute(c)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => sqlx::query_with(s.sql, sqlite_args(s.args)?)
                .execute(c)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn fetch_all<T: Rows>(self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => {
                sqlx::query_as_with(s.sql, postgres_args(s.args)?)
                    .fetch_all(c)
                    .await
            }
            Conn::Sqlite(c) => {
                sqlx::query_as_with(s.sql, sqlite_args(s.args)?)
                    .fetch_all(c)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_optional<T: Rows>(self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        match self {
            Conn::Postgres(c) => {
                sqlx::query_as_with(s.sql, postgres_args(s.args)?)
                    .fetch_optional(c)
                    .await
            }
            Conn::Sqlite(c) => {
                sqlx::query_as_with(s.sql, sqlite_args(s.args)?)
                    .fetch_optional(c)
                    .await
            }
        }
    }

    pub(crate) async fn fetch_one<T: Rows>(self, s: Stmt) -> Result<T, sqlx::Error> {
        self.fetch_optional(s)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Runs statements written for this database alone (migrations), with no values; how
    /// many rows they changed.
    async fn execute_script(self, sql: &'static str) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Postgres(c) => sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(c)
                .await?
                .rows_affected(),
            Conn::Sqlite(c) => sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(c)
                .await?
                .rows_affected(),
        })
    }
}

/// The connection pool of either database.
pub(crate) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// A connection taken from the pool.
enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(c) => Conn::Postgres(c),
            Pooled::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A write transaction of either database.
enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Tx::Postgres(tx) => Conn::Postgres(tx),
            Tx::Sqlite(tx) => Conn::Sqlite(tx),
        }
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

impl Pool {
    async fn acquire(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match self {
            Pool::Postgres(p) => Pooled::Postgres(p.acquire().await?),
            Pool::Sqlite(p) => Pooled::Sqlite(p.acquire().await?),
        })
    }

    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Pool::Postgres(p) => Tx::Postgres(p.begin().await?),
            // IMMEDIATE holds the write lock from the start, so two writers queue (up to the
            // busy timeout) instead of failing when the second upgrades its read.
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

/// A text id that does not parse as the alerts.id type (e.g. not a uuid): no such alert.
fn is_bad_id(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("22P02"))
}

/// The store over either database.
pub struct SqlStore {
    pool: Pool,
    /// The SQLite file as opened (none in memory, none on Postgres), checked at every intake.
    file: Option<sqlite::OpenedFile>,
    sql: RwLock<Arc<Sql>>,
}

impl SqlStore {
    /// Opens the database the URL names: `postgres://`, `postgresql://` or `sqlite:`.
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        let (pool, dialect, file) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let pool = postgres::connect(url).await?;
                (Pool::Postgres(pool), Dialect::Postgres, None)
            } else if url.starts_with("sqlite:") {
                let (pool, file) = sqlite::connect(url).await?;
                (Pool::Sqlite(pool), Dialect::Sqlite, file)
            } else {
                return Err(StoreError::Invalid(format!(
                    "unsupported database URL {:?}: use postgres://... or sqlite://...",
                    crate::config::redact_url(url)
                )));
            };
        let store = SqlStore {
            pool,
            file,
            sql: RwLock::new(Arc::new(Sql::new(dialect, None))),
        };
        store.learn_alert_id_type().await?;
        Ok(store)
    }

    fn sql(&self) -> Arc<Sql> {
        self.sql
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads `alerts.id`'s type (Postgres), so lookups cast our text ids to it and use the
    /// primary key index; the queries are resolved anew for it.
    async fn learn_alert_id_type(&self) -> Result<(), StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(());
        };
        let Some(found) = postgres::alert_id_type(pool).await? else {
            return Ok(());
        };
        let sql = Arc::new(Sql::new(Dialect::Postgres, Some(found)));
        *self.sql.write().unwrap_or_else(PoisonError::into_inner) = sql;
        Ok(())
    }

    fn stmt(&self, query: &'static str) -> Stmt {
        self.sql().stmt(query)
    }

    async fn execute(&self, s: Stmt) -> Result<u64, sqlx::Error> {
        self.pool.acquire().await?.conn().execute(s).await
    }

    async fn fetch_all<T: Rows>(&self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        self.pool.acquire().await?.conn().fetch_all(s).await
    }

    async fn fetch_optional<T: Rows>(&self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        self.pool.acquire().await?.conn().fetch_optional(s).await
    }

    async fn fetch_one<T: Rows>(&self, s: Stmt) -> Result<T, sqlx::Error> {
        self.pool.acquire().await?.conn().fetch_one(s).await
    }

    async fn begin(&self) -> Result<CallTx, StoreError> {
        Ok(CallTx {
            tx: self
                .pool
                .begin()
                .await
                .doing("starting a write transaction")?,
            sql: self.sql(),
        })
    }
}

/// One write transaction on calls, pages, alerts and the audit trail. The read-modify-write
/// steps built on it (`store/mod.rs`) take their rows and write them back in it.
pub struct CallTx {
    tx: Tx,
    sql: Arc<Sql>,
}

impl CallTx {
    async fn execute(&mut self, s: Stmt) -> Result<u64, sqlx::Error> {
        self.tx.conn().execute(s).await
    }

    async fn fetch_all<T: Rows>(&mut self, s: Stmt) -> Result<Vec<T>, sqlx::Error> {
        self.tx.conn().fetch_all(s).await
    }

    async fn fetch_optional<T: Rows>(&mut self, s: Stmt) -> Result<Option<T>, sqlx::Error> {
        self.tx.conn().fetch_optional(s).await
    }

    async fn fetch_one<T: Rows>(&mut self, s: Stmt) -> Result<T, sqlx::Error> {
        self.tx.conn().fetch_one(s).await
    }

    /// Reads a call, locking it for the rest of the transaction.
    pub async fn call(&mut self, call_id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        let s = self
            .sql
            .stmt("SELECT {call_columns} FROM alertcall.calls WHERE id = $1{for_update}")
            .bind(call_id);
        let row: Option<CallRow> = self.fetch_optional(s).await.doing("locking a call")?;
        row.map(CallRecord::try_from).transpose()
    }

    /// Writes a call row back.
    pub async fn save_row(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "UPDATE alertcall.calls SET status = $2, provider_call_id = $3, initiated_at = $4, \
                 answered_at = $5, ended_at = $6, error = $7, declined_at = $8, answered_by = $9, \
                 speech_ack_held_at = $10, speech_ack_held_input = $11, conference_joined_at = $12 \
                 WHERE id = $1",
            )
            .bind(call.id)
            .bind(call.status.as_str())
            .bind(&call.provider_call_id)
            .bind(call.initiated_at)
            .bind(call.answered_at)
            .bind(call.ended_at)
            .bind(&call.error)
            .bind(call.declined_at)
            .bind(call.answered_by.map(AnsweredBy::as_str))
            .bind(call.speech_ack_held_at)
            .bind(&call.speech_ack_held_input)
            .bind(call.conference_joined_at);
        self.execute(s).await.doing("updating a call")?;
        Ok(())
    }

    /// Mirrors a call into `alerts.metadata.call`, keeping the other keys: only the alert's
    /// latest call is mirrored, and nothing overwrites an acknowledgement. The one place
    /// (with `acknowledge_alert`'s answered call) that writes `metadata.call`.
    pub async fn mirror(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "UPDATE alerts SET metadata = {metadata_set:'call', $2} \
                 WHERE id = {as_alert_id:$1} AND ($3 OR ( \
                   coalesce({json_text:metadata, call.call_status}, '') <> 'answered' \
                   AND NOT EXISTS (SELECT 1 FROM alertcall.calls c \
                                   WHERE c.alert_id = $1 AND c.created_at > $4)))",
            )
            .bind(&call.alert_id)
            .bind(Some(call.metadata_call()))
            .bind(call.status == CallStatus::Answered)
            .bind(call.created_at);
        self.execute(s)
            .await
            .doing("mirroring the call into alerts.metadata")?;
        Ok(())
    }

    /// Writes a call back and mirrors it.
    pub async fn save(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        self.save_row(call).await?;
        self.mirror(call).await
    }

    /// `status='acknowledged'` when still active, with the `answered` call mirrored into
    /// `metadata.call` in the same statement; whether it was active (`Some`), with its
    /// `triggered_at` as text (`timestamp::read` reads it).
    pub async fn acknowledge_alert(
        &mut self,
        alert_id: &str,
        by: &Acknowledger,
        at: DateTime<Utc>,
        answered: Option<&CallRecord>,
    ) -> Result<Option<Option<String>>, StoreError> {
        if !self.sql.id_fits(alert_id) {
            return Ok(None);
        }
        let s = self
            .sql
            .stmt(
                "UPDATE alerts SET status = 'acknowledged', acknowledged_at = $2, \
                   acknowledged_by = $3, \
                   metadata = CASE WHEN $4 IS NULL THEN metadata \
                     ELSE {metadata_set:'call', $4} END \
                 WHERE id = {as_alert_id:$1} AND status = 'active' \
                 RETURNING {raw_time:triggered_at}",
            )
            .bind(alert_id)
            .bind(at)
            .bind(by.as_str())
            .bind(answered.map(CallRecord::metadata_call));
        match self.fetch_optional::<(Option<String>,)>(s).await {
            Ok(done) => Ok(done.map(|(triggered_at,)| triggered_at)),
            Err(e) if is_bad_id(&e) => Ok(None),
            Err(e) => Err(e).doing("acknowledging the alert"),
        }
    }

    /// Whether an alert with this id exists.
    pub async fn alert_exists(&mut self, alert_id: &str) -> Result<bool, StoreError> {
        if !self.sql.id_fits(alert_id) {
            return Ok(false);
        }
        let s = self
            .sql
            .stmt("SELECT 1 FROM alerts WHERE id = {as_alert_id:$1}")
            .bind(alert_id);
        match self.fetch_optional::<(i32,)>(s).await {
            Ok(found) => Ok(found.is_some()),
            Err(e) if is_bad_id(&e) => Ok(false),
            Err(e) => Err(e).doing("looking up an alert"),
        }
    }

    /// Stops paging an acknowledged alert.
    pub async fn close_page(
        &mut self,
        alert_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "UPDATE alertcall.pages SET state = 'acknowledged', due_at = NULL, \
                 lease_owner = NULL, updated_at = $2 \
                 WHERE alert_id = $1 AND state IN ('due', 'waiting', 'exhausted')",
            )
            .bind(alert_id)
            .bind(at);
        self.execute(s).await.doing("closing the page")?;
        Ok(())
    }

    /// Appends to the audit trail; false when an event with the same dedupe key exists.
    pub async fn record(&mut self, event: &AuditEvent) -> Result<bool, StoreError> {
        let s = self
            .sql
            .stmt(
                "INSERT INTO alertcall.call_events \
                   (alert_id, call_id, source, kind, dedupe_key, detail, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            )
            .bind(&event.alert_id)
            .bind(event.call_id.map(|c| c.to_string()).as_deref())
            .bind(&event.source)
            .bind(event.kind.to_string())
            .bind(&event.dedupe_key)
            .bind(&event.detail)
            .bind(event.at);
        let id: Option<(i64,)> = self
            .fetch_optional(s)
            .await
            .doing("recording an audit event")?;
        Ok(id.is_some())
    }

    /// Stores a page's next state and releases the lease, if `owner` still holds it.
    pub async fn update_page(&mut self, outcome: &PageOutcome) -> Result<bool, StoreError> {
        let update = &outcome.update;
        // An alert closed elsewhere while this page was being worked on (its wake-up then
        // could not move a leased page) is due again at once, so its calls are hung up.
        let s = self
            .sql
            .stmt(
                "UPDATE alertcall.pages SET state = $3, step = $4, round = $5, \
                   due_at = CASE WHEN $6 IS NOT NULL AND EXISTS (SELECT 1 FROM alerts a \
                     WHERE a.id = {as_alert_id:alertcall.pages.alert_id} AND a.status <> 'active') \
                     THEN $9 ELSE $6 END, \
                 attempts = $7, last_error = $8, lease_owner = NULL, updated_at = $9, policy = $10 \
                 WHERE alert_id = $1 AND lease_owner = $2 \
                   AND state NOT IN ('acknowledged', 'cancelled')",
            )
            .bind(&outcome.alert_id)
            .bind(&outcome.owner)
            .bind(update.state.as_str())
            .bind(update.step)
            .bind(update.round)
            .bind(update.due_at)
            .bind(update.attempts)
            .bind(&update.last_error)
            .bind(outcome.now)
            .bind(&update.policy);
        let updated = self.execute(s).await.doing("updating a page")? == 1;
        if !updated {
            // Closed meanwhile (before any call recorded its policy): still keep which
            // policy (unit) it followed, for the dashboard and analytics.
            self.keep_policy(&outcome.alert_id, &update.policy).await?;
        }
        Ok(updated)
    }

    /// Records the policy (unit) a page follows, unless it has one.
    async fn keep_policy(
        &mut self,
        alert_id: &str,
        policy: &Option<String>,
    ) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt("UPDATE alertcall.pages SET policy = $2 WHERE alert_id = $1 AND policy IS NULL")
            .bind(alert_id)
            .bind(policy);
        self.execute(s).await.doing("recording a page's policy")?;
        Ok(())
    }

    /// The alert's calls other than `except` that are still ringing or in progress.
    pub async fn live_calls(
        &mut self,
        alert_id: &str,
        except: Uuid,
    ) -> Result<Vec<LiveCall>, StoreError> {
        let s = self
            .sql
            .stmt(concat!(
                "SELECT id, provider_call_id FROM alertcall.calls \
                 WHERE alert_id = $1 AND id <> $2 AND provider_call_id IS NOT NULL \
                   AND status IN ",
                live_statuses!()
            ))
            .bind(alert_id)
            .bind(except);
        self.fetch_all(s).await.doing("listing live calls")
    }

    /// Reads an alert's page, locking it for the rest of the transaction.
    pub async fn page(&mut self, alert_id: &str) -> Result<Option<Page>, StoreError> {
        let s = self
            .sql
            .stmt("SELECT {page_columns} FROM alertcall.pages WHERE alert_id = $1{for_update}")
            .bind(alert_id);
        let row: Option<PageRow> = self.fetch_optional(s).await.doing("locking a page")?;
        row.map(Page::try_from).transpose()
    }

    /// Moves a page on whoever holds it (an escalation event from a webhook), unless it is
    /// already acknowledged or cancelled. Releases any lease.
    pub async fn set_page(
        &mut self,
        alert_id: &str,
        update: &PageUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let s = self
            .sql
            .stmt(
                "UPDATE alertcall.pages SET state = $2, step = $3, round = $4, due_at = $5, \
                 policy = coalesce($6, policy), lease_owner = NULL, updated_at = $7 \
                 WHERE alert_id = $1 AND state NOT IN ('acknowledged', 'cancelled')",
            )
            .bind(alert_id)
            .bind(update.state.as_str())
            .bind(update.step)
            .bind(update.round)
            .bind(update.due_at)
            .bind(&update.policy)
            .bind(now);
        Ok(self.execute(s).await.doing("moving a page")? == 1)
    }

    /// Sets `alerts.metadata.<key>`, keeping the other keys (never `call`, which only the
    /// call mirror writes).
    pub async fn flag_alert(
        &mut self,
        alert_id: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt("UPDATE alerts SET metadata = {metadata_set:$2, $3} WHERE id = {as_alert_id:$1}")
            .bind(alert_id)
            .bind(key)
            .bind(value);
        self.execute(s).await.doing("flagging the alert")?;
        Ok(())
    }

    /// Holds `key` to the commit, so that two connections creating the same row (one that
    /// does not exist yet, so no row lock can guard it) do it one after the other. SQLite's
    /// write transactions (`BEGIN IMMEDIATE`) already run one at a time.
    async fn serialise(&mut self, key: String) -> Result<(), StoreError> {
        if self.sql.dialect == Dialect::Postgres {
            let s = self
                .sql
                .stmt("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(key);
            self.execute(s).await.doing("taking an advisory lock")?;
        }
        Ok(())
    }

    // HL7 alarm intake (`hl7/intake.rs` and `hl7/supervise.rs` decide with these, in one
    // transaction).

    /// A supervised source's link, locked for this transaction.
    pub async fn hl7_source(&mut self, source: &str) -> Result<Option<Hl7Link>, StoreError> {
        let s = self
            .sql
            .stmt(
                "SELECT {hl7_link_columns} FROM alertcall.hl7_links WHERE source = $1{for_update}",
            )
            .bind(source);
        self.fetch_optional(s).await.doing("reading an HL7 link")
    }

    /// Writes a source's link (added when new).
    pub async fn set_hl7_source(&mut self, link: &Hl7Link) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "INSERT INTO alertcall.hl7_links (source, state, last_heard_at, alert_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO UPDATE SET \
                 state = excluded.state, last_heard_at = excluded.last_heard_at, \
                 alert_id = excluded.alert_id",
            )
            .bind(&link.source)
            .bind(&link.state)
            .bind(link.last_heard_at)
            .bind(&link.alert_id);
        self.execute(s).await.doing("writing an HL7 link")?;
        Ok(())
    }

    /// Records an HL7 message's control id; false when `source` sent it before.
    pub async fn hl7_first_seen(
        &mut self,
        source: &str,
        control_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let s = self
            .sql
            .stmt(
                "INSERT INTO alertcall.hl7_messages (source, control_id, received_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(source)
            .bind(control_id)
            .bind(at);
        Ok(self.execute(s).await.doing("recording an HL7 message")? == 1)
    }

    /// The alert an alarm instance of `source` became, locked for this transaction.
    pub async fn hl7_alarm(
        &mut self,
        source: &str,
        alarm_id: &str,
    ) -> Result<Option<String>, StoreError> {
        // Two connections reporting one new alarm at once make one alert.
        self.serialise(format!("{source}|{alarm_id}")).await?;
        let s = self
            .sql
            .stmt("SELECT alert_id FROM alertcall.hl7_alarms WHERE source = $1 AND alarm_id = $2")
            .bind(source)
            .bind(alarm_id);
        let found: Option<(String,)> = self
            .fetch_optional(s)
            .await
            .doing("looking up an HL7 alarm")?;
        Ok(found.map(|(id,)| id))
    }

    /// Links an alarm instance to its alert, with the phase last applied.
    pub async fn hl7_link(
        &mut self,
        source: &str,
        alarm_id: &str,
        alert_id: &str,
        phase: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "INSERT INTO alertcall.hl7_alarms (source, alarm_id, alert_id, phase, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, alarm_id) \
                 DO UPDATE SET phase = excluded.phase, updated_at = excluded.updated_at",
            )
            .bind(source)
            .bind(alarm_id)
            .bind(alert_id)
            .bind(phase)
            .bind(at);
        self.execute(s)
            .await
            .doing("linking an HL7 alarm to its alert")?;
        Ok(())
    }

    /// The `rooms.room_id` of the room with this id or name, created (named `name`) when
    /// there is none.
    pub async fn room_named(&mut self, name: &str) -> Result<String, StoreError> {
        self.serialise(format!("alertcall.room|{name}")).await?;
        let s = self.sql.stmt(ROOM_LOOKUP).bind(name);
        let found: Option<(String,)> = self.fetch_optional(s).await.doing("looking up the room")?;
        if let Some((id,)) = found {
            return Ok(id);
        }
        let s = self
            .sql
            .stmt(
                "INSERT INTO rooms (room_id, room_name) VALUES ({uuid:$1}, $2) \
                 RETURNING CAST(room_id AS TEXT)",
            )
            .bind(Uuid::new_v4())
            .bind(name);
        let (id,): (String,) = self.fetch_one(s).await.doing("adding a room")?;
        Ok(id)
    }

    /// Adds the patient when `patients` does not have them; an existing row is left as the
    /// hospital wrote it.
    pub async fn ensure_patient(&mut self, id: &str, name: Option<&str>) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "INSERT INTO patients (patient_id, name) VALUES ($1, $2) \
                 ON CONFLICT (patient_id) DO NOTHING",
            )
            .bind(id)
            .bind(name);
        self.execute(s).await.doing("adding a patient")?;
        Ok(())
    }

    /// Inserts an alert whose `room` is a `rooms.room_id`; returns its id.
    pub async fn insert_alert(&mut self, alert: &NewAlert) -> Result<String, StoreError> {
        let s = insert_alert_stmt(&self.sql, alert);
        let (id,): (String,) = self.fetch_one(s).await.doing("inserting an alert")?;
        Ok(id)
    }

    /// An alert's severity and status, locked for this transaction.
    pub async fn alert_state(
        &mut self,
        alert_id: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        if !self.sql.id_fits(alert_id) {
            return Ok(None);
        }
        let s = self
            .sql
            .stmt(
                "SELECT CAST(severity AS TEXT), CAST(status AS TEXT) FROM alerts \
                 WHERE id = {as_alert_id:$1}{for_update}",
            )
            .bind(alert_id);
        match self.fetch_optional(s).await {
            Ok(found) => Ok(found),
            Err(e) if is_bad_id(&e) => Ok(None),
            Err(e) => Err(e).doing("locking an alert"),
        }
    }

    /// Sets an alert's severity and (when given) message; with `resolve`, an active or
    /// acknowledged alert becomes resolved.
    pub async fn revise_alert(
        &mut self,
        alert_id: &str,
        severity: &str,
        message: Option<&str>,
        resolve: bool,
    ) -> Result<(), StoreError> {
        let s = self
            .sql
            .stmt(
                "UPDATE alerts SET severity = $2, message = coalesce($3, message), \
                   status = CASE WHEN $4 AND status IN ('active', 'acknowledged') \
                            THEN 'resolved' ELSE status END \
                 WHERE id = {as_alert_id:$1}",
            )
            .bind(alert_id)
            .bind(severity)
            .bind(message)
            .bind(resolve);
        self.execute(s).await.doing("revising an alert")?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.doing("committing")
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let (prelude, migrations) = match self.pool {
            Pool::Postgres(_) => (postgres::MIGRATION_PRELUDE, postgres::MIGRATIONS),
            Pool::Sqlite(_) => (sqlite::MIGRATION_PRELUDE, sqlite::MIGRATIONS),
        };
        let begin = || async {
            let mut tx = self.pool.begin().await.doing("starting a transaction")?;
            tx.conn()
                .execute_script(prelude)
                .await
                .doing("creating the migrations table")?;
            let applied: Vec<(i32,)> = tx
                .conn()
                .fetch_all(self.stmt("SELECT version FROM alertcall.schema_migrations"))
                .await
                .doing("reading applied migrations")?;
            Ok::<_, StoreError>((tx, applied))
        };
        let (mut tx, mut applied) = begin().await?;
        for (version, script) in migrations {
            if applied.contains(&(*version,)) {
                continue;
            }
            if let (Pool::Postgres(pool), Some(statements)) =
                (&self.pool, postgres::outside_transaction(script))
            {
                // What is done so far is committed (releasing the lock); this step takes the
                // lock on its own, and the rest goes on in a new transaction.
                tx.commit().await.doing("committing migrations")?;
                postgres::migrate_outside_transaction(pool, *version, &statements).await?;
                (tx, applied) = begin().await?;
                continue;
            }
            tx.conn()
                .execute_script(script)
                .await
                .doing("applying a migration")?;
            let record = self
                .stmt(
                    "INSERT INTO alertcall.schema_migrations (version, applied_at) VALUES ($1, $2)",
                )
                .bind(*version)
                .bind(Utc::now());
            tx.conn()
                .execute(record)
                .await
                .doing("recording a migration")?;
            tracing::info!(version, backend = self.backend(), "applied a migration");
        }
        tx.commit().await.doing("committing migrations")?;
        self.learn_alert_id_type().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch_one::<(i32,)>(self.stmt("SELECT 1"))
            .await
            .doing("pinging the database")?;
        Ok(())
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        let s = self
            .stmt(
                "INSERT INTO alertcall.settings (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value);
        self.execute(s).await.doing("storing a setting")?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("the setting {name}")))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let s = self
            .stmt("SELECT value FROM alertcall.settings WHERE name = $1")
            .bind(name);
        let value: Option<(String,)> = self.fetch_optional(s).await.doing("reading a setting")?;
        Ok(value.map(|(v,)| v))
    }
}

#[async_trait]
impl Alerts for SqlStore {
    async fn load_alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let s = self
            .stmt("{alert_select} WHERE a.id = {as_alert_id:$1}")
            .bind(id);
        match self.fetch_optional::<AlertRow>(s).await {
            Ok(row) => Ok(row.map(Alert::from)),
            Err(e) if is_bad_id(&e) => Ok(None),
            Err(e) => Err(e).doing("loading an alert"),
        }
    }

    async fn insert_alert(&self, alert: &NewAlert) -> Result<String, StoreError> {
        let room_id: Option<String> = match &alert.room {
            None => None,
            Some(room) => {
                let s = self.stmt(ROOM_LOOKUP).bind(room);
                let found: Option<(String,)> =
                    self.fetch_optional(s).await.doing("looking up the room")?;
                Some(found.map(|(id,)| id).ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "no room has room_id or room_name {room:?}; add it to the rooms table or \
                         use an existing one"
                    ))
                })?)
            }
        };
        let s = insert_alert_stmt(
            &self.sql(),
            &NewAlert {
                room: room_id,
                ..alert.clone()
            },
        );
        let (id,): (String,) = self.fetch_one(s).await.doing("inserting an alert")?;
        Ok(id)
    }

    async fn alert_views(&self, filter: &AlertFilter) -> Result<Vec<AlertView>, StoreError> {
        let s = self
            .stmt(concat!(
                "{alert_select} WHERE ($1 IS NULL OR a.status = $1) \
                   AND ($2 IS NULL OR ",
                severity!(),
                " = lower($2)) \
                   AND ($3 IS NULL OR ",
                alert_time!(),
                " >= {time_order:$3}) \
                   AND ($4 IS NULL OR ",
                alert_time!(),
                " < {time_order:$4}) \
                   AND ($6 IS NULL OR a.id = {as_alert_id:$6}) \
                 ORDER BY ",
                alert_time!(),
                " DESC LIMIT $5"
            ))
            .bind(&filter.status)
            .bind(&filter.severity)
            .bind(filter.since)
            .bind(filter.until)
            .bind(filter.limit)
            .bind(&filter.id);
        match self.fetch_all::<Decoded<AlertRow>>(s).await {
            Ok(rows) => Ok(views_from_rows(rows)),
            // An id that cannot be one of this table's ids matches nothing.
            Err(e) if is_bad_id(&e) => Ok(Vec::new()),
            Err(e) => Err(e).doing("listing alerts"),
        }
    }

    async fn resolve_alert(&self, alert_id: &str) -> Result<bool, StoreError> {
        let s = self
            .stmt(
                "UPDATE alerts SET status = 'resolved' \
                 WHERE id = {as_alert_id:$1} AND status IN ('active', 'acknowledged')",
            )
            .bind(alert_id);
        match self.execute(s).await {
            Ok(n) => Ok(n == 1),
            Err(e) if is_bad_id(&e) => Ok(false),
            Err(e) => Err(e).doing("resolving the alert"),
        }
    }

    async fn acknowledge_alert(
        &self,
        id: &str,
        by: &Acknowledger,
        at: DateTime<Utc>,
    ) -> Result<AckResult, StoreError> {
        acknowledged(self.begin().await?, id, by, at).await
    }
}

#[async_trait]
impl Paging for SqlStore {
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
        let s = self
            .stmt(concat!(
                "WITH candidates AS ( \
                   SELECT CAST(a.id AS TEXT) AS alert_id, {stale:$2} AS stale FROM alerts a \
                   WHERE ",
                severity!(),
                " = '{critical}' AND a.status = 'active' \
                     AND ($5 IS NULL OR a.id = {as_alert_id:$5}) \
                     AND NOT EXISTS (SELECT 1 FROM alertcall.pages p \
                                     WHERE p.alert_id = CAST(a.id AS TEXT)) \
                   ORDER BY a.triggered_at LIMIT 1000) \
                 INSERT INTO alertcall.pages \
                   (alert_id, state, due_at, lease_owner, created_at, updated_at) \
                 SELECT alert_id, CASE WHEN stale THEN 'stale' ELSE 'due' END, \
                        CASE WHEN stale THEN NULL ELSE $4 END, \
                        CASE WHEN stale THEN NULL ELSE $3 END, $1, $1 \
                 FROM candidates WHERE true \
                 ON CONFLICT (alert_id) DO NOTHING RETURNING {page_columns}"
            ))
            .bind(lease.now)
            .bind(not_before)
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(only);
        match self.fetch_all::<PageRow>(s).await {
            Ok(rows) => pages_from_rows(rows),
            Err(e) if is_bad_id(&e) => Ok(Vec::new()),
            Err(e) => Err(e).doing("taking in new critical alerts"),
        }
    }

    async fn wake_closed(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.pages SET due_at = $1 \
                 WHERE state IN ('due', 'waiting', 'exhausted') AND due_at > $1 \
                   AND EXISTS (SELECT 1 FROM alerts a \
                     WHERE a.id = {as_alert_id:alertcall.pages.alert_id} AND a.status <> 'active')",
            )
            .bind(now);
        self.execute(s).await.doing("waking pages of closed alerts")
    }

    async fn wake_closed_alert(
        &self,
        alert_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.pages SET due_at = $1 \
                 WHERE alert_id = $2 AND state IN ('due', 'waiting', 'exhausted') AND due_at > $1",
            )
            .bind(now)
            .bind(alert_id);
        self.execute(s)
            .await
            .doing("waking the pages of a closed alert")
    }

    async fn claim_due(&self, lease: &Lease, limit: i64) -> Result<Vec<Page>, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.pages SET lease_owner = $1, due_at = $2, updated_at = $3 \
                 WHERE alert_id IN ( \
                   SELECT alert_id FROM alertcall.pages WHERE due_at <= $3 \
                   ORDER BY due_at LIMIT $4{skip_locked}) \
                 RETURNING {page_columns}",
            )
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(lease.now)
            .bind(limit);
        let rows = self.fetch_all(s).await.doing("claiming due pages")?;
        pages_from_rows(rows)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let s = self.stmt("SELECT min(due_at) FROM alertcall.pages WHERE due_at IS NOT NULL");
        let (due,): (Option<DateTime<Utc>>,) =
            self.fetch_one(s).await.doing("finding the next due page")?;
        Ok(due)
    }

    async fn finish_page(
        &self,
        outcome: &PageOutcome,
        audit: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let updated = finish_in(&mut tx, outcome, audit).await?;
        tx.commit().await?;
        Ok(updated)
    }

    async fn renew_lease(&self, alert_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.pages SET due_at = $3 WHERE alert_id = $1 AND lease_owner = $2 \
                 AND state IN ('due', 'waiting')",
            )
            .bind(alert_id)
            .bind(&lease.owner)
            .bind(lease.until);
        Ok(self.execute(s).await.doing("renewing a lease")? == 1)
    }

    async fn hl7_links(&self) -> Result<Vec<Hl7Link>, StoreError> {
        self.fetch_all(self.stmt("SELECT {hl7_link_columns} FROM alertcall.hl7_links"))
            .await
            .doing("reading the HL7 links")
    }

    async fn page_state(&self, alert_id: &str) -> Result<Option<PageState>, StoreError> {
        let s = self
            .stmt("SELECT state FROM alertcall.pages WHERE alert_id = $1")
            .bind(alert_id);
        let state: Option<(String,)> = self.fetch_optional(s).await.doing("reading a page")?;
        state.map(|(s,)| PageState::parse(&s)).transpose()
    }

    async fn owned_page(&self, alert_id: &str, owner: &str) -> Result<Option<Page>, StoreError> {
        let s = self
            .stmt("SELECT {page_columns} FROM alertcall.pages WHERE alert_id = $1 AND lease_owner = $2")
            .bind(alert_id)
            .bind(owner);
        let row: Option<PageRow> = self
            .fetch_optional(s)
            .await
            .doing("reading a claimed page")?;
        row.map(Page::try_from).transpose()
    }
}

#[async_trait]
impl Feed for SqlStore {
    async fn feed(&self, poll: Duration) -> Result<Box<dyn AlertFeed>, StoreError> {
        Ok(match &self.pool {
            Pool::Postgres(pool) => postgres::feed(pool),
            Pool::Sqlite(pool) => sqlite::feed(pool, poll),
        })
    }
}

#[async_trait]
impl Calls for SqlStore {
    async fn call_tx(&self) -> Result<CallTx, StoreError> {
        self.begin().await
    }

    async fn create_call(&self, call: &NewCall) -> Result<CallRecord, StoreError> {
        // One commit (one fsync on SQLite) for both.
        let mut tx = self.begin().await?;
        tx.keep_policy(&call.alert_id, &Some(call.policy.clone()))
            .await?;
        let s = self
            .stmt(
                "INSERT INTO alertcall.calls \
                   (id, alert_id, step, round, person, provider, to_number, status, message, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9) RETURNING {call_columns}",
            )
            .bind(call.id)
            .bind(&call.alert_id)
            .bind(call.step)
            .bind(call.round)
            .bind(&call.person)
            .bind(&call.provider)
            .bind(&call.to_number)
            .bind(&call.message)
            .bind(call.at);
        let row: Option<CallRow> = tx.fetch_optional(s).await.doing("recording a new call")?;
        tx.commit().await?;
        row.ok_or_else(|| StoreError::NotFound(format!("the new call {}", call.id)))?
            .try_into()
    }

    async fn find_call(
        &self,
        provider_call_id: &str,
        call_id: Option<Uuid>,
    ) -> Result<Option<CallRecord>, StoreError> {
        let s = self
            .stmt("SELECT {call_columns} FROM alertcall.calls WHERE provider_call_id = $1")
            .bind(provider_call_id);
        let row: Option<CallRow> = self
            .fetch_optional(s)
            .await
            .doing("finding a call by provider id")?;
        if let Some(row) = row {
            return row.try_into().map(Some);
        }
        let Some(call_id) = call_id else {
            return Ok(None);
        };
        let s = self
            .stmt(
                "UPDATE alertcall.calls SET provider_call_id = $2 \
                 WHERE id = $1 AND (provider_call_id IS NULL OR provider_call_id = $2) \
                 RETURNING {call_columns}",
            )
            .bind(call_id)
            .bind(provider_call_id);
        let row: Option<CallRow> = self
            .fetch_optional(s)
            .await
            .doing("adopting a provider call id")?;
        row.map(CallRecord::try_from).transpose()
    }

    async fn bump_prompts(&self, call_id: Uuid) -> Result<i32, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.calls SET prompts = prompts + 1 WHERE id = $1 RETURNING prompts",
            )
            .bind(call_id);
        let after: Option<(i32,)> = self.fetch_optional(s).await.doing("counting a re-prompt")?;
        Ok(after.map_or(0, |(n,)| n - 1))
    }

    async fn call_history(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let s = self
            .stmt(concat!(
                "SELECT {call_columns} FROM alertcall.calls c \
                 WHERE ($1 IS NULL OR c.alert_id = $1) \
                   AND ($2 IS NULL OR c.created_at >= $2) \
                   AND ($3 IS NULL OR c.created_at < $3) \
                   AND ($4 IS NULL OR c.person = $4) \
                   AND ($5 IS NULL OR c.status = $5) \
                   AND ($6 IS NULL OR c.alert_id IN \
                        (SELECT alert_id FROM alertcall.pages WHERE policy = $6)) \
                   AND (NOT $8 OR c.status IN ",
                live_statuses!(),
                ") \
                 ORDER BY c.created_at DESC LIMIT $7"
            ))
            .bind(&filter.alert_id)
            .bind(filter.since)
            .bind(filter.until)
            .bind(&filter.person)
            .bind(&filter.status)
            .bind(&filter.unit)
            .bind(filter.limit)
            .bind(filter.live);
        let rows = self.fetch_all(s).await.doing("listing calls")?;
        calls_from_rows(rows)
    }

    async fn alerts_in_conference(&self, since: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        // Recent calls only (indexed by created_at).
        let s = self
            .stmt(concat!(
                "SELECT DISTINCT c.alert_id FROM alertcall.calls c \
                 WHERE c.created_at >= $1 AND c.conference_joined_at IS NOT NULL \
                 AND c.status IN ",
                live_statuses!()
            ))
            .bind(since);
        let alerts: Vec<(String,)> = self
            .fetch_all(s)
            .await
            .doing("listing alerts with live calls in their conference")?;
        Ok(alerts.into_iter().map(|(a,)| a).collect())
    }
}

#[async_trait]
impl Texts for SqlStore {
    async fn create_sms(&self, sms: &NewSms) -> Result<(), StoreError> {
        let s = self
            .stmt(
                "INSERT INTO alertcall.sms \
                   (id, alert_id, person, to_number, code, provider, status, body, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8)",
            )
            .bind(sms.id)
            .bind(&sms.alert_id)
            .bind(&sms.person)
            .bind(&sms.to_number)
            .bind(&sms.code)
            .bind(&sms.provider)
            .bind(&sms.body)
            .bind(sms.at);
        self.execute(s).await.doing("recording a text message")?;
        Ok(())
    }

    async fn sms_sent(
        &self,
        id: Uuid,
        provider_message_id: Option<&str>,
        status: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.sms SET provider_message_id = $2, status = $3, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(provider_message_id)
            .bind(status)
            .bind(at);
        self.execute(s)
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
        let s = self
            .stmt(
                "UPDATE alertcall.sms SET status = $2, updated_at = $3 \
                 WHERE provider_message_id = $1 RETURNING {sms_columns}",
            )
            .bind(provider_message_id)
            .bind(status)
            .bind(at);
        self.fetch_optional(s)
            .await
            .doing("recording a delivery receipt")
    }

    async fn sms_for_reply(
        &self,
        number: &str,
        code: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<Option<SmsRecord>, StoreError> {
        let s = self
            .stmt(
                "SELECT {sms_columns} FROM alertcall.sms \
                 WHERE to_number = $1 AND created_at >= $3 AND ($2 IS NULL OR code = $2) \
                 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(number)
            .bind(code)
            .bind(since);
        self.fetch_optional(s)
            .await
            .doing("finding the message a reply answers")
    }
}

#[async_trait]
impl TestCalls for SqlStore {
    async fn create_test_call(&self, call: &NewTestCall) -> Result<TestCallRecord, StoreError> {
        let s = self
            .stmt(
                "INSERT INTO alertcall.test_calls (id, person, to_number, provider, state, \
                   state_rank, requested_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {test_call_columns}",
            )
            .bind(call.id)
            .bind(&call.person)
            .bind(&call.to_number)
            .bind(&call.provider)
            .bind(TestCallState::Placing.as_str())
            .bind(TestCallState::Placing.rank())
            .bind(&call.requested_by)
            .bind(call.at);
        let row: TestCallRow = self.fetch_one(s).await.doing("recording a test call")?;
        row.try_into()
    }

    async fn test_call(&self, id: Uuid) -> Result<Option<TestCallRecord>, StoreError> {
        let s = self
            .stmt("SELECT {test_call_columns} FROM alertcall.test_calls WHERE id = $1")
            .bind(id);
        let row: Option<TestCallRow> = self.fetch_optional(s).await.doing("reading a test call")?;
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
            let s = self
                .stmt(
                    "UPDATE alertcall.test_calls SET provider_call_id = $2 \
                     WHERE id = $1 AND provider_call_id IS NULL",
                )
                .bind(id)
                .bind(provider_call_id);
            self.execute(s)
                .await
                .doing("recording a test call's provider id")?;
        }
        let s = self
            .stmt(
                "UPDATE alertcall.test_calls SET state = $2, state_rank = $3, \
                 reason = COALESCE($4, reason), updated_at = $5 \
                 WHERE id = $1 AND state_rank < $3",
            )
            .bind(id)
            .bind(state.as_str())
            .bind(state.rank())
            .bind(reason)
            .bind(at);
        Ok(self.execute(s).await.doing("moving a test call on")? > 0)
    }

    async fn bump_test_call_prompts(&self, id: Uuid) -> Result<i32, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.test_calls SET prompts = prompts + 1 WHERE id = $1 \
                 RETURNING prompts",
            )
            .bind(id);
        let after: Option<(i32,)> = self
            .fetch_optional(s)
            .await
            .doing("counting a test call's re-prompt")?;
        Ok(after.map_or(0, |(n,)| n - 1))
    }
}

#[async_trait]
impl Audit for SqlStore {
    async fn record_event(&self, event: &AuditEvent) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let fresh = tx.record(event).await?;
        tx.commit().await?;
        Ok(fresh)
    }

    async fn list_events(&self, alert_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let s = self
            .stmt(
                "SELECT id, alert_id, call_id, source, kind, detail, created_at \
                 FROM alertcall.call_events WHERE alert_id = $1 ORDER BY id",
            )
            .bind(alert_id);
        let rows: Vec<EventRow> = self.fetch_all(s).await.doing("listing audit events")?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        let s = self.stmt("SELECT coalesce(max(id), 0) FROM alertcall.call_events");
        let (id,): (i64,) = self
            .fetch_one(s)
            .await
            .doing("reading the newest audit entry")?;
        Ok(id)
    }
}

#[async_trait]
impl Hl7Reports for SqlStore {
    async fn hl7_origin(&self, alert_id: &str) -> Result<Option<Hl7Origin>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            sending_application: Option<String>,
            sending_facility: Option<String>,
            alarm_id: Option<String>,
            event_code: Option<String>,
            patient_id: Option<String>,
        }
        let s = self
            .stmt(
                "SELECT {json_text:a.metadata, hl7.sending_application} AS sending_application, \
                 {json_text:a.metadata, hl7.sending_facility} AS sending_facility, \
                 {json_text:a.metadata, hl7.alarm_id} AS alarm_id, \
                 {json_text:a.metadata, hl7.event_code} AS event_code, \
                 CAST(a.patient_id AS TEXT) AS patient_id \
                 FROM alerts a WHERE a.id = {as_alert_id:$1}",
            )
            .bind(alert_id);
        let row: Option<Row> = match self.fetch_optional(s).await {
            Ok(row) => row,
            Err(e) if is_bad_id(&e) => None,
            Err(e) => return Err(e).doing("reading where an HL7 alert came from"),
        };
        // A link-down alert names its gateway but no alarm: there is no alarm to report on.
        Ok(row.and_then(|r| {
            Some(Hl7Origin {
                sending_application: r.sending_application?,
                sending_facility: r.sending_facility.filter(|f| !f.is_empty()),
                alarm_id: r.alarm_id?,
                event_code: r.event_code,
                patient_id: r.patient_id,
            })
        }))
    }

    async fn queue_hl7_report(&self, report: &NewHl7Report) -> Result<bool, StoreError> {
        let s = self
            .stmt(
                "INSERT INTO alertcall.hl7_reports \
                   (id, alert_id, status, dedupe_key, message, created_at, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&report.id)
            .bind(&report.alert_id)
            .bind(&report.status)
            .bind(&report.dedupe_key)
            .bind(&report.message)
            .bind(report.at);
        Ok(self
            .execute(s)
            .await
            .doing("queuing an HL7 status report")?
            == 1)
    }

    async fn unsent_hl7_reports(&self, limit: i64) -> Result<Vec<Hl7Report>, StoreError> {
        let s = self
            .stmt(
                "SELECT id, alert_id, status, message, attempts, created_at, next_attempt_at \
                 FROM alertcall.hl7_reports WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
            )
            .bind(limit);
        self.fetch_all(s)
            .await
            .doing("reading the HL7 status reports to send")
    }

    async fn claim_hl7_report(
        &self,
        report: &Hl7Report,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.hl7_reports SET attempts = attempts + 1, next_attempt_at = $3 \
                 WHERE id = $1 AND attempts = $2 AND sent_at IS NULL",
            )
            .bind(&report.id)
            .bind(report.attempts)
            .bind(until);
        Ok(self.execute(s).await.doing("taking an HL7 status report")? == 1)
    }

    async fn prune_hl7(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let messages = self
            .stmt("DELETE FROM alertcall.hl7_messages WHERE received_at < $1")
            .bind(before);
        let reports = self
            .stmt("DELETE FROM alertcall.hl7_reports WHERE sent_at < $1")
            .bind(before);
        Ok(self
            .execute(messages)
            .await
            .doing("forgetting old HL7 message ids")?
            + self
                .execute(reports)
                .await
                .doing("forgetting sent HL7 status reports")?)
    }

    async fn hl7_report_sent(&self, id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let s = self
            .stmt("UPDATE alertcall.hl7_reports SET sent_at = $2, last_error = NULL WHERE id = $1")
            .bind(id)
            .bind(at);
        self.execute(s)
            .await
            .doing("recording an HL7 status report as sent")?;
        Ok(())
    }

    async fn hl7_report_failed(
        &self,
        id: &str,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = self
            .stmt(
                "UPDATE alertcall.hl7_reports SET next_attempt_at = $3, last_error = $2 \
                 WHERE id = $1 AND sent_at IS NULL",
            )
            .bind(id)
            .bind(error)
            .bind(retry_at);
        self.execute(s)
            .await
            .doing("recording an HL7 status report's failure")?;
        Ok(())
    }
}

#[async_trait]
impl Sessions for SqlStore {
    async fn create_session(&self, token_hash: &str, session: &Session) -> Result<(), StoreError> {
        let s = self
            .stmt(
                "INSERT INTO alertcall.sessions \
                   (token_hash, username, role, credential, csrf, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(token_hash)
            .bind(&session.user)
            .bind(&session.role)
            .bind(&session.credential)
            .bind(&session.csrf)
            .bind(session.expires_at);
        self.execute(s).await.doing("starting a session")?;
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        let s = self
            .stmt(
                "SELECT username, role, credential, csrf, expires_at FROM alertcall.sessions \
                 WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now);
        let row: Option<(String, String, String, String, DateTime<Utc>)> =
            self.fetch_optional(s).await.doing("looking up a session")?;
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
        let s = self
            .stmt("DELETE FROM alertcall.sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now);
        self.execute(s).await.doing("ending a session")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::call::CallStatus;

    #[test]
    fn the_sql_list_of_live_statuses_is_the_non_terminal_ones() {
        let live: Vec<String> = CallStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        assert_eq!(format!("({})", live.join(", ")), live_statuses!());
    }

    #[test]
    fn tables_and_fragments_are_resolved_for_each_database() {
        let query =
            "SELECT 1 FROM alertcall.pages p WHERE p.alert_id = {as_alert_id:$1}{for_update}";
        let pg = Sql::new(Dialect::Postgres, Some("uuid".into()));
        assert_eq!(
            pg.resolve(query),
            "SELECT 1 FROM alertcall.pages p WHERE p.alert_id = ($1)::uuid FOR UPDATE"
        );
        let sqlite = Sql::new(Dialect::Sqlite, None);
        assert_eq!(
            sqlite.resolve(query),
            "SELECT 1 FROM alertcall_pages p WHERE p.alert_id = $1"
        );
    }

    #[test]
    fn every_fragment_is_known_to_both_databases() {
        let queries = [
            ALERT_SELECT,
            concat!("WHERE ", alert_time!(), " >= {time_order:$3}"),
            "{stale:$2} {metadata_set:$2, $3} {skip_locked} {raw_time:x} {critical} {uuid:$1}",
            "{call_columns} {page_columns} {sms_columns} {alert_select} {hl7_link_columns}",
        ];
        for sql in [
            Sql::new(Dialect::Postgres, Some("uuid".into())),
            Sql::new(Dialect::Sqlite, None),
        ] {
            for query in queries {
                let resolved = sql.resolve(query);
                assert!(
                    !resolved.contains('{') || resolved.contains("'{}'"),
                    "{:?}: {resolved}",
                    sql.dialect
                );
                assert!(!resolved.contains("alertcall.") || sql.dialect == Dialect::Postgres);
            }
        }
    }

    #[test]
    fn an_unknown_fragment_is_left_for_the_database_to_refuse() {
        let sql = Sql::new(Dialect::Sqlite, None);
        assert_eq!(sql.resolve("SELECT {nonsense}"), "SELECT {nonsense}");
    }
}
