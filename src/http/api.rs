//! The JSON API under `/api/v1/`, which the dashboard uses too. Its OpenAPI document is
//! generated from these handlers and types (`/api/v1/openapi.json`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use super::auth::{Admin, Principal, Viewer};
use super::{AppState, HttpError};
use crate::analytics::{self, Analytics};
use crate::auth::Role;
use crate::domain::alert::{Acknowledger, NewAlert};
use crate::domain::call::CallRecord;
use crate::domain::phone::Phone;
use crate::store::{AckOutcome, AlertFilter, AlertView, AuditKind, CallFilter, StoredEvent};
use crate::telephony::webhook_token::Protection;
use crate::views::board;

/// Every error answer: what went wrong and what to do.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// Who is signed in, and what the dashboard needs to act for them.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub name: String,
    /// `viewer` or `admin`.
    pub role: String,
    /// Send as `X-CSRF-Token` with every POST made with the session cookie.
    pub csrf_token: Option<String>,
    /// Whether calls go to the built-in phone simulator (the dashboard shows virtual phones).
    pub simulator: bool,
    pub hospital_name: String,
}

/// Someone being called right now, or a call as history keeps it.
#[derive(Serialize, ToSchema)]
pub struct CallSummary {
    pub id: String,
    pub alert_id: String,
    /// Staff id (`nurse` for NURSE_PHONE_NUMBER).
    pub person: Option<String>,
    pub person_name: Option<String>,
    /// The number called, masked (`+1385*****51`).
    pub to: String,
    /// pending, initiated, ringing, in_progress, answered (pressed 1), machine, completed,
    /// unanswered, busy, timeout, rejected, cancelled, failed.
    pub status: String,
    /// What the call came to, in the words every screen uses: ringing, picked_up,
    /// acknowledged, declined, no_answer, busy, voicemail, failed, cancelled.
    pub outcome: String,
    /// `outcome` as people read it ("picked up", "no answer").
    pub outcome_label: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    pub step: i32,
    pub round: i32,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

/// Where an alert's escalation stands.
#[derive(Serialize, ToSchema)]
pub struct Escalation {
    /// due, waiting, acknowledged, cancelled, exhausted, failed, stale.
    pub state: String,
    /// 0-based step of the policy.
    pub step: i32,
    pub round: i32,
    /// The policy followed: the unit.
    pub unit: Option<String>,
    /// When the current wait ends or the next attempt is due.
    pub due_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertSummary {
    pub id: String,
    pub severity: String,
    /// active, acknowledged, resolved, or what the hospital app wrote.
    pub status: String,
    pub alert_type: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
    pub room: Option<String>,
    /// Hidden (null) when `[dashboard] show_patient_name = false`.
    pub patient: Option<String>,
    pub triggered_at: DateTime<Utc>,
    pub age_seconds: f64,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged; a nurse's number is masked for viewers (admins see it whole).
    pub acknowledged_by: Option<String>,
    /// `metadata.call.call_status`, as the seed's queries read it.
    pub call_status: Option<String>,
    /// ringing, picked up (someone is on the line, nothing decided yet), acknowledged,
    /// exhausted, skipped, ... : one word for the board.
    pub live_status: String,
    /// Why alertcall does not call about this alert, when it skipped it: "skipped: older
    /// than 24 h when alertcall started" (`ALERTCALL_MAX_ALERT_AGE`). Resolve it by hand
    /// (`POST /api/v1/alerts/resolve-skipped`, `alertcall alert resolve`).
    pub skipped: Option<String>,
    pub escalation: Option<Escalation>,
    /// Calls still ringing or in progress.
    pub calling: Vec<CallSummary>,
    /// Set when this active critical alert reaches nobody: why, what happens next, the fix.
    pub unreached: Option<UnreachedAlert>,
    /// Where the alarm came from, when it came through the HL7 alarm intake; null otherwise.
    pub source: Option<AlarmSource>,
}

/// The sender of an HL7 alarm, as it sent itself (HL7 components separated by `^`).
#[derive(Serialize, ToSchema)]
pub struct AlarmSource {
    /// MSH-3: the sending application (the alarm gateway), e.g. `ACME_GW^0012A4FFFE000001^EUI-64`.
    pub application: String,
    /// OBX-18: the device that raised the alarm, e.g. `0012A4FFFE00BEEF^ACME^EUI-64`.
    pub device: Option<String>,
}

/// An active critical alert nobody is being reached about.
#[derive(Serialize, ToSchema, Clone)]
pub struct UnreachedAlert {
    pub alert_id: String,
    /// no_policy, nobody_on_call, provider_down, skipped, exhausted, failed_for_good or
    /// not_taken_in.
    pub reason: String,
    /// What is wrong, in a plain sentence.
    pub message: String,
    /// What happens next (who is called when, whether the fallback contact is told).
    pub next: String,
    /// What fixes it.
    pub fix: String,
}

impl UnreachedAlert {
    fn new(alert_id: &str, u: &crate::domain::reach::Unreached) -> UnreachedAlert {
        UnreachedAlert {
            alert_id: alert_id.into(),
            reason: u.reason.as_str().into(),
            message: u.message.clone(),
            next: u.next.clone(),
            fix: u.fix.clone(),
        }
    }
}

/// Whether a provider can place calls.
#[derive(Serialize, ToSchema)]
pub struct ProviderStatus {
    pub name: String,
    /// ok, refused (credentials or key: a person must fix them) or failing (errors or
    /// timeouts in a row).
    pub status: String,
    /// Why not, in the provider's words.
    pub detail: Option<String>,
}

/// Whether every active critical alert reaches someone, and what alertcall runs on.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// ok, or degraded when an alert reaches nobody, a provider cannot place calls or the
    /// database does not answer or refuses writes.
    pub status: String,
    pub unreached: Vec<UnreachedAlert>,
    pub providers: Vec<ProviderStatus>,
    /// ok or unavailable.
    pub database: String,
    /// When this instance's dispatcher last went round its loop.
    pub last_dispatch_loop: Option<DateTime<Utc>>,
    pub last_dispatch_loop_age_seconds: Option<f64>,
    /// ok, or failing while the database refuses writes (a full disk, an I/O error).
    pub database_writes: String,
    /// What keeps forged webhooks from acting: signed, per-call-token or not-mounted.
    pub webhook_protection: String,
    /// Whether a reply of 1 to a text acknowledges: on, off (until the SMS Inbound URL with
    /// its token is in use) or unknown.
    pub sms_reply_ack: String,
}

/// One entry of an alert's timeline.
#[derive(Serialize, ToSchema)]
pub struct TimelineEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// e.g. alert.triggered, call.placed, call.ringing, input, sms.sent, alert.acknowledged.
    pub kind: String,
    /// engine, vonage, simulator, cli, dashboard, api.
    pub source: String,
    pub call_id: Option<String>,
    /// What happened, as a sentence in the hospital's time with people's names:
    /// "10:26:24 Dev Patel declined (pressed 3)".
    pub text: String,
    /// What happened, as recorded (for IT); nurses' numbers are masked for viewers (admins
    /// see them whole).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct AlertDetail {
    pub alert: AlertSummary,
    pub calls: Vec<CallSummary>,
    pub timeline: Vec<TimelineEntry>,
    /// Triggered to acknowledged.
    pub time_to_acknowledge_seconds: Option<f64>,
}

#[derive(Deserialize, ToSchema)]
pub struct RaiseAlert {
    /// Default `critical` (the severity alertcall pages for).
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub severity: Option<String>,
    #[schema(min_length = 1, max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub message: String,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub title: Option<String>,
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub alert_type: Option<String>,
    /// A `rooms.room_id` or `rooms.room_name` that exists (else 400).
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub room: Option<String>,
    /// A `patients.patient_id`.
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub patient_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Raised {
    pub id: String,
}

/// Which alerts to list.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Acknowledged,
    Resolved,
    All,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// active (default), acknowledged, resolved or all.
    #[param(inline)]
    status: Option<StatusFilter>,
    /// At most this many (default 200; values outside 1..5000 are clamped).
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallsQuery {
    /// RFC 3339; default 7 days before `to`.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(format = DateTime)]
    to: Option<String>,
    /// The policy (unit) of the call's alert.
    #[param(pattern = r"^[^\u0000]*$")]
    unit: Option<String>,
    /// Staff id.
    #[param(pattern = r"^[^\u0000]*$")]
    nurse: Option<String>,
    /// A call status, e.g. answered, unanswered, busy.
    #[param(pattern = r"^[^\u0000]*$")]
    outcome: Option<String>,
    /// Only this alert's calls.
    #[param(pattern = r"^[^\u0000]*$")]
    alert: Option<String>,
    /// At most this many (default 200; values outside 1..5000 are clamped).
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// RFC 3339; default 24 hours before `to`.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(format = DateTime)]
    to: Option<String>,
}

/// Query parameters; a malformed query is answered like every other error (JSON, 400).
pub struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| HttpError::BadRequest(e.body_text()))
    }
}

/// A JSON body; a missing content type or malformed JSON is a 400 with the reason.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(body)| ApiJson(body))
            .map_err(|e| HttpError::BadRequest(e.body_text()))
    }
}

const MAX_LIMIT: i64 = 5000;
const MAX_TEXT: usize = 2000;

/// Text from a request: bounded, and without NUL (which no database column takes).
pub(super) fn text(field: &str, value: &str) -> Result<String, HttpError> {
    if value.chars().count() > MAX_TEXT || value.contains('\0') {
        return Err(HttpError::BadRequest(format!(
            "{field} must be at most {MAX_TEXT} characters without NUL"
        )));
    }
    Ok(value.to_string())
}

fn opt_text(field: &str, value: &Option<String>) -> Result<Option<String>, HttpError> {
    given(value).map(|v| text(field, v)).transpose()
}

/// A query value; an empty one (as a form sends) counts as not given.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn instant(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, HttpError> {
    value
        .as_deref()
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    HttpError::BadRequest(format!(
                        "{field}={v:?} is not an RFC 3339 instant such as 2026-03-12T19:00:00Z"
                    ))
                })
        })
        .transpose()
}

fn range(
    from: &Option<String>,
    to: &Option<String>,
    default_span: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), HttpError> {
    let to = instant("to", to)?.unwrap_or(now);
    // A `from` after `to` is an empty range: it matches nothing.
    let from = instant("from", from)?.unwrap_or(to - default_span);
    Ok((from, to))
}

fn limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(200).clamp(1, MAX_LIMIT)
}

impl AppState {
    fn call_summary(&self, call: CallRecord) -> CallSummary {
        let directory = self.engine.directory();
        let person_name = call
            .person
            .as_ref()
            .and_then(|p| directory.staff.get(p))
            .map(|p| p.name.clone());
        CallSummary {
            id: call.id.to_string(),
            to: Phone::parse(&call.to_number)
                .map(|p| p.masked().to_string())
                .unwrap_or_else(|_| "(invalid number)".into()),
            status: call.status.as_str().into(),
            outcome: call.outcome().as_str().into(),
            outcome_label: call.outcome().label().into(),
            alert_id: call.alert_id,
            person: call.person,
            person_name,
            provider: call.provider,
            provider_call_id: call.provider_call_id,
            step: call.step,
            round: call.round,
            created_at: call.created_at,
            answered_at: call.answered_at,
            ended_at: call.ended_at,
            error: call.error,
        }
    }

    async fn alert_summary(&self, view: AlertView) -> Result<AlertSummary, HttpError> {
        let calling = self
            .engine
            .store
            .call_history(&CallFilter {
                alert_id: Some(view.alert.id.clone()),
                live: true,
                limit: MAX_LIMIT,
                ..CallFilter::default()
            })
            .await?;
        let unreached = self.unreached(std::slice::from_ref(&view)).await?;
        Ok(self.summary_with(view, calling, &unreached))
    }

    /// Why nobody is being reached, for those of `views` that reach nobody.
    async fn unreached(
        &self,
        views: &[AlertView],
    ) -> Result<HashMap<String, crate::domain::reach::Unreached>, HttpError> {
        Ok(self.engine.assess(views).await?)
    }

    fn summary_with(
        &self,
        view: AlertView,
        calling: Vec<CallRecord>,
        unreached: &HashMap<String, crate::domain::reach::Unreached>,
    ) -> AlertSummary {
        let directory = self.engine.directory();
        let show_patient = directory.show_patient_name != Some(false);
        // A page records its policy with its first call; until then, the policy the
        // dispatcher is choosing for it by the same rule.
        let unit = view
            .page
            .as_ref()
            .and_then(|p| p.policy.clone())
            .or_else(|| {
                crate::domain::escalation::choose(&directory.policies, &view.alert)
                    .map(|p| p.name.clone())
            });
        let a = view.alert;
        let unreached = unreached.get(&a.id).map(|u| UnreachedAlert::new(&a.id, u));
        let live_status = board::live_status(a.status.as_str(), view.page.as_ref(), &calling);
        let skipped = view
            .page
            .as_ref()
            .is_some_and(|p| p.state == crate::store::PageState::Stale)
            .then(|| crate::domain::alert::skipped_reason(self.engine.config.max_alert_age));
        AlertSummary {
            age_seconds: (self.engine.now() - a.triggered_at).as_seconds_f64(),
            status: a.status.as_str().into(),
            id: a.id,
            severity: a.severity,
            alert_type: a.alert_type,
            title: a.title,
            message: a.message,
            room: a.room_name.or(a.room_id),
            patient: if show_patient {
                a.patient_name.or(a.patient_id)
            } else {
                None
            },
            triggered_at: a.triggered_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            call_status: view.call_status,
            live_status,
            skipped,
            escalation: view.page.map(|p| Escalation {
                state: p.state.as_str().into(),
                step: p.step,
                round: p.round,
                unit,
                due_at: p.due_at,
            }),
            calling: calling.into_iter().map(|c| self.call_summary(c)).collect(),
            unreached,
            source: view.source.map(|s| AlarmSource {
                application: s.application,
                device: s.device,
            }),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/me", tag = "access",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(State(state): State<AppState>, Viewer(who): Viewer) -> Json<Me> {
    Json(Me {
        name: who.name,
        role: who.role.as_str().into(),
        csrf_token: who.csrf,
        simulator: state.sim.is_some(),
        hospital_name: state.engine.messages().hospital_name,
    })
}

#[utoipa::path(get, path = "/api/v1/health", tag = "health",
    description = "Whether every active critical alert reaches someone: each one that does \
        not, with the reason, what happens next and the fix; the providers; the dispatcher.",
    responses((status = 200, body = Health), (status = 401, body = ErrorBody)))]
pub async fn health(State(state): State<AppState>, Viewer(_): Viewer) -> Json<Health> {
    let engine = &state.engine;
    let (unreached, database) = match engine.unreached().await {
        Ok(list) => (list, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "health: cannot read the active alerts");
            (Vec::new(), "unavailable")
        }
    };
    let health = engine.provider_health();
    let providers_ok = health.iter().all(|(_, h)| h.can_call());
    let providers: Vec<ProviderStatus> = health
        .into_iter()
        .map(|(name, h)| ProviderStatus {
            name: name.into(),
            status: h.as_str().into(),
            detail: h.detail().map(str::to_string),
        })
        .collect();
    let writes_failing = engine.writes_failing();
    let ok = unreached.is_empty() && providers_ok && database == "ok" && !writes_failing;
    let last = engine.last_dispatch_loop();
    Json(Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        unreached: unreached
            .iter()
            .map(|r| UnreachedAlert::new(&r.alert.id, &r.unreached))
            .collect(),
        providers,
        database: database.into(),
        last_dispatch_loop: last,
        last_dispatch_loop_age_seconds: last.map(|t| (engine.now() - t).as_seconds_f64().max(0.0)),
        database_writes: if writes_failing { "failing" } else { "ok" }.into(),
        webhook_protection: Protection::of(&engine.config).as_str().into(),
        sms_reply_ack: super::health::sms_reply_ack(&state).await.into(),
    })
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    description = "Alerts, most urgent first: by severity, exhausted escalations first, then oldest first.",
    responses((status = 200, body = [AlertSummary]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    Viewer(who): Viewer,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<Json<Vec<AlertSummary>>, HttpError> {
    let status = match q.status.unwrap_or(StatusFilter::Active) {
        StatusFilter::Active => Some("active"),
        StatusFilter::Acknowledged => Some("acknowledged"),
        StatusFilter::Resolved => Some("resolved"),
        StatusFilter::All => None,
    };
    let views = state
        .engine
        .store
        .alert_views(&AlertFilter {
            status: status.map(str::to_string),
            limit: limit(q.limit),
            ..AlertFilter::default()
        })
        .await?;
    // Every call still ringing or in progress, in one query, rather than one per alert.
    let mut live: HashMap<String, Vec<CallRecord>> = HashMap::new();
    for call in state
        .engine
        .store
        .call_history(&CallFilter {
            live: true,
            limit: MAX_LIMIT,
            ..CallFilter::default()
        })
        .await?
    {
        live.entry(call.alert_id.clone()).or_default().push(call);
    }
    let unreached = state.unreached(&views).await?;
    let mut out: Vec<AlertSummary> = views
        .into_iter()
        .map(|view| {
            let calling = live.remove(&view.alert.id).unwrap_or_default();
            state.summary_with(view, calling, &unreached).shown_to(&who)
        })
        .collect();
    out.sort_by(|a, b| {
        board::order(&a.severity, &a.live_status, a.triggered_at).cmp(&board::order(
            &b.severity,
            &b.live_status,
            b.triggered_at,
        ))
    });
    Ok(Json(out))
}

/// An alert id from a path: one that cannot exist is simply not found.
fn alert_id(id: &str) -> Result<String, HttpError> {
    text("id", id).map_err(|_| HttpError::NotFound(format!("no alert {id:?}")))
}

/// The alert acted on, and who acts: `dashboard:<name>` or `api:<token name>`.
fn acting(
    who: &super::auth::Principal,
    id: &str,
) -> Result<(String, Acknowledger, &'static str), HttpError> {
    let (via, name) = who.actor();
    Ok((alert_id(id)?, Acknowledger::named(via, name), via))
}

async fn view_of(state: &AppState, id: &str) -> Result<AlertView, HttpError> {
    let id = alert_id(id)?;
    state
        .engine
        .store
        .alert_views(&AlertFilter {
            id: Some(id.clone()),
            limit: 1,
            ..AlertFilter::default()
        })
        .await?
        .pop()
        .ok_or_else(|| HttpError::NotFound(format!("no alert {id}")))
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    description = "One alert with every call and its timeline: each call attempt, text, webhook event and action, with exact times.",
    responses((status = 200, body = AlertDetail), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn alert_detail(
    State(state): State<AppState>,
    Viewer(who): Viewer,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, HttpError> {
    let view = view_of(&state, &id).await?;
    let alert_id = view.alert.id.clone();
    let triggered = view.alert.triggered_at;
    let calls = state.engine.store.list_calls(Some(&alert_id), 500).await?;
    let events = state.engine.store.list_events(&alert_id).await?;
    let calling = calls
        .iter()
        .filter(|c| !c.status.is_terminal())
        .cloned()
        .collect();
    let unreached = state.unreached(std::slice::from_ref(&view)).await?;
    let alert = state.summary_with(view, calling, &unreached).shown_to(&who);
    let directory = state.engine.directory();
    let cx = directory.timeline(&calls, sees_numbers(&who));
    let timeline = shown_to(&who, timeline_of(triggered, &alert.severity, events, &cx));
    let mut calls: Vec<CallSummary> = calls.into_iter().map(|c| state.call_summary(c)).collect();
    calls.reverse();
    Ok(Json(AlertDetail {
        time_to_acknowledge_seconds: alert
            .acknowledged_at
            .map(|at| (at - triggered).as_seconds_f64()),
        alert,
        calls,
        timeline,
    }))
}

/// The alert's triggering, then every audit entry, in time order (entries recorded in the
/// same instant keep the order they were written), each with its sentence.
pub fn timeline_of(
    triggered: DateTime<Utc>,
    severity: &str,
    events: Vec<StoredEvent>,
    cx: &crate::domain::timeline::Context,
) -> Vec<TimelineEntry> {
    let triggering = StoredEvent {
        id: 0,
        alert_id: None,
        call_id: None,
        source: "hospital".into(),
        kind: AuditKind::AlertTriggered.to_string(),
        detail: serde_json::json!({"severity": severity}),
        created_at: triggered,
    };
    let mut timeline: Vec<TimelineEntry> = std::iter::once(triggering)
        .chain(events)
        .map(|e| TimelineEntry {
            text: crate::domain::timeline::sentence(
                &crate::domain::timeline::Entry {
                    at: e.created_at,
                    kind: &e.kind,
                    source: &e.source,
                    call_id: e.call_id.as_deref(),
                    detail: &e.detail,
                },
                cx,
            ),
            id: e.id,
            at: e.created_at,
            kind: e.kind,
            source: e.source,
            call_id: e.call_id,
            detail: e.detail,
        })
        .collect();
    timeline.sort_by_key(|e| (e.at, e.id));
    timeline
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}/timeline", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    description = "The alert's timeline alone: its triggering, then every call attempt, text, webhook event, menu choice and action, in time order.",
    responses((status = 200, body = [TimelineEntry]), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn timeline(
    State(state): State<AppState>,
    Viewer(who): Viewer,
    Path(id): Path<String>,
) -> Result<Json<Vec<TimelineEntry>>, HttpError> {
    let view = view_of(&state, &id).await?;
    let events = state.engine.store.list_events(&view.alert.id).await?;
    let calls = state
        .engine
        .store
        .list_calls(Some(&view.alert.id), 500)
        .await?;
    let directory = state.engine.directory();
    let cx = directory.timeline(&calls, sees_numbers(&who));
    Ok(Json(shown_to(
        &who,
        timeline_of(view.alert.triggered_at, &view.alert.severity, events, &cx),
    )))
}

/// Whether `who` sees nurses' numbers whole in `acknowledged_by` and the timeline: admins
/// (who correct numbers and place test calls) do; viewers see them masked. Decided here only.
fn sees_numbers(who: &Principal) -> bool {
    who.role >= Role::Admin
}

/// `text` with its phone number masked, if it is one: the whole text (`+13854019951`, as
/// the seed writes `acknowledged_by`) or what follows a `via:` prefix (`sms:+13854019951`).
fn mask_number(text: &str) -> Option<String> {
    let is_number = |s: &str| {
        let s = s.trim();
        let digits = s.chars().filter(char::is_ascii_digit).count();
        (7..=15).contains(&digits)
            && s.strip_prefix('+')
                .unwrap_or(s)
                .chars()
                .all(|c| c.is_ascii_digit() || " -.()".contains(c))
    };
    if is_number(text) {
        return Some(crate::domain::phone::mask(text.trim()));
    }
    let (via, rest) = text.split_once(':')?;
    is_number(rest).then(|| format!("{via}:{}", crate::domain::phone::mask(rest.trim())))
}

/// Every phone number among `value`'s strings masked.
pub fn mask_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if let Some(masked) = mask_number(text) {
                *text = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(mask_numbers),
        _ => {}
    }
}

impl AlertSummary {
    /// As `who` may see it (`sees_numbers`).
    fn shown_to(mut self, who: &Principal) -> AlertSummary {
        if !sees_numbers(who)
            && let Some(masked) = self.acknowledged_by.as_deref().and_then(mask_number)
        {
            self.acknowledged_by = Some(masked);
        }
        self
    }
}

/// A timeline as `who` may see it (`sees_numbers`).
fn shown_to(who: &Principal, mut timeline: Vec<TimelineEntry>) -> Vec<TimelineEntry> {
    if !sees_numbers(who) {
        timeline
            .iter_mut()
            .for_each(|e| mask_numbers(&mut e.detail));
    }
    timeline
}

#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts", request_body = RaiseAlert,
    description = "Inserts an alert the way the hospital app would; a critical one is paged at once.",
    responses((status = 201, body = Raised), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "The room named does not exist")))]
pub async fn raise_alert(
    State(state): State<AppState>,
    Admin(who): Admin,
    ApiJson(body): ApiJson<RaiseAlert>,
) -> Result<(StatusCode, Json<Raised>), HttpError> {
    let message = text("message", &body.message)?;
    if message.is_empty() {
        return Err(HttpError::BadRequest("message must not be empty".into()));
    }
    let alert = NewAlert {
        severity: opt_text("severity", &body.severity)?
            .unwrap_or_else(|| crate::domain::alert::CRITICAL.into()),
        patient_id: opt_text("patient_id", &body.patient_id)?,
        room: opt_text("room", &body.room)?,
        alert_type: opt_text("alert_type", &body.alert_type)?,
        title: opt_text("title", &body.title)?,
        message: Some(message),
    };
    let id = state
        .engine
        .store
        .insert_alert(&alert)
        .await
        .map_err(|e| match e {
            // The room named does not exist.
            crate::store::StoreError::Invalid(msg) => HttpError::NotFound(msg),
            other => other.into(),
        })?;
    let (via, name) = who.actor();
    tracing::info!(alert_id = %id, via, user = name, "alert raised");
    state.engine.wake();
    Ok((StatusCode::CREATED, Json(Raised { id })))
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    description = "Acknowledges an active alert as the signed-in person or token (`dashboard:<name>` / `api:<name>`); escalation stops and ringing calls are hung up.",
    responses((status = 200, body = AlertSummary), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<Json<AlertSummary>, HttpError> {
    let (id, by, via) = acting(&who, &id)?;
    match state.engine.acknowledge_as(&id, &by, via).await? {
        AckOutcome::Acknowledged | AckOutcome::AlreadyAcknowledgedHere => {}
        AckOutcome::AlreadyHandled => {
            return Err(HttpError::Conflict(format!(
                "alert {id} is not active (already acknowledged or resolved)"
            )));
        }
        AckOutcome::NoSuchAlert => return Err(HttpError::NotFound(format!("no alert {id}"))),
    }
    Ok(Json(
        state.alert_summary(view_of(&state, &id).await?).await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id")),
    description = "Marks an active or acknowledged alert resolved; recorded in its timeline with who did it.",
    responses((status = 200, body = AlertSummary), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn resolve(
    State(state): State<AppState>,
    Admin(who): Admin,
    Path(id): Path<String>,
) -> Result<Json<AlertSummary>, HttpError> {
    let (id, by, via) = acting(&who, &id)?;
    if !state.engine.resolve_as(&id, &by, via).await? {
        // Tell "no such alert" from "already closed".
        view_of(&state, &id).await?;
        return Err(HttpError::Conflict(format!(
            "alert {id} is already resolved"
        )));
    }
    let view = view_of(&state, &id).await?;
    Ok(Json(state.alert_summary(view).await?))
}

/// The most skipped alerts one bulk resolve reads (a cutover day's backlog).
const SKIPPED_ROWS: i64 = 200_000;

/// The alerts a bulk resolve closed.
#[derive(Serialize, ToSchema)]
pub struct Resolved {
    /// How many were resolved.
    pub resolved: usize,
    pub ids: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/alerts/resolve-skipped", tag = "alerts",
    description = "Resolves every active alert that alertcall skipped as older than ALERTCALL_MAX_ALERT_AGE when it first saw it (cutover day), each as `/api/v1/alerts/{id}/resolve` does.",
    responses((status = 200, body = Resolved), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn resolve_skipped(
    State(state): State<AppState>,
    Admin(who): Admin,
) -> Result<Json<Resolved>, HttpError> {
    let (via, name) = who.actor();
    let by = Acknowledger::named(via, name);
    let skipped = state
        .engine
        .store
        .alert_views(&AlertFilter {
            status: Some("active".into()),
            limit: SKIPPED_ROWS,
            ..AlertFilter::default()
        })
        .await?
        .into_iter()
        .filter(|v| {
            v.page
                .as_ref()
                .is_some_and(|p| p.state == crate::store::PageState::Stale)
        });
    let mut ids = Vec::new();
    for view in skipped {
        if state.engine.resolve_as(&view.alert.id, &by, via).await? {
            ids.push(view.alert.id);
        }
    }
    Ok(Json(Resolved {
        resolved: ids.len(),
        ids,
    }))
}

#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(CallsQuery),
    description = "Call history, newest first, filtered by time range, unit, nurse and outcome.",
    responses((status = 200, body = [CallSummary]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn calls(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ApiQuery(q): ApiQuery<CallsQuery>,
) -> Result<Json<Vec<CallSummary>>, HttpError> {
    let (since, until) = range(
        &q.from,
        &q.to,
        chrono::Duration::days(7),
        state.engine.now(),
    )?;
    let calls = state
        .engine
        .store
        .call_history(&CallFilter {
            alert_id: opt_text("alert", &q.alert)?,
            since: Some(since),
            until: Some(until),
            person: opt_text("nurse", &q.nurse)?,
            status: opt_text("outcome", &q.outcome)?,
            unit: opt_text("unit", &q.unit)?,
            live: false,
            limit: limit(q.limit),
        })
        .await?;
    Ok(Json(
        calls.into_iter().map(|c| state.call_summary(c)).collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/analytics", tag = "analytics", params(RangeQuery),
    description = "Response-time analytics over alerts triggered and calls made in the range. `monitoring` is the seed's response-rate query and `per_hour` its alerts-per-hour query over the same rows.",
    responses((status = 200, body = Analytics), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
pub async fn analytics(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Analytics>, HttpError> {
    let (from, to) = range(
        &q.from,
        &q.to,
        chrono::Duration::hours(24),
        state.engine.now(),
    )?;
    // Aggregated by the database: any range, a year or all time, in the same memory.
    let aggregated = state.engine.store.aggregates(from, to).await?;
    let directory = state.engine.directory();
    Ok(Json(analytics::compute(from, to, &aggregated, |p| {
        directory.staff.get(p).map(|s| s.name.clone())
    })))
}

/// Who is on call per schedule, with the next handover.
#[derive(Serialize, ToSchema)]
pub struct OnCallEntry {
    pub schedule: String,
    pub person: String,
    pub name: String,
    pub shift: String,
    pub from: String,
    pub until: String,
    pub next_handover: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OnCallQuery {
    /// Only this schedule (404 if there is none by that name).
    #[param(pattern = r"^[^\u0000]*$")]
    schedule: Option<String>,
    /// RFC 3339 instant; default now.
    #[param(format = DateTime)]
    at: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/oncall", tag = "on call", params(OnCallQuery),
    description = "Who is on call at an instant (default now), per schedule, and the next handover; the same answer as `alertcall oncall`.",
    responses((status = 200, body = [OnCallEntry]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn oncall(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ApiQuery(query): ApiQuery<OnCallQuery>,
) -> Result<Json<Vec<OnCallEntry>>, HttpError> {
    let at = match &query.at {
        None => jiff::Timestamp::now(),
        Some(text) => text.parse().map_err(|_| {
            HttpError::BadRequest(format!(
                "at={text:?} is not an RFC 3339 instant such as 2026-03-12T19:00:00Z"
            ))
        })?,
    };
    let directory = state.engine.directory();
    if let Some(name) = &query.schedule
        && directory.schedule(name).is_none()
    {
        return Err(HttpError::NotFound(format!("no schedule {name:?}")));
    }
    let mut out = Vec::new();
    for schedule in directory
        .schedules
        .iter()
        .filter(|s| query.schedule.as_ref().is_none_or(|n| &s.name == n))
    {
        let next = schedule.next_handover(at).map(|t| t.to_string());
        for c in schedule.on_call(at) {
            out.push(OnCallEntry {
                schedule: schedule.name.clone(),
                name: directory
                    .staff
                    .get(&c.person)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                person: c.person,
                shift: c.shift,
                from: c.from.to_string(),
                until: c.until.to_string(),
                next_handover: next.clone(),
            });
        }
    }
    Ok(Json(out))
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                super::auth::SESSION_COOKIE,
                "From signing in at /login; POSTs also need X-CSRF-Token (GET /api/v1/me)",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "alertcall",
        description = "Alerts, calls, timelines, on-call and analytics of alertcall. \
            Authenticate with `Authorization: Bearer <API token>` or the session cookie \
            from /login. Live changes: GET /api/v1/events (server-sent events, `change` \
            events carry the newest audit id)."
    ),
    paths(me, health, list_alerts, alert_detail, timeline, raise_alert, acknowledge, resolve, resolve_skipped, calls, analytics, oncall,
        super::test_calls::start, super::test_calls::show),
    modifiers(&Security),
    security(("token" = []), ("session" = []))
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers above.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

#[cfg(test)]
mod masking_tests {
    use super::*;

    #[test]
    fn numbers_are_masked_wherever_a_viewer_would_see_them() {
        assert_eq!(mask_number("+13854019951").as_deref(), Some("+13*******51"));
        assert_eq!(
            mask_number("phone:+13854019951").as_deref(),
            Some("phone:+13*******51")
        );
        assert_eq!(mask_number("dashboard:admin"), None);
        assert_eq!(mask_number("2026-11-24T20:15:20Z"), None);
        let mut detail = serde_json::json!({
            "by": "sms:+13854019951", "calls": [{"to": "13854019951"}], "digits": "1", "n": 5
        });
        mask_numbers(&mut detail);
        assert_eq!(
            detail,
            serde_json::json!({
                "by": "sms:+13*******51", "calls": [{"to": "138******51"}], "digits": "1", "n": 5
            })
        );
    }
}
