//! Talking back (issue 6): speech as well as keys, details on request, bridging to the room,
//! and the responders' conference, through the fake Vonage and the simulator. Every NCCO
//! alertcall answers with is checked against the documented actions.

use serde_json::{Value, json};

use crate::both_backends;
use crate::core::{WAIT, event_body, event_url, input_body, input_url, seed_query, spoken};
use crate::db::TestDb;
use crate::fake_vonage::{FakeVonage, Received, SIGNATURE_SECRET, check_ncco};
use crate::helpers::{TestApp, wait_until};

const PRIMARY: &str = "13854019951";
const BACKUP: &str = "13854019952";
const ROOM_2_SIP: &str = "sip:room2@intercom.example.org";

/// Two nurses called together in one step; Room 2 (`R2`) has an intercom, Room 7 has none;
/// Room 2's unit keeps patient names out of the details.
fn config() -> tempfile::NamedTempFile {
    config_with_steps(
        r#"
[[policies.steps]]
notify = ["person:primary", "person:backup"]
wait = "60s"
"#,
    )
}

/// The same people and rooms with other escalation steps.
fn config_with_steps(steps: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
[hospital]
time_zone = "America/Denver"
language = "en-GB"

[speech]
min_confidence = 0.6

[[staff]]
id = "primary"
name = "Primary nurse"
phone = "+{PRIMARY}"

[[staff]]
id = "backup"
name = "Backup nurse"
phone = "+{BACKUP}"
language = "en-US"

[[rooms]]
room = "R2"
connect = "{ROOM_2_SIP}"
include_patient_name_in_details = false

[[policies]]
name = "ward"
severities = ["critical"]
{steps}"#
        ),
    )
    .unwrap();
    file
}

struct Setup {
    fake: FakeVonage,
    _file: tempfile::NamedTempFile,
    app: TestApp,
    alert: String,
}

async fn setup(db: &TestDb, room: &str, extra: &[(&str, &str)]) -> Setup {
    setup_with(db, config(), room, extra).await
}

async fn setup_with(
    db: &TestDb,
    file: tempfile::NamedTempFile,
    room: &str,
    extra: &[(&str, &str)],
) -> Setup {
    let fake = FakeVonage::start().await;
    let path = file.path().display().to_string();
    let mut env = vec![("ALERTCALL_CONFIG", path.as_str())];
    env.extend_from_slice(extra);
    let app = TestApp::spawn(db, Some(&fake), &env).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", room, "Seizure activity detected")
        .await;
    Setup {
        fake,
        _file: file,
        app,
        alert,
    }
}

async fn call_to(fake: &FakeVonage, number: &str) -> Received {
    let to = |c: &Received| c.body["to"][0]["number"].as_str() == Some(number);
    wait_until(&format!("{number} is called"), WAIT, || async {
        fake.calls().iter().any(to)
    })
    .await;
    fake.calls().into_iter().find(to).unwrap()
}

/// An input webhook carrying a speech result, shaped as Vonage documents it (confidence as a
/// string, `digits` null).
fn speech_body(uuid: &str, text: &str, confidence: &str) -> String {
    json!({
        "from": "447700900001", "to": PRIMARY,
        "dtmf": {"digits": null, "timed_out": false},
        "speech": {"timeout_reason": "end_on_silence_timeout",
                   "results": [{"confidence": confidence, "text": text}]},
        "uuid": uuid, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "timestamp": chrono::Utc::now().to_rfc3339(),
    })
    .to_string()
}

/// Posts a signed input webhook and returns the NCCO, checked against the contract.
async fn post_input(app: &TestApp, call: &Received, body: String) -> Value {
    let r = app
        .webhook(&input_url(call), &body, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 200);
    let ncco: Value = r.json().await.unwrap();
    let problems = check_ncco(&ncco);
    assert!(problems.is_empty(), "{problems:?}\n{ncco:#}");
    ncco
}

async fn press(app: &TestApp, call: &Received, digits: &str) -> Value {
    post_input(
        app,
        call,
        input_body(call.uuid.as_deref().unwrap(), digits, false),
    )
    .await
}

async fn say(app: &TestApp, call: &Received, text: &str, confidence: &str) -> Value {
    post_input(
        app,
        call,
        speech_body(call.uuid.as_deref().unwrap(), text, confidence),
    )
    .await
}

/// Posts a signed call event. Machine detection's `human` and `machine` carry `call_uuid`
/// instead of `uuid` (NOTES.md §4).
async fn call_event(app: &TestApp, call: &Received, status: &str) {
    let uuid = call.uuid.as_deref().unwrap();
    let body = match status {
        "human" | "machine" => json!({"call_uuid": uuid, "from": "447700900001", "to": PRIMARY,
            "status": status, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
            "timestamp": chrono::Utc::now().to_rfc3339()})
        .to_string(),
        _ => event_body(uuid, status),
    };
    let r = app
        .webhook(&event_url(call), &body, Some(SIGNATURE_SECRET))
        .await;
    assert_eq!(r.status(), 204, "{status}");
}

/// A pickup that machine detection says is a person, as Vonage reports it.
async fn picked_up_by_a_person(app: &TestApp, call: &Received) {
    call_event(app, call, "answered").await;
    call_event(app, call, "human").await;
}

async fn alert_status(db: &TestDb, alert: &str) -> Option<String> {
    db.scalar(&format!(
        "SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
    ))
    .await
}

/// The alert's audit events of `kind`, oldest first.
async fn events(app: &TestApp, alert: &str, kind: &str) -> Vec<alertcall::store::StoredEvent> {
    app.engine
        .store
        .list_events(alert)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

fn actions(ncco: &Value) -> Vec<&str> {
    ncco.as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap_or(""))
        .collect()
}

pub async fn speech_on_my_way_acknowledges(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    let backup = call_to(&fake, BACKUP).await;
    assert_eq!(fake.violations(), Vec::<String>::new());
    // The menu listens for keys and speech, in each nurse's language.
    let input = &primary.body["ncco"][1];
    assert_eq!(input["type"], json!(["dtmf", "speech"]));
    assert_eq!(
        input["speech"]["language"], "en-GB",
        "the hospital's language"
    );
    assert_eq!(primary.body["ncco"][0]["language"], "en-GB");
    assert_eq!(
        backup.body["ncco"][0]["language"], "en-US",
        "the backup nurse's own language"
    );
    let greeting = spoken(&primary.body["ncco"]);
    assert!(
        greeting.contains("Press 4 to be connected to the room.") && greeting.contains("say yes"),
        "{greeting}"
    );
    picked_up_by_a_person(&app, &primary).await;

    // Not confident enough: asked again, nothing acknowledged.
    let unsure = say(&app, &primary, "yes", "0.31").await;
    assert_eq!(actions(&unsure), ["talk", "input"]);
    assert!(spoken(&unsure).starts_with("Sorry, I did not get that."));
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    // Not understood at all: asked again.
    let noise = say(&app, &primary, "banana", "0.95").await;
    assert!(spoken(&noise).starts_with("Sorry, I did not get that."));

    let uuid = primary.uuid.clone().unwrap();
    let ack = say(&app, &primary, "uh yes I'm on my way", "0.9405097").await;
    assert_eq!(actions(&ack), ["talk"]);
    assert_eq!(spoken(&ack), "Alert acknowledged. Thank you.");
    assert_eq!(ack[0]["language"], "en-GB");
    let row = db.row(&seed_query(&uuid)).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    assert_eq!(row[3].as_deref(), Some("answered"), "the seed's meaning");
    // The backup's phone stops ringing.
    let backup_uuid = backup.uuid.clone().unwrap();
    wait_until("the backup is hung up", WAIT, || async {
        fake.hangups() == [backup_uuid.clone()]
    })
    .await;

    // Every choice is in the timeline, with how it was made.
    let choices = events(&app, &alert, "menu.choice").await;
    let details: Vec<Value> = choices.iter().map(|e| e.detail.clone()).collect();
    assert_eq!(details.len(), 3, "{details:#?}");
    assert_eq!(details[0]["choice"], "not_understood");
    assert_eq!(details[0]["via"], "speech");
    assert_eq!(details[0]["confidence"], 0.31);
    assert_eq!(details[1]["text"], "banana");
    assert_eq!(
        details[2],
        json!({"choice": "acknowledge", "via": "speech", "digits": "", "timed_out": false,
               "text": "uh yes I'm on my way", "confidence": 0.9405097})
    );
    let ack_event = events(&app, &alert, "alert.acknowledged").await;
    assert_eq!(ack_event[0].detail["input"], "speech");
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(talkback::speech_on_my_way_acknowledges);

pub async fn details_on_request_by_voice_or_key_9(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    let backup = call_to(&fake, BACKUP).await;
    let details = say(&app, &primary, "what are the details?", "0.88").await;
    assert_eq!(
        actions(&details),
        ["talk", "input"],
        "details, then the menu"
    );
    assert_eq!(details[0]["bargeIn"], true);
    let text = spoken(&details);
    assert!(
        text.starts_with("Details. This is a seizure alert, triggered less than a minute ago, at "),
        "{text}"
    );
    assert!(
        text.contains(
            "It has not been escalated. Also called: Backup nurse, is being called. Room 2. \
             Seizure activity detected. Press 1 to acknowledge this alert."
        ),
        "{text}"
    );
    assert!(
        !text.contains("Dheeraj"),
        "Room 2's unit keeps patient names out of the details: {text}"
    );
    // Key 9 gives the same, and nothing is acknowledged.
    let by_key = press(&app, &primary, "9").await;
    assert_eq!(spoken(&by_key), text);
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    let choices = events(&app, &alert, "menu.choice").await;
    assert_eq!(choices[0].detail["choice"], "details");
    assert_eq!(choices[1].detail["via"], "dtmf");
    // Same language as the announcement: each nurse's own.
    assert_eq!(details[0]["language"], "en-GB");
    assert_eq!(details[1]["speech"]["language"], "en-GB");
    let theirs = press(&app, &backup, "9").await;
    assert_eq!(theirs[0]["language"], "en-US");
    assert_eq!(theirs[1]["speech"]["language"], "en-US");
    assert!(
        spoken(&theirs).contains("Also called: Primary nurse, is being called."),
        "{}",
        spoken(&theirs)
    );
    app.stop().await;
}
both_backends!(talkback::details_on_request_by_voice_or_key_9);

pub async fn key_4_connects_to_the_rooms_sip_uri(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    let ncco = press(&app, &primary, "4").await;
    assert_eq!(actions(&ncco), ["talk", "connect", "talk"]);
    assert_eq!(
        spoken(&ncco),
        "Alert acknowledged. Thank you. Connecting you to Room 2."
    );
    assert_eq!(
        ncco[1]["endpoint"],
        json!([{"type": "sip", "uri": ROOM_2_SIP}])
    );
    assert_eq!(ncco[1]["from"], "447700900001", "our Vonage number");
    assert_eq!(
        ncco[1]["timeout"], 30,
        "the room rings 30 s, not Vonage's 60"
    );
    // When the room hangs up or never answers, the nurse hears that, not silence.
    assert_eq!(
        ncco[2]["text"],
        "The connection to the room has ended. The alert stays acknowledged. Goodbye."
    );
    assert_eq!(ncco[2]["language"], "en-GB");
    // Acknowledged first, as key 1 would.
    let row = db.row(&seed_query(primary.uuid.as_deref().unwrap())).await;
    assert_eq!(row[0].as_deref(), Some("acknowledged"));
    assert_eq!(row[3].as_deref(), Some("answered"));
    let bridged = events(&app, &alert, "call.bridged").await;
    assert_eq!(bridged.len(), 1);
    assert_eq!(bridged[0].detail["endpoint"], "sip");
    assert_eq!(bridged[0].detail["room"], "Room 2");
    assert_eq!(bridged[0].detail["person"], "primary");
    // Pressing 4 again connects again but records the bridge once.
    let again = press(&app, &primary, "4").await;
    assert_eq!(again[1]["action"], "connect");
    assert_eq!(events(&app, &alert, "call.bridged").await.len(), 1);
    app.stop().await;
}
both_backends!(talkback::key_4_connects_to_the_rooms_sip_uri);

pub async fn an_unconfigured_room_keeps_the_call(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R7", &[("ALERTCALL_LANGUAGE", "en-AU")]).await;
    let primary = call_to(&fake, PRIMARY).await;
    let backup = call_to(&fake, BACKUP).await;
    assert_eq!(
        primary.body["ncco"][0]["language"], "en-AU",
        "ALERTCALL_LANGUAGE overrides [hospital] language"
    );
    assert_eq!(
        backup.body["ncco"][0]["language"], "en-US",
        "a nurse's own language wins"
    );
    assert!(
        !spoken(&primary.body["ncco"]).contains("Press 4"),
        "the menu offers no connection for Room 7"
    );
    picked_up_by_a_person(&app, &primary).await;
    let ncco = say(&app, &primary, "connect me to the room", "0.9").await;
    assert_eq!(actions(&ncco), ["talk", "input"], "the call goes on");
    assert!(
        spoken(&ncco).starts_with(
            "Room 7 has no connection configured, so the call cannot be connected. Press 1"
        ),
        "{}",
        spoken(&ncco)
    );
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("active"),
        "nothing was connected, so nothing was acknowledged"
    );
    assert_eq!(
        events(&app, &alert, "call.bridge_unavailable").await.len(),
        1
    );
    // The keypad still works afterwards.
    let ack = press(&app, &primary, "1").await;
    assert_eq!(spoken(&ack), "Alert acknowledged. Thank you.");
    app.stop().await;
}
both_backends!(talkback::an_unconfigured_room_keeps_the_call);

pub async fn two_nurses_pressing_5_share_one_conference_until_the_alert_closes(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[("ALERTCALL_SWEEP_INTERVAL", "100ms")]).await;
    let primary = call_to(&fake, PRIMARY).await;
    let backup = call_to(&fake, BACKUP).await;
    let first = press(&app, &primary, "5").await;
    let second = say(&app, &backup, "join the conference", "0.8").await;
    for ncco in [&first, &second] {
        assert_eq!(actions(ncco), ["talk", "conversation"]);
        assert!(spoken(ncco).contains("does not acknowledge"), "{ncco}");
    }
    let name = format!("alertcall-{alert}");
    assert_eq!(first[1]["name"], name);
    assert_eq!(second[1]["name"], name, "the same conference");
    let joined = events(&app, &alert, "conference.joined").await;
    assert_eq!(joined.len(), 2);
    assert_ne!(joined[0].call_id, joined[1].call_id);
    assert_eq!(joined[0].detail["person"], "primary");
    assert_eq!(joined[1].detail["person"], "backup");
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("active"),
        "joining is not acknowledging"
    );

    // Acknowledged elsewhere: the responders keep talking.
    let outcome = app
        .engine
        .store
        .acknowledge_alert(
            &alert,
            &alertcall::domain::alert::Acknowledger::named("cli", "charge"),
            chrono::Utc::now(),
        )
        .await
        .unwrap()
        .outcome;
    assert_eq!(outcome, alertcall::store::AckOutcome::Acknowledged);
    wait_until("the escalation stops", WAIT, || async {
        app.page_state(&alert).await.as_deref() == Some("acknowledged")
    })
    .await;
    assert_eq!(fake.hangups(), Vec::<String>::new());

    // Resolved: the conference ends with the alert.
    db.exec(&format!(
        "UPDATE alerts SET status = 'resolved' WHERE CAST(id AS TEXT) = '{alert}'"
    ))
    .await;
    wait_until("both conference calls are hung up", WAIT, || async {
        let mut hung = fake.hangups();
        hung.sort();
        let mut want = vec![primary.uuid.clone().unwrap(), backup.uuid.clone().unwrap()];
        want.sort();
        hung == want
    })
    .await;
    assert_eq!(events(&app, &alert, "conference.ended").await.len(), 1);
    // A late 5 on a closed alert joins nothing.
    let late = press(&app, &primary, "5").await;
    assert_eq!(actions(&late), ["talk"]);
    assert!(spoken(&late).contains("already been acknowledged or resolved"));
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(talkback::two_nurses_pressing_5_share_one_conference_until_the_alert_closes);

/// Voicemail never acknowledges by speech: not its greeting before machine detection has
/// reported, nor a "yes"-like word once it has.
pub async fn a_greeting_before_the_machine_event_never_acknowledges(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    // Voicemail picks up; with bargeIn its greeting is heard before machine detection reports.
    call_event(&app, &primary, "answered").await;
    for greeting in [
        "Hi, this is Jane. Leave me a message, okay?",
        "Hi, yes, you've reached Ana. Please leave a message after the tone.",
        // Short and clear, but machine detection has not spoken yet: held, and asked again
        // even after two re-prompts.
        "Okay.",
    ] {
        let reply = say(&app, &primary, greeting, "0.97").await;
        assert_eq!(actions(&reply), ["talk", "input"], "{greeting}");
        assert!(
            spoken(&reply).starts_with("Sorry, I did not get that."),
            "{greeting}: {}",
            spoken(&reply)
        );
    }
    call_event(&app, &primary, "machine").await;
    let after = say(&app, &primary, "okay", "0.99").await;
    assert_eq!(spoken(&after), "No acknowledgement was received. Goodbye.");
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert!(events(&app, &alert, "alert.acknowledged").await.is_empty());
    app.stop().await;
}
both_backends!(talkback::a_greeting_before_the_machine_event_never_acknowledges);

pub async fn a_quick_yes_before_machine_detection_is_asked_once_more(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    call_event(&app, &primary, "answered").await;
    // The nurse barges in before machine detection has reported: asked again, not refused.
    let first = speech_body(primary.uuid.as_deref().unwrap(), "yes", "0.95");
    let held = post_input(&app, &primary, first.clone()).await;
    assert_eq!(actions(&held), ["talk", "input"]);
    assert!(spoken(&held).starts_with("Sorry, I did not get that."));
    // The same webhook delivered again is not the nurse saying it again.
    let repeated = post_input(&app, &primary, first).await;
    assert!(spoken(&repeated).starts_with("Sorry, I did not get that."));
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    let choices = events(&app, &alert, "menu.choice").await;
    assert_eq!(choices.len(), 1, "one input, recorded once");
    assert_eq!(choices[0].detail["choice"], "not_understood");
    assert!(choices[0].detail["held_for_machine_detection"].is_string());
    // Said again (detection still silent): acted on.
    let ack = say(&app, &primary, "yes, on my way", "0.95").await;
    assert_eq!(spoken(&ack), "Alert acknowledged. Thank you.");
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("acknowledged")
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(talkback::a_quick_yes_before_machine_detection_is_asked_once_more);

pub async fn a_question_never_acknowledges(db: TestDb) {
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup(&db, "R2", &[]).await;
    let primary = call_to(&fake, PRIMARY).await;
    picked_up_by_a_person(&app, &primary).await;
    for question in ["who's coming?", "Is it okay?"] {
        let reply = say(&app, &primary, question, "0.93").await;
        assert_eq!(actions(&reply), ["talk", "input"], "{question}");
        assert!(
            spoken(&reply).starts_with("Sorry, I did not get that."),
            "{question}: {}",
            spoken(&reply)
        );
    }
    // Asking who else is coming gets the details.
    let details = say(&app, &primary, "who else is coming?", "0.93").await;
    assert!(spoken(&details).starts_with("Details."), "{details}");
    assert_eq!(alert_status(&db, &alert).await.as_deref(), Some("active"));
    assert!(events(&app, &alert, "alert.acknowledged").await.is_empty());
    // A plain answer from the person still acknowledges at once.
    let ack = say(&app, &primary, "yes", "0.93").await;
    assert_eq!(spoken(&ack), "Alert acknowledged. Thank you.");
    app.stop().await;
}
both_backends!(talkback::a_question_never_acknowledges);

pub async fn saying_busy_or_i_cant_declines_and_escalates_at_once(db: TestDb) {
    // The backup is the next step, five minutes later unless the primary declines.
    let file = config_with_steps(
        r#"
[[policies.steps]]
notify = ["person:primary"]
wait = "5m"

[[policies.steps]]
notify = ["person:backup"]
wait = "5m"
"#,
    );
    let Setup {
        fake,
        _file,
        app,
        alert,
    } = setup_with(&db, file, "R2", &[]).await;
    let second = db
        .insert_alert("critical", "P001", "R7", "Fall detected")
        .await;
    for (said, message) in [
        ("Sorry, I'm busy", "Seizure activity detected"),
        ("I can't", "Fall detected"),
    ] {
        let find = |number: &str| {
            fake.calls().into_iter().find(|c| {
                c.body["to"][0]["number"].as_str() == Some(number)
                    && spoken(&c.body["ncco"]).contains(message)
            })
        };
        wait_until(
            &format!("the primary is called about {message}"),
            WAIT,
            || async { find(PRIMARY).is_some() },
        )
        .await;
        let primary = find(PRIMARY).unwrap();
        let reply = say(&app, &primary, said, "0.9").await;
        assert_eq!(actions(&reply), ["talk"], "{said}");
        assert_eq!(
            spoken(&reply),
            "Understood. Calling Backup nurse next. Goodbye."
        );
        // Long before the five-minute step wait.
        wait_until(
            &format!("the backup is called about {message}"),
            WAIT,
            || async { find(BACKUP).is_some() },
        )
        .await;
    }
    for id in [&alert, &second] {
        assert_eq!(alert_status(&db, id).await.as_deref(), Some("active"));
        let choices = events(&app, id, "menu.choice").await;
        assert_eq!(choices[0].detail["choice"], "decline");
        assert_eq!(choices[0].detail["via"], "speech");
    }
    assert_eq!(fake.violations(), Vec::<String>::new());
    app.stop().await;
}
both_backends!(talkback::saying_busy_or_i_cant_declines_and_escalates_at_once);

/// The simulator: `say` next to `press`, and the phone shows a bridge or a conference.
async fn sim_post(app: &TestApp, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut req = app.http.post(app.url(path));
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn sim_ringing(app: &TestApp, n: usize) -> Vec<String> {
    wait_until("the simulated phones ring", WAIT, || async {
        let calls: Vec<Value> = app.get("/api/sim/calls").await.json().await.unwrap();
        calls.len() >= n
    })
    .await;
    let calls: Vec<Value> = app.get("/api/sim/calls").await.json().await.unwrap();
    calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

pub async fn simulated_phone_talks_back(db: TestDb) {
    let file = config();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    db.seed_people().await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let ids = sim_ringing(&app, 2).await;
    let (a, b) = (&ids[0], &ids[1]);
    for id in [a, b] {
        let r = sim_post(&app, &format!("/api/sim/calls/{id}/answer"), None).await;
        assert_eq!(r.status(), 200);
    }
    let say = |id: &str, body: Value| {
        let (app, path) = (&app, format!("/api/sim/calls/{id}/say"));
        async move { sim_post(app, &path, Some(body)).await }
    };
    // Bad speech is refused; low confidence re-prompts; "repeat" repeats.
    assert_eq!(say(a, json!({"text": ""})).await.status(), 400);
    assert_eq!(
        say(a, json!({"text": "yes", "confidence": 7}))
            .await
            .status(),
        400
    );
    let unsure: Value = say(a, json!({"text": "yes", "confidence": 0.2}))
        .await
        .json()
        .await
        .unwrap();
    let heard = unsure["heard"].as_array().unwrap();
    assert!(
        heard
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with("Sorry, I did not get that."),
        "{unsure}"
    );
    assert_eq!(unsure["awaiting_key"], true);
    let repeated: Value = say(a, json!({"text": "repeat that please"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        repeated["heard"].as_array().unwrap().last(),
        Some(&repeated["heard"][0])
    );
    // 5 on one phone: it shows the conference, and its menu no longer listens.
    let joined: Value = sim_post(
        &app,
        &format!("/api/sim/calls/{b}/press"),
        Some(json!({"keys": "5"})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(joined["conference"], format!("alertcall-{alert}"));
    assert_eq!(joined["state"], "answered");
    let r = sim_post(
        &app,
        &format!("/api/sim/calls/{b}/press"),
        Some(json!({"keys": "1"})),
    )
    .await;
    assert_eq!(r.status(), 409);
    // "on my way" on the other acknowledges.
    let done: Value = say(a, json!({"text": "On my way!", "confidence": 0.93}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        done["heard"].as_array().unwrap().last().unwrap(),
        "Alert acknowledged. Thank you."
    );
    assert_eq!(done["state"], "ended");
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("acknowledged")
    );
    let choices = events(&app, &alert, "menu.choice").await;
    let last = &choices.last().unwrap().detail;
    assert_eq!(last["via"], "speech");
    assert_eq!(last["confidence"], 0.93);
    // The conference call is still on after the acknowledgement.
    let b_now: Value = app
        .get(&format!("/api/sim/calls/{b}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b_now["state"], "answered");
    app.stop().await;
}
both_backends!(talkback::simulated_phone_talks_back);

pub async fn simulated_phone_is_connected_to_the_room(db: TestDb) {
    let file = config();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    let alert = db
        .insert_alert("critical", "P001", "R2", "Seizure activity detected")
        .await;
    let id = sim_ringing(&app, 1).await.remove(0);
    sim_post(&app, &format!("/api/sim/calls/{id}/answer"), None).await;
    let connected: Value = sim_post(
        &app,
        &format!("/api/sim/calls/{id}/say"),
        Some(json!({"text": "yes, connect me to the room", "confidence": 0.9})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(connected["connected_to"], "sip:***@intercom.example.org");
    assert_eq!(connected["awaiting_key"], false);
    assert_eq!(
        alert_status(&db, &alert).await.as_deref(),
        Some("acknowledged")
    );
    app.assert_audit(
        &alert,
        &["menu.choice", "alert.acknowledged", "call.bridged"],
    )
    .await;
    app.stop().await;
}
both_backends!(talkback::simulated_phone_is_connected_to_the_room);
