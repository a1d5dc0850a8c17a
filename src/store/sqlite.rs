//! What SQLite, the embedded default, says its own way. WAL mode so readers never block the
//! writer; write transactions start `IMMEDIATE` (`sql::Pool::begin`) so two writers queue
//! instead of failing. alertcall's tables are `alertcall_<name>`; its times are text that
//! sorts in time order.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqliteConnection};

use super::{AlertFeed, Doing, FeedEvent, StoreError};

pub(super) const MIGRATIONS: &[(i32, &str)] = migrations!("sqlite");

pub(super) const MIGRATION_PRELUDE: &str = "CREATE TABLE IF NOT EXISTS alertcall_schema_migrations ( \
       version INTEGER PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL)";

/// alertcall's times as SQLite stores them: `YYYY-MM-DDTHH:MM:SS.mmmZ`, text whose order is
/// time order.
pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// alertcall's tables: `alertcall.calls` is `alertcall_calls` here.
pub(super) fn table_names(query: &str) -> String {
    query.replace("alertcall.", "alertcall_")
}

/// SQLite's spelling of the fragments named in `sql.rs`; `None` for those it writes as the
/// query does.
pub(super) fn fragment(name: &str, arg: &str) -> Option<String> {
    // The hospital writes times as text or epoch numbers: julianday reads the texts, and an
    // unreadable one is NULL (an alert that is called, never skipped).
    let julianday = |x: &str| format!("julianday({x})");
    Some(match name {
        "time_order" => julianday(arg),
        "stale" => format!("{} < {}", julianday("a.triggered_at"), julianday(arg)),
        // Whatever the column's storage class: an epoch number becomes its digits; a BLOB,
        // which need not be UTF-8, its hex.
        "raw_time" => format!(
            "CASE WHEN typeof({arg}) = 'blob' THEN 'x''' || hex({arg}) || '''' \
             ELSE CAST({arg} AS TEXT) END"
        ),
        "metadata_set" => {
            let (key, value) = arg.split_once(',')?;
            format!(
                "json_set(CASE WHEN json_valid(metadata) AND json_type(metadata) = 'object' \
                 THEN metadata ELSE '{{}}' END, '$.' || {key}, json({}))",
                value.trim()
            )
        }
        "json_text" => {
            let (json, path) = arg.split_once(',')?;
            let (json, path) = (json.trim(), path.trim());
            format!(
                "CASE WHEN json_valid({json}) THEN CAST(json_extract({json}, '$.{path}') AS TEXT) END"
            )
        }
        // Milliseconds kept (`subsec`); an unreadable time is NULL.
        "epoch" => format!("unixepoch({arg}, 'subsec')"),
        // SQLite has no floor() unless built with its math functions: truncate, and step
        // down for a negative value with a fraction.
        "floor" => format!("(CAST({arg} AS INTEGER) - (({arg}) < CAST({arg} AS INTEGER)))"),
        // No percentile aggregate: the k-th of n values (NULLs last, not counted) is the
        // nearest rank once k/n reaches p, in integers.
        "spread_of_vals" => "SELECT grp, count(*) AS n_rows, count(s) AS n_values, \
             min(CASE WHEN s IS NOT NULL AND k * 10 >= n * 5 THEN s END) AS p50, \
             min(CASE WHEN s IS NOT NULL AND k * 10 >= n * 9 THEN s END) AS p90, \
             max(s) AS longest, sum(escalated) AS escalated, sum(exhausted) AS exhausted \
             FROM (SELECT grp, s, escalated, exhausted, \
                     ROW_NUMBER() OVER (PARTITION BY grp ORDER BY s NULLS LAST) AS k, \
                     COUNT(s) OVER (PARTITION BY grp) AS n FROM vals) \
             GROUP BY grp"
            .into(),
        "has_call" => format!(
            "CASE WHEN json_valid({arg}) THEN json_type({arg}, '$.call') IS NOT NULL ELSE 0 END"
        ),
        _ => return None,
    })
}

/// Opens the file, and notes which file it is.
pub(super) async fn connect(url: &str) -> Result<(SqlitePool, Option<OpenedFile>), StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Invalid(format!("DATABASE_URL is not a valid SQLite URL: {e}")))?
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
                    tracing::warn!("closing a SQLite connection left inside a failed transaction");
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
    Ok((pool, file))
}

/// A file by its device and inode, which a rename, a delete or a replacement at its path
/// changes (the check SQLite's `SQLITE_FCNTL_HAS_MOVED` makes, which WAL mode skips).
pub(super) struct OpenedFile {
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

    pub(super) fn check(&self) -> Result<(), StoreError> {
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

pub(super) fn feed(pool: &SqlitePool, poll: Duration) -> Box<dyn AlertFeed> {
    Box::new(SqliteFeed {
        options: pool.connect_options().as_ref().clone(),
        conn: None,
        version: None,
        poll,
    })
}

/// Notices commits by other processes: `PRAGMA data_version` changes whenever another
/// connection commits to the file, and costs no I/O to read. It needs a connection of its
/// own.
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
