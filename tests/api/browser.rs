//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from npm): tests/browser/dashboard.mjs against the real server. Screenshots are kept in
//! test-artifacts/browser/. Without node, playwright-core or Chromium the test says so
//! loudly and skips, unless ALERTCALL_REQUIRE_BROWSER=1 (set by .ci/run), when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::db::{Backend, TestDb};
use crate::helpers::{ADMIN_PASSWORD, TestApp, run_tool, tools_present};

fn missing_tools(root: &Path, chromium: &Path) -> Vec<String> {
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
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let _turn = crate::helpers::heavy().await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    let missing = missing_tools(&root, &chromium);
    if !tools_present(
        "browser::dashboard_in_chromium",
        &missing,
        "ALERTCALL_REQUIRE_BROWSER",
    ) {
        return;
    }
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    // Two units with schedules, as a hospital would have them (the on-call view shows them).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/alertcall.example.toml");
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", example)]).await;
    // Cutover day: an alert two days old when alertcall first sees it.
    let old = crate::cutover::insert_old_alert(&db, 48, "Two days old").await;
    crate::helpers::wait_until("the old alert is seen", crate::core::WAIT, || async {
        app.page_state(&old).await.as_deref() == Some("stale")
    })
    .await;
    let mut node = Command::new("node");
    node.arg(root.join("tests/browser/dashboard.mjs"))
        .env("ALERTCALL_URL", app.url(""))
        .env("ALERTCALL_PASSWORD", ADMIN_PASSWORD)
        .env("UNREACHED_ALERT", &old)
        .env("SCREENSHOTS", root.join("test-artifacts/browser"))
        .env("CHROMIUM", chromium);
    let stdout = run_tool(node, "the browser flow (tests/browser/dashboard.mjs)").await;
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
    for shot in [
        "1-signed-in",
        "2-ringing",
        "3-timeline",
        "4-analytics",
        "5-history",
        "5b-oncall",
        "6-said",
        "7-dashboard-actions",
        "8-skipped",
        "8-unreached-banner",
    ] {
        assert!(
            root.join(format!("test-artifacts/browser/{shot}.png"))
                .exists(),
            "screenshot {shot}"
        );
    }
    app.stop().await;
}
