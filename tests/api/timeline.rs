//! The timeline in sentences (issue 15): a full escalation, read back as a charge nurse reads
//! it, through the API and `alertcall alert show`.

use serde_json::{Value, json};

use crate::both_backends;
use crate::cli::{run, stderr, stdout};
use crate::core::WAIT;
use crate::dashboard::{ADMIN_TOKEN, VIEWER_TOKEN};
use crate::db::TestDb;
use crate::decline::{ringing, sim};
use crate::helpers::{TestApp, wait_until};

/// The ICU: Dev Patel on call on its night shift (all day long this week, so the test runs
/// at any hour), Cho Min-jun, Ana Souza and Ben Okafor taking the next weeks; Room 2 has an
/// intercom. Step 1 calls whoever is on call, step 2 everyone on the schedule. An admin token
/// (ADMIN_TOKEN) and the viewers of `access_toml`.
fn icu() -> tempfile::NamedTempFile {
    let today = jiff::Timestamp::now()
        .in_tz("America/Denver")
        .unwrap()
        .date();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
[hospital]
time_zone = "America/Denver"

[[staff]]
id = "dev"
name = "Dev Patel"
phone = "+13854019954"

[[staff]]
id = "cho"
name = "Cho Min-jun"
phone = "+13854019955"

[[staff]]
id = "ana"
name = "Ana Souza"
phone = "+13854019956"

[[staff]]
id = "ben"
name = "Ben Okafor"
phone = "+13854019957"

[[rooms]]
room = "R2"
connect = "sip:room2@intercom.example.org"

[[schedules]]
name = "ICU"

[[schedules.shifts]]
name = "night"
start = "00:00"
end = "00:00"
people = ["dev", "cho", "ana", "ben"]
rotate_every_days = 7
rotation_start = "{today}"

[[policies]]
name = "ICU"

[[policies.steps]]
notify = ["oncall:ICU"]
wait = "5m"

[[policies.steps]]
notify = ["everyone:ICU"]
wait = "5m"

[[api_tokens]]
name = "it"
role = "admin"
sha256 = "{admin}"

{access}"#,
            admin = alertcall::auth::token_hash(ADMIN_TOKEN),
            access = crate::dashboard::access_toml(),
        ),
    )
    .unwrap();
    file
}

/// The alert's timeline through the API with `token`.
async fn timeline(app: &TestApp, alert: &str, token: &str) -> Vec<Value> {
    let timeline = app
        .get_json(&format!("/api/v1/alerts/{alert}/timeline"), token)
        .await;
    timeline.as_array().unwrap().clone()
}

/// The texts of the entries of these kinds, in order, each checked to start with its time in
/// Denver and given without it.
fn sentences(timeline: &[Value], kinds: &[&str]) -> Vec<String> {
    timeline
        .iter()
        .filter(|e| kinds.contains(&e["kind"].as_str().unwrap()))
        .map(|e| {
            let at: jiff::Timestamp = e["at"].as_str().unwrap().parse().unwrap();
            let clock = at.in_tz("America/Denver").unwrap().strftime("%H:%M:%S ");
            let text = e["text"].as_str().unwrap();
            text.strip_prefix(&clock.to_string())
                .unwrap_or_else(|| panic!("{text:?} does not start with {clock}"))
                .to_string()
        })
        .collect()
}

/// Dev Patel, on call, declines with 3; the escalation calls everyone on the ICU; Cho Min-jun
/// acknowledges with 4 and is connected to Room 2; the others' calls are cancelled. The
/// timeline reads as sentences with names and numbers (masked for viewers), `alertcall alert
/// show` prints the same, and every call has its outcome and, once ended, its end.
pub async fn a_full_escalation_reads_as_sentences(db: TestDb) {
    let file = icu();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let dev = ringing(&app, &alert, "dev", 1).await;
    sim(&app, &dev, "answer", None).await;
    sim(&app, &dev, "press", Some(json!({"keys": "3"}))).await;
    // Step 2 calls all four, Dev again last.
    ringing(&app, &alert, "dev", 2).await;
    let cho = ringing(&app, &alert, "cho", 1).await;
    sim(&app, &cho, "answer", None).await;
    sim(&app, &cho, "press", Some(json!({"keys": "4"}))).await;
    // Cho's call ends once the room hangs up.
    sim(&app, &cho, "hangup", None).await;
    wait_until("every call has ended", WAIT, || async {
        let calls = app
            .engine
            .store
            .list_calls(Some(&alert), 100)
            .await
            .unwrap();
        calls.len() == 5 && calls.iter().all(|c| c.ended_at.is_some())
    })
    .await;

    let kinds = [
        "call.placed",
        "menu.choice",
        "page.due",
        "alert.acknowledged",
        "call.bridged",
    ];
    // A call's `call.placed` is written once the provider has taken the request, which can be
    // after the simulated phone rang and was hung up.
    wait_until("every placed call is in the timeline", WAIT, || async {
        sentences(&timeline(&app, &alert, ADMIN_TOKEN).await, &["call.placed"]).len() == 5
    })
    .await;
    let admin = timeline(&app, &alert, ADMIN_TOKEN).await;
    assert_eq!(
        sentences(&admin, &kinds),
        [
            "Called Dev Patel (+13854019954), on call for ICU night shift",
            "Dev Patel declined (pressed 3)",
            "Escalated to step 2: everyone on ICU (4 people)",
            "Called Ana Souza (+13854019956), everyone on ICU (step 2)",
            "Called Ben Okafor (+13854019957), everyone on ICU (step 2)",
            "Called Cho Min-jun (+13854019955), everyone on ICU (step 2)",
            "Called Dev Patel (+13854019954), everyone on ICU (step 2)",
            "Cho Min-jun asked to be connected to the room by pressing 4",
            "Cho Min-jun acknowledged by pressing 4",
            "Cho Min-jun was connected to Room 2",
        ]
    );
    let mut cancelled = sentences(&admin, &["call.cancelled"]);
    cancelled.sort();
    assert_eq!(
        cancelled,
        [
            "The call to Ana Souza was cancelled (someone else acknowledged)",
            "The call to Ben Okafor was cancelled (someone else acknowledged)",
            "The call to Dev Patel was cancelled (someone else acknowledged)",
        ]
    );
    // Viewers read the same with numbers masked, and the raw entries masked too.
    let viewer = timeline(&app, &alert, VIEWER_TOKEN).await;
    assert_eq!(
        sentences(&viewer, &["call.placed"])[0],
        "Called Dev Patel (+13*******54), on call for ICU night shift"
    );
    assert!(
        !viewer
            .iter()
            .any(|e| e.to_string().contains("+13854019954"))
    );

    // Every call in the one vocabulary; acknowledged and cancelled calls have ended too.
    let detail = app
        .get_json(&format!("/api/v1/alerts/{alert}"), ADMIN_TOKEN)
        .await;
    let mut outcomes: Vec<(String, String, String)> = detail["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["ended_at"].is_string(), "{c}");
            let field = |f: &str| c[f].as_str().unwrap().to_string();
            (field("person"), field("outcome"), field("outcome_label"))
        })
        .collect();
    outcomes.sort();
    let want = [
        ("ana", "cancelled", "cancelled"),
        ("ben", "cancelled", "cancelled"),
        ("cho", "acknowledged", "acknowledged"),
        ("dev", "cancelled", "cancelled"),
        ("dev", "declined", "declined"),
    ];
    assert_eq!(
        outcomes,
        want.map(|(p, o, l)| (p.to_string(), o.to_string(), l.to_string()))
    );
    // The seed's monitoring still reads what it always did.
    let row = db
        .row(&format!(
            "SELECT CAST(metadata AS TEXT) FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
        ))
        .await;
    let metadata: Value = serde_json::from_str(row[0].as_deref().unwrap()).unwrap();
    assert_eq!(metadata["call"]["call_status"], "answered");

    // `alertcall alert show` prints the viewer's sentences (numbers masked), in order.
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("ALERTCALL_CONFIG", path.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::block_in_place(|| run(&["alert", "show", &alert], &env, dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let texts: Vec<&str> = viewer.iter().map(|e| e["text"].as_str().unwrap()).collect();
    let lines: Vec<&str> = printed.lines().filter(|l| texts.contains(l)).collect();
    assert_eq!(lines, texts, "{printed}");
    assert!(
        printed.contains("Seizure activity detected (Room 2)"),
        "{printed}"
    );
    for outcome in ["declined", "cancelled", "acknowledged"] {
        assert!(printed.contains(outcome), "{printed}");
    }
    app.stop().await;
}
both_backends!(timeline::a_full_escalation_reads_as_sentences);
