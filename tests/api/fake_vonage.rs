//! A local fake of the Vonage Voice API. It checks every create-call request against the
//! contract in `shared/contracts/vonage` (NOTES.md §1–3, voice.yml) and records it, and it
//! answers as a test scripts it: 201, an error status, or a hang past the client's timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const APPLICATION_ID: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
pub const FROM_NUMBER: &str = "+447700900001";
pub const SIGNATURE_SECRET: &str = "test-signature-secret";
pub const PRIVATE_KEY: &str = include_str!("../fixtures/vonage-test-private.pem");
const PUBLIC_KEY: &str = include_str!("../fixtures/vonage-test-public.pem");

/// What the fake answers to the next create-call request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Created,
    /// Answers 201 after a delay (a slow but successful provider).
    Slow(Duration),
    Status(u16, Option<u64>),
    Hang(Duration),
    /// Closes the connection without answering.
    Drop,
}

impl Behaviour {
    /// A `Slow` answer, once its delay is over, is `Created`.
    pub async fn after_any_delay(self) -> Behaviour {
        match self {
            Behaviour::Slow(d) => {
                tokio::time::sleep(d).await;
                Behaviour::Created
            }
            other => other,
        }
    }

    /// A fake provider's answer to a request scripted to fail, after `record(status)` (0:
    /// never answered): `Status` with `body(code)` and its `Retry-After`, a hang, or a dropped
    /// connection.
    pub async fn fail(
        self,
        record: impl FnOnce(u16),
        body: impl FnOnce(u16) -> Response,
    ) -> Response {
        match self {
            Behaviour::Status(code, retry_after) => {
                record(code);
                let mut response = body(code);
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", secs.to_string().parse().unwrap());
                }
                response
            }
            Behaviour::Hang(d) => {
                record(0);
                tokio::time::sleep(d).await;
                StatusCode::GATEWAY_TIMEOUT.into_response()
            }
            Behaviour::Drop => {
                record(0);
                // Panicking in a handler makes hyper close the connection without a response.
                panic!("the fake provider drops this connection on purpose");
            }
            Behaviour::Created | Behaviour::Slow(_) => unreachable!("{self:?} is no failure"),
        }
    }
}

/// One create-call request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    /// When the answer was sent.
    pub done: std::time::Instant,
    pub body: Value,
    pub answered: u16,
    pub uuid: Option<String>,
}

#[derive(Default)]
struct Inner {
    hangups: Vec<String>,
    messages: Vec<Value>,
    script: VecDeque<Behaviour>,
    default: Option<fn(usize) -> Behaviour>,
    /// By the number called (Vonage's form, no `+`): wins over the script and the default.
    numbers: HashMap<String, Behaviour>,
    count: usize,
    received: Vec<Received>,
    violations: Vec<String>,
}

#[derive(Clone)]
pub struct FakeVonage {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeVonage {
    pub async fn start() -> FakeVonage {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/calls", post(create_call))
            .route("/v1/calls/{uuid}", axum::routing::put(modify_call))
            .route("/v1/messages", post(send_message))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    "the fake Vonage knows only POST /v1/calls",
                )
            })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeVonage { url, inner }
    }

    /// Answers every later request with `pick(n)` for the n-th request (0-based), after the
    /// script runs out.
    pub fn set_default(&self, pick: fn(usize) -> Behaviour) {
        self.inner.lock().unwrap().default = Some(pick);
    }

    /// Answers the next requests as scripted, then with 201 again.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.inner.lock().unwrap().script.extend(behaviours);
    }

    /// Answers every call to `number` (E.164) with `behaviour`, as Vonage answers a number
    /// it refuses; calls to other numbers are answered as before.
    pub fn answer_number(&self, number: &str, behaviour: Behaviour) {
        let number = number.trim_start_matches('+').to_string();
        self.inner.lock().unwrap().numbers.insert(number, behaviour);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// Requests that were answered 201 (calls that exist).
    pub fn calls(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == 201)
            .collect()
    }

    /// Text messages sent (Messages API bodies), with `message_uuid` added.
    pub fn messages(&self) -> Vec<Value> {
        self.inner.lock().unwrap().messages.clone()
    }

    /// Calls alertcall hung up (`PUT /v1/calls/{uuid}` with `{"action":"hangup"}`).
    pub fn hangups(&self) -> Vec<String> {
        self.inner.lock().unwrap().hangups.clone()
    }

    /// Every way a request broke the contract. Tests assert this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// The environment an alertcall instance needs to call this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ALERTCALL_PROVIDER", "vonage".into()),
            ("VONAGE_APPLICATION_ID", APPLICATION_ID.into()),
            ("VONAGE_PRIVATE_KEY", PRIVATE_KEY.into()),
            ("VONAGE_FROM_NUMBER", FROM_NUMBER.into()),
            ("VONAGE_API_URL", self.url.clone()),
            ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET.into()),
            ("NURSE_PHONE_NUMBER", "+13854019951".into()),
        ]
    }
}

/// POSTs a JSON webhook to `url`, signed now with `secret` as Vonage does (unsigned with
/// `None`).
pub async fn post_webhook(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    secret: Option<&str>,
) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(secret) = secret {
        req = req.header(
            "authorization",
            sign_webhook(body.as_bytes(), secret, chrono::Utc::now().timestamp()),
        );
    }
    req.send().await.expect("POST webhook")
}

/// Signs a webhook body the way Vonage does (HS256 JWT with `payload_hash`).
pub fn sign_webhook(body: &[u8], secret: &str, iat: i64) -> String {
    let hash: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = json!({
        "iat": iat, "jti": uuid::Uuid::new_v4().to_string(), "iss": "Vonage",
        "payload_hash": hash, "api_key": "a1b2c3d", "application_id": APPLICATION_ID,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
}

async fn create_call(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = std::time::Instant::now();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut violations = check_auth(&headers);
    violations.extend(check_body(&parsed));
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.starts_with("application/json"))
    {
        violations.push("Content-Type must be application/json".into());
    }
    let behaviour = {
        let mut inner = inner.lock().unwrap();
        inner.violations.extend(violations.iter().cloned());
        let n = inner.count;
        inner.count += 1;
        let to = parsed["to"][0]["number"].as_str().unwrap_or_default();
        if let Some(behaviour) = inner.numbers.get(to) {
            behaviour.clone()
        } else {
            let fallback = inner.default.map_or(Behaviour::Created, |pick| pick(n));
            inner.script.pop_front().unwrap_or(fallback)
        }
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    let record = |answered: u16, uuid: Option<String>| {
        inner.lock().unwrap().received.push(Received {
            at,
            done: std::time::Instant::now(),
            body: parsed.clone(),
            answered,
            uuid,
        });
    };
    if !violations.is_empty() {
        record(400, None);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"type": "https://developer.nexmo.com/api-errors#bad-request",
                              "title": "Bad Request", "detail": violations.join("; ")}),
            ),
        )
            .into_response();
    }
    let behaviour = behaviour.after_any_delay().await;
    match behaviour {
        Behaviour::Slow(_) => unreachable!("resolved above"),
        Behaviour::Created => {
            record(201, Some(uuid.clone()));
            (
                StatusCode::CREATED,
                axum::Json(
                    json!({"uuid": uuid, "status": "started", "direction": "outbound",
                                  "conversation_uuid": format!("CON-{}", uuid::Uuid::new_v4())}),
                ),
            )
                .into_response()
        }
        failure => {
            failure
                .fail(
                    |code| record(code, None),
                    |code| {
                        let body = match code {
                            401 => include_str!("../fixtures/vonage/error-401.json").to_string(),
                            429 => include_str!("../fixtures/vonage/error-429.json").to_string(),
                            400 => json!({"type": "https://developer.nexmo.com/api-errors#bad-request",
                                          "title": "Bad Request", "detail": "Invalid number",
                                          "invalid_parameters": [{"name": "to", "reason": "invalid_number"}]})
                            .to_string(),
                            _ => json!({"title": "Internal Server Error", "detail": "try again"})
                                .to_string(),
                        };
                        (
                            StatusCode::from_u16(code).unwrap(),
                            [("content-type", "application/problem+json")],
                            body,
                        )
                            .into_response()
                    },
                )
                .await
        }
    }
}

/// NOTES.md §6: Messages API v1, `POST /v1/messages` with the application JWT; 202.
async fn send_message(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut violations = check_auth(&headers);
    let mut body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let digits = |v: &Value| {
        v.as_str()
            .is_some_and(|n| (7..=15).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit()))
    };
    if body["message_type"] != "text" || body["channel"] != "sms" {
        violations.push("messages: message_type must be text and channel sms".into());
    }
    if !digits(&body["to"]) || !digits(&body["from"]) {
        violations.push("messages: to and from must be 7-15 digits, no +".into());
    }
    if body["text"].as_str().is_none_or(str::is_empty) {
        violations.push("messages: text is required".into());
    }
    let mut inner = inner.lock().unwrap();
    if !violations.is_empty() {
        inner.violations.extend(violations);
        return StatusCode::UNPROCESSABLE_ENTITY.into_response();
    }
    let id = uuid::Uuid::new_v4().to_string();
    body["message_uuid"] = json!(id);
    inner.messages.push(body);
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"message_uuid": id})),
    )
        .into_response()
}

/// NOTES.md §1: `PUT /v1/calls/{uuid}` with an action; 204.
async fn modify_call(
    State(inner): State<Arc<Mutex<Inner>>>,
    axum::extract::Path(uuid): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut violations = check_auth(&headers);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let action = body["action"].as_str().unwrap_or_default();
    if ![
        "hangup",
        "mute",
        "unmute",
        "earmuff",
        "unearmuff",
        "transfer",
    ]
    .contains(&action)
    {
        violations.push(format!("PUT /v1/calls/{{uuid}}: unknown action {action:?}"));
    }
    let mut inner = inner.lock().unwrap();
    if !violations.is_empty() {
        inner.violations.extend(violations);
        return StatusCode::BAD_REQUEST;
    }
    if action == "hangup" {
        inner.hangups.push(uuid);
    }
    StatusCode::NO_CONTENT
}

/// NOTES.md §2: `Authorization: Bearer` RS256 JWT with application_id, iat, jti.
fn check_auth(headers: &HeaderMap) -> Vec<String> {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return vec!["missing Authorization: Bearer <JWT>".into()];
    };
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(e) => return vec![format!("JWT header: {e}")],
    };
    if header.alg != Algorithm::RS256 {
        return vec![format!("JWT alg must be RS256, got {:?}", header.alg)];
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let claims: Value = match jsonwebtoken::decode(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return vec![format!(
                "JWT does not verify with the application's public key: {e}"
            )];
        }
    };
    let mut out = Vec::new();
    if claims["application_id"] != APPLICATION_ID {
        out.push("JWT application_id claim is wrong or missing".into());
    }
    let now = chrono::Utc::now().timestamp();
    match claims["iat"].as_i64() {
        Some(iat) if (now - 120..=now + 5).contains(&iat) => {}
        _ => out.push("JWT iat must be now (unix seconds)".into()),
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        out.push("JWT jti is required".into());
    }
    if let Some(exp) = claims["exp"].as_i64() {
        let iat = claims["iat"].as_i64().unwrap_or(now);
        if !(30..=86400).contains(&(exp - iat)) {
            out.push("JWT exp must be 30 s to 24 h after iat".into());
        }
    }
    out
}

/// NOTES.md §1 and §3, voice.yml CreateCallRequest.
fn check_body(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            out.push(what.to_string());
        }
    };
    let number_ok = |v: &Value| {
        v.as_str()
            .is_some_and(|n| (7..=15).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit()))
    };
    let Some(obj) = body.as_object() else {
        return vec!["body must be a JSON object".into()];
    };
    let to = body["to"].as_array();
    need(
        to.is_some_and(|t| t.len() == 1),
        "to must be an array of one endpoint",
    );
    if let Some(ep) = to.and_then(|t| t.first()) {
        need(ep["type"] == "phone", "to[0].type must be phone");
        need(
            number_ok(&ep["number"]),
            "to[0].number must be 7-15 digits, no +",
        );
    }
    need(body["from"]["type"] == "phone", "from.type must be phone");
    need(
        number_ok(&body["from"]["number"]),
        "from.number must be 7-15 digits, no +",
    );
    need(
        obj.contains_key("ncco") != obj.contains_key("answer_url"),
        "exactly one of ncco and answer_url",
    );
    need(
        body["event_url"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0].is_string()),
        "event_url must be an array of one URL",
    );
    if let Some(method) = body.get("event_method") {
        need(
            method == "POST" || method == "GET",
            "event_method must be GET or POST",
        );
    }
    if let Some(t) = body.get("ringing_timer") {
        need(
            t.as_u64().is_some_and(|t| (1..=120).contains(&t)),
            "ringing_timer must be 1..120",
        );
    }
    if let Some(t) = body.get("length_timer") {
        need(
            t.as_u64().is_some_and(|t| (1..=7200).contains(&t)),
            "length_timer must be 1..7200",
        );
    }
    if let Some(m) = body.get("machine_detection") {
        need(
            m == "continue" || m == "hangup",
            "machine_detection must be continue or hangup",
        );
    }
    if let Some(ncco) = body.get("ncco") {
        out.extend(check_ncco(ncco));
    }
    out
}

/// NOTES.md §3 and ncco-schema.json: the NCCO actions alertcall uses (`talk`, `input`,
/// `connect`, `conversation`), each with only its documented fields. A lean check, not a full
/// JSON-schema validator: the shapes and ranges alertcall could get wrong.
pub fn check_ncco(ncco: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(actions) = ncco.as_array().filter(|a| !a.is_empty()) else {
        return vec!["ncco must be a non-empty array".into()];
    };
    let url_list = |v: &Value| {
        v.as_array().is_some_and(|a| {
            a.len() == 1
                && a[0]
                    .as_str()
                    .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
        })
    };
    let method_ok = |v: Option<&Value>| v.is_none_or(|m| m == "GET" || m == "POST");
    for (i, action) in actions.iter().enumerate() {
        let name = action["action"].as_str();
        let allowed: &[&str] = match name {
            Some("talk") => &[
                "action", "text", "language", "style", "premium", "bargeIn", "loop", "level",
            ],
            Some("input") => &[
                "action",
                "type",
                "dtmf",
                "speech",
                "eventUrl",
                "eventMethod",
                "mode",
            ],
            Some("connect") => &[
                "action",
                "endpoint",
                "from",
                "randomFromNumber",
                "eventType",
                "timeout",
                "limit",
                "machineDetection",
                "advancedMachineDetection",
                "eventUrl",
                "eventMethod",
                "ringbackTone",
            ],
            Some("conversation") => &[
                "action",
                "name",
                "musicOnHoldUrl",
                "startOnEnter",
                "endOnExit",
                "record",
                "canSpeak",
                "canHear",
                "mute",
                "eventUrl",
                "eventMethod",
            ],
            other => {
                out.push(format!("ncco[{i}] unexpected action {other:?}"));
                continue;
            }
        };
        if let Some(obj) = action.as_object() {
            for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
                out.push(format!("ncco[{i}] {name:?} has no field {key:?}"));
            }
        }
        match name {
            Some("talk") => {
                let text = action["text"].as_str().unwrap_or("");
                if text.is_empty() || text.chars().count() > 1500 {
                    out.push(format!("ncco[{i}] talk text must be 1-1500 characters"));
                }
                if action["bargeIn"] == true
                    && actions
                        .get(i + 1)
                        .is_none_or(|next| next["action"] != "input")
                {
                    out.push(format!(
                        "ncco[{i}] talk with bargeIn must be followed by input"
                    ));
                }
            }
            Some("input") => {
                let types = action["type"].as_array();
                if !types.is_some_and(|t| {
                    !t.is_empty() && t.iter().all(|x| x == "dtmf" || x == "speech")
                }) {
                    out.push(format!(
                        "ncco[{i}] input.type must be a non-empty array of dtmf/speech"
                    ));
                }
                let dtmf = &action["dtmf"];
                if let Some(n) = dtmf.get("maxDigits")
                    && !n.as_u64().is_some_and(|n| (1..=20).contains(&n))
                {
                    out.push(format!("ncco[{i}] dtmf.maxDigits must be 1..20"));
                }
                if let Some(t) = dtmf.get("timeOut")
                    && t.as_u64().is_none_or(|t| t > 10)
                {
                    out.push(format!("ncco[{i}] dtmf.timeOut must be 0..10"));
                }
                if let Some(speech) = action.get("speech") {
                    if !types.is_some_and(|t| t.iter().any(|x| x == "speech")) {
                        out.push(format!("ncco[{i}] input.speech without type speech"));
                    }
                    let range = |key: &str, lo: f64, hi: f64| {
                        speech
                            .get(key)
                            .is_none_or(|v| v.as_f64().is_some_and(|v| (lo..=hi).contains(&v)))
                    };
                    if !(range("startTimeout", 1.0, 60.0)
                        && range("maxDuration", 1.0, 60.0)
                        && range("endOnSilence", 0.4, 10.0)
                        && range("sensitivity", 0.0, 100.0))
                    {
                        out.push(format!("ncco[{i}] input.speech timing out of range"));
                    }
                    if speech
                        .get("language")
                        .is_some_and(|l| l.as_str().is_none_or(str::is_empty))
                    {
                        out.push(format!("ncco[{i}] input.speech.language must be a tag"));
                    }
                    if speech.get("context").is_some_and(|c| {
                        !c.as_array().is_some_and(|c| c.iter().all(Value::is_string))
                    }) {
                        out.push(format!(
                            "ncco[{i}] input.speech.context must be an array of strings"
                        ));
                    }
                }
                if !action["eventUrl"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1 && a[0].is_string())
                {
                    out.push(format!(
                        "ncco[{i}] input.eventUrl must be an array of one URL"
                    ));
                }
            }
            Some("connect") => {
                match action["endpoint"].as_array() {
                    Some(endpoints) if endpoints.len() == 1 => {
                        let ep = &endpoints[0];
                        let ok = match ep["type"].as_str() {
                            Some("phone") => ep["number"].as_str().is_some_and(|n| {
                                (7..=15).contains(&n.len()) && n.chars().all(|c| c.is_ascii_digit())
                            }),
                            Some("sip") => ep["uri"].as_str().is_some_and(sip_uri_ok),
                            Some("websocket") => ep["uri"]
                                .as_str()
                                .is_some_and(|u| u.starts_with("ws:") || u.starts_with("wss:")),
                            _ => false,
                        };
                        if !ok {
                            out.push(format!(
                                "ncco[{i}] connect endpoint must be phone {{number: digits}}, \
                                 sip {{uri: sip:...}} or websocket: {ep}"
                            ));
                        }
                    }
                    _ => out.push(format!("ncco[{i}] connect.endpoint must hold one endpoint")),
                }
                if let Some(from) = action.get("from")
                    && !from
                        .as_str()
                        .is_some_and(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
                {
                    out.push(format!("ncco[{i}] connect.from must be digits"));
                }
                if action.get("eventType").is_some_and(|t| t != "synchronous") {
                    out.push(format!("ncco[{i}] connect.eventType must be synchronous"));
                }
                if action
                    .get("limit")
                    .is_some_and(|l| l.as_f64().is_none_or(|l| !(0.0..=7200.0).contains(&l)))
                {
                    out.push(format!("ncco[{i}] connect.limit must be 0..7200"));
                }
                // ncco-schema.json: a number, minimum 0 (NOTES.md: ring seconds, default 60).
                if action
                    .get("timeout")
                    .is_some_and(|t| t.as_f64().is_none_or(|t| t < 0.0))
                {
                    out.push(format!("ncco[{i}] connect.timeout must be a number >= 0"));
                }
                // NOTES.md §8.3: once connected, keys are no longer collected; what follows a
                // connect runs when its leg ends, so only something to say makes sense there.
                if actions[i + 1..].iter().any(|a| a["action"] != "talk") {
                    out.push(format!(
                        "ncco[{i}] only talk may follow a connect (no input after a bridge)"
                    ));
                }
                if action.get("eventUrl").is_some_and(|u| !url_list(u))
                    || !method_ok(action.get("eventMethod"))
                {
                    out.push(format!("ncco[{i}] connect event URL/method malformed"));
                }
            }
            Some("conversation") => {
                if action["name"].as_str().is_none_or(str::is_empty) {
                    out.push(format!("ncco[{i}] conversation.name is required"));
                }
                for flag in ["startOnEnter", "endOnExit", "record", "mute"] {
                    if action.get(flag).is_some_and(|v| !v.is_boolean()) {
                        out.push(format!("ncco[{i}] conversation.{flag} must be a boolean"));
                    }
                }
                if action.get("eventUrl").is_some_and(|u| !url_list(u))
                    || !method_ok(action.get("eventMethod"))
                {
                    out.push(format!("ncco[{i}] conversation event URL/method malformed"));
                }
            }
            _ => unreachable!("filtered above"),
        }
    }
    out
}

/// ncco-schema.json `endpoint-sip`: `^sips?:` (case-sensitive), and a SIP URI names a host.
fn sip_uri_ok(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return false;
    };
    let address = rest.split([';', '?']).next().unwrap_or("");
    let host = address.rsplit_once('@').map_or(address, |(_, host)| host);
    !host.is_empty() && !host.starts_with(':') && !uri.chars().any(char::is_whitespace)
}

/// The number after `prefix` in a call's spoken text (tests tag alerts `crash-17` etc.).
pub fn token(call: &Received, prefix: &str) -> Option<u64> {
    let text = call.body["ncco"][0]["text"].as_str()?;
    let start = text.find(prefix)? + prefix.len();
    text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}
