//! `alertcall-bench`: measures the real `alertcall serve` binary from the outside.
//!
//! The benchmark plays every other party: it is the hospital app (plain `INSERT`s on its own
//! database connection), Vonage (a local fake of `POST /v1/calls`) and the nurse (signed
//! DTMF-1 webhooks). `serve` runs as a separate process exactly as it is deployed, so the
//! figures include the trigger or `data_version` watch, the engine, the HTTP client and the
//! webhook server, and nothing is measured from inside alertcall's own code.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release --bin alertcall-bench -- --db postgres
//! cargo run --release --bin alertcall-bench -- --db sqlite
//! ```
//!
//! The last line of stdout is one JSON object with the results; everything before it is a
//! human-readable summary. The exit status is 1 when a call was missed or duplicated, or an
//! acknowledgement failed, so the benchmark doubles as an end-to-end check. Linux only: the
//! memory figures come from `/proc/<pid>/status`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

/// A test-only RSA key (the integration tests use it too). The fake Vonage does not check
/// the application JWT, but `serve` refuses to start without a valid key to sign it with.
const PRIVATE_KEY: &str = include_str!("../../tests/fixtures/vonage-test-private.pem");
const APPLICATION_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const FROM_NUMBER: &str = "+447700900001";
const NURSE_NUMBER: &str = "+13854019951";
/// Webhooks are signed, as in production, so the acknowledgement figures include the
/// signature check.
const SIGNATURE_SECRET: &str = "bench-secret";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long `serve` may take to migrate and answer `/healthz`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// After the last steady insert: longer than one 5 s sweep, so an alert whose notification
/// was lost is still counted as late rather than missed.
const STEADY_SETTLE: Duration = Duration::from_secs(15);
const BURST_DEADLINE: Duration = Duration::from_secs(60);
/// How long `serve` gets to stop after SIGTERM before it is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(15);
/// Polling step of the waits. Arrival times are taken by the fake itself, so this only
/// decides how soon the benchmark moves on, not what it measures.
const POLL: Duration = Duration::from_millis(2);
/// How much older than the benchmark the server binary may be before a warning.
const STALE_MARGIN: Duration = Duration::from_secs(60);
/// How often the floor's bare client reads `PRAGMA data_version` on SQLite: alertcall's
/// default `ALERTCALL_SQLITE_WATCH_INTERVAL`.
const SQLITE_WATCH: Duration = Duration::from_millis(20);
/// What the nurse hears after pressing 1.
const ACKNOWLEDGED: &str = "Alert acknowledged";

#[derive(Parser, Debug)]
#[command(
    name = "alertcall-bench",
    about = "Benchmarks the alertcall serve binary on a year of history: alert-to-call latency against the physical floor, a burst, acknowledgement webhooks, analytics, the board and memory"
)]
struct Args {
    /// Which database `serve` runs on.
    #[arg(long, value_enum)]
    db: DbKind,
    /// Postgres admin URL; a fresh database is created next to it and dropped at the end.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        hide_env_values = true,
        default_value = DEFAULT_ADMIN_URL
    )]
    database_url: String,
    /// Alerts inserted one at a time in the steady phase.
    #[arg(long, default_value_t = 200)]
    alerts: usize,
    /// Steady-phase inserts per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Alerts inserted by one statement in the burst phase.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// Acknowledgement webhooks in flight at once.
    #[arg(long, default_value_t = 32)]
    acks: usize,
    /// HL7 alarms (each a PH start and its end) sent in the HL7 phase.
    #[arg(long, default_value_t = 1000)]
    hl7_alarms: usize,
    /// The `alertcall` binary to run (default: the one next to this benchmark).
    #[arg(long)]
    serve: Option<PathBuf>,
    /// Historical alerts seeded over the year before the run, so that every figure is
    /// taken on a realistic table [default: 1000000 on Postgres, 200000 on SQLite].
    #[arg(long)]
    history: Option<usize>,
    /// Active (high, not paged) alerts on the board while the board and call history are
    /// measured.
    #[arg(long, default_value_t = 10_000)]
    active: usize,
}

impl Args {
    fn history(&self) -> usize {
        self.history.unwrap_or(match self.db {
            DbKind::Postgres => 1_000_000,
            DbKind::Sqlite => 200_000,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DbKind {
    Postgres,
    Sqlite,
}

impl DbKind {
    fn name(self) -> &'static str {
        match self {
            DbKind::Postgres => "postgres",
            DbKind::Sqlite => "sqlite",
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("alertcall-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Sets everything up, runs the phases, and tears everything down whether they succeeded
/// or not. Returns whether every correctness check passed.
async fn run(args: Args) -> Result<bool> {
    ensure!(args.alerts >= 1, "--alerts must be at least 1");
    ensure!(
        args.rate > 0.0 && args.rate.is_finite(),
        "--rate must be above 0"
    );
    ensure!(args.burst >= 1, "--burst must be at least 1");
    ensure!(args.acks >= 1, "--acks must be at least 1");
    ensure!(
        args.hl7_alarms >= HL7_CONNECTIONS,
        "--hl7-alarms must be at least {HL7_CONNECTIONS}"
    );
    let serve_path = serve_binary(args.serve.as_deref())?;

    let work_dir = std::env::temp_dir().join(format!("alertcall-bench-{}", short_id()));
    std::fs::create_dir(&work_dir).with_context(|| format!("creating {}", work_dir.display()))?;
    let database = match BenchDatabase::create(args.db, &args.database_url, &work_dir).await {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&work_dir);
            return Err(e);
        }
    };
    let outcome = bench(&args, &serve_path, &database, &work_dir).await;
    let dropped = database.drop_database().await;
    let _ = std::fs::remove_dir_all(&work_dir);
    let ok = outcome?;
    dropped?;
    Ok(ok)
}

/// The part between creating and dropping the database: fake Vonage, `serve`, the phases.
async fn bench(
    args: &Args,
    serve_path: &Path,
    database: &BenchDatabase,
    dir: &Path,
) -> Result<bool> {
    let fake = FakeVonage::start().await?;
    let log_path = dir.join("serve.log");
    let mut serve = Serve::start(serve_path, &database.url, &fake.url, &log_path, &[])?;
    eprintln!(
        "serve pid {} on {}, database {}",
        serve.pid(),
        serve.base_url,
        database.label
    );
    let client = reqwest::Client::builder()
        // Loopback only: a proxy from the environment must not sit in the measured path.
        .no_proxy()
        .pool_max_idle_per_host(args.acks)
        .build()?;
    let result = async {
        serve.wait_healthy(&client).await?;
        let db = database.connect().await?;
        let history = args.history();
        eprintln!("history: {history} alerts over the year before the run");
        let seeding = Instant::now();
        db.seed_history(history).await?;
        let seed_s = seeding.elapsed().as_secs_f64();
        eprintln!("history: seeded in {seed_s:.1} s");
        let phases = phases(args, &db, &fake, &serve, &client).await;
        db.close().await;
        phases
    }
    .await;
    let exit = serve.stop();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    report_serve_log(&log);
    let (mut report, ok) = result?;
    let status = exit?;
    if !status.success() {
        eprintln!("serve did not exit cleanly after SIGTERM: {status}");
        return Ok(false);
    }
    let (limit, late) = limited(serve_path, database, &fake, dir, &client).await?;
    report.provider_limit = Some(limit);
    report.escalation_late_ms = Some(late);
    let (hl7, hl7_ok) = hl7_phase(serve_path, database, &fake, dir, args.hl7_alarms).await?;
    report.hl7 = Some(hl7);
    println!("{}", serde_json::to_string(&report)?);
    Ok(ok && hl7_ok)
}

/// Calls per second allowed in the limit phase (Vonage's default account limit).
const LIMIT_PER_S: f64 = 3.0;
/// Alerts in the limit phase: ten seconds of calls at that limit.
const LIMIT_ALERTS: usize = 30;
/// The wait for "press 1" in the limit phase, so that it runs out during the benchmark.
const LIMIT_WAIT_MS: f64 = 1000.0;

/// A second `serve` with a provider limit of 3 calls/s and a 1 s wait: a burst must be
/// spread at that rate (within 10%), and each unacknowledged page's wait must run out on
/// time.
async fn limited(
    serve_path: &Path,
    database: &BenchDatabase,
    fake: &FakeVonage,
    dir: &Path,
    client: &reqwest::Client,
) -> Result<(LimitReport, Percentiles)> {
    eprintln!(
        "limit: {LIMIT_ALERTS} alerts at once under a limit of {LIMIT_PER_S} calls/s, left unacknowledged"
    );
    let log_path = dir.join("serve-limited.log");
    let mut serve = Serve::start(
        serve_path,
        &database.url,
        &fake.url,
        &log_path,
        &[
            ("ALERTCALL_CALLS_PER_SECOND", "3"),
            ("ALERTCALL_ACK_WAIT", "1s"),
        ],
    )?;
    let result = async {
        serve.wait_healthy(client).await?;
        let db = database.connect().await?;
        db.insert_burst(Phase::Limited, LIMIT_ALERTS).await?;
        let commit = Instant::now();
        let deadline =
            commit + Duration::from_secs_f64(LIMIT_ALERTS as f64 / LIMIT_PER_S * 2.0 + 10.0);
        ensure!(
            fake.wait_for(Phase::Limited, LIMIT_ALERTS, deadline).await,
            "the limited calls did not all arrive"
        );
        let mut times: Vec<Instant> = fake
            .phase(Phase::Limited)
            .calls()
            .iter()
            .map(|a| a.at)
            .collect();
        times.sort();
        let span = times[times.len() - 1]
            .duration_since(times[0])
            .as_secs_f64();
        let measured = (times.len() - 1) as f64 / span;
        // Every page's wait runs out one second after its call.
        let mut late = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            late = db.exhausted_lateness_ms(LIMIT_WAIT_MS).await?;
            if late.len() >= LIMIT_ALERTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        db.close().await;
        ensure!(
            late.len() >= LIMIT_ALERTS,
            "only {} waits ran out",
            late.len()
        );
        Ok((
            LimitReport {
                configured_per_s: LIMIT_PER_S,
                measured_per_s: round(measured, 3),
            },
            Percentiles::of(&late),
        ))
    }
    .await;
    let _ = serve.stop();
    let (limit, late) = result?;
    println!(
        "  provider limit {} calls/s: measured {:.3} calls/s over {LIMIT_ALERTS} calls",
        limit.configured_per_s, limit.measured_per_s
    );
    println!(
        "  waits for press 1 ran out late by p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        late.p50, late.p99, late.max
    );
    Ok((limit, late))
}

/// Runs of each analytics range; the slowest is reported.
const ANALYTICS_RUNS: usize = 3;
/// Requests of each API listing, one at a time, for its p99.
const API_REQUESTS: usize = 200;
/// The API token `serve` is given.
const API_TOKEN: &str = "bench-admin-token";

/// `GET /api/v1/analytics` for the last 24 hours, 30 days, year and all time; also returns
/// how many alerts the all-time figures counted.
async fn analytics_latency(
    client: &reqwest::Client,
    serve_url: &str,
) -> Result<(AnalyticsMs, u64)> {
    let now = chrono::Utc::now();
    let since = |days: i64| {
        (now - chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let mut slowest = [0.0f64; 4];
    let mut all_time_alerts = 0;
    let ranges = [
        since(1),
        since(30),
        since(365),
        "1970-01-01T00:00:00Z".to_string(),
    ];
    for (i, from) in ranges.iter().enumerate() {
        for _ in 0..ANALYTICS_RUNS {
            let url = format!("{serve_url}/api/v1/analytics?from={from}");
            let sent = Instant::now();
            let response = client.get(&url).bearer_auth(API_TOKEN).send().await?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .with_context(|| format!("GET {url}"))?;
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            ensure!(status.is_success(), "GET {url}: {status}: {body}");
            slowest[i] = slowest[i].max(ms);
            all_time_alerts = body["alerts"].as_u64().unwrap_or(0);
        }
    }
    let [day, month, year, all_time] = slowest.map(|ms| round(ms, 1));
    Ok((
        AnalyticsMs {
            day,
            month,
            year,
            all_time,
        },
        all_time_alerts,
    ))
}

/// p99 of `API_REQUESTS` GETs of `path`, one at a time, each answered 200.
async fn api_p99_ms(client: &reqwest::Client, serve_url: &str, path: &str) -> Result<f64> {
    let url = format!("{serve_url}{path}");
    let mut latencies = Vec::with_capacity(API_REQUESTS);
    for _ in 0..API_REQUESTS {
        let sent = Instant::now();
        let response = client.get(&url).bearer_auth(API_TOKEN).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        ensure!(status.is_success(), "GET {url}: {status}");
        ensure!(!body.is_empty(), "GET {url}: an empty answer");
    }
    latencies.sort_by(f64::total_cmp);
    Ok(percentile(&latencies, 0.99))
}

/// The physical floor under alertcall's latency: `count` inserts at `rate` per second into
/// a table of the benchmark's own, each seen by a bare client the way the database tells
/// (Postgres: a trigger's NOTIFY; SQLite: `PRAGMA data_version` polled at alertcall's
/// default 20 ms) and turned into one HTTP request to the fake. Latencies in ms, ascending,
/// from the moment the `INSERT` is sent: on loopback the notification can overtake the
/// `INSERT`'s own answer, so a latency from its return would be about zero or below.
async fn measure_floor(
    db: &Db,
    fake: &FakeVonage,
    client: &reqwest::Client,
    count: usize,
    rate: f64,
) -> Result<Vec<f64>> {
    db.create_floor_table().await?;
    let watcher = db
        .floor_watcher(client.clone(), format!("{}/floor", fake.url))
        .await?;
    let start = tokio::time::Instant::now();
    let mut sends = HashMap::with_capacity(count);
    for n in 1..=count {
        tokio::time::sleep_until(start + Duration::from_secs_f64((n - 1) as f64 / rate)).await;
        let sent = Instant::now();
        let id = db.insert_floor().await?;
        sends.insert(id, sent);
    }
    let deadline = Instant::now() + STEADY_SETTLE;
    while fake.lock().floor.len() < count && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    watcher.abort();
    let arrivals = fake.lock().floor.clone();
    ensure!(
        arrivals.len() == count,
        "the floor's watcher made {} of {count} requests",
        arrivals.len()
    );
    let mut latencies: Vec<f64> = sends
        .iter()
        .filter_map(|(id, sent)| Some(signed_ms(*arrivals.get(id)?, *sent)))
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// Alarm gateways connected at once in the HL7 phase.
const HL7_CONNECTIONS: usize = 10;

/// An `ORU^R40` for bench alarm `n` in `phase` (`start` or `end`): priority PH, its text the
/// bench token that the fake finds in the call.
fn oru(n: usize, phase: &str) -> String {
    let state = if phase == "end" { "inactive" } else { "active" };
    [
        format!(
            "MSH|^~\\&|BENCH_GW^0012A4FFFE000099^EUI-64|ICU|||20261203101500+0000||ORU^R40^ORU_R40|{phase}-{n}|P|2.6|||AL|NE||UNICODE UTF-8"
        ),
        format!("PID|||MRN{n}"),
        format!("PV1||I|ICU^Room {}^Bed 1", n % 20),
        format!("OBR|1|ALM-{n}^BENCH_GW|ALM-{n}^BENCH_GW|196616^MDC_EVT_ALARM^MDC|||20261203101500+0000"),
        format!("OBX|1|ST|196648^MDC_EVT_HI_GT_LIM^MDC|1.0.0.0.1|{}{n}|||PH~SP|||F", Phase::Hl7.prefix()),
        format!("OBX|2|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.0.0.0.2|{phase}||||||F"),
        format!("OBX|3|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.0.0.0.3|{state}||||||F"),
    ]
    .join("\r")
}

/// Sends `phase` of every alarm over `HL7_CONNECTIONS` connections, each alarm on the
/// connection `n % HL7_CONNECTIONS`; the ACK latencies and when each message was sent.
async fn hl7_send_all(
    listener: SocketAddr,
    alarms: usize,
    phase: &'static str,
) -> Result<(Vec<f64>, HashMap<usize, Instant>, Duration)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for connection in 0..HL7_CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut client = alertcall::hl7::send::Client::connect(
                &listener.to_string(),
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| anyhow!(e))?;
            let mut acks = Vec::new();
            let mut sent = Vec::new();
            for n in (1..=alarms).filter(|n| n % HL7_CONNECTIONS == connection) {
                let at = Instant::now();
                let ack = client.send(&oru(n, phase)).await.map_err(|e| anyhow!(e))?;
                ensure!(ack.accepted(), "{phase} of alarm {n}: {}", ack.describe());
                acks.push(at.elapsed().as_secs_f64() * 1000.0);
                sent.push((n, at));
            }
            Ok::<_, anyhow::Error>((acks, sent))
        }));
    }
    let mut acks = Vec::with_capacity(alarms);
    let mut sent = HashMap::with_capacity(alarms);
    for task in tasks {
        let (a, s) = task.await??;
        acks.extend(a);
        sent.extend(s);
    }
    Ok((acks, sent, started.elapsed()))
}

/// The HL7 phase: a `serve` with the MLLP listener; ten gateways send a PH start for every
/// alarm, then its end. Messages acknowledged per second, the ACK latency, and the time from
/// a start to its call request.
async fn hl7_phase(
    serve_path: &Path,
    database: &BenchDatabase,
    fake: &FakeVonage,
    dir: &Path,
    alarms: usize,
) -> Result<(Hl7Report, bool)> {
    eprintln!("hl7: {alarms} alarms (PH start, then end) over {HL7_CONNECTIONS} MLLP connections");
    let listener = free_port()?;
    let listen = listener.to_string();
    let log_path = dir.join("serve-hl7.log");
    let mut serve = Serve::start(
        serve_path,
        &database.url,
        &fake.url,
        &log_path,
        &[("ALERTCALL_HL7_LISTEN", listen.as_str())],
    )?;
    let result = async {
        let client = reqwest::Client::builder().no_proxy().build()?;
        serve.wait_healthy(&client).await?;
        let (mut acks, sent, starts_wall) = hl7_send_all(listener, alarms, "start").await?;
        let called = fake
            .wait_for(Phase::Hl7, alarms, Instant::now() + BURST_DEADLINE)
            .await;
        let calls = fake.phase(Phase::Hl7);
        let mut to_call: Vec<f64> = calls
            .first
            .iter()
            .filter_map(|(n, a)| Some(signed_ms(a.at, *sent.get(&(*n as usize))?)))
            .collect();
        to_call.sort_by(f64::total_cmp);
        let (end_acks, _, ends_wall) = hl7_send_all(listener, alarms, "end").await?;
        acks.extend(end_acks);
        acks.sort_by(f64::total_cmp);
        let messages = acks.len();
        let report = Hl7Report {
            connections: HL7_CONNECTIONS,
            messages,
            messages_per_s: round(messages as f64 / (starts_wall + ends_wall).as_secs_f64(), 1),
            ack_ms: Percentiles::of(&acks),
            oru_to_call_ms: Percentiles::of(&to_call),
        };
        let duplicates = calls.requests - calls.first.len();
        let ok = called && duplicates == 0;
        if !called {
            println!(
                "  HL7 PROBLEM: {} of {alarms} PH alarms were called",
                calls.first.len()
            );
        }
        if duplicates > 0 {
            println!("  HL7 PROBLEM: {duplicates} alarms called more than once");
        }
        Ok::<_, anyhow::Error>((report, ok))
    }
    .await;
    let _ = serve.stop();
    report_serve_log(&std::fs::read_to_string(&log_path).unwrap_or_default());
    let (report, ok) = result?;
    let (a, c) = (&report.ack_ms, &report.oru_to_call_ms);
    println!(
        "  HL7: {} messages over {} connections, {:.1} acknowledged/s; ACK p50 {:.2} ms, p99 {:.2} ms; ORU start -> call request p50 {:.2} ms, p99 {:.2} ms",
        report.messages, report.connections, report.messages_per_s, a.p50, a.p99, c.p50, c.p99
    );
    Ok((report, ok))
}

/// The measured phases, in order: steady, idle memory, burst, peak memory, acknowledgements.
async fn phases(
    args: &Args,
    db: &Db,
    fake: &FakeVonage,
    serve: &Serve,
    client: &reqwest::Client,
) -> Result<(Report, bool)> {
    // The physical floor: a bare client's INSERT -> NOTIFY (or data_version) -> one loopback
    // HTTP request, on the same database, at the steady phase's pace.
    eprintln!(
        "floor: {} bare INSERT -> notification -> HTTP requests",
        args.alerts
    );
    let floor = measure_floor(db, fake, client, args.alerts, args.rate).await?;

    // Steady phase: one alert at a time, as a ward produces them.
    eprintln!(
        "steady: {} alerts at {}/s (about {:.0} s)",
        args.alerts,
        args.rate,
        args.alerts as f64 / args.rate
    );
    let start = tokio::time::Instant::now();
    let mut commits = Vec::with_capacity(args.alerts);
    let mut sends = Vec::with_capacity(args.alerts);
    for n in 1..=args.alerts {
        let due = start + Duration::from_secs_f64((n - 1) as f64 / args.rate);
        tokio::time::sleep_until(due).await;
        sends.push(Instant::now());
        db.insert_one(&format!("{}{n}", Phase::Steady.prefix()))
            .await?;
        commits.push(Instant::now());
    }
    fake.wait_for(Phase::Steady, args.alerts, Instant::now() + STEADY_SETTLE)
        .await;
    let steady = fake.phase(Phase::Steady);
    let by_token: Vec<(u32, f64)> = (1..)
        .zip(&commits)
        .filter_map(|(n, commit)| Some((n, signed_ms(steady.first.get(&n)?.at, *commit))))
        .collect();
    // Which alert was slowest tells a cold start (the first) from a stall (any other).
    if let Some((n, ms)) = by_token.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
        eprintln!(
            "steady: the slowest was {}{n}, {ms:.2} ms",
            Phase::Steady.prefix()
        );
    }
    let mut latencies: Vec<f64> = by_token.iter().map(|(_, ms)| *ms).collect();
    latencies.sort_by(f64::total_cmp);
    // As the floor measures it: from the moment the INSERT is sent.
    let mut from_send: Vec<f64> = (1..)
        .zip(&sends)
        .filter_map(|(n, sent)| Some(signed_ms(steady.first.get(&n)?.at, *sent)))
        .collect();
    from_send.sort_by(f64::total_cmp);
    let steady_missed = args.alerts - steady.first.len();
    let rss_idle_mb = proc_status_mb(serve.pid(), "VmRSS")?;

    // Acknowledge the steady calls too (unmeasured), so no page runs into ALERTCALL_ACK_WAIT
    // and logs ESCALATION EXHAUSTED while the burst is measured.
    let steady_acks = acknowledge(client, &serve.base_url, &steady.calls(), args.acks).await?;

    // Burst phase: a whole ward's worth of critical alerts in one commit.
    eprintln!("burst: {} alerts in one statement", args.burst);
    let cpu_before_burst = cpu_seconds(serve.pid())?;
    db.insert_burst(Phase::Burst, args.burst).await?;
    let burst_commit = Instant::now();
    fake.wait_for(Phase::Burst, args.burst, burst_commit + BURST_DEADLINE)
        .await;
    let burst = fake.phase(Phase::Burst);
    let seconds_to_last_call = burst
        .first
        .values()
        .map(|a| signed_ms(a.at, burst_commit) / 1000.0)
        .fold(0.0, f64::max);
    let burst_cpu = CpuUse {
        cpu: cpu_seconds(serve.pid())? - cpu_before_burst,
        wall: seconds_to_last_call,
    };

    // Acknowledgement phase: the nurse presses 1 on every burst call.
    eprintln!(
        "acks: {} signed DTMF-1 webhooks, {} at a time",
        burst.first.len(),
        args.acks
    );
    let cpu_before_acks = cpu_seconds(serve.pid())?;
    let acks = acknowledge(client, &serve.base_url, &burst.calls(), args.acks).await?;
    let acks_cpu = CpuUse {
        cpu: cpu_seconds(serve.pid())? - cpu_before_acks,
        wall: acks.wall.as_secs_f64(),
    };
    let acked_in_db = db.count_acknowledged(Phase::Burst).await?;

    // Analytics over the history, then the board and call history with active alerts.
    let history = args.history();
    eprintln!("analytics: 24 h, 30 days, 1 year and all time, {ANALYTICS_RUNS} runs each");
    let (analytics, analytics_alerts) = analytics_latency(client, &serve.base_url).await?;
    eprintln!("api: {} active alerts on the board", args.active);
    db.insert_active(args.active).await?;
    let board_p99_ms = api_p99_ms(client, &serve.base_url, "/api/v1/alerts").await?;
    let calls_p99_ms = api_p99_ms(client, &serve.base_url, "/api/v1/calls").await?;
    // The high-water mark: the largest the process was at any time in the run.
    let rss_peak_mb = proc_status_mb(serve.pid(), "VmHWM")?;

    // Duplicates are counted last, so that a call placed twice late (by a sweep, say) during
    // the later phases is still caught.
    let steady = fake.phase(Phase::Steady);
    let burst_final = fake.phase(Phase::Burst);
    let steady_duplicates = steady.requests - steady.first.len();
    let burst_duplicates = burst_final.requests - burst_final.first.len();
    let burst_missed = args.burst - burst_final.first.len();

    let report = Report {
        db: db.kind().name(),
        alerts: args.alerts,
        latency_ms: Percentiles::of(&latencies),
        burst: BurstReport {
            alerts: args.burst,
            seconds_to_last_call: round(seconds_to_last_call, 3),
        },
        ack_webhooks_per_s: round(acks.per_second(), 1),
        ack_p99_ms: round(acks.p99_ms(), 2),
        rss_idle_mb: round(rss_idle_mb, 1),
        rss_peak_mb: round(rss_peak_mb, 1),
        history,
        active: args.active,
        floor_ms: Percentiles::of(&floor),
        latency_from_send_ms: Percentiles::of(&from_send),
        floor_ratio: Ratio {
            p50: round(percentile(&from_send, 0.50) / percentile(&floor, 0.50), 2),
            p99: round(percentile(&from_send, 0.99) / percentile(&floor, 0.99), 2),
        },
        analytics_ms: analytics,
        board_p99_ms: round(board_p99_ms, 2),
        calls_p99_ms: round(calls_p99_ms, 2),
        duplicates: steady_duplicates + burst_duplicates,
        missed: steady_missed + burst_missed,
        acked_in_db,
        provider_limit: None,
        escalation_late_ms: None,
        hl7: None,
    };

    let unmatched = fake.unmatched();
    let problems = [
        (steady_missed, "steady alerts never called"),
        (steady_duplicates, "steady alerts called more than once"),
        (burst_missed, "burst alerts never called"),
        (burst_duplicates, "burst alerts called more than once"),
        (unmatched, "create-call requests without a bench token"),
        (steady_acks.failures.len(), "steady acknowledgements failed"),
        (acks.failures.len(), "burst acknowledgements failed"),
        (
            args.burst.saturating_sub(acked_in_db as usize),
            "burst alerts not acknowledged in the database",
        ),
        (
            history.saturating_sub(analytics_alerts as usize),
            "historical alerts missing from the all-time analytics",
        ),
    ];
    print_summary(&report, &acks, [burst_cpu, acks_cpu], &problems);
    for failure in acks.failures.iter().chain(&steady_acks.failures).take(5) {
        println!("  ack failure: {failure}");
    }
    Ok((report, problems.iter().all(|(count, _)| *count == 0)))
}

fn print_summary(
    report: &Report,
    acks: &AckRun,
    [burst_cpu, acks_cpu]: [CpuUse; 2],
    problems: &[(usize, &str)],
) {
    let l = &report.latency_ms;
    println!("alertcall-bench on {}", report.db);
    println!(
        "  INSERT -> call request ({} alerts): p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.alerts, l.p50, l.p95, l.p99, l.max
    );
    println!(
        "  burst of {}: last call {:.3} s after the commit",
        report.burst.alerts, report.burst.seconds_to_last_call
    );
    println!(
        "  acknowledgements: {} in {:.3} s = {:.1}/s, p50 {:.2} ms, p99 {:.2} ms; {} acknowledged in the database",
        acks.latencies_ms.len(),
        acks.wall.as_secs_f64(),
        report.ack_webhooks_per_s,
        percentile(&acks.latencies_ms, 0.50),
        report.ack_p99_ms,
        report.acked_in_db
    );
    println!(
        "  from INSERT sent: physical floor (bare INSERT -> notification -> HTTP request) p50 {:.2} ms, \
         p99 {:.2} ms; alertcall (INSERT -> call request) p50 {:.2} ms, p99 {:.2} ms = {:.2}x, {:.2}x the floor",
        report.floor_ms.p50,
        report.floor_ms.p99,
        report.latency_from_send_ms.p50,
        report.latency_from_send_ms.p99,
        report.floor_ratio.p50,
        report.floor_ratio.p99
    );
    let a = &report.analytics_ms;
    println!(
        "  analytics over {} historical alerts (slowest of {ANALYTICS_RUNS}): 24 h {:.0} ms, 30 days {:.0} ms, 1 year {:.0} ms, all time {:.0} ms",
        report.history, a.day, a.month, a.year, a.all_time
    );
    println!(
        "  with {} active alerts: board p99 {:.2} ms, call history p99 {:.2} ms",
        report.active, report.board_p99_ms, report.calls_p99_ms
    );
    println!(
        "  serve memory: {:.1} MB resident when idle, {:.1} MB peak (whole run)",
        report.rss_idle_mb, report.rss_peak_mb
    );
    println!("  serve CPU: {burst_cpu} during the burst, {acks_cpu} during the acknowledgements");
    let wrong: Vec<String> = problems
        .iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
    if wrong.is_empty() {
        println!("  every alert was called exactly once and every acknowledgement was recorded");
    } else {
        println!("  PROBLEMS: {}", wrong.join("; "));
    }
}

/// A clean run of `serve` at `RUST_LOG=warn` logs nothing; anything it did log is shown.
fn report_serve_log(log: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return;
    }
    eprintln!("serve logged {} line(s) at warn or above:", lines.len());
    for line in lines.iter().take(10) {
        eprintln!("  {line}");
    }
}

/// The JSON line. Field order is the documented one, hence a struct and not `json!`.
#[derive(Serialize, Debug)]
struct Report {
    db: &'static str,
    alerts: usize,
    latency_ms: Percentiles,
    burst: BurstReport,
    ack_webhooks_per_s: f64,
    ack_p99_ms: f64,
    rss_idle_mb: f64,
    rss_peak_mb: f64,
    /// Historical alerts seeded before the run.
    history: usize,
    /// A bare client's INSERT -> notification -> HTTP request on the same database, from the
    /// moment the INSERT is sent.
    floor_ms: Percentiles,
    /// alertcall's INSERT -> call request, measured as the floor is.
    latency_from_send_ms: Percentiles,
    /// `latency_from_send_ms` over `floor_ms`.
    floor_ratio: Ratio,
    analytics_ms: AnalyticsMs,
    active: usize,
    board_p99_ms: f64,
    calls_p99_ms: f64,
    duplicates: usize,
    missed: usize,
    acked_in_db: i64,
    provider_limit: Option<LimitReport>,
    /// How late a page's wait for "press 1" ran out against its due time.
    escalation_late_ms: Option<Percentiles>,
    hl7: Option<Hl7Report>,
}

#[derive(Serialize, Debug)]
struct Hl7Report {
    connections: usize,
    messages: usize,
    messages_per_s: f64,
    ack_ms: Percentiles,
    /// From sending a PH start to alertcall's create-call request.
    oru_to_call_ms: Percentiles,
}

#[derive(Serialize, Debug)]
struct Ratio {
    p50: f64,
    p99: f64,
}

/// `GET /api/v1/analytics` over each range, the slowest of its runs.
#[derive(Serialize, Debug)]
struct AnalyticsMs {
    day: f64,
    month: f64,
    year: f64,
    all_time: f64,
}

#[derive(Serialize, Debug)]
struct LimitReport {
    configured_per_s: f64,
    measured_per_s: f64,
}

#[derive(Serialize, Debug)]
struct BurstReport {
    alerts: usize,
    seconds_to_last_call: f64,
}

#[derive(Serialize, Debug, PartialEq)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// From latencies sorted in ascending order.
    fn of(sorted: &[f64]) -> Percentiles {
        Percentiles {
            p50: round(percentile(sorted, 0.50), 2),
            p95: round(percentile(sorted, 0.95), 2),
            p99: round(percentile(sorted, 0.99), 2),
            max: round(sorted.last().copied().unwrap_or(f64::NAN), 2),
        }
    }
}

/// Nearest-rank percentile of ascending values: no interpolation, so every reported
/// figure is a latency that was actually observed. NaN when there are no values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// `later - earlier` in milliseconds, negative if `later` came first (a call can, in
/// principle, arrive before the benchmark's own client has seen its commit return).
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

/// CPU time a process used during a phase, against the phase's wall time: near one core
/// per core means alertcall itself is the bottleneck, far below means it waits (on the
/// database, mostly).
#[derive(Clone, Copy, Debug)]
struct CpuUse {
    cpu: f64,
    wall: f64,
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s in {:.2} s ({:.0}% of one core)",
            self.cpu,
            self.wall,
            100.0 * self.cpu / self.wall
        )
    }
}

/// User plus system CPU seconds of a process (all its threads), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_ticks(&stat)
        .map(|ticks| ticks as f64 / USER_HZ)
        .ok_or_else(|| anyhow!("{path} is not in the expected format"))
}

/// Clock ticks per second in `/proc/<pid>/stat`: fixed at 100 by the Linux ABI.
const USER_HZ: f64 = 100.0;

/// `utime + stime`, fields 14 and 15. The command name (field 2) is in parentheses and may
/// contain spaces, so fields are counted after its closing parenthesis.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn short_id() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// `VmRSS`, `VmHWM`, … of a process in MB.
fn proc_status_mb(pid: u32, field: &str) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kb(&status, field)
        .map(|kb| kb as f64 / 1024.0)
        .ok_or_else(|| anyhow!("{path} has no {field} line"))
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Which phase an alert belongs to, recognised by the token in its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Phase {
    Steady,
    Burst,
    /// Calls under a provider limit, left unacknowledged so their wait runs out.
    Limited,
    /// Calls about HL7 alarms.
    Hl7,
}

impl Phase {
    fn prefix(self) -> &'static str {
        match self {
            Phase::Steady => "bench-",
            Phase::Burst => "burst-",
            Phase::Limited => "limit-",
            Phase::Hl7 => "hl7-",
        }
    }
}

/// Finds `bench-<n>` or `burst-<n>` in the spoken text. The digits are read to their end,
/// so `bench-1` never matches the text of `bench-10`.
fn parse_token(text: &str) -> Option<(Phase, u32)> {
    [Phase::Steady, Phase::Burst, Phase::Limited, Phase::Hl7]
        .into_iter()
        .find_map(|phase| {
            let start = text.find(phase.prefix())? + phase.prefix().len();
            let digits: String = text[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some((phase, digits.parse().ok()?))
        })
}

/// One create-call request as the fake received it.
#[derive(Clone, Debug)]
struct Arrival {
    at: Instant,
    /// The call uuid the fake answered with; the input webhook must carry it.
    uuid: String,
    /// `ncco[1].eventUrl[0]`: where the keypad input goes, with `?call=<id>`.
    input_url: String,
}

#[derive(Default)]
struct FakeInner {
    /// Requests per phase, duplicates included.
    requests: HashMap<Phase, usize>,
    /// The first request for each token.
    first: HashMap<(Phase, u32), Arrival>,
    /// Requests whose text had no token: alertcall spoke something other than the message.
    unmatched: usize,
    /// The floor's requests: when each inserted row's request arrived.
    floor: HashMap<i64, Instant>,
}

/// The part of Vonage's Voice API that alertcall uses to place a call, answering 201 at
/// once so that what is measured is alertcall, not a network.
#[derive(Clone)]
struct FakeVonage {
    url: String,
    inner: Arc<Mutex<FakeInner>>,
}

/// A phase's view of the fake's records.
struct PhaseCalls {
    requests: usize,
    first: HashMap<u32, Arrival>,
}

impl PhaseCalls {
    /// One call per token, in token order (the order the alerts were inserted).
    fn calls(&self) -> Vec<Arrival> {
        let mut tokens: Vec<&u32> = self.first.keys().collect();
        tokens.sort();
        tokens.into_iter().map(|t| self.first[t].clone()).collect()
    }
}

impl FakeVonage {
    async fn start() -> Result<FakeVonage> {
        let inner = Arc::new(Mutex::new(FakeInner::default()));
        let app = Router::new()
            .route("/v1/calls", post(create_call))
            .route("/floor/{id}", post(floor_request))
            // Hang-ups (an alarm that ended while its call rang) are taken and not counted.
            .route("/v1/calls/{uuid}", put(|| async { StatusCode::NO_CONTENT }))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("the fake Vonage stopped: {e}");
            }
        });
        Ok(FakeVonage { url, inner })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn phase(&self, phase: Phase) -> PhaseCalls {
        let inner = self.lock();
        PhaseCalls {
            requests: inner.requests.get(&phase).copied().unwrap_or(0),
            first: inner
                .first
                .iter()
                .filter(|((p, _), _)| *p == phase)
                .map(|((_, n), a)| (*n, a.clone()))
                .collect(),
        }
    }

    fn distinct(&self, phase: Phase) -> usize {
        self.lock()
            .first
            .keys()
            .filter(|(p, _)| *p == phase)
            .count()
    }

    fn unmatched(&self) -> usize {
        self.lock().unmatched
    }

    /// Waits until `count` distinct tokens of `phase` have been called, or the deadline.
    async fn wait_for(&self, phase: Phase, count: usize, deadline: Instant) -> bool {
        loop {
            if self.distinct(phase) >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn floor_request(
    State(inner): State<Arc<Mutex<FakeInner>>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> StatusCode {
    let at = Instant::now();
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    inner.floor.entry(id).or_insert(at);
    StatusCode::NO_CONTENT
}

async fn create_call(
    State(inner): State<Arc<Mutex<FakeInner>>>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let at = Instant::now();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let uuid = Uuid::new_v4().to_string();
    let text = request["ncco"][0]["text"].as_str().unwrap_or_default();
    let input_url = request["ncco"][1]["eventUrl"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        match parse_token(text) {
            Some((phase, n)) => {
                *inner.requests.entry(phase).or_default() += 1;
                inner.first.entry((phase, n)).or_insert(Arrival {
                    at,
                    uuid: uuid.clone(),
                    input_url,
                });
            }
            None => inner.unmatched += 1,
        }
    }
    (
        StatusCode::CREATED,
        Json(json!({
            "uuid": uuid, "status": "started", "direction": "outbound",
            "conversation_uuid": format!("CON-{}", Uuid::new_v4()),
        })),
    )
}

/// The running `alertcall serve` child process.
struct Serve {
    child: Child,
    base_url: String,
    exited: bool,
}

impl Serve {
    fn start(
        binary: &Path,
        database_url: &str,
        vonage_url: &str,
        log: &Path,
        extra: &[(&str, &str)],
    ) -> Result<Serve> {
        let listen = free_port()?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = Command::new(binary);
        command.arg("serve");
        // Only the settings below: nothing from the caller's environment may change what is
        // measured, and proxies must not reroute loopback traffic.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("ALERTCALL_")
                || key.starts_with("VONAGE_")
                || key.to_ascii_lowercase().ends_with("_proxy")
            {
                command.env_remove(&key);
            }
        }
        command
            .env("DATABASE_URL", database_url)
            .env("ALERTCALL_LISTEN", listen.to_string())
            .env("ALERTCALL_PROVIDER", "vonage")
            .env("VONAGE_APPLICATION_ID", APPLICATION_ID)
            .env("VONAGE_PRIVATE_KEY", PRIVATE_KEY)
            .env("VONAGE_FROM_NUMBER", FROM_NUMBER)
            .env("NURSE_PHONE_NUMBER", NURSE_NUMBER)
            .env("VONAGE_API_URL", vonage_url)
            .env("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET)
            .env("ALERTCALL_CALLS_PER_SECOND", "0")
            // A credential, so that serve does not write a first admin password file.
            .env("ALERTCALL_API_TOKEN", "bench-admin-token")
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
            // Its log goes to a file that is shown to a person: no colour escapes.
            .env("NO_COLOR", "1")
            // serve reads `.env` from its working directory and the ones above it; the
            // benchmark's scratch directory has none.
            .current_dir(log.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} serve", binary.display()))?;
        Ok(Serve {
            child,
            base_url: format!("http://{listen}"),
            exited: false,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/healthz` until it answers 200; `serve` binds only after migrating, so the
    /// schema exists from then on.
    async fn wait_healthy(&mut self, client: &reqwest::Client) -> Result<()> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let url = format!("{}/healthz", self.base_url);
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                bail!("serve exited during startup ({status}); its log follows");
            }
            let probe = client
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("serve did not answer {url} within {STARTUP_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGTERM, then waits for the graceful shutdown; SIGKILL if it takes too long.
    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            self.exited = true;
            return Ok(status);
        }
        let sent = Command::new("kill")
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        ensure!(sent.success(), "kill {} failed: {sent}", self.pid());
        let deadline = Instant::now() + SHUTDOWN_DEADLINE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                self.exited = true;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        self.exited = true;
        bail!(
            "serve did not stop within {SHUTDOWN_DEADLINE:?} of SIGTERM and was killed ({status})"
        )
    }
}

impl Drop for Serve {
    /// A benchmark that fails half-way must not leave a `serve` running on the database.
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago: bound, read, released. `serve` binds it right after.
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}

/// `--serve`, or `alertcall` next to this executable (both live in the same target dir).
fn serve_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("this executable has no directory"))?
            .join(format!("alertcall{}", std::env::consts::EXE_SUFFIX)),
    };
    ensure!(
        path.is_file(),
        "{} does not exist; build it with `cargo build --release --bins` or pass --serve",
        path.display()
    );
    // `cargo run --bin alertcall-bench` rebuilds only the benchmark, so the server binary
    // may predate the source being measured. One `cargo build` links both within seconds of
    // each other, hence the margin.
    if given.is_none() {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if let (Some(serve), Some(bench)) = (modified(&path), modified(&std::env::current_exe()?))
            && serve + STALE_MARGIN < bench
        {
            eprintln!(
                "warning: {} is older than this benchmark; run `cargo build --release --bins` \
                 so the measured binary matches the source",
                path.display()
            );
        }
    }
    Ok(path)
}

/// The database `serve` runs on, created for this run only.
struct BenchDatabase {
    kind: DbKind,
    /// What `serve` and the benchmark connect to.
    url: String,
    /// For messages: the database's name or file, without credentials.
    label: String,
    /// Postgres: the admin URL and the name to drop at the end.
    admin: Option<(String, String)>,
}

impl BenchDatabase {
    async fn create(kind: DbKind, admin_url: &str, dir: &Path) -> Result<BenchDatabase> {
        match kind {
            DbKind::Sqlite => {
                let file = dir.join("bench.db");
                Ok(BenchDatabase {
                    kind,
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    label: file.display().to_string(),
                    admin: None,
                })
            }
            DbKind::Postgres => {
                let name = format!("alertcall_bench_{}", short_id());
                let url = database_url_for(admin_url, &name)?;
                let mut admin = PgConnection::connect(admin_url)
                    .await
                    .context("connecting to the Postgres admin URL (--database-url)")?;
                // `name` is made of [a-z0-9_] only, so it needs no quoting.
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .with_context(|| format!("CREATE DATABASE {name}"))?;
                admin.close().await?;
                Ok(BenchDatabase {
                    kind,
                    url,
                    label: name.clone(),
                    admin: Some((admin_url.to_string(), name)),
                })
            }
        }
    }

    async fn connect(&self) -> Result<Db> {
        Ok(match self.kind {
            DbKind::Postgres => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(PgConnectOptions::from_str(&self.url)?)
                    .await
                    .context("connecting to the bench database")?,
            ),
            // serve created the file in WAL mode; the hospital app would wait for its lock
            // like any other SQLite client.
            DbKind::Sqlite => Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(
                        SqliteConnectOptions::from_str(&self.url)?
                            .busy_timeout(Duration::from_secs(10)),
                    )
                    .await
                    .context("opening the bench database")?,
            ),
        })
    }

    /// Drops the Postgres database (the SQLite file goes with the scratch directory).
    async fn drop_database(&self) -> Result<()> {
        let Some((admin_url, name)) = &self.admin else {
            return Ok(());
        };
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("DROP DATABASE {name}"))?;
        admin.close().await?;
        Ok(())
    }
}

/// The admin URL with its database replaced, keeping user, host and options such as
/// `sslmode`.
fn database_url_for(admin_url: &str, database: &str) -> Result<String> {
    let mut url = reqwest::Url::parse(admin_url).context("--database-url is not a URL")?;
    ensure!(
        matches!(url.scheme(), "postgres" | "postgresql"),
        "--database-url must be a postgres:// URL"
    );
    url.set_path(&format!("/{database}"));
    // TLS to a database on this machine protects nothing and costs 15-20% of the ack
    // throughput here; a URL that asks for an sslmode keeps it.
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if loopback && !url.query_pairs().any(|(k, _)| k == "sslmode") {
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    Ok(url.to_string())
}

/// The benchmark's own connection: it writes alerts the way the hospital app does.
enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    fn kind(&self) -> DbKind {
        match self {
            Db::Postgres(_) => DbKind::Postgres,
            Db::Sqlite(_) => DbKind::Sqlite,
        }
    }

    /// One autocommitted `INSERT`; when it returns, the alert is committed.
    async fn insert_one(&self, message: &str) -> Result<String> {
        let id = match self {
            Db::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO alerts (patient_id, severity, alert_type, message) \
                     VALUES ('P1', 'critical', 'bench', $1) RETURNING id::text",
                )
                .bind(message)
                .fetch_one(pool)
                .await
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO alerts (patient_id, severity, alert_type, message) \
                     VALUES ('P1', 'critical', 'bench', ?1) RETURNING id",
                )
                .bind(message)
                .fetch_one(pool)
                .await
            }
        };
        id.with_context(|| format!("inserting alert {message}"))
    }

    /// `count` critical alerts `<prefix>1` … `<prefix><count>` in a single statement.
    async fn insert_burst(&self, phase: Phase, count: usize) -> Result<()> {
        self.insert_many("critical", phase.prefix(), count).await
    }

    /// `count` alerts of `severity`, `<prefix>1` … `<prefix><count>`, in a single statement.
    async fn insert_many(&self, severity: &str, prefix: &str, count: usize) -> Result<()> {
        let inserted = match self {
            Db::Postgres(pool) => sqlx::query(
                "INSERT INTO alerts (patient_id, severity, alert_type, message) \
                 SELECT 'P1', $3, 'bench', $2 || g \
                 FROM generate_series(1, $1) AS g",
            )
            .bind(i32::try_from(count)?)
            .bind(prefix)
            .bind(severity)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
            Db::Sqlite(pool) => sqlx::query(
                "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < ?1) \
                 INSERT INTO alerts (patient_id, severity, alert_type, message) \
                 SELECT 'P1', ?3, 'bench', ?2 || n FROM s",
            )
            .bind(i64::try_from(count)?)
            .bind(prefix)
            .bind(severity)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        }
        .with_context(|| format!("inserting {count} {severity} alerts"))?;
        ensure!(
            inserted == count as u64,
            "{inserted} alerts were inserted, not {count}"
        );
        Ok(())
    }

    /// `count` active alerts that are on the board but not paged (`high`).
    async fn insert_active(&self, count: usize) -> Result<()> {
        self.insert_many("high", "active-", count).await
    }

    /// `count` alerts over the year before now, a third of them critical, with the pages and
    /// calls alertcall would have written for those (nine in ten acknowledged by phone, in 5
    /// to 120 s; the tenth ran out its policy), in one transaction of set-based statements.
    /// Postgres' notify trigger is off for it (`session_replication_role`): this is a past
    /// year, not a flood of new alerts.
    async fn seed_history(&self, count: usize) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let now = chrono::Utc::now() - chrono::Duration::minutes(1);
        let step_s = 365.0 * 86400.0 / count as f64;
        let count = i64::try_from(count)?;
        let statements: [&str; 3] = match self {
            Db::Postgres(_) => [
                "INSERT INTO alerts (patient_id, severity, status, alert_type, message, \
                   triggered_at, acknowledged_at, acknowledged_by, metadata) \
                 SELECT 'P1', CASE g % 3 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' ELSE 'medium' END, \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 THEN 'acknowledged' ELSE 'resolved' END, \
                   'bench', 'history-' || g, t, \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 THEN t + (5 + g % 115) * interval '1 second' END, \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 THEN 'phone:nurse' END, \
                   CASE WHEN g % 3 = 0 THEN jsonb_build_object('call', jsonb_build_object('call_status', \
                     CASE WHEN g % 10 <> 3 THEN 'answered' ELSE 'unanswered' END)) ELSE '{}'::jsonb END \
                 FROM (SELECT g, $1::timestamptz - g * $2::float8 * interval '1 second' AS t \
                       FROM generate_series(1, $3::bigint) AS g) s",
                "INSERT INTO alertcall.pages (alert_id, state, step, round, policy, created_at, updated_at) \
                 SELECT id::text, CASE WHEN status = 'acknowledged' THEN 'acknowledged' ELSE 'exhausted' END, \
                   CASE WHEN acknowledged_at - triggered_at > interval '60 seconds' THEN 1 ELSE 0 END, \
                   0, 'default', triggered_at, triggered_at \
                 FROM alerts WHERE message LIKE 'history-%' AND severity = 'critical'",
                "INSERT INTO alertcall.calls (id, alert_id, person, provider, provider_call_id, \
                   to_number, status, message, created_at, initiated_at, answered_at, ended_at) \
                 SELECT gen_random_uuid()::text, id::text, 'nurse', 'vonage', gen_random_uuid()::text, \
                   '13854019951', CASE WHEN status = 'acknowledged' THEN 'answered' ELSE 'unanswered' END, \
                   'history', triggered_at, triggered_at, acknowledged_at, \
                   coalesce(acknowledged_at, triggered_at + interval '30 seconds') \
                 FROM alerts WHERE message LIKE 'history-%' AND severity = 'critical'",
            ],
            Db::Sqlite(_) => [
                "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?3) \
                 INSERT INTO alerts (patient_id, severity, status, alert_type, message, \
                   triggered_at, acknowledged_at, acknowledged_by, metadata) \
                 SELECT 'P1', CASE g % 3 WHEN 0 THEN 'critical' WHEN 1 THEN 'high' ELSE 'medium' END, \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 THEN 'acknowledged' ELSE 'resolved' END, \
                   'bench', 'history-' || g, \
                   strftime('%Y-%m-%dT%H:%M:%fZ', ?1 - g * ?2, 'unixepoch'), \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 \
                     THEN strftime('%Y-%m-%dT%H:%M:%fZ', ?1 - g * ?2 + 5 + g % 115, 'unixepoch') END, \
                   CASE WHEN g % 3 = 0 AND g % 10 <> 3 THEN 'phone:nurse' END, \
                   CASE WHEN g % 3 = 0 THEN json_object('call', json_object('call_status', \
                     CASE WHEN g % 10 <> 3 THEN 'answered' ELSE 'unanswered' END)) ELSE '{}' END \
                 FROM s",
                "INSERT INTO alertcall_pages (alert_id, state, step, round, policy, created_at, updated_at) \
                 SELECT id, CASE WHEN status = 'acknowledged' THEN 'acknowledged' ELSE 'exhausted' END, \
                   CASE WHEN unixepoch(acknowledged_at) - unixepoch(triggered_at) > 60 THEN 1 ELSE 0 END, \
                   0, 'default', triggered_at, triggered_at \
                 FROM alerts WHERE message LIKE 'history-%' AND severity = 'critical'",
                "INSERT INTO alertcall_calls (id, alert_id, person, provider, provider_call_id, \
                   to_number, status, message, created_at, initiated_at, answered_at, ended_at) \
                 SELECT lower(hex(randomblob(16))), id, 'nurse', 'vonage', lower(hex(randomblob(16))), \
                   '13854019951', CASE WHEN status = 'acknowledged' THEN 'answered' ELSE 'unanswered' END, \
                   'history', triggered_at, triggered_at, acknowledged_at, \
                   coalesce(acknowledged_at, strftime('%Y-%m-%dT%H:%M:%fZ', triggered_at, '+30 seconds')) \
                 FROM alerts WHERE message LIKE 'history-%' AND severity = 'critical'",
            ],
        };
        match self {
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL session_replication_role = replica")
                    .execute(&mut *tx)
                    .await
                    .context("turning triggers off for the history (needs a superuser)")?;
                for (i, statement) in statements.into_iter().enumerate() {
                    let query = sqlx::query(statement);
                    let query = if i == 0 {
                        query.bind(now).bind(step_s).bind(count)
                    } else {
                        query
                    };
                    query
                        .execute(&mut *tx)
                        .await
                        .context("seeding the history")?;
                }
                tx.commit().await?;
                sqlx::raw_sql("ANALYZE alerts; ANALYZE alertcall.pages; ANALYZE alertcall.calls")
                    .execute(pool)
                    .await?;
            }
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (i, statement) in statements.into_iter().enumerate() {
                    let query = sqlx::query(statement);
                    let query = if i == 0 {
                        query
                            .bind(now.timestamp_millis() as f64 / 1000.0)
                            .bind(step_s)
                            .bind(count)
                    } else {
                        query
                    };
                    query
                        .execute(&mut *tx)
                        .await
                        .context("seeding the history")?;
                }
                tx.commit().await?;
                sqlx::raw_sql("ANALYZE").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// The floor's table, whose inserts the database announces as it does `alerts`'.
    async fn create_floor_table(&self) -> Result<()> {
        match self {
            Db::Postgres(pool) => sqlx::raw_sql(
                "CREATE TABLE bench_floor (id bigserial PRIMARY KEY); \
                 CREATE FUNCTION bench_floor_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN PERFORM pg_notify('bench_floor', NEW.id::text); RETURN NULL; END $$; \
                 CREATE TRIGGER bench_floor_notify AFTER INSERT ON bench_floor \
                   FOR EACH ROW EXECUTE FUNCTION bench_floor_notify()",
            )
            .execute(pool)
            .await
            .map(drop),
            Db::Sqlite(pool) => sqlx::raw_sql("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY)")
                .execute(pool)
                .await
                .map(drop),
        }
        .context("creating the floor's table")
    }

    /// One autocommitted insert into the floor's table; its id.
    async fn insert_floor(&self) -> Result<i64> {
        let sql = "INSERT INTO bench_floor DEFAULT VALUES RETURNING id";
        match self {
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .context("inserting into the floor's table")
    }

    /// The bare client: hears of each floor insert and POSTs `<url>/<id>`.
    async fn floor_watcher(
        &self,
        client: reqwest::Client,
        url: String,
    ) -> Result<tokio::task::JoinHandle<Result<()>>> {
        Ok(match self {
            Db::Postgres(pool) => {
                let mut listener = PgListener::connect_with(pool).await?;
                listener.listen("bench_floor").await?;
                tokio::spawn(async move {
                    loop {
                        let n = listener.recv().await?;
                        client.post(format!("{url}/{}", n.payload())).send().await?;
                    }
                })
            }
            Db::Sqlite(pool) => {
                let mut conn = SqliteConnection::connect_with(&pool.connect_options()).await?;
                tokio::spawn(async move {
                    let (mut version, mut last) = (None, 0i64);
                    loop {
                        let now: i64 = sqlx::query_scalar("PRAGMA data_version")
                            .fetch_one(&mut conn)
                            .await?;
                        if version != Some(now) {
                            version = Some(now);
                            let ids: Vec<i64> = sqlx::query_scalar(
                                "SELECT id FROM bench_floor WHERE id > ?1 ORDER BY id",
                            )
                            .bind(last)
                            .fetch_all(&mut conn)
                            .await?;
                            for id in ids {
                                client.post(format!("{url}/{id}")).send().await?;
                                last = id;
                            }
                        }
                        tokio::time::sleep(SQLITE_WATCH).await;
                    }
                })
            }
        })
    }

    /// Alerts of a phase whose `status` the acknowledgements set.
    async fn count_acknowledged(&self, phase: Phase) -> Result<i64> {
        let pattern = format!("{}%", phase.prefix());
        let count =
            match self {
                Db::Postgres(pool) => sqlx::query_scalar(
                    "SELECT count(*) FROM alerts WHERE message LIKE $1 AND status = 'acknowledged'",
                )
                .bind(pattern)
                .fetch_one(pool)
                .await,
                Db::Sqlite(pool) => sqlx::query_scalar(
                    "SELECT count(*) FROM alerts WHERE message LIKE ?1 AND status = 'acknowledged'",
                )
                .bind(pattern)
                .fetch_one(pool)
                .await,
            };
        count.context("counting acknowledged alerts")
    }

    /// How late each `page.exhausted` fired against its due time: the `call.placed` time
    /// plus the configured wait, in ms, sorted.
    async fn exhausted_lateness_ms(&self, wait_ms: f64) -> Result<Vec<f64>> {
        let mut late: Vec<f64> =
            match self {
                Db::Postgres(pool) => sqlx::query_scalar(
                    "SELECT (extract(epoch FROM e.created_at - p.created_at) * 1000)::float8 - $1 \
                     FROM alertcall.call_events e JOIN alertcall.call_events p \
                       ON p.alert_id = e.alert_id AND p.kind = 'call.placed' \
                     WHERE e.kind = 'page.exhausted'",
                )
                .bind(wait_ms)
                .fetch_all(pool)
                .await,
                Db::Sqlite(pool) => sqlx::query_scalar(
                    "SELECT (julianday(e.created_at) - julianday(p.created_at)) * 86400000.0 - ?1 \
                     FROM alertcall_call_events e JOIN alertcall_call_events p \
                       ON p.alert_id = e.alert_id AND p.kind = 'call.placed' \
                     WHERE e.kind = 'page.exhausted'",
                )
                .bind(wait_ms)
                .fetch_all(pool)
                .await,
            }
            .context("reading when the waits ran out")?;
        late.sort_by(f64::total_cmp);
        Ok(late)
    }

    async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}

/// One signed DTMF-1 webhook, built before the clock starts so that the benchmark's own
/// signing does not count against alertcall.
struct AckRequest {
    url: String,
    body: String,
    authorization: String,
}

/// Latencies and failures of a batch of acknowledgement webhooks.
struct AckRun {
    /// Ascending.
    latencies_ms: Vec<f64>,
    wall: Duration,
    failures: Vec<String>,
}

impl AckRun {
    fn per_second(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }

    fn p99_ms(&self) -> f64 {
        percentile(&self.latencies_ms, 0.99)
    }
}

/// Presses 1 on every call, `concurrency` webhooks at a time, and checks each answer.
async fn acknowledge(
    client: &reqwest::Client,
    serve_url: &str,
    calls: &[Arrival],
    concurrency: usize,
) -> Result<AckRun> {
    let now = chrono::Utc::now();
    let mut requests = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        // Only loopback: the URL alertcall gave the fake must point back at this serve.
        ensure!(
            call.input_url.starts_with(&format!("{serve_url}/"))
                && call.input_url.contains("?call="),
            "unexpected input URL {:?} (expected {serve_url}/...?call=<id>)",
            call.input_url
        );
        let at = now + chrono::Duration::microseconds(i as i64);
        let body = input_body(
            &call.uuid,
            &at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        let authorization = sign_webhook(body.as_bytes(), SIGNATURE_SECRET, now.timestamp())?;
        requests.push(AckRequest {
            url: call.input_url.clone(),
            body,
            authorization,
        });
    }
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.min(requests.len().max(1)))
        .map(|_| {
            let (client, requests, next) = (client.clone(), requests.clone(), next.clone());
            tokio::spawn(async move {
                let mut results = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(i) else {
                        break;
                    };
                    let sent = Instant::now();
                    let outcome = post_ack(&client, request).await;
                    results.push((sent.elapsed().as_secs_f64() * 1000.0, outcome));
                }
                results
            })
        })
        .collect();
    let mut latencies_ms = Vec::with_capacity(requests.len());
    let mut failures = Vec::new();
    for worker in workers {
        for (ms, outcome) in worker.await? {
            latencies_ms.push(ms);
            if let Err(e) = outcome {
                failures.push(e);
            }
        }
    }
    let wall = started.elapsed();
    latencies_ms.sort_by(f64::total_cmp);
    Ok(AckRun {
        latencies_ms,
        wall,
        failures,
    })
}

/// Sends one webhook and checks that alertcall answered 200 with the acknowledgement NCCO.
async fn post_ack(client: &reqwest::Client, request: &AckRequest) -> Result<(), String> {
    let response = client
        .post(&request.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::AUTHORIZATION, &request.authorization)
        .body(request.body.clone())
        .send()
        .await
        .map_err(|e| format!("{}: {e}", request.url))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{}: {status}: {text}", request.url));
    }
    let ncco: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    let spoken = ncco[0]["text"].as_str().unwrap_or_default();
    if !spoken.contains(ACKNOWLEDGED) {
        return Err(format!("{}: the nurse heard {spoken:?}", request.url));
    }
    Ok(())
}

/// Vonage's input webhook body for a key press (as in the integration tests).
fn input_body(uuid: &str, timestamp: &str) -> String {
    json!({
        "from": "447700900001", "to": "13854019951",
        "dtmf": {"digits": "1", "timed_out": false}, "speech": {"results": []},
        "uuid": uuid, "conversation_uuid": "CON-f972836a-550f-45fa-956c-12a2ab5b7d22",
        "timestamp": timestamp,
    })
    .to_string()
}

/// Signs a webhook body the way Vonage does: an HS256 JWT whose `payload_hash` is the
/// body's SHA-256.
fn sign_webhook(body: &[u8], secret: &str, iat: i64) -> Result<String> {
    let hash: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = json!({
        "iat": iat, "jti": Uuid::new_v4().to_string(), "iss": "Vonage",
        "payload_hash": hash, "api_key": "a1b2c3d", "application_id": APPLICATION_ID,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?;
    Ok(format!("Bearer {token}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_to_the_end_of_their_digits() {
        let text = "Critical alert at the hospital. bench-10. Please respond immediately.";
        assert_eq!(parse_token(text), Some((Phase::Steady, 10)));
        assert_eq!(parse_token("x burst-7."), Some((Phase::Burst, 7)));
        assert_eq!(parse_token("no token here"), None);
        assert_eq!(parse_token("bench-"), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=200).map(f64::from).collect();
        let p = Percentiles::of(&values);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (100.0, 190.0, 198.0, 200.0));
        assert_eq!(percentile(&[4.0], 0.99), 4.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn status_fields_are_read_in_kb() {
        let status = "Name:\talertcall\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(10240));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(20480));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
    }

    #[test]
    fn stat_ticks_skip_the_command_name() {
        let stat = "4242 (alert call) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 37 0 0 20 0 9";
        assert_eq!(parse_stat_ticks(stat), Some(287));
        assert_eq!(parse_stat_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn the_bench_database_keeps_the_admin_urls_options() {
        assert_eq!(
            database_url_for(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "b1"
            )
            .unwrap(),
            "postgres://u:p@127.0.0.1:5432/b1?sslmode=disable"
        );
        assert!(database_url_for("mysql://x/y", "b1").is_err());
        assert_eq!(
            database_url_for("postgres://postgres@127.0.0.1:5432/postgres", "b1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b1?sslmode=disable",
            "no TLS to a loopback database unless asked for"
        );
        assert_eq!(
            database_url_for("postgres://u@db.example.org/postgres", "b1").unwrap(),
            "postgres://u@db.example.org/b1"
        );
    }

    #[test]
    fn signed_difference_is_negative_when_reversed() {
        let a = Instant::now();
        let b = a + Duration::from_millis(5);
        assert!((signed_ms(b, a) - 5.0).abs() < 1e-9);
        assert!((signed_ms(a, b) + 5.0).abs() < 1e-9);
    }
}
