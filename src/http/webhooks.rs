//! Vonage's webhooks: keypad input (the seed's `/api/alerts/call-response`) and call events.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{AppState, HttpError};
use crate::config::ProviderConfig;
use crate::engine::Source;
use crate::store::AuditEvent;
use crate::telephony::vonage::{self, VonageEvent, WebhookError};

#[derive(Deserialize)]
pub struct CallQuery {
    call: Option<String>,
}

impl CallQuery {
    fn call_id(&self) -> Option<Uuid> {
        self.call.as_deref().and_then(|c| Uuid::parse_str(c).ok())
    }
}

fn verify(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), HttpError> {
    let config = &state.engine.config;
    let Some(secret) = config.signature_secret() else {
        return Ok(());
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    vonage::verify_signature(
        auth,
        body,
        secret,
        config.webhook_max_age,
        state.engine.now(),
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "refused a webhook: signature check failed");
        HttpError::Unauthorized(e.to_string())
    })
}

fn bad_request(e: WebhookError) -> HttpError {
    tracing::warn!(reason = %e, "refused a malformed webhook");
    HttpError::BadRequest(e.to_string())
}

/// Keypad input: answers with the NCCO that continues the call.
pub async fn input(
    State(state): State<AppState>,
    Query(query): Query<CallQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    verify(&state, &headers, &body)?;
    let input = vonage::parse_input(&body, query.call_id()).map_err(bad_request)?;
    let turn = state.engine.handle_input(&input, Source::Vonage).await?;
    let input_url = match query.call_id() {
        Some(id) => vonage::with_call(&state.engine.config.input_url(), id),
        None => state.engine.config.input_url(),
    };
    let from = match &state.engine.config.provider {
        ProviderConfig::Vonage(v) => v.from_number.digits().to_string(),
        ProviderConfig::Simulator => String::new(),
    };
    let context = vonage::NccoContext {
        input_url: &input_url,
        language: &turn.language,
        speech: state.engine.speech().0,
        from: &from,
    };
    Ok(Json(vonage::ncco(&turn.reply, &context)))
}

/// Call status events: only a fast 2xx is expected.
pub async fn event(
    State(state): State<AppState>,
    Query(query): Query<CallQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    verify(&state, &headers, &body)?;
    match vonage::parse_event(&body, query.call_id()).map_err(bad_request)? {
        VonageEvent::Call(event) => {
            state
                .engine
                .handle_call_event(&event, Source::Vonage)
                .await?;
        }
        VonageEvent::Error {
            reason,
            conversation_uuid,
        } => {
            tracing::error!(%reason, "Vonage reported an error on a call");
            state
                .engine
                .store
                .record_event(&AuditEvent {
                    alert_id: None,
                    call_id: query.call_id(),
                    source: Source::Vonage.as_str().into(),
                    kind: "call.error".into(),
                    dedupe_key: None,
                    detail: serde_json::json!({"reason": reason, "conversation_uuid": conversation_uuid}),
                    at: state.engine.now(),
                })
                .await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// An inbound text (Messages API): "1" acknowledges.
pub async fn inbound_sms(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    verify(&state, &headers, &body)?;
    let sms = vonage::parse_inbound_sms(&body).map_err(bad_request)?;
    state
        .engine
        .handle_inbound_sms(&sms.from, &sms.text)
        .await?;
    Ok(StatusCode::OK)
}

/// A Messages API status (delivery receipt).
pub async fn sms_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    verify(&state, &headers, &body)?;
    let (id, status) = vonage::parse_sms_status(&body).map_err(bad_request)?;
    state.engine.handle_sms_status(&id, &status).await?;
    Ok(StatusCode::OK)
}
