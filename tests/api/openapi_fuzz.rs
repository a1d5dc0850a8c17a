//! Schemathesis (from PyPI) fuzzes the live server from its own OpenAPI document: every
//! check (no 5xx, status codes, content types and bodies as documented, valid data accepted,
//! invalid data refused). Without `schemathesis` on PATH the test says so loudly and skips,
//! unless ALERTCALL_REQUIRE_SCHEMATHESIS=1 (set by .ci/run), when it fails.

use std::process::Command;

use crate::both_backends;
use crate::db::TestDb;
use crate::helpers::{TestApp, run_tool, tools_present};

const TOKEN: &str = "fuzz-t0ken";

pub async fn schemathesis_finds_nothing(db: TestDb) {
    let _turn = crate::helpers::heavy().await;
    let program = std::env::var("SCHEMATHESIS").unwrap_or("schemathesis".into());
    let missing: Vec<String> = match Command::new(&program).arg("--version").output() {
        Ok(_) => vec![],
        Err(_) => vec![format!("{program} (pip install schemathesis)")],
    };
    if !tools_present("openapi_fuzz", &missing, "ALERTCALL_REQUIRE_SCHEMATHESIS") {
        return;
    }
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_API_TOKEN", TOKEN)]).await;
    let mut run = Command::new(program);
    run.args(["run", &app.url("/api/v1/openapi.json"), "--checks", "all"])
        .args(["--max-examples", "30", "--workers", "1", "--no-color"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")]);
    let stdout = run_tool(run, "schemathesis").await;
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
