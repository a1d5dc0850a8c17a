//! Never silent: for each way an active critical alert can reach nobody, the health API names
//! it, the metric counts it, the board's data carries the banner, the heartbeat is withheld
//! and the fallback contact is called; and the heartbeat stops while the database is away.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alertcall::domain::reach::Reason;
use serde_json::Value;

use crate::both_backends;
use crate::core::{WAIT, input_body, input_url, metric, signed_event};
use crate::db::{Backend, TestDb};
use crate::fake_vonage::{Behaviour, Received, SIGNATURE_SECRET};
use crate::helpers::{TestApp, wait_until};
use crate::unreached::{self, DESK, Scenario, scenario};

const TOKEN: &str = "reach-test-token";

/// A local monitor in the style of Healthchecks: counts GETs of its secret URL.
pub struct Monitor {
    pub url: String,
    pings: Arc<AtomicUsize>,
}

impl Monitor {
    pub async fn start() -> Monitor {
        let pings = Arc::new(AtomicUsize::new(0));
        let counter = pings.clone();
        let app = axum::Router::new().route(
            "/ping/{secret}",
            axum::routing::get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    "OK"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/ping/5f3c9e0a-monitor-secret",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Monitor { url, pings }
    }

    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }
}

/// Whether the call went to `number` (E.164; Vonage's form has no `+`).
fn to(call: &Received, number: &str) -> bool {
    call.body["to"][0]["number"].as_str() == Some(number.trim_start_matches('+'))
}

async fn scrape(app: &TestApp, series: &str) -> Option<f64> {
    metric(&app.get("/metrics").await.text().await.unwrap(), series)
}

/// One unreached state, end to end.
struct Case {
    scenario: Scenario,
    fallback_called: bool,
    /// The fallback contact presses 1 at the end: the alert is acknowledged.
    fallback_acknowledges: bool,
}

impl Case {
    fn calling_the_fallback(scenario: Scenario) -> Case {
        Case {
            scenario,
            fallback_called: true,
            fallback_acknowledges: false,
        }
    }

    fn leaving_the_fallback(scenario: Scenario) -> Case {
        Case {
            fallback_called: false,
            ..Case::calling_the_fallback(scenario)
        }
    }
}

async fn unreached(db: TestDb, case: Case) {
    let scenario = case.scenario;
    let fake = unreached::fake_vonage(&[scenario]).await;
    let monitor = Monitor::start().await;
    let file = unreached::config();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(
        &db,
        Some(&fake),
        &[
            ("ALERTCALL_CONFIG", path.as_str()),
            ("ALERTCALL_API_TOKEN", TOKEN),
            ("ALERTCALL_HEARTBEAT_URL", monitor.url.as_str()),
            ("ALERTCALL_HEARTBEAT_EVERY", "200ms"),
        ],
    )
    .await;
    wait_until("the heartbeat pings while all is well", WAIT, || async {
        monitor.pings() >= 1
    })
    .await;
    let health = app.get_json("/api/v1/health", TOKEN).await;
    assert_eq!(health["status"], "ok", "{health}");

    let alert = unreached::raise(&db, &scenario).await;

    // The health API names it.
    wait_until("the health API names the unreached alert", WAIT, || async {
        let health = app.get_json("/api/v1/health", TOKEN).await;
        health["unreached"]
            .as_array()
            .is_some_and(|u| u.iter().any(|e| e["alert_id"] == alert.as_str()))
    })
    .await;
    let health: Value = app.get_json("/api/v1/health", TOKEN).await;
    assert_eq!(health["status"], "degraded", "{health}");
    let entry = &health["unreached"][0];
    let reason = scenario.reason.as_str();
    assert_eq!(entry["reason"], reason, "{health}");
    let message = entry["message"].as_str().unwrap();
    assert!(message.contains(scenario.message), "{message}");
    for field in ["next", "fix"] {
        assert!(
            entry[field].as_str().is_some_and(|s| s.len() > 10),
            "{health}"
        );
    }

    // The board's data carries the same banner.
    let board = app.get_json("/api/v1/alerts", TOKEN).await;
    let row = board
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == alert.as_str())
        .unwrap();
    // ("next" names a retry time, which a retry in between moves on.)
    let detail = app
        .get_json(&format!("/api/v1/alerts/{alert}"), TOKEN)
        .await;
    for banner in [&row["unreached"], &detail["alert"]["unreached"]] {
        for field in ["alert_id", "reason", "message", "fix"] {
            assert_eq!(banner[field], entry[field], "{field}: {banner} vs {entry}");
        }
    }

    // The metric counts it.
    let series = format!("alertcall_unreached_alerts{{reason=\"{reason}\"}}");
    wait_until("the metric counts the alert", WAIT, || async {
        scrape(&app, &series).await == Some(1.0)
    })
    .await;

    // The heartbeat is withheld: two withheld intervals go by without a ping.
    let withheld = "alertcall_heartbeats_total{result=\"withheld\"}";
    wait_until("a heartbeat is withheld", WAIT, || async {
        scrape(&app, withheld).await.is_some_and(|n| n >= 1.0)
    })
    .await;
    let pings = monitor.pings();
    let before = scrape(&app, withheld).await.unwrap();
    wait_until("two more intervals are withheld", WAIT, || async {
        scrape(&app, withheld)
            .await
            .is_some_and(|n| n >= before + 2.0)
    })
    .await;
    assert_eq!(
        monitor.pings(),
        pings,
        "no ping while an alert reaches nobody"
    );

    // The fallback contact is called (and texted), once; or, when it cannot help, not.
    let desk_calls = || fake.received().iter().filter(|c| to(c, DESK)).count();
    if case.fallback_called {
        wait_until("the fallback contact is called", WAIT, || async {
            desk_calls() == 1
        })
        .await;
        wait_until("the fallback contact is texted", WAIT, || async {
            fake.messages()
                .iter()
                .any(|m| m["to"] == DESK.trim_start_matches('+'))
        })
        .await;
        app.assert_audit(&alert, &["alert.unreached", "fallback.notified"])
            .await;
    } else {
        app.assert_audit(&alert, &["alert.unreached"]).await;
    }
    // Later sweeps change nothing: one fallback call at most.
    let sweeps = scrape(&app, withheld).await.unwrap();
    wait_until("more sweeps go by", WAIT, || async {
        scrape(&app, withheld)
            .await
            .is_some_and(|n| n >= sweeps + 3.0)
    })
    .await;
    assert_eq!(desk_calls(), usize::from(case.fallback_called));
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    if case.fallback_acknowledges {
        let call = fake.calls().into_iter().find(|c| to(c, DESK)).unwrap();
        let uuid = call.uuid.clone().unwrap();
        let r = app
            .webhook(
                &input_url(&call),
                &input_body(&uuid, "1", false),
                Some(SIGNATURE_SECRET),
            )
            .await;
        assert_eq!(r.status(), 200);
        wait_until(
            "the fallback's press 1 acknowledges the alert",
            WAIT,
            || async {
                db.scalar(&format!(
                    "SELECT status FROM alerts WHERE CAST(id AS TEXT) = '{alert}'"
                ))
                .await
                .as_deref()
                    == Some("acknowledged")
            },
        )
        .await;
        wait_until("the alert no longer counts as unreached", WAIT, || async {
            scrape(&app, &series).await == Some(0.0)
        })
        .await;
        wait_until("the heartbeat resumes", WAIT, || async {
            monitor.pings() > pings
        })
        .await;
    }
    app.stop().await;
}

pub async fn no_policy_matches(db: TestDb) {
    let scenario = scenario(Reason::NoPolicy);
    unreached(db, Case::calling_the_fallback(scenario)).await;
}
both_backends!(reach::no_policy_matches);

pub async fn the_step_names_nobody_with_a_phone(db: TestDb) {
    let scenario = scenario(Reason::NobodyOnCall);
    unreached(db, Case::calling_the_fallback(scenario)).await;
}
both_backends!(reach::the_step_names_nobody_with_a_phone);

pub async fn the_provider_refuses_our_credentials(db: TestDb) {
    // The fallback contact cannot be phoned either: it is not tried.
    let scenario = scenario(Reason::ProviderDown);
    unreached(db, Case::leaving_the_fallback(scenario)).await;
}
both_backends!(reach::the_provider_refuses_our_credentials);

pub async fn the_provider_keeps_failing(db: TestDb) {
    let scenario = Scenario {
        provider: Some(|_| Behaviour::Status(503, None)),
        message: "Vonage answered 503",
        ..scenario(Reason::ProviderDown)
    };
    unreached(db, Case::leaving_the_fallback(scenario)).await;
}
both_backends!(reach::the_provider_keeps_failing);

pub async fn an_old_alert_is_skipped(db: TestDb) {
    let scenario = scenario(Reason::Skipped);
    unreached(db, Case::leaving_the_fallback(scenario)).await;
}
both_backends!(reach::an_old_alert_is_skipped);

pub async fn nobody_answers_the_whole_escalation(db: TestDb) {
    let scenario = scenario(Reason::Exhausted);
    let case = Case {
        fallback_acknowledges: true,
        ..Case::calling_the_fallback(scenario)
    };
    unreached(db, case).await;
}
both_backends!(reach::nobody_answers_the_whole_escalation);

pub async fn the_number_is_refused_for_good(db: TestDb) {
    let scenario = scenario(Reason::FailedForGood);
    unreached(db, Case::calling_the_fallback(scenario)).await;
}
both_backends!(reach::the_number_is_refused_for_good);

pub async fn the_intake_keeps_failing(db: TestDb) {
    let scenario = scenario(Reason::NotTakenIn);
    unreached(db, Case::calling_the_fallback(scenario)).await;
}
both_backends!(reach::the_intake_keeps_failing);

/// The safety net does not give up after one call: a fallback call nobody picks up (or that
/// fails) is made again after ALERTCALL_FALLBACK_RETRY while the alert still reaches nobody,
/// and no more once the fallback contact picked up.
pub async fn the_fallback_contact_is_called_again_until_picked_up(db: TestDb) {
    let scenario = scenario(Reason::NoPolicy);
    let fake = unreached::fake_vonage(&[scenario]).await;
    let monitor = Monitor::start().await;
    let file = unreached::config();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(
        &db,
        Some(&fake),
        &[
            ("ALERTCALL_CONFIG", path.as_str()),
            ("ALERTCALL_FALLBACK_RETRY", "2m"),
            ("ALERTCALL_HEARTBEAT_URL", monitor.url.as_str()),
            ("ALERTCALL_HEARTBEAT_EVERY", "200ms"),
        ],
    )
    .await;
    let alert = unreached::raise(&db, &scenario).await;
    let desk_calls = || {
        fake.calls()
            .into_iter()
            .filter(|c| to(c, DESK))
            .collect::<Vec<_>>()
    };
    let end = |call: Received, status: &'static str| {
        let app = &app;
        async move {
            let r = signed_event(app, &call, status).await;
            assert_eq!(r.status(), 204, "the {status} event");
        }
    };
    wait_until("the fallback contact is called", WAIT, || async {
        desk_calls().len() == 1
    })
    .await;
    end(desk_calls().remove(0), "unanswered").await;
    // Less than ALERTCALL_WEBHOOK_MAX_AGE, so that the fake's signatures stay fresh.
    app.advance(Duration::from_secs(120));
    wait_until("the fallback contact is called again", WAIT, || async {
        desk_calls().len() == 2
    })
    .await;
    // Picked up (and hung up without pressing 1): the message was heard, no third call.
    end(desk_calls().remove(1), "answered").await;
    end(desk_calls().remove(1), "completed").await;
    let calls_of_alert = format!(
        "SELECT count(*) FROM {} WHERE alert_id = '{alert}'",
        db.table("calls")
    );
    let before = db.count(&calls_of_alert).await;
    // Three times the retry interval goes by, and the alert is assessed again since (once a
    // second: the withheld heartbeats, every 200 ms, count 2 s).
    app.advance(Duration::from_secs(360));
    let withheld = "alertcall_heartbeats_total{result=\"withheld\"}";
    let ticks = scrape(&app, withheld).await.unwrap_or(0.0);
    wait_until("the alert is assessed again", WAIT, || async {
        scrape(&app, withheld)
            .await
            .is_some_and(|n| n >= ticks + 10.0)
    })
    .await;
    assert_eq!(
        desk_calls().len(),
        2,
        "no call after the fallback picked up"
    );
    assert_eq!(db.count(&calls_of_alert).await, before);
    app.assert_audit(&alert, &["alert.unreached", "fallback.notified"])
        .await;
    app.stop().await;
}
both_backends!(reach::the_fallback_contact_is_called_again_until_picked_up);

/// A fallback contact that could not be told when the alert became unreached (nobody was set,
/// or nobody was on shift on an `oncall:` fallback) is called and texted as soon as there is
/// one, here after a reload that adds it.
pub async fn a_fallback_contact_added_later_is_still_told(db: TestDb) {
    let scenario = scenario(Reason::NoPolicy);
    let fake = unreached::fake_vonage(&[scenario]).await;
    let file = unreached::config();
    let with_fallback = std::fs::read_to_string(file.path()).unwrap();
    let without = with_fallback.replace("fallback = [\"person:desk\"]", "");
    assert_ne!(without, with_fallback);
    std::fs::write(file.path(), &without).unwrap();
    let path = file.path().display().to_string();
    let app = TestApp::spawn(&db, Some(&fake), &[("ALERTCALL_CONFIG", path.as_str())]).await;
    let alert = unreached::raise(&db, &scenario).await;
    wait_until("the alert is recorded as unreached", WAIT, || async {
        let events = app.engine.store.list_events(&alert).await.unwrap();
        events.iter().any(|e| e.kind == "alert.unreached")
    })
    .await;
    assert!(fake.calls().iter().all(|c| !to(c, DESK)));
    std::fs::write(file.path(), &with_fallback).unwrap();
    app.engine.reload(app.engine.config.directory().unwrap());
    wait_until(
        "the fallback contact is called and texted",
        WAIT,
        || async {
            fake.calls().iter().any(|c| to(c, DESK))
                && fake
                    .messages()
                    .iter()
                    .any(|m| m["to"] == DESK.trim_start_matches('+'))
        },
    )
    .await;
    app.assert_audit(&alert, &["alert.unreached", "fallback.notified"])
        .await;
    app.stop().await;
}
both_backends!(reach::a_fallback_contact_added_later_is_still_told);

/// The database goes away (the network to Postgres is cut): the pings stop, and start again
/// when it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_stops_while_the_database_is_away() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let hostport = db
        .url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let proxy = crate::torture::Proxy::start(hostport.clone()).await;
    let mut proxied = db.url.replace(&hostport, &proxy.addr);
    proxied.push_str(if proxied.contains('?') { "&" } else { "?" });
    proxied.push_str("connect_timeout=1");
    let proxied_db = TestDb::with_url(&db, proxied);
    let monitor = Monitor::start().await;
    let app = TestApp::spawn(
        &proxied_db,
        None,
        &[
            ("ALERTCALL_HEARTBEAT_URL", monitor.url.as_str()),
            ("ALERTCALL_HEARTBEAT_EVERY", "200ms"),
        ],
    )
    .await;
    wait_until("the heartbeat pings", WAIT, || async {
        monitor.pings() >= 2
    })
    .await;

    proxy.set_cut(true);
    let withheld = "alertcall_heartbeats_total{result=\"withheld\"}";
    wait_until("a heartbeat is withheld", WAIT, || async {
        scrape(&app, withheld).await.is_some_and(|n| n >= 1.0)
    })
    .await;
    let pings = monitor.pings();
    let before = scrape(&app, withheld).await.unwrap();
    wait_until("two more intervals are withheld", WAIT, || async {
        scrape(&app, withheld)
            .await
            .is_some_and(|n| n >= before + 2.0)
    })
    .await;
    assert_eq!(monitor.pings(), pings, "no ping while the database is away");

    proxy.set_cut(false);
    wait_until("the pings start again", WAIT, || async {
        monitor.pings() >= pings + 2
    })
    .await;
    app.stop().await;
}
