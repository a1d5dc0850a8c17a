//! Postgres (Supabase in production). alertcall's tables live in schema `alertcall`; the
//! hospital's `alerts`, `patients`, `rooms` are used as they are.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use sqlx::AssertSqlSafe;

use super::*;
use crate::domain::alert::CRITICAL;

const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/postgres/0001_init.sql")),
    (2, include_str!("migrations/postgres/0002_sessions.sql")),
    (
        3,
        include_str!("migrations/postgres/0003_webhook_secrets.sql"),
    ),
    (
        4,
        include_str!("migrations/postgres/0004_session_credential.sql"),
    ),
    (5, include_str!("migrations/postgres/0005_test_calls.sql")),
    (6, include_str!("migrations/postgres/0006_hl7.sql")),
    (7, include_str!("migrations/postgres/0007_hl7_links.sql")),
    (8, include_str!("migrations/postgres/0008_declined.sql")),
];

/// The room with this `room_id` or `room_name` ($1), an id match first.
const ROOM_LOOKUP: &str = "SELECT room_id::text FROM rooms WHERE room_id::text = $1 OR room_name = $1 \
     ORDER BY (room_id::text = $1) DESC LIMIT 1";

/// Inserts `alert`, whose `room` is a `rooms.room_id`; yields its id.
fn insert_alert_query(
    alert: &NewAlert,
) -> sqlx::query::QueryScalar<'_, Postgres, String, sqlx::postgres::PgArguments> {
    sqlx::query_scalar(
        "INSERT INTO alerts (patient_id, room_id, severity, alert_type, title, message) \
         VALUES ($1, (SELECT room_id FROM rooms WHERE room_id::text = $2), $3, $4, $5, $6) \
         RETURNING id::text",
    )
    .bind(&alert.patient_id)
    .bind(&alert.room)
    .bind(&alert.severity)
    .bind(&alert.alert_type)
    .bind(&alert.title)
    .bind(&alert.message)
}

/// Serialises migrations across instances starting at once.
const MIGRATION_LOCK: i64 = 0x616c_6572_7463_616c;

/// The channel the `alerts` trigger notifies on, with the new alert's id as payload.
pub const NEW_ALERT_CHANNEL: &str = "alertcall_new_alert";

const CALL_COLUMNS: &str = "id, alert_id, provider, provider_call_id, to_number, status, message, \
     step, round, person, created_at, initiated_at, answered_at, ended_at, declined_at, prompts, error";
const PAGE_COLUMNS: &str = "alert_id, state, step, round, policy, attempts, due_at";

pub struct PgStore {
    pool: PgPool,
    /// The SQL type of `alerts.id` (`uuid` in Supabase, but the hospital decides), so lookups
    /// cast our text ids to it and use the primary key index.
    id_type: std::sync::RwLock<String>,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            StoreError::Invalid(format!("DATABASE_URL is not a valid Postgres URL: {e}"))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.application_name("alertcall"))
            .await
            .doing("connecting to Postgres")?;
        let store = PgStore {
            pool,
            id_type: std::sync::RwLock::new("text".into()),
        };
        store.detect_id_type().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn detect_id_type(&self) -> Result<(), StoreError> {
        let found: Option<String> = sqlx::query_scalar(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass('alerts') AND a.attname = 'id' AND NOT a.attisdropped",
        )
        .fetch_optional(&self.pool)
        .await
        .doing("reading the type of alerts.id")?;
        if let Some(t) = found {
            if !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '_')
            {
                return Err(StoreError::Invalid(format!(
                    "alerts.id has an unsupported type {t:?}"
                )));
            }
            *self.id_type.write().expect("id_type lock") = t;
        }
        Ok(())
    }

    /// `$n::uuid` (or whatever alerts.id is).
    fn id_param(&self, n: u8) -> String {
        format!("${n}::{}", self.id_type.read().expect("id_type lock"))
    }
}

/// A Postgres write transaction for the shared call steps in `store/mod.rs`.
struct PgCallTx {
    tx: Transaction<'static, Postgres>,
    /// `$1::<alerts.id type>`.
    id_cast: String,
    /// The alerts.id type itself.
    id_type: String,
}

#[async_trait]
impl CallTx for PgCallTx {
    async fn call(&mut self, call_id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM alertcall.calls WHERE id = $1 FOR UPDATE"
        )))
        .bind(call_id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .doing("locking a call")?;
        row.map(CallRecord::try_from).transpose()
    }

    async fn save_row(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alertcall.calls SET status = $2, provider_call_id = $3, initiated_at = $4, \
             answered_at = $5, ended_at = $6, error = $7, declined_at = $8 WHERE id = $1",
        )
        .bind(call.id.to_string())
        .bind(call.status.as_str())
        .bind(&call.provider_call_id)
        .bind(call.initiated_at)
        .bind(call.answered_at)
        .bind(call.ended_at)
        .bind(&call.error)
        .bind(call.declined_at)
        .execute(&mut *self.tx)
        .await
        .doing("updating a call")?;
        Ok(())
    }

    async fn mirror(&mut self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE alerts SET metadata = \
               (CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{{}}'::jsonb END) \
               || jsonb_build_object('call', $2::jsonb) \
             WHERE id = {} AND ($3 OR ( \
               coalesce(metadata->'call'->>'call_status', '') <> 'answered' \
               AND NOT EXISTS (SELECT 1 FROM alertcall.calls c \
                               WHERE c.alert_id = $4 AND c.created_at > $5)))",
            self.id_cast
        )))
        .bind(&call.alert_id)
        .bind(call.metadata_call())
        .bind(call.status == CallStatus::Answered)
        .bind(&call.alert_id)
        .bind(call.created_at)
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
        if !id_fits(&self.id_type, alert_id) {
            return Ok(None);
        }
        let done = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE alerts SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3, \
               metadata = CASE WHEN $4::jsonb IS NULL THEN metadata ELSE \
                 (CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{{}}'::jsonb END) \
                 || jsonb_build_object('call', $4::jsonb) END \
             WHERE id = {} AND status = 'active' RETURNING triggered_at::text",
            self.id_cast
        )))
        .bind(alert_id)
        .bind(at)
        .bind(by.as_str())
        .bind(answered.map(CallRecord::metadata_call))
        .fetch_optional(&mut *self.tx)
        .await;
        match done {
            Ok(triggered_at) => Ok(triggered_at),
            Err(e) if is_bad_id(&e) => Ok(None),
            Err(e) => Err(e).doing("acknowledging the alert"),
        }
    }
    async fn alert_exists(&mut self, alert_id: &str) -> Result<bool, StoreError> {
        if !id_fits(&self.id_type, alert_id) {
            return Ok(false);
        }
        let found = sqlx::query_scalar::<_, i32>(AssertSqlSafe(format!(
            "SELECT 1 FROM alerts WHERE id = {}",
            self.id_cast
        )))
        .bind(alert_id)
        .fetch_optional(&mut *self.tx)
        .await;
        match found {
            Ok(found) => Ok(found.is_some()),
            Err(e) if is_bad_id(&e) => Ok(false),
            Err(e) => Err(e).doing("looking up an alert"),
        }
    }

    async fn close_page(&mut self, alert_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alertcall.pages SET state = 'acknowledged', due_at = NULL, lease_owner = NULL, \
             updated_at = $2 WHERE alert_id = $1 AND state IN ('due', 'waiting', 'exhausted')",
        )
        .bind(alert_id)
        .bind(at)
        .execute(&mut *self.tx)
        .await
        .doing("closing the page")?;
        Ok(())
    }

    async fn record(&mut self, event: &AuditEvent) -> Result<bool, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alertcall.call_events (alert_id, call_id, source, kind, dedupe_key, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(&event.alert_id)
        .bind(event.call_id.map(|c| c.to_string()))
        .bind(&event.source)
        .bind(&event.kind)
        .bind(&event.dedupe_key)
        .bind(&event.detail)
        .bind(event.at)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("recording an audit event")?;
        Ok(id.is_some())
    }

    async fn update_page(&mut self, outcome: &PageOutcome) -> Result<bool, StoreError> {
        let update = &outcome.update;
        // An alert closed elsewhere while this page was being worked on (its wake-up then
        // could not move a leased page) is due again at once, so its calls are hung up.
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE alertcall.pages SET state = $3, step = $4, round = $5, \
               due_at = CASE WHEN $6::timestamptz IS NOT NULL AND EXISTS (SELECT 1 FROM alerts a \
                 WHERE a.id = (alertcall.pages.alert_id)::{} AND a.status <> 'active') \
                 THEN $9 ELSE $6 END, \
             attempts = $7, last_error = $8, lease_owner = NULL, updated_at = $9, policy = $10 \
             WHERE alert_id = $1 AND lease_owner = $2 AND state NOT IN ('acknowledged', 'cancelled')",
            self.id_type
        )))
        .bind(&outcome.alert_id)
        .bind(&outcome.owner)
        .bind(update.state.as_str())
        .bind(update.step)
        .bind(update.round)
        .bind(update.due_at)
        .bind(update.attempts)
        .bind(&update.last_error)
        .bind(outcome.now)
        .bind(&update.policy)
        .execute(&mut *self.tx)
        .await
        .doing("updating a page")?;
        if done.rows_affected() == 0 {
            // Closed meanwhile (before any call recorded its policy): still keep which
            // policy (unit) it followed, for the dashboard and analytics.
            sqlx::query(
                "UPDATE alertcall.pages SET policy = $2 WHERE alert_id = $1 AND policy IS NULL",
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
            "SELECT {PAGE_COLUMNS} FROM alertcall.pages WHERE alert_id = $1 FOR UPDATE"
        )))
        .bind(alert_id)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("locking a page")?;
        row.map(Page::try_from).transpose()
    }

    async fn set_page(
        &mut self,
        alert_id: &str,
        update: &PageUpdate,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
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
        .bind(now)
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
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE alerts SET metadata = \
               (CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{{}}'::jsonb END) \
               || jsonb_build_object($2::text, $3::jsonb) WHERE id = {}",
            self.id_cast
        )))
        .bind(alert_id)
        .bind(key)
        .bind(value)
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
            "SELECT id, provider_call_id FROM alertcall.calls WHERE alert_id = $1 AND id <> $2 \
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
            "SELECT source, state, last_heard_at, alert_id FROM alertcall.hl7_links \
             WHERE source = $1 FOR UPDATE",
        )
        .bind(source)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("reading an HL7 link")
    }

    async fn set_hl7_source(&mut self, link: &Hl7Link) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall.hl7_links (source, state, last_heard_at, alert_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (source) DO UPDATE SET \
             state = excluded.state, last_heard_at = excluded.last_heard_at, \
             alert_id = excluded.alert_id",
        )
        .bind(&link.source)
        .bind(&link.state)
        .bind(link.last_heard_at)
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
            "INSERT INTO alertcall.hl7_messages (source, control_id, received_at) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(source)
        .bind(control_id)
        .bind(at)
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
        // Held to the commit, so that two connections reporting one new alarm at once make
        // one alert (a row lock cannot lock a row that does not exist yet).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '|' || $2, 0))")
            .bind(source)
            .bind(alarm_id)
            .execute(&mut *self.tx)
            .await
            .doing("locking an HL7 alarm")?;
        sqlx::query_scalar(
            "SELECT alert_id FROM alertcall.hl7_alarms WHERE source = $1 AND alarm_id = $2",
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
            "INSERT INTO alertcall.hl7_alarms (source, alarm_id, alert_id, phase, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, alarm_id) \
             DO UPDATE SET phase = excluded.phase, updated_at = excluded.updated_at",
        )
        .bind(source)
        .bind(alarm_id)
        .bind(alert_id)
        .bind(phase)
        .bind(at)
        .execute(&mut *self.tx)
        .await
        .doing("linking an HL7 alarm to its alert")?;
        Ok(())
    }

    async fn room_named(&mut self, name: &str) -> Result<String, StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('alertcall.room|' || $1, 0))")
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .doing("locking a room name")?;
        let found: Option<String> = sqlx::query_scalar(ROOM_LOOKUP)
            .bind(name)
            .fetch_optional(&mut *self.tx)
            .await
            .doing("looking up the room")?;
        match found {
            Some(id) => Ok(id),
            // A uuid fits a uuid or a text room_id.
            None => sqlx::query_scalar(
                "INSERT INTO rooms (room_id, room_name) VALUES ($1::uuid, $2) \
                 RETURNING room_id::text",
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
            "INSERT INTO patients (patient_id, name) VALUES ($1, $2) \
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
        if !id_fits(&self.id_type, alert_id) {
            return Ok(None);
        }
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT severity, status FROM alerts WHERE id = {} FOR UPDATE",
            self.id_cast
        )))
        .bind(alert_id)
        .fetch_optional(&mut *self.tx)
        .await
        .doing("locking an alert")
    }

    async fn revise_alert(
        &mut self,
        alert_id: &str,
        severity: &str,
        message: Option<&str>,
        resolve: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE alerts SET severity = $2, message = coalesce($3, message), \
               status = CASE WHEN $4 AND status IN ('active', 'acknowledged') THEN 'resolved' \
                        ELSE status END \
             WHERE id = {}",
            self.id_cast
        )))
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

/// A text id that does not parse as the alerts.id type (e.g. not a uuid): no such alert.
/// Whether `id` can be a value of `alerts.id`'s type. Checked before using it inside a
/// transaction, where a failed cast would abort the whole transaction.
fn id_fits(id_type: &str, id: &str) -> bool {
    match id_type {
        "uuid" => Uuid::parse_str(id).is_ok(),
        "smallint" | "int2" => id.parse::<i16>().is_ok(),
        "integer" | "int" | "int4" => id.parse::<i32>().is_ok(),
        "bigint" | "int8" => id.parse::<i64>().is_ok(),
        _ => !id.contains('\0'),
    }
}

fn is_bad_id(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("22P02"))
}

#[async_trait]
impl Store for PgStore {
    async fn call_tx(&self) -> Result<Box<dyn CallTx>, StoreError> {
        Ok(Box::new(PgCallTx {
            tx: self.pool.begin().await.doing("starting a transaction")?,
            id_cast: self.id_param(1),
            id_type: self.id_type.read().expect("id_type lock").clone(),
        }))
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.doing("starting a transaction")?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .doing("taking the migration lock")?;
        sqlx::raw_sql(
            "CREATE SCHEMA IF NOT EXISTS alertcall; \
             CREATE TABLE IF NOT EXISTS alertcall.schema_migrations ( \
               version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .doing("creating schema alertcall")?;
        let applied: Vec<i32> =
            sqlx::query_scalar("SELECT version FROM alertcall.schema_migrations")
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
            sqlx::query("INSERT INTO alertcall.schema_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .doing("recording a migration")?;
            tracing::info!(version, "applied Postgres migration");
        }
        tx.commit().await.doing("committing migrations")?;
        self.detect_id_type().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .doing("pinging Postgres")?;
        Ok(())
    }

    async fn intake(
        &self,
        only: Option<&str>,
        not_before: DateTime<Utc>,
        lease: &Lease,
    ) -> Result<Vec<Page>, StoreError> {
        let only_clause = if only.is_some() {
            format!("AND a.id = {}", self.id_param(5))
        } else {
            String::new()
        };
        let sql = format!(
            "WITH candidates AS ( \
               SELECT a.id::text AS alert_id, (a.triggered_at < $2 AND isfinite(a.triggered_at)) AS stale FROM alerts a \
               WHERE a.severity = '{CRITICAL}' AND a.status = 'active' {only_clause} \
                 AND NOT EXISTS (SELECT 1 FROM alertcall.pages p WHERE p.alert_id = a.id::text) \
               ORDER BY a.triggered_at LIMIT 1000) \
             INSERT INTO alertcall.pages (alert_id, state, due_at, lease_owner, created_at, updated_at) \
             SELECT alert_id, CASE WHEN stale THEN 'stale' ELSE 'due' END, \
                    CASE WHEN stale THEN NULL ELSE $4 END, \
                    CASE WHEN stale THEN NULL ELSE $3 END, $1, $1 \
             FROM candidates ON CONFLICT (alert_id) DO NOTHING RETURNING {PAGE_COLUMNS}"
        );
        let rows = sqlx::query_as::<_, PageRow>(AssertSqlSafe(sql))
            .bind(lease.now)
            .bind(not_before)
            .bind(&lease.owner)
            .bind(lease.until)
            .bind(only.unwrap_or_default())
            .fetch_all(&self.pool)
            .await;
        match rows {
            Ok(rows) => pages_from_rows(rows),
            Err(e) if is_bad_id(&e) => Ok(Vec::new()),
            Err(e) => Err(e).doing("taking in new critical alerts"),
        }
    }

    async fn wake_closed(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE alertcall.pages p SET due_at = $1 \
             WHERE p.state IN ('due', 'waiting', 'exhausted') AND p.due_at > $1 \
               AND EXISTS (SELECT 1 FROM alerts a WHERE a.id = (p.alert_id)::{} AND a.status <> 'active')",
            self.id_type.read().expect("id_type lock")
        )))
        .bind(now)
        .execute(&self.pool)
        .await
        .doing("waking pages of closed alerts")?;
        Ok(done.rows_affected())
    }

    async fn claim_due(&self, lease: &Lease, limit: i64) -> Result<Vec<Page>, StoreError> {
        let rows = sqlx::query_as::<_, PageRow>(AssertSqlSafe(format!(
            "UPDATE alertcall.pages SET lease_owner = $1, due_at = $2, updated_at = $3 \
             WHERE alert_id IN ( \
               SELECT alert_id FROM alertcall.pages WHERE due_at <= $3 \
               ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING {PAGE_COLUMNS}"
        )))
        .bind(&lease.owner)
        .bind(lease.until)
        .bind(lease.now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .doing("claiming due pages")?;
        pages_from_rows(rows)
    }

    async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        sqlx::query_scalar("SELECT min(due_at) FROM alertcall.pages WHERE due_at IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .doing("finding the next due page")
    }

    async fn renew_lease(&self, alert_id: &str, lease: &Lease) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE alertcall.pages SET due_at = $3 WHERE alert_id = $1 AND lease_owner = $2 \
             AND state IN ('due', 'waiting')",
        )
        .bind(alert_id)
        .bind(&lease.owner)
        .bind(lease.until)
        .execute(&self.pool)
        .await
        .doing("renewing a lease")?;
        Ok(done.rows_affected() == 1)
    }

    async fn feed(&self, _poll: Duration) -> Result<Box<dyn AlertFeed>, StoreError> {
        Ok(Box::new(PgFeed {
            pool: self.pool.clone(),
            listener: None,
        }))
    }

    async fn owned_page(&self, alert_id: &str, owner: &str) -> Result<Option<Page>, StoreError> {
        let row: Option<PageRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {PAGE_COLUMNS} FROM alertcall.pages WHERE alert_id = $1 AND lease_owner = $2"
        )))
        .bind(alert_id)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .doing("reading a claimed page")?;
        row.map(Page::try_from).transpose()
    }

    async fn hl7_links(&self) -> Result<Vec<Hl7Link>, StoreError> {
        sqlx::query_as("SELECT source, state, last_heard_at, alert_id FROM alertcall.hl7_links")
            .fetch_all(&self.pool)
            .await
            .doing("reading the HL7 links")
    }

    async fn page_state(&self, alert_id: &str) -> Result<Option<PageState>, StoreError> {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM alertcall.pages WHERE alert_id = $1")
                .bind(alert_id)
                .fetch_optional(&self.pool)
                .await
                .doing("reading a page")?;
        state.as_deref().map(PageState::parse).transpose()
    }

    async fn load_alert(&self, id: &str) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query_as::<_, AlertRow>(AssertSqlSafe(format!(
            "{ALERT_SELECT} WHERE a.id = {}",
            self.id_param(1)
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await;
        match row {
            Ok(row) => Ok(row.map(Alert::from)),
            Err(e) if is_bad_id(&e) => Ok(None),
            Err(e) => Err(e).doing("loading an alert"),
        }
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
            "{ALERT_SELECT} WHERE ($1::text IS NULL OR a.status = $1) \
               AND ($2::text IS NULL OR a.severity = $2) \
               AND ($3::timestamptz IS NULL OR {ALERT_TIME} >= $3) \
               AND ($4::timestamptz IS NULL OR {ALERT_TIME} < $4) \
               AND ($6::text IS NULL OR a.id = {}) \
             ORDER BY {ALERT_TIME} DESC LIMIT $5",
            self.id_param(6)
        )))
        .bind(&filter.status)
        .bind(&filter.severity)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.limit)
        .bind(&filter.id)
        .fetch_all(&self.pool)
        .await;
        match rows {
            Ok(rows) => Ok(views_from_rows(rows)),
            // An id that cannot be one of this table's ids matches nothing.
            Err(e) if is_bad_id(&e) => Ok(Vec::new()),
            Err(e) => Err(e).doing("listing alerts"),
        }
    }

    async fn resolve_alert(&self, alert_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE alerts SET status = 'resolved' \
             WHERE id = {} AND status IN ('active', 'acknowledged')",
            self.id_param(1)
        )))
        .bind(alert_id)
        .execute(&self.pool)
        .await;
        match done {
            Ok(r) => Ok(r.rows_affected() == 1),
            Err(e) if is_bad_id(&e) => Ok(false),
            Err(e) => Err(e).doing("resolving the alert"),
        }
    }

    async fn create_call(&self, call: &NewCall) -> Result<CallRecord, StoreError> {
        // The page's policy is recorded in the same statement (one round trip).
        let row: CallRow = sqlx::query_as(AssertSqlSafe(format!(
            "WITH unit AS (UPDATE alertcall.pages SET policy = $10 WHERE alert_id = $2 AND policy IS NULL) \
             INSERT INTO alertcall.calls (id, alert_id, step, round, person, provider, to_number, status, message, created_at) \
             VALUES ($1, $2, $3, $8, $9, $4, $5, 'pending', $6, $7) RETURNING {CALL_COLUMNS}"
        )))
        .bind(call.id.to_string())
        .bind(&call.alert_id)
        .bind(call.step)
        .bind(&call.provider)
        .bind(&call.to_number)
        .bind(&call.message)
        .bind(call.at)
        .bind(call.round)
        .bind(&call.person)
        .bind(&call.policy)
        .fetch_one(&self.pool)
        .await
        .doing("recording a new call")?;
        row.try_into()
    }

    async fn find_call(
        &self,
        provider_call_id: &str,
        call_id: Option<Uuid>,
    ) -> Result<Option<CallRecord>, StoreError> {
        let row: Option<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {CALL_COLUMNS} FROM alertcall.calls WHERE provider_call_id = $1"
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
            "UPDATE alertcall.calls SET provider_call_id = $2 \
             WHERE id = $1 AND (provider_call_id IS NULL OR provider_call_id = $2) RETURNING {CALL_COLUMNS}"
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
            "UPDATE alertcall.calls SET prompts = prompts + 1 WHERE id = $1 RETURNING prompts",
        )
        .bind(call_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("counting a re-prompt")?;
        Ok(after.map_or(0, |n| n - 1))
    }

    async fn create_sms(&self, sms: &NewSms) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall.sms (id, alert_id, person, to_number, code, provider, status, body, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8)",
        )
        .bind(sms.id.to_string())
        .bind(&sms.alert_id)
        .bind(&sms.person)
        .bind(&sms.to_number)
        .bind(&sms.code)
        .bind(&sms.provider)
        .bind(&sms.body)
        .bind(sms.at)
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
            "UPDATE alertcall.sms SET provider_message_id = $2, status = $3, updated_at = $4 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(provider_message_id)
        .bind(status)
        .bind(at)
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
            "UPDATE alertcall.sms SET status = $2, updated_at = $3 WHERE provider_message_id = $1 \
             RETURNING id, alert_id, person, to_number, code, provider_message_id, status",
        )
        .bind(provider_message_id)
        .bind(status)
        .bind(at)
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
            "SELECT id, alert_id, person, to_number, code, provider_message_id, status FROM alertcall.sms \
             WHERE to_number = $1 AND created_at >= $3 AND ($2::text IS NULL OR code = $2) \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(number)
        .bind(code)
        .bind(since)
        .fetch_optional(&self.pool)
        .await
        .doing("finding the message a reply answers")
    }

    async fn call_history(&self, filter: &CallFilter) -> Result<Vec<CallRecord>, StoreError> {
        let rows: Vec<CallRow> = sqlx::query_as(AssertSqlSafe(format!(
            concat!("SELECT {CALL_COLUMNS} FROM alertcall.calls c WHERE ($1::text IS NULL OR c.alert_id = $1) \
               AND ($2::timestamptz IS NULL OR c.created_at >= $2) \
               AND ($3::timestamptz IS NULL OR c.created_at < $3) \
               AND ($4::text IS NULL OR c.person = $4) \
               AND ($5::text IS NULL OR c.status = $5) \
               AND ($6::text IS NULL OR c.alert_id IN \
                    (SELECT alert_id FROM alertcall.pages WHERE policy = $6)) \
               AND (NOT $8 OR c.status IN ", live_statuses!(), ") \
             ORDER BY c.created_at DESC LIMIT $7"),
            CALL_COLUMNS = CALL_COLUMNS
        )))
        .bind(&filter.alert_id)
        .bind(filter.since)
        .bind(filter.until)
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
            "SELECT id, alert_id, call_id, source, kind, detail, created_at \
             FROM alertcall.call_events WHERE alert_id = $1 ORDER BY id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await
        .doing("listing audit events")?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    async fn last_event_id(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM alertcall.call_events")
            .fetch_one(&self.pool)
            .await
            .doing("reading the newest audit entry")
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO alertcall.settings (name, value) VALUES ($1, $2) \
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
        sqlx::query_scalar("SELECT value FROM alertcall.settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .doing("reading a setting")
    }

    async fn create_session(&self, token_hash: &str, session: &Session) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alertcall.sessions (token_hash, username, role, credential, csrf, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(&session.user)
        .bind(&session.role)
        .bind(&session.credential)
        .bind(&session.csrf)
        .bind(session.expires_at)
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
            "SELECT username, role, credential, csrf, expires_at FROM alertcall.sessions \
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
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
        sqlx::query("DELETE FROM alertcall.sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
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
            concat!("SELECT DISTINCT c.alert_id FROM alertcall.calls c \
             WHERE c.created_at >= $2 \
               AND c.status IN ", live_statuses!(), " \
               AND EXISTS (SELECT 1 FROM alertcall.call_events e WHERE e.alert_id = c.alert_id AND e.kind = $1)"),
        )
        .bind(kind)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .doing("listing alerts with live calls and an audit event")
    }

    async fn create_test_call(&self, call: &NewTestCall) -> Result<TestCallRecord, StoreError> {
        let row: TestCallRow = sqlx::query_as(AssertSqlSafe(format!(
            "INSERT INTO alertcall.test_calls (id, person, to_number, provider, state, state_rank, requested_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING {TEST_CALL_COLUMNS}"
        )))
        .bind(call.id.to_string())
        .bind(&call.person)
        .bind(&call.to_number)
        .bind(&call.provider)
        .bind(TestCallState::Placing.as_str())
        .bind(TestCallState::Placing.rank())
        .bind(&call.requested_by)
        .bind(call.at)
        .fetch_one(&self.pool)
        .await
        .doing("recording a test call")?;
        row.try_into()
    }

    async fn test_call(&self, id: Uuid) -> Result<Option<TestCallRecord>, StoreError> {
        let row: Option<TestCallRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {TEST_CALL_COLUMNS} FROM alertcall.test_calls WHERE id = $1"
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
                "UPDATE alertcall.test_calls SET provider_call_id = $2 \
                 WHERE id = $1 AND provider_call_id IS NULL",
            )
            .bind(id.to_string())
            .bind(provider_call_id)
            .execute(&self.pool)
            .await
            .doing("recording a test call's provider id")?;
        }
        let moved = sqlx::query(
            "UPDATE alertcall.test_calls SET state = $2, state_rank = $3, \
             reason = COALESCE($4, reason), updated_at = $5 \
             WHERE id = $1 AND state_rank < $3",
        )
        .bind(id.to_string())
        .bind(state.as_str())
        .bind(state.rank())
        .bind(reason)
        .bind(at)
        .execute(&self.pool)
        .await
        .doing("moving a test call on")?;
        Ok(moved.rows_affected() > 0)
    }

    async fn bump_test_call_prompts(&self, id: Uuid) -> Result<i32, StoreError> {
        let after: Option<i32> = sqlx::query_scalar(
            "UPDATE alertcall.test_calls SET prompts = prompts + 1 WHERE id = $1 RETURNING prompts",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .doing("counting a test call's re-prompt")?;
        Ok(after.map_or(0, |n| n - 1))
    }
}

/// The alert's time for ordering and filtering: `triggered_at`, or when alertcall first saw the
/// alert if it is NULL (as `timestamp::read` falls back for the row itself).
const ALERT_TIME: &str = "coalesce(a.triggered_at, pg.created_at)";

const ALERT_SELECT: &str = "SELECT a.id::text AS id, a.patient_id::text AS patient_id, \
     p.name::text AS patient_name, a.room_id::text AS room_id, r.room_name::text AS room_name, \
     a.severity::text AS severity, a.status::text AS status, a.alert_type::text AS alert_type, \
     a.title::text AS title, a.message::text AS message, \
     a.triggered_at::text AS triggered_at, a.acknowledged_at::text AS acknowledged_at, \
     a.acknowledged_by::text AS acknowledged_by, \
     a.metadata->'call'->>'call_status' AS call_status, \
     (a.metadata->'call' IS NOT NULL) AS has_call, pg.state AS page_state, \
     pg.step AS page_step, pg.round AS page_round, pg.policy AS page_policy, \
     pg.due_at AS page_due_at, pg.created_at AS first_seen, pg.attempts AS page_attempts, \
     pg.last_error AS page_last_error, \
     a.metadata->'hl7'->>'sending_application' AS hl7_application, \
     a.metadata->'hl7'->>'device' AS hl7_device \
     FROM alerts a \
     LEFT JOIN patients p ON p.patient_id::text = a.patient_id::text \
     LEFT JOIN rooms r ON r.room_id::text = a.room_id::text \
     LEFT JOIN alertcall.pages pg ON pg.alert_id = a.id::text";

/// LISTEN on the notify trigger's channel. Notifications sent while disconnected are lost,
/// so every (re)connection starts with a sweep.
struct PgFeed {
    pool: PgPool,
    listener: Option<sqlx::postgres::PgListener>,
}

#[async_trait]
impl AlertFeed for PgFeed {
    async fn next(&mut self) -> Result<FeedEvent, StoreError> {
        let Some(listener) = self.listener.as_mut() else {
            let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
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
