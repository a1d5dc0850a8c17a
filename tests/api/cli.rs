//! The real binary: `--help`, `check`, `alert raise|list|ack`, `calls`.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_alertcall");

pub fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run alertcall")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs `alertcall <args>` (a `sim` command) against the running test server; it must succeed.
fn sim_cli(app: &crate::helpers::TestApp, dir: &std::path::Path, args: &[&str]) -> String {
    let listen = app.addr.to_string();
    let out = run(args, &[("ALERTCALL_LISTEN", listen.as_str())], dir);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--help"], &[], dir.path());
    assert!(out.status.success());
    for cmd in [
        "serve",
        "migrate",
        "check",
        "test-call",
        "alert",
        "calls",
        "sim",
        "hl7",
    ] {
        assert!(stdout(&out).contains(cmd), "{cmd} missing from --help");
    }
    let out = run(&["alert", "raise", "--help"], &[], dir.path());
    assert!(stdout(&out).contains("--room"));
}

#[test]
fn check_says_exactly_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["check"],
        &[
            ("VONAGE_APPLICATION_ID", "app"),
            ("VONAGE_PRIVATE_KEY_PATH", "/nonexistent/private.key"),
            ("VONAGE_FROM_NUMBER", "+447700900001"),
            ("NURSE_PHONE_NUMBER", "385-401-9951"),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("VONAGE_PRIVATE_KEY_PATH=\"/nonexistent/private.key\" cannot be read"),
        "{text}"
    );
    assert!(text.contains("+13854019951"), "{text}");

    let out = run(
        &["check"],
        &[("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("✗ database"), "{}", stdout(&out));

    // `check` does not create the embedded database; `migrate` does.
    let out = run(&["check"], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("✗ database: no database at")
            && stdout(&out).contains("alertcall migrate"),
        "{}",
        stdout(&out)
    );
    assert!(!dir.path().join("alertcall.db").exists());
    assert!(run(&["migrate"], &[], dir.path()).status.success());
    let out = run(&["check"], &[], dir.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("✓ database: sqlite://alertcall.db (sqlite) reachable"));
}

const PUBLIC_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vonage-test-public.pem"
);
const PRIVATE_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/vonage-test-private.pem"
);

fn vonage_env(key: &'static str, from: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("VONAGE_APPLICATION_ID", "app"),
        ("VONAGE_PRIVATE_KEY_PATH", key),
        ("VONAGE_FROM_NUMBER", from),
        ("NURSE_PHONE_NUMBER", "+13854019951"),
        ("ALERTCALL_PUBLIC_URL", "https://alertcall.example.org"),
    ]
}

#[test]
fn check_refuses_a_key_that_cannot_sign() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["check"],
        &vonage_env(PUBLIC_KEY, "+13854019959"),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("is a public key or certificate, which cannot sign"),
        "{text}"
    );
    assert!(
        !text.contains("refused"),
        "a key problem is ours, not Vonage's: {text}"
    );
    // serve refuses the same key before listening.
    let out = run(
        &["serve"],
        &vonage_env(PUBLIC_KEY, "+13854019959"),
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot sign"), "{}", stderr(&out));
}

#[test]
fn the_seeds_vonage_from_number_form_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["migrate"], &[], dir.path()).status.success());
    // As the seed's .env has it: country code, no '+'.
    let out = run(
        &["check"],
        &vonage_env(PRIVATE_KEY, "12178020876"),
        dir.path(),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("calling from +12*******76"), "{text}");
    assert!(text.contains("NOT tested against Vonage itself"), "{text}");
}

#[test]
fn check_refuses_numbers_no_network_can_ring() {
    let dir = tempfile::tempdir().unwrap();
    for (number, why) in [
        (
            "+4407700900123",
            "trunk prefix 0 after the country code; drop it: +447700900123",
        ),
        (
            "+1385401995",
            "has 9 digits after +1, but numbers there have 10",
        ),
        ("+99912345678", "no country has the calling code"),
    ] {
        let out = run(&["check"], &[("NURSE_PHONE_NUMBER", number)], dir.path());
        assert_eq!(out.status.code(), Some(1), "{number}");
        assert!(stdout(&out).contains(why), "{number}: {}", stdout(&out));
    }
}

#[test]
fn check_proves_coverage_and_lists_schedule_gaps() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&["migrate"], &[], dir.path()).status.success());
    let toml = r#"
[hospital]
time_zone = "America/Denver"

[[staff]]
id = "ana"
name = "Ana"
phone = "+13855550101"

[[schedules]]
name = "ward"
[[schedules.shifts]]
name = "day"
start = "07:00"
end = "19:00"
people = ["ana"]

[[policies]]
name = "seizures"
severities = ["Critical"]
alert_types = ["seizure"]
[[policies.steps]]
notify = ["oncall:ward"]
"#;
    std::fs::write(dir.path().join("alertcall.toml"), toml).unwrap();
    let out = run(&["check"], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("✗ coverage: a critical alert of a type other than seizure in any room matches no policy"),
        "{text}"
    );
    // Every night of the next two weeks (and this morning, if before 07:00), in Denver time.
    assert!(text.contains("gap(s) in the next 14 days"), "{text}");
    assert!(
        text.matches("19:00 MST – ").count() >= 14
            && text.contains("07:00 MST: nobody is on call (oncall:ward)"),
        "{text}"
    );

    // "Critical" matches the app's "critical" and a last policy takes the rest.
    let covered = format!(
        "{toml}\n[[policies]]\nname = \"rest\"\nseverities = [\"CRITICAL\"]\n[[policies.steps]]\nnotify = [\"person:ana\"]\n"
    );
    std::fs::write(dir.path().join("alertcall.toml"), covered).unwrap();
    let text = stdout(&run(&["check"], &[], dir.path()));
    assert!(text.contains("✓ coverage"), "{text}");
}

#[test]
fn check_shows_the_hl7_settings() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alertcall.toml"),
        "[hl7]\nwatchdog_timeout = \"45s\"\nreport_status = \"10.1.4.7:2576\"\n",
    )
    .unwrap();
    let text = stdout(&run(
        &["check"],
        &[("ALERTCALL_HL7_LISTEN", "127.0.0.1:2575")],
        dir.path(),
    ));
    assert!(
        text.contains("✓ HL7 alarm intake: MLLP on 127.0.0.1:2575, peers: this machine only"),
        "{text}"
    );
    assert!(text.contains("down after 45 s of silence"), "{text}");
    assert!(text.contains("message ids kept 168 h"), "{text}");
    assert!(
        text.contains("alarm status goes back to 10.1.4.7:2576"),
        "{text}"
    );
}

#[test]
fn commands_refuse_to_create_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["alert", "raise", "--message", "x"], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "no database at {}",
            dir.path().join("alertcall.db").display()
        )),
        "{err}"
    );
    assert!(err.contains("DATABASE_URL"), "{err}");
    assert!(!dir.path().join("alertcall.db").exists());
    // No colour codes in what goes to a pipe.
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn raise_list_ack_and_calls_on_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["migrate"], &[], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &["alert", "raise", "--room", "Nowhere", "--message", "x"],
        &[],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no room has room_id or room_name \"Nowhere\""),
        "{}",
        stderr(&out)
    );

    let out = run(
        &[
            "alert",
            "raise",
            "--patient",
            "P001",
            "--type",
            "seizure",
            "--message",
            "Seizure activity detected",
        ],
        &[],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 36, "{id}");

    let out = run(&["alert", "list"], &[], dir.path());
    let list = stdout(&out);
    assert!(
        list.contains(&id) && list.contains("critical") && list.contains("active"),
        "{list}"
    );

    let out = run(&["alert", "ack", &id, "--by", "Ana"], &[], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("cli:Ana"));
    let out = run(&["alert", "ack", &id], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not active"));
    let out = run(&["alert", "ack", "no-such-alert"], &[], dir.path());
    assert!(stderr(&out).contains("no alert no-such-alert"));

    let out = run(&["calls"], &[], dir.path());
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "(none)");
}

#[test]
fn sim_without_a_server_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["sim", "list"],
        &[("ALERTCALL_LISTEN", "127.0.0.1:1")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is `alertcall serve` running"),
        "{}",
        stderr(&out)
    );
}

/// `alertcall sim answer|press` drive a running server's simulated phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_commands_answer_and_acknowledge() {
    use crate::db::{Backend, TestDb};
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = crate::helpers::TestApp::spawn(&db, None, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = ringing_sim_call(&app, &alert).await;
    let dir = tempfile::tempdir().unwrap();
    let sim = |args: Vec<&str>| sim_cli(&app, dir.path(), &args);
    let listed = tokio::task::block_in_place(|| sim(vec!["sim", "list"]));
    assert!(
        listed.contains(&call) && listed.contains("ringing"),
        "{listed}"
    );
    let answered = tokio::task::block_in_place(|| sim(vec!["sim", "answer", &call]));
    assert!(
        answered.contains("Critical alert at Haven Hospital."),
        "{answered}"
    );
    let pressed = tokio::task::block_in_place(|| sim(vec!["sim", "press", &call, "1"]));
    assert!(
        pressed.contains("Alert acknowledged. Thank you."),
        "{pressed}"
    );
    assert_eq!(
        db.scalar("SELECT status FROM alerts").await.as_deref(),
        Some("acknowledged")
    );
    app.stop().await;
}

#[test]
fn oncall_and_check_read_alertcall_toml() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["oncall"], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("copy alertcall.example.toml"),
        "{}",
        stderr(&out)
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/alertcall.example.toml");
    std::fs::copy(example, dir.path().join("alertcall.toml")).unwrap();
    let out = run(&["oncall", "--at", "2026-03-12T20:00"], &[], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    // The override: Ana covers Dev's night on 12 March; Dev is on the ward.
    assert!(
        table.contains("icu       ana  Ana Souza  override"),
        "{table}"
    );
    assert!(table.contains("ward3     dev"), "{table}");
    let out = run(
        &["oncall", "--schedule", "icu", "--at", "2026-03-08T03:30"],
        &[],
        dir.path(),
    );
    let table = stdout(&out);
    assert!(
        table.contains("2026-03-07 19:00 MST  2026-03-08 07:00 MDT"),
        "{table}"
    );
    let out = run(&["oncall", "--schedule", "nope"], &[], dir.path());
    assert!(
        stderr(&out).contains("the schedules are: icu, ward3"),
        "{}",
        stderr(&out)
    );

    let out = run(&["check"], &[], dir.path());
    let text = stdout(&out);
    assert!(text.contains("6 staff, 2 schedules, 3 policies"), "{text}");
    // The example's real coverage: its "default" policy takes every critical alert and its
    // schedules have no empty slot.
    assert!(
        text.contains("✓ coverage: every critical alert (any type, any room) matches a policy (at least \"default\")"),
        "{text}"
    );
    assert!(
        text.contains("✓ schedules: every step reaches someone for the next 14 days"),
        "{text}"
    );
    // The example names no fallback contact: check says what that means (a warning).
    assert!(
        text.contains("! fallback: none: an alert that reaches nobody"),
        "{text}"
    );
    let out = run(
        &["check"],
        &[("ALERTCALL_FALLBACK_PHONE", "+13855550160")],
        dir.path(),
    );
    let text = stdout(&out);
    assert!(
        text.contains("✓ fallback: ALERTCALL_FALLBACK_PHONE (+13*******60) is called and texted"),
        "{text}"
    );
    assert!(
        !text.contains("13855550160"),
        "the number is masked: {text}"
    );
    let broken = std::fs::read_to_string(dir.path().join("alertcall.toml"))
        .unwrap()
        .replace("+13855550102", "999");
    std::fs::write(dir.path().join("alertcall.toml"), broken).unwrap();
    let out = run(&["check"], &[], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("alertcall.toml:27: staff[1].phone (ben)"),
        "{}",
        stdout(&out)
    );
}

/// `alertcall sim sms` and `sim reply` show and answer the simulator's texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_texts_and_replies() {
    use crate::db::{Backend, TestDb};
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertcall.toml");
    std::fs::write(
        &config,
        "[[staff]]\nid = \"ana\"\nname = \"Ana\"\nphone = \"+13854019951\"\nsms = \"+13854019951\"\n\
         [[policies]]\nname = \"p\"\n[[policies.steps]]\nnotify = [\"person:ana\"]\nsms = true\nwait = \"60s\"\n",
    )
    .unwrap();
    let path = config.display().to_string();
    let app =
        crate::helpers::TestApp::spawn(&db, None, &[("ALERTCALL_CONFIG", path.as_str())]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = ringing_sim_call(&app, &alert).await;
    let sim = |args: Vec<&str>| sim_cli(&app, dir.path(), &args);
    // Ana declines the ringing call: she is texted instead.
    tokio::task::block_in_place(|| sim(vec!["sim", "hangup", &call]));
    let mut texts = String::new();
    for _ in 0..200 {
        texts = tokio::task::block_in_place(|| sim(vec!["sim", "sms"]));
        if texts.contains("Reply 1 to acknowledge") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        texts.contains("Reply 1 to acknowledge") && texts.contains("+13*******51"),
        "{texts}"
    );
    let replied = tokio::task::block_in_place(|| sim(vec!["sim", "reply", "+13854019951", "1"]));
    assert!(
        replied.contains(&format!("acknowledged {alert} by SMS")),
        "{replied}"
    );
    assert_eq!(
        db.scalar("SELECT acknowledged_by FROM alerts")
            .await
            .as_deref(),
        Some("sms:+13854019951")
    );
    app.stop().await;
}

/// `alertcall sim say` speaks on a simulated call: low confidence re-prompts, "on my way"
/// acknowledges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_say_talks_back() {
    use crate::db::{Backend, TestDb};
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = crate::helpers::TestApp::spawn(&db, None, &[]).await;
    let alert = db.insert_alert("critical", "P001", "R2", "Seizure").await;
    let call = ringing_sim_call(&app, &alert).await;
    let dir = tempfile::tempdir().unwrap();
    let sim = |args: Vec<&str>| sim_cli(&app, dir.path(), &args);
    tokio::task::block_in_place(|| sim(vec!["sim", "answer", &call]));
    let unsure = tokio::task::block_in_place(|| {
        sim(vec!["sim", "say", &call, "yes", "--confidence", "0.2"])
    });
    assert!(unsure.contains("Sorry, I did not get that."), "{unsure}");
    let said = tokio::task::block_in_place(|| sim(vec!["sim", "say", &call, "on my way"]));
    assert!(said.contains("Alert acknowledged. Thank you."), "{said}");
    assert_eq!(
        db.scalar("SELECT status FROM alerts").await.as_deref(),
        Some("acknowledged")
    );
    app.stop().await;
}

/// Waits until the alert's simulated call rings and returns its id.
pub async fn ringing_sim_call(app: &crate::helpers::TestApp, alert: &str) -> String {
    let engine = app.engine.clone();
    let placed = || async {
        engine
            .store
            .list_calls(Some(alert), 1)
            .await
            .unwrap()
            .first()
            .and_then(|c| c.provider_call_id.clone())
    };
    crate::helpers::wait_until("the simulated call rings", crate::core::WAIT, || async {
        placed().await.is_some()
    })
    .await;
    placed().await.unwrap()
}

/// `alert resolve <id>` and `alert resolve --older-than 24h [--yes]`: the bulk form lists
/// what it would resolve and changes nothing without --yes; each resolution is recorded.
pub async fn resolve_from_the_command_line(db: crate::db::TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let cli = |args: &[&str]| tokio::task::block_in_place(|| run(args, &env, dir.path()));
    let out = cli(&["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let two_days = crate::cutover::insert_old_alert(&db, 48, "Two days old").await;
    let thirty_hours = crate::cutover::insert_old_alert(&db, 30, "Thirty hours old").await;
    let recent = crate::cutover::insert_old_alert(&db, 1, "An hour old").await;
    let active = || async {
        db.count("SELECT count(*) FROM alerts WHERE status = 'active'")
            .await
    };

    let out = cli(&["alert", "resolve", "--older-than", "24h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("2 active alert(s) were triggered more than 24 h ago"),
        "{text}"
    );
    assert!(
        text.contains(&two_days) && text.contains(&thirty_hours),
        "{text}"
    );
    assert!(!text.contains(&recent), "{text}");
    assert!(
        text.contains("Nothing was changed")
            && text.contains("alertcall alert resolve --older-than 24h --yes"),
        "{text}"
    );
    assert_eq!(active().await, 3, "a dry run changes nothing");

    let out = cli(&[
        "alert",
        "resolve",
        "--older-than",
        "24h",
        "--yes",
        "--by",
        "cutover",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "resolved 2 of 2 active alert(s) triggered more than 24 h ago, as cli:cutover"
        ),
        "{}",
        stdout(&out)
    );
    assert_eq!(active().await, 1);
    let recorded = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE kind = 'alert.resolved' AND source = 'cli'",
            db.table("call_events")
        ))
        .await;
    assert_eq!(recorded, 2, "each resolution is in its alert's timeline");

    let out = cli(&["alert", "resolve", &recent]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!("resolved {recent} as cli:operator")
    );
    assert_eq!(active().await, 0);
    let out = cli(&["alert", "resolve", &recent]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is already resolved"),
        "{}",
        stderr(&out)
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    let out = cli(&["alert", "resolve", &unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`alertcall alert list` shows the ids"),
        "{}",
        stderr(&out)
    );
    // Neither an id nor --older-than: clap says what is missing.
    let out = cli(&["alert", "resolve"]);
    assert_eq!(out.status.code(), Some(2));
    let out = cli(&["alert", "resolve", "--older-than", "soon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--older-than \"soon\""),
        "{}",
        stderr(&out)
    );
}
crate::both_backends!(cli::resolve_from_the_command_line);

/// Finding 7 of issue 11: a database password given as `?password=` is not printed.
#[test]
fn check_never_prints_a_database_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["check"],
        &[
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres?password=s3cret-pw",
            ),
            ("ALERTCALL_ADMIN_PASSWORD", "an-admin-password"),
        ],
        dir.path(),
    );
    let all = stdout(&out) + &stderr(&out);
    assert!(!all.contains("s3cret-pw"), "{all}");
    assert!(all.contains("password=***"), "{all}");
}
