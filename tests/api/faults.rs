//! Faults in what the hospital writes and in the disk under us: an alert whose time cannot be
//! read is still called and listed; a full disk heals without a restart; a database that
//! cannot be written for good, and a SIGBUS, end `serve` with one line and a distinct status.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use alertcall::store::{SqlStore, Store, StoreError};

use crate::both_backends;
use crate::core::{WAIT, wait_for_calls};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{FakeVonage, token};
use crate::helpers::{TestApp, wait_until};
use crate::process::Serve;

/// The API token of these tests' servers (ALERTCALL_API_TOKEN).
pub const TOKEN: &str = "faults-t0ken";
pub const API_TOKEN: (&str, &str) = ("ALERTCALL_API_TOKEN", TOKEN);

/// The hospital's own `alerts` table, created before alertcall starts, with a time column that
/// takes anything (SQLite) or NULL (Postgres).
fn hospital_table(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE alerts (id TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(16)))), \
             patient_id TEXT, room_id TEXT, severity TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', \
             alert_type TEXT, title TEXT, message TEXT, triggered_at, acknowledged_at, \
             acknowledged_by TEXT, metadata TEXT DEFAULT '{}')"
        }
        Backend::Postgres => {
            "CREATE TABLE alerts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), patient_id text, \
             room_id text, severity text NOT NULL, status text NOT NULL DEFAULT 'active', \
             alert_type text, title text, message text, triggered_at timestamptz, \
             acknowledged_at timestamptz, acknowledged_by text, metadata jsonb DEFAULT '{}')"
        }
    }
}

pub async fn alerts_with_unreadable_times_are_called_and_listed(db: TestDb) {
    db.exec(hospital_table(db.backend)).await;
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[API_TOKEN]).await;
    let now = chrono::Utc::now();
    // (triggered_at, metadata) as SQL literals.
    let rows: Vec<(String, &str)> = match db.backend {
        Backend::Sqlite => vec![
            (now.timestamp().to_string(), "'{}'"),
            (format!("'{}'", now.timestamp()), "'{}'"),
            (now.timestamp_millis().to_string(), "'[1, 2]'"),
            (format!("'{}'", now.timestamp_millis()), "'{not json'"),
            (format!("'{}'", now.format("%m/%d/%Y %H:%M")), "'\"text\"'"),
            ("''".into(), "NULL"),
            ("NULL".into(), "'{}'"),
            ("'garbage\nwith a newline'".into(), "'{}'"),
            ("x'ff00'".into(), "'{}'"),
            ("1.5e400".into(), "'{}'"),
        ],
        Backend::Postgres => vec![
            ("NULL".into(), "'[1, 2]'"),
            ("'infinity'".into(), "'\"text\"'"),
            ("'-infinity'".into(), "'null'"),
        ],
    };
    for (n, (triggered_at, metadata)) in rows.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO alerts (patient_id, severity, message, triggered_at, metadata) \
             VALUES ('P{n}', 'critical', 'Unreadable-{n}', {triggered_at}, {metadata})"
        ))
        .await;
    }
    // An acknowledgement time the hospital's own app wrote in a form nobody reads.
    if db.backend == Backend::Sqlite {
        db.exec(
            "INSERT INTO alerts (patient_id, severity, status, message, triggered_at, acknowledged_at) \
             VALUES ('P99', 'high', 'acknowledged', 'Handled', 'soon', 'yesterday')",
        )
        .await;
    }

    let calls = wait_for_calls(&db, &fake, rows.len()).await;
    let mut called: Vec<u64> = calls
        .iter()
        .filter_map(|c| token(c, "Unreadable-"))
        .collect();
    called.sort_unstable();
    assert_eq!(called, (0..rows.len() as u64).collect::<Vec<_>>());

    let list = app.get_json("/api/v1/alerts?status=all", TOKEN).await;
    let list = list.as_array().unwrap();
    assert_eq!(
        list.len(),
        rows.len() + usize::from(db.backend == Backend::Sqlite)
    );
    let again = app.get_json("/api/v1/alerts?status=all", TOKEN).await;
    for alert in list {
        let message = alert["message"].as_str().unwrap();
        let triggered: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(alert["triggered_at"].clone()).unwrap();
        // Read, or when alertcall first saw it: never far from now.
        assert!(
            (triggered - now).num_seconds().abs() < 120,
            "{message}: {triggered}"
        );
        if message == "Handled" {
            // Not critical, so never taken in: no first-seen time is recorded.
            continue;
        }
        let same = again
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == alert["id"])
            .unwrap();
        assert_eq!(
            same["triggered_at"], alert["triggered_at"],
            "{message}: stable"
        );
    }
    // The epoch forms are read exactly (to the second).
    if db.backend == Backend::Sqlite {
        for n in 0..4 {
            let alert = list
                .iter()
                .find(|a| a["message"] == format!("Unreadable-{n}"))
                .unwrap();
            let triggered: chrono::DateTime<chrono::Utc> =
                serde_json::from_value(alert["triggered_at"].clone()).unwrap();
            assert_eq!(triggered.timestamp(), now.timestamp(), "form {n}");
        }
    }
    app.stop().await;
}
both_backends!(faults::alerts_with_unreadable_times_are_called_and_listed);

/// A small tmpfs for the database, filled and emptied at will. `None` where mounting is not
/// allowed (not root); the caller skips with the reason printed.
pub struct SmallDisk {
    pub dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    pub fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = std::env::temp_dir().join(format!("alertcall-disk-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            assert!(
                std::env::var_os("ALERTCALL_REQUIRE_TMPFS").is_none(),
                "cannot mount a tmpfs at {} (needs root), and ALERTCALL_REQUIRE_TMPFS is set",
                dir.display()
            );
            eprintln!(
                "SKIPPED: cannot mount a tmpfs at {} (needs root; ALERTCALL_REQUIRE_TMPFS=1 \
                 makes this a failure)",
                dir.display()
            );
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        let filler = dir.join("filler");
        Some(SmallDisk { dir, filler })
    }

    /// Writes until the disk is full.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.filler).expect("create filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        // Whatever is left over (less than a block), too.
        while file.write_all(&[0u8; 512]).is_ok() {}
    }

    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove filler");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l"])
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// POSTs an acknowledgement through the API.
pub async fn acknowledge(app: &TestApp, alert: &str) -> reqwest::StatusCode {
    app.http
        .post(app.url(&format!("/api/v1/alerts/{alert}/acknowledge")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST acknowledge")
        .status()
}

/// Waits until `/readyz` answers `status` with `database_writes` = `writes`.
pub async fn wait_ready(app: &TestApp, status: u16, writes: &str) {
    wait_until(
        &format!("/readyz answers {status} with database_writes {writes}"),
        WAIT,
        || async {
            let r = app.get("/readyz").await;
            let code = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            code == status && body["database_writes"] == writes
        },
    )
    .await;
}

/// How long `serve` may take to notice an unwritable database and stop (it sweeps every
/// 200 ms here, and gives requests in flight 5 s).
const STOPS_WITHIN: Duration = Duration::from_secs(30);

/// The line `serve` logs when it stops for an unwritable database.
const UNWRITABLE_LINE: &str = "the database cannot be written";

/// `serve` as a child process, sweeping often, what it logs (at `error`) kept in a file.
struct LoggedServe {
    serve: Serve,
    log: PathBuf,
    _dir: tempfile::TempDir,
    _fake: FakeVonage,
}

impl LoggedServe {
    async fn start(db: &TestDb) -> LoggedServe {
        let fake = FakeVonage::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serve.log");
        let serve =
            Serve::start_logging(db, &fake, &[("ALERTCALL_SWEEP_INTERVAL", "200ms")], &log).await;
        LoggedServe {
            serve,
            log,
            _dir: dir,
            _fake: fake,
        }
    }

    /// Waits until the process ends on its own; its exit status and what it logged.
    async fn exited(&mut self) -> (std::process::ExitStatus, String) {
        let status = self.serve.exited(STOPS_WITHIN).await;
        (status, std::fs::read_to_string(&self.log).unwrap())
    }

    /// Waits for `serve` to stop for an unwritable database: exit status 74 and exactly one
    /// error line saying so, which holds each of `names`. Returns that line.
    async fn assert_stops_unwritable(&mut self, names: &[&str]) -> String {
        let (status, text) = self.exited().await;
        assert_eq!(status.code(), Some(74), "{status}; log:\n{text}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(UNWRITABLE_LINE))
            .collect();
        assert_eq!(lines.len(), 1, "one line says why:\n{text}");
        assert!(lines[0].contains("ERROR"), "{}", lines[0]);
        for name in names {
            assert!(lines[0].contains(name), "{name} missing from {}", lines[0]);
        }
        lines[0].to_string()
    }
}

/// The SQLite file moved away under a running `serve` (a restore by `mv`, a clean-up): in WAL
/// mode SQLite goes on writing to the old file, so alerts written at the path would never be
/// seen. The next sweep (or a new connection) stops `serve` with one error line and exit status 74, for the
/// supervisor to restart it on whatever file is at the path; nothing is created there
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_database_file_stops_serve_with_one_error_line() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut serve = LoggedServe::start(&db).await;
    let path = db.sqlite_file();
    std::fs::rename(&path, path.with_file_name("moved.db")).unwrap();
    // The sweep's check finds it moved, or a connection the pool opens meanwhile finds no
    // file at the path (SQLITE_CANTOPEN): either way one line names the path and the file.
    let line = serve
        .assert_stops_unwritable(&[&path.display().to_string(), "the database file"])
        .await;
    assert!(
        line.contains("moved") || line.contains("unable to open database file"),
        "{line}"
    );
    assert!(!path.exists(), "no new database at the path: {line}");
}

/// A Postgres database turned read-only (as a standby is after a failover): once the
/// connections are renewed, the first write stops `serve` with one error line and exit
/// status 74, so that the restarted process connects afresh (to the primary). A Postgres
/// outage does not (`torture::a_database_outage_delays_but_loses_nothing`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_postgres_stops_serve_with_one_error_line() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let mut serve = LoggedServe::start(&db).await;
    db.exec("DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$")
        .await;
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    let line = serve
        .assert_stops_unwritable(&["read-only", "primary"])
        .await;
    assert!(!line.contains("password"), "{line}");
}

/// SIGBUS (what a fault in SQLite's memory-mapped -shm file raises) ends the process with
/// one line on stderr and exit status 135, never silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_error_is_one_line_and_status_135() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let mut serve = LoggedServe::start(&db).await;
    serve.serve.signal("BUS");
    let (status, text) = serve.exited().await;
    assert_eq!(status.code(), Some(135), "{status}; log:\n{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("SIGBUS")).collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].starts_with("alertcall: FATAL: bus error"),
        "{text}"
    );
}

/// SIGTERM stops `serve` within a few seconds, with status 0, even while a dashboard holds
/// its event stream open (a stream that never ends by itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serve_while_an_event_stream_is_open() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let mut serve = Serve::start(&db, &fake, &[("ALERTCALL_API_TOKEN", TOKEN)]).await;
    let mut stream = reqwest::Client::new()
        .get(serve.url("/api/v1/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // The first `change` event: the stream is open and being served.
    assert!(stream.chunk().await.unwrap().is_some());
    serve.signal("TERM");
    let status = serve.exited(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
}

/// The store's errors say which faults are for good: real SQLite errors from a read-only
/// file and from a file that is not a database are; a query on a missing table is not.
#[tokio::test]
async fn sqlite_errors_that_are_for_good_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let url = |name: &str, mode: &str| {
        format!("sqlite://{}?mode={mode}", dir.path().join(name).display())
    };

    let store = SqlStore::connect(&url("a.db", "rwc")).await.unwrap();
    store.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url("a.db", "rw")).await.unwrap();
    let missing = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .await
        .map_err(|source| StoreError::Database {
            doing: "reading",
            source,
        })
        .unwrap_err();
    assert_eq!(missing.unwritable(), None, "{missing}");
    assert!(!missing.is_write_fault());

    let read_only = SqlStore::connect(&url("a.db", "ro")).await.unwrap();
    let refused = read_only
        .setting_or_insert("unwritable-test", "x")
        .await
        .unwrap_err();
    assert!(refused.unwritable().is_some(), "{refused}");
    assert!(refused.is_write_fault());

    std::fs::write(dir.path().join("garbage.db"), vec![0x5a; 8192]).unwrap();
    let Err(not_a_database) = SqlStore::connect(&url("garbage.db", "rw")).await else {
        panic!("a file of garbage opened as a database");
    };
    assert!(
        not_a_database
            .unwritable()
            .is_some_and(|remedy| remedy.contains("backup")),
        "{not_a_database}"
    );
}
