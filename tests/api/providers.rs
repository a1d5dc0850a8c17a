//! How provider failures are handled: 401 (configuration), 429/5xx/timeouts (retry with
//! back-off), invalid numbers (permanent).

use std::time::Duration;

use crate::both_backends;
use crate::core::{WAIT, seed_query, wait_for_calls};
use crate::db::TestDb;
use crate::fake_vonage::{Behaviour, FakeVonage};
use crate::helpers::{TestApp, wait_until};

pub async fn rate_limits_server_errors_and_timeouts_are_retried(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.script([
        Behaviour::Status(429, Some(1)),
        Behaviour::Status(500, None),
        Behaviour::Hang(Duration::from_secs(5)),
        Behaviour::Drop,
    ]);
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_PROVIDER_TIMEOUT", "500ms")]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    wait_until("the page waits for an acknowledgement", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("waiting")
    })
    .await;
    assert_eq!(fake.received().len(), 5, "four failures, then the call");
    assert_eq!(fake.violations(), Vec::<String>::new());
    // The Retry-After of the 429 was honoured.
    let received = fake.received();
    assert!(received[1].at - received[0].at >= Duration::from_millis(950));
    // Every attempt is recorded; the alert mirrors the call that got through.
    let attempts = app.engine.store.list_calls(Some(&alert), 10).await.unwrap();
    assert_eq!(attempts.len(), 5);
    assert_eq!(
        attempts
            .iter()
            .filter(|c| c.status.as_str() == "failed")
            .count(),
        4
    );
    let row = db.row(&seed_query(calls[0].uuid.as_deref().unwrap())).await;
    assert_eq!(row[3].as_deref(), Some("initiated"));
    app.assert_metrics(&[
        (
            r#"alertcall_provider_errors_total{provider="vonage",kind="transient"}"#,
            4.0,
        ),
        (
            r#"alertcall_calls_placed_total{provider="vonage",result="error"}"#,
            4.0,
        ),
        (
            r#"alertcall_calls_placed_total{provider="vonage",result="placed"}"#,
            1.0,
        ),
    ])
    .await;
    app.stop().await;
}
both_backends!(providers::rate_limits_server_errors_and_timeouts_are_retried);

pub async fn bad_credentials_are_a_configuration_error(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.script([Behaviour::Status(401, None)]);
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let engine = app.engine.clone();
    // Not retried at once (a person must fix the credentials), but not given up either.
    wait_until("the page is due again in a minute", WAIT, || async {
        engine
            .store
            .next_due_at()
            .await
            .unwrap()
            .is_some_and(|due| due > chrono::Utc::now() + chrono::Duration::seconds(30))
    })
    .await;
    let calls = engine.store.list_calls(Some(&alert), 10).await.unwrap();
    let error = calls[0].error.clone().unwrap();
    assert!(
        error.contains("401") && error.contains("VONAGE_APPLICATION_ID"),
        "{error}"
    );
    // Not retried at once (a person must fix the credentials), but not given up either.
    assert_eq!(app.page_state(&alert).await.as_deref(), Some("due"));
    let due = engine.store.next_due_at().await.unwrap().unwrap();
    assert!(
        due > chrono::Utc::now() + chrono::Duration::seconds(30),
        "{due}"
    );
    assert_eq!(fake.received().len(), 1);
    app.stop().await;
}
both_backends!(providers::bad_credentials_are_a_configuration_error);

pub async fn an_invalid_number_fails_for_good(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.script([Behaviour::Status(400, None)]);
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    // The only person cannot be called: the one-step policy is exhausted at once (and
    // flagged), and the last step is tried again only on the slow re-notify cadence.
    wait_until("the escalation is exhausted", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("exhausted")
    })
    .await;
    let meta = db
        .row(&format!(
            "SELECT metadata->'call'->>'call_status', status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await;
    assert_eq!(meta, [Some("failed".into()), Some("active".into())]);
    let flag = db
        .scalar(&format!(
            "SELECT metadata->'escalation'->>'status' FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await;
    assert_eq!(flag.as_deref(), Some("exhausted"));
    let due = app.engine.store.next_due_at().await.unwrap().unwrap();
    assert!(
        due > chrono::Utc::now() + chrono::Duration::minutes(4),
        "re-notified only after 5 minutes"
    );
    let calls = app.engine.store.list_calls(Some(&alert), 10).await.unwrap();
    assert!(
        calls[0]
            .error
            .as_deref()
            .unwrap()
            .contains("invalid_number")
    );
    app.assert_metrics(&[(
        r#"alertcall_provider_errors_total{provider="vonage",kind="permanent"}"#,
        1.0,
    )])
    .await;
    // Another alert is still called: nothing is retried after a permanent refusal.
    db.insert_alert("critical", "P002", "R7", "Next").await;
    wait_for_calls(&db, &fake, 1).await;
    assert_eq!(fake.received().len(), 2);
    app.stop().await;
}
both_backends!(providers::an_invalid_number_fails_for_good);

pub async fn calls_per_second_limit_is_respected(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_CALLS_PER_SECOND", "10")]).await;
    let values: Vec<String> = (0..6)
        .map(|i| format!("('P{i}', 'critical', 'Alert {i}')"))
        .collect();
    db.exec(&format!(
        "INSERT INTO alerts (patient_id, severity, message) VALUES {}",
        values.join(", ")
    ))
    .await;
    let calls = wait_for_calls(&db, &fake, 6).await;
    let mut times: Vec<_> = calls.iter().map(|c| c.at).collect();
    times.sort();
    // 10 calls/s: call j comes at least (j - i) x 100 ms after call i. The fake sees each
    // request when it arrives, so a loaded machine delays one more than the next: the slack
    // allows that delay, never a limiter that lets two calls out at once.
    for (i, earlier) in times.iter().enumerate() {
        for (j, later) in times.iter().enumerate().skip(i + 1) {
            let least = Duration::from_millis(100 * (j - i) as u64 - 80);
            assert!(*later - *earlier >= least, "calls {i} and {j}: {times:?}");
        }
    }
    app.stop().await;
}
both_backends!(providers::calls_per_second_limit_is_respected);
