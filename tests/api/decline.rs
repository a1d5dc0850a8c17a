//! Honest words after "3" (issue 10): the nurse who cannot respond hears what the escalation
//! will actually do next, and then it does exactly that. On the simulator.

use serde_json::{Value, json};

use crate::both_backends;
use crate::core::WAIT;
use crate::db::{Backend, TestDb};
use crate::helpers::{TestApp, wait_until};

/// The simulated call placed for `alert` to `person`, once it rings (the n-th such call).
pub async fn ringing(app: &TestApp, alert: &str, person: &str, nth: usize) -> String {
    let store = &app.engine.store;
    let ours = || async {
        let mut calls = store.list_calls(Some(alert), 100).await.unwrap();
        calls.retain(|c| c.person.as_deref() == Some(person) && c.provider_call_id.is_some());
        calls.sort_by_key(|c| c.created_at);
        calls
    };
    wait_until(
        &format!("call {nth} to {person} is placed"),
        WAIT,
        || async { ours().await.len() >= nth },
    )
    .await;
    ours().await[nth - 1].provider_call_id.clone().unwrap()
}

pub async fn sim(app: &TestApp, id: &str, action: &str, body: Option<Value>) -> Value {
    let mut req = app
        .http
        .post(app.url(&format!("/api/sim/calls/{id}/{action}")));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "{action}");
    r.json().await.unwrap()
}

/// Answers the call, gives `answer` (keys, or words when it is not a digit) and returns the
/// last thing the phone said.
async fn answer_with(app: &TestApp, id: &str, answer: &str) -> String {
    sim(app, id, "answer", None).await;
    let heard = if answer.chars().all(|c| c.is_ascii_digit()) {
        sim(app, id, "press", Some(json!({"keys": answer}))).await
    } else {
        sim(app, id, "say", Some(json!({"text": answer}))).await
    };
    let heard = heard["heard"].as_array().unwrap();
    heard.last().unwrap().as_str().unwrap().to_string()
}

/// The alert's page due time (API view), as the nurse's clock shows it.
async fn due_at(app: &TestApp, alert: &str) -> chrono::DateTime<chrono::Utc> {
    let store = &app.engine.store;
    let view = store
        .alert_views(&alertcall::store::AlertFilter {
            id: Some(alert.into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    view.page.unwrap().due_at.unwrap()
}

/// "10:35" in this machine's zone (the one-nurse setup names no hospital zone).
fn local_clock(at: chrono::DateTime<chrono::Utc>) -> String {
    jiff::Timestamp::from_millisecond(at.timestamp_millis())
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::system())
        .strftime("%H:%M")
        .to_string()
}

/// Brings the page's next call forward to now, as if its time had come.
async fn make_due_now(db: &TestDb, alert: &str) {
    let now = match db.backend {
        Backend::Postgres => "now()".to_string(),
        Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')".to_string(),
    };
    db.exec(&format!(
        "UPDATE {} SET due_at = {now} WHERE CAST(alert_id AS TEXT) = '{alert}'",
        db.table("pages")
    ))
    .await;
}

/// The seed's setup (NURSE_PHONE_NUMBER only, re-called every 5 minutes) with a fallback
/// number: pressing 3 says there is nobody else, when the nurse is called again, and that the
/// fallback contact is told; and the next call is exactly that.
pub async fn one_nurse_hears_nobody_else_and_when(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_FALLBACK_PHONE", "+13855550199")]).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let first = ringing(&app, &alert, "nurse", 1).await;
    let said = answer_with(&app, &first, "3").await;
    wait_until("the escalation runs out", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("exhausted")
    })
    .await;
    let due = due_at(&app, &alert).await;
    let secs = (due - chrono::Utc::now()).num_seconds();
    assert!((270..=300).contains(&secs), "due in {secs} s");
    assert_eq!(
        said,
        format!(
            "Understood. There is nobody else on the rota. You will be called again at {}, \
             in 5 minutes. The hospital's fallback contact is being told. Goodbye.",
            local_clock(due)
        )
    );
    assert!(!said.contains("next person"), "{said}");
    // What was said is what happens: at that time, the same nurse again.
    make_due_now(&db, &alert).await;
    app.engine.wake();
    let again = ringing(&app, &alert, "nurse", 2).await;
    assert_ne!(again, first);
    app.stop().await;
}
both_backends!(decline::one_nurse_hears_nobody_else_and_when);

fn two_steps() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        r#"
[hospital]
fallback = ["person:charge"]

[[staff]]
id = "charge"
name = "Charge desk"
phone = "+13854019953"

[[staff]]
id = "primary"
name = "Primary nurse"
phone = "+13854019951"

[[staff]]
id = "backup"
name = "Dev Patel"
phone = "+13854019952"

[[policies]]
name = "ward"

[[policies.steps]]
notify = ["person:primary"]
wait = "5m"

[[policies.steps]]
notify = ["person:backup"]
wait = "5m"
"#,
    )
    .unwrap();
    file
}

/// A two-step policy: pressing 3, or saying "busy", names the next person, who is then called
/// at once (long before the five-minute wait); when the last step declines, the fallback
/// contact of `[hospital] fallback` is named.
pub async fn two_steps_hear_the_next_persons_name(db: TestDb) {
    let file = two_steps();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    db.seed_people().await;
    for answer in ["3", "Sorry, I'm busy"] {
        let alert = db
            .insert_alert("critical", "P001", "R2", "Seizure activity detected")
            .await;
        let primary = ringing(&app, &alert, "primary", 1).await;
        let said = answer_with(&app, &primary, answer).await;
        assert_eq!(
            said, "Understood. Calling Dev Patel next. Goodbye.",
            "{answer}"
        );
        // Dev Patel, now the last step, declines too: nobody else, the last step again.
        let backup = ringing(&app, &alert, "backup", 1).await;
        let said = answer_with(&app, &backup, answer).await;
        wait_until("the escalation runs out", WAIT, || async {
            app.page_state(&alert).await.as_deref() == Some("exhausted")
        })
        .await;
        let at = local_clock(due_at(&app, &alert).await);
        assert_eq!(
            said,
            format!(
                "Understood. There is nobody else on the rota. You will be called again at \
                 {at}, in 5 minutes. Charge desk, the hospital's fallback contact, is being \
                 told. Goodbye."
            ),
            "{answer}"
        );
        app.engine
            .resolve_as(
                &alert,
                &alertcall::domain::alert::Acknowledger::named("cli", "test"),
                "cli",
            )
            .await
            .unwrap();
    }
    app.stop().await;
}
both_backends!(decline::two_steps_hear_the_next_persons_name);
