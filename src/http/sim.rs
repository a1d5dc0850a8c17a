//! The simulator's virtual phones over HTTP (used by `alertcall sim ...`, the dashboard's
//! virtual phones and tests).

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::Deserialize;

use super::auth::{self, is_safe};
use super::{AppState, HttpError};
use crate::auth::Role;
use crate::engine::Source;
use crate::telephony::simulator::{SimCall, SimSms, Simulator};

/// The simulator, for a request allowed to use its phones. They show what the nurse hears
/// (patient names) and pressing 1 acknowledges an alert, so:
///
/// - with credentials (an API token or a dashboard session), as the API: reading needs the
///   viewer role, anything else admin (and a session's CSRF token);
/// - without, only when no ALERTCALL_API_TOKEN is set and the request comes straight from
///   this machine (`from_this_machine`), so that `alertcall sim ...` works out of the box.
pub struct Phones {
    sim: Arc<Simulator>,
    /// `[dashboard] show_patient_name = false`: what the phones heard is shown without the
    /// patient's name, as everywhere else on the dashboard and the API.
    hide_names: bool,
}

impl Phones {
    fn call(&self, call: SimCall) -> Json<SimCall> {
        Json(if self.hide_names {
            call.without_patient_name()
        } else {
            call
        })
    }
}

impl FromRequestParts<AppState> for Phones {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match auth::principal(state, &parts.headers).await? {
            Some(principal) => {
                let role = if is_safe(&parts.method) {
                    Role::Viewer
                } else {
                    Role::Admin
                };
                auth::permit(principal, role, &parts.method, &parts.headers)?;
            }
            None if state.engine.config.api_token.is_some() => {
                return Err(HttpError::Unauthorized(
                    "ALERTCALL_API_TOKEN is set: send it as Authorization: Bearer <token> \
                     (`alertcall sim` does), or sign in at /login"
                        .into(),
                ));
            }
            None if from_this_machine(auth::peer(&parts.extensions), &parts.headers) => {
                if !is_safe(&parts.method) {
                    auth::check_same_origin(&parts.headers)?;
                }
            }
            None => {
                return Err(HttpError::Unauthorized(
                    "without credentials the simulator's phones answer only requests made on \
                     this machine to 127.0.0.1 or localhost, not through a proxy: send \
                     Authorization: Bearer <API token> (set ALERTCALL_API_TOKEN; `alertcall sim` \
                     sends it), or sign in at /login"
                        .into(),
                ));
            }
        }
        let hide_names = state.engine.directory().show_patient_name == Some(false);
        let sim = state.sim.clone();
        sim.map(|sim| Phones { sim, hide_names }).ok_or_else(|| {
            HttpError::NotFound("the simulator is not the configured provider".into())
        })
    }
}

/// Headers a reverse proxy or CDN adds. Behind one every client connects from the proxy,
/// often on this machine, so a request carrying any of them is not taken as local.
const PROXY_HEADERS: [&str; 10] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "via",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
];

/// Whether a request came straight from this machine: a loopback peer, no proxy headers,
/// and one Host that names this machine — a web page whose own name was made to resolve to
/// 127.0.0.1 (DNS rebinding) sends its own name, and with two a proxy may have read the other.
fn from_this_machine(peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    peer.is_some_and(|ip| ip.is_loopback())
        && !PROXY_HEADERS.iter().any(|h| headers.contains_key(*h))
        && hosts.next().is_none()
        && host
            .and_then(|v| v.to_str().ok())
            .is_some_and(names_this_machine)
}

/// `localhost`, or a loopback or unspecified address (`alertcall sim` talks to the listen
/// address, e.g. `0.0.0.0:8000`), with any port.
fn names_this_machine(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| {
            let ip = ip.to_canonical();
            ip.is_loopback() || ip.is_unspecified()
        })
}

pub async fn list(phones: Phones) -> Json<Vec<SimCall>> {
    Json(
        phones
            .sim
            .list()
            .into_iter()
            .map(|c| phones.call(c).0)
            .collect(),
    )
}

pub async fn show(phones: Phones, Path(id): Path<String>) -> Result<Json<SimCall>, HttpError> {
    Ok(phones.call(phones.sim.get(&id)?))
}

pub async fn answer(phones: Phones, Path(id): Path<String>) -> Result<Json<SimCall>, HttpError> {
    Ok(phones.call(phones.sim.answer(&id)?))
}

#[derive(Deserialize)]
pub struct Keys {
    keys: String,
}

pub async fn press(
    State(state): State<AppState>,
    phones: Phones,
    Path(id): Path<String>,
    Json(keys): Json<Keys>,
) -> Result<Json<SimCall>, HttpError> {
    let input = phones.sim.press(&id, &keys.keys)?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(phones.call(phones.sim.hear(&id, &turn.reply)?))
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
    phones: Phones,
    Path(id): Path<String>,
    Json(said): Json<Said>,
) -> Result<Json<SimCall>, HttpError> {
    let input = phones
        .sim
        .say(&id, &said.text, said.confidence.unwrap_or(1.0))?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(phones.call(phones.sim.hear(&id, &turn.reply)?))
}

pub async fn silence(
    State(state): State<AppState>,
    phones: Phones,
    Path(id): Path<String>,
) -> Result<Json<SimCall>, HttpError> {
    let input = phones.sim.silence(&id)?;
    let turn = state.engine.handle_input(&input, Source::Simulator).await?;
    Ok(phones.call(phones.sim.hear(&id, &turn.reply)?))
}

pub async fn hang_up(phones: Phones, Path(id): Path<String>) -> Result<Json<SimCall>, HttpError> {
    Ok(phones.call(phones.sim.hang_up(&id)?))
}

pub async fn messages(phones: Phones) -> Json<Vec<SimSms>> {
    let hide = phones.hide_names;
    Json(
        phones
            .sim
            .messages()
            .into_iter()
            .map(|m| if hide { m.without_patient_name() } else { m })
            .collect(),
    )
}

#[derive(Deserialize)]
pub struct Reply {
    from: String,
    text: String,
}

/// A simulated phone texts back, through the same path as an inbound SMS webhook.
pub async fn reply(
    State(state): State<AppState>,
    _: Phones,
    Json(reply): Json<Reply>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let acknowledged = state
        .engine
        .handle_inbound_sms(&reply.from, &reply.text)
        .await?;
    Ok(Json(serde_json::json!({"acknowledged": acknowledged})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (header::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_direct_requests_from_this_machine_count_as_local() {
        let local = Some(IpAddr::from([127, 0, 0, 1]));
        let host = ("host", "127.0.0.1:8000");
        assert!(from_this_machine(local, &headers(&[host])));
        for host in [
            "localhost:8000",
            "[::1]:8000",
            "0.0.0.0:8000",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(
                from_this_machine(local, &headers(&[("host", host)])),
                "{host}"
            );
        }
        let elsewhere = Some(IpAddr::from([10, 0, 0, 7]));
        assert!(!from_this_machine(elsewhere, &headers(&[host])));
        assert!(!from_this_machine(None, &headers(&[host])));
        for proxy in PROXY_HEADERS {
            assert!(
                !from_this_machine(local, &headers(&[host, (proxy, "10.0.0.7")])),
                "{proxy}"
            );
        }
        for host in [
            "evil.example:8000",
            "evil.example",
            "10.0.0.1:8000",
            "[fe80::1]:80",
        ] {
            assert!(
                !from_this_machine(local, &headers(&[("host", host)])),
                "{host}"
            );
        }
        assert!(!from_this_machine(local, &HeaderMap::new()), "no Host");
        let mut two_hosts = headers(&[host]);
        two_hosts.append(header::HOST, "evil.example".parse().unwrap());
        assert!(!from_this_machine(local, &two_hosts), "two Host headers");
        let mut two_local = headers(&[host]);
        two_local.append(header::HOST, "localhost".parse().unwrap());
        assert!(!from_this_machine(local, &two_local), "two Host headers");
    }
}
