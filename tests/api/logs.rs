//! What the real binary logs: JSON lines for log shippers (ALERTCALL_LOG_FORMAT=json), with
//! no phone number, patient name or secret in them at info level.

use std::time::Duration;

use serde_json::Value;

use crate::core::{input_body, input_url, seed_query, wait_for_calls};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{FakeVonage, SIGNATURE_SECRET, post_webhook};
use crate::helpers::wait_until;
use crate::process::Serve;

fn log_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_flow_and_no_patient_data() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let fake = FakeVonage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alertcall.log");
    let serve = Serve::start_logging(
        &db,
        &fake,
        &[("ALERTCALL_LOG_FORMAT", "json"), ("RUST_LOG", "info")],
        &log,
    )
    .await;
    db.seed_people().await;
    db.insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    let uuid = calls[0].uuid.clone().unwrap();
    let body = input_body(&uuid, "1", false);
    let input = input_url(&calls[0]);
    assert!(input.starts_with(&serve.url("/")), "{input}");
    let r = post_webhook(
        &reqwest::Client::new(),
        &input,
        &body,
        Some(SIGNATURE_SECRET),
    )
    .await;
    assert_eq!(r.status(), 200);
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    wait_until(
        "the acknowledgement is logged",
        Duration::from_secs(10),
        || async {
            log_lines(&log)
                .iter()
                .any(|l| l["fields"]["message"] == "ACKNOWLEDGED by phone")
        },
    )
    .await;
    serve.kill9();

    let lines = log_lines(&log);
    for line in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(line.get(key).is_some(), "{key} missing in {line}");
        }
    }
    let calling = lines
        .iter()
        .find(|l| l["fields"]["message"] == "calling nurse")
        .expect("a 'calling nurse' line");
    assert_eq!(calling["level"], "INFO");
    assert_eq!(
        calling["fields"]["to"], "+13*******51",
        "the number is masked"
    );
    assert!(calling["fields"]["alert_id"].is_string());
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        "13854019951",
        "Dheeraj",
        "Vislawath",
        SIGNATURE_SECRET,
        "PRIVATE KEY",
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the log:\n{text}");
    }
}

/// A newline in an alert id (another system writes the alerts table) or a webhook's uuid
/// cannot forge a log line, and a flood of refused webhooks writes one line, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_cannot_forge_log_lines_and_refusals_do_not_flood_the_log() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let fake = FakeVonage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alertcall.log");
    let serve = Serve::start_logging(
        &db,
        &fake,
        &[("VONAGE_SIGNATURE_SECRET", ""), ("RUST_LOG", "info")],
        &log,
    )
    .await;
    let forged = "2026-12-03T10:00:00.000000Z ERROR alertcall: FORGED";
    db.exec(&format!(
        "INSERT INTO alerts (id, patient_id, room_id, severity, alert_type, message) \
         VALUES ('A1' || char(10) || '{forged}', 'P001', 'R2', 'critical', 'seizure', 'Seizure')"
    ))
    .await;
    let calls = wait_for_calls(&db, &fake, 1).await;
    let client = reqwest::Client::new();
    // A uuid with a newline, on the call's own (valid) URL: refused as malformed.
    let body = input_body(&format!("u\n{forged}"), "1", false);
    let r = post_webhook(&client, &input_url(&calls[0]), &body, None).await;
    assert_eq!(r.status(), 400);
    // 200 unsigned webhooks without a token.
    for _ in 0..200 {
        let r = post_webhook(
            &client,
            &serve.url("/api/alerts/call-response"),
            &input_body("u", "1", false),
            None,
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    let metrics = client
        .get(serve.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        crate::core::metric(
            &metrics,
            r#"alertcall_webhooks_total{kind="call_input",result="rejected_signature"}"#
        ),
        Some(200.0),
        "each refusal is counted"
    );
    wait_until("the call is logged", Duration::from_secs(10), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("calling nurse")
    })
    .await;
    serve.kill9();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("A1\\n2026-12-03"),
        "the id is logged, escaped:\n{text}"
    );
    for line in text.lines() {
        assert!(!line.starts_with(forged), "a forged line:\n{text}");
    }
    let refusals = text
        .lines()
        .filter(|l| l.contains("refused a webhook"))
        .count();
    assert!(
        (1..=2).contains(&refusals),
        "{refusals} refusal lines for 201 refusals:\n{text}"
    );
}

/// An alert that reaches nobody is logged at error once (not at every sweep), the heartbeat
/// being withheld once, and the heartbeat URL (a secret) never in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreached_alert_is_logged_once_and_the_heartbeat_url_is_masked() {
    let db = TestDb::new(Backend::Sqlite).await.expect("sqlite");
    let fake = FakeVonage::start().await;
    fake.set_default(|_| crate::fake_vonage::Behaviour::Status(401, None));
    let monitor = crate::reach::Monitor::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("alertcall.log");
    let serve = Serve::start_logging(
        &db,
        &fake,
        &[
            ("ALERTCALL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
            ("ALERTCALL_HEARTBEAT_URL", monitor.url.as_str()),
            ("ALERTCALL_HEARTBEAT_EVERY", "200ms"),
            ("ALERTCALL_FALLBACK_PHONE", "+13854019960"),
        ],
        &log,
    )
    .await;
    wait_until("the heartbeat pings", Duration::from_secs(10), || async {
        monitor.pings() >= 1
    })
    .await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let http = reqwest::Client::new();
    let withheld = || async {
        let text = http
            .get(serve.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        crate::core::metric(&text, "alertcall_heartbeats_total{result=\"withheld\"}").unwrap_or(0.0)
    };
    wait_until(
        "many sweeps go by with the alert unreached",
        Duration::from_secs(30),
        || async { withheld().await >= 10.0 },
    )
    .await;
    serve.kill9();

    let lines = log_lines(&log);
    let unreached: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("NOBODY IS BEING REACHED"))
        })
        .collect();
    assert_eq!(unreached.len(), 1, "{unreached:?}");
    assert_eq!(unreached[0]["level"], "ERROR");
    assert_eq!(unreached[0]["fields"]["alert_id"], alert.as_str());
    assert_eq!(unreached[0]["fields"]["reason"], "provider_down");
    let count = |prefix: &str| {
        lines
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .count()
    };
    assert_eq!(count("heartbeat withheld"), 1);
    assert_eq!(count("the fallback contact cannot be phoned either"), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("monitor-secret"),
        "the heartbeat URL is in the log:\n{text}"
    );
    assert!(
        !text.contains("13854019960"),
        "the fallback number is in the log"
    );
}
