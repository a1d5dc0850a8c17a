//! `alertcall test-call`: the real binary asks the running server for a test call, which goes
//! through the fake Vonage (the real create-call, per-call webhook URLs and menu) or rings a
//! simulated phone; pressing 1 passes, anything else is reported, and no alert is touched.

use std::process::Output;

use serde_json::{Value, json};

use crate::both_backends;
use crate::cli::{run, stderr, stdout};
use crate::core::{
    WAIT, event_body, event_url, input_body, input_url, signed_event, spoken, wait_for_calls,
};
use crate::dashboard::{ADMIN_TOKEN, VIEWER_TOKEN};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{Behaviour, FakeVonage};
use crate::helpers::{TestApp, wait_until};

const GREETING: &str = "This is a test call from alertcall. Press 1 to confirm you can hear this. \
                        You can also say yes.";
const CONFIRMED: &str =
    "Thank you. The test worked: alertcall can reach you on this phone. Goodbye.";

/// Runs `alertcall <args>` against the test server in the background, as an operator would
/// (with the admin token in its environment).
fn cli(app: &TestApp, args: &[&str]) -> tokio::task::JoinHandle<Output> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let listen = app.addr.to_string();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = [
            ("ALERTCALL_LISTEN", listen.as_str()),
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
        ];
        run(&args, &env, dir.path())
    })
}

/// Everything the command printed, for assertion messages.
fn printed(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Our id of a call placed through the fake Vonage, from the webhook URL it was given.
fn call_id(call: &crate::fake_vonage::Received) -> String {
    let url = event_url(call);
    let start = url.find("call=").unwrap() + "call=".len();
    url[start..start + 36].to_string()
}

/// The alert is as the hospital left it: active, its escalation waiting on its own call, no
/// audit entry of a test call in its timeline.
async fn alert_untouched(app: &TestApp, db: &TestDb, alert: &str) {
    assert_eq!(
        db.scalar("SELECT status FROM alerts").await.as_deref(),
        Some("active")
    );
    assert_eq!(app.page_state(alert).await.as_deref(), Some("waiting"));
    let timeline = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE alert_id = '{alert}' \
             AND (kind LIKE 'test_call%' OR kind = 'alert.acknowledged')",
            db.table("call_events")
        ))
        .await;
    assert_eq!(timeline, 0);
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {}", db.table("calls")))
            .await,
        1,
        "the test call is no call of an alert"
    );
}

/// Through Vonage with per-call webhook URLs (no signature secret): the test call goes to
/// the same nurse who is being called about an active critical alert, says the test
/// announcement and nothing of the alert, and pressing 1 on it passes the test while the
/// alert stays active and its own call keeps ringing.
pub async fn a_vonage_test_call_passes_on_1_and_touches_no_alert(db: TestDb) {
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(
        &db,
        Some(&fake),
        &[
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
            ("VONAGE_SIGNATURE_SECRET", ""),
        ],
    )
    .await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    wait_for_calls(&db, &fake, 1).await;

    let command = cli(&app, &["test-call", "nurse", "--wait", "60s"]);
    wait_until("the test call reaches the fake Vonage", WAIT, || async {
        fake.calls().len() == 2
    })
    .await;
    let call = fake.calls().remove(1);
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(call.body["to"][0]["number"], "13854019951");
    assert_eq!(spoken(&call.body["ncco"]), GREETING);
    assert!(
        !call.body.to_string().contains("Dheeraj") && !call.body.to_string().contains("Seizure"),
        "no patient data: {}",
        call.body
    );
    let uuid = call.uuid.clone().unwrap();
    let forged = event_url(&call).replace("token=", "token=0");
    let r = app
        .webhook(&forged, &event_body(&uuid, "ringing"), None)
        .await;
    assert_eq!(r.status(), 401, "only the URL alertcall made acts");
    for status in ["started", "ringing", "answered"] {
        let r = app
            .webhook(&event_url(&call), &event_body(&uuid, status), None)
            .await;
        assert_eq!(r.status(), 204, "{status}");
    }
    let r = app
        .webhook(&input_url(&call), &input_body(&uuid, "1", false), None)
        .await;
    assert_eq!(r.status(), 200);
    let ncco: Value = r.json().await.unwrap();
    assert!(crate::fake_vonage::check_ncco(&ncco).is_empty(), "{ncco}");
    assert_eq!(spoken(&ncco), CONFIRMED);
    let r = app
        .webhook(&event_url(&call), &event_body(&uuid, "completed"), None)
        .await;
    assert_eq!(r.status(), 204);

    let out = command.await.unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", printed(&out));
    assert!(
        text.contains("to +13*******51 (Nurse on call (NURSE_PHONE_NUMBER), nurse) through vonage"),
        "{text}"
    );
    assert!(text.contains("  placing: placing the call"), "{text}");
    assert!(
        text.contains("✓ acknowledged: 1 was pressed: the phone rang, heard the announcement"),
        "{text}"
    );
    assert!(!text.contains("3854019951"), "numbers are masked: {text}");

    let id = call_id(&call);
    let view = app
        .get_json(&format!("/api/v1/test-calls/{id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(view["state"], "acknowledged");
    assert_eq!(view["passed"], true);
    assert_eq!(view["requested_by"], "api:ALERTCALL_API_TOKEN");
    assert_eq!(view["provider_call_id"], uuid.as_str());
    alert_untouched(&app, &db, &alert).await;
    assert!(
        fake.hangups().is_empty(),
        "the alert's call is left ringing"
    );
    let history = app.get_json("/api/v1/calls", ADMIN_TOKEN).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    // The audit trail has the test call, under no alert.
    let recorded = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE alert_id IS NULL AND call_id = '{id}' \
             AND kind IN ('test_call.placing', 'test_call.calling', 'test_call.acknowledged')",
            db.table("call_events")
        ))
        .await;
    assert_eq!(recorded, 3);
    app.stop().await;
}
both_backends!(test_call::a_vonage_test_call_passes_on_1_and_touches_no_alert);

/// A call the provider refuses, one nobody answers and one with no news before `--wait` runs
/// out: each is printed with its reason and what to do, and the command fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_failures_are_reported_with_the_reason() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_API_TOKEN", ADMIN_TOKEN)]).await;

    fake.script([Behaviour::Status(400, None)]);
    let out = cli(&app, &["test-call", "+13854019952"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let text = stdout(&out);
    assert!(
        text.contains(
            "✗ failed: the call failed: Vonage answered 400: Bad Request: Invalid number; to: \
             invalid_number"
        ),
        "{text}"
    );
    assert!(text.contains("Fix what the provider says"), "{text}");

    let command = cli(&app, &["test-call", "+13854019952", "--wait", "60s"]);
    wait_until("the second test call is placed", WAIT, || async {
        fake.calls().len() == 1
    })
    .await;
    let call = fake.calls().remove(0);
    for status in ["started", "ringing", "unanswered", "completed"] {
        let r = signed_event(&app, &call, status).await;
        assert_eq!(r.status(), 204, "{status}");
    }
    let out = command.await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let text = stdout(&out);
    assert!(text.contains("✗ no_answer: nobody answered"), "{text}");
    assert!(text.contains("Check the number"), "{text}");

    // Accepted, and then nothing from Vonage (its webhooks cannot reach us).
    let out = cli(&app, &["test-call", "+13854019952", "--wait", "1s"])
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
    let text = stdout(&out);
    assert!(text.contains("✗ no outcome within 1 s"), "{text}");
    assert!(text.contains("ALERTCALL_PUBLIC_URL"), "{text}");
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {}", db.table("calls")))
            .await,
        0
    );
    app.stop().await;
}

/// GETs `path` as the admin.
async fn admin_get(app: &TestApp, path: &str) -> Value {
    app.get_json(path, ADMIN_TOKEN).await
}

/// On the simulator the test call rings a virtual phone next to the alert's own call to the
/// same number: `sim answer` and `sim press <call> 1` pass the test, the alert stays active;
/// a second test call answered with 3 fails it.
pub async fn a_simulated_test_call_rings_a_virtual_phone(db: TestDb) {
    // The alert's own call rings for the whole test (and is not given up on meanwhile).
    let app = TestApp::spawn(
        &db,
        None,
        &[
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
            ("ALERTCALL_RINGING_TIMER", "120s"),
        ],
    )
    .await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let alert_call = crate::cli::ringing_sim_call(&app, &alert).await;
    let sim = |args: &[&str]| {
        let listen = app.addr.to_string();
        let env = [
            ("ALERTCALL_LISTEN", listen.as_str()),
            ("ALERTCALL_API_TOKEN", ADMIN_TOKEN),
        ];
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::task::block_in_place(|| run(args, &env, dir.path()));
        assert!(out.status.success(), "{args:?}: {}", printed(&out));
        stdout(&out)
    };
    for (key, passes) in [("1", true), ("3", false)] {
        let command = cli(&app, &["test-call", "nurse", "--wait", "60s"]);
        let ringing = || async {
            let calls = admin_get(&app, "/api/sim/calls").await;
            calls
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] != alert_call.as_str() && c["state"] == "ringing")
                .map(|c| c["id"].as_str().unwrap().to_string())
        };
        wait_until("the test call rings a virtual phone", WAIT, || async {
            ringing().await.is_some()
        })
        .await;
        let test_call = ringing().await.unwrap();
        let listed = sim(&["sim", "list"]);
        assert!(
            listed.contains(&format!("{test_call}  ringing  to +15*******06")),
            "{listed}"
        );
        let answered = sim(&["sim", "answer", &test_call]);
        assert!(answered.contains(GREETING), "{answered}");
        assert!(!answered.contains("Seizure"), "{answered}");
        let pressed = sim(&["sim", "press", &test_call, key]);
        let out = command.await.unwrap();
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "on the simulator: `alertcall sim answer {test_call}`, then `alertcall sim press {test_call} 1`"
            )),
            "{text}"
        );
        if passes {
            assert!(pressed.contains(CONFIRMED), "{pressed}");
            assert!(out.status.success(), "{}", printed(&out));
            assert!(text.contains("✓ acknowledged"), "{text}");
        } else {
            assert!(pressed.contains("This was only a test"), "{pressed}");
            assert_eq!(out.status.code(), Some(1), "{}", printed(&out));
            assert!(
                text.contains("✗ declined: answered, but 3 (cannot respond) was pressed"),
                "{text}"
            );
        }
    }
    let calls = admin_get(&app, &format!("/api/sim/calls/{alert_call}")).await;
    assert_eq!(calls["state"], "ringing", "the alert's call rings on");
    alert_untouched(&app, &db, &alert).await;
    app.stop().await;
}
both_backends!(test_call::a_simulated_test_call_rings_a_virtual_phone);

/// Only an admin places test calls; a number no network can ring, or a person nobody
/// configured, is refused with what is wrong and how to write it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_calls_need_an_admin_and_a_real_number() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let file = crate::dashboard::access_file();
    let app = crate::dashboard::spawn(&db, &file).await;
    let post = |token: Option<&'static str>, to: &'static str| {
        let mut request = app
            .http
            .post(app.url("/api/v1/test-calls"))
            .json(&json!({ "to": to }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(post(None, "nurse").await.unwrap().status(), 401);
    assert_eq!(
        post(Some(VIEWER_TOKEN), "nurse").await.unwrap().status(),
        403
    );
    let some_id = uuid::Uuid::new_v4();
    let path = format!("/api/v1/test-calls/{some_id}");
    assert_eq!(app.get(&path).await.status(), 401);
    let get_as = |token: &'static str| app.http.get(app.url(&path)).bearer_auth(token).send();
    assert_eq!(get_as(VIEWER_TOKEN).await.unwrap().status(), 403);
    assert_eq!(get_as(ADMIN_TOKEN).await.unwrap().status(), 404);

    let r = post(Some(ADMIN_TOKEN), "385-401-9951").await.unwrap();
    assert_eq!(r.status(), 404);
    let error = r.json::<Value>().await.unwrap()["error"].to_string();
    assert!(
        error.contains("(if this is a US/Canada number: +13854019951)"),
        "{error}"
    );
    let r = post(Some(ADMIN_TOKEN), "bob").await.unwrap();
    let error = r.json::<Value>().await.unwrap()["error"].to_string();
    assert!(
        error.contains("no person \\\"bob\\\" in alertcall.toml (the people are: nurse)"),
        "{error}"
    );

    let out = cli(&app, &["test-call", "+1385401995"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has 9 digits after +1, but numbers there have 10"),
        "{}",
        printed(&out)
    );
    // Without the admin token in its environment, the command says which one it needs.
    let listen = app.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| {
        run(
            &["test-call", "nurse"],
            &[("ALERTCALL_LISTEN", listen.as_str())],
            dir.path(),
        )
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("401 Unauthorized")
            && stderr(&out).contains("set ALERTCALL_API_TOKEN here to an admin API token"),
        "{}",
        printed(&out)
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM {}", db.table("test_calls")))
            .await,
        0,
        "nothing was placed"
    );
    app.stop().await;
}

#[test]
fn test_call_without_a_server_says_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["test-call", "nurse"],
        &[("ALERTCALL_LISTEN", "127.0.0.1:1")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Start it with `alertcall serve`"),
        "{}",
        stderr(&out)
    );
}
