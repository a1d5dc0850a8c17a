//! The command line: `serve`, `migrate`, `check`, `test-call`, `alert ...`, `calls`, `sim ...`,
//! `hl7 send`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};

use crate::config::{Config, ProviderConfig, redact_url};
use crate::domain::alert::{Acknowledger, NewAlert};
use crate::domain::call::rfc3339;
use crate::startup::Application;
use crate::store::{self, AckOutcome, AlertFilter};

#[derive(Parser)]
#[command(
    name = "alertcall",
    version,
    about = "Phones the nurse on call when a critical alert lands in the hospital database; \
             pressing 1 acknowledges it.",
    long_about = "Phones the nurse on call when a critical alert lands in the hospital database; \
                  pressing 1 acknowledges it.\n\n\
                  Configuration comes from the environment (or a .env file): DATABASE_URL \
                  (default sqlite://alertcall.db), NURSE_PHONE_NUMBER, VONAGE_APPLICATION_ID, \
                  VONAGE_PRIVATE_KEY_PATH, VONAGE_FROM_NUMBER, ALERTCALL_PUBLIC_URL, ... \
                  Without Vonage settings calls go to a built-in simulator.\n\n\
                  Start with `alertcall serve` and open the dashboard it serves \
                  (http://127.0.0.1:8000/; the first start writes an admin password to \
                  ./alertcall-admin-password), or use `alertcall alert raise` and \
                  `alertcall sim list` in another terminal.",
    after_help = "Run `alertcall check` to validate the configuration and reach the database."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    pub fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: watch for critical alerts, call, take webhooks.
    Serve,
    /// Create or update the database tables (also done by `serve`).
    Migrate,
    /// Validate the configuration and reach the database; says exactly what is wrong.
    Check,
    /// Place a test call through the running `serve`: the configured provider and the real
    /// menu, with a test announcement (no alert, no patient data). Prints each step and the
    /// outcome; exit status 0 only if 1 was pressed (or yes said).
    #[command(
        after_help = "Examples:\n  alertcall test-call ana            (a person in alertcall.toml)\n  \
                            alertcall test-call nurse          (NURSE_PHONE_NUMBER, without alertcall.toml)\n  \
                            alertcall test-call +13854019951 --wait 60s\n\n\
                            It talks to `alertcall serve` at ALERTCALL_PUBLIC_URL with ALERTCALL_API_TOKEN \
                            (an admin token), because only serve receives the provider's webhooks."
    )]
    TestCall {
        /// A staff id from alertcall.toml, or a number in E.164 form such as +13854019951.
        to: String,
        /// How long to wait for the outcome (500ms, 5s, 2m).
        #[arg(long, default_value = "120s", value_name = "DURATION")]
        wait: String,
    },
    /// Raise, list, acknowledge and resolve alerts.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Test the HL7 alarm intake: send HL7 v2 messages over MLLP.
    #[command(subcommand)]
    Hl7(Hl7Command),
    /// Call history as a table.
    Calls {
        /// Only calls for this alert id.
        #[arg(long)]
        alert: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Who is on call now (or at --at), per schedule in alertcall.toml.
    Oncall {
        /// Only this schedule.
        #[arg(long)]
        schedule: Option<String>,
        /// An instant (2026-03-12T19:00:00Z) or a wall-clock time in each schedule's zone
        /// (2026-03-12T19:00).
        #[arg(long)]
        at: Option<String>,
    },
    /// Answer and press keys on simulated calls (when no provider is configured).
    #[command(subcommand)]
    Sim(SimCommand),
    /// Print an Argon2id hash of a password read from standard input, for
    /// alertcall.toml's [[users]] password_hash; with --token, make a new API token and
    /// print it with the sha256 for [[api_tokens]].
    HashPassword {
        #[arg(long)]
        token: bool,
    },
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Insert an alert the way the hospital app does (a critical one is called at once).
    Raise {
        #[arg(long, default_value = "critical")]
        severity: String,
        /// patients.patient_id
        #[arg(long)]
        patient: Option<String>,
        /// A rooms.room_id or rooms.room_name.
        #[arg(long)]
        room: Option<String>,
        /// alert_type, e.g. seizure, fall, cardiac.
        #[arg(long = "type")]
        alert_type: Option<String>,
        #[arg(long)]
        title: Option<String>,
        /// What the nurse hears, e.g. "Seizure activity detected".
        #[arg(long)]
        message: Option<String>,
    },
    /// The latest alerts.
    List {
        /// Only alerts with this status (active, acknowledged, resolved).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// One alert: its calls and what happened, in sentences in the hospital's time.
    Show {
        /// The alert's id (`alertcall alert list` shows them).
        id: String,
        /// Also print the raw audit entry under each sentence (for IT).
        #[arg(long)]
        details: bool,
    },
    /// Acknowledge an alert (stops its calls).
    Ack {
        id: String,
        /// Who is acknowledging (written to acknowledged_by as cli:<name>).
        #[arg(long, default_value = "operator")]
        by: String,
    },
    /// Resolve one alert, or every active alert older than --older-than (e.g. the ones
    /// alertcall skipped on its first start). A running service hangs up their calls.
    #[command(
        after_help = "Examples:\n  alertcall alert resolve 5b9f0a7e-2c1d-4e8f-9a3b-0c1d2e3f4a5b\n  \
                            alertcall alert resolve --older-than 24h         (lists them)\n  \
                            alertcall alert resolve --older-than 24h --yes   (resolves them)"
    )]
    Resolve(ResolveArgs),
}

#[derive(clap::Args)]
struct ResolveArgs {
    /// The alert's id (`alertcall alert list` shows them).
    #[arg(required_unless_present = "older_than", conflicts_with = "older_than")]
    id: Option<String>,
    /// Every active alert triggered longer ago than this (500ms, 5s, 2m, 24h).
    #[arg(long, value_name = "AGE")]
    older_than: Option<String>,
    /// Resolve what --older-than lists; without it nothing is changed.
    #[arg(long, requires = "older_than")]
    yes: bool,
    /// Who is resolving (recorded in the alert's timeline as cli:<name>).
    #[arg(long, default_value = "operator")]
    by: String,
}

#[derive(Subcommand)]
enum Hl7Command {
    /// Send the message(s) in a file to the HL7 listener, one ACK awaited each; prints the
    /// ACK code and any error in plain words. Exit status 0 only if every message got AA.
    #[command(
        after_help = "Examples:\n  alertcall hl7 send tests/fixtures/hl7/a_start.hl7      (to ALERTCALL_HL7_LISTEN)\n  \
                            alertcall hl7 send alarms.hl7 --to 10.1.4.7:2575\n\n\
                            Segments may be separated by CR, LF or CRLF; every MSH starts a new message."
    )]
    Send {
        /// A file of one or more HL7 messages.
        file: std::path::PathBuf,
        /// host:port of the listener (default: ALERTCALL_HL7_LISTEN, on this machine).
        #[arg(long, value_name = "HOST:PORT")]
        to: Option<String>,
        /// How long to wait for the connection and for each ACK (500ms, 5s, 2m).
        #[arg(long, default_value = "10s", value_name = "DURATION")]
        timeout: String,
    },
}

#[derive(Subcommand)]
enum SimCommand {
    /// Simulated calls and what each phone heard.
    List,
    /// Pick up a ringing simulated call.
    Answer { call: String },
    /// Press keys on an answered simulated call (1 acknowledges, 2 repeats, 3 declines,
    /// 4 connects to the room, 5 joins the responders' call, 9 gives details).
    Press { call: String, keys: String },
    /// Say something on an answered simulated call, e.g. `sim say <id> "on my way"`.
    Say {
        call: String,
        text: String,
        /// The recogniser's confidence, 0 to 1 (below the threshold is not understood).
        #[arg(long, default_value_t = 1.0)]
        confidence: f64,
    },
    /// Let the keypad time out without pressing anything.
    Silence { call: String },
    /// Hang up (or decline a ringing call).
    Hangup { call: String },
    /// Text messages the simulated network delivered.
    Sms,
    /// Text back from a phone, e.g. `sim reply +13854019951 1` to acknowledge by SMS.
    Reply { from: String, text: String },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Check = cli.command {
        return check().await;
    }
    if let Command::HashPassword { token } = cli.command {
        return hash_password(token);
    }
    let config = Config::from_env()?;
    init_logging(&config, matches!(cli.command, Command::Serve));
    if matches!(cli.command, Command::Alert(_) | Command::Calls { .. }) {
        require_existing_database(&config.database_url).map_err(anyhow::Error::msg)?;
    }
    match cli.command {
        Command::Serve => return serve(config).await,
        Command::Migrate => {
            let store = open_store(&config).await?;
            store.migrate().await?;
            println!(
                "migrated {} ({})",
                redact_url(&config.database_url),
                store.backend()
            );
        }
        Command::Check | Command::HashPassword { .. } => unreachable!("handled above"),
        Command::Alert(cmd) => alert(config, cmd).await?,
        Command::Calls { alert, limit } => calls(config, alert, limit).await?,
        Command::Oncall { schedule, at } => oncall(&config, schedule.as_deref(), at.as_deref())?,
        Command::Sim(cmd) => sim(config, cmd).await?,
        Command::TestCall { to, wait } => return test_call(&config, &to, &wait).await,
        Command::Hl7(Hl7Command::Send { file, to, timeout }) => {
            return hl7_send(&config, &file, to, &timeout).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(config: &Config, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info,sqlx=warn" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(crate::log_line::OneLine(std::io::stderr));
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Every command but `serve` and `migrate` works on an existing database: a SQLite file
/// created here by mistake (run from another directory) would take alerts nobody calls.
fn require_existing_database(url: &str) -> Result<(), String> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return Ok(());
    }
    let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
        return Ok(());
    };
    let path = options.get_filename();
    if path.exists() {
        return Ok(());
    }
    let shown = std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    Err(format!(
        "no database at {} (DATABASE_URL={}): alertcall does not create one here, since alerts \
         written to a new file would never be called. Run this from the directory that holds \
         alertcall.db (where `alertcall serve` runs), or set DATABASE_URL to it, e.g. \
         DATABASE_URL=sqlite:///srv/alertcall/alertcall.db; `alertcall migrate` creates a new one",
        shown.display(),
        redact_url(url)
    ))
}

async fn open_store(config: &Config) -> anyhow::Result<store::DynStore> {
    store::connect(&config.database_url).await.with_context(|| {
        format!(
            "cannot open the database {}; `alertcall check` says more",
            redact_url(&config.database_url)
        )
    })
}

/// Runs until SIGTERM or Ctrl-C; exits with `exit::UNWRITABLE` when the database cannot be
/// written for good.
async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let provider = config.provider.name();
    let database = redact_url(&config.database_url);
    let app = Application::build(config).await?;
    let engine = app.engine();
    let directory = engine.directory();
    tracing::info!(
        listen = %app.local_addr(),
        staff = directory.staff.len(),
        schedules = directory.schedules.len(),
        policies = directory.policies.len(),
        %database,
        provider,
        nurse = %engine.config.nurse_phone.masked(),
        webhooks = %engine.config.event_url(),
        dashboard = %format!("http://{}/", app.local_addr()),
        hl7 = %match (&engine.config.hl7, app.hl7_addr()) {
            (Some(settings), Some(bound)) => settings.describe(bound),
            _ => "off (ALERTCALL_HL7_LISTEN not set)".to_string(),
        },
        "alertcall is running"
    );
    if provider == "simulator" {
        tracing::warn!(
            "no phone provider configured: calls go to the simulator and nobody's phone rings \
             (set VONAGE_APPLICATION_ID, VONAGE_PRIVATE_KEY_PATH and VONAGE_FROM_NUMBER for real calls)"
        );
    }
    if provider == "vonage" && engine.config.signature_secret().is_none() {
        tracing::warn!(
            "VONAGE_SIGNATURE_SECRET is not set: voice webhooks are taken only on the per-call \
             URLs alertcall gives Vonage, and a \"1\" by SMS acknowledges only on the Inbound URL \
             `alertcall check` prints; set the secret to check Vonage's signatures instead"
        );
    }
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(engine.clone()));
    app.run(shutdown_signal()).await?;
    Ok(if engine.database_unwritable() {
        ExitCode::from(crate::exit::UNWRITABLE)
    } else {
        ExitCode::SUCCESS
    })
}

/// `kill -HUP`: reads alertcall.toml again. A file with problems is refused (and the
/// running configuration kept); escalations in flight keep their step and policy name.
#[cfg(unix)]
async fn reload_on_sighup(engine: std::sync::Arc<crate::engine::Engine>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        match engine.config.directory() {
            Ok(directory) => {
                let (staff, schedules, policies) = (
                    directory.staff.len(),
                    directory.schedules.len(),
                    directory.policies.len(),
                );
                engine.reload(directory);
                tracing::info!(staff, schedules, policies, "reloaded alertcall.toml");
            }
            Err(errors) => {
                tracing::error!(%errors, "alertcall.toml NOT reloaded; the previous configuration stays in force")
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// Validates everything and prints one line per check; exit status 1 if any failed.
async fn check() -> anyhow::Result<ExitCode> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(errors) => {
            println!("✗ configuration");
            for e in &errors.0 {
                println!("    {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("✓ configuration");
    match &config.provider {
        ProviderConfig::Simulator => println!(
            "✓ provider: simulator (no real calls; set VONAGE_APPLICATION_ID etc. for Vonage)"
        ),
        ProviderConfig::Vonage(v) => println!(
            "✓ provider: vonage, application {}, calling from {}; the private key signs a JWT, \
             but the credentials were NOT tested against Vonage itself",
            v.application_id,
            v.from_number.masked()
        ),
        ProviderConfig::Twilio(t) => println!(
            "✓ provider: twilio, account {}, calling from {} (authenticating with {}); every \
             webhook must carry Twilio's signature made with the Auth Token. The credentials \
             were NOT tested against Twilio itself",
            t.account_sid,
            t.from_number.masked(),
            if t.api_key.is_some() {
                "the API key"
            } else {
                "the Auth Token"
            },
        ),
    }
    println!("✓ nurse phone: {}", config.nurse_phone.masked());
    let directory = match (&config.config_file, config.directory()) {
        (None, dir) => {
            println!("✓ alertcall.toml: none (one nurse: NURSE_PHONE_NUMBER)");
            dir.unwrap_or_default()
        }
        (Some(path), Ok(dir)) => {
            println!(
                "✓ {}: {} staff, {} schedules, {} policies, {} rooms",
                path.display(),
                dir.staff.len(),
                dir.schedules.len(),
                dir.policies.len(),
                dir.rooms.len()
            );
            dir
        }
        (Some(path), Err(errors)) => {
            println!("✗ {}", path.display());
            for e in &errors.0 {
                println!("    {e}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let covered = check_coverage(&directory);
    check_fallback(&directory, &config);
    let access = &directory.access;
    let users = access.users.len() + usize::from(config.admin_password.is_some());
    let tokens = access.tokens.len() + usize::from(config.api_token.is_some());
    if users + tokens == 0 {
        println!(
            "✓ dashboard: http://{}/ — no [[users]], [[api_tokens]], ALERTCALL_ADMIN_PASSWORD or \
             ALERTCALL_API_TOKEN: serve writes a first admin password to ./{}",
            config.listen,
            crate::startup::BOOTSTRAP_PASSWORD_FILE
        );
    } else {
        println!(
            "✓ dashboard: http://{}/ — {users} user(s), {tokens} API token(s)",
            config.listen
        );
    }
    match &config.hl7 {
        Some(settings) => println!("✓ HL7 alarm intake: {}", settings.describe(settings.listen)),
        None => println!("✓ HL7 alarm intake: off (ALERTCALL_HL7_LISTEN not set)"),
    }
    let url = redact_url(&config.database_url);
    if let Err(e) = require_existing_database(&config.database_url) {
        println!("✗ database: {e}");
        return Ok(ExitCode::FAILURE);
    }
    let reached = tokio::time::timeout(Duration::from_secs(10), async {
        let store = store::connect(&config.database_url).await?;
        store.ping().await?;
        Ok::<_, store::StoreError>(store.backend())
    })
    .await;
    match reached {
        Ok(Ok(backend)) => {
            println!("✓ database: {url} ({backend}) reachable");
            // Webhook protection (the SMS token is kept in the database).
            let store = match store::connect(&config.database_url).await {
                Ok(store) => store.migrate().await.map(|()| store).ok(),
                Err(_) => None,
            };
            for line in crate::telephony::webhook_token::check_lines(&config, store.as_ref()).await
            {
                println!("{line}");
            }
            Ok(if covered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Ok(Err(e)) => {
            println!("✗ database: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            println!(
                "✗ database: {url}: no answer within 10 s (is it running? is the host right?)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `check`'s line on the safety net: who is phoned when an alert reaches nobody (a warning,
/// not a failure, when nobody is: the alert is still shown, logged and counted).
fn check_fallback(directory: &crate::config::file::Directory, config: &Config) {
    if let Some(phone) = &config.fallback_phone {
        println!(
            "✓ fallback: ALERTCALL_FALLBACK_PHONE ({}) is called and texted when an alert reaches nobody",
            phone.masked()
        );
    } else if directory.fallback.is_empty() {
        println!(
            "! fallback: none: an alert that reaches nobody (no policy, nobody on call, \
             escalation exhausted, a number refused) is shown and logged, but nobody is phoned \
             about it; set [hospital] fallback in alertcall.toml (e.g. [\"person:charge-desk\"]) \
             or ALERTCALL_FALLBACK_PHONE"
        );
    } else {
        let targets: Vec<String> = directory.fallback.iter().map(ToString::to_string).collect();
        println!(
            "✓ fallback: {} called and texted when an alert reaches nobody",
            targets.join(", ")
        );
    }
}

/// How far ahead `check` walks the schedules for gaps.
const COVERAGE_DAYS: i64 = 14;

/// `check`'s proof that critical alerts reach someone: every critical alert matches a
/// policy, and no step of those policies reaches nobody in the next two weeks. Prints one
/// line per finding; false if anything would leave an alert unreached.
fn check_coverage(directory: &crate::config::file::Directory) -> bool {
    use crate::domain::escalation::{critical_coverage, gaps};
    if directory.policies.is_empty() {
        println!("✓ coverage: no policies, so every critical alert calls NURSE_PHONE_NUMBER");
        return true;
    }
    let mut ok = true;
    match critical_coverage(&directory.policies) {
        Ok(policy) => println!(
            "✓ coverage: every critical alert (any type, any room) matches a policy (at least {policy:?})"
        ),
        Err(why) => {
            ok = false;
            println!("✗ coverage: {why}");
        }
    }
    let tz = directory
        .time_zone
        .clone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let from = jiff::Timestamp::now();
    let until = from
        .checked_add(jiff::SignedDuration::from_hours(24 * COVERAGE_DAYS))
        .unwrap_or(from);
    let contact = |id: &str| {
        directory
            .staff
            .get(id)
            .map(|p| (p.phone.is_some(), p.sms.is_some()))
    };
    let local = |t: jiff::Timestamp| t.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z");
    let critical = directory
        .policies
        .iter()
        .filter(|p| p.matcher.takes_severity(crate::domain::alert::CRITICAL));
    let found: Vec<_> = critical
        .flat_map(|p| gaps(p, &directory.schedules, contact, from, until))
        .collect();
    if found.is_empty() {
        println!("✓ schedules: every step reaches someone for the next {COVERAGE_DAYS} days");
    } else {
        ok = false;
        println!(
            "✗ schedules: {} gap(s) in the next {COVERAGE_DAYS} days in which a step would reach nobody:",
            found.len()
        );
        for g in &found {
            println!(
                "    policy {:?} step {}: {} – {}: {}",
                g.policy,
                g.step + 1,
                local(g.from),
                local(g.until),
                g.why
            );
        }
    }
    ok
}

async fn alert(config: Config, cmd: AlertCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.migrate().await?;
    match cmd {
        AlertCommand::Raise {
            severity,
            patient,
            room,
            alert_type,
            title,
            message,
        } => {
            let id = store
                .insert_alert(&NewAlert {
                    severity,
                    patient_id: patient,
                    room,
                    alert_type,
                    title,
                    message,
                })
                .await?;
            println!("{id}");
        }
        AlertCommand::List { status, limit } => {
            let alerts = store
                .list_alerts(&AlertFilter {
                    status,
                    limit: limit.clamp(1, 10_000),
                    ..AlertFilter::default()
                })
                .await?;
            let rows = alerts
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        rfc3339(a.triggered_at),
                        a.severity.clone(),
                        a.status.as_str().to_string(),
                        a.room_name
                            .clone()
                            .or(a.room_id.clone())
                            .unwrap_or_default(),
                        a.alert_type.clone().unwrap_or_default(),
                        a.acknowledged_by.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "TRIGGERED",
                    "SEVERITY",
                    "STATUS",
                    "ROOM",
                    "TYPE",
                    "ACKNOWLEDGED BY",
                ],
                rows,
            );
        }
        AlertCommand::Show { id, details } => show(&config, &*store, &id, details).await?,
        AlertCommand::Resolve(args) => resolve(&*store, args).await?,
        AlertCommand::Ack { id, by } => {
            let by = Acknowledger::named("cli", &by);
            let now = Utc::now();
            match crate::engine::acknowledge(&*store, &id, &by, "cli", now)
                .await?
                .outcome
            {
                AckOutcome::Acknowledged => {
                    println!("acknowledged {id} as {}", by.as_str());
                }
                AckOutcome::AlreadyHandled | AckOutcome::AlreadyAcknowledgedHere => {
                    anyhow::bail!("alert {id} is not active (already acknowledged or resolved)")
                }
                AckOutcome::NoSuchAlert => {
                    anyhow::bail!("no alert {id}; `alertcall alert list` shows the ids")
                }
            }
        }
    }
    Ok(())
}

/// `alertcall alert show <id>`: the alert, its calls and its timeline in sentences, numbers
/// masked as in `calls`.
async fn show(
    config: &Config,
    store: &dyn store::Store,
    id: &str,
    details: bool,
) -> anyhow::Result<()> {
    let Some(view) = store
        .alert_views(&AlertFilter {
            id: Some(id.to_string()),
            limit: 1,
            ..AlertFilter::default()
        })
        .await?
        .pop()
    else {
        anyhow::bail!("no alert {id}; `alertcall alert list` shows the ids");
    };
    let alert = view.alert;
    let directory = crate::engine::directory_of(config)?;
    let mut calls = store.list_calls(Some(&alert.id), 500).await?;
    calls.sort_by_key(|c| c.created_at);
    let events = store.list_events(&alert.id).await?;
    let cx = directory.timeline(&calls, false);
    println!(
        "alert {}: {} {}",
        alert.id,
        alert.severity,
        alert.status.as_str()
    );
    let place = alert.room_name.as_ref().or(alert.room_id.as_ref());
    if let Some(message) = &alert.message {
        match place {
            Some(room) => println!("{message} ({room})"),
            None => println!("{message}"),
        }
    }
    println!();
    let rows = calls
        .iter()
        .map(|c| {
            vec![
                cx.clock(c.created_at),
                c.person
                    .as_deref()
                    .map(|p| directory.staff.get(p).map_or(p, |s| s.name.as_str()))
                    .unwrap_or_default()
                    .to_string(),
                crate::domain::phone::mask(&c.to_number),
                (c.step + 1).to_string(),
                c.outcome().label().to_string(),
            ]
        })
        .collect();
    print_table(&["CALLED", "PERSON", "TO", "STEP", "OUTCOME"], rows);
    println!();
    let timeline = crate::http::api::timeline_of(alert.triggered_at, &alert.severity, events, &cx);
    for entry in timeline {
        println!("{}", entry.text);
        if details {
            let mut detail = entry.detail;
            crate::http::api::mask_numbers(&mut detail);
            println!("    {} {} {detail}", entry.kind, entry.source);
        }
    }
    Ok(())
}

/// `alertcall alert resolve <id>` and `alertcall alert resolve --older-than <age> [--yes]`.
async fn resolve(store: &dyn store::Store, args: ResolveArgs) -> anyhow::Result<()> {
    let by = Acknowledger::named("cli", &args.by);
    let Some(age_text) = args.older_than else {
        let id = args.id.unwrap_or_default();
        if crate::engine::resolve(store, &id, &by, "cli", Utc::now()).await? {
            println!("resolved {id} as {}", by.as_str());
            return Ok(());
        }
        match store.load_alert(&id).await? {
            Some(_) => anyhow::bail!("alert {id} is already resolved"),
            None => anyhow::bail!("no alert {id}; `alertcall alert list` shows the ids"),
        }
    };
    let age = crate::config::parse_duration(&age_text)
        .map_err(|e| anyhow::anyhow!("--older-than {age_text:?}: {e}"))?;
    let human = crate::domain::alert::human_duration(age);
    let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let old = store
        .list_alerts(&AlertFilter {
            status: Some("active".into()),
            until: Some(before),
            limit: i64::from(u32::MAX),
            ..AlertFilter::default()
        })
        .await?;
    if old.is_empty() {
        println!("no active alert was triggered more than {human} ago; nothing to resolve");
        return Ok(());
    }
    if !args.yes {
        println!(
            "{} active alert(s) were triggered more than {human} ago:",
            old.len()
        );
        let rows = old
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    rfc3339(a.triggered_at),
                    a.severity.clone(),
                    a.room_name
                        .clone()
                        .or(a.room_id.clone())
                        .unwrap_or_default(),
                    a.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["ID", "TRIGGERED", "SEVERITY", "ROOM", "MESSAGE"], rows);
        println!(
            "Nothing was changed. To resolve these {}, run:\n  alertcall alert resolve --older-than {age_text} --yes",
            old.len()
        );
        return Ok(());
    }
    let mut resolved = 0;
    for alert in &old {
        // One closed meanwhile (by a nurse, say) is left as it is.
        if crate::engine::resolve(store, &alert.id, &by, "cli", Utc::now()).await? {
            resolved += 1;
        }
    }
    println!(
        "resolved {resolved} of {} active alert(s) triggered more than {human} ago, as {}",
        old.len(),
        by.as_str()
    );
    Ok(())
}

async fn calls(config: Config, alert: Option<String>, limit: i64) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    store.migrate().await?;
    let calls = store
        .list_calls(alert.as_deref(), limit.clamp(1, 10_000))
        .await?;
    let rows = calls
        .iter()
        .map(|c| {
            vec![
                rfc3339(c.created_at),
                c.alert_id.clone(),
                crate::domain::phone::mask(&c.to_number),
                c.provider.clone(),
                c.status.as_str().to_string(),
                c.outcome().label().to_string(),
                c.provider_call_id.clone().unwrap_or_default(),
                c.answered_at.map(rfc3339).unwrap_or_default(),
                c.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "CREATED",
            "ALERT",
            "TO",
            "PROVIDER",
            "STATUS",
            "OUTCOME",
            "CALL ID",
            "ACKNOWLEDGED",
            "ERROR",
        ],
        rows,
    );
    Ok(())
}

fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(headers.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row));
    }
}

async fn sim(config: Config, cmd: SimCommand) -> anyhow::Result<()> {
    let base = format!("{}/api/sim/calls", config.public_url);
    let client = serve_client()?;
    let (method, url, body) = match &cmd {
        SimCommand::List => (reqwest::Method::GET, base.clone(), None),
        SimCommand::Answer { call } => {
            (reqwest::Method::POST, format!("{base}/{call}/answer"), None)
        }
        SimCommand::Press { call, keys } => (
            reqwest::Method::POST,
            format!("{base}/{call}/press"),
            Some(serde_json::json!({ "keys": keys })),
        ),
        SimCommand::Say {
            call,
            text,
            confidence,
        } => (
            reqwest::Method::POST,
            format!("{base}/{call}/say"),
            Some(serde_json::json!({ "text": text, "confidence": confidence })),
        ),
        SimCommand::Silence { call } => (
            reqwest::Method::POST,
            format!("{base}/{call}/silence"),
            None,
        ),
        SimCommand::Hangup { call } => {
            (reqwest::Method::POST, format!("{base}/{call}/hangup"), None)
        }
        SimCommand::Sms => (reqwest::Method::GET, base.replace("/calls", "/sms"), None),
        SimCommand::Reply { from, text } => (
            reqwest::Method::POST,
            base.replace("/calls", "/sms/reply"),
            Some(serde_json::json!({ "from": from, "text": text })),
        ),
    };
    let value = ask_serve(&config, &client, method, &url, body.as_ref()).await?;
    if let Some(acknowledged) = value.get("acknowledged") {
        match acknowledged.as_str() {
            Some(alert) => println!("acknowledged {alert} by SMS"),
            None => {
                println!("no alert was acknowledged (not a 1, or no recent text to that number)")
            }
        }
        return Ok(());
    }
    if matches!(cmd, SimCommand::Sms) {
        let texts = value.as_array().cloned().unwrap_or_default();
        if texts.is_empty() {
            println!("(no simulated texts)");
        }
        for t in texts {
            let field = |k: &str| t.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            println!(
                "{}  to {}\n    \u{2709} {}",
                field("id"),
                field("to"),
                field("text")
            );
        }
        return Ok(());
    }
    let calls = match value {
        serde_json::Value::Array(calls) => calls,
        one => vec![one],
    };
    if calls.is_empty() {
        println!("(no simulated calls)");
    }
    for call in calls {
        let field = |k: &str| {
            call.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        println!("{}  {}  to {}", field("id"), field("state"), field("to"));
        if let Some(heard) = call.get("heard").and_then(|h| h.as_array()) {
            for line in heard {
                println!("    \u{1f50a} {}", line.as_str().unwrap_or(""));
            }
        }
        if let Some(to) = call.get("connected_to").and_then(|v| v.as_str()) {
            println!("    \u{2194} connected to {to}");
        }
        if let Some(name) = call.get("conference").and_then(|v| v.as_str()) {
            println!("    \u{260e} in conference {name}");
        }
    }
    Ok(())
}

/// The HTTP client that talks to the running `serve`.
fn serve_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?)
}

/// One request to the running `serve` (`alertcall sim`, `alertcall test-call`), with
/// ALERTCALL_API_TOKEN when set: its JSON answer, or what went wrong and what to do.
async fn ask_serve(
    config: &Config,
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let mut request = client.request(method, url);
    if let Some(token) = &config.api_token {
        request = request.bearer_auth(token.expose());
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.with_context(|| {
        format!("cannot reach alertcall at {url}; is `alertcall serve` running (ALERTCALL_LISTEN / ALERTCALL_PUBLIC_URL)? Start it with `alertcall serve`")
    })?;
    let status = response.status();
    let value: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = value.get("error").and_then(|e| e.as_str()).unwrap_or("");
        if status == reqwest::StatusCode::UNAUTHORIZED && !message.contains("ALERTCALL_API_TOKEN") {
            anyhow::bail!(
                "{status}: {message} (set ALERTCALL_API_TOKEN here to an admin API token that \
                 `alertcall serve` accepts)"
            );
        }
        anyhow::bail!("{status}: {message}");
    }
    Ok(value)
}

/// How often `test-call` asks how its call is going.
const TEST_CALL_POLL: Duration = Duration::from_millis(250);

/// `alertcall test-call <person | +number> [--wait 120s]`: asks the running `serve` (only it
/// receives the provider's webhooks) to place a test call, prints every change of its state,
/// then the outcome and what to do next. Exit status 0 only when 1 was pressed.
async fn test_call(config: &Config, to: &str, wait: &str) -> anyhow::Result<ExitCode> {
    let wait =
        crate::config::parse_duration(wait).map_err(|e| anyhow::anyhow!("--wait {wait:?}: {e}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    let client = serve_client()?;
    let url = format!("{}/api/v1/test-calls", config.public_url);
    let body = serde_json::json!({ "to": to });
    let post = reqwest::Method::POST;
    let mut call = ask_serve(config, &client, post, &url, Some(&body)).await?;
    let field = |call: &serde_json::Value, key: &str| call[key].as_str().unwrap_or("").to_string();
    let id = field(&call, "id");
    let person = match call["person_name"].as_str() {
        Some(name) => format!(" ({name}, {})", field(&call, "person")),
        None => String::new(),
    };
    println!(
        "test call {id} to {}{person} through {}",
        field(&call, "to"),
        field(&call, "provider")
    );
    let mut shown = String::new();
    let mut sim_hint = field(&call, "provider") == "simulator";
    while call["done"] != true {
        let state = field(&call, "state");
        if state != shown {
            println!("  {state}: {}", field(&call, "message"));
            shown = state;
        }
        let ringing = field(&call, "provider_call_id");
        if sim_hint && !ringing.is_empty() {
            println!(
                "  on the simulator: `alertcall sim answer {ringing}`, then `alertcall sim press {ringing} 1`"
            );
            sim_hint = false;
        }
        if tokio::time::Instant::now() >= deadline {
            println!(
                "✗ no outcome within {}: the call is still {shown}.\n  {}",
                crate::domain::alert::human_duration(wait),
                field(&call, "next")
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(TEST_CALL_POLL).await;
        let get = reqwest::Method::GET;
        call = ask_serve(config, &client, get, &format!("{url}/{id}"), None).await?;
    }
    let passed = call["passed"] == true;
    println!(
        "{} {}: {}\n  {}",
        if passed { "✓" } else { "✗" },
        field(&call, "state"),
        field(&call, "message"),
        field(&call, "next")
    );
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `alertcall hl7 send <file> [--to host:port] [--timeout 10s]`: sends each message in the
/// file on one connection and prints its ACK; exit status 0 only if every one got AA.
async fn hl7_send(
    config: &Config,
    file: &std::path::Path,
    to: Option<String>,
    timeout: &str,
) -> anyhow::Result<ExitCode> {
    use crate::hl7::send;
    let timeout = crate::config::parse_duration(timeout)
        .map_err(|e| anyhow::anyhow!("--timeout {timeout:?}: {e}"))?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let messages = send::messages(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let to = match (to, &config.hl7) {
        (Some(to), _) => to,
        (None, Some(settings)) => {
            // A listener on every address is reached here on this machine.
            let mut addr = settings.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            addr.to_string()
        }
        (None, None) => anyhow::bail!(
            "where to? ALERTCALL_HL7_LISTEN is not set here: give the listener with --to host:port"
        ),
    };
    let mut client = send::Client::connect(&to, timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    println!(
        "sending {} message{} from {} to {to}",
        messages.len(),
        if messages.len() == 1 { "" } else { "s" },
        file.display()
    );
    let mut all_accepted = true;
    for (i, message) in messages.iter().enumerate() {
        let control_id = message.split('|').nth(9).unwrap_or_default();
        let ack = match client.send(message).await {
            Ok(ack) => ack,
            Err(e) => {
                println!("✗ message {} ({control_id}): {e}", i + 1);
                return Ok(ExitCode::FAILURE);
            }
        };
        let mark = if ack.accepted() { "✓" } else { "✗" };
        println!(
            "{mark} message {} ({control_id}): {}",
            i + 1,
            ack.describe()
        );
        all_accepted &= ack.accepted();
    }
    Ok(if all_accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints who is on call on each schedule (or one) at an instant.
fn oncall(config: &Config, only: Option<&str>, at: Option<&str>) -> anyhow::Result<()> {
    if config.config_file.is_none() {
        anyhow::bail!(
            "no alertcall.toml here: copy alertcall.example.toml to alertcall.toml (or set \
             ALERTCALL_CONFIG) and describe the staff and schedules"
        );
    }
    let directory = config.directory()?;
    let schedules: Vec<_> = directory
        .schedules
        .iter()
        .filter(|s| only.is_none_or(|name| s.name == name))
        .collect();
    if let Some(name) = only
        && schedules.is_empty()
    {
        let known: Vec<&str> = directory
            .schedules
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        anyhow::bail!(
            "no schedule {name:?}; the schedules are: {}",
            known.join(", ")
        );
    }
    let mut rows = Vec::new();
    for schedule in schedules {
        let instant = match at {
            None => jiff::Timestamp::now(),
            Some(text) => text
                .parse::<jiff::Timestamp>()
                .ok()
                .or_else(|| {
                    let local = text.parse::<jiff::civil::DateTime>().ok()?;
                    crate::domain::schedule::local_instant(&schedule.time_zone, local)
                })
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--at {text:?} is neither an instant (2026-03-12T19:00:00Z) nor a local \
                         time (2026-03-12T19:00)"
                    )
                })?,
        };
        let local = |t: jiff::Timestamp| {
            t.to_zoned(schedule.time_zone.clone())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string()
        };
        let handover = schedule
            .next_handover(instant)
            .map(local)
            .unwrap_or_default();
        let on_call = schedule.on_call(instant);
        if on_call.is_empty() {
            rows.push(vec![
                schedule.name.clone(),
                "(nobody)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                handover.clone(),
            ]);
        }
        for c in on_call {
            let name = directory
                .staff
                .get(&c.person)
                .map(|p| p.name.clone())
                .unwrap_or_default();
            rows.push(vec![
                schedule.name.clone(),
                c.person,
                name,
                c.shift,
                local(c.from),
                local(c.until),
                handover.clone(),
            ]);
        }
    }
    print_table(
        &[
            "SCHEDULE",
            "ID",
            "NAME",
            "SHIFT",
            "FROM",
            "UNTIL",
            "NEXT HANDOVER",
        ],
        rows,
    );
    Ok(())
}

/// `alertcall hash-password [--token]`.
fn hash_password(token: bool) -> anyhow::Result<ExitCode> {
    if token {
        let token = crate::auth::random_token();
        println!("token:  {token}");
        println!("sha256: {}", crate::auth::token_hash(&token));
        println!(
            "Give the token to the client (Authorization: Bearer <token>) and put only the sha256 in alertcall.toml:\n\n[[api_tokens]]\nname = \"grafana\"\nrole = \"viewer\"\nsha256 = \"{}\"",
            crate::auth::token_hash(&token)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.chars().count() < 12 {
        anyhow::bail!("use a password of at least 12 characters");
    }
    println!("{}", crate::auth::hash_password(password));
    Ok(ExitCode::SUCCESS)
}
