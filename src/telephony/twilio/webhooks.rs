//! Twilio's webhooks: call progress (`StatusCallback`), the menu's answer (`<Gather>`
//! action), inbound texts and their delivery status. Every one is verified with
//! `X-Twilio-Signature` over the URL alertcall gave Twilio (rebuilt from
//! `ALERTCALL_PUBLIC_URL`, not from the `Host` header) before anything is read from it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use uuid::Uuid;

use super::signature;
use super::twiml;
use crate::config::{ProviderConfig, TwilioConfig};
use crate::domain::call::{CallEvent, CallEventKind, InputEvent};
use crate::domain::intent::SpeechResult;
use crate::engine::Source;
use crate::http::webhooks::{log_refusal, media_type_is, unauthorized};
use crate::http::{AppState, HttpError};

/// Where Twilio's webhooks are mounted.
pub const PREFIX: &str = "/webhooks/twilio";
pub const STATUS: &str = "/status";
pub const GATHER: &str = "/gather";
pub const SMS: &str = "/sms";
pub const SMS_STATUS: &str = "/sms-status";

/// Parameters kept from one request, and the longest value kept.
const MAX_PARAMS: usize = 100;
const MAX_VALUE_CHARS: usize = 2000;

/// Twilio's routes, each verified; mounted when Twilio is the provider.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{PREFIX}{STATUS}"), post(status))
        .route(&format!("{PREFIX}{GATHER}"), post(gather))
        .route(&format!("{PREFIX}{SMS}"), post(inbound_sms))
        .route(&format!("{PREFIX}{SMS_STATUS}"), post(sms_status))
}

/// The kind of webhook at `path`, for `alertcall_webhooks_total`.
pub fn kind(path: &str) -> Option<&'static str> {
    Some(match path.strip_prefix(PREFIX)? {
        STATUS => "call_event",
        GATHER => "call_input",
        SMS => "sms_inbound",
        SMS_STATUS => "sms_status",
        _ => return None,
    })
}

/// Why a webhook's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("the webhook has no {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Malformed(String),
}

/// A form as Twilio sends it: every value a string, repeated names kept.
pub type Params = Vec<(String, String)>;

/// Reads a form body, bounded.
pub fn parse_form(body: &[u8]) -> Result<Params, FormError> {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if params.len() > MAX_PARAMS {
        return Err(FormError::Malformed(format!(
            "more than {MAX_PARAMS} parameters"
        )));
    }
    if params
        .iter()
        .any(|(k, v)| k.len() > 100 || v.chars().count() > MAX_VALUE_CHARS)
    {
        return Err(FormError::Malformed("a parameter is too long".into()));
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An id Twilio made (`CA…`, `SM…`): logged and stored, so short and plain.
fn sid(params: &[(String, String)], name: &'static str) -> Result<String, FormError> {
    let value = param(params, name).ok_or(FormError::Missing(name))?;
    if value.is_empty() || value.len() > 64 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FormError::Malformed(format!(
            "{name} must be 1 to 64 letters and digits"
        )));
    }
    Ok(value.to_string())
}

/// A status callback as the events the engine applies: the call's status, then what
/// machine detection said when it came with it (`AnsweredBy`).
pub fn parse_status(
    params: &[(String, String)],
    call: Option<Uuid>,
) -> Result<Vec<CallEvent>, FormError> {
    let provider_call_id = sid(params, "CallSid")?;
    let status = param(params, "CallStatus").ok_or(FormError::Missing("CallStatus"))?;
    let kind = match status {
        "initiated" => CallEventKind::Started,
        "ringing" => CallEventKind::Ringing,
        "in-progress" => CallEventKind::PickedUp,
        "completed" => CallEventKind::Completed,
        "busy" => CallEventKind::Busy,
        "failed" => CallEventKind::Failed,
        "no-answer" => CallEventKind::Unanswered,
        "canceled" => CallEventKind::Cancelled,
        "queued" => CallEventKind::Other,
        other => {
            return Err(FormError::Malformed(format!(
                "CallStatus {:?} is not one of Twilio's call statuses",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let at = param(params, "SequenceNumber")
        .or(param(params, "Timestamp"))
        .map(|s| s.chars().take(64).collect());
    let detail = param(params, "SipResponseCode")
        .filter(|_| kind != CallEventKind::PickedUp)
        .map(|code| format!("sip {}", code.chars().take(8).collect::<String>()));
    let event = |kind, detail| CallEvent {
        provider_call_id: provider_call_id.clone(),
        call_id: call,
        kind,
        detail,
        at: at.clone(),
    };
    let mut events = vec![event(kind, detail)];
    // Anything but `human` is not a person (machine_start, machine_end_*, fax); `unknown`
    // says nothing.
    match param(params, "AnsweredBy") {
        Some("human") => events.push(event(CallEventKind::Human, None)),
        Some("unknown") | None => {}
        Some(other) => events.push(event(
            CallEventKind::Machine,
            Some(other.chars().take(32).collect()),
        )),
    }
    Ok(events)
}

/// The `<Gather>` action: the key pressed (`Digits`), or what was said (`SpeechResult`,
/// `Confidence`), or neither (`actionOnEmptyResult`).
pub fn parse_gather(
    params: &[(String, String)],
    call: Option<Uuid>,
) -> Result<InputEvent, FormError> {
    let provider_call_id = sid(params, "CallSid")?;
    let digits = param(params, "Digits").unwrap_or_default();
    if digits.len() > 20
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        return Err(FormError::Malformed(
            "Digits must be up to 20 keys (0-9, * and #)".into(),
        ));
    }
    let speech: Vec<SpeechResult> = param(params, "SpeechResult")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|text| SpeechResult {
            text: text.chars().take(500).collect(),
            confidence: param(params, "Confidence")
                .and_then(|c| c.trim().parse::<f64>().ok())
                .filter(|c| (0.0..=1.0).contains(c)),
        })
        .into_iter()
        .collect();
    Ok(InputEvent {
        provider_call_id,
        call_id: call,
        timed_out: digits.is_empty() && speech.is_empty(),
        digits: digits.to_string(),
        speech,
        at: None,
    })
}

/// An inbound text: who sent what.
pub fn parse_inbound_sms(params: &[(String, String)]) -> Result<(String, String), FormError> {
    let from = param(params, "From").ok_or(FormError::Missing("From"))?;
    if from.is_empty() || from.len() > 32 || from.chars().any(char::is_control) {
        return Err(FormError::Malformed("From must be a phone number".into()));
    }
    Ok((
        from.to_string(),
        param(params, "Body").unwrap_or_default().to_string(),
    ))
}

/// A message status callback: the message and its new status.
pub fn parse_sms_status(params: &[(String, String)]) -> Result<(String, String), FormError> {
    let id = sid(params, "MessageSid")?;
    let status = param(params, "MessageStatus").ok_or(FormError::Missing("MessageStatus"))?;
    if status.is_empty()
        || status.len() > 32
        || !status.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(FormError::Malformed(
            "MessageStatus must be one of Twilio's message statuses".into(),
        ));
    }
    Ok((id, status.to_string()))
}

fn twilio(state: &AppState) -> Result<&TwilioConfig, HttpError> {
    match &state.engine.config.provider {
        ProviderConfig::Twilio(t) => Ok(t),
        _ => Err(unauthorized("Twilio is not this instance's provider")),
    }
}

/// The verified form of a Twilio webhook, and the call its URL names.
fn verified(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Params, Option<Uuid>), HttpError> {
    let config = twilio(state)?;
    if let Err(content_type) = media_type_is(headers, "application/x-www-form-urlencoded") {
        log_refusal("not a form", &format_args!("Content-Type {content_type:?}"));
        return Err(HttpError::UnsupportedMedia(
            "Twilio webhooks must be sent as Content-Type: application/x-www-form-urlencoded"
                .into(),
        ));
    }
    let params = parse_form(body).map_err(bad_request)?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let url = format!("{}{path}", state.engine.config.public_url);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    signature::verify(
        config.auth_token.expose(),
        &url,
        &params,
        header("x-twilio-signature"),
        header("x-twilio-webhooks-signature-settings"),
    )
    .map_err(|e| unauthorized(e.to_string()))?;
    if param(&params, "AccountSid").is_some_and(|a| a != config.account_sid) {
        return Err(unauthorized("the webhook is for another Twilio account"));
    }
    let call = match uri.query() {
        None => None,
        Some(query) => url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "call")
            .map(|(_, v)| {
                Uuid::parse_str(&v)
                    .map_err(|_| bad_request(FormError::Malformed("call is not a call id".into())))
            })
            .transpose()?,
    };
    Ok((params, call))
}

fn bad_request(e: FormError) -> HttpError {
    log_refusal("malformed", &e);
    HttpError::BadRequest(e.to_string())
}

fn source(state: &AppState) -> Source {
    Source::Network(state.engine.provider.name())
}

fn xml(doc: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], doc).into_response()
}

/// Call progress: only a fast 2xx is expected.
async fn status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let (params, call) = verified(&state, &uri, &headers, &body)?;
    for event in parse_status(&params, call).map_err(bad_request)? {
        state
            .engine
            .handle_call_event(&event, source(&state))
            .await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The menu's answer: replies with the TwiML that continues the call.
async fn gather(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let (params, call) = verified(&state, &uri, &headers, &body)?;
    let input = parse_gather(&params, call).map_err(bad_request)?;
    let turn = state.engine.handle_input(&input, source(&state)).await?;
    let config = twilio(&state)?;
    let urls = super::TwilioUrls::new(&state.engine.config.public_url);
    let action = match call {
        Some(id) => super::TwilioUrls::for_call(&urls.gather, id),
        None => urls.gather,
    };
    let cx = crate::telephony::ReplyContext {
        answer_url: &action,
        language: &turn.language,
        speech: state.engine.speech().0,
        caller_id: config.from_number.e164(),
    };
    Ok(xml(twiml::render(&turn.reply, &cx)))
}

/// An inbound text: "1" (with the alert's reference when several are open) acknowledges.
async fn inbound_sms(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let (params, _) = verified(&state, &uri, &headers, &body)?;
    let (from, text) = parse_inbound_sms(&params).map_err(bad_request)?;
    state.engine.handle_inbound_sms(&from, &text).await?;
    // Twilio expects TwiML back; an empty document sends no reply of its own.
    Ok(xml(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response></Response>"#.into(),
    ))
}

/// A message's delivery status.
async fn sms_status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let (params, _) = verified(&state, &uri, &headers, &body)?;
    let (id, status) = parse_sms_status(&params).map_err(bad_request)?;
    state.engine.handle_sms_status(&id, &status).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SID: &str = "CA0123456789abcdef0123456789abcdef";

    #[test]
    fn status_callbacks_map_onto_call_events() {
        let cases = [
            ("initiated", CallEventKind::Started),
            ("ringing", CallEventKind::Ringing),
            ("in-progress", CallEventKind::PickedUp),
            ("completed", CallEventKind::Completed),
            ("busy", CallEventKind::Busy),
            ("failed", CallEventKind::Failed),
            ("no-answer", CallEventKind::Unanswered),
            ("canceled", CallEventKind::Cancelled),
            ("queued", CallEventKind::Other),
        ];
        for (status, kind) in cases {
            let events = parse_status(
                &form(&[
                    ("CallSid", SID),
                    ("CallStatus", status),
                    ("SequenceNumber", "2"),
                ]),
                None,
            )
            .unwrap();
            assert_eq!(events.len(), 1);
            assert_eq!(events[0].kind, kind, "{status}");
            assert_eq!(events[0].at.as_deref(), Some("2"));
        }
        let answered = |by: &str| {
            parse_status(
                &form(&[
                    ("CallSid", SID),
                    ("CallStatus", "in-progress"),
                    ("AnsweredBy", by),
                ]),
                None,
            )
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect::<Vec<_>>()
        };
        assert_eq!(
            answered("human"),
            [CallEventKind::PickedUp, CallEventKind::Human]
        );
        assert_eq!(
            answered("machine_end_beep"),
            [CallEventKind::PickedUp, CallEventKind::Machine]
        );
        assert_eq!(
            answered("fax"),
            [CallEventKind::PickedUp, CallEventKind::Machine]
        );
        assert_eq!(answered("unknown"), [CallEventKind::PickedUp]);
    }

    #[test]
    fn refuses_malformed_callbacks() {
        assert_eq!(
            parse_status(&form(&[("CallStatus", "ringing")]), None),
            Err(FormError::Missing("CallSid"))
        );
        assert_eq!(
            parse_status(&form(&[("CallSid", SID)]), None),
            Err(FormError::Missing("CallStatus"))
        );
        for bad in ["CA\r\nforged", "", "CA/../x"] {
            assert!(matches!(
                parse_status(&form(&[("CallSid", bad), ("CallStatus", "ringing")]), None),
                Err(FormError::Malformed(_))
            ));
        }
        assert!(matches!(
            parse_status(
                &form(&[("CallSid", SID), ("CallStatus", "answered-ish")]),
                None
            ),
            Err(FormError::Malformed(_))
        ));
        assert!(matches!(
            parse_gather(&form(&[("CallSid", SID), ("Digits", "1x")]), None),
            Err(FormError::Malformed(_))
        ));
        assert!(matches!(
            parse_form("a=1&".repeat(MAX_PARAMS + 1).as_bytes()),
            Err(FormError::Malformed(_))
        ));
        assert!(matches!(
            parse_sms_status(&form(&[("MessageSid", "SM1"), ("MessageStatus", "<b>")])),
            Err(FormError::Malformed(_))
        ));
    }

    #[test]
    fn gather_reads_keys_speech_and_silence() {
        let one = parse_gather(&form(&[("CallSid", SID), ("Digits", "1")]), None).unwrap();
        assert_eq!((one.digits.as_str(), one.timed_out), ("1", false));
        let silence = parse_gather(&form(&[("CallSid", SID), ("Digits", "")]), None).unwrap();
        assert!(silence.timed_out);
        let said = parse_gather(
            &form(&[
                ("CallSid", SID),
                ("SpeechResult", "On my way."),
                ("Confidence", "0.92"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            said.speech,
            vec![SpeechResult {
                text: "On my way.".into(),
                confidence: Some(0.92)
            }]
        );
        assert!(!said.timed_out);
        let odd = parse_gather(
            &form(&[
                ("CallSid", SID),
                ("SpeechResult", "yes"),
                ("Confidence", "7"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(odd.speech[0].confidence, None);
    }

    #[test]
    fn webhook_kinds() {
        assert_eq!(kind("/webhooks/twilio/status"), Some("call_event"));
        assert_eq!(kind("/webhooks/twilio/gather"), Some("call_input"));
        assert_eq!(kind("/webhooks/twilio/sms"), Some("sms_inbound"));
        assert_eq!(kind("/webhooks/twilio/sms-status"), Some("sms_status"));
        assert_eq!(kind("/api/alerts/call-event"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsers_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(params) = parse_form(&body) {
                    let _ = parse_status(&params, None);
                    let _ = parse_gather(&params, None);
                    let _ = parse_inbound_sms(&params);
                    let _ = parse_sms_status(&params);
                }
            }

            #[test]
            fn parsed_input_is_bounded(digits in "[0-9*#]{0,20}", said in ".{0,600}", conf in ".{0,8}") {
                let p = form(&[("CallSid", SID), ("Digits", &digits), ("SpeechResult", &said), ("Confidence", &conf)]);
                let input = parse_gather(&p, None).unwrap();
                prop_assert!(input.speech.len() <= 1);
                prop_assert!(input.speech.iter().all(|r| r.text.chars().count() <= 500));
                prop_assert!(input.speech.iter().all(|r| r.confidence.is_none_or(|c| (0.0..=1.0).contains(&c))));
            }
        }
    }
}
