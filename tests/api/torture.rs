//! The torture suite: crashes, many instances, provider faults, a database outage, and a
//! flood of malformed requests. Each test fails if anything is lost. CI runs a shorter
//! version; `ALERTCALL_TORTURE=full cargo test --test api torture` runs the full sizes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::core::{event_url, input_body, input_url, metric, spoken};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{
    Behaviour, FakeVonage, Received, SIGNATURE_SECRET, post_webhook, sign_webhook, token,
};
use crate::faults::{self, SmallDisk};
use crate::helpers::{TestApp, wait_until};
use crate::process::{Serve, full};

const LONG: Duration = Duration::from_secs(90);

fn insert_tagged(prefix: &str, from: u64, to: u64) -> String {
    let values: Vec<String> = (from..to)
        .map(|n| format!("('P{n}', 'critical', 'torture', '{prefix}{n}')"))
        .collect();
    format!(
        "INSERT INTO alerts (patient_id, severity, alert_type, message) VALUES {}",
        values.join(", ")
    )
}

/// First calls per tag, from what the fake provider accepted.
fn calls_per_tag(calls: &[Received], prefix: &str) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for call in calls {
        if let Some(n) = token(call, prefix) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

pub async fn kill_9_at_random_moments_loses_no_alert(db: TestDb) {
    let _turn = crate::helpers::heavy().await;
    let fake = FakeVonage::start().await;
    // Some calls are slow, so that kills land while calls are in flight.
    fake.set_default(|n| {
        if n % 4 == 0 {
            Behaviour::Slow(Duration::from_millis(150))
        } else {
            Behaviour::Created
        }
    });
    let (kills, total) = if full() { (20, 500) } else { (10, 200) };
    let env = [
        ("ALERTCALL_LEASE", "2s"),
        ("ALERTCALL_PROVIDER_TIMEOUT", "1s"),
        ("ALERTCALL_SWEEP_INTERVAL", "500ms"),
    ];
    let mut serve = Serve::start(&db, &fake, &env).await;
    let mut killed_at = Vec::new();
    let per_round = total / kills;
    for round in 0..kills {
        let from = round * per_round;
        db.exec(&insert_tagged("crash-", from, from + per_round / 2))
            .await;
        db.exec(&insert_tagged(
            "crash-",
            from + per_round / 2,
            from + per_round,
        ))
        .await;
        // A random moment: the point of the test is not knowing what was in flight.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..200))).await;
        killed_at.push(std::time::Instant::now());
        serve.kill9();
        serve = Serve::start(&db, &fake, &env).await;
    }
    wait_until("every alert has been called", LONG, || async {
        calls_per_tag(&fake.calls(), "crash-").len() as u64 == total
    })
    .await;
    // A call may be repeated only if a kill caught it in flight: between the request and
    // the moment its outcome was committed (the answer, plus the commit after it).
    let commit_margin = Duration::from_secs(1);
    // The fake stamps a request when it has read it: one written just before the kill can
    // be read just after it.
    let arrival_margin = Duration::from_millis(50);
    let mut by_tag: HashMap<u64, Vec<Received>> = HashMap::new();
    for call in fake.calls() {
        if let Some(n) = token(&call, "crash-") {
            by_tag.entry(n).or_default().push(call);
        }
    }
    let mut duplicates = 0;
    for (tag, mut calls) in by_tag {
        calls.sort_by_key(|c| c.at);
        for earlier in &calls[..calls.len() - 1] {
            duplicates += 1;
            assert!(
                killed_at.iter().any(
                    |k| earlier.at <= *k + arrival_margin && *k <= earlier.done + commit_margin
                ),
                "alert crash-{tag} was called again although no kill caught its call in flight \
                 (kills relative to its request, ms: {:?}; answered after {} ms)",
                killed_at
                    .iter()
                    .map(|k| k.duration_since(earlier.at).as_millis() as i64
                        - earlier.at.duration_since(*k).as_millis() as i64)
                    .collect::<Vec<_>>(),
                earlier.done.duration_since(earlier.at).as_millis()
            );
        }
    }
    eprintln!("{duplicates} repeated calls, each caught in flight by one of {kills} kills");
    assert_eq!(fake.violations(), Vec::<String>::new());
    drop(serve);
}
both_backends!(torture::kill_9_at_random_moments_loses_no_alert);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_page_each_alert_once() {
    let _turn = crate::helpers::heavy().await;
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let fake = FakeVonage::start().await;
    let total: u64 = if full() { 1000 } else { 300 };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Serve::start(&db, &fake, &[]).await);
    }
    db.exec(&insert_tagged("multi-", 0, total)).await;
    wait_until("every alert has been called", LONG, || async {
        calls_per_tag(&fake.calls(), "multi-").len() as u64 == total
    })
    .await;
    let calls = fake.calls();
    assert_eq!(calls.len() as u64, total, "exactly one call per alert");

    // Each nurse presses 1; the webhook reaches one instance and a retry reaches another.
    let client = reqwest::Client::new();
    let base_of = |url: &str| url.split("/api/").next().unwrap().to_string();
    for (i, call) in calls.iter().enumerate() {
        let uuid = call.uuid.clone().unwrap();
        let body = input_body(&uuid, "1", false);
        for k in 0..2 {
            let target = &instances[(i + k) % 3];
            let url = input_url(call).replace(&base_of(&input_url(call)), &target.url(""));
            let r = post_webhook(&client, &url, &body, Some(SIGNATURE_SECRET)).await;
            assert_eq!(r.status(), 200);
            let ncco: Value = r.json().await.unwrap();
            assert_eq!(spoken(&ncco), "Alert acknowledged. Thank you.");
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM alerts WHERE status = 'acknowledged'")
            .await as u64,
        total
    );
    assert_eq!(
        db.count("SELECT count(*) FROM alertcall.call_events WHERE kind = 'alert.acknowledged'")
            .await as u64,
        total,
        "each acknowledgement applied once"
    );
    assert_eq!(
        fake.calls().len() as u64,
        total,
        "nobody called after acknowledging"
    );
}

pub async fn provider_faults_on_a_third_of_requests_lose_nothing(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.set_default(|n| match n % 6 {
        0 => Behaviour::Status(500, None),
        1 => Behaviour::Status(429, None),
        2 if n % 12 == 2 => Behaviour::Hang(Duration::from_secs(3)),
        2 => Behaviour::Drop,
        _ => Behaviour::Created,
    });
    let total = if full() { 200 } else { 60 };
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_PROVIDER_TIMEOUT", "500ms")]).await;
    db.exec(&insert_tagged("fault-", 0, total)).await;
    wait_until(
        "every alert has been called despite the faults",
        LONG,
        || async { calls_per_tag(&fake.calls(), "fault-").len() as u64 == total },
    )
    .await;
    let failures = fake.received().iter().filter(|r| r.answered != 201).count();
    assert!(
        failures as u64 >= total / 3,
        "the faults happened ({failures})"
    );
    // Failed attempts are recorded, never silently dropped.
    let failed_rows = db
        .count(&format!(
            "SELECT count(*) FROM {} WHERE status = 'failed'",
            db.table("calls")
        ))
        .await;
    assert_eq!(failed_rows as usize, failures);
    app.stop().await;
}
both_backends!(torture::provider_faults_on_a_third_of_requests_lose_nothing);

pub async fn nothing_is_retried_after_a_permanent_refusal(db: TestDb) {
    let fake = FakeVonage::start().await;
    fake.set_default(|_| Behaviour::Status(400, None));
    let app = TestApp::spawn(&db, Some(&fake), &[]).await;
    db.exec(&insert_tagged("perm-", 0, 10)).await;
    let engine = app.engine.clone();
    let failed = format!(
        "SELECT count(*) FROM {} WHERE state = 'exhausted'",
        db.table("pages")
    );
    wait_until("all ten escalations run out", LONG, || async {
        db.count(&failed).await == 10
    })
    .await;
    // Woken again, still ten requests: no retries; the next attempt is the slow re-notify.
    engine.wake();
    let due = engine.store.next_due_at().await.unwrap().unwrap();
    assert!(
        due > chrono::Utc::now() + chrono::Duration::minutes(4),
        "{due}"
    );
    assert_eq!(fake.received().len(), 10);
    app.stop().await;
}
both_backends!(torture::nothing_is_retried_after_a_permanent_refusal);

/// A TCP proxy in front of Postgres that the test can cut and restore.
pub struct Proxy {
    pub addr: String,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if *cut_rx.borrow() {
                    continue; // refused: dropped at once
                }
                let upstream = upstream.clone();
                let mut rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_delays_but_loses_nothing() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let fake = FakeVonage::start().await;
    let hostport = db
        .url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let proxy = Proxy::start(hostport.clone()).await;
    let mut proxied = db.url.replace(&hostport, &proxy.addr);
    proxied.push_str(if proxied.contains('?') { "&" } else { "?" });
    proxied.push_str("connect_timeout=2");
    let proxied_db = TestDb::with_url(&db, proxied);
    let app = TestApp::spawn(
        &proxied_db,
        Some(&fake),
        &[("ALERTCALL_SWEEP_INTERVAL", "500ms")],
    )
    .await;
    db.exec(&insert_tagged("outage-", 0, 1)).await;
    wait_until("the first alert is called", LONG, || async {
        calls_per_tag(&fake.calls(), "outage-").len() == 1
    })
    .await;

    proxy.set_cut(true);
    wait_until("/readyz reports the outage", LONG, || async {
        app.get("/readyz").await.status() == 503
    })
    .await;
    assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metric(&metrics, "alertcall_database_errors_total").is_some_and(|n| n > 0.0),
        "the outage is counted:\n{metrics}"
    );
    // The hospital app keeps writing (it reaches the database directly).
    db.exec(&insert_tagged("outage-", 1, 4)).await;

    proxy.set_cut(false);
    wait_until("/readyz recovers", LONG, || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    db.exec(&insert_tagged("outage-", 4, 6)).await;
    wait_until(
        "every alert from during and after the outage is called",
        LONG,
        || async { calls_per_tag(&fake.calls(), "outage-").len() == 6 },
    )
    .await;
    assert!(
        calls_per_tag(&fake.calls(), "outage-")
            .values()
            .all(|n| *n == 1)
    );
    app.stop().await;
}

/// Deterministic garbage: every shape of wrong a webhook can be.
fn malformed(n: usize, rng: &mut fastrand::Rng) -> (String, Vec<u8>, Option<String>) {
    let path = match n % 3 {
        0 => "/api/alerts/call-response",
        1 => "/api/alerts/call-event",
        _ => [
            "/api/alerts/call-response?call=not-a-uuid",
            "/api/alerts/call-event?call=%00",
            "/api/alerts/call-response?call=",
        ][rng.usize(0..3)],
    }
    .to_string();
    let uuid = format!("unknown-{}", rng.u32(..));
    let body: Vec<u8> = match rng.usize(0..14) {
        0 => (0..rng.usize(0..2000)).map(|_| rng.u8(..)).collect(),
        1 => br#"{"uuid": "#.to_vec(),
        2 => json!({"uuid": rng.i64(..), "status": rng.f64()})
            .to_string()
            .into_bytes(),
        3 => json!({"uuid": uuid, "dtmf": {"digits": "2".repeat(rng.usize(21..100))}})
            .to_string()
            .into_bytes(),
        4 => json!({"uuid": uuid, "dtmf": [1, 2, 3]})
            .to_string()
            .into_bytes(),
        5 => json!({"uuid": "", "status": "answered"})
            .to_string()
            .into_bytes(),
        6 => json!({"uuid": "x".repeat(500), "status": "ringing"})
            .to_string()
            .into_bytes(),
        7 => json!({"uuid": uuid, "status": "ringing", "timestamp": {"nested": [[[]]]}})
            .to_string()
            .into_bytes(),
        8 => json!({"uuid": uuid, "status": "\u{202e}\u{0}ringing😀", "detail": "é".repeat(300)})
            .to_string()
            .into_bytes(),
        9 => json!({"uuid": uuid, "dtmf": {"digits": 9, "timed_out": "maybe"}})
            .to_string()
            .into_bytes(),
        10 => json!([{"uuid": uuid}]).to_string().into_bytes(),
        11 => format!("{{\"uuid\":\"{uuid}\",\"pad\":\"{}\"}}", "a".repeat(70_000)).into_bytes(),
        12 => json!({"uuid": null, "status": null, "dtmf": null})
            .to_string()
            .into_bytes(),
        _ => "9".repeat(rng.usize(1..400)).into_bytes(),
    };
    let auth = match rng.usize(0..4) {
        0 => None,
        1 => Some("Bearer ".to_string() + &"A".repeat(rng.usize(0..300))),
        2 => Some(sign_webhook(
            b"another body",
            SIGNATURE_SECRET,
            chrono::Utc::now().timestamp(),
        )),
        _ => Some(format!("Basic {}", rng.u64(..))),
    };
    (path, body, auth)
}

async fn flood(serve: &Serve, count: usize, seed: u64) -> HashMap<u16, usize> {
    let client = reqwest::Client::new();
    let mut rng = fastrand::Rng::with_seed(seed);
    let requests: Vec<_> = (0..count).map(|n| malformed(n, &mut rng)).collect();
    let mut statuses = HashMap::new();
    for chunk in requests.chunks(32) {
        let sent = chunk.iter().map(|(path, body, auth)| {
            // JSON, as Vonage sends: anything else is refused before the parsers see it.
            let mut req = client
                .post(serve.url(path))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            req.send()
        });
        for r in futures_join_all(sent).await {
            let status = r
                .expect("the server answers every request")
                .status()
                .as_u16();
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
    statuses
}

/// Runs futures concurrently (tokio has no join_all; this keeps dependencies lean).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("request task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_change_nothing() {
    let _turn = crate::helpers::heavy().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let count = if full() { 50_000 } else { 10_000 };
    // One server checks signatures, one has none set, so the parsers see the garbage too.
    let signed = Serve::start(&db, &fake, &[]).await;
    let unsigned = Serve::start(&db, &fake, &[("VONAGE_SIGNATURE_SECRET", "")]).await;
    db.exec(&insert_tagged("flood-", 0, 3)).await;
    wait_until("the alerts are called", LONG, || async {
        calls_per_tag(&fake.calls(), "flood-").len() == 3
    })
    .await;
    let snapshot =
        "SELECT CAST(id AS TEXT), status, CAST(metadata AS TEXT) FROM alerts ORDER BY id";
    wait_until("the call states settle", LONG, || async {
        db.count("SELECT count(*) FROM alerts WHERE metadata LIKE '%initiated%'")
            .await
            == 3
    })
    .await;
    let before = db.rows(snapshot).await;
    let rss_before: Vec<u64> = [&signed, &unsigned].iter().map(|s| s.rss_kb()).collect();

    let mut statuses = flood(&signed, count / 2, 1).await;
    for (status, n) in flood(&unsigned, count / 2, 2).await {
        *statuses.entry(status).or_insert(0) += n;
    }
    assert!(
        statuses.keys().all(|s| *s < 500),
        "5xx answers: {statuses:?}"
    );
    assert_eq!(statuses.values().sum::<usize>(), count / 2 * 2);
    assert_eq!(db.rows(snapshot).await, before, "no alert changed");
    for (serve, before) in [&signed, &unsigned].iter().zip(rss_before) {
        let after = serve.rss_kb();
        assert!(
            after < before + 20_000,
            "memory grew from {before} kB to {after} kB"
        );
    }
    assert_eq!(fake.calls().len(), 3);
    // Known calls with malformed input: still refused, still nothing changed.
    let call = &fake.calls()[0];
    let uuid = call.uuid.clone().unwrap();
    for body in [
        json!({"uuid": uuid, "dtmf": {"digits": ["1"]}}).to_string(),
        json!({"uuid": uuid, "dtmf": "1"}).to_string(),
        format!("{{\"uuid\":\"{uuid}\",\"dtmf\":{{\"digits\":\"1\"}}"),
    ] {
        let url = input_url(call).replace(
            &input_url(call).split("/api/").next().unwrap().to_string(),
            &unsigned.url(""),
        );
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let _ = event_url(call);
    assert_eq!(db.rows(snapshot).await, before, "no alert changed");
    let mut signed = signed;
    assert!(signed.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_webhooks_are_harmless_and_the_age_limit_is_configurable() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_WEBHOOK_MAX_AGE", "10s")]).await;
    db.exec(&insert_tagged("replay-", 0, 1)).await;
    let call = crate::core::wait_for_calls(&db, &fake, 1).await.remove(0);
    let uuid = call.uuid.clone().unwrap();
    let body = input_body(&uuid, "2", false);
    let now = chrono::Utc::now().timestamp();
    // 30 s old is within Vonage's usual tolerance but beyond the configured 10 s.
    let stale = sign_webhook(body.as_bytes(), SIGNATURE_SECRET, now - 30);
    let r = app
        .http
        .post(input_url(&call))
        .header("authorization", stale)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let fresh = sign_webhook(body.as_bytes(), SIGNATURE_SECRET, now);
    let mut answers = HashSet::new();
    for _ in 0..5 {
        let r = app
            .http
            .post(input_url(&call))
            .header("authorization", fresh.clone())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        answers.insert(r.text().await.unwrap());
    }
    assert_eq!(answers.len(), 1, "a replay gets the same answer");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM {} WHERE kind = 'menu.choice'",
            db.table("call_events")
        ))
        .await,
        1,
        "and is recorded once"
    );
    assert_eq!(
        db.scalar("SELECT status FROM alerts").await.as_deref(),
        Some("active")
    );
    app.stop().await;
}

/// Finding 2 of issue 11: ~1,100 idle and half-sent connections, more than the process's
/// 1,024 open files, while webhooks and /healthz keep being answered, each well within the
/// header-read timeout (the oldest idle connection makes room for a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_do_not_stop_webhooks() {
    use tokio::io::AsyncWriteExt;
    let _turn = crate::helpers::heavy().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let timeout = Duration::from_secs(5);
    let serve =
        Serve::start_with_file_limit(&db, &fake, &[("ALERTCALL_HEADER_READ_TIMEOUT", "5s")], 1024)
            .await;
    // This test process holds the client ends.
    assert!(
        alertcall::server::raise_file_limit() > 2500,
        "the test needs 2,500 open files"
    );
    let mut held = Vec::new();
    for n in 0..1100 {
        let Ok(mut stream) = tokio::net::TcpStream::connect(&serve.addr).await else {
            continue;
        };
        if n % 2 == 1 {
            let _ = stream
                .write_all(b"POST /api/alerts/call-event HTTP/1.1\r\nHost: x\r\nContent-")
                .await;
        }
        held.push(stream);
    }
    assert!(held.len() >= 1000, "only {} connections opened", held.len());
    // A fresh connection per request, as a provider's webhook would come.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .unwrap();
    let body = crate::core::event_body("4f1c0b6e-0000-4000-8000-000000000000", "ringing");
    let webhook_url = serve.url("/api/alerts/call-event");
    for round in 0..20 {
        let started = std::time::Instant::now();
        let health = client.get(serve.url("/healthz")).send().await;
        let webhook = post_webhook(&client, &webhook_url, &body, Some(SIGNATURE_SECRET));
        let webhook = tokio::time::timeout(timeout, webhook).await;
        let elapsed = started.elapsed();
        assert_eq!(
            health.map(|r| r.status().as_u16()).ok(),
            Some(200),
            "round {round}: /healthz unanswered after {elapsed:?}"
        );
        let status = webhook
            .unwrap_or_else(|_| panic!("round {round}: the webhook waited {elapsed:?}"))
            .status();
        assert!(
            status.as_u16() < 500,
            "round {round}: webhook answered {status}"
        );
        assert!(elapsed < timeout, "round {round}: {elapsed:?}");
    }
    drop(held);
    let mut serve = serve;
    assert!(serve.is_running());
}

/// Finding 5 of issue 11: 60 clients posting wrong passwords (made-up names, so the lockout
/// does not cut the work short) keep the process's peak memory under 150 MB: the Argon2
/// checks reuse memory allocated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_flood_keeps_memory_bounded() {
    let _turn = crate::helpers::heavy().await;
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let fake = FakeVonage::start().await;
    let serve = Serve::start(&db, &fake, &[]).await;
    let run_for = Duration::from_secs(if full() { 30 } else { 10 });
    let started = std::time::Instant::now();
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..60)
        .map(|c| {
            let url = serve.url("/login");
            let checked = checked.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let mut n = 0;
                while started.elapsed() < run_for {
                    n += 1;
                    let name = format!("guest-{c}-{n}");
                    let Ok(r) = client
                        .post(&url)
                        .form(&[("username", name.as_str()), ("password", "wrong")])
                        .send()
                        .await
                    else {
                        continue;
                    };
                    if r.headers()
                        .get("location")
                        .is_some_and(|l| l == "/login?error=1")
                    {
                        checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let checked = checked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(checked >= 20, "only {checked} passwords were checked");
    let peak = serve.peak_rss_kb();
    eprintln!("{checked} password checks; peak RSS {peak} kB");
    assert!(peak > 0 && peak <= 150_000, "peak RSS {peak} kB");
}

/// The header-read timeout also closes a silent connection, a half-sent request head and a
/// kept-alive connection left idle after its request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_sent_and_idle_connections_are_closed_after_the_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let app = TestApp::spawn(&db, None, &[("ALERTCALL_HEADER_READ_TIMEOUT", "1s")]).await;
    let sends: [&[u8]; 3] = [
        b"",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for send in sends {
        let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(send).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        let elapsed = started.elapsed();
        assert!(read.is_ok() || !answer.is_empty());
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
            "{:?} closed after {elapsed:?}",
            String::from_utf8_lossy(send)
        );
        if send.ends_with(b"\r\n\r\n") {
            assert!(answer.starts_with(b"HTTP/1.1 200"), "answered first");
        }
    }
    app.stop().await;
}

/// A full disk under SQLite: acknowledgements fail while it lasts and `/readyz` and the
/// metrics say so; once space returns, every acknowledgement answers 200 at its first try and
/// every new alert is called, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_heals_without_a_restart() {
    let Some(disk) = SmallDisk::mount(16) else {
        return;
    };
    let db = TestDb::sqlite_at(&disk.path("alertcall.db")).await;
    let fake = FakeVonage::start().await;
    let app = TestApp::spawn(
        &db,
        Some(&fake),
        &[faults::API_TOKEN, ("ALERTCALL_SWEEP_INTERVAL", "200ms")],
    )
    .await;
    let before = if full() { 20 } else { 6 };
    db.exec(&insert_tagged("disk-", 0, before)).await;
    wait_until("the first alerts are called", LONG, || async {
        calls_per_tag(&fake.calls(), "disk-").len() == before as usize
    })
    .await;
    let ids: Vec<String> = db
        .rows("SELECT CAST(id AS TEXT) FROM alerts WHERE message LIKE 'disk-%'")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();

    disk.fill();
    let mut refused = Vec::new();
    for id in &ids {
        if faults::acknowledge(&app, id).await != 200 {
            refused.push(id.clone());
        }
    }
    assert!(
        !refused.is_empty(),
        "no acknowledgement failed on a full disk"
    );
    faults::wait_ready(&app, 503, "failing").await;
    assert_eq!(app.get("/healthz").await.status(), 200, "still alive");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metric(&metrics, "alertcall_database_write_failures_total").is_some_and(|n| n > 0.0),
        "the failed writes are counted:\n{metrics}"
    );

    disk.free();
    for id in &refused {
        assert_eq!(
            faults::acknowledge(&app, id).await,
            200,
            "acknowledging {id} once the disk has space"
        );
    }
    faults::wait_ready(&app, 200, "ok").await;
    let after = before + if full() { 40 } else { 12 };
    db.exec(&insert_tagged("disk-", before, after)).await;
    wait_until("every alert after the fault is called", LONG, || async {
        calls_per_tag(&fake.calls(), "disk-").len() == after as usize
    })
    .await;
    let new: Vec<String> = db
        .rows(
            "SELECT CAST(id AS TEXT) FROM alerts WHERE message LIKE 'disk-%' AND status = 'active'",
        )
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
    assert_eq!(new.len(), (after - before) as usize);
    for id in &new {
        assert_eq!(
            faults::acknowledge(&app, id).await,
            200,
            "acknowledging {id}"
        );
    }
    app.stop().await;
}
