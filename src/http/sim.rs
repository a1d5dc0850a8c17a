//! The simulator's virtual phones over HTTP (used by `alertcall sim ...` and tests).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use serde::Deserialize;

use super::{AppState, HttpError};
use crate::engine::Source;
use crate::telephony::simulator::{SimCall, SimSms, Simulator};

/// The simulator's phones. With ALERTCALL_API_TOKEN set they need a credential like the API
/// (the token, or a dashboard session); without, they are open like the phones they stand
/// for, so `alertcall sim ...` works out of the box. They exist only with the simulator.
async fn authorize(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Arc<Simulator>, HttpError> {
    if state.engine.config.api_token.is_some() {
        super::auth::authorize(state, method, headers).await?;
    }
    state
        .sim
        .clone()
        .ok_or_else(|| HttpError::NotFound("the simulator is not the configured provider".into()))
}

pub async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Vec<SimCall>>, HttpError> {
    Ok(Json(authorize(&state, &method, &headers).await?.list()))
}

pub async fn show(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SimCall>, HttpError> {
    Ok(Json(authorize(&state, &method, &headers).await?.get(&id)?))
}

pub async fn answer(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SimCall>, HttpError> {
    Ok(Json(
        authorize(&state, &method, &headers).await?.answer(&id)?,
    ))
}

#[derive(Deserialize)]
pub struct Keys {
    keys: String,
}

pub async fn press(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(keys): Json<Keys>,
) -> Result<Json<SimCall>, HttpError> {
    let sim = authorize(&state, &method, &headers).await?;
    let input = sim.press(&id, &keys.keys)?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(Json(sim.hear(&id, &turn.reply)?))
}

#[derive(Deserialize)]
pub struct Said {
    text: String,
    /// The recogniser's confidence, 0–1 (default 1: heard perfectly).
    confidence: Option<f64>,
}

/// Speaks an answer on an answered simulated call, as the provider's recogniser would
/// report it.
pub async fn say(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(said): Json<Said>,
) -> Result<Json<SimCall>, HttpError> {
    let sim = authorize(&state, &method, &headers).await?;
    let input = sim.say(&id, &said.text, said.confidence.unwrap_or(1.0))?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(Json(sim.hear(&id, &turn.reply)?))
}

pub async fn silence(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SimCall>, HttpError> {
    let sim = authorize(&state, &method, &headers).await?;
    let input = sim.silence(&id)?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(Json(sim.hear(&id, &turn.reply)?))
}

pub async fn hang_up(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<SimCall>, HttpError> {
    Ok(Json(
        authorize(&state, &method, &headers).await?.hang_up(&id)?,
    ))
}

pub async fn messages(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<Vec<SimSms>>, HttpError> {
    Ok(Json(authorize(&state, &method, &headers).await?.messages()))
}

#[derive(Deserialize)]
pub struct Reply {
    from: String,
    text: String,
}

/// A simulated phone texts back, through the same path as an inbound SMS webhook.
pub async fn reply(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Json(reply): Json<Reply>,
) -> Result<Json<serde_json::Value>, HttpError> {
    authorize(&state, &method, &headers).await?;
    let acknowledged = state
        .engine
        .handle_inbound_sms(&reply.from, &reply.text)
        .await?;
    Ok(Json(serde_json::json!({"acknowledged": acknowledged})))
}
