//! Cutover day (issue 10): alerts older than ALERTCALL_MAX_ALERT_AGE when alertcall first
//! starts are shown as skipped, with the reason, and can be resolved in one go.

use serde_json::Value;

use crate::both_backends;
use crate::core::WAIT;
use crate::dashboard::{ADMIN_TOKEN, VIEWER_TOKEN, access_file, conforms, spawn};
use crate::db::TestDb;
use crate::helpers::{ADMIN_PASSWORD, wait_until};

/// Inserts an active critical alert triggered `hours` ago, as the hospital app had.
pub async fn insert_old_alert(db: &TestDb, hours: u32, message: &str) -> String {
    db.scalar(&format!(
        "INSERT INTO alerts (severity, message, triggered_at) VALUES ('critical', '{message}', \
         {}) RETURNING CAST(id AS TEXT)",
        db.hours_ago(hours)
    ))
    .await
    .expect("alert id")
}

/// A first start over a database that already holds a two-day-old active critical alert
/// (and a fresh one): the old one is skipped, says why with the real age setting, and one
/// request (admin, with CSRF for a session) resolves it, leaving the fresh one alone.
pub async fn skipped_alerts_say_why_and_resolve_in_one_go(db: TestDb) {
    let file = access_file();
    // The hospital's tables exist before alertcall first runs.
    spawn(&db, &file).await.stop().await;
    let old = insert_old_alert(&db, 48, "Old").await;
    let app = crate::helpers::TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_CONFIG", file.path().to_str().unwrap()),
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
            ("ALERTCALL_MAX_ALERT_AGE", "36h"),
        ],
    )
    .await;
    let fresh = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    wait_until("both alerts are seen", WAIT, || async {
        app.page_state(&old).await.is_some() && app.page_state(&fresh).await.is_some()
    })
    .await;
    let view = app
        .get_json(&format!("/api/v1/alerts/{old}"), VIEWER_TOKEN)
        .await;
    assert_eq!(
        view["alert"]["skipped"],
        "skipped: older than 36 h when alertcall started"
    );
    assert_eq!(view["alert"]["live_status"], "skipped");
    let skipped_view = view.clone();
    let fresh_view = app
        .get_json(&format!("/api/v1/alerts/{fresh}"), VIEWER_TOKEN)
        .await;
    assert_eq!(fresh_view["alert"]["skipped"], Value::Null);
    let board = app.get_json("/api/v1/alerts", VIEWER_TOKEN).await;
    let skipped: Vec<&Value> = board
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| !a["skipped"].is_null())
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["id"], old.as_str());

    let path = app.url("/api/v1/alerts/resolve-skipped");
    let r = app.http.post(&path).send().await.unwrap();
    assert_eq!(r.status(), 401, "anonymous");
    let r = app
        .http
        .post(&path)
        .bearer_auth(VIEWER_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a viewer resolves nothing");
    // A signed-in admin needs the CSRF token.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .post(app.url("/login"))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    let r = browser.post(&path).send().await.unwrap();
    assert_eq!(r.status(), 403, "a session without the CSRF token");
    assert_eq!(app.page_state(&old).await.as_deref(), Some("stale"));
    let me: Value = browser
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = browser
        .post(&path)
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .header("origin", format!("http://{}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let documented = |path: &str, method: &str| {
        doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    let mut problems = Vec::new();
    let schema = documented("/api/v1/alerts/resolve-skipped", "post");
    conforms(&doc, &schema, &body, "resolve-skipped", &mut problems);
    let schema = documented("/api/v1/alerts/{id}", "get");
    conforms(&doc, &schema, &skipped_view, "alert", &mut problems);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(body["resolved"], 1);
    assert_eq!(body["ids"], serde_json::json!([old]));
    let view = app
        .get_json(&format!("/api/v1/alerts/{old}"), VIEWER_TOKEN)
        .await;
    assert_eq!(view["alert"]["status"], "resolved");
    let resolved = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "alert.resolved")
        .expect("the resolution is in the timeline");
    assert_eq!(resolved["detail"]["by"], "dashboard:admin");
    let fresh_view = app
        .get_json(&format!("/api/v1/alerts/{fresh}"), VIEWER_TOKEN)
        .await;
    assert_eq!(
        fresh_view["alert"]["status"], "active",
        "a paged alert is left alone"
    );
    // Nothing left: the same request resolves nothing.
    let r = app
        .http
        .post(&path)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["resolved"], 0);
    app.stop().await;
}
both_backends!(cutover::skipped_alerts_say_why_and_resolve_in_one_go);
