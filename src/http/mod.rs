//! The HTTP surface: provider webhooks, the simulator's virtual phones, health.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::ProviderConfig;
use crate::engine::Engine;
use crate::store::StoreError;
use crate::telephony::simulator::{SimError, Simulator};
use crate::telephony::webhook_token::WebhookKey;

pub mod api;
pub mod auth;
mod dashboard;
mod health;
mod sim;
mod test_calls;
pub(crate) mod webhooks;

/// Webhook bodies are small; anything bigger is refused before it is read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub sim: Option<Arc<Simulator>>,
    pub lockout: Arc<auth::Lockout>,
    /// Password checks that may run at once (see `auth::login`).
    pub password_checks: Arc<crate::auth::PasswordChecks>,
    /// Makes and checks the tokens in webhook URLs (`webhooks::verify`).
    pub webhook_key: WebhookKey,
    /// Whether this instance has seen the SMS Inbound URL with its token used (cached
    /// from the database: `webhooks::sms_reply_ack`).
    pub sms_url_used: Arc<std::sync::atomic::AtomicBool>,
}

impl AppState {
    pub fn new(
        engine: Arc<Engine>,
        sim: Option<Arc<Simulator>>,
        webhook_key: WebhookKey,
    ) -> AppState {
        AppState {
            engine,
            sim,
            webhook_key,
            sms_url_used: Arc::default(),
            lockout: Arc::default(),
            password_checks: crate::auth::PasswordChecks::new(auth::PASSWORD_CHECKS),
        }
    }
}

pub fn router(state: AppState) -> Router {
    // Each provider mounts its own webhooks. The simulator is driven through its own
    // routes (`/api/sim/...`, with their credentials): nothing may post provider webhooks
    // to it.
    let webhooks = match &state.engine.config.provider {
        ProviderConfig::Simulator => None,
        ProviderConfig::Vonage(_) => Some(
            Router::new()
                .route("/api/alerts/call-response", post(webhooks::input))
                .route("/api/alerts/call-event", post(webhooks::event))
                .route("/api/sms/inbound", post(webhooks::inbound_sms))
                .route("/api/sms/status", post(webhooks::sms_status))
                .layer(axum::middleware::from_fn(webhooks::json_only)),
        ),
        ProviderConfig::Twilio(_) => Some(crate::telephony::twilio::webhooks::routes()),
    };
    let mut router = Router::new();
    if let Some(webhooks) = webhooks {
        router = router.merge(webhooks.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_webhooks,
        )));
    }
    router = router
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/v1/openapi.json", get(api::openapi_json))
        .route("/api/v1/me", get(api::me))
        .route("/api/v1/health", get(api::health))
        .route(
            "/api/v1/alerts",
            get(api::list_alerts).post(api::raise_alert),
        )
        .route("/api/v1/alerts/{id}", get(api::alert_detail))
        .route("/api/v1/alerts/{id}/timeline", get(api::timeline))
        .route("/api/v1/alerts/{id}/acknowledge", post(api::acknowledge))
        .route("/api/v1/alerts/{id}/resolve", post(api::resolve))
        .route("/api/v1/alerts/resolve-skipped", post(api::resolve_skipped))
        .route("/api/v1/calls", get(api::calls))
        .route("/api/v1/analytics", get(api::analytics))
        .route("/api/v1/oncall", get(api::oncall))
        .route("/api/v1/test-calls", post(test_calls::start))
        .route("/api/v1/test-calls/{id}", get(test_calls::show))
        .route("/api/v1/events", get(dashboard::events));
    if state.sim.is_some() {
        router = router
            .route("/api/sim/calls", get(sim::list))
            .route("/api/sim/calls/{id}", get(sim::show))
            .route("/api/sim/calls/{id}/answer", post(sim::answer))
            .route("/api/sim/calls/{id}/press", post(sim::press))
            .route("/api/sim/calls/{id}/silence", post(sim::silence))
            .route("/api/sim/calls/{id}/say", post(sim::say))
            .route("/api/sim/calls/{id}/hangup", post(sim::hang_up))
            .route("/api/sim/sms", get(sim::messages))
            .route("/api/sim/sms/reply", post(sim::reply));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_database_errors,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Alerts, patients and the CSRF token must not stay in a browser's or proxy's cache;
        // a response that says otherwise keeps its own.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

/// `alertcall_webhooks_total{kind, result}`: every provider webhook, by what became of it.
async fn count_webhooks(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let kind = match request.uri().path() {
        "/api/alerts/call-response" => "call_input",
        "/api/alerts/call-event" => "call_event",
        "/api/sms/inbound" => "sms_inbound",
        path => crate::telephony::twilio::webhooks::kind(path).unwrap_or("sms_status"),
    };
    let response = next.run(request).await;
    let result = match response.status() {
        s if s.is_success() => "ok",
        StatusCode::UNAUTHORIZED => "rejected_signature",
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "wrong_content_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ => "error",
    };
    state.engine.metrics.webhook(kind, result);
    response
}

/// Marks a response that failed on the database (see `HttpError`), with the error, for the
/// metrics and `Engine::store_failed`.
#[derive(Clone)]
struct DatabaseFailed(Arc<StoreError>);

async fn count_database_errors(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(DatabaseFailed(error)) = response.extensions_mut().remove() {
        state.engine.metrics.database_error();
        state.engine.store_failed(&error);
    }
    response
}

/// Every error an HTTP handler answers with. Internal errors are logged once here and
/// answered with a generic body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Signed in, but the role or the CSRF token does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A webhook in another format than the provider's.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The database is unreachable: the provider should retry (Vonage retries 503).
    #[error("temporarily unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        if e.is_connection() {
            HttpError::Unavailable(e)
        } else {
            HttpError::Internal(e)
        }
    }
}

impl From<SimError> for HttpError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::NoSuchCall(_) => HttpError::NotFound(e.to_string()),
            SimError::BadKeys | SimError::BadSpeech => HttpError::BadRequest(e.to_string()),
            SimError::Ended(_) | SimError::NotAnswered(_) | SimError::NotListening(_) => {
                HttpError::Conflict(e.to_string())
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::Unavailable(e) => {
                tracing::warn!(error = %e, "answering 503: database unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Internal(e) => {
                tracing::error!(error = %e, "answering 500");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, Json(json!({"error": self.to_string()}))).into_response();
        if let HttpError::Unavailable(e) | HttpError::Internal(e) = self {
            response
                .extensions_mut()
                .insert(DatabaseFailed(Arc::new(e)));
        }
        response
    }
}
