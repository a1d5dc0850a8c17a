//! The real binary: `--help`, `check`, `alert raise|list|ack`, `calls`.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_alertcall");

fn run(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(dir).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run alertcall")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["--help"], &[], dir.path());
    assert!(out.status.success());
    for cmd in ["serve", "migrate", "check", "alert", "calls", "sim"] {
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

    let out = run(&["check"], &[], dir.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("✓ database: sqlite://alertcall.db (sqlite) reachable"));
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
