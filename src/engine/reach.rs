//! The engine's side of "is someone being reached?" (`domain::reach`): gathers each active
//! critical alert's situation, and acts on the answer: the metric, one log line when an alert
//! becomes unreached (and one when it recovers), the fallback contact, and the heartbeat that
//! lets the hospital's monitor page IT when alertcall dies, hangs or degrades.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Engine, escalate};
use crate::domain::alert::Alert;
use crate::domain::reach::{self, Progress, ProviderHealth, Reason, Refused, Situation, Unreached};
use crate::store::{
    AlertFilter, AlertView, AuditEvent, AuditKind, PageState, PageView, StoreError,
};
use crate::telephony::ProviderError;

/// How often the active critical alerts are assessed (one query).
const ASSESS_EVERY: Duration = Duration::from_secs(1);

/// Whether the fallback contact is due again is read every this many assessments (its calls
/// are a query per unreached alert; retries are minutes apart).
const FALLBACK_CHECK_EVERY: u64 = 5;
/// The most active critical alerts assessed at once.
const MAX_ALERTS: i64 = 1000;
/// How many of an alert's newest calls are looked through for its last escalation call.
const RECENT_CALLS: i64 = 20;
/// How long one heartbeat request may take.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// What each provider's requests came to lately, as `domain::reach` reads it. Kept per
/// provider so that a second provider (failover) has its own.
#[derive(Default)]
pub struct ProviderHealthBook(std::sync::Mutex<HashMap<&'static str, ProviderHealth>>);

impl ProviderHealthBook {
    /// After every attempt to place a call: success heals, a refusal of our credentials or
    /// key stops everything, failures worth retrying add up. A number refused for good says
    /// nothing about the provider.
    pub fn record(&self, provider: &'static str, result: Result<(), &ProviderError>) {
        let mut book = self.0.lock().expect("provider health lock");
        let health = book.entry(provider).or_default();
        *health = match (result, &*health) {
            (Ok(()), _) => ProviderHealth::Ok,
            (Err(ProviderError::Config(why)), _) => ProviderHealth::Refused(why.clone()),
            (
                Err(ProviderError::Transient { message, .. }),
                ProviderHealth::Failing { failures, .. },
            ) => ProviderHealth::Failing {
                failures: failures + 1,
                last: message.clone(),
            },
            (Err(ProviderError::Transient { message, .. }), _) => ProviderHealth::Failing {
                failures: 1,
                last: message.clone(),
            },
            (Err(ProviderError::Permanent(_)), current) => current.clone(),
        };
    }

    fn get(&self, provider: &'static str) -> ProviderHealth {
        let book = self.0.lock().expect("provider health lock");
        book.get(provider).cloned().unwrap_or_default()
    }
}

/// An active critical alert nobody is being reached about.
#[derive(Debug, Clone)]
pub struct AlertReach {
    pub alert: Alert,
    pub unreached: Unreached,
}

impl Engine {
    /// Each provider's health: what its calls came to, and what it knows itself (`ready`).
    pub fn provider_health(&self) -> Vec<(&'static str, ProviderHealth)> {
        let name = self.provider.name();
        let health = match (self.provider_health.get(name), self.provider.ready()) {
            (ProviderHealth::Ok, Err(why)) => ProviderHealth::Refused(why),
            (health, _) => health,
        };
        vec![(name, health)]
    }

    /// When the dispatcher last went round its loop (this instance).
    pub fn last_dispatch_loop(&self) -> Option<DateTime<Utc>> {
        let ms = self.dispatch_loop_ms.load(Ordering::Relaxed);
        (ms > 0)
            .then(|| DateTime::from_timestamp_millis(ms))
            .flatten()
    }

    pub(super) fn dispatch_looped(&self) {
        self.dispatch_loop_ms
            .store(self.now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Every active critical alert nobody is being reached about, oldest first.
    pub async fn unreached(&self) -> Result<Vec<AlertReach>, StoreError> {
        let views = self.store.alert_views(&active_critical()).await?;
        // Forget alerts no longer active and critical (this is the whole list).
        self.unpaged_since
            .lock()
            .expect("unpaged lock")
            .retain(|id, _| views.iter().any(|v| &v.alert.id == id));
        let assessed = self.assess(&views).await?;
        let mut out: Vec<AlertReach> = views
            .into_iter()
            .filter_map(|v| {
                let unreached = assessed.get(&v.alert.id)?.clone();
                Some(AlertReach {
                    alert: v.alert,
                    unreached,
                })
            })
            .collect();
        out.sort_by_key(|r| r.alert.triggered_at);
        Ok(out)
    }

    /// Why nobody is being reached, for each of these alerts that is active and critical and
    /// unreached (by alert id).
    pub async fn assess(
        &self,
        views: &[AlertView],
    ) -> Result<HashMap<String, Unreached>, StoreError> {
        let now = self.now();
        let directory = self.directory();
        let (provider, health) = self.provider_health().remove(0);
        let time_zone = directory
            .time_zone
            .clone()
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let fallback: Vec<String> = escalate::people(&directory, &directory.fallback, now)
            .into_iter()
            .map(|p| p.name)
            .collect();
        let mut out = HashMap::new();
        for view in views {
            let alert = &view.alert;
            if !alert.is_critical() || !alert.status.needs_paging() {
                continue;
            }
            let progress = match &view.page {
                Some(page) => progress(page),
                None => {
                    let mut unpaged = self.unpaged_since.lock().expect("unpaged lock");
                    let since = *unpaged.entry(alert.id.clone()).or_insert(now);
                    Progress::NotPaged { since }
                }
            };
            let policy = match &view.page {
                Some(page) if page.policy.is_some() => directory
                    .policies
                    .iter()
                    .find(|p| Some(&p.name) == page.policy.as_ref()),
                _ => crate::domain::escalation::choose(&directory.policies, alert),
            };
            let (step, people) = match (policy, &view.page) {
                (Some(policy), Some(page)) if !policy.steps.is_empty() => {
                    let exhausted = page.state == PageState::Exhausted;
                    let step = if exhausted {
                        policy.steps.len() - 1
                    } else {
                        (page.step.max(0) as usize).min(policy.steps.len() - 1)
                    };
                    let def = &policy.steps[step];
                    let people = escalate::people(&directory, &def.targets, now)
                        .into_iter()
                        .map(|p| reach::Person {
                            reachable: if def.call {
                                p.phone.is_some()
                            } else {
                                p.sms.is_some()
                            },
                            name: p.name,
                        })
                        .collect();
                    (step, people)
                }
                _ => (0, Vec::new()),
            };
            let refused = match progress {
                Progress::Exhausted { .. } => self.refused(&alert.id).await?,
                _ => None,
            };
            let situation = Situation {
                alert,
                progress,
                policy: policy.map(|p| p.name.as_str()),
                step,
                people: &people,
                refused,
                provider,
                provider_health: &health,
                fallback: &fallback,
                max_alert_age: self.config.max_alert_age,
                intake_grace: intake_grace(self.config.sweep_interval),
                time_zone: &time_zone,
                now,
            };
            if let Some(unreached) = reach::assess(&situation) {
                out.insert(alert.id.clone(), unreached);
            }
        }
        Ok(out)
    }

    /// The alert's newest escalation call (not the fallback contact's), when the provider
    /// refused it without placing it: an exhausted page got there only by a refusal for good
    /// (other failures retry the step).
    async fn refused(&self, alert_id: &str) -> Result<Option<Refused>, StoreError> {
        let calls = self.store.list_calls(Some(alert_id), RECENT_CALLS).await?;
        let Some(call) = calls.into_iter().find(|c| c.step >= 0) else {
            return Ok(None);
        };
        if call.provider_call_id.is_some() || call.status != crate::domain::call::CallStatus::Failed
        {
            return Ok(None);
        }
        let directory = self.directory();
        let person = call
            .person
            .as_ref()
            .and_then(|p| directory.staff.get(p))
            .map_or_else(|| "the person called".to_string(), |p| p.name.clone());
        Ok(Some(Refused {
            person,
            why: call.error.unwrap_or_else(|| "refused".into()),
        }))
    }
}

/// The active critical alerts (oldest first, at most `MAX_ALERTS`): what reach assesses and
/// what the intake takes in one by one after a batch failed.
pub(super) fn active_critical() -> AlertFilter {
    AlertFilter {
        status: Some("active".into()),
        severity: Some(crate::domain::alert::CRITICAL.into()),
        limit: MAX_ALERTS,
        ..AlertFilter::default()
    }
}

/// A page row as `domain::reach` sees it.
fn progress(page: &PageView) -> Progress {
    match page.state {
        PageState::Due => Progress::Due {
            at: page.due_at,
            attempts: page.attempts.max(0) as u32,
            last_error: page.last_error.clone(),
        },
        PageState::Waiting => Progress::Waiting { until: page.due_at },
        PageState::Exhausted => Progress::Exhausted { next: page.due_at },
        PageState::Failed => Progress::NoPolicy,
        PageState::Stale => Progress::Stale,
        PageState::Acknowledged | PageState::Cancelled => Progress::Closed,
    }
}

/// Assesses every second: the metric, the log lines and the fallback contact.
pub(super) async fn watch(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(ASSESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What this instance last saw unreached, so each change is acted on once.
    let mut seen: HashMap<String, Reason> = HashMap::new();
    for round in 0u64.. {
        tick.tick().await;
        let list = match engine.unreached().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "could not assess whether alerts reach someone");
                engine.database_failed(&e);
                continue;
            }
        };
        let mut counts: HashMap<Reason, i64> = HashMap::new();
        let mut now_seen = HashMap::new();
        for r in &list {
            *counts.entry(r.unreached.reason).or_default() += 1;
            now_seen.insert(r.alert.id.clone(), r.unreached.reason);
            if seen.get(&r.alert.id) != Some(&r.unreached.reason) {
                if let Err(e) = became_unreached(&engine, r).await {
                    tracing::warn!(alert_id = %r.alert.id, error = %e, "could not record an unreached alert; will retry");
                    now_seen.remove(&r.alert.id);
                }
            } else if round % FALLBACK_CHECK_EVERY == 0
                && let Err(e) = fallback_again(&engine, r).await
            {
                tracing::warn!(alert_id = %r.alert.id, error = %e, "could not call the fallback contact again; will retry");
            }
        }
        for reason in Reason::ALL {
            engine
                .metrics
                .unreached(reason.as_str(), counts.get(&reason).copied().unwrap_or(0));
        }
        let gone: HashSet<&String> = seen
            .keys()
            .filter(|id| !now_seen.contains_key(*id))
            .collect();
        for alert_id in gone {
            tracing::info!(alert_id = %alert_id, was = seen[alert_id].as_str(), "the alert is no longer unreached: someone is being called, or it was acknowledged or closed");
        }
        seen = now_seen;
    }
}

/// Records (once per alert and reason, across restarts and instances) that nobody is being
/// reached, says so in the log, and tells the fallback contact.
async fn became_unreached(engine: &Arc<Engine>, r: &AlertReach) -> Result<(), StoreError> {
    let u = &r.unreached;
    let reason = u.reason.as_str();
    let first = engine
        .store
        .record_event(&AuditEvent {
            alert_id: Some(r.alert.id.clone()),
            call_id: None,
            source: "engine".into(),
            kind: AuditKind::AlertUnreached,
            dedupe_key: Some(format!("unreached:{}:{reason}", r.alert.id)),
            detail: json!({"reason": reason, "message": u.message, "next": u.next, "fix": u.fix}),
            at: engine.now(),
        })
        .await?;
    if !first {
        return Ok(());
    }
    tracing::error!(
        alert_id = %r.alert.id,
        reason,
        next = %u.next,
        fix = %u.fix,
        "NOBODY IS BEING REACHED about this critical alert: {}",
        u.message
    );
    if u.reason.calls_fallback() {
        escalate::notify_fallback(engine, &r.alert, u, None, false).await?;
    } else if u.reason == Reason::ProviderDown && !engine.directory().fallback.is_empty() {
        tracing::error!(alert_id = %r.alert.id, "the fallback contact cannot be phoned either: the provider places no calls");
    }
    Ok(())
}

/// Calls the fallback contact again about an alert still unreached when every call to it so
/// far ended without being picked up (`domain::reach::fallback_again`).
async fn fallback_again(engine: &Arc<Engine>, r: &AlertReach) -> Result<(), StoreError> {
    let u = &r.unreached;
    if !u.reason.calls_fallback() {
        return Ok(());
    }
    let calls: Vec<_> = engine
        .store
        .list_calls(Some(&r.alert.id), 200)
        .await?
        .into_iter()
        .filter(super::dispatch::is_fallback)
        .collect();
    if calls.is_empty() {
        // Not called yet (nobody was on shift on an `oncall:` fallback, or a fault): the first
        // time again, which its audit key keeps to once.
        return escalate::notify_fallback(engine, &r.alert, u, None, true).await;
    }
    match reach::fallback_again(&calls, engine.config.fallback_retry, engine.now()) {
        Some(n) => escalate::notify_fallback(engine, &r.alert, u, Some(n), true).await,
        None => Ok(()),
    }
}

/// Requests `ALERTCALL_HEARTBEAT_URL` every `ALERTCALL_HEARTBEAT_EVERY` while all is well.
pub(super) async fn heartbeat(engine: Arc<Engine>) {
    let Some(url) = engine.config.heartbeat_url.clone() else {
        return;
    };
    let every = engine.config.heartbeat_every;
    let masked = crate::config::mask_url(url.expose());
    let http = match reqwest::Client::builder()
        .timeout(HEARTBEAT_TIMEOUT.min(every))
        .user_agent(concat!("alertcall/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the heartbeat's HTTP client: no heartbeat");
            return;
        }
    };
    tracing::info!(url = %masked, ?every, "heartbeat on: pinged while the dispatcher runs, the database answers and every alert reaches someone");
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld: Option<String> = None;
    loop {
        tick.tick().await;
        let why_not = why_no_heartbeat(&engine, every).await;
        if why_not != withheld {
            // One error line per stretch without pings; a new reason within it (a slow
            // dispatcher loop under load, then the alert) is an info line.
            match (&why_not, &withheld) {
                (Some(why), None) => tracing::error!(url = %masked, "heartbeat withheld: {why}"),
                (Some(why), Some(_)) => {
                    tracing::info!(url = %masked, "heartbeat still withheld, now because {why}");
                }
                (None, Some(_)) => tracing::info!(url = %masked, "heartbeat resumed"),
                (None, None) => {}
            }
            withheld = why_not.clone();
        }
        if why_not.is_some() {
            engine.metrics.heartbeat("withheld");
            continue;
        }
        match http.get(url.expose()).send().await {
            Ok(r) if r.status().is_success() => {
                engine.metrics.heartbeat("sent");
            }
            Ok(r) => {
                engine.metrics.heartbeat("error");
                tracing::warn!(url = %masked, status = %r.status(), "the heartbeat monitor refused the ping");
            }
            Err(e) => {
                engine.metrics.heartbeat("error");
                tracing::warn!(url = %masked, error = %e.without_url(), "the heartbeat monitor could not be reached");
            }
        }
    }
}

/// Why this interval gets no heartbeat, if it does not.
async fn why_no_heartbeat(engine: &Engine, every: Duration) -> Option<String> {
    let since = engine.now() - chrono::Duration::from_std(every).unwrap_or_default();
    if engine.last_dispatch_loop().is_none_or(|t| t < since) {
        return Some("the dispatcher has not run in the last interval".into());
    }
    if let Err(e) = engine.store.ping().await {
        tracing::debug!(error = %e, "heartbeat: database ping failed");
        return Some("the database does not answer".into());
    }
    match engine.unreached().await {
        Ok(list) if list.is_empty() => None,
        Ok(list) => Some(format!(
            "{} critical alert(s) reach nobody (first: {}, {})",
            list.len(),
            list[0].alert.id,
            list[0].unreached.reason.as_str()
        )),
        Err(_) => Some("the database does not answer".into()),
    }
}

/// How long an active critical alert may go without a page before it counts as not taken in:
/// three sweeps (each retries the intake), and never less than 5 s.
fn intake_grace(sweep: Duration) -> Duration {
    (sweep * 3).max(Duration::from_secs(5))
}
