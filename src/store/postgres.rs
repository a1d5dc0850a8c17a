//! What Postgres (Supabase in production) says its own way. alertcall's tables live in schema
//! `alertcall`; the hospital's `alerts`, `patients`, `rooms` are used as they are, whatever
//! the types of their columns.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use uuid::Uuid;

use super::{AlertFeed, Doing, FeedEvent, StoreError};

pub(super) const MIGRATIONS: &[(i32, &str)] = migrations!("postgres");

/// Serialises migrations across instances starting at once (the advisory lock's key is
/// "alertcal" in ASCII), then makes sure the migrations table exists.
pub(super) const MIGRATION_PRELUDE: &str = "SELECT pg_advisory_xact_lock(7020097461417107820); \
     CREATE SCHEMA IF NOT EXISTS alertcall; \
     CREATE TABLE IF NOT EXISTS alertcall.schema_migrations ( \
       version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())";

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
