//! `GET /api/v1/oncall?schedule=&at=`: who is on call, the same answer as `alertcall oncall`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

use super::{AppState, HttpError, require_token};

#[derive(Deserialize)]
pub struct OnCallQuery {
    schedule: Option<String>,
    /// RFC 3339 instant; default now.
    at: Option<String>,
}

#[derive(Serialize)]
pub struct OnCallEntry {
    schedule: String,
    person: String,
    name: String,
    shift: String,
    from: String,
    until: String,
    next_handover: Option<String>,
}

pub async fn oncall(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<OnCallQuery>,
) -> Result<Json<Vec<OnCallEntry>>, HttpError> {
    require_token(&state, &headers)?;
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
