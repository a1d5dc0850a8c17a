//! Real databases for tests: a fresh Postgres database per test (found or started), or a
//! fresh SQLite file.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database for one test, plus a separate connection pool that plays the hospital app.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pool: Pool,
    _dir: Option<tempfile::TempDir>,
}

enum Pool {
    Pg(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// One cell of a query result, decoded loosely (tests compare text).
pub type Cell = Option<String>;

impl TestDb {
    /// A fresh database, or `None` when the backend is unavailable (Postgres only; the
    /// reason has been printed, and `ALERTCALL_REQUIRE_POSTGRES=1` turns it into a panic).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/alertcall.db?mode=rwc", dir.path().display());
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect(&url)
                    .await
                    .expect("open sqlite");
                Some(TestDb {
                    backend,
                    url,
                    pool: Pool::Sqlite(pool),
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("alertcall_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to the test Postgres");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let url = with_database(&admin, &name);
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect(&url)
                    .await
                    .expect("connect to the test database");
                Some(TestDb {
                    backend,
                    url,
                    pool: Pool::Pg(pool),
                    _dir: None,
                })
            }
        }
    }

    /// A fresh SQLite database at `path` (e.g. on a small tmpfs); the caller owns the directory.
    pub async fn sqlite_at(path: &std::path::Path) -> TestDb {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("open sqlite");
        TestDb {
            backend: Backend::Sqlite,
            url,
            pool: Pool::Sqlite(pool),
            _dir: None,
        }
    }

    /// The SQLite database's file.
    pub fn sqlite_file(&self) -> PathBuf {
        let path = self
            .url
            .strip_prefix("sqlite://")
            .expect("a SQLite database");
        PathBuf::from(path.split('?').next().unwrap())
    }

    /// The same database reached through another URL (e.g. a proxy); the pool stays direct.
    pub fn with_url(db: &TestDb, url: String) -> TestDb {
        TestDb {
            backend: db.backend,
            url,
            pool: match &db.pool {
                Pool::Pg(p) => Pool::Pg(p.clone()),
                Pool::Sqlite(p) => Pool::Sqlite(p.clone()),
            },
            _dir: None,
        }
    }

    /// Runs statements as the hospital app would (plain SQL, its own connection).
    pub async fn exec(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.pool {
            Pool::Pg(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
            Pool::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs a query and returns every row as text cells.
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Cell>> {
        let sql = sqlx::AssertSqlSafe(sql.to_string());
        match &self.pool {
            Pool::Pg(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|r| (0..r.columns().len()).map(|i| pg_cell(r, i)).collect())
                .collect(),
            Pool::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|r| (0..r.columns().len()).map(|i| sqlite_cell(r, i)).collect())
                .collect(),
        }
    }

    pub async fn row(&self, sql: &str) -> Vec<Cell> {
        let mut rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "expected one row from {sql}");
        rows.remove(0)
    }

    pub async fn scalar(&self, sql: &str) -> Cell {
        self.row(sql).await.remove(0)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql)
            .await
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{sql} is not a count"))
    }

    /// alertcall's table name on this backend (`alertcall.calls` or `alertcall_calls`).
    pub fn table(&self, name: &str) -> String {
        match self.backend {
            Backend::Postgres => format!("alertcall.{name}"),
            Backend::Sqlite => format!("alertcall_{name}"),
        }
    }

    /// The SQL expression for `hours` hours before now, in the form the `alerts` table holds.
    pub fn hours_ago(&self, hours: u32) -> String {
        match self.backend {
            Backend::Postgres => format!("now() - interval '{hours} hours'"),
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{hours} hours')"),
        }
    }

    /// The SQL to insert a critical alert and return its id, as the hospital app does.
    pub async fn insert_alert(
        &self,
        severity: &str,
        patient: &str,
        room: &str,
        message: &str,
    ) -> String {
        let sql = format!(
            "INSERT INTO alerts (patient_id, room_id, severity, alert_type, message) \
             VALUES ('{patient}', '{room}', '{severity}', 'seizure', '{message}') RETURNING CAST(id AS TEXT)"
        );
        self.scalar(&sql).await.expect("alert id")
    }

    /// The seed's patients and rooms.
    pub async fn seed_people(&self) {
        self.exec(
            "INSERT INTO patients (patient_id, name) VALUES ('P001', 'Dheeraj Vislawath'), ('P002', 'Ana Souza'); \
             INSERT INTO rooms (room_id, room_name) VALUES ('R2', 'Room 2'), ('R7', 'Room 7');",
        )
        .await;
    }
}

fn pg_cell(row: &sqlx::postgres::PgRow, i: usize) -> Cell {
    if row.try_get_raw(i).map(|v| v.is_null()).unwrap_or(true) {
        return None;
    }
    let ty = row.column(i).type_info().name().to_string();
    Some(match ty.as_str() {
        "TIMESTAMPTZ" => row.get::<chrono::DateTime<chrono::Utc>, _>(i).to_rfc3339(),
        "INT8" => row.get::<i64, _>(i).to_string(),
        "INT4" => row.get::<i32, _>(i).to_string(),
        "NUMERIC" | "FLOAT8" => row.get::<f64, _>(i).to_string(),
        "BOOL" => row.get::<bool, _>(i).to_string(),
        "JSONB" | "JSON" => row.get::<serde_json::Value, _>(i).to_string(),
        _ => row.get::<String, _>(i),
    })
}

fn sqlite_cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> Cell {
    let raw = row.try_get_raw(i).ok()?;
    if raw.is_null() {
        return None;
    }
    let ty = raw.type_info().name().to_string();
    Some(match ty.as_str() {
        "INTEGER" => row.get::<i64, _>(i).to_string(),
        "REAL" => row.get::<f64, _>(i).to_string(),
        _ => row.get::<String, _>(i),
    })
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let base = match base.rfind('/') {
        Some(i) if base[..i].contains("//") && i > base.find("//").unwrap() + 1 => &base[..i],
        _ => base,
    };
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// Where to create test databases: `TEST_DATABASE_URL`, else the local server on
/// 127.0.0.1:5432, else a throwaway cluster started with `initdb`/`pg_ctl`.
fn postgres_admin_url() -> Option<String> {
    static URL: OnceLock<Option<String>> = OnceLock::new();
    let url = URL.get_or_init(|| {
        // Discovery runs on its own thread and runtime: the test runtimes come and go.
        std::thread::spawn(discover_postgres)
            .join()
            .expect("postgres discovery")
    });
    if url.is_none() {
        let why = "no PostgreSQL for tests: set TEST_DATABASE_URL, run a server on \
                   127.0.0.1:5432 (user postgres, trust auth), or install initdb/pg_ctl";
        if std::env::var("ALERTCALL_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("ALERTCALL_REQUIRE_POSTGRES=1 but {why}");
        }
        eprintln!("\n!!!!!!!!!! SKIPPING POSTGRES TEST: {why} !!!!!!!!!!\n");
    }
    url.clone()
}

fn discover_postgres() -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reachable = |url: String| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url))
                .await
                .ok()?
                .ok()?;
            Some(url)
        })
    };
    let found = if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        Some(
            reachable(url.clone())
                .unwrap_or_else(|| panic!("TEST_DATABASE_URL={url} is unreachable")),
        )
    } else {
        reachable("postgres://postgres@127.0.0.1:5432/postgres".into())
            .or_else(|| start_throwaway_cluster().and_then(reachable))
    };
    if let Some(url) = &found {
        rt.block_on(drop_leftovers(url));
    }
    found
}

/// Test databases from earlier runs (each test makes its own and leaves it behind for
/// inspection) are dropped once per run; one still in use by another run is left alone.
async fn drop_leftovers(admin: &str) {
    let Ok(mut conn) = sqlx::PgConnection::connect(admin).await else {
        return;
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'alertcall\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in names {
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// `initdb` + `pg_ctl start` in a temp dir, run as the `postgres` user when we are root
/// (initdb refuses to run as root). The cluster is left running for the rest of the run.
fn start_throwaway_cluster() -> Option<String> {
    let bindir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .or_else(|| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect();
            dirs.sort();
            dirs.pop()
        })?;
    if !bindir.join("initdb").exists() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("alertcall-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        l.local_addr().ok()?.port()
    };
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if as_root {
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status()
            .ok()?;
    }
    let run = |args: Vec<String>| -> bool {
        let mut cmd = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c.args(&args);
            c
        } else {
            let mut c = Command::new(&args[0]);
            c.args(&args[1..]);
            c
        };
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let data = dir.join("data");
    let bin = |b: &str| bindir.join(b).display().to_string();
    if !run(vec![
        bin("initdb"),
        "-D".into(),
        data.display().to_string(),
        "-U".into(),
        "postgres".into(),
        "--auth=trust".into(),
    ]) {
        return None;
    }
    if !run(vec![
        bin("pg_ctl"),
        "-D".into(),
        data.display().to_string(),
        "-o".into(),
        format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        ),
        "-w".into(),
        "-l".into(),
        dir.join("log").display().to_string(),
        "start".into(),
    ]) {
        return None;
    }
    eprintln!(
        "started a throwaway PostgreSQL cluster on 127.0.0.1:{port} in {}",
        dir.display()
    );
    Some(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

#[test]
fn database_names_go_in_the_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}
