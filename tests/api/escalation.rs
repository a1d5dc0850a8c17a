//! Escalation end to end: backup nurses, failed calls, declines, acknowledgements that hang
//! up the others, alerts resolved elsewhere, and restarts in the middle of a wait.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::both_backends;
use crate::core::{WAIT, event_body, event_url, input_body, input_url, spoken};
use crate::db::TestDb;
use crate::fake_vonage::{Behaviour, FakeVonage, Received, SIGNATURE_SECRET};
use crate::helpers::{TestApp, wait_until};

const PRIMARY: &str = "13854019951";
const BACKUP: &str = "13854019952";

/// A two-step policy: the primary nurse, then the backup, each waited on for `wait`.
pub fn config(wait: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
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
renotify_every = "10m"

[[policies.steps]]
notify = ["person:primary"]
sms = true
wait = "{wait}"

[[policies.steps]]
notify = ["person:backup"]
wait = "{wait}"
"#
        ),
    )
    .unwrap();
    file
}

async fn start(db: &TestDb, fake: &FakeVonage, file: &tempfile::NamedTempFile) -> TestApp {
    let path = file.path().display().to_string();
    TestApp::spawn(db, Some(fake), &[("ALERTCALL_CONFIG", path.as_str())]).await
}

fn to(call: &Received) -> &str {
    call.body["to"][0]["number"].as_str().unwrap()
}

async fn call_to(fake: &FakeVonage, number: &str) -> Received {
    wait_until(&format!("{number} is called"), WAIT, || async {
        fake.calls().iter().any(|c| to(c) == number)
    })
    .await;
    fake.calls().into_iter().find(|c| to(c) == number).unwrap()
}

/// An alert whose first call (to the primary) is ringing, under the two-step policy.
struct Ringing {
    fake: FakeVonage,
    _file: tempfile::NamedTempFile,
    app: TestApp,
    alert: String,
    uuid: String,
}

/// An alert whose first call (to the primary) reached the provider.
struct Called {
    fake: FakeVonage,
    _file: tempfile::NamedTempFile,
    app: TestApp,
    alert: String,
    primary: Received,
}

async fn primary_called(db: &TestDb, wait: &str) -> Called {
    let fake = FakeVonage::start().await;
    let file = config(wait);
    let app = start(db, &fake, &file).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let primary = call_to(&fake, PRIMARY).await;
    Called {
        fake,
        _file: file,
        app,
        alert,
        primary,
    }
}

async fn primary_ringing(db: &TestDb, wait: &str) -> Ringing {
    let Called {
        fake,
        _file,
        app,
        alert,
        primary,
    } = primary_called(db, wait).await;
    let uuid = primary.uuid.clone().unwrap();
    let r = app
        .webhook(
            &event_url(&primary),
            &event_body(&uuid, "ringing"),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 204);
    // The step's wait starts when the page records the call; a test that moves the clock
    // before then would move the wait's start with it.
    wait_until("the page waits for the primary", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("waiting")
    })
    .await;
    Ringing {
        fake,
        _file,
        app,
        alert,
        uuid,
    }
}

/// The wait between the call of a step and the time the next one is due, once the page waits.
async fn recorded_wait(app: &TestApp, alert: &str) -> chrono::Duration {
    wait_until("the page waits for the primary", WAIT, || async {
        app.page_state(alert).await.as_deref() == Some("waiting")
    })
    .await;
    let placed = app.call_of(alert).await.created_at;
    let due = app.engine.store.next_due_at().await.unwrap().unwrap();
    due - placed
}

pub async fn no_answer_calls_the_backup_after_the_wait(db: TestDb) {
    let fake = FakeVonage::start().await;
    let file = config("10m");
    let app = start(&db, &fake, &file).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    call_to(&fake, PRIMARY).await;
    let wait = recorded_wait(&app, &alert).await;
    assert!(
        wait >= chrono::Duration::minutes(10) && wait < chrono::Duration::seconds(605),
        "the next step is due the wait after the call: {wait:?}"
    );
    assert_eq!(fake.calls().len(), 1);
    app.advance(Duration::from_secs(600));
    call_to(&fake, BACKUP).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(escalation::no_answer_calls_the_backup_after_the_wait);

pub async fn a_failed_call_moves_on_at_once(db: TestDb) {
    let Called {
        fake,
        _file,
        app,
        alert,
        primary,
    } = primary_called(&db, "30s").await;
    let uuid = primary.uuid.clone().unwrap();
    let started = Instant::now();
    let r = app
        .webhook(
            &event_url(&primary),
            &event_body(&uuid, "failed"),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(r.status(), 204);
    call_to(&fake, BACKUP).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not after the 30 s wait"
    );
    // The primary is texted, with a way to acknowledge by reply.
    wait_until("the primary is texted", WAIT, || async {
        !fake.messages().is_empty()
    })
    .await;
    let sms = fake.messages().remove(0);
    assert_eq!(sms["to"], PRIMARY);
    let text = sms["text"].as_str().unwrap();
    assert!(
        text.contains("Critical alert") && text.contains("Reply 1 to acknowledge"),
        "{text}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.assert_metrics(&[
        (
            r#"alertcall_sms_sent_total{provider="vonage",result="sent"}"#,
            1.0,
        ),
        (
            r#"alertcall_call_outcomes_total{provider="vonage",outcome="failed"}"#,
            1.0,
        ),
    ])
    .await;
    // A delivery receipt is recorded.
    let receipt = serde_json::json!({"message_uuid": sms["message_uuid"], "to": PRIMARY,
        "from": "447700900001", "timestamp": "2026-11-24T20:16:07.000Z", "status": "delivered",
        "channel": "sms"})
    .to_string();
    let r = app
        .webhook("/api/sms/status", &receipt, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 200);
    // The primary replies 1 while the backup's phone rings: acknowledged, backup hung up.
    let backup = call_to(&fake, BACKUP).await;
    let inbound =
        serde_json::json!({"channel": "sms", "message_uuid": "in-1", "to": "447700900001",
        "from": PRIMARY, "timestamp": "2026-11-24T20:17:00Z", "text": "1", "message_type": "text"})
        .to_string();
    assert_eq!(
        app.webhook("/api/sms/inbound", &inbound, None)
            .await
            .status(),
        401
    );
    let r = app
        .webhook("/api/sms/inbound", &inbound, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        db.scalar(&format!(
            "SELECT acknowledged_by FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await
        .as_deref(),
        Some("sms:+13854019951")
    );
    wait_until("the backup's call is hung up", WAIT, || async {
        fake.hangups() == [backup.uuid.clone().unwrap()]
    })
    .await;
    app.assert_audit(
        &alert,
        &[
            "sms.sent",
            "sms.delivered",
            "alert.acknowledged",
            "call.hung_up",
        ],
    )
    .await;
    // Malformed SMS webhooks get 400.
    for bad in ["{}", "[1]", "{\"from\": 5}"] {
        let r = app
            .webhook("/api/sms/inbound", bad, Some(SIGNATURE_SECRET))
            .await;
        assert!(r.status() == 400, "{bad}");
    }
    app.stop().await;
}
both_backends!(escalation::a_failed_call_moves_on_at_once);

pub async fn pressing_3_declines_and_escalates_at_once(db: TestDb) {
    let fake = FakeVonage::start().await;
    let file = config("30s");
    let app = start(&db, &fake, &file).await;
    db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let primary = call_to(&fake, PRIMARY).await;
    let uuid = primary.uuid.clone().unwrap();
    let r = app
        .webhook(
            &input_url(&primary),
            &input_body(&uuid, "3", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    let ncco: Value = r.json().await.unwrap();
    assert_eq!(
        spoken(&ncco),
        "Understood. Calling Backup nurse next. Goodbye.",
        "{ncco}"
    );
    let started = Instant::now();
    call_to(&fake, BACKUP).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    app.stop().await;
}
both_backends!(escalation::pressing_3_declines_and_escalates_at_once);

pub async fn the_backups_1_hangs_up_the_primary(db: TestDb) {
    let Ringing {
        fake,
        _file,
        app,
        alert,
        uuid: primary_uuid,
    } = primary_ringing(&db, "2m").await;
    // Less than ALERTCALL_WEBHOOK_MAX_AGE, so that the fake's signatures stay fresh.
    app.advance(Duration::from_secs(120));
    let backup = call_to(&fake, BACKUP).await;
    let backup_uuid = backup.uuid.clone().unwrap();
    let r = app
        .webhook(
            &input_url(&backup),
            &input_body(&backup_uuid, "1", false),
            Some(SIGNATURE_SECRET),
        )
        .await;
    assert_eq!(
        spoken(&r.json().await.unwrap()),
        "Alert acknowledged. Thank you."
    );
    wait_until("the primary's call is hung up", WAIT, || async {
        fake.hangups() == [primary_uuid.clone()]
    })
    .await;
    assert_eq!(
        app.page_state(&alert).await.as_deref(),
        Some("acknowledged")
    );
    // Nothing more is sent: the policy's waits pass without another call.
    let engine = app.engine.clone();
    assert_eq!(engine.store.next_due_at().await.unwrap(), None);
    assert_eq!(fake.calls().len(), 2);
    assert_eq!(
        db.scalar(&format!(
            "SELECT acknowledged_by FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await
        .as_deref(),
        Some("phone:+13854019952")
    );
    app.stop().await;
}
both_backends!(escalation::the_backups_1_hangs_up_the_primary);

pub async fn an_alert_resolved_elsewhere_stops_the_escalation(db: TestDb) {
    let Ringing {
        fake,
        _file,
        app,
        alert,
        uuid,
    } = primary_ringing(&db, "60s").await;
    // The hospital app resolves the alert while the primary's phone rings.
    db.exec(&format!(
        "UPDATE alerts SET status = 'resolved' WHERE CAST(id AS TEXT) = '{alert}'"
    ))
    .await;
    let started = Instant::now();
    wait_until("the escalation stops", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("cancelled")
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "well before the 60 s wait"
    );
    wait_until("the ringing call is hung up", WAIT, || async {
        fake.hangups() == [uuid.clone()]
    })
    .await;
    assert_eq!(fake.calls().len(), 1, "the backup is never called");
    app.stop().await;
}
both_backends!(escalation::an_alert_resolved_elsewhere_stops_the_escalation);

pub async fn a_restart_during_a_wait_still_fires_the_next_step_on_time(db: TestDb) {
    let fake = FakeVonage::start().await;
    let file = config("10m");
    let first = start(&db, &fake, &file).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    call_to(&fake, PRIMARY).await;
    let wait = recorded_wait(&first, &alert).await;
    first.stop().await;
    let second = start(&db, &fake, &file).await;
    assert_eq!(
        recorded_wait(&second, &alert).await,
        wait,
        "the durable due time survived the restart"
    );
    assert_eq!(fake.calls().len(), 1);
    second.advance(Duration::from_secs(600));
    call_to(&fake, BACKUP).await;
    second.stop().await;
}
both_backends!(escalation::a_restart_during_a_wait_still_fires_the_next_step_on_time);

/// `kill -HUP` reloads alertcall.toml in the running binary; a broken file is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_configuration() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let file = config("30s");
    let path = file.path().display().to_string();
    let serve =
        crate::process::Serve::start(&db, &fake, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    // The primary moves to a new number; first a typo, which must not be applied. Each
    // version replaces the file whole (as editors and config management do), so a reload
    // never reads one half-written.
    let original = std::fs::read_to_string(file.path()).unwrap();
    let replace = |text: String| {
        let next = file.path().with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, file.path()).unwrap();
    };
    replace(original.replace(PRIMARY, "12"));
    serve.hang_up_signal();
    replace(original.replace(PRIMARY, "13854019959"));
    serve.hang_up_signal();
    // A reload is asynchronous: raise alerts until one is called at the new number.
    let deadline = Instant::now() + WAIT;
    for n in 1.. {
        db.insert_alert("critical", "P001", "R2", &format!("reload-{n}"))
            .await;
        wait_until("the alert is called", WAIT, || async {
            fake.calls().len() >= n
        })
        .await;
        if fake.calls().iter().any(|c| to(c) == "13854019959") {
            break;
        }
        assert!(Instant::now() < deadline, "the reload never took effect");
    }
    assert!(
        fake.calls().iter().all(|c| to(c) != "12"),
        "the broken file was never applied"
    );
}

/// An alertcall.toml created after start is read on `kill -HUP`; the log says what was
/// loaded, and carries no colour codes when it goes to a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reads_an_alertcall_toml_created_after_start() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let serve = crate::process::Serve::start_logging_in(
        &db,
        &fake,
        &[("RUST_LOG", "info")],
        &log,
        dir.path(),
    )
    .await;
    let toml = std::fs::read_to_string(config("30s").path())
        .unwrap()
        .replace(PRIMARY, "13854019959");
    std::fs::write(dir.path().join("alertcall.toml"), toml).unwrap();
    serve.hang_up_signal();
    let deadline = Instant::now() + WAIT;
    for n in 1.. {
        db.insert_alert("critical", "P001", "R2", &format!("created-{n}"))
            .await;
        wait_until("the alert is called", WAIT, || async {
            fake.calls().len() >= n
        })
        .await;
        if fake.calls().iter().any(|c| to(c) == "13854019959") {
            break;
        }
        assert!(Instant::now() < deadline, "the new file was never read");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("alertcall is running") && text.contains("policies=1"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("reloaded alertcall.toml") && !l.contains("staff=0")),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}

/// The on-call API gives the same answer as `alertcall oncall`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oncall_api_answers_who_is_on_call() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/alertcall.example.toml");
    let app = TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_CONFIG", example),
            ("ALERTCALL_API_TOKEN", "t0ken"),
        ],
    )
    .await;
    let get = |path: &str| app.http.get(app.url(path)).bearer_auth("t0ken").send();
    assert_eq!(app.get("/api/v1/oncall").await.status(), 401);
    // 12 March 2026, 20:00 in Denver (MDT, UTC-6): Ana covers Dev's night.
    let r = get("/api/v1/oncall?schedule=icu&at=2026-03-13T02:00:00Z")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let people: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["person"].as_str().unwrap())
        .collect();
    assert_eq!(people, ["ana"]);
    assert_eq!(body[0]["shift"], "override");
    assert_eq!(body[0]["name"], "Ana Souza");
    assert_eq!(
        get("/api/v1/oncall?schedule=nope").await.unwrap().status(),
        404
    );
    assert_eq!(
        get("/api/v1/oncall?at=yesterday").await.unwrap().status(),
        400
    );
    app.stop().await;
}

/// The provider reports the primary's call failed before our request to place it has even
/// returned (the webhook finds the call by `?call=`). The escalation moves on when that
/// request returns, not after the 30 s wait: the dialling step's own "now waiting" write must
/// not undo what the event decided, even after this process claimed the page again.
pub async fn a_call_failing_before_its_dial_returns_still_moves_on(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.script([Behaviour::Slow(Duration::from_secs(2))]);
    let file = config("30s");
    let app = start(&db, &fake, &file).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = app.call_of(&alert).await;
    let url = format!("/api/alerts/call-event?call={}", call.id);
    let uuid = uuid::Uuid::new_v4().to_string();
    let r = app
        .webhook(&url, &event_body(&uuid, "failed"), Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 204);
    let started = Instant::now();
    call_to(&fake, BACKUP).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the backup is called when the first dial returns, not after the wait ({:?})",
        started.elapsed()
    );
    app.stop().await;
}
both_backends!(escalation::a_call_failing_before_its_dial_returns_still_moves_on);

both_backends!(escalation::voicemail_never_acknowledges_and_moves_on);
pub async fn voicemail_never_acknowledges_and_moves_on(db: TestDb) {
    let Called {
        fake,
        _file,
        app,
        alert,
        primary,
    } = primary_called(&db, "30s").await;
    let uuid = primary.uuid.clone().unwrap();
    // Voicemail picks up (Vonage says `answered`), then machine detection says `machine`.
    app.webhook(
        &event_url(&primary),
        &event_body(&uuid, "answered"),
        Some(SIGNATURE_SECRET),
    )
    .await;
    let machine = serde_json::json!({"call_uuid": uuid, "from": "447700900001", "to": PRIMARY,
        "status": "machine", "conversation_uuid": "CON-1", "timestamp": "2026-11-24T20:15:33.517Z"})
    .to_string();
    let r = app
        .webhook(&event_url(&primary), &machine, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 204);
    let started = Instant::now();
    call_to(&fake, BACKUP).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the backup is called at once"
    );
    let row = db
        .row(&format!(
            "SELECT status, metadata->'call'->>'call_status' FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await;
    assert_eq!(
        row[0].as_deref(),
        Some("active"),
        "voicemail is not an acknowledgement"
    );
    app.stop().await;
}

/// `[messages] include_patient_name = false` keeps names out of calls and texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_names_can_be_left_out() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let file = config("30s");
    let text = std::fs::read_to_string(file.path()).unwrap();
    std::fs::write(
        file.path(),
        format!(
            "[messages]\nhospital_name = \"Haven Hospital\"\ninclude_patient_name = false\n{text}"
        ),
    )
    .unwrap();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_CONFIG", path.as_str())]).await;
    db.seed_people().await;
    db.insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let primary = call_to(&fake, PRIMARY).await;
    let spoken_text = spoken(&primary.body["ncco"]);
    assert!(
        spoken_text.starts_with("Critical alert at Haven Hospital. Room 2. Seizure"),
        "{spoken_text}"
    );
    assert!(!spoken_text.contains("Dheeraj"));
    let uuid = primary.uuid.clone().unwrap();
    app.webhook(
        &event_url(&primary),
        &event_body(&uuid, "busy"),
        Some(SIGNATURE_SECRET),
    )
    .await;
    wait_until("the primary is texted", WAIT, || async {
        !fake.messages().is_empty()
    })
    .await;
    let sms = fake.messages()[0]["text"].as_str().unwrap().to_string();
    assert!(!sms.contains("Dheeraj") && sms.contains("Room 2"), "{sms}");
    app.stop().await;
}
