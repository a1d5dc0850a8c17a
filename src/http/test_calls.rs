//! Test calls over the API (`alertcall test-call` uses it): admin only, since a test call
//! rings a real phone. The call itself is the engine's (`engine::test_call`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api::{ApiJson, ErrorBody, text};
use super::auth::Admin;
use super::{AppState, HttpError};
use crate::domain::phone;
use crate::domain::test_call::TestCallState;
use crate::engine::test_call::{TargetError, target};
use crate::store::TestCallRecord;

#[derive(Deserialize, ToSchema)]
pub struct NewTestCall {
    /// A staff id from alertcall.toml (`nurse`, NURSE_PHONE_NUMBER, without one), or a
    /// number in E.164 form such as +13854019951.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^[^\u0000]*$",
        example = "nurse"
    )]
    pub to: String,
}

/// A test call and where it stands.
#[derive(Serialize, ToSchema)]
pub struct TestCall {
    pub id: String,
    /// The staff id called, when the call was asked for by person.
    pub person: Option<String>,
    pub person_name: Option<String>,
    /// The number called, masked (`+13*******51`).
    pub to: String,
    pub provider: String,
    pub provider_call_id: Option<String>,
    /// placing, calling, ringing, answered, answered_by_person, then the outcome:
    /// acknowledged (1 was pressed, or yes said), declined (3), no_answer, busy, rejected,
    /// voicemail, hung_up (answered, ended without a 1), cancelled or failed.
    pub state: String,
    /// Whether the call is over (`state` is its outcome).
    pub done: bool,
    /// Whether 1 was pressed (or yes said): the one outcome that passes the test.
    pub passed: bool,
    /// The provider's reason for a failure.
    pub reason: Option<String>,
    /// What happened, in plain words.
    pub message: String,
    /// What to do next.
    pub next: String,
    /// Who asked: `api:<token name>` or `dashboard:<user>`.
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AppState {
    fn test_call_view(&self, call: TestCallRecord) -> TestCall {
        let person_name = call
            .person
            .as_ref()
            .and_then(|p| self.engine.directory().staff.get(p).map(|p| p.name.clone()));
        TestCall {
            id: call.id.to_string(),
            person: call.person,
            person_name,
            to: phone::mask(&call.to_number),
            provider: call.provider,
            provider_call_id: call.provider_call_id,
            state: call.state.as_str().into(),
            done: call.state.is_final(),
            passed: call.state == TestCallState::Acknowledged,
            message: call.state.describe(call.reason.as_deref()),
            next: call.state.next_step().into(),
            reason: call.reason,
            requested_by: call.requested_by,
            created_at: call.created_at,
            updated_at: call.updated_at,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/test-calls", tag = "test calls", request_body = NewTestCall,
    description = "Places a test call through the configured provider, with the real menu and a \
        fixed test announcement (no alert, no patient data): it acknowledges no alert and is in \
        no call history or analytics. Follow it with GET /api/v1/test-calls/{id}.",
    responses((status = 202, body = TestCall), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`to` names no person in alertcall.toml \
            and is not a number a phone network can ring; the error says why"),
        (status = 409, body = ErrorBody, description = "The person has no phone number")))]
pub async fn start(
    State(state): State<AppState>,
    Admin(who): Admin,
    ApiJson(body): ApiJson<NewTestCall>,
) -> Result<(StatusCode, Json<TestCall>), HttpError> {
    let to = text("to", &body.to)?;
    let (person, phone) = target(&state.engine.directory(), &to).map_err(|e| match e {
        TargetError::Unknown(why) => HttpError::NotFound(why),
        TargetError::NoPhone(why) => HttpError::Conflict(why),
    })?;
    let (via, name) = who.actor();
    let call = state
        .engine
        .start_test_call(phone, person, &format!("{via}:{name}"))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(state.test_call_view(call))))
}

#[utoipa::path(get, path = "/api/v1/test-calls/{id}", tag = "test calls",
    params(("id" = String, Path, description = "The test call's id")),
    description = "Where a test call stands, and its outcome once it is over.",
    responses((status = 200, body = TestCall), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> Result<Json<TestCall>, HttpError> {
    let not_found = || HttpError::NotFound(format!("no test call {id:?}"));
    let uuid = uuid::Uuid::parse_str(&id).map_err(|_| not_found())?;
    let call = state
        .engine
        .store
        .test_call(uuid)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(state.test_call_view(call)))
}
