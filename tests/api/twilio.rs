//! Twilio alone, end to end: the call reaches the fake Twilio as its API defines it, the
//! nurse presses 1 (or says yes) and the alert is acknowledged; status callbacks move the
//! call forward only; a text goes out and a "1" back acknowledges; nothing unsigned,
//! forged or tampered changes anything. And Twilio's own helper library as the oracle for
//! the signatures.

use std::process::Command;

use serde_json::Value;

use crate::both_backends;
use crate::core::{WAIT, seed_query};
use crate::db::TestDb;
use crate::fake_twilio::{self, AUTH_TOKEN, FakeTwilio, Form, Received, parse_twiml, post_form};
use crate::helpers::{TestApp, run_tool, tools_present, wait_until};

const PRIMARY: &str = "+13854019951";

async fn spawn(db: &TestDb, fake: &FakeTwilio, extra: &[(&str, &str)]) -> TestApp {
    let env = fake.env();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend_from_slice(extra);
    TestApp::spawn(db, None, &vars).await
}

/// Waits until the first call reached the fake Twilio and alertcall has recorded it
/// placed and waits for an acknowledgement.
async fn first_call(db: &TestDb, fake: &FakeTwilio) -> Received {
    wait_until("the call reaches the fake Twilio", WAIT, || async {
        !fake.calls().is_empty()
    })
    .await;
    let call = fake.calls().remove(0);
    let sid = call.sid.clone().unwrap();
    let recorded = format!(
        "SELECT count(*) FROM {} WHERE provider_call_id = '{sid}' AND status <> 'pending'",
        db.table("calls")
    );
    wait_until("alertcall records the placed call", WAIT, || async {
        db.count(&recorded).await == 1
    })
    .await;
    let waiting = format!(
        "SELECT count(*) FROM {} WHERE state = 'waiting'",
        db.table("pages")
    );
    wait_until("the page waits for an acknowledgement", WAIT, || async {
        db.count(&waiting).await == 1
    })
    .await;
    call
}

fn form(pairs: &[(&str, &str)]) -> Form {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn a_nurse_on_twilio_presses_1(db: TestDb) {
    let fake = FakeTwilio::start().await;
    let app = spawn(&db, &fake, &[("ALERTCALL_RINGING_TIMER", "25s")]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = first_call(&db, &fake).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(call.get("To"), Some(PRIMARY));
    assert_eq!(call.get("From"), Some(fake_twilio::FROM_NUMBER));
    assert_eq!(call.get("Timeout"), Some("25"));
    assert_eq!(call.get("MachineDetection"), Some("Enable"));
    let menu = call.twiml();
    assert!(menu.said().contains("Press 1"), "{}", menu.said());
    let sid = call.sid.clone().unwrap();

    // Progress, out of order: a late `ringing` after `in-progress` changes nothing.
    for status in ["initiated", "in-progress", "ringing"] {
        let r = fake.status(&app.http, &call, status, &[]).await;
        assert_eq!(r.status(), 204, "{status}");
    }
    let row = db.row(&seed_query(&sid)).await;
    assert_eq!(row[3].as_deref(), Some("in_progress"), "{row:?}");
    let r = fake
        .status(&app.http, &call, "in-progress", &[("AnsweredBy", "human")])
        .await;
    assert_eq!(r.status(), 204);

    // Press 1.
    let (status, reply) = fake.gather(&app.http, &call, &menu, "1", &[]).await;
    assert_eq!(status, 200, "{reply}");
    let reply = parse_twiml(&reply).unwrap();
    assert!(reply.said().contains("acknowledged"), "{}", reply.said());
    assert_eq!(reply.verbs(), ["Say", "Hangup"]);
    let row = db.row(&seed_query(&sid)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"), "{row:?}");
    assert_eq!(row[3].as_deref(), Some("answered"));
    let provider = db
        .scalar(&format!(
            "SELECT metadata->'call'->>'provider' FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await;
    assert_eq!(provider.as_deref(), Some("twilio"));
    let r = fake
        .status(&app.http, &call, "completed", &[("CallDuration", "14")])
        .await;
    assert_eq!(r.status(), 204);
    app.assert_audit(
        &alert,
        &[
            "call.started",
            "call.picked_up",
            "call.human",
            "call.completed",
        ],
    )
    .await;
    app.assert_metrics(&[
        (
            r#"alertcall_calls_placed_total{provider="twilio",result="placed"}"#,
            1.0,
        ),
        (
            r#"alertcall_webhooks_total{kind="call_input",result="ok"}"#,
            1.0,
        ),
        (
            r#"alertcall_webhooks_total{kind="call_event",result="ok"}"#,
            5.0,
        ),
    ])
    .await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(twilio::a_nurse_on_twilio_presses_1);

pub async fn silence_asks_again_and_yes_acknowledges(db: TestDb) {
    let fake = FakeTwilio::start().await;
    let app = spawn(&db, &fake, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = first_call(&db, &fake).await;
    let menu = call.twiml();
    fake.status(&app.http, &call, "in-progress", &[("AnsweredBy", "human")])
        .await;
    // Nothing pressed (actionOnEmptyResult): the menu again, as its own Gather.
    let (status, again) = fake.gather(&app.http, &call, &menu, "", &[]).await;
    assert_eq!(status, 200, "{again}");
    let again = parse_twiml(&again).unwrap();
    assert_eq!(fake_twilio::check_menu(&again), Vec::<String>::new());
    assert_eq!(app.page_state(&alert).await.as_deref(), Some("waiting"));
    // A machine's greeting never acknowledges; a person's "yes" does.
    let (status, reply) = fake
        .gather(
            &app.http,
            &call,
            &again,
            "",
            &[("SpeechResult", "Yes, on my way."), ("Confidence", "0.93")],
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        parse_twiml(&reply).unwrap().said().contains("acknowledged"),
        "{reply}"
    );
    assert_eq!(
        app.page_state(&alert).await.as_deref(),
        Some("acknowledged")
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(twilio::silence_asks_again_and_yes_acknowledges);

/// Unsigned, forged (another token), tampered (other parameters or another URL than the
/// ones signed) and wrong-format webhooks are refused and change nothing.
pub async fn unverified_webhooks_change_nothing(db: TestDb) {
    let fake = FakeTwilio::start().await;
    let app = spawn(&db, &fake, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = first_call(&db, &fake).await;
    let sid = call.sid.clone().unwrap();
    let action = call
        .twiml()
        .find("Gather")
        .and_then(|g| g.attr("action"))
        .unwrap()
        .to_string();
    let status_url = call.get("StatusCallback").unwrap().to_string();
    let press = form(&[
        ("CallSid", &sid),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("Digits", "1"),
    ]);
    let answered = form(&[
        ("CallSid", &sid),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("CallStatus", "in-progress"),
    ]);
    let post = |url: String, body: Form, signature: Option<String>| {
        let http = app.http.clone();
        async move {
            let text = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(body.iter())
                .finish();
            let mut request = http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(text);
            if let Some(signature) = signature {
                request = request.header("x-twilio-signature", signature);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    let sign = |token: &str, url: &str, body: &Form| {
        alertcall::telephony::twilio::signature::sign(token, url, body)
    };
    // Unsigned.
    assert_eq!(
        post_form(&app.http, &action, &press, None).await.status(),
        401
    );
    assert_eq!(
        post_form(&app.http, &status_url, &answered, None)
            .await
            .status(),
        401
    );
    // Forged: signed with another token.
    assert_eq!(
        post_form(&app.http, &action, &press, Some("another-token"))
            .await
            .status(),
        401
    );
    // Tampered: the signature of "2", sent with "1".
    let two = form(&[
        ("CallSid", &sid),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("Digits", "2"),
    ]);
    assert_eq!(
        post(
            action.clone(),
            press.clone(),
            Some(sign(AUTH_TOKEN, &action, &two))
        )
        .await,
        401
    );
    // Tampered: signed for another call's URL.
    let other = format!(
        "{}?call={}",
        action.split('?').next().unwrap(),
        uuid::Uuid::new_v4()
    );
    assert_eq!(
        post(
            action.clone(),
            press.clone(),
            Some(sign(AUTH_TOKEN, &other, &press))
        )
        .await,
        401
    );
    assert_eq!(
        post(
            other.clone(),
            press.clone(),
            Some(sign(AUTH_TOKEN, &action, &press))
        )
        .await,
        401
    );
    // Another account's webhook, even signed with our token, is not ours.
    let foreign = form(&[
        ("CallSid", &sid),
        ("AccountSid", "AC99999999999999999999999999999999"),
        ("Digits", "1"),
    ]);
    assert_eq!(
        post(
            action.clone(),
            foreign.clone(),
            Some(sign(AUTH_TOKEN, &action, &foreign))
        )
        .await,
        401
    );
    // A signature scheme alertcall does not check is refused, not waved through.
    let r = app
        .http
        .post(&action)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", sign(AUTH_TOKEN, &action, &press))
        .header(
            "x-twilio-webhooks-signature-settings",
            "key=KS1,algorithm=HMAC_SHA256",
        )
        .body(format!(
            "CallSid={sid}&AccountSid={}&Digits=1",
            fake_twilio::ACCOUNT_SID
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // JSON is not what Twilio sends.
    let r = app
        .http
        .post(&action)
        .header("content-type", "application/json")
        .body("{\"Digits\":\"1\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Signed but malformed: 400, and nothing changes either.
    let bad = form(&[
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("CallStatus", "ringing"),
    ]);
    assert_eq!(
        post(
            status_url.clone(),
            bad.clone(),
            Some(sign(AUTH_TOKEN, &status_url, &bad))
        )
        .await,
        400
    );

    assert_eq!(app.page_state(&alert).await.as_deref(), Some("waiting"));
    let row = db.row(&seed_query(&sid)).await;
    assert_eq!(row[0].as_deref(), Some("active"), "{row:?}");
    assert_eq!(row[3].as_deref(), Some("initiated"), "{row:?}");
    let audit: Vec<String> = app
        .engine
        .store
        .list_events(&alert)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !audit
            .iter()
            .any(|k| k.starts_with("menu.") || k == "call.picked_up"),
        "{audit:?}"
    );
    app.assert_metrics(&[(
        r#"alertcall_webhooks_total{kind="call_input",result="rejected_signature"}"#,
        7.0,
    )])
    .await;
    // The genuine article still works.
    let (status, _) = fake.gather(&app.http, &call, &call.twiml(), "1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        app.page_state(&alert).await.as_deref(),
        Some("acknowledged")
    );
    app.stop().await;
}
both_backends!(twilio::unverified_webhooks_change_nothing);

/// A failed call texts the nurse through Twilio's Messages resource; the delivery status
/// is recorded and a "1" back acknowledges.
pub async fn a_text_goes_out_and_1_back_acknowledges(db: TestDb) {
    let fake = FakeTwilio::start().await;
    // The primary nurse (texted when a call fails), then a backup.
    let file = crate::escalation::config("30s");
    let path = file.path().display().to_string();
    let app = spawn(&db, &fake, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = first_call(&db, &fake).await;
    assert_eq!(
        fake.status(&app.http, &call, "busy", &[]).await.status(),
        204
    );
    wait_until("the nurse is texted", WAIT, || async {
        !fake.messages().is_empty()
    })
    .await;
    let sms = fake.messages().remove(0);
    assert_eq!(fake_twilio::field(&sms, "To"), Some(PRIMARY));
    let text = fake_twilio::field(&sms, "Body").unwrap();
    assert!(text.contains("Reply 1 to acknowledge"), "{text}");
    assert_eq!(fake.violations(), Vec::<String>::new());
    let base = app.url("/webhooks/twilio");
    let receipt = form(&[
        ("MessageSid", fake_twilio::field(&sms, "Sid").unwrap()),
        ("MessageStatus", "delivered"),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
    ]);
    let status_url = fake_twilio::field(&sms, "StatusCallback")
        .unwrap()
        .to_string();
    assert_eq!(status_url, format!("{base}/sms-status"));
    assert_eq!(
        post_form(&app.http, &status_url, &receipt, Some(AUTH_TOKEN))
            .await
            .status(),
        204
    );
    let inbound = form(&[
        ("MessageSid", "SM00000000000000000000000000000001"),
        ("AccountSid", fake_twilio::ACCOUNT_SID),
        ("From", PRIMARY),
        ("To", fake_twilio::FROM_NUMBER),
        ("Body", "1"),
        ("NumMedia", "0"),
    ]);
    let inbound_url = format!("{base}/sms");
    assert_eq!(
        post_form(&app.http, &inbound_url, &inbound, None)
            .await
            .status(),
        401
    );
    let acknowledged_by =
        format!("SELECT acknowledged_by FROM alerts WHERE CAST(id AS TEXT) = '{alert}'");
    assert_eq!(db.scalar(&acknowledged_by).await, None);
    let r = post_form(&app.http, &inbound_url, &inbound, Some(AUTH_TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<Response>"));
    assert_eq!(
        db.scalar(&acknowledged_by).await.as_deref(),
        Some("sms:+13854019951")
    );
    app.assert_audit(&alert, &["sms.sent", "sms.delivered"])
        .await;
    app.assert_metrics(&[(
        r#"alertcall_sms_sent_total{provider="twilio",result="sent"}"#,
        1.0,
    )])
    .await;
    app.stop().await;
}
both_backends!(twilio::a_text_goes_out_and_1_back_acknowledges);

/// A server error is retried; the call, once placed, is hung up when the hospital's app
/// acknowledges the alert elsewhere (`Status=completed`).
pub async fn retried_then_hung_up_when_acknowledged_elsewhere(db: TestDb) {
    let fake = FakeTwilio::start().await;
    fake.script([fake_twilio::Behaviour::Status(500, None)]);
    let app = spawn(&db, &fake, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = first_call(&db, &fake).await;
    assert_eq!(fake.received().len(), 2, "a 500, then the call");
    let sid = call.sid.clone().unwrap();
    assert_eq!(
        fake.status(&app.http, &call, "ringing", &[]).await.status(),
        204
    );
    db.exec(&format!(
        "UPDATE alerts SET status = 'acknowledged' WHERE CAST(id AS TEXT) = '{alert}'"
    ))
    .await;
    wait_until("the ringing call is hung up", WAIT, || async {
        fake.hangups() == [sid.clone()]
    })
    .await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(twilio::retried_then_hung_up_when_acknowledged_elsewhere);

/// Refused credentials are a configuration error, said by the provider's readiness.
pub async fn refused_credentials_make_the_provider_unready(db: TestDb) {
    let fake = FakeTwilio::start().await;
    let app = spawn(
        &db,
        &fake,
        &[("TWILIO_AUTH_TOKEN", "ffffffffffffffffffffffffffffffff")],
    )
    .await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = app.call_of(&alert).await;
    wait_until("the call attempt fails", WAIT, || async {
        app.engine.store.list_calls(Some(&alert), 1).await.unwrap()[0]
            .error
            .is_some()
    })
    .await;
    let error = app.engine.store.list_calls(Some(&alert), 1).await.unwrap()[0]
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("401") && error.contains("TWILIO_AUTH_TOKEN"),
        "{error}"
    );
    assert!(
        !error.contains("ffffffff"),
        "the token is never said: {error}"
    );
    let _ = call;
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["provider"], "twilio");
    assert_eq!(ready["provider_status"], "unavailable", "{ready}");
    assert_eq!(ready["webhook_protection"], "signed");
    app.stop().await;
}
both_backends!(twilio::refused_credentials_make_the_provider_unready);

/// Twilio's own Python helper library (`twilio` on PyPI, RequestValidator) agrees with
/// alertcall on every signature: ones it makes verify here, ones alertcall makes validate
/// there, across ports, repeated parameters and non-ASCII text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilios_own_validator_agrees() {
    let venv = std::env::var("ALERTCALL_VENV").unwrap_or_else(|_| {
        format!(
            "{}/.cache/alertcall-venv",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let python = [format!("{venv}/bin/python"), "python3".to_string()]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import twilio.request_validator"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let missing = match &python {
        Some(_) => vec![],
        None => vec!["the Python twilio package (pip install twilio==9.13.0)".to_string()],
    };
    if !tools_present("twilio oracle", &missing, "ALERTCALL_REQUIRE_TWILIO_ORACLE") {
        return;
    }
    let urls = [
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        "https://alertcall.example.org/webhooks/twilio/gather?call=6f1c2b9e-8d44-4c4a-9d7e-0a1b2c3d4e5f",
        "http://127.0.0.1:8000/webhooks/twilio/status?call=1",
        "http://alertcall.local/webhooks/twilio/sms",
    ];
    let mut cases = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let params: Vec<(String, String)> = vec![
            ("CallSid".into(), format!("CA{i:032x}")),
            ("Digits".into(), "1".into()),
            (
                "SpeechResult".into(),
                "Oui, j'arrive — tout de suite ✓".into(),
            ),
            ("Sid".into(), "CA123".into()),
            ("SidAccount".into(), "AC123".into()),
            ("Body".into(), "1 4821 & more=yes".into()),
        ];
        cases.push(serde_json::json!({"url": url, "params": params}));
    }
    let repeated = vec![
        ("Digits".to_string(), "5678".to_string()),
        ("Digits".to_string(), "1234".to_string()),
        ("Digits".to_string(), "1234".to_string()),
    ];
    cases.push(serde_json::json!({"url": urls[0], "params": repeated}));
    let token = "8c5f0a1e2d3b4c5d6e7f8091a2b3c4d5";
    let ours: Vec<String> = cases
        .iter()
        .map(|c| {
            let params: Vec<(String, String)> =
                serde_json::from_value(c["params"].clone()).unwrap();
            alertcall::telephony::twilio::signature::sign(
                token,
                c["url"].as_str().unwrap(),
                &params,
            )
        })
        .collect();
    let script = r#"
import json, sys
from twilio.request_validator import RequestValidator
token, cases, ours = json.loads(sys.argv[1])
class Form(dict):
    """A form with repeated names, read the way RequestValidator reads Flask's MultiDict."""
    def getall(self, name):
        return self[name]
v = RequestValidator(token)
out = []
for case, sig in zip(cases, ours):
    params = Form()
    for k, val in case["params"]:
        params.setdefault(k, []).append(val)
    out.append({"theirs": v.compute_signature(case["url"], params),
                "valid": v.validate(case["url"], params, sig)})
print(json.dumps(out))
"#;
    let mut run = Command::new(python.unwrap());
    run.args([
        "-c",
        script,
        &serde_json::json!([token, cases, ours]).to_string(),
    ]);
    let out: Value = serde_json::from_str(run_tool(run, "python twilio").await.trim()).unwrap();
    for (i, (case, answer)) in cases.iter().zip(out.as_array().unwrap()).enumerate() {
        assert_eq!(
            answer["valid"], true,
            "twilio-python refuses our signature for {case}"
        );
        let params: Vec<(String, String)> = serde_json::from_value(case["params"].clone()).unwrap();
        let theirs = answer["theirs"].as_str().unwrap();
        assert_eq!(
            alertcall::telephony::twilio::signature::verify(
                token,
                case["url"].as_str().unwrap(),
                &params,
                Some(theirs),
                None
            ),
            Ok(()),
            "case {i}: twilio-python's signature {theirs} for {case}"
        );
    }
}
