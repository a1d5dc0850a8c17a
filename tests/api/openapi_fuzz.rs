//! Schemathesis (from PyPI) fuzzes the live server from its own OpenAPI document: every
//! check (no 5xx, status codes, content types and bodies as documented, valid data accepted,
//! invalid data refused). Without `schemathesis` on PATH the test says so loudly and skips,
//! unless ALERTCALL_REQUIRE_SCHEMATHESIS=1 (set by .ci/run), when it fails.

use std::process::Command;

use crate::both_backends;
use crate::db::TestDb;
use crate::helpers::TestApp;

const TOKEN: &str = "fuzz-t0ken";

pub async fn schemathesis_finds_nothing(db: TestDb) {
    let program = std::env::var("SCHEMATHESIS").unwrap_or("schemathesis".into());
    if Command::new(&program).arg("--version").output().is_err() {
        let message = format!("{program} is not installed (pip install schemathesis)");
        if std::env::var("ALERTCALL_REQUIRE_SCHEMATHESIS").as_deref() == Ok("1") {
            panic!("{message}");
        }
        eprintln!("\n!!! SKIPPED openapi_fuzz: {message} !!!\n");
        return;
    }
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_API_TOKEN", TOKEN)]).await;
    let schema = app.url("/api/v1/openapi.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(program)
            .args(["run", &schema, "--checks", "all", "--max-examples", "40"])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args(["--workers", "2", "--no-color"])
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("No issues found"), "{stdout}");
    // What it generated reached the handlers, not only the sign-in check.
    let raised = app
        .engine
        .store
        .list_alerts(&alertcall::store::AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        !raised.is_empty(),
        "schemathesis raised no alert:\n{stdout}"
    );
    app.stop().await;
}
both_backends!(openapi_fuzz::schemathesis_finds_nothing);
