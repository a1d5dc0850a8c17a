//! Signing in and who is asking: API tokens (`Authorization: Bearer`) for machines, a
//! session cookie for people (password checked against an Argon2id hash), and roles.
//!
//! Session cookies are `HttpOnly; SameSite=Strict`; on top of that, every state-changing
//! request made with a cookie must carry the session's CSRF token in `X-CSRF-Token`, and
//! a cross-site `Origin` is refused.
//!
//! Sign-in is guarded twice: at most `PASSWORD_CHECKS` Argon2 checks run at once (each
//! holds 19 MiB, so a flood of sign-ins must queue instead of exhausting memory), and failed
//! sign-ins are counted per name *and client address* (see `Lockout`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, HttpError};
use crate::auth::{Role, bearer, random_token, same_secret, token_hash};
use crate::store::Session;

pub const SESSION_COOKIE: &str = "alertcall_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a sign-in lasts: one long shift.
const SESSION_HOURS: i64 = 13;
/// Failed sign-ins allowed per name and address in `LOCKOUT_WINDOW` before refusing.
const MAX_FAILURES: u32 = 10;
const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Only this much of a name is kept as a lockout key, so long made-up names cost little.
const NAME_KEY_CHARS: usize = 64;
/// (name, address) pairs the lockout tracks at most; the oldest make way for new ones.
const MAX_TRACKED: usize = 10_000;
/// Argon2 checks at once: 4 × 19 MiB at most, and more would only share the same cores.
pub const PASSWORD_CHECKS: usize = 4;
/// How long a sign-in waits for a free check before it is asked to retry (a check takes
/// tens of milliseconds, so this absorbs a shift change's worth of sign-ins).
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(1);
const BUSY_RETRY_AFTER_SECS: u32 = 5;

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
        let token = bearer(auth).ok_or_else(|| {
            HttpError::Unauthorized("use Authorization: Bearer <API token>".into())
        })?;
        return match access.token(token) {
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
        Ok(Viewer(authorize(state, parts, Role::Viewer).await?))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Admin(authorize(state, parts, Role::Admin).await?))
    }
}

/// The principal behind a request, which must have one, allowed by `permit`.
async fn authorize(state: &AppState, parts: &Parts, role: Role) -> Result<Principal, HttpError> {
    let principal = principal(state, &parts.headers).await?.ok_or_else(|| {
        HttpError::Unauthorized(
            "sign in at /login, or send Authorization: Bearer <API token>".into(),
        )
    })?;
    permit(principal, role, &parts.method, &parts.headers)
}

/// Whether a request only reads: no CSRF token needed.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether `principal` may make this request: it needs `role`, and a change made with a
/// session cookie must also carry the session's CSRF token and no foreign Origin.
pub fn permit(
    principal: Principal,
    role: Role,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, HttpError> {
    if let Some(csrf) = &principal.csrf
        && !is_safe(method)
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
    if principal.role < role {
        return Err(HttpError::Forbidden(format!(
            "{} has the {} role; this needs {}",
            principal.name,
            principal.role.as_str(),
            role.as_str()
        )));
    }
    Ok(principal)
}

/// A browser's cross-site request carries a foreign `Origin`: refused.
pub fn check_same_origin(headers: &HeaderMap) -> Result<(), HttpError> {
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

/// The address the connection came from: behind a reverse proxy, the proxy's. `None` only
/// when the router is served without `ConnectInfo` (`startup` always adds it).
pub fn peer(extensions: &Extensions) -> Option<IpAddr> {
    // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_canonical())
}

/// Extracts `peer`.
pub struct Peer(pub Option<IpAddr>);

impl<S: Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(peer(&parts.extensions)))
    }
}

/// Counts failed sign-ins so that passwords cannot be guessed quickly. The count is kept per
/// name *and client address*: a stranger's guesses lock the stranger out, not the real user
/// signing in from elsewhere. Behind a reverse proxy every client has the proxy's address,
/// so the count is in effect per name again. (Forwarded headers are not trusted for this:
/// anyone can send them.)
pub struct Lockout {
    failures: Mutex<HashMap<LockoutKey, Failures>>,
    capacity: usize,
}

type LockoutKey = (String, Option<IpAddr>);

struct Failures {
    count: u32,
    since: Instant,
}

impl Default for Lockout {
    fn default() -> Self {
        Lockout::with_capacity(MAX_TRACKED)
    }
}

fn lockout_key(name: &str, peer: Option<IpAddr>) -> LockoutKey {
    (name.chars().take(NAME_KEY_CHARS).collect(), peer)
}

impl Lockout {
    fn with_capacity(capacity: usize) -> Lockout {
        Lockout {
            failures: Mutex::default(),
            capacity,
        }
    }

    fn locked(&self, name: &str, peer: Option<IpAddr>) -> bool {
        let failures = self.failures.lock().expect("lockout lock");
        failures
            .get(&lockout_key(name, peer))
            .is_some_and(|f| f.count >= MAX_FAILURES && f.since.elapsed() < LOCKOUT_WINDOW)
    }

    fn failed(&self, name: &str, peer: Option<IpAddr>) {
        let mut failures = self.failures.lock().expect("lockout lock");
        let key = lockout_key(name, peer);
        if !failures.contains_key(&key) && failures.len() >= self.capacity {
            failures.retain(|_, f| f.since.elapsed() < LOCKOUT_WINDOW);
            // Still full of recent failures (a flood of made-up names): the oldest goes.
            if failures.len() >= self.capacity
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| k.clone())
            {
                failures.remove(&oldest);
            }
        }
        let fresh = || Failures {
            count: 0,
            since: Instant::now(),
        };
        let entry = failures.entry(key).or_insert_with(fresh);
        if entry.since.elapsed() >= LOCKOUT_WINDOW {
            *entry = fresh();
        }
        entry.count += 1;
    }

    fn succeeded(&self, name: &str, peer: Option<IpAddr>) {
        self.failures
            .lock()
            .expect("lockout lock")
            .remove(&lockout_key(name, peer));
    }
}

const LOGIN_PAGE: &str = include_str!("../../assets/login.html");
const BUSY: &str = "Too many sign-ins at once; try again in a few seconds.";

/// The sign-in form with `message`, with the dashboard's security headers.
fn login_form(message: &str) -> Response {
    super::dashboard::page(
        "text/html; charset=utf-8",
        LOGIN_PAGE.replace("{{message}}", message),
    )
}

/// The sign-in form; `?error=1` after a failed attempt, `?error=locked` after too many.
pub async fn login_page(Query(q): Query<HashMap<String, String>>) -> Response {
    let message = match q.get("error").map(String::as_str) {
        Some("locked") => {
            "Too many failed attempts for this name from this address; wait 15 minutes."
        }
        Some(_) => "Wrong name or password.",
        None => "",
    };
    login_form(message)
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
/// 19 MiB by design, and only `PASSWORD_CHECKS` at once) and starts a session. When every
/// check stays busy for `PASSWORD_CHECK_WAIT`, answers 503 with `Retry-After` and the form
/// saying so.
pub async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, HttpError> {
    check_same_origin(&headers)?;
    let name = form.username.trim().to_string();
    if state.lockout.locked(&name, peer) {
        tracing::warn!(client = ?peer, "sign-in refused: too many failures for this name from this address");
        return Ok(Redirect::to("/login?error=locked").into_response());
    }
    let Ok(Ok(permit)) = tokio::time::timeout(
        PASSWORD_CHECK_WAIT,
        state.password_checks.clone().acquire_owned(),
    )
    .await
    else {
        tracing::warn!(client = ?peer, "sign-in refused: too many password checks at once");
        let mut busy = login_form(BUSY);
        *busy.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        busy.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(BUSY_RETRY_AFTER_SECS),
        );
        return Ok(busy);
    };
    let directory = state.engine.directory();
    let user = tokio::task::spawn_blocking({
        let name = name.clone();
        move || {
            // Held by the check itself: it runs to the end even if the client goes away.
            let _permit = permit;
            directory.access.sign_in(&name, &form.password).cloned()
        }
    })
    .await
    .map_err(|e| HttpError::BadRequest(format!("sign-in failed: {e}")))?;
    let Some(user) = user else {
        state.lockout.failed(&name, peer);
        tracing::warn!(client = ?peer, "sign-in failed: wrong name or password");
        return Ok(Redirect::to("/login?error=1").into_response());
    };
    state.lockout.succeeded(&name, peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(lockout: &Lockout, name: &str, peer: Option<IpAddr>, times: u32) {
        for _ in 0..times {
            lockout.failed(name, peer);
        }
    }

    #[test]
    fn a_lockout_is_per_name_and_address() {
        let lockout = Lockout::default();
        let (here, there) = (Some([10, 0, 0, 1].into()), Some([10, 0, 0, 2].into()));
        fail(&lockout, "admin", here, MAX_FAILURES - 1);
        assert!(!lockout.locked("admin", here));
        fail(&lockout, "admin", here, 1);
        assert!(lockout.locked("admin", here));
        assert!(!lockout.locked("admin", there));
        assert!(!lockout.locked("vera", here));
        lockout.succeeded("admin", here);
        assert!(!lockout.locked("admin", here));
    }

    #[test]
    fn made_up_names_cannot_grow_the_table() {
        let lockout = Lockout::with_capacity(3);
        let long = "x".repeat(10_000);
        fail(&lockout, &long, None, MAX_FAILURES);
        // Names count by their first NAME_KEY_CHARS characters.
        assert!(lockout.locked(&"x".repeat(NAME_KEY_CHARS), None));
        for name in ["a", "b", "c", "d"] {
            lockout.failed(name, None);
        }
        let failures = lockout.failures.lock().unwrap();
        assert_eq!(failures.len(), 3);
        assert!(
            !failures.contains_key(&lockout_key(&long, None)),
            "the oldest made way"
        );
    }
}
