//! Starting the real server (random port) against a test database, and waiting on
//! conditions with a deadline instead of sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alertcall::config::Config;
use alertcall::engine::{Clock, Engine};
use alertcall::startup::Application;

use crate::db::TestDb;
use crate::fake_vonage::{self, FakeVonage};

/// The password of user `admin` on every test server (ALERTCALL_ADMIN_PASSWORD), so that no
/// server writes a first-admin password file.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

pub struct TestApp {
    pub addr: SocketAddr,
    /// The HL7 listener, when ALERTCALL_HL7_LISTEN is given.
    pub hl7: Option<SocketAddr>,
    pub engine: Arc<Engine>,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// alertcall on `db`, calling the fake Vonage when given, else the simulator.
    pub async fn spawn(
        db: &TestDb,
        vonage: Option<&FakeVonage>,
        extra: &[(&str, &str)],
    ) -> TestApp {
        // RUST_LOG=alertcall=debug shows what the service did in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mut vars: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), db.url.clone()),
            ("ALERTCALL_LISTEN".into(), "127.0.0.1:0".into()),
            ("ALERTCALL_CALLS_PER_SECOND".into(), "0".into()),
            ("ALERTCALL_HOSPITAL_NAME".into(), "Haven Hospital".into()),
            ("ALERTCALL_SQLITE_WATCH_INTERVAL".into(), "10ms".into()),
            ("ALERTCALL_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()),
        ]);
        if let Some(v) = vonage {
            vars.extend(v.env().into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_vars(|k| vars.get(k).cloned()).expect("test configuration");
        let app = Application::build_with_clock(config, Clock::movable())
            .await
            .expect("build app");
        let addr = app.local_addr();
        let hl7 = app.hl7_addr();
        let engine = app.engine();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(async {
                let _ = stopped.await;
            })
            .await
            .expect("app run");
        });
        let app = TestApp {
            addr,
            hl7,
            engine,
            // Idle connections are dropped well before the server's header-read timeout
            // (10 s) closes them, so a request never races a closing connection.
            http: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(5))
                .build()
                .expect("the test's HTTP client"),
            stop: Some(stop),
            task: Some(task),
        };
        wait_until(
            "the server answers /healthz",
            Duration::from_secs(10),
            || async { app.get("/healthz").await.status() == 200 },
        )
        .await;
        app
    }

    /// Moves the server's clock forward by `by` and wakes its dispatcher: for the engine, that
    /// much time has passed (a step's wait, a retry interval).
    pub fn advance(&self, by: Duration) {
        assert!(
            self.engine.clock().advance(by),
            "the test server's clock moves"
        );
        self.engine.wake();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    /// GET with an API token; must answer 200 with JSON.
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON body")
    }

    /// The state of an alert's page (`due`, `waiting`, `acknowledged`, ...).
    pub async fn page_state(&self, alert: &str) -> Option<String> {
        self.engine
            .store
            .page_state(alert)
            .await
            .unwrap()
            .map(|s| s.as_str().to_string())
    }

    /// Asserts that the alert's audit trail holds each of `kinds`.
    pub async fn assert_audit(&self, alert: &str, kinds: &[&str]) {
        let recorded: Vec<String> = self
            .engine
            .store
            .list_events(alert)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        for kind in kinds {
            assert!(
                recorded.iter().any(|k| k == kind),
                "{kind} missing from {recorded:?}"
            );
        }
    }

    /// POSTs a webhook body, signed with `secret` when given.
    pub async fn webhook(&self, url: &str, body: &str, secret: Option<&str>) -> reqwest::Response {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            self.url(url)
        };
        fake_vonage::post_webhook(&self.http, &url, body, secret).await
    }

    /// Waits until alertcall has recorded a call of `alert` (placed or being placed), and
    /// returns the newest.
    pub async fn call_of(&self, alert: &str) -> alertcall::domain::call::CallRecord {
        let store = &self.engine.store;
        wait_until("alertcall records a call", crate::core::WAIT, || async {
            !store.list_calls(Some(alert), 1).await.unwrap().is_empty()
        })
        .await;
        store.list_calls(Some(alert), 1).await.unwrap().remove(0)
    }

    /// Scrapes `/metrics` and checks that each series has exactly its value.
    pub async fn assert_metrics(&self, expect: &[(&str, f64)]) {
        let metrics = self.get("/metrics").await.text().await.unwrap();
        for (series, value) in expect {
            assert_eq!(
                crate::core::metric(&metrics, series),
                Some(*value),
                "{series} in\n{metrics}"
            );
        }
    }

    /// Stops the server and the engine, as a shutdown would.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Polls `cond` until it holds; panics with `what` after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the external tools a test needs are there (`missing` lists what is not). When
/// some are missing the test says so loudly and is skipped, unless the environment variable
/// `require` is 1 (CI sets it), when it fails.
pub fn tools_present(test: &str, missing: &[String], require: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs: {}", missing.join(", "));
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{message} ({require}=1)");
    }
    eprintln!("\n!!! SKIPPED {message} !!!\n");
    false
}

/// Runs an external tool off the async threads; fails the test with its output if it fails.
/// Returns what it printed.
pub async fn run_tool(mut command: std::process::Command, what: &str) -> String {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// Tests that load the machine (a process killed at random moments, three instances, a
/// flood of requests, a browser, a fuzzer) take turns through this, so that on two cores the
/// timing-sensitive ones are not starved by the others.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}
