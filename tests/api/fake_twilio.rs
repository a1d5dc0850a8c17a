//! A local fake of Twilio's 2010-04-01 REST API (Calls, Messages). It checks every request
//! against `shared/contracts/twilio` (twilio_api_v2010.yaml's CreateCall, UpdateCall and
//! CreateMessage forms; NOTES.md §1–5: HTTP Basic, form encoding, E.164 with `+`, the
//! TwiML's structure) and records it; it answers as a test scripts it (201, an error
//! status, a hang, a dropped connection); and it calls alertcall's webhooks back, signed
//! with the Auth Token as Twilio signs them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::json;

pub use crate::fake_vonage::Behaviour;

pub const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const AUTH_TOKEN: &str = "0123456789abcdef0123456789abcdef";
pub const FROM_NUMBER: &str = "+447700900002";

/// twilio_api_v2010.yaml, `CreateCall`'s form: every parameter it defines.
const CREATE_CALL_PARAMS: &[&str] = &[
    "ApplicationSid",
    "AsyncAmd",
    "AsyncAmdStatusCallback",
    "AsyncAmdStatusCallbackMethod",
    "Byoc",
    "CallReason",
    "CallToken",
    "CallerId",
    "ClientNotificationUrl",
    "FallbackMethod",
    "FallbackUrl",
    "From",
    "MachineDetection",
    "MachineDetectionSilenceTimeout",
    "MachineDetectionSpeechEndThreshold",
    "MachineDetectionSpeechThreshold",
    "MachineDetectionTimeout",
    "Method",
    "Record",
    "RecordingChannels",
    "RecordingStatusCallback",
    "RecordingStatusCallbackEvent",
    "RecordingStatusCallbackMethod",
    "RecordingTrack",
    "SendDigits",
    "SipAuthPassword",
    "SipAuthUsername",
    "StatusCallback",
    "StatusCallbackEvent",
    "StatusCallbackMethod",
    "TimeLimit",
    "Timeout",
    "To",
    "Trim",
    "Twiml",
    "Url",
];
/// `UpdateCall`'s form.
const UPDATE_CALL_PARAMS: &[&str] = &[
    "FallbackMethod",
    "FallbackUrl",
    "Method",
    "Status",
    "StatusCallback",
    "StatusCallbackMethod",
    "TimeLimit",
    "Twiml",
    "Url",
];
/// `CreateMessage`'s form.
const CREATE_MESSAGE_PARAMS: &[&str] = &[
    "AddressRetention",
    "ApplicationSid",
    "Attempt",
    "Body",
    "ContentRetention",
    "ContentSid",
    "ContentVariables",
    "FallbackFrom",
    "ForceDelivery",
    "From",
    "MaxPrice",
    "MediaUrl",
    "MessagingServiceSid",
    "PersistentAction",
    "ProvideFeedback",
    "RiskCheck",
    "ScheduleType",
    "SendAsMms",
    "SendAt",
    "ShortenUrls",
    "SmartEncoded",
    "StatusCallback",
    "To",
    "TrafficType",
    "ValidityPeriod",
];

pub type Form = Vec<(String, String)>;

/// The first value of `name` in a form.
pub fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One create-call request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub form: Form,
    pub answered: u16,
    pub sid: Option<String>,
}

impl Received {
    pub fn get(&self, name: &str) -> Option<&str> {
        field(&self.form, name)
    }

    /// The call's TwiML, parsed.
    pub fn twiml(&self) -> Node {
        parse_twiml(self.get("Twiml").expect("inline Twiml")).expect("TwiML parses")
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Behaviour>,
    count: usize,
    received: Vec<Received>,
    hangups: Vec<String>,
    messages: Vec<Form>,
    violations: Vec<String>,
    /// The next SequenceNumber of each call's status callbacks.
    sequence: HashMap<String, u32>,
}

#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

type Shared = State<Arc<Mutex<Inner>>>;

impl FakeTwilio {
    pub async fn start() -> FakeTwilio {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Calls.json", post(create_call))
            .route("/2010-04-01/Accounts/{account}/Calls/{sid}", post(update_call))
            .route("/2010-04-01/Accounts/{account}/Messages.json", post(create_message))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"code": 20404, "message": "The requested resource was not found", "status": 404})),
                )
            })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeTwilio { url, inner }
    }

    /// Answers the next create-call requests as scripted, then with 201 again.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.inner.lock().unwrap().script.extend(behaviours);
    }

    /// Reads what the fake has recorded.
    fn with<T>(&self, read: impl FnOnce(&Inner) -> T) -> T {
        read(&self.inner.lock().unwrap())
    }

    /// Every create-call request, whatever it was answered.
    pub fn received(&self) -> Vec<Received> {
        self.with(|i| i.received.clone())
    }

    /// Calls that exist (answered 201).
    pub fn calls(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered == 201)
            .collect()
    }

    /// Calls hung up (`Status=completed`), by sid.
    pub fn hangups(&self) -> Vec<String> {
        self.with(|i| i.hangups.clone())
    }

    /// Texts sent, each with the `Sid` the fake gave it.
    pub fn messages(&self) -> Vec<Form> {
        self.with(|i| i.messages.clone())
    }

    /// Every way a request broke the contract. Tests assert this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.with(|i| i.violations.clone())
    }

    /// The environment an alertcall instance needs to call this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ALERTCALL_PROVIDER", "twilio".into()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT_SID.into()),
            ("TWILIO_AUTH_TOKEN", AUTH_TOKEN.into()),
            ("TWILIO_FROM_NUMBER", FROM_NUMBER.into()),
            ("TWILIO_API_URL", self.url.clone()),
            ("NURSE_PHONE_NUMBER", "+13854019951".into()),
        ]
    }

    /// Twilio's standard parameters on a voice webhook about `call`.
    fn voice_params(&self, call: &Received, status: &str) -> Form {
        let pairs = [
            ("CallSid", call.sid.clone().expect("a placed call")),
            ("AccountSid", ACCOUNT_SID.to_string()),
            ("From", call.get("From").unwrap_or_default().to_string()),
            ("To", call.get("To").unwrap_or_default().to_string()),
            ("Called", call.get("To").unwrap_or_default().to_string()),
            ("Caller", call.get("From").unwrap_or_default().to_string()),
            ("Direction", "outbound-api".to_string()),
            ("ApiVersion", "2010-04-01".to_string()),
            ("CallStatus", status.to_string()),
            ("ToCountry", "US".to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Posts the call's status callback for `status` (with `extra` parameters), signed, with
    /// the call's next SequenceNumber.
    pub async fn status(
        &self,
        http: &reqwest::Client,
        call: &Received,
        status: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let sid = call.sid.clone().unwrap();
        let sequence = {
            let mut inner = self.inner.lock().unwrap();
            let n = inner.sequence.entry(sid).or_insert(0);
            *n += 1;
            *n - 1
        };
        let mut form = self.voice_params(call, status);
        form.push(("CallbackSource".into(), "call-progress-events".into()));
        form.push(("SequenceNumber".into(), sequence.to_string()));
        form.push((
            "Timestamp".into(),
            chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S +0000")
                .to_string(),
        ));
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let url = call
            .get("StatusCallback")
            .expect("StatusCallback")
            .to_string();
        post_form(http, &url, &form, Some(AUTH_TOKEN)).await
    }

    /// Posts what `<Gather>` collected (`Digits`, or `SpeechResult`/`Confidence` in `extra`)
    /// to the action of `twiml` (the call's, or a later reply's); returns the status and the
    /// reply TwiML.
    pub async fn gather(
        &self,
        http: &reqwest::Client,
        call: &Received,
        twiml: &Node,
        digits: &str,
        extra: &[(&str, &str)],
    ) -> (u16, String) {
        let action = twiml
            .find("Gather")
            .and_then(|g| g.attr("action"))
            .expect("a Gather with an action")
            .to_string();
        let mut form = self.voice_params(call, "in-progress");
        form.push(("Digits".into(), digits.into()));
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let response = post_form(http, &action, &form, Some(AUTH_TOKEN)).await;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

/// POSTs a form webhook to `url`, signed with `token` as Twilio signs it (unsigned with
/// `None`).
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &Form,
    token: Option<&str>,
) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            alertcall::telephony::twilio::signature::sign(token, url, form),
        );
    }
    request.send().await.expect("POST webhook")
}

fn parse_body(body: &[u8]) -> Form {
    url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// NOTES.md §1: HTTP Basic with the Account SID (or an `SK` API key) and its secret, the
/// Account SID in the path, a form body, only the operation's parameters.
fn check_request(
    headers: &HeaderMap,
    account: &str,
    form: &Form,
    allowed: &[&str],
) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    if account != ACCOUNT_SID {
        out.push(format!(
            "the path's AccountSid {account:?} is not the account"
        ));
    }
    if headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.starts_with("application/x-www-form-urlencoded"))
    {
        out.push("Content-Type must be application/x-www-form-urlencoded".into());
    }
    for (name, _) in form {
        if !allowed.contains(&name.as_str()) {
            out.push(format!("{name} is not a parameter of this operation"));
        }
    }
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let authorised = credentials.as_deref() == Some(&format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    (out, authorised)
}

fn e164(value: Option<&str>) -> bool {
    value.is_some_and(|n| {
        n.strip_prefix('+')
            .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn absolute_url(value: Option<&str>) -> bool {
    value.is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
}

/// NOTES.md §2 and §4: CreateCall's form and the menu's TwiML.
fn check_create_call(form: &Form) -> Vec<String> {
    let mut out = Vec::new();
    let mut need = |ok: bool, what: &str| {
        if !ok {
            out.push(what.to_string());
        }
    };
    need(e164(field(form, "To")), "To must be E.164 with +");
    need(e164(field(form, "From")), "From must be E.164 with +");
    need(
        field(form, "Twiml").is_some() != field(form, "Url").is_some(),
        "exactly one of Twiml and Url",
    );
    need(
        absolute_url(field(form, "StatusCallback")),
        "StatusCallback must be an absolute URL",
    );
    let events: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "StatusCallbackEvent")
        .map(|(_, v)| v.as_str())
        .collect();
    need(
        events
            .iter()
            .all(|e| ["initiated", "ringing", "answered", "completed"].contains(e)),
        "StatusCallbackEvent must be initiated, ringing, answered or completed",
    );
    need(
        ["initiated", "ringing", "answered", "completed"]
            .iter()
            .all(|e| events.contains(e)),
        "alertcall subscribes to all four call events",
    );
    need(
        field(form, "StatusCallbackMethod").is_none_or(|m| m == "POST" || m == "GET"),
        "StatusCallbackMethod must be GET or POST",
    );
    need(
        field(form, "Timeout")
            .is_none_or(|t| t.parse::<u32>().is_ok_and(|t| (1..=600).contains(&t))),
        "Timeout must be 1 to 600 seconds",
    );
    need(
        field(form, "MachineDetection").is_none_or(|m| m == "Enable" || m == "DetectMessageEnd"),
        "MachineDetection must be Enable or DetectMessageEnd",
    );
    if let Some(twiml) = field(form, "Twiml") {
        need(twiml.len() <= 4000, "Twiml is at most 4000 characters");
        match parse_twiml(twiml) {
            Ok(doc) => out.extend(check_menu(&doc)),
            Err(e) => out.push(format!("Twiml does not parse: {e}")),
        }
    }
    out
}

/// NOTES.md §4: `<Gather input="dtmf[ speech]" numDigits="1" action=absolute
/// actionOnEmptyResult="true">` wrapping the whole `<Say>`.
pub fn check_menu(doc: &Node) -> Vec<String> {
    let mut out = Vec::new();
    if doc.name != "Response" {
        out.push("the TwiML root must be <Response>".into());
    }
    let Some(gather) = doc.children.iter().find(|c| c.name == "Gather") else {
        out.push("the menu must be a <Gather>".into());
        return out;
    };
    if !gather
        .attr("input")
        .is_some_and(|i| i == "dtmf" || i == "dtmf speech")
    {
        out.push("Gather input must be dtmf or \"dtmf speech\"".into());
    }
    if gather.attr("numDigits") != Some("1") {
        out.push("Gather numDigits must be 1".into());
    }
    if gather.attr("actionOnEmptyResult") != Some("true") {
        out.push("Gather must post even when nothing was pressed".into());
    }
    if !absolute_url(gather.attr("action")) {
        out.push("Gather action must be an absolute URL".into());
    }
    if gather
        .attr("method")
        .is_some_and(|m| m != "POST" && m != "GET")
    {
        out.push("Gather method must be GET or POST".into());
    }
    if !gather
        .children
        .iter()
        .any(|c| c.name == "Say" && !c.text.is_empty())
    {
        out.push("the Say must be inside the Gather".into());
    }
    if doc
        .children
        .iter()
        .take_while(|c| c.name != "Gather")
        .any(|c| c.name == "Say")
    {
        out.push("no Say before the Gather: a key pressed during it would be lost".into());
    }
    out
}

async fn create_call(
    State(inner): Shared,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_body(&body);
    let (mut violations, authorised) = check_request(&headers, &account, &form, CREATE_CALL_PARAMS);
    violations.extend(check_create_call(&form));
    let behaviour = {
        let mut inner = inner.lock().unwrap();
        inner.violations.extend(violations.iter().cloned());
        inner.count += 1;
        inner.script.pop_front().unwrap_or(Behaviour::Created)
    };
    let record = |answered: u16, sid: Option<String>| {
        inner.lock().unwrap().received.push(Received {
            form: form.clone(),
            answered,
            sid,
        });
    };
    if !authorised {
        record(401, None);
        return error(401, 20003, "Authenticate");
    }
    if !violations.is_empty() {
        record(400, None);
        return error(400, 21211, &violations.join("; "));
    }
    let behaviour = behaviour.after_any_delay().await;
    match behaviour {
        Behaviour::Created | Behaviour::Slow(_) => {
            let sid = format!("CA{}", uuid::Uuid::new_v4().simple());
            record(201, Some(sid.clone()));
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "sid": sid, "account_sid": ACCOUNT_SID, "status": "queued",
                    "to": field(&form, "To"), "from": field(&form, "From"),
                    "direction": "outbound-api", "api_version": "2010-04-01",
                    "answered_by": null, "queue_time": "0", "duration": null,
                    "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"),
                })),
            )
                .into_response()
        }
        failure => {
            failure
                .fail(
                    |code| record(code, None),
                    |code| match code {
                        401 => error(401, 20003, "Authenticate"),
                        429 => error(429, 20429, "Too Many Requests"),
                        400 => error(400, 21211, "The 'To' number is not a valid phone number."),
                        _ => error(code, 20500, "Internal Server Error"),
                    },
                )
                .await
        }
    }
}

/// Twilio's answer to a request with the wrong credentials (401), or one that breaks the
/// contract (400 with `code`, recorded as violations); `None` when it is fine.
fn refuse(
    inner: &mut Inner,
    authorised: bool,
    violations: Vec<String>,
    code: u32,
) -> Option<Response> {
    if !authorised {
        return Some(error(401, 20003, "Authenticate"));
    }
    if violations.is_empty() {
        return None;
    }
    let message = violations.join("; ");
    inner.violations.extend(violations);
    Some(error(400, code, &message))
}

/// Twilio's legacy error body (NOTES.md §2).
fn error(status: u16, code: u32, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({
            "code": code, "message": message, "status": status,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        })),
    )
        .into_response()
}

/// UpdateCall: `Status=completed` ends a call (200).
async fn update_call(
    State(inner): Shared,
    Path((account, sid)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_body(&body);
    let (mut violations, authorised) = check_request(&headers, &account, &form, UPDATE_CALL_PARAMS);
    let Some(sid) = sid.strip_suffix(".json") else {
        return error(404, 20404, "not found");
    };
    if !matches!(field(&form, "Status"), Some("completed" | "canceled")) {
        violations.push("UpdateCall Status must be completed or canceled".into());
    }
    let mut inner = inner.lock().unwrap();
    if let Some(refused) = refuse(&mut inner, authorised, violations, 21220) {
        return refused;
    }
    if field(&form, "Status") == Some("completed") {
        inner.hangups.push(sid.to_string());
    }
    (
        StatusCode::OK,
        axum::Json(json!({"sid": sid, "status": "completed"})),
    )
        .into_response()
}

/// CreateMessage (NOTES.md §5): 201 with an `SM` sid.
async fn create_message(
    State(inner): Shared,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut form = parse_body(&body);
    let (mut violations, authorised) =
        check_request(&headers, &account, &form, CREATE_MESSAGE_PARAMS);
    if !e164(field(&form, "To")) || !e164(field(&form, "From")) {
        violations.push("messages: To and From must be E.164 with +".into());
    }
    if field(&form, "Body").is_none_or(|b| b.is_empty() || b.chars().count() > 1600) {
        violations.push("messages: Body is 1 to 1600 characters".into());
    }
    if !absolute_url(field(&form, "StatusCallback")) {
        violations.push("messages: StatusCallback must be an absolute URL".into());
    }
    let mut inner = inner.lock().unwrap();
    if let Some(refused) = refuse(&mut inner, authorised, violations, 21602) {
        return refused;
    }
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    form.push(("Sid".into(), sid.clone()));
    inner.messages.push(form);
    (
        StatusCode::CREATED,
        axum::Json(json!({"sid": sid, "status": "queued", "account_sid": ACCOUNT_SID})),
    )
        .into_response()
}

/// A TwiML element: its name, attributes, text and children.
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first element named `name`, depth first.
    pub fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// The child elements' names, in order.
    pub fn verbs(&self) -> Vec<&str> {
        self.children.iter().map(|c| c.name.as_str()).collect()
    }

    /// Everything the document says, in order.
    pub fn said(&self) -> String {
        let mut out = String::new();
        if self.name == "Say" {
            out.push_str(&self.text);
        }
        for c in &self.children {
            out.push_str(&c.said());
        }
        out
    }
}

/// Parses a TwiML document with quick-xml into a tree.
pub fn parse_twiml(text: &str) -> Result<Node, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = vec![Node::default()];
    let element = |e: &quick_xml::events::BytesStart| -> Result<Node, String> {
        let mut node = Node {
            name: String::from_utf8_lossy(e.name().as_ref()).into_owned(),
            ..Node::default()
        };
        for a in e.attributes() {
            let a = a.map_err(|e| e.to_string())?;
            node.attrs.push((
                String::from_utf8_lossy(a.key.as_ref()).into_owned(),
                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                    .map_err(|e| e.to_string())?
                    .into_owned(),
            ));
        }
        Ok(node)
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => stack.push(element(&e)?),
            Event::Empty(e) => {
                let node = element(&e)?;
                stack.last_mut().unwrap().children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced")?;
                stack.last_mut().ok_or("unbalanced")?.children.push(node);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| e.to_string())?;
                stack.last_mut().unwrap().text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let c = match &*r.decode().map_err(|e| e.to_string())? {
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => r
                        .resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .ok_or("unknown entity")?,
                };
                stack.last_mut().unwrap().text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut root = stack.pop().ok_or("empty")?;
    if !stack.is_empty() || root.children.len() != 1 {
        return Err("one root element expected".into());
    }
    Ok(root.children.remove(0))
}
