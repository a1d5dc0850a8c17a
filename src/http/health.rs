use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{AppState, HttpError};
use crate::telephony::webhook_token::Protection;

/// Alive: answers as soon as the server is up (scripts and supervisors wait on this).
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the database answers within 2 s and stores what is written (`database_writes`:
/// a full disk or an I/O error fail writes while reads still answer; see
/// `Engine::writes_failing`). Whether the provider can place calls is reported
/// too, but does not make the instance unready: a refused key refuses every instance alike,
/// and taking them all out of a load balancer would also cut the dashboard the charge nurses
/// fall back on and the webhooks still arriving. Only "ok" or "unavailable" is answered, to
/// anyone who asks; the cause (a database error names hosts and ports) goes to the log.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let engine = &state.engine;
    let database = match tokio::time::timeout(Duration::from_secs(2), engine.store.ping()).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 2 s".to_string()),
    };
    if let Err(e) = &database {
        tracing::warn!(error = %e, "not ready: the database is unreachable");
    }
    let provider = engine.provider.ready();
    if let Err(e) = &provider {
        tracing::warn!(provider = engine.provider.name(), error = %e, "not ready: the provider cannot place calls");
    }
    let word = |check: &Result<(), String>| if check.is_ok() { "ok" } else { "unavailable" };
    // Which check keeps forged webhooks from acknowledging, and whether a "1" by SMS can
    // acknowledge at all (see `webhooks`).
    let sms_reply_ack = sms_reply_ack(&state).await;
    let writes_failing = engine.writes_failing();
    let body = json!({
        "database": word(&database),
        "database_writes": if writes_failing { "failing" } else { "ok" },
        "provider": engine.provider.name(),
        "provider_status": word(&provider),
        "webhook_protection": Protection::of(&engine.config).as_str(),
        "sms_reply_ack": sms_reply_ack,
        "hl7_intake": if engine.config.hl7.is_some() { "on" } else { "off" },
    });
    let status = if database.is_ok() && !writes_failing {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Prometheus metrics (OpenMetrics text). Open unless `ALERTCALL_PROTECT_METRICS=true`, when
/// it takes a token or a sign-in like the API.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, HttpError> {
    if state.engine.config.protect_metrics
        && super::auth::principal(&state, &headers).await?.is_none()
    {
        return Err(HttpError::Unauthorized(
            "metrics are protected (ALERTCALL_PROTECT_METRICS): send Authorization: Bearer <API token>".into(),
        ));
    }
    let engine = &state.engine;
    if let Some(at) = engine.last_dispatch_loop() {
        let age = (engine.now() - at).as_seconds_f64().max(0.0);
        engine.metrics.dispatch_loop_age(age);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics.encode(),
    ))
}

/// Whether a "1" by SMS can acknowledge: on, off (until the Inbound URL with its token is in
/// use, see `webhooks`) or unknown (the database does not answer).
pub(super) async fn sms_reply_ack(state: &AppState) -> &'static str {
    match super::webhooks::sms_reply_ack(state).await {
        Ok(true) => "on",
        Ok(false) => "off",
        Err(_) => "unknown",
    }
}
