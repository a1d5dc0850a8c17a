//! The dashboard: one page and its script and style, embedded in the binary (no CDN, works
//! offline), and the server-sent events that keep it live.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};

use super::auth::{Viewer, principal};
use super::{AppState, HttpError};

const INDEX: &str = include_str!("../../assets/index.html");
const SCRIPT: &str = include_str!("../../assets/app.js");
const STYLE: &str = include_str!("../../assets/app.css");

/// Scripts only from here, nothing inline, no framing: the page shows patient data.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// Every page, script and style sheet goes out through here, with the headers above, so the
/// sign-in page is framed and cached no more than the dashboard.
pub(super) fn page(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The dashboard for the signed-in; everyone else is sent to sign in.
pub async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    Ok(match principal(&state, &headers).await {
        Ok(Some(_)) => page("text/html; charset=utf-8", INDEX),
        Ok(None) | Err(HttpError::Unauthorized(_)) => Redirect::to("/login").into_response(),
        Err(e) => return Err(e),
    })
}

/// The script and the style sheet (public: they hold no data).
pub async fn asset(Path(file): Path<String>) -> Result<Response, HttpError> {
    match file.as_str() {
        "app.js" => Ok(page("text/javascript; charset=utf-8", SCRIPT)),
        "app.css" => Ok(page("text/css; charset=utf-8", STYLE)),
        _ => Err(HttpError::NotFound(format!("no asset {file}"))),
    }
}

/// `GET /api/v1/events`: a `change` event (data: the newest audit id) whenever anything is
/// recorded, by any instance; the dashboard then fetches what it shows.
pub async fn events(
    State(state): State<AppState>,
    Viewer(_): Viewer,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.engine.subscribe();
    changes.mark_changed();
    let stream = futures_util::stream::unfold(changes, |mut changes| async move {
        changes.changed().await.ok()?;
        let id = *changes.borrow_and_update();
        let event = Event::default().event("change").data(id.to_string());
        Some((Ok(event), changes))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
