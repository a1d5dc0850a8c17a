//! The HTTP surface: provider webhooks, the simulator's virtual phones, health.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::engine::Engine;
use crate::store::StoreError;
use crate::telephony::simulator::{SimError, Simulator};

mod health;
mod oncall;
mod sim;
mod webhooks;

/// Webhook bodies are small; anything bigger is refused before it is read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub sim: Option<Arc<Simulator>>,
}

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/api/alerts/call-response", post(webhooks::input))
        .route("/api/alerts/call-event", post(webhooks::event))
        .route("/api/sms/inbound", post(webhooks::inbound_sms))
        .route("/api/sms/status", post(webhooks::sms_status))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/oncall", get(oncall::oncall));
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
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// With `ALERTCALL_API_TOKEN` set, the API needs `Authorization: Bearer <token>`.
pub(crate) fn require_token(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(), HttpError> {
    let Some(token) = &state.engine.config.api_token else {
        return Ok(());
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compared in constant time: a token is a secret.
    let matches = given.is_some_and(|g| {
        g.len() == token.expose().len()
            && g.bytes()
                .zip(token.expose().bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        Ok(())
    } else {
        Err(HttpError::Unauthorized(
            "this needs Authorization: Bearer <ALERTCALL_API_TOKEN>".into(),
        ))
    }
}

/// Every error an HTTP handler answers with. Internal errors are logged once here and
/// answered with a generic body.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
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
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::Unavailable(e) => {
                tracing::warn!(error = %e, "answering 503: database unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Internal(e) => {
                tracing::error!(error = %e, "answering 500");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}
