//! Signing in and who is asking: API tokens (`Authorization: Bearer`) for machines, a
//! session cookie for people (password checked against an Argon2id hash), and roles.
//!
//! Session cookies are `HttpOnly; SameSite=Strict`; on top of that, every state-changing
//! request made with a cookie must carry the session's CSRF token in `X-CSRF-Token`, and
//! a cross-site `Origin` is refused.
//!
//! Sign-in is guarded twice: at most `PASSWORD_CHECKS` Argon2 checks run at once, each in
//! 19 MiB allocated once and reused (`auth::PasswordChecks`), so a flood of sign-ins queues
//! instead of exhausting memory; and attempts are counted per name and address, and per name
//! (see `Lockout`).

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
pub const MAX_FAILURES: u32 = 10;
/// Failed sign-ins allowed per name from all addresses together in `LOCKOUT_WINDOW`.
pub const MAX_NAME_FAILURES: u32 = 30;
const LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Only this much of a name is kept as a lockout key, so long made-up names cost little.
const NAME_KEY_CHARS: usize = 64;
/// Names, and (name, address) pairs, the lockout tracks at most; the oldest make way for new
/// ones.
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
    // A user removed, or whose password or role changed, in alertcall.toml or the
    // environment is signed out at the next reload.
    Ok(access
        .user(&session.user)
        .filter(|user| same_secret(&user.credential(), &session.credential))
        .map(|user| Principal {
            name: user.name.clone(),
            role: user.role,
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
/// when the router is served without `ConnectInfo` (`server::serve` always adds it).
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

/// Counts sign-in attempts so that passwords cannot be guessed quickly. An attempt is
/// counted *before* its password check waits for a permit, so a concurrent burst is bounded
/// like a sequence; a successful sign-in takes its own attempt back.
///
/// Two counts: per name *and client address* (`MAX_FAILURES`: a stranger's guesses lock
/// the stranger out, not the real user signing in from elsewhere), and per name from every
/// address together (`MAX_NAME_FAILURES`: guesses from rotating addresses are bounded too, at
/// the price that a determined stranger can lock the name for `LOCKOUT_WINDOW`). Behind a
/// reverse proxy every client has the proxy's address, so the first count is in effect per
/// name. (Forwarded headers are not trusted for this: anyone can send them.)
#[derive(Default)]
pub struct Lockout {
    counts: Mutex<LockoutCounts>,
}

#[derive(Default)]
struct LockoutCounts {
    at: Counts<(String, Option<IpAddr>)>,
    name: Counts<String>,
}

/// Attempts per key in the current window, keeping at most `capacity` keys.
struct Counts<K> {
    entries: HashMap<K, Failures>,
    capacity: usize,
}

struct Failures {
    count: u32,
    since: Instant,
}

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts {
            entries: HashMap::new(),
            capacity: MAX_TRACKED,
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone> Counts<K> {
    fn current(&self, key: &K) -> u32 {
        self.entries
            .get(key)
            .filter(|f| f.since.elapsed() < LOCKOUT_WINDOW)
            .map_or(0, |f| f.count)
    }

    fn add(&mut self, key: K) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, f| f.since.elapsed() < LOCKOUT_WINDOW);
            // Still full of recent failures (a flood of made-up names): the oldest goes.
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let fresh = || Failures {
            count: 0,
            since: Instant::now(),
        };
        let entry = self.entries.entry(key).or_insert_with(fresh);
        if entry.since.elapsed() >= LOCKOUT_WINDOW {
            *entry = fresh();
        }
        entry.count += 1;
    }

    fn take_back(&mut self, key: &K) {
        if let Some(f) = self.entries.get_mut(key) {
            f.count = f.count.saturating_sub(1);
        }
    }
}

fn name_key(name: &str) -> String {
    name.chars().take(NAME_KEY_CHARS).collect()
}

impl Lockout {
    /// Counts an attempt for `name` from `peer`; `false` (nothing counted) when either
    /// count has reached its limit.
    fn attempt(&self, name: &str, peer: Option<IpAddr>) -> bool {
        let mut counts = self.counts.lock().expect("lockout lock");
        let (at, name) = ((name_key(name), peer), name_key(name));
        if counts.at.current(&at) >= MAX_FAILURES || counts.name.current(&name) >= MAX_NAME_FAILURES
        {
            return false;
        }
        counts.at.add(at);
        counts.name.add(name);
        true
    }

    /// The attempt was never checked (no password check was free): it does not count.
    fn not_checked(&self, name: &str, peer: Option<IpAddr>) {
        let mut counts = self.counts.lock().expect("lockout lock");
        counts.at.take_back(&(name_key(name), peer));
        counts.name.take_back(&name_key(name));
    }

    /// The right password: this address starts afresh; the name's count only loses this
    /// attempt, so that guesses from elsewhere are still bounded.
    fn succeeded(&self, name: &str, peer: Option<IpAddr>) {
        let mut counts = self.counts.lock().expect("lockout lock");
        counts.at.entries.remove(&(name_key(name), peer));
        counts.name.take_back(&name_key(name));
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
        Some("locked") => "Too many failed attempts for this name; wait 15 minutes.",
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
    if !state.lockout.attempt(&name, peer) {
        tracing::warn!(client = ?peer, "sign-in refused: too many failures for this name");
        return Ok(Redirect::to("/login?error=locked").into_response());
    }
    let Some(mut check) = state.password_checks.acquire(PASSWORD_CHECK_WAIT).await else {
        state.lockout.not_checked(&name, peer);
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
        // Held by the check itself: it runs to the end even if the client goes away.
        move || {
            check
                .sign_in(&directory.access, &name, &form.password)
                .cloned()
        }
    })
    .await
    .map_err(|e| HttpError::BadRequest(format!("sign-in failed: {e}")))?;
    let Some(user) = user else {
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
                credential: user.credential(),
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
            assert!(lockout.attempt(name, peer));
        }
    }

    #[test]
    fn a_lockout_is_per_name_and_address() {
        let lockout = Lockout::default();
        let (here, there) = (Some([10, 0, 0, 1].into()), Some([10, 0, 0, 2].into()));
        fail(&lockout, "admin", here, MAX_FAILURES);
        assert!(!lockout.attempt("admin", here));
        assert!(lockout.attempt("admin", there));
        assert!(lockout.attempt("vera", here));
        lockout.succeeded("admin", here);
        assert!(lockout.attempt("admin", here));
    }

    #[test]
    fn a_burst_counts_every_attempt_before_any_is_checked() {
        let lockout = Lockout::default();
        let here = Some([10, 0, 0, 1].into());
        let allowed = (0..40).filter(|_| lockout.attempt("admin", here)).count();
        assert_eq!(allowed as u32, MAX_FAILURES);
        // Attempts that found no free check are given back.
        lockout.not_checked("admin", here);
        assert!(lockout.attempt("admin", here));
        assert!(!lockout.attempt("admin", here));
    }

    #[test]
    fn rotating_addresses_are_locked_per_name() {
        let lockout = Lockout::default();
        let allowed = (0..200u8)
            .filter(|n| lockout.attempt("admin", Some([10, 0, 1, *n].into())))
            .count();
        assert_eq!(allowed as u32, MAX_NAME_FAILURES);
        assert!(lockout.attempt("vera", Some([10, 0, 1, 1].into())));
    }

    #[test]
    fn made_up_names_cannot_grow_the_table() {
        let lockout = Lockout::default();
        lockout.counts.lock().unwrap().at.capacity = 3;
        lockout.counts.lock().unwrap().name.capacity = 3;
        let long = "x".repeat(10_000);
        fail(&lockout, &long, None, MAX_FAILURES);
        // Names count by their first NAME_KEY_CHARS characters.
        assert!(!lockout.attempt(&"x".repeat(NAME_KEY_CHARS), None));
        for name in ["a", "b", "c", "d"] {
            lockout.attempt(name, None);
        }
        let counts = lockout.counts.lock().unwrap();
        assert_eq!(counts.at.entries.len(), 3);
        assert_eq!(counts.name.entries.len(), 3);
        assert!(
            !counts.name.entries.contains_key(&name_key(&long)),
            "the oldest made way"
        );
    }
}
