//! The default, offline provider: a simulated phone answered through the HTTP API.

use serde_json::{Value, json};

use crate::both_backends;
use crate::core::{WAIT, seed_query};
use crate::db::TestDb;
use crate::helpers::{TestApp, wait_until};

async fn sim_calls(app: &TestApp) -> Vec<Value> {
    app.get("/api/sim/calls").await.json().await.unwrap()
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.http.post(app.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

pub async fn simulated_phone_answers_and_acknowledges(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[]).await;
    db.seed_people().await;
    db.insert_alert("critical", "P002", "R7", "Fall detected")
        .await;
    wait_until("the simulated phone rings", WAIT, || async {
        sim_calls(&app).await.len() == 1
    })
    .await;
    let call = sim_calls(&app).await.remove(0);
    let id = call["id"].as_str().unwrap().to_string();
    assert_eq!(call["state"], "ringing");
    assert_eq!(call["to"], "+15*******06", "numbers are masked");
    // Pressing before answering is refused.
    let r = post(
        &app,
        &format!("/api/sim/calls/{id}/press"),
        Some(json!({"keys": "1"})),
    )
    .await;
    assert_eq!(r.status(), 409);
    let answered: Value = post(&app, &format!("/api/sim/calls/{id}/answer"), None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        answered["heard"][0]
            .as_str()
            .unwrap()
            .contains("Room 7, patient Ana Souza. Fall detected.")
    );
    let r = post(
        &app,
        &format!("/api/sim/calls/{id}/press"),
        Some(json!({"keys": "x"})),
    )
    .await;
    assert_eq!(r.status(), 400);
    let repeated: Value = post(
        &app,
        &format!("/api/sim/calls/{id}/press"),
        Some(json!({"keys": "2"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(repeated["heard"][1], answered["heard"][0]);
    let done: Value = post(
        &app,
        &format!("/api/sim/calls/{id}/press"),
        Some(json!({"keys": "1"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(done["heard"][2], "Alert acknowledged. Thank you.");
    assert_eq!(done["state"], "ended");
    let row = db.row(&seed_query(&id)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    assert_eq!(row[3].as_deref(), Some("answered"));
    // The simulator's events went through the same path as webhooks.
    let engine = app.engine.clone();
    let alert_id = engine.store.list_calls(None, 1).await.unwrap()[0]
        .alert_id
        .clone();
    wait_until("the hang-up is recorded", WAIT, || async {
        engine
            .store
            .list_events(&alert_id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == "call.completed")
    })
    .await;
    app.assert_audit(
        &alert_id,
        &[
            "call.started",
            "call.ringing",
            "call.picked_up",
            "menu.choice",
            "alert.acknowledged",
        ],
    )
    .await;
    let r = post(&app, "/api/sim/calls/SIM-nope/answer", None).await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}
both_backends!(simulator::simulated_phone_answers_and_acknowledges);

pub async fn simulator_api_needs_the_token_when_set(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_API_TOKEN", "t0ken")]).await;
    assert_eq!(app.get("/api/sim/calls").await.status(), 401);
    let r = post(&app, "/api/sim/calls/SIM-nope/answer", None).await;
    assert_eq!(r.status(), 401, "not even from this machine");
    let r = app
        .http
        .get(app.url("/api/sim/calls"))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}
both_backends!(simulator::simulator_api_needs_the_token_when_set);

/// Without ALERTCALL_API_TOKEN the phones need no credential, but only for requests made
/// straight from this machine: not through a proxy, not to another host name, not from
/// another site.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_use_of_the_phones_is_for_this_machine_only() {
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let app = TestApp::spawn(&db, None, &[]).await;
    let anonymous = |headers: &[(&str, &str)]| {
        let mut req = app.http.get(app.url("/api/sim/calls"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    assert_eq!(anonymous(&[]).await.unwrap().status(), 200);
    let r = anonymous(&[("x-forwarded-for", "203.0.113.9")])
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "through a proxy");
    let message: Value = r.json().await.unwrap();
    assert!(
        message["error"]
            .as_str()
            .unwrap()
            .contains("ALERTCALL_API_TOKEN"),
        "{message}"
    );
    let r = anonymous(&[("forwarded", "for=203.0.113.9")])
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "through a proxy");
    let r = anonymous(&[("host", "rebound.example:8000")])
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a page whose name resolves to 127.0.0.1");
    // A change from a web page of another site is refused; from here it goes through.
    let answer = app.url("/api/sim/calls/SIM-nope/answer");
    let r = app
        .http
        .post(&answer)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = app
        .http
        .post(&answer)
        .header("origin", format!("http://{}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "allowed, but there is no such call");
    app.stop().await;
}

/// With credentials the phones follow the API's roles: a viewer sees them but may not
/// answer or press (1 acknowledges the alert); an admin may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_watch_the_phones_but_not_press_them() {
    use crate::dashboard::{ADMIN_TOKEN, VIEWER_TOKEN, access_file, spawn};
    let db = TestDb::new(crate::db::Backend::Sqlite).await.unwrap();
    let file = access_file();
    let app = spawn(&db, &file).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P002", "R7", "Fall detected")
        .await;
    let as_who = |token: &'static str, path: String, body: Option<Value>| {
        let mut req = app.http.post(app.url(&path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
    };
    let ringing = || async { app.get_json("/api/sim/calls", VIEWER_TOKEN).await };
    wait_until("a viewer sees the phone ring", WAIT, || async {
        ringing().await.as_array().unwrap().len() == 1
    })
    .await;
    let calls = ringing().await;
    let id = calls[0]["id"].as_str().unwrap().to_string();
    let answer = format!("/api/sim/calls/{id}/answer");
    let press = format!("/api/sim/calls/{id}/press");
    let r = as_who(VIEWER_TOKEN, answer.clone(), None).await.unwrap();
    assert_eq!(r.status(), 403, "a viewer may not answer");
    let r = as_who(ADMIN_TOKEN, answer, None).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = as_who(VIEWER_TOKEN, press.clone(), Some(json!({"keys": "1"})))
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer may not press 1");
    let status = format!("SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'");
    assert_eq!(
        db.scalar(&status).await.as_deref(),
        Some("active"),
        "not acknowledged"
    );
    let r = as_who(ADMIN_TOKEN, press, Some(json!({"keys": "1"})))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(db.scalar(&status).await.as_deref(), Some("acknowledged"));
    app.stop().await;
}

/// A simulated call nobody picks up ends `unanswered` after ALERTCALL_RINGING_TIMER, as
/// Vonage's does.
pub async fn an_unanswered_simulated_call_stops_ringing(db: TestDb) {
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_RINGING_TIMER", "1s")]).await;
    db.insert_alert("critical", "P002", "R7", "Fall detected")
        .await;
    wait_until("the simulated call gives up ringing", WAIT, || async {
        sim_calls(&app)
            .await
            .first()
            .is_some_and(|c| c["state"] == "ended")
    })
    .await;
    let engine = app.engine.clone();
    wait_until("the call is recorded unanswered", WAIT, || async {
        engine
            .store
            .list_calls(None, 1)
            .await
            .unwrap()
            .first()
            .is_some_and(|c| c.status.as_str() == "unanswered")
    })
    .await;
}
both_backends!(simulator::an_unanswered_simulated_call_stops_ringing);
