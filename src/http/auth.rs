//! Signing in and who is asking: API tokens (`Authorization: Bearer`) for machines, a
//! session cookie for people (password checked against an Argon2id hash), and roles.
//!
//! Session cookies are `HttpOnly; SameSite=Strict`; on top of that, every state-changing
//! request made with a cookie must carry the session's CSRF token in `X-CSRF-Token`, and
//! a cross-site `Origin` is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, HttpError};
use crate::auth::{Role, random_token, same_secret, token_hash};
use crate::store::Session;

pub const SESSION_COOKIE: &str = "alertcall_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts: one long shift.
const SESSION_HOURS: i64 = 13;
/// Failed sign-ins allowed per name in `LOCKOUT_WINDOW` before answering 429.
const MAX_FAILURES: u32 = 10;
const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Who is asking, and how they proved it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// The session's CSRF token; `None` for API tokens (they are not sent by browsers on
    /// their own, so they need none).
    pub csrf: Option<String>,
}

impl Principal {
    /// How this principal is written in `acknowledged_by` and the audit trail.
    pub fn actor(&self) -> (&'static str, &str) {
        match self.csrf {
            Some(_) => ("dashboard", &self.name),
            None => ("api", &self.name),
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The principal behind a request's credentials, if any.
pub async fn principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, HttpError> {
    let directory = state.engine.directory();
    let access = &directory.access;
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = auth.strip_prefix("Bearer ").ok_or_else(|| {
            HttpError::Unauthorized("use Authorization: Bearer <API token>".into())
        })?;
        return match access.token(token.trim()) {
            Some(t) => Ok(Some(Principal {
                name: t.name.clone(),
                role: t.role,
                csrf: None,
            })),
            None => Err(HttpError::Unauthorized("unknown API token".into())),
        };
    }
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = state
        .engine
        .store
        .session(&token_hash(token), state.engine.now())
        .await?
    else {
        return Ok(None);
    };
    // A user removed or demoted in alertcall.toml loses access at the next reload.
    Ok(access.user(&session.user).map(|user| Principal {
        name: user.name.clone(),
        role: user
            .role
            .min(Role::parse(&session.role).unwrap_or(Role::Viewer)),
        csrf: Some(session.csrf),
    }))
}

/// Any signed-in person or valid token (read-only access).
pub struct Viewer(pub Principal);

/// A principal with the admin role (raise, acknowledge, resolve).
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Viewer(
            authorize(state, &parts.method, &parts.headers).await?,
        ))
    }
}

/// The principal behind a request, which must have one; a request with a session cookie
/// that changes something must also carry the session's CSRF token and no foreign Origin.
pub async fn authorize(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, HttpError> {
    let principal = principal(state, headers).await?.ok_or_else(|| {
        HttpError::Unauthorized(
            "sign in at /login, or send Authorization: Bearer <API token>".into(),
        )
    })?;
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if let Some(csrf) = &principal.csrf
        && !safe
    {
        check_same_origin(headers)?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !same_secret(given, csrf) {
            return Err(HttpError::Forbidden(
                "missing or wrong X-CSRF-Token: reload the dashboard".into(),
            ));
        }
    }
    Ok(principal)
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Viewer(principal) = Viewer::from_request_parts(parts, state).await?;
        if principal.role < Role::Admin {
            return Err(HttpError::Forbidden(format!(
                "{} has the viewer role; this needs admin",
                principal.name
            )));
        }
        Ok(Admin(principal))
    }
}

/// A browser's cross-site request carries a foreign `Origin`: refused.
fn check_same_origin(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if origin_host == host {
        Ok(())
    } else {
        Err(HttpError::Forbidden(format!(
            "cross-site request from {origin} refused"
        )))
    }
}

/// Counts failed sign-ins per name so that passwords cannot be guessed quickly.
#[derive(Default)]
pub struct Lockout {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Lockout {
    fn locked(&self, name: &str) -> bool {
        let failures = self.failures.lock().expect("lockout lock");
        failures
            .get(name)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < LOCKOUT_WINDOW)
    }

    fn failed(&self, name: &str) {
        let mut failures = self.failures.lock().expect("lockout lock");
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < LOCKOUT_WINDOW);
        }
        let entry = failures
            .entry(name.to_string())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= LOCKOUT_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    fn succeeded(&self, name: &str) {
        self.failures.lock().expect("lockout lock").remove(name);
    }
}

const LOGIN_PAGE: &str = include_str!("../../assets/login.html");

/// The sign-in form; `?error=1` after a failed attempt.
pub async fn login_page(
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Html<String> {
    let message = match q.get("error").map(String::as_str) {
        Some("locked") => "Too many failed attempts for this name; wait 15 minutes.",
        Some(_) => "Wrong name or password.",
        None => "",
    };
    Html(LOGIN_PAGE.replace("{{message}}", message))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
}

fn session_cookie(value: &str, max_age: i64, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Checks the password (off the async threads: Argon2 takes tens of milliseconds and
/// 19 MiB by design) and starts a session.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, HttpError> {
    check_same_origin(&headers)?;
    let name = form.username.trim().to_string();
    if state.lockout.locked(&name) {
        tracing::warn!("sign-in refused: too many failures for this name");
        return Ok(Redirect::to("/login?error=locked").into_response());
    }
    let directory = state.engine.directory();
    let user = tokio::task::spawn_blocking({
        let name = name.clone();
        move || directory.access.sign_in(&name, &form.password).cloned()
    })
    .await
    .map_err(|e| HttpError::BadRequest(format!("sign-in failed: {e}")))?;
    let Some(user) = user else {
        state.lockout.failed(&name);
        tracing::warn!("sign-in failed: wrong name or password");
        return Ok(Redirect::to("/login?error=1").into_response());
    };
    state.lockout.succeeded(&name);
    let token = random_token();
    let now = state.engine.now();
    // Sessions that ran out are removed as people sign in (no token has the empty hash).
    state.engine.store.delete_session("", now).await?;
    state
        .engine
        .store
        .create_session(
            &token_hash(&token),
            &Session {
                user: user.name.clone(),
                role: user.role.as_str().into(),
                csrf: random_token(),
                expires_at: now + chrono::Duration::hours(SESSION_HOURS),
            },
        )
        .await?;
    tracing::info!(user = %user.name, role = user.role.as_str(), "signed in");
    Ok((
        [(
            header::SET_COOKIE,
            session_cookie(&token, SESSION_HOURS * 3600, &headers),
        )],
        Redirect::to("/"),
    )
        .into_response())
}

/// Ends the session (a form post with the CSRF token).
pub async fn logout(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state
            .engine
            .store
            .delete_session(&token_hash(token), state.engine.now())
            .await?;
    }
    Ok((
        [(header::SET_COOKIE, session_cookie("", 0, &headers))],
        Redirect::to("/login"),
    )
        .into_response())
}
