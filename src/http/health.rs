use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{AppState, HttpError};

/// Alive: answers as soon as the server is up (scripts and supervisors wait on this).
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the database answers.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let engine = &state.engine;
    let database = tokio::time::timeout(std::time::Duration::from_secs(2), engine.store.ping())
        .await
        .map_err(|_| "timed out".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let body = json!({
        "database": match &database { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
        "provider": engine.provider.name(),
    });
    let status = if database.is_ok() {
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
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.engine.metrics.encode(),
    ))
}
