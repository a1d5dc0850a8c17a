//! Webhooks: order, repetition, signatures and malformed bodies.

use serde_json::{Value, json};

use crate::both_backends;
use crate::core::{
    WAIT, event_body, event_url, input_body, input_url, seed_query, spoken, wait_for_calls,
};
use crate::db::TestDb;
use crate::fake_vonage::{FakeVonage, Received, SIGNATURE_SECRET, sign_webhook};
use crate::helpers::{ADMIN_PASSWORD, TestApp, wait_until};

/// A viewer credential for `/api/v1/health`.
const HEALTH_TOKEN: &str = "health-t0ken";

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
            let mut req = app
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone());
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
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    wait_for_calls(&db, &fake, 1).await;
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
        let r = app.webhook(path, body, Some(SIGNATURE_SECRET)).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        let error: Value = r.json().await.unwrap();
        assert!(
            error["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{error}"
        );
    }
    // Oversized bodies are refused before they are read.
    let huge = format!("{{\"uuid\":\"{}\"}}", "x".repeat(200_000));
    let r = app
        .webhook("/api/alerts/call-event", &huge, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 413);
    // A well-formed webhook for a call we never placed is answered and ignored.
    let r = app
        .webhook(
            "/api/alerts/call-response",
            &input_body("unknown-call", "1", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(spoken(&r.json::<Value>().await.unwrap()).contains("does not match"));
    let r = app
        .webhook(
            "/api/alerts/call-event",
            &event_body("unknown-call", "answered"),
            Some(SIGNATURE_SECRET),
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

const PRIMARY: &str = "13854019951";
const BACKUP: &str = "13854019952";

/// The primary nurse (called and texted), then the backup.
fn two_nurses(extra: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
{extra}
[[staff]]
id = "primary"
name = "Primary nurse"
phone = "+{PRIMARY}"
sms = "+{PRIMARY}"

[[staff]]
id = "backup"
name = "Backup nurse"
phone = "+{BACKUP}"

[[policies]]
name = "ward"
severities = ["critical"]

[[policies.steps]]
notify = ["person:primary"]
sms = true
wait = "10m"

[[policies.steps]]
notify = ["person:backup"]
wait = "10m"
"#
        ),
    )
    .unwrap();
    file
}

async fn call_to(fake: &FakeVonage, number: &str) -> Received {
    let to = |c: &Received| c.body["to"][0]["number"].as_str() == Some(number);
    wait_until(&format!("{number} is called"), WAIT, || async {
        fake.calls().iter().any(to)
    })
    .await;
    fake.calls().into_iter().find(to).unwrap()
}

/// POSTs `body` unsigned as JSON.
async fn unsigned(app: &TestApp, url: &str, body: &str) -> reqwest::Response {
    app.webhook(url, body, None).await
}

async fn alert_status(db: &TestDb, alert: &str) -> Option<String> {
    db.scalar(&format!(
        "SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
    ))
    .await
}

async fn readyz(app: &TestApp) -> Value {
    app.get("/readyz").await.json().await.unwrap()
}

/// `alertcall check` as an operator runs it beside this server: the Inbound URL it prints.
fn inbound_url_from_check(db: &TestDb, fake: &FakeVonage, config: &str) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_alertcall"));
    cmd.arg("check").env_clear();
    for (k, v) in fake.env() {
        cmd.env(k, v);
    }
    cmd.env("VONAGE_SIGNATURE_SECRET", "")
        .env("DATABASE_URL", &db.url)
        .env("ALERTCALL_CONFIG", config)
        .env("ALERTCALL_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("per-call token"), "{text}");
    assert!(
        text.contains("! SMS replies do NOT acknowledge"),
        "not all ✓ while SMS replies are off:\n{text}"
    );
    let url = text
        .split_whitespace()
        .find(|w| w.contains("/api/sms/inbound?token="))
        .unwrap_or_else(|| panic!("no Inbound URL in\n{text}"));
    url.to_string()
}

/// The seed's `.env` has no VONAGE_SIGNATURE_SECRET: nothing unsigned acknowledges unless it
/// arrives on a URL alertcall made (the call's own token) or the SMS Inbound URL with its
/// token; the escalation goes on meanwhile.
pub async fn without_a_signature_secret_only_alertcalls_own_urls_act(db: TestDb) {
    let fake = FakeVonage::start().await;
    let file = two_nurses("");
    let config = file.path().display().to_string();
    let app = TestApp::spawn(
        &db,
        Some(&fake),
        &[
            ("VONAGE_SIGNATURE_SECRET", ""),
            ("ALERTCALL_CONFIG", config.as_str()),
            ("ALERTCALL_API_TOKEN", HEALTH_TOKEN),
        ],
    )
    .await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let primary = call_to(&fake, PRIMARY).await;
    let uuid = primary.uuid.clone().unwrap();
    // Vonage has the request; alertcall records the call once Vonage answered it.
    wait_until("alertcall records the placed call", WAIT, || async {
        !db.rows(&seed_query(&uuid)).await.is_empty()
    })
    .await;
    let call_id = event_url(&primary)
        .split("call=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    assert!(
        input_url(&primary).contains("&token="),
        "{}",
        input_url(&primary)
    );
    let ready = readyz(&app).await;
    assert_eq!(ready["webhook_protection"], "per-call-token", "{ready}");
    assert_eq!(ready["sms_reply_ack"], "off", "{ready}");

    // Forged keypad "1"s: no call token, no token, a made-up token, a token for another call.
    let press_1 = input_body(&uuid, "1", false);
    let token = input_url(&primary)
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let other = uuid::Uuid::new_v4();
    for url in [
        "/api/alerts/call-response".to_string(),
        format!("/api/alerts/call-response?call={call_id}"),
        format!(
            "/api/alerts/call-response?call={call_id}&token={}",
            "ab".repeat(32)
        ),
        format!("/api/alerts/call-response?call={other}&token={token}"),
        format!("/api/alerts/call-response?call={call_id}&token={token}x"),
    ] {
        assert_eq!(unsigned(&app, &url, &press_1).await.status(), 401, "{url}");
        let event = format!(
            "{}{}",
            "/api/alerts/call-event",
            url.trim_start_matches("/api/alerts/call-response")
        );
        let r = unsigned(&app, &event, &event_body(&uuid, "completed")).await;
        assert_eq!(r.status(), 401, "{event}");
    }
    // Even signed with someone's guess of a secret: there is none to check it with.
    let r = app
        .webhook("/api/alerts/call-response", &press_1, Some("guess"))
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert_eq!(
        db.row(&seed_query(&uuid)).await[3].as_deref(),
        Some("initiated"),
        "no forged event moved the call"
    );

    // The event URL alertcall gave Vonage works unsigned: the call fails, the primary is
    // texted and the backup called.
    let r = unsigned(&app, &event_url(&primary), &event_body(&uuid, "failed")).await;
    assert_eq!(r.status(), 204);
    let backup = call_to(&fake, BACKUP).await;
    wait_until("the primary is texted", WAIT, || async {
        !fake.messages().is_empty()
    })
    .await;
    // While SMS replies cannot acknowledge, the text does not invite one.
    let text = fake.messages()[0]["text"].as_str().unwrap().to_string();
    assert!(
        !text.contains("Reply 1") && text.contains("Answer the call or use the dashboard"),
        "{text}"
    );
    // The backup's URL (a valid token) cannot act on the primary's call by naming its uuid.
    let r = unsigned(&app, &input_url(&backup), &press_1).await;
    assert_eq!(r.status(), 200);
    assert!(spoken(&r.json::<Value>().await.unwrap()).contains("does not match"));
    // The backup's token does not open the primary's URL.
    let backup_token = input_url(&backup)
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let r = unsigned(
        &app,
        &format!("/api/alerts/call-response?call={call_id}&token={backup_token}"),
        &press_1,
    )
    .await;
    assert_eq!(r.status(), 401);

    // The primary's "1" by SMS, unsigned, anywhere but the Inbound URL with its token: refused.
    let inbound = json!({"channel": "sms", "message_uuid": "in-1", "to": "447700900001",
        "from": PRIMARY, "timestamp": "2026-11-24T20:17:00Z", "text": "1", "message_type": "text"})
    .to_string();
    for url in ["/api/sms/inbound", "/api/sms/inbound?token=guess"] {
        assert_eq!(unsigned(&app, url, &inbound).await.status(), 401, "{url}");
    }
    let receipt = json!({"message_uuid": "x", "to": PRIMARY, "from": "447700900001",
        "timestamp": "2026-11-24T20:16:07.000Z", "status": "delivered", "channel": "sms"})
    .to_string();
    assert_eq!(
        unsigned(&app, "/api/sms/status", &receipt).await.status(),
        401
    );
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert_eq!(readyz(&app).await["sms_reply_ack"], "off");
    // The board's health says so too (it shows a notice while replies cannot acknowledge).
    let health = app.get_json("/api/v1/health", HEALTH_TOKEN).await;
    assert_eq!(health["sms_reply_ack"], "off", "{health}");
    assert_eq!(health["webhook_protection"], "per-call-token", "{health}");
    assert_eq!(health["database_writes"], "ok", "{health}");

    // The Inbound URL `alertcall check` prints acknowledges, and SMS replies are now on.
    let printed = inbound_url_from_check(&db, &fake, &config);
    let token = printed.split("token=").nth(1).unwrap();
    let inbound_url = format!("/api/sms/inbound?token={token}");
    let r = app
        .http
        .post(app.url(&inbound_url))
        .header("content-type", "text/plain")
        .body(inbound.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "a browser's text/plain post");
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert_eq!(unsigned(&app, &inbound_url, &inbound).await.status(), 200);
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("acknowledged")
    );
    assert_eq!(readyz(&app).await["sms_reply_ack"], "on");
    let health = app.get_json("/api/v1/health", HEALTH_TOKEN).await;
    assert_eq!(health["sms_reply_ack"], "on", "{health}");
    assert_eq!(
        unsigned(&app, &format!("/api/sms/status?token={token}"), &receipt)
            .await
            .status(),
        200
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(webhooks::without_a_signature_secret_only_alertcalls_own_urls_act);

/// Without a signature secret, pressing 1 through the URLs alertcall handed Vonage (the
/// create-call NCCO, then the NCCO it answers with) acknowledges.
pub async fn the_urls_handed_to_vonage_keep_working_unsigned(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[("VONAGE_SIGNATURE_SECRET", "")]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = wait_for_calls(&db, &fake, 1).await.remove(0);
    let uuid = call.uuid.clone().unwrap();
    let r = unsigned(&app, &event_url(&call), &event_body(&uuid, "answered")).await;
    assert_eq!(r.status(), 204);
    let r = unsigned(&app, &input_url(&call), &input_body(&uuid, "2", false)).await;
    assert_eq!(r.status(), 200);
    let repeat: Value = r.json().await.unwrap();
    let next = repeat[1]["eventUrl"][0].as_str().unwrap().to_string();
    assert!(next.contains("token="), "{next}");
    let r = unsigned(&app, &next, &input_body(&uuid, "1", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        spoken(&r.json::<Value>().await.unwrap()),
        "Alert acknowledged. Thank you."
    );
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("acknowledged")
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(webhooks::the_urls_handed_to_vonage_keep_working_unsigned);

/// With the signature secret, a `text/plain` body (what a web page can post cross-origin
/// without a preflight) is refused even when signed, and nothing is acknowledged.
pub async fn webhooks_take_only_json(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = wait_for_calls(&db, &fake, 1).await.remove(0);
    let body = input_body(call.uuid.as_deref().unwrap(), "1", false);
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut req = app
            .http
            .post(input_url(&call))
            .header(
                "authorization",
                sign_webhook(
                    body.as_bytes(),
                    SIGNATURE_SECRET,
                    chrono::Utc::now().timestamp(),
                ),
            )
            .body(body.clone());
        if let Some(content_type) = content_type {
            req = req.header("content-type", content_type);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{content_type:?}");
    }
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    app.assert_metrics(&[(
        r#"alertcall_webhooks_total{kind="call_input",result="wrong_content_type"}"#,
        4.0,
    )])
    .await;
    let ready = readyz(&app).await;
    assert_eq!(ready["webhook_protection"], "signed", "{ready}");
    assert_eq!(ready["sms_reply_ack"], "on", "{ready}");
    app.stop().await;
}
both_backends!(webhooks::webhooks_take_only_json);

/// The simulator is driven through `/api/sim/...` only: the provider's webhook routes are
/// not there to post to, and its views hide patient names when the dashboard does.
pub async fn simulator_mounts_no_provider_webhooks_and_hides_names(db: TestDb) {
    let file = two_nurses("[dashboard]\nshow_patient_name = false\n");
    let config = file.path().display().to_string();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", config.as_str())]).await;
    db.seed_people().await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    app.call_of(&alert).await;
    for path in [
        "/api/alerts/call-response",
        "/api/alerts/call-event",
        "/api/sms/inbound",
        "/api/sms/status",
    ] {
        let r = app
            .webhook(
                path,
                &json!({"from": PRIMARY, "text": "1"}).to_string(),
                None,
            )
            .await;
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert_eq!(readyz(&app).await["webhook_protection"], "not-mounted");

    let calls: Vec<Value> = app.get("/api/sim/calls").await.json().await.unwrap();
    let id = calls[0]["id"].as_str().unwrap();
    let r = app
        .http
        .post(app.url(&format!("/api/sim/calls/{id}/answer")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answered: Value = r.json().await.unwrap();
    // Hung up without pressing 1: the primary is texted.
    let r = app
        .http
        .post(app.url(&format!("/api/sim/calls/{id}/hangup")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the primary is texted", WAIT, || async {
        let sms: Vec<Value> = app.get("/api/sim/sms").await.json().await.unwrap();
        !sms.is_empty()
    })
    .await;
    let listed = app.get("/api/sim/calls").await.text().await.unwrap();
    let texts = app.get("/api/sim/sms").await.text().await.unwrap();
    for view in [answered.to_string(), listed, texts] {
        assert!(!view.contains("Dheeraj"), "{view}");
        assert!(!view.contains("Vislawath"), "{view}");
        assert!(view.contains("patient [name hidden]"), "{view}");
    }
    app.stop().await;
}
both_backends!(webhooks::simulator_mounts_no_provider_webhooks_and_hides_names);

/// RFC 7235: the scheme is case-insensitive, for the API as for the webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_case_bearer_is_accepted_by_the_api() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_API_TOKEN", "t0ken")]).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = app
            .http
            .get(app.url("/api/v1/alerts"))
            .header("authorization", format!("{scheme} t0ken"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    app.stop().await;
}
