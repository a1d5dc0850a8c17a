//! The whole flow: a critical alert inserted with plain SQL becomes one valid Vonage call,
//! and a signed "1" acknowledges it exactly as the seed documented.

use std::time::Duration;

use serde_json::Value;

use crate::both_backends;
use crate::db::TestDb;
use crate::fake_vonage::{FakeVonage, Received, SIGNATURE_SECRET};
use crate::helpers::{TestApp, wait_until};

/// Generous: CI runs every test at once on two cores, beside Chromium and schemathesis.
pub const WAIT: Duration = Duration::from_secs(30);

/// The seed's query, verbatim.
pub fn seed_query(call_id: &str) -> String {
    format!(
        "SELECT status, acknowledged_at, acknowledged_by, \
                metadata->'call'->>'call_status' AS call_status, \
                metadata->'call'->>'answered_at' AS call_answered_at \
         FROM alerts WHERE metadata->'call'->>'call_id' = '{call_id}'"
    )
}

/// Waits until `n` calls reached the fake Vonage and alertcall has recorded each of them.
pub async fn wait_for_calls(db: &TestDb, fake: &FakeVonage, n: usize) -> Vec<Received> {
    wait_until(
        &format!("{n} call(s) reach the fake Vonage"),
        WAIT,
        || async { fake.calls().len() >= n },
    )
    .await;
    let calls = fake.calls();
    let ids: Vec<String> = calls
        .iter()
        .map(|c| format!("'{}'", c.uuid.as_deref().unwrap_or_default()))
        .collect();
    let recorded = format!(
        "SELECT count(*) FROM {} WHERE provider_call_id IN ({}) AND status <> 'pending'",
        db.table("calls"),
        ids.join(", ")
    );
    wait_until("alertcall records the calls", WAIT, || async {
        db.count(&recorded).await as usize == calls.len()
    })
    .await;
    calls
}

/// The input webhook URL alertcall gave Vonage in the call's NCCO.
pub fn input_url(call: &Received) -> String {
    call.body["ncco"][1]["eventUrl"][0]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn event_url(call: &Received) -> String {
    call.body["event_url"][0].as_str().unwrap().to_string()
}

pub fn input_body(uuid: &str, digits: &str, timed_out: bool) -> String {
    serde_json::json!({
        "from": "447700900001", "to": "13854019951",
        "dtmf": {"digits": digits, "timed_out": timed_out}, "speech": {"results": []},
        "uuid": uuid, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "timestamp": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
}

/// Vonage's signed status event `status` for `call`, posted to the event URL alertcall gave it.
pub async fn signed_event(app: &TestApp, call: &Received, status: &str) -> reqwest::Response {
    let uuid = call.uuid.clone().expect("the call's uuid");
    app.webhook(
        &event_url(call),
        &event_body(&uuid, status),
        Some(SIGNATURE_SECRET),
    )
    .await
}

pub fn event_body(uuid: &str, status: &str) -> String {
    serde_json::json!({
        "from": "447700900001", "to": "13854019951", "uuid": uuid,
        "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "status": status, "direction": "outbound", "timestamp": "2026-11-24T20:15:20.101Z",
    })
    .to_string()
}

/// The text of the first talk action of an NCCO.
pub fn spoken(ncco: &Value) -> String {
    ncco[0]["text"].as_str().unwrap_or_default().to_string()
}

pub async fn critical_alert_is_called_and_press_1_acknowledges(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;

    let calls = wait_for_calls(&db, &fake, 1).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    let call = &calls[0];
    assert_eq!(call.body["to"][0]["number"], "13854019951");
    assert_eq!(call.body["from"]["number"], "447700900001");
    let text = spoken(&call.body["ncco"]);
    assert_eq!(
        text,
        "Critical alert at Haven Hospital. Room 2, patient Dheeraj Vislawath. Seizure activity \
         detected. Please respond immediately. Press 1 to acknowledge this alert. Press 2 to hear it again. \
         Press 3 if you cannot respond. Press 9 for details, or 5 to join the responders' call. \
         You can also say yes, repeat, details, busy, or join the call."
    );
    assert!(input_url(call).starts_with(&app.url("/api/alerts/call-response")));
    assert!(event_url(call).starts_with(&app.url("/api/alerts/call-event")));
    let uuid = call.uuid.clone().unwrap();

    // Vonage reports progress; the mirror follows.
    for status in ["started", "ringing", "answered"] {
        let r = app
            .webhook(
                &event_url(call),
                &event_body(&uuid, status),
                Some(SIGNATURE_SECRET),
            )
            .await;
        assert_eq!(r.status(), 204, "{status}");
    }
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[0].as_deref(), Some("active"));
    assert_eq!(
        row[3].as_deref(),
        Some("in_progress"),
        "a pickup is not an acknowledgement"
    );

    let r = app
        .webhook(
            &input_url(call),
            &input_body(&uuid, "1", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let ncco: Value = r.json().await.unwrap();
    assert!(crate::fake_vonage::check_ncco(&ncco).is_empty(), "{ncco}");
    assert_eq!(spoken(&ncco), "Alert acknowledged. Thank you.");

    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    assert!(row[1].is_some(), "acknowledged_at is set");
    assert_eq!(row[2].as_deref(), Some("phone:+13854019951"));
    assert_eq!(row[3].as_deref(), Some("answered"));
    assert!(row[4].is_some(), "answered_at is set");

    // The end of the call does not overwrite the acknowledgement.
    let r = app
        .webhook(
            &event_url(call),
            &event_body(&uuid, "completed"),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 204);
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[3].as_deref(), Some("answered"));

    // The whole metadata.call object has the seed's shape, and other keys survive.
    let meta: Value = serde_json::from_str(
        &db.scalar(&format!(
            "SELECT CAST(metadata AS TEXT) FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await
        .unwrap(),
    )
    .unwrap();
    let keys: Vec<&str> = meta["call"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut keys = keys;
    keys.sort();
    assert_eq!(
        keys,
        [
            "answered_at",
            "call_id",
            "call_status",
            "initiated_at",
            "message",
            "phone_number",
            "provider"
        ]
    );
    assert_eq!(meta["call"]["phone_number"], "+13854019951");
    assert_eq!(meta["call"]["provider"], "vonage");

    // Every step is in the audit trail.
    let kinds: Vec<String> = db
        .rows(&format!(
            "SELECT kind FROM {} WHERE alert_id = '{alert}' ORDER BY id",
            db.table("call_events")
        ))
        .await
        .into_iter()
        .filter_map(|r| r[0].clone())
        .collect();
    for kind in [
        "call.placed",
        "call.started",
        "call.ringing",
        "call.picked_up",
        "menu.choice",
        "alert.acknowledged",
        "call.completed",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_eq!(fake.calls().len(), 1, "called once");
    app.stop().await;
}
both_backends!(core::critical_alert_is_called_and_press_1_acknowledges);

pub async fn other_metadata_keys_are_kept(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.exec(
        "INSERT INTO alerts (patient_id, severity, message, metadata) \
         VALUES ('P9', 'critical', 'Fall detected', '{\"source\": \"bed-sensor\", \"call\": {\"old\": true}}')",
    )
    .await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    let uuid = calls[0].uuid.clone().unwrap();
    wait_until("metadata.call mirrors the call", WAIT, || async {
        db.rows(&seed_query(&uuid)).await.len() == 1
    })
    .await;
    let meta: Value = serde_json::from_str(
        &db.scalar("SELECT CAST(metadata AS TEXT) FROM alerts")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["source"], "bed-sensor");
    assert_eq!(meta["call"]["call_status"], "initiated");
    assert!(meta["call"].get("old").is_none(), "call is replaced whole");
    app.stop().await;
}
both_backends!(core::other_metadata_keys_are_kept);

pub async fn only_active_critical_alerts_are_called(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.insert_alert("high", "P001", "R2", "Heart rate high")
        .await;
    db.insert_alert("warning", "P001", "R2", "Low battery")
        .await;
    db.exec(
        "INSERT INTO alerts (patient_id, severity, status, message) \
         VALUES ('P001', 'critical', 'acknowledged', 'Already handled')",
    )
    .await;
    let critical = db
        .insert_alert("critical", "P002", "R7", "Cardiac arrest")
        .await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    assert!(spoken(&calls[0].body["ncco"]).contains("Cardiac arrest"));
    // A full sweep runs after the notification too; still one call.
    let engine = app.engine.clone();
    wait_until("a page exists for the critical alert", WAIT, || async {
        engine.store.page_state(&critical).await.unwrap().is_some()
    })
    .await;
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {}", db.table("pages")))
            .await,
        1
    );
    assert_eq!(fake.received().len(), 1);
    app.stop().await;
}
both_backends!(core::only_active_critical_alerts_are_called);

/// The hospital's app may write the severity in any case; the column keeps it as written.
pub async fn critical_in_any_case_is_called(db: TestDb) {
    let fake = FakeVonage::start().await;
    // No sweep within the test: on Postgres the notification alone must bring each in.
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_SWEEP_INTERVAL", "1h")]).await;
    // Called once alertcall listens (its first sweep comes after LISTEN).
    db.insert_alert("critical", "P001", "R2", "Fall detected")
        .await;
    wait_for_calls(&db, &fake, 1).await;
    let capital = db
        .insert_alert("Critical", "P001", "R2", "Seizure activity detected")
        .await;
    let upper = db
        .insert_alert("CRITICAL", "P002", "R7", "Cardiac arrest")
        .await;
    let calls = wait_for_calls(&db, &fake, 3).await;
    let mut spoken: Vec<String> = calls[1..].iter().map(|c| spoken(&c.body["ncco"])).collect();
    spoken.sort();
    assert!(spoken[0].contains("Cardiac arrest"), "{spoken:?}");
    assert!(
        spoken[1].contains("Seizure activity detected"),
        "{spoken:?}"
    );
    // The seed's monitoring sees each alert as the app wrote it, with its call mirrored.
    for call in &calls {
        let row = db.row(&seed_query(call.uuid.as_deref().unwrap())).await;
        assert_eq!(row[0].as_deref(), Some("active"));
    }
    let mut severities = db.rows("SELECT CAST(severity AS TEXT) FROM alerts").await;
    severities.sort();
    assert_eq!(
        severities,
        [
            [Some("CRITICAL".to_string())],
            [Some("Critical".to_string())],
            [Some("critical".to_string())]
        ]
    );
    // The reach listing (critical alerts) has them all.
    let listed = app
        .engine
        .store
        .alert_views(&alertcall::store::AlertFilter {
            severity: Some("critical".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|v| v.alert.id.as_str()).collect();
    assert!(ids.contains(&capital.as_str()), "{ids:?}");
    assert!(ids.contains(&upper.as_str()), "{ids:?}");
    assert_eq!(ids.len(), 3, "{ids:?}");
    app.stop().await;
}
both_backends!(core::critical_in_any_case_is_called);

pub async fn a_restart_mid_flow_loses_nothing(db: TestDb) {
    let fake = FakeVonage::start().await;
    let first = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.insert_alert("critical", "P001", "R2", "First").await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    let first_call = calls[0].clone();
    let first_base = first.url("");
    first.stop().await;

    // While nothing runs, another alert arrives.
    db.insert_alert("critical", "P002", "R7", "Second").await;

    let second = TestApp::spawn(&db, Some(&fake), &[]).await;
    let calls = wait_for_calls(&db, &fake, 2).await;
    assert!(spoken(&calls[1].body["ncco"]).contains("Second"));

    // The first call's nurse presses 1 on the new instance.
    let uuid = first_call.uuid.clone().unwrap();
    let input = input_url(&first_call).replace(&first_base, &second.url(""));
    let r = second
        .webhook(
            &input,
            &input_body(&uuid, "1", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 200);
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    assert_eq!(fake.calls().len(), 2, "nobody was called twice");
    second.stop().await;
}
both_backends!(core::a_restart_mid_flow_loses_nothing);

pub async fn monitoring_queries_count_phone_acknowledgements(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_API_TOKEN", "t0ken")]).await;
    for i in 0..3 {
        db.insert_alert("critical", "P001", "R2", &format!("Alert {i}"))
            .await;
    }
    db.insert_alert("high", "P001", "R2", "Not paged").await;
    // Two rows the hospital wrote itself: one from two hours ago (another hour's bucket), and
    // one whose `metadata.call` has no status (the seed's query still counts it as called).
    let two_hours_ago = match db.backend {
        crate::db::Backend::Postgres => "now() - interval '2 hours'",
        crate::db::Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-2 hours')",
    };
    db.exec(&format!(
        "INSERT INTO alerts (patient_id, room_id, severity, alert_type, message, triggered_at, metadata) \
         VALUES ('P001', 'R2', 'high', 'fall', 'Earlier', {two_hours_ago}, \
                 '{{\"call\": {{\"phone_number\": \"+13854019951\"}}}}')"
    ))
    .await;
    let calls = wait_for_calls(&db, &fake, 3).await;
    // Two nurses press 1; the third call is never acknowledged.
    for call in &calls[..2] {
        let uuid = call.uuid.clone().unwrap();
        let r = app
            .webhook(
                &input_url(call),
                &input_body(&uuid, "1", false),
                Some(SIGNATURE_SECRET),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let third = calls[2].uuid.clone().unwrap();
    app.webhook(
        &event_url(&calls[2]),
        &event_body(&third, "unanswered"),
        Some(SIGNATURE_SECRET),
    )
    .await;

    // The seed's response-rate query.
    let row = db
        .row(
            "SELECT count(*) AS total_calls, \
                    count(*) FILTER (WHERE metadata->'call'->>'call_status' = 'answered') AS answered, \
                    count(*) FILTER (WHERE status = 'acknowledged') AS acknowledged \
             FROM alerts WHERE metadata->'call' IS NOT NULL",
        )
        .await;
    assert_eq!(row, [Some("4".into()), Some("2".into()), Some("2".into())]);
    // The seed's alerts-per-hour query.
    let hourly = match db.backend {
        crate::db::Backend::Postgres => {
            "SELECT severity, count(*) FROM alerts \
             WHERE triggered_at > now() - interval '24 hours' \
             GROUP BY date_trunc('hour', triggered_at), severity ORDER BY severity"
        }
        crate::db::Backend::Sqlite => {
            "SELECT severity, count(*) FROM alerts \
             WHERE julianday(triggered_at) > julianday('now', '-24 hours') \
             GROUP BY strftime('%Y-%m-%dT%H', triggered_at), severity ORDER BY severity"
        }
    };
    assert_eq!(
        db.rows(hourly).await,
        [
            vec![Some("critical".into()), Some("3".into())],
            vec![Some("high".into()), Some("1".into())],
            vec![Some("high".into()), Some("1".into())]
        ]
    );
    let unanswered = db.row(&seed_query(&third)).await;
    assert_eq!(unanswered[0].as_deref(), Some("active"));
    assert_eq!(unanswered[3].as_deref(), Some("unanswered"));

    // The dashboard's analytics over the same rows agree with both queries.
    let analytics = app.get_json("/api/v1/analytics", "t0ken").await;
    let m = &analytics["monitoring"];
    let seed_row: Vec<Option<String>> = [&m["total_calls"], &m["answered"], &m["acknowledged"]]
        .iter()
        .map(|v| Some(v.to_string()))
        .collect();
    assert_eq!(
        seed_row, row,
        "analytics.monitoring = the seed's response-rate query"
    );
    // The seed's per-hour query with its hour shown (in UTC, as analytics gives it).
    let hourly_with_hour = match db.backend {
        crate::db::Backend::Postgres => {
            "SELECT to_char(date_trunc('hour', triggered_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24'), \
                    severity, count(*) FROM alerts \
             WHERE triggered_at > now() - interval '24 hours' \
             GROUP BY date_trunc('hour', triggered_at AT TIME ZONE 'UTC'), severity"
        }
        crate::db::Backend::Sqlite => {
            "SELECT strftime('%Y-%m-%dT%H', triggered_at), severity, count(*) FROM alerts \
             WHERE julianday(triggered_at) > julianday('now', '-24 hours') \
             GROUP BY strftime('%Y-%m-%dT%H', triggered_at), severity"
        }
    };
    let mut per_hour: Vec<Vec<Option<String>>> = analytics["per_hour"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            vec![
                h["hour"].as_str().map(|t| t[..13].to_string()),
                h["severity"].as_str().map(str::to_string),
                Some(h["count"].to_string()),
            ]
        })
        .collect();
    let mut hourly_rows = db.rows(hourly_with_hour).await;
    per_hour.sort();
    hourly_rows.sort();
    assert_eq!(hourly_rows.len(), 3, "three buckets: {hourly_rows:?}");
    assert_eq!(
        per_hour, hourly_rows,
        "analytics.per_hour = the seed's per-hour query, bucket by bucket"
    );
    assert_eq!(analytics["alerts"], 5);
    assert_eq!(analytics["alerts_paged"], 3);
    assert_eq!(analytics["calls"], 3);
    assert_eq!(analytics["calls_answered"], 2);
    assert_eq!(analytics["acknowledged"], 2);
    assert_eq!(
        analytics["exhausted"], 1,
        "the unanswered alert ran out its policy"
    );
    assert_eq!(analytics["time_to_acknowledge"]["count"], 2);
    assert_eq!(analytics["per_nurse"][0]["person"], "nurse");
    assert_eq!(analytics["per_nurse"][0]["calls"], 3);
    assert_eq!(analytics["per_unit"][0]["unit"], "default");

    // The metrics count exactly what happened.
    app.assert_metrics(&[
        ("alertcall_alerts_detected_total", 3.0),
        (
            r#"alertcall_calls_placed_total{provider="vonage",result="placed"}"#,
            3.0,
        ),
        (
            r#"alertcall_call_outcomes_total{provider="vonage",outcome="answered"}"#,
            2.0,
        ),
        (
            r#"alertcall_call_outcomes_total{provider="vonage",outcome="unanswered"}"#,
            1.0,
        ),
        (
            r#"alertcall_webhooks_total{kind="call_input",result="ok"}"#,
            2.0,
        ),
        (
            r#"alertcall_webhooks_total{kind="call_event",result="ok"}"#,
            1.0,
        ),
        (
            r#"alertcall_acknowledgements_total{via="phone",action="acknowledged"}"#,
            2.0,
        ),
        (
            r#"alertcall_menu_choices_total{choice="acknowledge",via="dtmf"}"#,
            2.0,
        ),
        ("alertcall_escalation_steps_total", 3.0),
        ("alertcall_escalations_exhausted_total", 1.0),
        ("alertcall_alert_to_dial_seconds_count", 3.0),
        ("alertcall_alert_to_acknowledge_seconds_count", 2.0),
        ("alertcall_database_errors_total", 0.0),
    ])
    .await;
    // A forged webhook is counted as rejected.
    let r = app
        .webhook(
            &event_url(&calls[0]),
            &event_body(&third, "completed"),
            Some("forged"),
        )
        .await;
    assert_eq!(r.status(), 401);
    app.assert_metrics(&[(
        r#"alertcall_webhooks_total{kind="call_event",result="rejected_signature"}"#,
        1.0,
    )])
    .await;
    app.stop().await;
}

/// The value of one series in a Prometheus text exposition.
pub fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}
both_backends!(core::monitoring_queries_count_phone_acknowledgements);
