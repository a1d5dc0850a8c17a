//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from npm): the flows in tests/browser/ against the real server. Screenshots are kept in
//! test-artifacts/browser/. Without node, playwright-core or Chromium the tests say so
//! loudly and skip, unless ALERTCALL_REQUIRE_BROWSER=1 (set by .ci/run), when they fail.

use std::path::PathBuf;
use std::process::Command;

use alertcall::domain::reach::Reason;
use serde_json::json;

use crate::core::{WAIT, signed_event};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::FakeVonage;
use crate::helpers::{ADMIN_PASSWORD, TestApp, heavy, run_tool, tools_present, wait_until};
use crate::unreached::{self, SCENARIOS, Scenario};

/// Where the flows are, and the Chromium they drive.
struct Browser {
    root: PathBuf,
    chromium: PathBuf,
}

impl Browser {
    /// `None` (the test skips) when node, playwright-core or Chromium is missing.
    fn find(test: &str) -> Option<Browser> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let chromium =
            PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
        let mut missing = Vec::new();
        if Command::new("node").arg("--version").output().is_err() {
            missing.push("node (Debian package nodejs)".to_string());
        }
        if !root
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        {
            missing.push("playwright-core (npm ci --prefix tests/browser)".to_string());
        }
        if !chromium.exists() {
            missing.push(format!("{} (Debian package chromium)", chromium.display()));
        }
        tools_present(test, &missing, "ALERTCALL_REQUIRE_BROWSER")
            .then_some(Browser { root, chromium })
    }

    /// Runs tests/browser/`flow` with `env`; fails the test if the flow fails or does not
    /// leave each of `screenshots` (names without `.png`) in test-artifacts/browser/.
    /// Returns what it printed.
    async fn run(&self, flow: &str, env: &[(&str, String)], screenshots: &[String]) -> String {
        let dir = self.root.join("test-artifacts/browser");
        let path = |name: &String| dir.join(format!("{name}.png"));
        for name in screenshots {
            // Left by an earlier run, it would prove nothing.
            let _ = std::fs::remove_file(path(name));
        }
        let mut node = Command::new("node");
        node.arg(self.root.join("tests/browser").join(flow))
            .env("ALERTCALL_PASSWORD", ADMIN_PASSWORD)
            .env("SCREENSHOTS", &dir)
            .env("CHROMIUM", &self.chromium)
            .envs(env.iter().map(|(k, v)| (k, v)));
        let stdout = run_tool(node, &format!("the browser flow (tests/browser/{flow})")).await;
        for name in screenshots {
            assert!(path(name).exists(), "screenshot {name}\n{stdout}");
        }
        stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let _turn = heavy().await;
    let Some(browser) = Browser::find("browser::dashboard_in_chromium") else {
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    // Two units with schedules, as a hospital would have them (the on-call view shows them).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/alertcall.example.toml");
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", example)]).await;
    // Cutover day: an alert two days old when alertcall first sees it.
    let old = crate::cutover::insert_old_alert(&db, 48, "Two days old").await;
    wait_until("the old alert is seen", WAIT, || async {
        app.page_state(&old).await.as_deref() == Some("stale")
    })
    .await;
    let screenshots = [
        "1-signed-in",
        "2-ringing",
        "3-timeline",
        "4-analytics",
        "5-history",
        "5b-oncall",
        "6-said",
        "7-dashboard-actions",
        "8-skipped",
    ]
    .map(String::from);
    let stdout = browser
        .run(
            "dashboard.mjs",
            &[("ALERTCALL_URL", app.url(""))],
            &screenshots,
        )
        .await;
    // What the browser did is what the database says.
    let acknowledged = db
        .count("SELECT count(*) FROM alerts WHERE status = 'acknowledged' AND acknowledged_by LIKE 'phone:+%'")
        .await;
    assert_eq!(acknowledged, 2, "{stdout}");
    let by_voice = db
        .count("SELECT count(*) FROM alerts WHERE message LIKE '%fall in room 7' AND status = 'acknowledged'")
        .await;
    assert_eq!(by_voice, 1, "{stdout}");
    let by_buttons = db
        .count("SELECT count(*) FROM alerts WHERE message LIKE '%desaturation' AND status = 'resolved' AND acknowledged_by = 'dashboard:admin'")
        .await;
    assert_eq!(by_buttons, 1, "{stdout}");
    let skipped = db
        .scalar(&format!(
            "SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{old}'"
        ))
        .await;
    assert_eq!(skipped.as_deref(), Some("resolved"), "{stdout}");
    app.stop().await;
}

const TOKEN: &str = "banners-test-token";

/// Once each alert has had its calls (and its fallback contact's, when the reason calls for
/// it), every call rings out unanswered, as Vonage reports it: the board then shows the states
/// themselves (`failed`, `exhausted`), not `calling`.
async fn ring_out(app: &TestApp, fake: &FakeVonage, alerts: &[(Scenario, String)]) {
    wait_until("each fallback contact is called", WAIT, || async {
        for (s, id) in alerts {
            let events = app.engine.store.list_events(id).await.unwrap();
            let notified = events.iter().any(|e| e.kind == "fallback.notified");
            if s.reason.calls_fallback() && !notified {
                return false;
            }
        }
        true
    })
    .await;
    // A call placed after the audit row (the fallback's is recorded first) rings out too.
    let ended = std::sync::Mutex::new(std::collections::HashSet::new());
    wait_until("no call is in progress", WAIT, || async {
        let placed: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| ended.lock().unwrap().insert(c.uuid.clone().unwrap()))
            .collect();
        for call in placed {
            let r = signed_event(app, &call, "unanswered").await;
            assert_eq!(r.status(), 204, "the unanswered event");
        }
        let board = app.get_json("/api/v1/alerts", TOKEN).await;
        board
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["calling"].as_array().is_some_and(Vec::is_empty))
    })
    .await;
}

/// A badge that must explain itself (in its title): on the board's row of the alert or in
/// the facts on its page, with the class `kind`.
struct Badge {
    alert: String,
    on_board: bool,
    kind: &'static str,
    explains: &'static str,
}

impl Badge {
    /// The badge on the board and the one on the alert's page.
    fn both(
        alert: &str,
        board: (&'static str, &'static str),
        page: (&'static str, &'static str),
    ) -> [Badge; 2] {
        let badge = |on_board, (kind, explains)| Badge {
            alert: alert.to_string(),
            on_board,
            kind,
            explains,
        };
        [badge(true, board), badge(false, page)]
    }
}

/// A server brought into some unreached states, one alert per scenario.
struct Unreached {
    label: String,
    app: TestApp,
    alerts: Vec<(Scenario, String)>,
    badges: Vec<Badge>,
    _db: TestDb,
    _fake: FakeVonage,
    _config: tempfile::NamedTempFile,
}

impl Unreached {
    async fn start(label: &str, scenarios: &[Scenario]) -> Unreached {
        let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
        let fake = unreached::fake_vonage(scenarios).await;
        let config = unreached::config();
        let path = config.path().display().to_string();
        let app = TestApp::spawn(
            &db,
            Some(&fake),
            &[
                ("ALERTCALL_CONFIG", path.as_str()),
                ("ALERTCALL_API_TOKEN", TOKEN),
            ],
        )
        .await;
        let mut alerts = Vec::new();
        for s in scenarios {
            alerts.push((*s, unreached::raise(&db, s).await));
        }
        wait_until(
            "every alert reaches nobody for its reason",
            WAIT,
            || async {
                let now = app.engine.unreached().await.unwrap();
                alerts.iter().all(|(s, id)| {
                    now.iter()
                        .any(|r| &r.alert.id == id && r.unreached.reason == s.reason)
                })
            },
        )
        .await;
        ring_out(&app, &fake, &alerts).await;
        let mut badges = Vec::new();
        for (s, id) in &alerts {
            match s.reason {
                Reason::NoPolicy => badges.extend(Badge::both(
                    id,
                    ("failed", s.message),
                    ("failed", "no escalation policy matched"),
                )),
                Reason::Skipped => badges.extend(Badge::both(
                    id,
                    ("skipped", s.message),
                    ("stale", "older than ALERTCALL_MAX_ALERT_AGE"),
                )),
                _ => {}
            }
        }
        Unreached {
            label: label.into(),
            app,
            alerts,
            badges,
            _db: db,
            _fake: fake,
            _config: config,
        }
    }

    /// Adds an alert that is not critical: alertcall does not take it in, and its `not
    /// paged` badge says so.
    async fn with_one_not_paged(mut self) -> Unreached {
        let id = self
            ._db
            .insert_alert("high", "P002", "R7", "Bed exit")
            .await;
        let not_paged = (
            "not-paged",
            "only active alerts of severity critical are called",
        );
        self.badges.extend(Badge::both(&id, not_paged, not_paged));
        self
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "url": self.app.url(""),
            "label": self.label,
            "alerts": self.alerts.iter().map(|(s, id)| json!({
                "id": id, "reason": s.reason.as_str(), "message": s.message,
            })).collect::<Vec<_>>(),
            "badges": self.badges.iter().map(|b| json!({
                "id": b.alert, "view": if b.on_board { "board" } else { "alert" },
                "kind": b.kind, "explains": b.explains,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Every reason an active critical alert can reach nobody, brought about the real way, on as
/// few servers as the reasons allow: a provider that cannot place calls leaves every
/// escalating alert unreached for that reason, so it gets a server of its own. In Chromium,
/// each has its red banner on the board and on its page, as the health API says, readable at
/// 390 px; tests/browser/banners.mjs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_unreached_banner_in_chromium() {
    let _turn = heavy().await;
    let Some(browser) = Browser::find("browser::every_unreached_banner_in_chromium") else {
        return;
    };
    let untested: Vec<&str> = Reason::ALL
        .iter()
        .filter(|r| !SCENARIOS.iter().any(|s| s.reason == **r))
        .map(|r| r.as_str())
        .collect();
    assert!(
        untested.is_empty(),
        "reasons without a scenario in tests/api/unreached.rs: {untested:?}"
    );
    let (alone, together): (Vec<Scenario>, Vec<Scenario>) =
        SCENARIOS.iter().partition(|s| s.provider.is_some());
    let mut servers = vec![
        Unreached::start("board", &together)
            .await
            .with_one_not_paged()
            .await,
    ];
    for s in alone {
        let label = format!("board-{}", s.reason.as_str());
        servers.push(Unreached::start(&label, &[s]).await);
    }
    let spec = serde_json::Value::from_iter(servers.iter().map(Unreached::json));
    let screenshots: Vec<String> = servers
        .iter()
        .flat_map(|server| {
            let reasons = server.alerts.iter().map(|(s, _)| s.reason.as_str());
            reasons
                .flat_map(|r| [format!("unreached-{r}"), format!("unreached-{r}-390px")])
                .chain([format!("unreached-{}", server.label)])
                .collect::<Vec<_>>()
        })
        .collect();
    browser
        .run(
            "banners.mjs",
            &[("SERVERS", spec.to_string())],
            &screenshots,
        )
        .await;
    for server in servers {
        server.app.stop().await;
    }
}
