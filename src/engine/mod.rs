//! The engine: takes in new alerts (notify, file watch, sweep), claims due work, places
//! calls, and applies what providers report. It owns the clock and the transactions; the
//! rules come from `domain`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};

use crate::auth::{Access, ApiToken, Role, User};
use crate::config::Config;
use crate::config::file::{Directory, Person};
use crate::domain::escalation::{Matcher, Policy, Step, Target};
use crate::store::DynStore;
use crate::telephony::Provider;

mod actions;
mod clock;
mod dispatch;
mod escalate;
mod events;
mod faults;
mod intake;
pub mod limiter;
pub mod reach;
pub mod test_call;

pub use actions::{acknowledge, resolve};
pub use clock::Clock;
pub use events::{EventOutcome, Source, Turn};

/// How many pages are worked on at once by one instance.
const MAX_IN_FLIGHT: usize = 64;

/// Shared by the intake, the dispatcher and the webhook handlers.
pub struct Engine {
    pub store: DynStore,
    pub provider: Arc<dyn Provider>,
    pub config: Arc<Config>,
    pub metrics: crate::metrics::Metrics,
    clock: Clock,
    /// Dashboards listening for changes: bumped whenever the audit trail grows.
    changes: tokio::sync::watch::Sender<i64>,
    /// Identifies this process's leases.
    owner: String,
    wake: Notify,
    in_flight: Arc<Semaphore>,
    /// One lock per alert this process is working on, so that its pages are worked on one
    /// at a time here.
    working: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    limiter: limiter::RateLimiter,
    db_ok: AtomicBool,
    write_faults: faults::WriteFaults,
    /// Staff, schedules and policies; replaced whole on a reload.
    directory: std::sync::RwLock<Arc<Directory>>,
    /// The credentials from the environment, added to alertcall.toml's on every reload.
    env_access: Access,
    /// Whether each provider can place calls, as its calls showed.
    provider_health: reach::ProviderHealthBook,
    /// When the dispatcher last went round its loop (Unix ms; 0: not yet).
    dispatch_loop_ms: AtomicI64,
    /// Active critical alerts seen without a page, and since when (`Engine::assess`).
    unpaged_since: std::sync::Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
}

impl Engine {
    pub fn new(
        store: DynStore,
        provider: Arc<dyn Provider>,
        config: Arc<Config>,
        directory: Directory,
        clock: Clock,
    ) -> Arc<Engine> {
        let env_access = env_access(&config);
        let directory = complete(directory, &config, &env_access);
        let owner = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Arc::new(Engine {
            limiter: limiter::RateLimiter::new(config.calls_per_second),
            store,
            provider,
            config,
            metrics: crate::metrics::Metrics::new(),
            clock,
            changes: tokio::sync::watch::Sender::new(0),
            owner,
            wake: Notify::new(),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            working: std::sync::Mutex::new(std::collections::HashMap::new()),
            db_ok: AtomicBool::new(true),
            write_faults: faults::WriteFaults::default(),
            directory: std::sync::RwLock::new(Arc::new(directory)),
            env_access,
            provider_health: reach::ProviderHealthBook::default(),
            dispatch_loop_ms: AtomicI64::new(0),
            unpaged_since: std::sync::Mutex::default(),
        })
    }

    /// What calls and texts say: the environment, else alertcall.toml, else the defaults.
    pub fn messages(&self) -> crate::domain::message::MessageSettings {
        let mut settings = self.config.messages.clone();
        let directory = self.directory();
        let (name_from_env, patient_from_env) = self.config.messages_from_env;
        if let Some(name) = directory.hospital_name.clone().filter(|_| !name_from_env) {
            settings.hospital_name = name;
        }
        if let Some(include) = directory.include_patient_name.filter(|_| !patient_from_env) {
            settings.include_patient_name = include;
        }
        settings
    }

    /// The language of calls to `person`: theirs, else `ALERTCALL_LANGUAGE`, else
    /// `[hospital] language`, else en-US.
    pub fn language_for(&self, person: Option<&str>) -> String {
        let directory = self.directory();
        person
            .and_then(|p| directory.staff.get(p))
            .and_then(|p| p.language.clone())
            .or_else(|| {
                (!self.config.language_from_env)
                    .then(|| directory.language.clone())
                    .flatten()
            })
            .unwrap_or_else(|| self.config.language.clone())
    }

    /// Whether calls understand spoken answers, and the confidence a result needs.
    pub fn speech(&self) -> (bool, f64) {
        let directory = self.directory();
        (
            directory.speech.unwrap_or(true),
            directory
                .speech_min_confidence
                .unwrap_or(crate::domain::intent::DEFAULT_MIN_CONFIDENCE),
        )
    }

    /// What the menu offers on a call about `alert`.
    pub fn menu_options(
        &self,
        alert: &crate::domain::alert::Alert,
    ) -> crate::domain::menu::MenuOptions {
        crate::domain::menu::MenuOptions {
            connect: self
                .directory()
                .room(alert)
                .is_some_and(|r| r.connect.is_some()),
            speech: self.speech().0,
        }
    }

    /// The current staff, schedules and policies.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.read().expect("directory lock").clone()
    }

    /// Replaces staff, schedules and policies; escalations in flight keep their step and
    /// continue under the new definitions.
    pub fn reload(&self, directory: Directory) {
        let directory = complete(directory, &self.config, &self.env_access);
        *self.directory.write().expect("directory lock") = Arc::new(directory);
    }

    /// The engine's time. Everything time-dependent takes `now` from here.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The clock `now` reads (a test moves it forward, then `wake`s the dispatcher).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the last database operation of the background loops succeeded.
    pub fn database_ok(&self) -> bool {
        self.db_ok.load(Ordering::Relaxed)
    }

    fn set_database_ok(&self, ok: bool) {
        if !ok {
            self.metrics.database_error();
        }
        let was = self.db_ok.swap(ok, Ordering::Relaxed);
        if was && !ok {
            tracing::error!(
                "the database is unreachable: alerts cannot be taken in until it is back"
            );
        } else if !was && ok {
            tracing::info!("the database is reachable again");
        }
    }

    /// Asks the dispatcher to look for due work now (e.g. after an alert was raised here).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs intake and dispatch until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send) {
        let intake = tokio::spawn(intake::run(self.clone()));
        let dispatch = tokio::spawn(dispatch::run(self.clone()));
        let changes = tokio::spawn(watch_changes(self.clone()));
        let reach = tokio::spawn(reach::watch(self.clone()));
        let heartbeat = tokio::spawn(reach::heartbeat(self.clone()));
        shutdown.await;
        intake.abort();
        dispatch.abort();
        changes.abort();
        reach.abort();
        heartbeat.abort();
    }

    /// Changes for live dashboards: the newest audit-trail id, whenever it grows.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.changes.subscribe()
    }
}

/// How often the audit trail is checked for news while a dashboard listens.
const CHANGES_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Follows the audit trail, which every instance appends to, so dashboards connected to any
/// instance see every change; queries only while someone listens.
async fn watch_changes(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(CHANGES_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if engine.changes.receiver_count() == 0 {
            continue;
        }
        match engine.store.last_event_id().await {
            Ok(id) => {
                engine.changes.send_if_modified(|last| {
                    let grew = id != *last;
                    *last = id;
                    grew
                });
            }
            Err(e) => tracing::debug!(error = %e, "could not read the audit trail for dashboards"),
        }
    }
}

/// `ALERTCALL_API_TOKEN` (an admin token) and `ALERTCALL_ADMIN_PASSWORD` (user `admin`).
fn env_access(config: &Config) -> Access {
    Access {
        users: config
            .admin_password
            .iter()
            .map(|password| User {
                name: "admin".into(),
                role: Role::Admin,
                password_hash: crate::auth::stable_hash(password.expose()),
            })
            .collect(),
        tokens: config
            .api_token
            .iter()
            .map(|token| ApiToken {
                name: "ALERTCALL_API_TOKEN".into(),
                role: Role::Admin,
                sha256: crate::auth::token_hash(token.expose()),
            })
            .collect(),
    }
}

/// The staff id of `ALERTCALL_FALLBACK_PHONE`.
pub const FALLBACK_ID: &str = "fallback";

/// The directory a running `serve` works with, for commands that read what it did.
pub fn directory_of(config: &Config) -> Result<Directory, crate::config::ConfigErrors> {
    Ok(complete(config.directory()?, config, &env_access(config)))
}

/// alertcall.toml's directory with what the environment adds: credentials, and without
/// policies, the seed's setup: one step calling `NURSE_PHONE_NUMBER`, waiting
/// `ALERTCALL_ACK_WAIT`; `ALERTCALL_FALLBACK_PHONE` as the fallback contact.
fn complete(mut directory: Directory, config: &Config, env_access: &Access) -> Directory {
    for user in &env_access.users {
        if directory.access.user(&user.name).is_none() {
            directory.access.users.push(user.clone());
        }
    }
    directory
        .access
        .tokens
        .extend(env_access.tokens.iter().cloned());
    if let Some(phone) = &config.fallback_phone {
        directory.staff.insert(
            FALLBACK_ID.into(),
            Person {
                id: FALLBACK_ID.into(),
                name: "Fallback contact (ALERTCALL_FALLBACK_PHONE)".into(),
                phone: Some(phone.clone()),
                sms: Some(phone.clone()),
                language: None,
            },
        );
        directory.fallback = vec![Target::Person(FALLBACK_ID.into())];
    }
    if directory.policies.is_empty() {
        directory
            .staff
            .entry("nurse".into())
            .or_insert_with(|| Person {
                id: "nurse".into(),
                name: "Nurse on call (NURSE_PHONE_NUMBER)".into(),
                phone: Some(config.nurse_phone.clone()),
                sms: None,
                language: None,
            });
        directory.policies.push(Policy {
            name: "default".into(),
            matcher: Matcher::default(),
            steps: vec![Step {
                targets: vec![Target::Person("nurse".into())],
                call: true,
                sms: false,
                wait: config.ack_wait,
            }],
            rounds: 1,
            renotify_every: crate::config::file::DEFAULT_RENOTIFY,
        });
    }
    directory
}
