//! Vonage Voice API: create calls with an application JWT, render NCCOs, parse and verify
//! webhooks. Shapes follow `shared/contracts/vonage` (NOTES.md, voice.yml, examples/).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::webhook_token::WebhookKey;
use super::{
    CallRequest, CredentialsSeen, PlacedCall, Provider, ProviderError, ReplyContext, SmsRequest,
};
use crate::config::VonageConfig;
use crate::domain::call::{CallEvent, CallEventKind, InputEvent};
use crate::domain::intent::SpeechResult;
use crate::domain::menu::{self, Destination, Reply};

/// Application JWTs live this long; a new one is made when less than a minute is left.
const TOKEN_LIFETIME_SECS: i64 = 900;
/// The keypad waits this long after the prompt for a key (Vonage allows 0–10 s).
const INPUT_TIMEOUT_SECS: u64 = 10;
/// A call that is picked up ends after this long even if nobody hangs up: long enough for a
/// nurse bridged to the room or in the responders' conference through an emergency, short
/// enough that a stuck call does not run for the rest of the day.
const LENGTH_TIMER_SECS: u64 = 3600;
/// Speech recognition: how long to wait for the nurse to start speaking (Vonage: 1–60 s),
/// the silence that ends an answer (0.4–10 s) and the longest answer (1–60 s).
const SPEECH_START_TIMEOUT_SECS: u64 = 10;
const SPEECH_END_ON_SILENCE_SECS: f64 = 1.0;
const SPEECH_MAX_DURATION_SECS: u64 = 8;
/// Hints for the recogniser: the answers the menu understands.
const SPEECH_CONTEXT: &[&str] = &[
    "yes",
    "acknowledge",
    "on my way",
    "repeat",
    "details",
    "connect me",
    "conference",
    "join the call",
    "busy",
    "can't",
    "decline",
];
/// How long the room's intercom or phone rings when a nurse is connected to it (Vonage's
/// default is 60 s): after that the nurse hears that the connection ended, not ringing.
const CONNECT_RING_SECS: u64 = 30;
/// Speech results kept from one input webhook, and the longest transcript kept.
const MAX_SPEECH_RESULTS: usize = 10;
const MAX_TRANSCRIPT_CHARS: usize = 500;

pub struct VonageProvider {
    http: reqwest::Client,
    config: VonageConfig,
    key: EncodingKey,
    event_url: String,
    input_url: String,
    /// Makes the per-call token in the webhook URLs.
    webhook_key: WebhookKey,
    language: String,
    ringing_timer: Duration,
    token: Mutex<Option<(String, Instant)>>,
    credentials: CredentialsSeen,
}

#[derive(Serialize)]
struct AppClaims<'a> {
    application_id: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// The application's private key, proven able to sign: a key that parses but cannot sign
/// (a public key, a key of another type) would otherwise fail every call. Says what is wrong
/// with the key; Vonage is not asked, so nothing here says whether Vonage accepts it.
pub fn signing_key(pem: &str) -> Result<EncodingKey, String> {
    const FIX: &str = "VONAGE_PRIVATE_KEY(_PATH) must hold the application's RSA private key \
                       (the private.key downloaded when the Vonage application was created, \
                       beginning -----BEGIN PRIVATE KEY-----)";
    if pem.contains("PUBLIC KEY-----") || pem.contains("CERTIFICATE-----") {
        return Err(format!(
            "the Vonage key is a public key or certificate, which cannot sign: {FIX}"
        ));
    }
    if !pem.contains("-----BEGIN") {
        return Err(format!("the Vonage key is not in PEM form: {FIX}"));
    }
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
        format!("the Vonage key is not an RSA private key ({e}), so it cannot sign: {FIX}")
    })?;
    let probe = json!({"application_id": "probe", "iat": 0, "exp": 1});
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &probe, &key)
        .map_err(|e| format!("the Vonage key cannot sign a JWT ({e}): {FIX}"))?;
    Ok(key)
}

impl VonageProvider {
    pub fn new(
        config: VonageConfig,
        event_url: String,
        input_url: String,
        webhook_key: WebhookKey,
        language: String,
        ringing_timer: Duration,
        timeout: Duration,
    ) -> Result<VonageProvider, ProviderError> {
        let key = signing_key(&config.private_key_pem).map_err(ProviderError::Config)?;
        let http = super::http_client(timeout)?;
        Ok(VonageProvider {
            http,
            config,
            key,
            event_url,
            input_url,
            webhook_key,
            language,
            ringing_timer,
            token: Mutex::new(None),
            credentials: CredentialsSeen::default(),
        })
    }

    /// The application JWT (RS256), reused until a minute before it expires.
    fn token(&self) -> Result<String, ProviderError> {
        let mut cached = self.token.lock().expect("token lock");
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + Duration::from_secs(60) < *expires
        {
            return Ok(token.clone());
        }
        let now = Utc::now().timestamp();
        let claims = AppClaims {
            application_id: &self.config.application_id,
            iat: now,
            exp: now + TOKEN_LIFETIME_SECS,
            jti: Uuid::new_v4().to_string(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| {
                ProviderError::Config(format!(
                    "cannot sign the Vonage JWT with the configured private key ({e}): this is \
                     our configuration, Vonage was not asked; check VONAGE_PRIVATE_KEY(_PATH)"
                ))
            })?;
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS as u64),
        ));
        Ok(token)
    }

    /// The create-call body (public so tests can check it against the contract).
    pub fn create_call_body(&self, request: &CallRequest) -> Value {
        let call = request.call_id;
        let input_url = self.webhook_key.call_url(&self.input_url, call);
        let language = if request.language.is_empty() {
            &self.language
        } else {
            &request.language
        };
        let context = ReplyContext {
            answer_url: &input_url,
            language,
            speech: request.speech,
            caller_id: self.config.from_number.digits(),
        };
        json!({
            "to": [{"type": "phone", "number": request.to.digits()}],
            "from": {"type": "phone", "number": self.config.from_number.digits()},
            "ncco": ncco(&request.greeting, &context),
            "event_url": [self.webhook_key.call_url(&self.event_url, call)],
            "event_method": "POST",
            "ringing_timer": self.ringing_timer.as_secs().clamp(1, 120),
            "length_timer": LENGTH_TIMER_SECS,
            "machine_detection": "continue",
        })
    }
}

/// Renders a reply as an NCCO (NOTES.md §3): `talk` (interruptible by the keypad) then a
/// one-digit `input` (also listening for speech when on); a final `talk`; a `talk`, a
/// `connect` to a phone or SIP endpoint and a closing `talk`; or a `talk` then `conversation`
/// (a named conference).
pub fn ncco(reply: &Reply, cx: &ReplyContext) -> Value {
    let talk = |text: &str| json!({"action": "talk", "text": text, "language": cx.language});
    match reply {
        Reply::Prompt { text } => {
            let mut input = json!({
                "action": "input",
                "type": ["dtmf"],
                "dtmf": {"maxDigits": 1, "timeOut": INPUT_TIMEOUT_SECS},
                "eventUrl": [cx.answer_url],
                "eventMethod": "POST",
            });
            if cx.speech {
                input["type"] = json!(["dtmf", "speech"]);
                input["speech"] = json!({
                    "language": cx.language,
                    "context": SPEECH_CONTEXT,
                    "startTimeout": SPEECH_START_TIMEOUT_SECS,
                    "endOnSilence": SPEECH_END_ON_SILENCE_SECS,
                    "maxDuration": SPEECH_MAX_DURATION_SECS,
                });
            }
            json!([
                {"action": "talk", "text": text, "language": cx.language, "bargeIn": true},
                input
            ])
        }
        Reply::Say { text } => json!([talk(text)]),
        Reply::Connect { text, to } => {
            let endpoint = match to {
                Destination::Phone(phone) => json!({"type": "phone", "number": phone.digits()}),
                Destination::Sip(uri) => json!({"type": "sip", "uri": uri}),
            };
            // `connect` is synchronous: the actions after it run when the room's leg ends,
            // whether it hung up or never answered within `timeout`. Without the closing
            // `talk` the NCCO would end there and the nurse would hear nothing.
            json!([
                talk(text),
                {"action": "connect", "from": cx.caller_id, "timeout": CONNECT_RING_SECS,
                 "endpoint": [endpoint]},
                talk(menu::CONNECTION_ENDED)
            ])
        }
        Reply::Conference { text, name } => json!([
            talk(text),
            {"action": "conversation", "name": name, "startOnEnter": true, "endOnExit": false}
        ]),
    }
}

#[async_trait]
impl Provider for VonageProvider {
    fn name(&self) -> &'static str {
        "vonage"
    }

    fn ready(&self) -> Result<(), String> {
        self.credentials.ready(
            "Vonage refused our credentials on the last call: check VONAGE_APPLICATION_ID and \
             the private key",
        )
    }

    async fn place_call(&self, request: &CallRequest) -> Result<PlacedCall, ProviderError> {
        let url = format!("{}/v1/calls", self.config.api_url);
        let response = self
            .send(reqwest::Method::POST, &url, &self.create_call_body(request))
            .await?;
        let status = response.status();
        let trace = response
            .headers()
            .get("x-nexmo-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        self.credentials.answered(status.as_u16());
        if status.as_u16() == 201 || status.as_u16() == 200 {
            #[derive(Deserialize)]
            struct Created {
                uuid: String,
            }
            return serde_json::from_slice::<Created>(&body)
                .map(|c| PlacedCall {
                    provider_call_id: c.uuid,
                })
                .map_err(|e| ProviderError::Transient {
                    message: format!("Vonage answered {status} without a call uuid: {e}"),
                    retry_after: None,
                });
        }
        let (code, detail) = (status.as_u16(), problem_detail(&body));
        let trace = trace
            .map(|t| format!(" (trace id {t})"))
            .unwrap_or_default();
        Err(match code {
            401 | 403 => ProviderError::Config(format!(
                "Vonage answered {code}: {detail}{trace}. Check VONAGE_APPLICATION_ID and the \
                 private key (they must belong to the same application)"
            )),
            429 => ProviderError::Transient {
                message: format!("Vonage rate limit (429): {detail}{trace}"),
                retry_after,
            },
            500..=599 => ProviderError::Transient {
                message: format!("Vonage answered {code}: {detail}{trace}"),
                retry_after,
            },
            _ => ProviderError::Permanent(format!("Vonage answered {code}: {detail}{trace}")),
        })
    }

    async fn hang_up(&self, provider_call_id: &str) -> Result<(), ProviderError> {
        self.put_hangup(provider_call_id).await
    }

    /// Messages API v1 (`POST /v1/messages`, the same application JWT): 202 with a
    /// `message_uuid`.
    async fn send_sms(&self, sms: &SmsRequest) -> Result<String, ProviderError> {
        let url = format!("{}/v1/messages", self.config.api_url);
        let body = json!({
            "message_type": "text",
            "channel": "sms",
            "to": sms.to.digits(),
            "from": self.config.from_number.digits(),
            "text": sms.text,
            "client_ref": sms.client_ref,
        });
        let response = self.send(reqwest::Method::POST, &url, &body).await?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        if status.is_success() {
            #[derive(Deserialize)]
            struct Accepted {
                message_uuid: String,
            }
            return serde_json::from_slice::<Accepted>(&bytes)
                .map(|a| a.message_uuid)
                .map_err(|e| ProviderError::Transient {
                    message: format!("Vonage answered {status} without a message_uuid: {e}"),
                    retry_after: None,
                });
        }
        let (code, detail) = (status.as_u16(), problem_detail(&bytes));
        Err(match code {
            401 | 403 => {
                ProviderError::Config(format!("Vonage Messages answered {code}: {detail}"))
            }
            429 | 500..=599 => ProviderError::Transient {
                message: format!("Vonage Messages answered {code}: {detail}"),
                retry_after: None,
            },
            _ => ProviderError::Permanent(format!("Vonage Messages answered {code}: {detail}")),
        })
    }
}

/// An inbound text (Messages API `inbound` webhook): who sent what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSms {
    pub from: String,
    pub text: String,
    pub message_uuid: Option<String>,
}

/// Parses the Messages API inbound webhook (`{channel, message_uuid, from, to, text, ...}`).
pub fn parse_inbound_sms(body: &[u8]) -> Result<InboundSms, WebhookError> {
    let map = object(body)?;
    let from = match map.get("from") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(WebhookError::Malformed("from must be a string".into())),
        None => return Err(WebhookError::Missing("from")),
    };
    if from.is_empty() || from.len() > 32 {
        return Err(WebhookError::Malformed(
            "from must be a phone number".into(),
        ));
    }
    let body = text(&map, "text").unwrap_or_default();
    if body.len() > 2000 {
        return Err(WebhookError::Malformed("text is too long".into()));
    }
    Ok(InboundSms {
        from,
        text: body,
        message_uuid: text(&map, "message_uuid"),
    })
}

/// Parses the Messages API status webhook: the message and its new status.
pub fn parse_sms_status(body: &[u8]) -> Result<(String, String), WebhookError> {
    let map = object(body)?;
    let id = text(&map, "message_uuid").ok_or(WebhookError::Missing("message_uuid"))?;
    let status = text(&map, "status").ok_or(WebhookError::Missing("status"))?;
    if id.is_empty() || id.len() > 128 || status.is_empty() || status.len() > 32 {
        return Err(WebhookError::Malformed(
            "message_uuid or status out of range".into(),
        ));
    }
    Ok((id, status))
}

impl VonageProvider {
    /// Sends `body` as JSON with the application JWT; a request that never got an answer is
    /// a transient failure.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &Value,
    ) -> Result<reqwest::Response, ProviderError> {
        self.http
            .request(method.clone(), url)
            .bearer_auth(self.token()?)
            .json(body)
            .send()
            .await
            .map_err(|e| ProviderError::Transient {
                message: format!("{method} {url}: {}", describe_reqwest(&e)),
                retry_after: None,
            })
    }

    /// `PUT /v1/calls/{uuid}` with `{"action":"hangup"}` (204). A call that already ended
    /// answers an error; that is not a failure here.
    async fn put_hangup(&self, provider_call_id: &str) -> Result<(), ProviderError> {
        let url = format!("{}/v1/calls/{provider_call_id}", self.config.api_url);
        let response = self
            .send(reqwest::Method::PUT, &url, &json!({"action": "hangup"}))
            .await?;
        let status = response.status();
        match status.as_u16() {
            200..=299 | 404 | 400 => Ok(()),
            401 | 403 => Err(ProviderError::Config(format!(
                "Vonage answered {status} to a hangup"
            ))),
            _ => Err(ProviderError::Transient {
                message: format!("Vonage answered {status} to a hangup"),
                retry_after: None,
            }),
        }
    }
}

pub(super) fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("could not connect ({e})")
    } else {
        e.to_string()
    }
}

/// `title: detail` from a problem+json body (once when they are the same, without a closing
/// full stop, since our sentence goes on), plus any invalid parameters.
fn problem_detail(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    };
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_end_matches('.')
    };
    let (title, detail) = (field("title"), field("detail"));
    let mut out = [title, detail]
        .into_iter()
        .filter(|s| !s.is_empty())
        .take(if title == detail { 1 } else { 2 })
        .collect::<Vec<_>>()
        .join(": ");
    if let Some(params) = v.get("invalid_parameters").and_then(Value::as_array) {
        for p in params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
            let reason = p.get("reason").and_then(Value::as_str).unwrap_or("?");
            out.push_str(&format!("; {name}: {reason}"));
        }
    }
    if out.is_empty() { v.to_string() } else { out }
}

/// Why a webhook was refused (answered 400 or 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not a JSON object: {0}")]
    Malformed(String),
    #[error("the webhook has no {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Signature(String),
}

/// A parsed event webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VonageEvent {
    Call(CallEvent),
    /// An error about a conversation (e.g. a bad NCCO), not tied to a call leg we know.
    Error {
        reason: String,
        conversation_uuid: Option<String>,
    },
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, WebhookError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(WebhookError::Malformed("expected a JSON object".into())),
        Err(e) => Err(WebhookError::Malformed(e.to_string())),
    }
}

/// A string field, accepting numbers (Vonage sends some numbers as strings and vice versa).
fn text(map: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A call's uuid: 1 to 128 characters and no control characters (it is logged and stored).
fn check_uuid(uuid: &str) -> Result<(), WebhookError> {
    if uuid.is_empty() || uuid.len() > 128 || uuid.chars().any(char::is_control) {
        return Err(WebhookError::Malformed(
            "uuid must be 1 to 128 characters, none of them control characters".into(),
        ));
    }
    Ok(())
}

/// Parses the call event webhook (`event_url`).
pub fn parse_event(body: &[u8], call_id: Option<Uuid>) -> Result<VonageEvent, WebhookError> {
    let map = object(body)?;
    let uuid = text(&map, "uuid").or_else(|| text(&map, "call_uuid"));
    let status = text(&map, "status");
    let (Some(uuid), Some(status)) = (uuid, status) else {
        if let Some(reason) = text(&map, "reason") {
            return Ok(VonageEvent::Error {
                reason,
                conversation_uuid: text(&map, "conversation_uuid"),
            });
        }
        return Err(WebhookError::Missing("uuid and status"));
    };
    check_uuid(&uuid)?;
    let kind = match status.as_str() {
        "started" => CallEventKind::Started,
        "ringing" => CallEventKind::Ringing,
        "answered" => CallEventKind::PickedUp,
        "human" => CallEventKind::Human,
        "machine" => CallEventKind::Machine,
        "busy" => CallEventKind::Busy,
        "cancelled" => CallEventKind::Cancelled,
        "unanswered" => CallEventKind::Unanswered,
        "timeout" => CallEventKind::Timeout,
        "rejected" => CallEventKind::Rejected,
        "failed" => CallEventKind::Failed,
        "completed" => CallEventKind::Completed,
        _ => CallEventKind::Other,
    };
    Ok(VonageEvent::Call(CallEvent {
        provider_call_id: uuid,
        call_id,
        kind,
        detail: text(&map, "detail").or_else(|| (kind == CallEventKind::Other).then_some(status)),
        at: text(&map, "timestamp"),
    }))
}

/// Parses the keypad input webhook (the input action's `eventUrl`).
pub fn parse_input(body: &[u8], call_id: Option<Uuid>) -> Result<InputEvent, WebhookError> {
    let map = object(body)?;
    let uuid = text(&map, "uuid").ok_or(WebhookError::Missing("uuid"))?;
    check_uuid(&uuid)?;
    let dtmf = match map.get("dtmf") {
        Some(Value::Object(d)) => Some(d),
        None | Some(Value::Null) => None,
        Some(_) => return Err(WebhookError::Malformed("dtmf must be an object".into())),
    };
    let digits = match dtmf.and_then(|d| d.get("digits")) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(WebhookError::Malformed(
                "dtmf.digits must be a string".into(),
            ));
        }
    };
    if digits.len() > 20 {
        return Err(WebhookError::Malformed("more than 20 digits".into()));
    }
    // Before 2019 Vonage sent "1" or "" here; accept both forms.
    let timed_out = match dtmf.and_then(|d| d.get("timed_out")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s == "1" || s == "true" => true,
        Some(Value::String(s)) if s.is_empty() || s == "0" || s == "false" => false,
        Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
        Some(Value::Number(n)) if n.as_i64() == Some(0) => false,
        Some(_) => {
            return Err(WebhookError::Malformed(
                "dtmf.timed_out must be a boolean".into(),
            ));
        }
    };
    Ok(InputEvent {
        provider_call_id: uuid,
        call_id,
        digits,
        timed_out,
        speech: speech_results(map.get("speech"))?,
        at: text(&map, "timestamp"),
    })
}

/// `speech: {results: [{text, confidence}], timeout_reason?, error?}`. Confidence arrives as a
/// string ("0.9405097") or a number; a result without usable text is skipped, one without a
/// usable confidence is kept with none (and so is not acted on).
fn speech_results(speech: Option<&Value>) -> Result<Vec<SpeechResult>, WebhookError> {
    let speech = match speech {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(s)) => s,
        Some(_) => return Err(WebhookError::Malformed("speech must be an object".into())),
    };
    let results = match speech.get("results") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(r)) => r,
        Some(_) => {
            return Err(WebhookError::Malformed(
                "speech.results must be an array".into(),
            ));
        }
    };
    Ok(results
        .iter()
        .take(MAX_SPEECH_RESULTS)
        .filter_map(|r| {
            let r = r.as_object()?;
            let text: String = r
                .get("text")?
                .as_str()?
                .chars()
                .take(MAX_TRANSCRIPT_CHARS)
                .collect();
            let confidence = match r.get("confidence") {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|c| c.is_finite() && (0.0..=1.0).contains(c));
            Some(SpeechResult { text, confidence })
        })
        .collect())
}

#[derive(Deserialize)]
struct SignedClaims {
    iat: f64,
    payload_hash: Option<String>,
}

/// Verifies Vonage's signed-webhook JWT: HS256 with the account signature secret, a fresh
/// `iat`, and `payload_hash` equal to the SHA-256 of the body.
pub fn verify_signature(
    authorization: Option<&str>,
    body: &[u8],
    secret: &str,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<(), WebhookError> {
    let refuse = |why: &str| Err(WebhookError::Signature(why.to_string()));
    let Some(header) = authorization else {
        return refuse("unsigned: no Authorization header");
    };
    let Some(token) = crate::auth::bearer(header) else {
        return refuse("the Authorization header is not a Bearer token");
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let claims = match jsonwebtoken::decode::<SignedClaims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => return Err(WebhookError::Signature(format!("bad signature: {e}"))),
    };
    let age = now.timestamp() as f64 - claims.iat;
    if !age.is_finite() || age > max_age.as_secs_f64() || age < -60.0 {
        return refuse(
            "the signature's iat is outside the allowed window (replayed or clock skew)",
        );
    }
    let Some(hash) = claims.payload_hash else {
        return refuse("the signature has no payload_hash");
    };
    let actual = hex(&Sha256::digest(body));
    if !hash.eq_ignore_ascii_case(&actual) {
        return refuse("payload_hash does not match the body (tampered)");
    }
    Ok(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vonage");

    fn example(name: &str) -> Vec<u8> {
        std::fs::read(format!("{EXAMPLES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn parses_every_documented_event() {
        let cases = [
            ("event-started.json", CallEventKind::Started),
            ("event-ringing.json", CallEventKind::Ringing),
            ("event-answered.json", CallEventKind::PickedUp),
            ("event-unanswered.json", CallEventKind::Unanswered),
            ("event-completed.json", CallEventKind::Completed),
            ("event-machine.json", CallEventKind::Machine),
        ];
        for (file, kind) in cases {
            let VonageEvent::Call(ev) = parse_event(&example(file), None).unwrap() else {
                panic!("{file} is a call event");
            };
            assert_eq!(ev.kind, kind, "{file}");
            assert_eq!(ev.provider_call_id, "63f61863-4a51-4f6b-86e1-46edebcf9356");
        }
        assert!(matches!(
            parse_event(&example("event-error.json"), None).unwrap(),
            VonageEvent::Error { .. }
        ));
    }

    #[test]
    fn parses_input_examples() {
        let one = parse_input(&example("input-digit-1.json"), None).unwrap();
        assert_eq!((one.digits.as_str(), one.timed_out), ("1", false));
        let none = parse_input(&example("input-timed-out.json"), None).unwrap();
        assert_eq!((none.digits.as_str(), none.timed_out), ("", true));
        let legacy = parse_input(
            br#"{"uuid":"u","dtmf":{"digits":null,"timed_out":"1"}}"#,
            None,
        )
        .unwrap();
        assert_eq!((legacy.digits.as_str(), legacy.timed_out), ("", true));
        let number = parse_input(br#"{"uuid":"u","dtmf":{"digits":1}}"#, None).unwrap();
        assert_eq!(number.digits, "1");
    }

    #[test]
    fn refuses_malformed_webhooks() {
        assert!(matches!(
            parse_event(b"not json", None),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse_event(b"[1,2]", None),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse_event(b"{}", None),
            Err(WebhookError::Missing(_))
        ));
        assert!(matches!(
            parse_event(br#"{"uuid":"u\r\nforged","status":"ringing"}"#, None),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            parse_input(b"{\"dtmf\":{}}", None),
            Err(WebhookError::Missing(_))
        ));
        for bad in [
            &br#"{"uuid":"u","dtmf":"1"}"#[..],
            br#"{"uuid":"u","dtmf":{"digits":["1"]}}"#,
            br#"{"uuid":"u","dtmf":{"digits":"1","timed_out":"maybe"}}"#,
            br#"{"uuid":"u","dtmf":{"digits":"123456789012345678901"}}"#,
            br#"{"uuid":"u\n2026-12-03T10:00:00Z ERROR forged","dtmf":{"digits":"1"}}"#,
        ] {
            assert!(
                matches!(parse_input(bad, None), Err(WebhookError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn cx(speech: bool) -> ReplyContext<'static> {
        ReplyContext {
            answer_url: "https://x/api/alerts/call-response?call=1",
            language: "en-GB",
            speech,
            caller_id: "447700900001",
        }
    }

    #[test]
    fn ncco_prompt_matches_the_documented_shape() {
        let v = ncco(&Reply::Prompt { text: "Hi".into() }, &cx(false));
        assert_eq!(v[0]["action"], "talk");
        assert_eq!(v[0]["bargeIn"], true);
        assert_eq!(v[1]["action"], "input");
        assert_eq!(v[1]["type"], json!(["dtmf"]));
        assert_eq!(v[1]["dtmf"]["maxDigits"], 1);
        assert!(v[1]["eventUrl"].is_array());
        assert!(v[1].get("speech").is_none());
        let bye = ncco(&Reply::Say { text: "Bye".into() }, &cx(false));
        assert_eq!(bye.as_array().unwrap().len(), 1);
        assert!(bye[0].get("bargeIn").is_none());
    }

    #[test]
    fn ncco_listens_connects_and_conferences() {
        let v = ncco(&Reply::Prompt { text: "Hi".into() }, &cx(true));
        assert_eq!(v[1]["type"], json!(["dtmf", "speech"]));
        assert_eq!(v[1]["speech"]["language"], "en-GB");
        assert!(v[1]["speech"]["context"].as_array().unwrap().len() > 3);
        let sip = ncco(
            &Reply::Connect {
                text: "Connecting".into(),
                to: Destination::Sip("sip:room2@intercom.example.org".into()),
            },
            &cx(true),
        );
        assert_eq!(sip[1]["action"], "connect");
        assert_eq!(
            sip[1]["endpoint"],
            json!([{"type": "sip", "uri": "sip:room2@intercom.example.org"}])
        );
        assert_eq!(sip[1]["from"], "447700900001");
        assert_eq!(sip[1]["timeout"], CONNECT_RING_SECS);
        // When the room's leg ends (or never answers), the nurse is told, not left in silence.
        assert_eq!(sip.as_array().unwrap().len(), 3);
        assert_eq!(sip[2]["action"], "talk");
        assert_eq!(sip[2]["text"], menu::CONNECTION_ENDED);
        assert_eq!(sip[2]["language"], "en-GB");
        assert!(
            sip[2].get("bargeIn").is_none(),
            "no input follows a connect"
        );
        let phone = ncco(
            &Reply::Connect {
                text: "Connecting".into(),
                to: Destination::Phone(crate::domain::phone::Phone::parse("+13855550107").unwrap()),
            },
            &cx(true),
        );
        assert_eq!(
            phone[1]["endpoint"],
            json!([{"type": "phone", "number": "13855550107"}])
        );
        let conf = ncco(
            &Reply::Conference {
                text: "Joining".into(),
                name: "alertcall-a1".into(),
            },
            &cx(true),
        );
        assert_eq!(conf[1]["action"], "conversation");
        assert_eq!(conf[1]["name"], "alertcall-a1");
    }

    #[test]
    fn parses_speech_results() {
        let body = br#"{"uuid":"u","dtmf":{"digits":null,"timed_out":false},
            "speech":{"timeout_reason":"end_on_silence_timeout","results":[
              {"confidence":"0.9405097","text":"on my way"},
              {"confidence":0.7,"text":"on my whey"},
              {"confidence":"n/a","text":"on my weigh"},
              {"text":5},
              "junk"
            ]}}"#;
        let input = parse_input(body, None).unwrap();
        assert_eq!(input.digits, "");
        assert_eq!(
            input.speech,
            vec![
                SpeechResult {
                    text: "on my way".into(),
                    confidence: Some(0.9405097)
                },
                SpeechResult {
                    text: "on my whey".into(),
                    confidence: Some(0.7)
                },
                SpeechResult {
                    text: "on my weigh".into(),
                    confidence: None
                },
            ]
        );
        let none = parse_input(br#"{"uuid":"u","speech":{"error":"ERR1"}}"#, None).unwrap();
        assert!(none.speech.is_empty());
        for bad in [
            &br#"{"uuid":"u","speech":"yes"}"#[..],
            br#"{"uuid":"u","speech":{"results":"yes"}}"#,
        ] {
            assert!(matches!(
                parse_input(bad, None),
                Err(WebhookError::Malformed(_))
            ));
        }
    }

    fn sign(claims: Value, secret: &str) -> String {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        format!("Bearer {token}")
    }

    #[test]
    fn signature_checks() {
        let body = br#"{"uuid":"u","status":"ringing"}"#;
        let now = Utc::now();
        let hash = hex(&Sha256::digest(body));
        let good = sign(
            json!({"iat": now.timestamp(), "jti": "j", "iss": "Vonage", "payload_hash": hash}),
            "s3cret",
        );
        let max = Duration::from_secs(300);
        assert_eq!(
            verify_signature(Some(&good), body, "s3cret", max, now),
            Ok(())
        );
        let cases = [
            (None, &body[..], "s3cret"),
            (
                Some(good.as_str()),
                &br#"{"uuid":"u","status":"answered"}"#[..],
                "s3cret",
            ),
            (Some(good.as_str()), &body[..], "other"),
            (Some("Basic abc"), &body[..], "s3cret"),
            (Some("Bearer not.a.jwt"), &body[..], "s3cret"),
        ];
        for (auth, b, secret) in cases {
            assert!(
                verify_signature(auth, b, secret, max, now).is_err(),
                "{auth:?} {secret}"
            );
        }
        let old = sign(
            json!({"iat": now.timestamp() - 3600, "payload_hash": hex(&Sha256::digest(body))}),
            "s3cret",
        );
        assert!(verify_signature(Some(&old), body, "s3cret", max, now).is_err());
        let no_hash = sign(json!({"iat": now.timestamp()}), "s3cret");
        assert!(verify_signature(Some(&no_hash), body, "s3cret", max, now).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// JSON-ish values of every type, nested, with unicode and numbers-as-strings.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(|n| json!(n)),
                any::<f64>().prop_map(|n| json!(n)),
                ".{0,40}".prop_map(Value::String),
                "[0-9]{0,25}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::hash_map(
                        prop_oneof![
                            Just("uuid".to_string()),
                            Just("status".to_string()),
                            Just("dtmf".to_string()),
                            Just("digits".to_string()),
                            Just("timed_out".to_string()),
                            Just("call_uuid".to_string()),
                            Just("reason".to_string()),
                            Just("speech".to_string()),
                            Just("results".to_string()),
                            Just("text".to_string()),
                            Just("confidence".to_string()),
                            ".{0,8}".prop_map(String::from),
                        ],
                        inner,
                        0..6
                    )
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn parsers_never_panic_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
                let _ = parse_event(&body, None);
                let _ = parse_input(&body, None);
            }

            #[test]
            fn parsers_never_panic_on_json(value in json_value()) {
                let body = value.to_string();
                let _ = parse_event(body.as_bytes(), None);
                if let Ok(input) = parse_input(body.as_bytes(), None) {
                    prop_assert!(input.digits.len() <= 20);
                    prop_assert!(input.speech.len() <= MAX_SPEECH_RESULTS);
                    prop_assert!(input.speech.iter().all(|r| r.confidence.is_none_or(|c| (0.0..=1.0).contains(&c))));
                    prop_assert!(!input.provider_call_id.is_empty());
                }
            }

            #[test]
            fn random_signatures_are_refused(
                header in ".{0,200}",
                body in prop::collection::vec(any::<u8>(), 0..128),
            ) {
                let now = Utc::now();
                let max = Duration::from_secs(300);
                prop_assert!(verify_signature(Some(&header), &body, "s3cret", max, now).is_err());
                let bearer = format!("Bearer {header}");
                prop_assert!(verify_signature(Some(&bearer), &body, "s3cret", max, now).is_err());
            }

            #[test]
            fn a_signature_covers_every_byte(body in prop::collection::vec(any::<u8>(), 1..128), flip in any::<usize>()) {
                let now = Utc::now();
                let max = Duration::from_secs(300);
                let auth = sign(json!({"iat": now.timestamp(), "payload_hash": hex(&Sha256::digest(&body))}), "s3cret");
                prop_assert!(verify_signature(Some(&auth), &body, "s3cret", max, now).is_ok());
                let mut tampered = body.clone();
                let i = flip % tampered.len();
                tampered[i] ^= 0x01;
                prop_assert!(verify_signature(Some(&auth), &tampered, "s3cret", max, now).is_err());
            }
        }
    }
}
