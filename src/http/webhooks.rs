//! Vonage's webhooks: keypad input (the seed's `/api/alerts/call-response`), call events,
//! inbound texts and their delivery receipts.
//!
//! Nothing unverified acts (`Protection`): with `VONAGE_SIGNATURE_SECRET` every webhook must
//! carry Vonage's signature; without it a voice webhook must arrive on the URL alertcall
//! made for its call, and a text on the Inbound URL with its token. Only JSON is taken (what
//! Vonage sends), so a web page cannot post one cross-origin without a preflight.

use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{AppState, HttpError};
use crate::config::ProviderConfig;
use crate::store::{AuditEvent, AuditKind, StoreError};
use crate::telephony::vonage::{self, VonageEvent, WebhookError};
use crate::telephony::webhook_token::{self, Protection};

#[derive(Deserialize)]
pub struct WebhookQuery {
    call: Option<String>,
    token: Option<String>,
}

impl WebhookQuery {
    fn call_id(&self) -> Option<Uuid> {
        self.call.as_deref().and_then(|c| Uuid::parse_str(c).ok())
    }
}

/// Refused webhooks are logged at most this often (a flood would otherwise write a line
/// per request); `alertcall_webhooks_total` counts every one.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// When the last refusal was logged, and how many were refused since without a line.
static REFUSALS: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

pub(crate) fn log_refusal(what: &str, reason: &dyn Display) {
    let now = Instant::now();
    let not_logged = {
        let mut last = REFUSALS.lock().unwrap_or_else(|e| e.into_inner());
        match last.as_mut() {
            Some((at, skipped)) if now.duration_since(*at) < REFUSAL_LOG_EVERY => {
                *skipped += 1;
                return;
            }
            _ => {}
        }
        let skipped = last.map_or(0, |(_, n)| n);
        *last = Some((now, 0));
        skipped
    };
    tracing::warn!(
        %reason,
        not_logged_since_last = not_logged,
        "refused a webhook: {what} (logged at most once a minute; alertcall_webhooks_total counts each)"
    );
}

pub(crate) fn unauthorized(reason: impl Into<String>) -> HttpError {
    let reason = reason.into();
    log_refusal("not verified", &reason);
    HttpError::Unauthorized(reason)
}

fn check_signature(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), HttpError> {
    let config = &state.engine.config;
    let Some(secret) = config.signature_secret() else {
        return Err(unauthorized(
            "no VONAGE_SIGNATURE_SECRET to check a signature with",
        ));
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
    .map_err(|e| unauthorized(e.to_string()))
}

/// A voice webhook may act: signed, or on the URL alertcall made for its call. Returns the
/// call the URL names (with a token, the only call it may act on).
fn verify_voice(
    state: &AppState,
    query: &WebhookQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Uuid>, HttpError> {
    if Protection::of(&state.engine.config) == Protection::Signed {
        check_signature(state, headers, body)?;
        return Ok(query.call_id());
    }
    let (Some(call), Some(token)) = (query.call_id(), query.token.as_deref()) else {
        return Err(unauthorized(
            "unsigned and without a call token: with no VONAGE_SIGNATURE_SECRET only the URLs \
             alertcall gives Vonage for each call are accepted",
        ));
    };
    if !state.webhook_key.verifies_call(call, token) {
        return Err(unauthorized("the call token does not match the call"));
    }
    Ok(Some(call))
}

/// A text message webhook may act: signed, or on the URL with the SMS token that `alertcall
/// check` prints. The first one that arrives with the token is remembered (`sms_reply_ack`).
async fn verify_sms(
    state: &AppState,
    query: &WebhookQuery,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), HttpError> {
    if Protection::of(&state.engine.config) == Protection::Signed {
        return check_signature(state, headers, body);
    }
    match query.token.as_deref() {
        Some(token) if state.webhook_key.verifies_sms(token) => {}
        Some(_) => return Err(unauthorized("the SMS token does not match")),
        None => {
            return Err(unauthorized(
                "unsigned and without the SMS token: SMS replies acknowledge only on the \
                 Inbound URL `alertcall check` prints, or with VONAGE_SIGNATURE_SECRET set",
            ));
        }
    }
    if !state.sms_url_used.load(Ordering::Relaxed) {
        let now = state.engine.now().to_rfc3339();
        webhook_token::note_sms_url_used(&state.engine.store, &now).await?;
        state.sms_url_used.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// Whether a nurse's "1" by SMS can acknowledge: Vonage signs the webhooks, or it has
/// posted to the Inbound URL with its token (any instance, recorded in the database).
pub async fn sms_reply_ack(state: &AppState) -> Result<bool, StoreError> {
    if state.sms_url_used.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let on = webhook_token::sms_reply_ack(&state.engine.config, &state.engine.store).await?;
    state.sms_url_used.store(on, Ordering::Relaxed);
    Ok(on)
}

/// Whether the request's `Content-Type` is `media` (parameters aside); the header as sent
/// when not.
pub(crate) fn media_type_is(headers: &HeaderMap, media: &str) -> Result<(), String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let given = content_type.split(';').next().unwrap_or("").trim();
    if given.eq_ignore_ascii_case(media) {
        Ok(())
    } else {
        Err(content_type.to_string())
    }
}

/// Vonage posts JSON; anything else (a browser's cross-origin `text/plain` form) is 415.
pub async fn json_only(request: Request, next: Next) -> Response {
    if let Err(content_type) = media_type_is(request.headers(), "application/json") {
        log_refusal("not JSON", &format_args!("Content-Type {content_type:?}"));
        // Read (and drop) what the client is sending, up to the body limit, so that it gets
        // this answer rather than a connection reset mid-upload.
        let _ = axum::body::to_bytes(request.into_body(), super::MAX_BODY_BYTES).await;
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(serde_json::json!({"error": "webhooks must be sent as Content-Type: application/json"})),
        )
            .into_response();
    }
    next.run(request).await
}

fn bad_request(e: WebhookError) -> HttpError {
    log_refusal("malformed", &e);
    HttpError::BadRequest(e.to_string())
}

fn source(state: &AppState) -> crate::engine::Source {
    crate::engine::Source::Network(state.engine.provider.name())
}

/// Keypad input: answers with the NCCO that continues the call.
pub async fn input(
    State(state): State<AppState>,
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, HttpError> {
    let call = verify_voice(&state, &query, &headers, &body)?;
    let input = vonage::parse_input(&body, call).map_err(bad_request)?;
    let turn = state.engine.handle_input(&input, source(&state)).await?;
    let input_url = match call {
        Some(id) => state
            .webhook_key
            .call_url(&state.engine.config.input_url(), id),
        None => state.engine.config.input_url(),
    };
    let from = match &state.engine.config.provider {
        ProviderConfig::Vonage(v) => v.from_number.digits().to_string(),
        ProviderConfig::Twilio(_) | ProviderConfig::Simulator => String::new(),
    };
    let context = crate::telephony::ReplyContext {
        answer_url: &input_url,
        language: &turn.language,
        speech: state.engine.speech().0,
        caller_id: &from,
    };
    Ok(Json(vonage::ncco(&turn.reply, &context)))
}

/// Call status events: only a fast 2xx is expected.
pub async fn event(
    State(state): State<AppState>,
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let call = verify_voice(&state, &query, &headers, &body)?;
    match vonage::parse_event(&body, call).map_err(bad_request)? {
        VonageEvent::Call(event) => {
            state
                .engine
                .handle_call_event(&event, source(&state))
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
                    call_id: call,
                    source: source(&state).as_str().into(),
                    kind: AuditKind::CallError,
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
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    verify_sms(&state, &query, &headers, &body).await?;
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
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    verify_sms(&state, &query, &headers, &body).await?;
    let (id, status) = vonage::parse_sms_status(&body).map_err(bad_request)?;
    state.engine.handle_sms_status(&id, &status).await?;
    Ok(StatusCode::OK)
}
