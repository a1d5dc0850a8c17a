//! Webhooks: order, repetition, signatures and malformed bodies.

use serde_json::Value;

use crate::both_backends;
use crate::core::{
    event_body, event_url, input_body, input_url, seed_query, spoken, wait_for_calls,
};
use crate::db::TestDb;
use crate::fake_vonage::{FakeVonage, SIGNATURE_SECRET, sign_webhook};
use crate::helpers::TestApp;

async fn call_status(db: &TestDb, uuid: &str) -> Option<String> {
    db.row(&seed_query(uuid)).await[3].clone()
}

pub async fn events_out_of_order_and_repeated_only_move_forward(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = wait_for_calls(&db, &fake, 1).await.remove(0);
    let uuid = call.uuid.clone().unwrap();
    let url = event_url(&call);
    let send = |status: &'static str| {
        let (app, url, uuid) = (&app, url.clone(), uuid.clone());
        async move {
            let r = app
                .webhook(&url, &event_body(&uuid, status), Some(SIGNATURE_SECRET))
                .await;
            assert_eq!(r.status(), 204, "{status}");
        }
    };
    // Vonage may deliver `answered` before `started` and `ringing`.
    send("answered").await;
    assert_eq!(
        call_status(&db, &uuid).await.as_deref(),
        Some("in_progress")
    );
    send("started").await;
    send("ringing").await;
    send("ringing").await;
    assert_eq!(
        call_status(&db, &uuid).await.as_deref(),
        Some("in_progress")
    );
    send("completed").await;
    assert_eq!(call_status(&db, &uuid).await.as_deref(), Some("completed"));
    send("ringing").await;
    send("answered").await;
    send("completed").await;
    assert_eq!(call_status(&db, &uuid).await.as_deref(), Some("completed"));
    // Each distinct event is recorded once.
    let recorded = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE kind LIKE 'call.%' AND source = 'vonage'",
            db.table("call_events")
        ))
        .await;
    assert_eq!(recorded, 4, "started, ringing, answered, completed");
    // A 1 pressed after a late-arriving end still acknowledges (the strongest fact).
    let r = app
        .webhook(
            &input_url(&call),
            &input_body(&uuid, "1", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(
        spoken(&r.json::<Value>().await.unwrap()),
        "Alert acknowledged. Thank you."
    );
    assert_eq!(call_status(&db, &uuid).await.as_deref(), Some("answered"));
    // The same input delivered again changes nothing and gets the same answer.
    let again = input_body(&uuid, "1", false);
    let r1 = app
        .webhook(&input_url(&call), &again, Some(SIGNATURE_SECRET))
        .await;
    let r2 = app
        .webhook(&input_url(&call), &again, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(
        r1.json::<Value>().await.unwrap(),
        r2.json::<Value>().await.unwrap()
    );
    let acks = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE kind = 'alert.acknowledged'",
            db.table("call_events")
        ))
        .await;
    assert_eq!(acks, 1);
    app.stop().await;
}
both_backends!(webhooks::events_out_of_order_and_repeated_only_move_forward);

pub async fn keypad_menu_repeats_reprompts_and_says_goodbye(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.seed_people().await;
    db.insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let call = wait_for_calls(&db, &fake, 1).await.remove(0);
    let uuid = call.uuid.clone().unwrap();
    let press = |digits: &'static str, timed_out: bool| {
        let (app, url, uuid) = (&app, input_url(&call), uuid.clone());
        async move {
            let r = app
                .webhook(
                    &url,
                    &input_body(&uuid, digits, timed_out),
                    Some(SIGNATURE_SECRET),
                )
                .await;
            assert_eq!(r.status(), 200);
            let ncco: Value = r.json().await.unwrap();
            assert!(crate::fake_vonage::check_ncco(&ncco).is_empty(), "{ncco}");
            ncco
        }
    };
    let repeat = press("2", false).await;
    assert!(
        spoken(&repeat).contains("Room 2, patient Dheeraj Vislawath"),
        "{repeat}"
    );
    assert_eq!(
        repeat[1]["action"], "input",
        "2 repeats and waits for a key again"
    );
    let first = press("7", false).await;
    assert!(spoken(&first).starts_with("Sorry, I did not get that."));
    assert_eq!(first[1]["action"], "input");
    let second = press("", true).await;
    assert_eq!(second[1]["action"], "input");
    let bye = press("", true).await;
    assert_eq!(bye.as_array().unwrap().len(), 1, "goodbye ends the call");
    assert!(spoken(&bye).contains("Goodbye"));
    assert_eq!(
        db.row(&seed_query(&uuid)).await[0].as_deref(),
        Some("active"),
        "no key 1, no acknowledgement"
    );
    app.stop().await;
}
both_backends!(webhooks::keypad_menu_repeats_reprompts_and_says_goodbye);

pub async fn forged_and_unsigned_webhooks_are_refused(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = wait_for_calls(&db, &fake, 1).await.remove(0);
    let uuid = call.uuid.clone().unwrap();
    let body = input_body(&uuid, "1", false);
    let now = chrono::Utc::now().timestamp();
    let tampered_sig = sign_webhook(
        input_body(&uuid, "2", false).as_bytes(),
        SIGNATURE_SECRET,
        now,
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("unsigned", None),
        (
            "wrong secret",
            Some(sign_webhook(body.as_bytes(), "not-the-secret", now)),
        ),
        ("tampered body", Some(tampered_sig)),
        (
            "old iat",
            Some(sign_webhook(body.as_bytes(), SIGNATURE_SECRET, now - 3600)),
        ),
        ("garbage token", Some("Bearer abc.def.ghi".into())),
    ];
    for (what, auth) in cases {
        for url in [input_url(&call), event_url(&call)] {
            let mut req = app.http.post(&url).body(body.clone());
            if let Some(auth) = &auth {
                req = req.header("authorization", auth);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{what} at {url}");
        }
    }
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(
        row[0].as_deref(),
        Some("active"),
        "nothing was acknowledged"
    );
    assert_eq!(row[3].as_deref(), Some("initiated"));
    app.stop().await;
}
both_backends!(webhooks::forged_and_unsigned_webhooks_are_refused);

pub async fn malformed_webhooks_get_400_and_unknown_calls_touch_nothing(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    app.call_of(&alert).await;
    for (path, body) in [
        ("/api/alerts/call-response", "not json"),
        ("/api/alerts/call-response", "[1,2,3]"),
        ("/api/alerts/call-response", "{\"dtmf\":{\"digits\":\"1\"}}"),
        (
            "/api/alerts/call-response",
            "{\"uuid\":\"u\",\"dtmf\":\"1\"}",
        ),
        ("/api/alerts/call-response", "{\"uuid\":\"\",\"dtmf\":{}}"),
        ("/api/alerts/call-event", "{}"),
        ("/api/alerts/call-event", "\"ringing\""),
        ("/api/alerts/call-event", "{\"uuid\": 5"),
    ] {
        let r = app.webhook(path, body, None).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    // Oversized bodies are refused before they are read.
    let huge = format!("{{\"uuid\":\"{}\"}}", "x".repeat(200_000));
    let r = app.webhook("/api/alerts/call-event", &huge, None).await;
    assert_eq!(r.status(), 413);
    // A well-formed webhook for a call we never placed is answered and ignored.
    let r = app
        .webhook(
            "/api/alerts/call-response",
            &input_body("unknown-call", "1", false),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(spoken(&r.json::<Value>().await.unwrap()).contains("does not match"));
    let r = app
        .webhook(
            "/api/alerts/call-event",
            &event_body("unknown-call", "answered"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        db.scalar(&format!(
            "SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await
        .as_deref(),
        Some("active")
    );
    app.stop().await;
}
both_backends!(webhooks::malformed_webhooks_get_400_and_unknown_calls_touch_nothing);
