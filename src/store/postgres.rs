//! What Postgres (Supabase in production) says its own way. alertcall's tables live in schema
//! `alertcall`; the hospital's `alerts`, `patients`, `rooms` are used as they are, whatever
//! the types of their columns.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

use super::{AlertFeed, Doing, FeedEvent, StoreError};

pub(super) const MIGRATIONS: &[(i32, &str)] = migrations!("postgres");

/// The advisory lock that serialises migrations across instances starting at once: "alertcal"
/// in ASCII.
macro_rules! migration_lock {
    () => {
        "7020097461417107820"
    };
}

/// Serialises migrations across instances starting at once, then makes sure the migrations
/// table exists.
pub(super) const MIGRATION_PRELUDE: &str = concat!(
    "SELECT pg_advisory_xact_lock(",
    migration_lock!(),
    "); \
     CREATE SCHEMA IF NOT EXISTS alertcall; \
     CREATE TABLE IF NOT EXISTS alertcall.schema_migrations ( \
       version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
);

/// The statements of a migration that must run outside a transaction (it starts with
/// `-- no-transaction`), or `None` for one that runs inside. Statements end with `;` at the
/// end of a line.
pub(super) fn outside_transaction(script: &str) -> Option<Vec<&str>> {
    script.strip_prefix("-- no-transaction\n")?;
    Some(
        script
            .split(";\n")
            .map(str::trim)
            .filter(|s| {
                s.lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
            })
            .collect(),
    )
}

/// Applies migration `version`, whose `statements` Postgres refuses inside a transaction
/// (`CREATE INDEX CONCURRENTLY`), unless another instance applied it meanwhile: on a
/// connection of its own holding the migration lock, which closing the connection releases
/// whatever happens. An index that an interrupted build left invalid on `alerts` is dropped
/// first, so that `IF NOT EXISTS` builds it again instead of keeping it.
pub(super) async fn migrate_outside_transaction(
    pool: &PgPool,
    version: i32,
    statements: &[&str],
) -> Result<(), StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .doing("connecting to apply a migration")?
        .detach();
    let result = async {
        sqlx::query(concat!("SELECT pg_advisory_lock(", migration_lock!(), ")"))
            .execute(&mut conn)
            .await
            .doing("waiting for the migration lock")?;
        let applied: Option<i32> = sqlx::query_scalar(
            "SELECT version FROM alertcall.schema_migrations WHERE version = $1",
        )
        .bind(version)
        .fetch_optional(&mut conn)
        .await
        .doing("reading applied migrations")?;
        if applied.is_some() {
            return Ok(());
        }
        let invalid: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(c.relname) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = to_regclass('alerts') AND NOT i.indisvalid \
               AND c.relname LIKE 'alertcall\\_%'",
        )
        .fetch_all(&mut conn)
        .await
        .doing("looking for indexes left invalid")?;
        for index in invalid {
            tracing::warn!(index, "dropping an index an interrupted build left invalid");
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {index}"
            )))
            .execute(&mut conn)
            .await
            .doing("dropping an invalid index")?;
        }
        for statement in statements {
            sqlx::raw_sql(AssertSqlSafe(statement.to_string()))
                .execute(&mut conn)
                .await
                .doing("applying a migration")?;
        }
        sqlx::query(
            "INSERT INTO alertcall.schema_migrations (version, applied_at) VALUES ($1, now())",
        )
        .bind(version)
        .execute(&mut conn)
        .await
        .doing("recording a migration")?;
        tracing::info!(version, backend = "postgres", "applied a migration");
        Ok(())
    }
    .await;
    let _ = conn.close().await;
    result
}

/// The channel the `alerts` trigger notifies on, with the new alert's id as payload.
const NEW_ALERT_CHANNEL: &str = "alertcall_new_alert";

pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    let options: PgConnectOptions = url.parse().map_err(|e| {
        StoreError::Invalid(format!("DATABASE_URL is not a valid Postgres URL: {e}"))
    })?;
    PgPoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.application_name("alertcall"))
        .await
        .doing("connecting to Postgres")
}

/// The SQL type of `alerts.id`, if the table exists.
pub(super) async fn alert_id_type(pool: &PgPool) -> Result<Option<String>, StoreError> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
         WHERE a.attrelid = to_regclass('alerts') AND a.attname = 'id' AND NOT a.attisdropped",
    )
    .fetch_optional(pool)
    .await
    .doing("reading the type of alerts.id")?;
    match found {
        // Written into queries as a cast: a type name, nothing else.
        Some(t)
            if !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_') =>
        {
            Err(StoreError::Invalid(format!(
                "alerts.id has an unsupported type {t:?}"
            )))
        }
        found => Ok(found),
    }
}

/// Whether `id` can be a value of the `alerts.id` type `id_type`.
pub(super) fn id_fits(id_type: &str, id: &str) -> bool {
    match id_type {
        "uuid" => Uuid::parse_str(id).is_ok(),
        "smallint" | "int2" => id.parse::<i16>().is_ok(),
        "integer" | "int" | "int4" => id.parse::<i32>().is_ok(),
        "bigint" | "int8" => id.parse::<i64>().is_ok(),
        _ => !id.contains('\0'),
    }
}

/// Postgres' spelling of the fragments named in `sql.rs`; `None` for those it writes as
/// the query does.
pub(super) fn fragment(name: &str, arg: &str, id_type: &str) -> Option<String> {
    Some(match name {
        "for_update" => " FOR UPDATE".into(),
        "skip_locked" => " FOR UPDATE SKIP LOCKED".into(),
        "as_alert_id" => format!("({arg})::{id_type}"),
        "uuid" => format!("({arg})::uuid"),
        // The hospital's columns may be uuid, integer or an enum: compared as text.
        "join_key" | "raw_time" => format!("{arg}::text"),
        // `-infinity` is not "before": such an alert is called rather than skipped.
        "stale" => format!("(a.triggered_at < {arg} AND isfinite(a.triggered_at))"),
        "metadata_set" => {
            let (key, value) = arg.split_once(',')?;
            format!(
                "(CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata \
                 ELSE '{{}}'::jsonb END) || jsonb_build_object(({key})::text, ({})::jsonb)",
                value.trim()
            )
        }
        "json_text" => {
            let (json, path) = arg.split_once(',')?;
            let keys: Vec<&str> = path.trim().split('.').collect();
            let (last, inner) = keys.split_last()?;
            let inner: String = inner.iter().map(|k| format!("->'{k}'")).collect();
            format!("{}{inner}->>'{last}'", json.trim())
        }
        "has_call" => format!("({arg}->'call' IS NOT NULL)"),
        // date_part is double precision already (EXTRACT's numeric costs a conversion a row).
        "epoch" => format!("date_part('epoch', {arg})"),
        "floor" => format!("floor({arg})"),
        // Ordered-set aggregates skip NULLs and share one sort per group.
        "spread_of_vals" => "SELECT grp, count(*) AS n_rows, count(s) AS n_values, \
             percentile_disc(0.5) WITHIN GROUP (ORDER BY s) AS p50, \
             percentile_disc(0.9) WITHIN GROUP (ORDER BY s) AS p90, max(s) AS longest, \
             sum(escalated) AS escalated, sum(exhausted) AS exhausted \
             FROM vals GROUP BY grp"
            .into(),
        _ => return None,
    })
}

pub(super) fn feed(pool: &PgPool) -> Box<dyn AlertFeed> {
    Box::new(PgFeed {
        pool: pool.clone(),
        listener: None,
    })
}

/// LISTEN on the notify trigger's channel. Notifications sent while disconnected are lost,
/// so every (re)connection starts with a sweep.
struct PgFeed {
    pool: PgPool,
    listener: Option<PgListener>,
}

#[async_trait]
impl AlertFeed for PgFeed {
    async fn next(&mut self) -> Result<FeedEvent, StoreError> {
        let Some(listener) = self.listener.as_mut() else {
            let mut listener = PgListener::connect_with(&self.pool)
                .await
                .doing("connecting the LISTEN session")?;
            listener
                .listen(NEW_ALERT_CHANNEL)
                .await
                .doing("listening for new alerts")?;
            self.listener = Some(listener);
            return Ok(FeedEvent::Sweep);
        };
        match listener.try_recv().await {
            Ok(Some(n)) => {
                // Many alerts at once (a burst): one sweep takes them all in, instead of a
                // query per notification.
                if listener.next_buffered().is_some() {
                    while listener.next_buffered().is_some() {}
                    return Ok(FeedEvent::Sweep);
                }
                if n.payload().is_empty() {
                    return Ok(FeedEvent::Sweep);
                }
                Ok(FeedEvent::NewAlert(n.payload().to_string()))
            }
            // The connection dropped; the next call reconnects.
            Ok(None) => Ok(FeedEvent::Sweep),
            Err(e) => {
                self.listener = None;
                Err(e).doing("receiving notifications")
            }
        }
    }
}
