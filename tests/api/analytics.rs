//! Analytics aggregated by the database over a history written as the hospital's app and
//! alertcall write it: exact counts, buckets, nearest-rank percentiles and answer rates on
//! both databases, for a past year and for all time. Migrations that build indexes on the
//! hospital's `alerts` without holding its writes (Postgres).

use std::time::Duration;

use alertcall::store::{SqlStore, Store};
use serde_json::Value;
use sqlx::Connection;

use crate::both_backends;
use crate::db::{Backend, TestDb};
use crate::helpers::{TestApp, wait_until};

const TOKEN: &str = "t0ken";

/// `2025-03-01T10:00:00Z` plus `seconds`, in the form both databases read.
fn march(seconds: u32) -> String {
    format!("2025-03-01T10:{:02}:{:02}.000Z", seconds / 60, seconds % 60)
}

/// An alert as the hospital's app writes it; `triggered` and `acknowledged` are SQL.
async fn alert(
    db: &TestDb,
    (severity, status): (&str, &str),
    triggered: &str,
    acknowledged_at: &str,
    metadata: &str,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    db.exec(&format!(
        "INSERT INTO alerts (id, patient_id, room_id, severity, status, message, triggered_at, \
           acknowledged_at, metadata) \
         VALUES ('{id}', 'P001', 'R2', '{severity}', '{status}', 'history', {triggered}, \
                 {acknowledged_at}, '{metadata}')"
    ))
    .await;
    id
}

async fn page(
    db: &TestDb,
    alert: &str,
    state: &str,
    step: i32,
    round: i32,
    policy: &str,
    at: &str,
) {
    db.exec(&format!(
        "INSERT INTO {} (alert_id, state, step, round, policy, created_at, updated_at) \
         VALUES ('{alert}', '{state}', {step}, {round}, '{policy}', '{at}', '{at}')",
        db.table("pages")
    ))
    .await;
}

/// A call to `nurse` created at `at`; `placed` gives it a provider id, `answered_after` an
/// answer that many seconds after it was placed.
async fn call(db: &TestDb, alert: &str, status: &str, placed: bool, answered_after: Option<u32>) {
    let id = uuid::Uuid::new_v4();
    let provider_id = if placed {
        format!("'{id}'")
    } else {
        "NULL".into()
    };
    let answered = answered_after.map_or("NULL".into(), |s| format!("'{}'", march(60 + s)));
    db.exec(&format!(
        "INSERT INTO {} (id, alert_id, person, provider, provider_call_id, to_number, status, \
           message, created_at, initiated_at, answered_at) \
         VALUES ('{id}', '{alert}', 'nurse', 'vonage', {provider_id}, '13854019951', '{status}', \
                 'history', '{at}', '{at}', {answered})",
        db.table("calls"),
        at = march(60),
    ))
    .await;
}

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

pub async fn analytics_are_aggregated_by_the_database(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_API_TOKEN", TOKEN)]).await;
    let q = |s: &str| format!("'{s}'");
    // Ten acknowledged in 1 to 10 s (five after escalating), in the ICU's 10:00 hour; the
    // first with the seed's `metadata.call` answered.
    for k in 1..=10u32 {
        let metadata = if k == 1 {
            r#"{"call": {"call_status": "answered"}}"#
        } else {
            "{}"
        };
        let id = alert(
            &db,
            ("critical", "acknowledged"),
            &q(&march(0)),
            &q(&march(k)),
            metadata,
        )
        .await;
        page(
            &db,
            &id,
            "acknowledged",
            i32::from(k > 5),
            0,
            "icu",
            &march(0),
        )
        .await;
        if k == 1 {
            for (status, answered) in [("answered", Some(2)), ("answered", Some(6))] {
                call(&db, &id, status, true, answered).await;
            }
            call(&db, &id, "answered", true, Some(4)).await;
            // Hung up because someone else acknowledged: not held against the nurse.
            call(&db, &id, "cancelled", true, None).await;
            call(&db, &id, "cancelled", true, None).await;
            call(&db, &id, "unanswered", true, None).await;
            // Never accepted by the provider: not a call made.
            call(&db, &id, "failed", false, None).await;
        }
    }
    // A ward alert nobody acknowledged, in June; a high one the seed counts as called; one
    // from 2024, outside the range.
    let ward = alert(
        &db,
        ("critical", "resolved"),
        "'2025-06-01T00:00:00.000Z'",
        "NULL",
        "{}",
    )
    .await;
    page(
        &db,
        &ward,
        "exhausted",
        0,
        1,
        "ward",
        "2025-06-01T00:00:00.000Z",
    )
    .await;
    alert(
        &db,
        ("high", "active"),
        &q("2025-03-01T11:30:00.000Z"),
        "NULL",
        r#"{"call": {"call_status": "ringing"}}"#,
    )
    .await;
    alert(
        &db,
        ("high", "active"),
        "'2024-05-01T00:00:00.000Z'",
        "NULL",
        "{}",
    )
    .await;
    // SQLite takes any text: an alert whose time cannot be read counts at the time alertcall
    // first saw it.
    let unreadable = db.backend == Backend::Sqlite;
    if unreadable {
        let id = alert(&db, ("critical", "resolved"), "'not a time'", "NULL", "{}").await;
        page(
            &db,
            &id,
            "cancelled",
            0,
            0,
            "ward",
            "2025-06-01T00:30:00.000Z",
        )
        .await;
    }

    let year = app
        .get_json(
            "/api/v1/analytics?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            TOKEN,
        )
        .await;
    let extra = u64::from(unreadable);
    for (path, expected) in [
        ("alerts", 12 + extra),
        ("alerts_paged", 11 + extra),
        ("acknowledged", 10),
        ("escalated", 6),
        ("exhausted", 1),
        ("calls", 6),
        ("calls_answered", 3),
        ("monitoring.total_calls", 2),
        ("monitoring.answered", 1),
        ("monitoring.acknowledged", 1),
        // Nearest rank: the 5th and 9th of ten.
        ("time_to_acknowledge.count", 10),
        ("per_unit.0.alerts", 10),
        ("per_unit.0.escalated", 5),
        ("per_nurse.0.calls", 6),
        ("per_nurse.0.answered", 3),
        ("per_nurse.0.time_to_answer.count", 3),
    ] {
        assert_eq!(
            field(&year, path),
            &Value::from(expected),
            "{path} in {year:#}"
        );
    }
    for (path, seconds) in [
        ("time_to_acknowledge.p50_seconds", 5.0),
        ("time_to_acknowledge.p90_seconds", 9.0),
        ("time_to_acknowledge.max_seconds", 10.0),
        ("per_unit.0.time_to_acknowledge.p50_seconds", 5.0),
        ("per_nurse.0.time_to_answer.p50_seconds", 4.0),
        ("per_nurse.0.time_to_answer.p90_seconds", 6.0),
        ("per_nurse.0.time_to_answer.max_seconds", 6.0),
    ] {
        let got = field(&year, path).as_f64().unwrap_or(f64::NAN);
        assert!(
            (got - seconds).abs() < 0.001,
            "{path} is {got}, not {seconds}"
        );
    }
    assert_eq!(year["per_unit"][0]["unit"], "icu");
    assert_eq!(
        field(&year, "per_nurse.0.answer_rate").as_f64(),
        Some(0.75),
        "3 of the 4 calls that were not cancelled"
    );
    let ward_unit = &year["per_unit"][1];
    assert_eq!(
        (
            &ward_unit["unit"],
            &ward_unit["alerts"],
            &ward_unit["exhausted"],
            &ward_unit["escalated"]
        ),
        (
            &Value::from("ward"),
            &Value::from(1 + extra),
            &Value::from(1),
            &Value::from(1)
        )
    );
    let hours: Vec<(String, String, u64)> = year["per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["hour"].as_str().unwrap()[..13].to_string(),
                h["severity"].as_str().unwrap().to_string(),
                h["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected = vec![
        ("2025-03-01T10".to_string(), "critical".to_string(), 10),
        ("2025-03-01T11".into(), "high".into(), 1),
        ("2025-06-01T00".into(), "critical".into(), 1 + extra),
    ];
    expected.sort();
    assert_eq!(hours, expected);

    // All time takes in 2024's alert too; a range with nothing in it is all zeros.
    let all = app
        .get_json("/api/v1/analytics?from=1970-01-01T00:00:00Z", TOKEN)
        .await;
    assert_eq!(all["alerts"], 13 + extra);
    let empty = app
        .get_json(
            "/api/v1/analytics?from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            TOKEN,
        )
        .await;
    assert_eq!(
        (&empty["alerts"], &empty["calls"]),
        (&Value::from(0), &Value::from(0))
    );
    assert_eq!(empty["time_to_acknowledge"]["p50_seconds"], Value::Null);
    assert_eq!(empty["per_nurse"], serde_json::json!([]));
}
both_backends!(analytics::analytics_are_aggregated_by_the_database);

/// A fresh database with every migration applied, and its store.
async fn migrated(backend: Backend) -> Option<(TestDb, SqlStore)> {
    let db = TestDb::new(backend).await?;
    let store = SqlStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    Some((db, store))
}

/// How many of the indexes `names` (quoted, comma-separated) exist and are valid.
async fn valid_indexes(db: &TestDb, names: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname IN ({names}) AND i.indisvalid"
    ))
    .await
}

/// Migration 10 builds its indexes on the hospital's live `alerts` CONCURRENTLY: while it
/// waits for a transaction that is writing alerts, other inserts still go through (a plain
/// CREATE INDEX would queue them behind it), the table is not rewritten, and the index
/// comes out valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_indexes_alerts_without_holding_the_hospitals_writes() {
    let Some((db, store)) = migrated(Backend::Postgres).await else {
        return;
    };
    // As before migration 10.
    db.exec(
        "DROP INDEX alertcall_alerts_triggered; DROP INDEX alertcall_active; \
         DELETE FROM alertcall.schema_migrations WHERE version = 10",
    )
    .await;
    let file = db
        .scalar("SELECT relfilenode::text FROM pg_class WHERE relname = 'alerts'")
        .await;

    let mut writer = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql("BEGIN; INSERT INTO alerts (severity, message) VALUES ('high', 'open')")
        .execute(&mut writer)
        .await
        .unwrap();
    let migrating = tokio::spawn(async move { store.migrate().await });
    wait_until(
        "the index build waits for the open writer",
        Duration::from_secs(20),
        || async {
            db.count(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND query LIKE '%CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'",
            )
            .await
                == 1
        },
    )
    .await;
    // The hospital's next insert is not held behind the build.
    let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(
        "SET lock_timeout = '3s'; INSERT INTO alerts (severity, message) VALUES ('high', 'meanwhile')",
    )
    .execute(&mut other)
    .await
    .expect("an insert during the index build");
    sqlx::raw_sql("COMMIT").execute(&mut writer).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), migrating)
        .await
        .expect("the migration finishes once the writer commits")
        .unwrap()
        .unwrap();

    assert_eq!(
        db.scalar("SELECT relfilenode::text FROM pg_class WHERE relname = 'alerts'")
            .await,
        file,
        "alerts was not rewritten"
    );
    assert_eq!(
        valid_indexes(&db, "'alertcall_alerts_triggered', 'alertcall_active'").await,
        2
    );
    assert_eq!(
        db.count("SELECT count(*) FROM alertcall.schema_migrations WHERE version = 10")
            .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM alerts").await, 2);
}

/// A build interrupted halfway leaves an invalid index; the next start drops it and builds it
/// again, instead of `IF NOT EXISTS` keeping the invalid one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuilds_an_index_an_interrupted_build_left_invalid() {
    let Some((db, store)) = migrated(Backend::Postgres).await else {
        return;
    };
    db.exec(
        "DELETE FROM alertcall.schema_migrations WHERE version = 10; \
         UPDATE pg_index SET indisvalid = false \
         WHERE indexrelid = 'alertcall_alerts_triggered'::regclass",
    )
    .await;
    store.migrate().await.unwrap();
    assert_eq!(valid_indexes(&db, "'alertcall_alerts_triggered'").await, 1);
}

/// SQLite finds the analytics' range through the index on the time as the queries read it
/// (an expression index is used only for the very same expression).
#[tokio::test]
async fn sqlite_finds_the_analytics_range_through_an_index() {
    let (db, _store) = migrated(Backend::Sqlite).await.expect("sqlite");
    let plan = db
        .rows(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM alerts a \
             WHERE julianday(a.triggered_at) >= julianday('2025-01-01') \
               AND julianday(a.triggered_at) < julianday('2025-01-02')",
        )
        .await;
    let plan = format!("{plan:?}");
    assert!(plan.contains("alertcall_alerts_time"), "{plan}");
}
