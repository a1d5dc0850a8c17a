//! The reference (docs/reference.md) and `.env.example` list what the code has: every
//! environment variable the configuration reads, every command and every endpoint of the
//! JSON API; no variable is documented that is no longer read.
//!
//! The variables are taken from the configuration's own source (every string literal in
//! `src/config/` shaped like a variable's name: `get("…")`, `duration("…")`, `flag("…")`,
//! `number("…")`), the commands from the CLI's parser and the endpoints from the OpenAPI
//! document the server publishes, so there is no second list to keep.

use std::collections::BTreeSet;
use std::path::Path;

/// Read by `tracing_subscriber`'s `EnvFilter` in the CLI rather than by the configuration.
const READ_ELSEWHERE: &[&str] = &["RUST_LOG"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `"NAME"` literals: upper-case letters and digits with at least one underscore.
fn names_in_source(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices('"') {
        let rest = &text[i + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        let name = &rest[..end];
        if rest[end..].starts_with('"') && is_variable_name(name) {
            names.insert(name.to_string());
        }
    }
    names
}

fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.contains('_')
        && !name.ends_with('_')
        && !name.contains("__")
}

fn read_by_the_configuration() -> BTreeSet<String> {
    let dir = root().join("src/config");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("src/config is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file is readable");
            names.extend(names_in_source(&text));
        }
    }
    names
}

fn reference() -> String {
    std::fs::read_to_string(root().join("docs/reference.md")).expect("docs/reference.md")
}

/// The first cell of each row of the reference's variable table: "| `NAME` | …".
fn in_the_reference() -> BTreeSet<String> {
    reference()
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| is_variable_name(name))
        .map(String::from)
        .collect()
}

/// `NAME=…` and `#NAME=…` lines.
fn in_the_env_example() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(".env.example")).expect(".env.example");
    text.lines()
        .filter_map(|l| l.trim_start_matches('#').split_once('='))
        .map(|(name, _)| name)
        .filter(|name| is_variable_name(name))
        .map(String::from)
        .collect()
}

fn difference(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Vec<String> {
    a.difference(b)
        .filter(|n| !READ_ELSEWHERE.contains(&n.as_str()))
        .cloned()
        .collect()
}

#[test]
fn the_source_scan_finds_the_variables() {
    let read = read_by_the_configuration();
    for name in [
        "DATABASE_URL",
        "ALERTCALL_HL7_LISTEN",
        "VONAGE_SIGNATURE_SECRET",
    ] {
        assert!(read.contains(name), "{name} not found in {read:?}");
    }
    assert_eq!(
        names_in_source(r#"get("A_1") "not_this" "NOR THIS" "X_" "\"B_2\"" duration("C_D")"#),
        ["A_1", "C_D"].map(String::from).into()
    );
}

#[test]
fn every_variable_read_is_in_the_reference_and_the_env_example() {
    let read = read_by_the_configuration();
    let reference = in_the_reference();
    let example = in_the_env_example();
    for (missing, what) in [
        (
            difference(&read, &reference),
            "read by src/config but missing from docs/reference.md's variable table",
        ),
        (
            difference(&read, &example),
            "read by src/config but missing from .env.example",
        ),
        (
            difference(&reference, &read),
            "in docs/reference.md's variable table but read by nothing",
        ),
        (
            difference(&example, &read),
            "in .env.example but read by nothing",
        ),
    ] {
        assert!(missing.is_empty(), "{what}: {missing:?}");
    }
}

#[test]
fn every_api_endpoint_is_in_the_reference() {
    let documented: BTreeSet<String> = reference()
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|cell| {
            let (method, rest) = cell.split_once(' ')?;
            let path = rest.split(['`', '?']).next()?;
            Some(format!("{method} {path}"))
        })
        .collect();
    let mut missing = Vec::new();
    for (path, item) in crate::http::api::openapi().paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            let endpoint = format!("{method} {path}");
            if present && !documented.contains(&endpoint) {
                missing.push(endpoint);
            }
        }
    }
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "in the OpenAPI document but not in docs/reference.md's endpoint tables"
    );
}

#[test]
fn every_command_is_in_the_reference() {
    use clap::CommandFactory;
    fn leaves(command: &clap::Command, line: &str, out: &mut Vec<String>) {
        let subcommands: Vec<_> = command
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subcommands.is_empty() {
            out.push(line.to_string());
        }
        for sub in subcommands {
            leaves(sub, &format!("{line} {}", sub.get_name()), out);
        }
    }
    let mut commands = Vec::new();
    leaves(&crate::cli::Cli::command(), "alertcall", &mut commands);
    let reference = reference();
    let missing: Vec<String> = commands
        .into_iter()
        .filter(|c| !reference.contains(&format!("| `{c}")))
        .collect();
    assert_eq!(
        missing,
        Vec::<String>::new(),
        "commands missing from docs/reference.md's command table"
    );
}
