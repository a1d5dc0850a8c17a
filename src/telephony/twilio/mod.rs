//! Twilio Programmable Voice and Messaging: create calls with the menu as TwiML, hang up,
//! send texts, and take Twilio's signed webhooks. Shapes follow `shared/contracts/twilio`
//! (NOTES.md, twilio_api_v2010.yaml).

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{
    CallRequest, CredentialsSeen, PlacedCall, Provider, ProviderError, ReplyContext, SmsRequest,
};
use crate::config::TwilioConfig;

pub mod signature;
pub mod twiml;
pub mod webhooks;

/// The events Twilio reports to `StatusCallback` (each as its own `StatusCallbackEvent`).
pub const STATUS_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];
/// A call that is picked up ends after this long even if nobody hangs up (as on Vonage).
const TIME_LIMIT_SECS: u64 = 3600;
/// A text still queued at Twilio after this long is dropped: a stale alert text misleads.
const SMS_VALIDITY_SECS: u64 = 600;

/// Where Twilio posts what happens on our calls and texts: `{public}/webhooks/twilio/...`.
#[derive(Debug, Clone)]
pub struct TwilioUrls {
    pub status: String,
    pub gather: String,
    pub sms_status: String,
}

impl TwilioUrls {
    pub fn new(public_url: &str) -> TwilioUrls {
        let at = |path: &str| format!("{public_url}{}{path}", webhooks::PREFIX);
        TwilioUrls {
            status: at(webhooks::STATUS),
            gather: at(webhooks::GATHER),
            sms_status: at(webhooks::SMS_STATUS),
        }
    }

    /// `base?call=<our id>`: the call's own URL (inside what Twilio signs, so it cannot be
    /// pointed at another call).
    pub fn for_call(base: &str, call: uuid::Uuid) -> String {
        format!("{base}?call={call}")
    }
}

pub struct TwilioProvider {
    http: reqwest::Client,
    config: TwilioConfig,
    urls: TwilioUrls,
    language: String,
    ringing_timer: Duration,
    credentials: CredentialsSeen,
}

impl TwilioProvider {
    pub fn new(
        config: TwilioConfig,
        urls: TwilioUrls,
        language: String,
        ringing_timer: Duration,
        timeout: Duration,
    ) -> Result<TwilioProvider, ProviderError> {
        let http = super::http_client(timeout)?;
        Ok(TwilioProvider {
            http,
            config,
            urls,
            language,
            ringing_timer,
            credentials: CredentialsSeen::default(),
        })
    }

    fn account_url(&self, resource: &str) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.config.api_url, self.config.account_sid
        )
    }

    /// The create-call form (public so tests can check it against the contract).
    pub fn create_call_form(&self, request: &CallRequest) -> Vec<(&'static str, String)> {
        let language = if request.language.is_empty() {
            &self.language
        } else {
            &request.language
        };
        let gather = TwilioUrls::for_call(&self.urls.gather, request.call_id);
        let cx = ReplyContext {
            answer_url: &gather,
            language,
            speech: request.speech,
            caller_id: self.config.from_number.e164(),
        };
        let mut form = vec![
            ("To", request.to.e164().to_string()),
            ("From", self.config.from_number.e164().to_string()),
            ("Twiml", inline_twiml(&request.greeting, &cx)),
            (
                "StatusCallback",
                TwilioUrls::for_call(&self.urls.status, request.call_id),
            ),
            ("StatusCallbackMethod", "POST".into()),
        ];
        form.extend(
            STATUS_EVENTS
                .iter()
                .map(|e| ("StatusCallbackEvent", e.to_string())),
        );
        form.extend([
            (
                "Timeout",
                self.ringing_timer.as_secs().clamp(1, 600).to_string(),
            ),
            ("TimeLimit", TIME_LIMIT_SECS.to_string()),
            ("MachineDetection", "Enable".into()),
        ]);
        form
    }

    async fn post(
        &self,
        url: &str,
        form: &[(&str, String)],
    ) -> Result<(u16, Option<Duration>, bytes::Bytes), ProviderError> {
        let (user, password) = self.config.basic_auth();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let response = self
            .http
            .post(url)
            .basic_auth(user, Some(password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::Transient {
                message: format!(
                    "POST {}: {}",
                    mask_account(url, &self.config.account_sid),
                    super::vonage::describe_reqwest(&e)
                ),
                retry_after: None,
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.bytes().await.unwrap_or_default();
        Ok((status, retry_after, body))
    }
}

/// The greeting as inline TwiML. Twilio refuses `Twiml` over 4000 characters; an alert text
/// long enough for that is shortened (said in the log), keeping the menu.
fn inline_twiml(greeting: &crate::domain::menu::Reply, cx: &ReplyContext) -> String {
    let doc = twiml::render(greeting, cx);
    if doc.len() <= twiml::MAX_INLINE {
        return doc;
    }
    let crate::domain::menu::Reply::Prompt { text } = greeting else {
        return doc;
    };
    tracing::warn!(
        length = doc.len(),
        "the call's announcement is too long for Twilio's inline TwiML; it is shortened"
    );
    // Escaped text grows about in proportion, so scale, then trim by a tenth until it fits.
    let mut keep = text.len() * twiml::MAX_INLINE / doc.len();
    loop {
        let doc = twiml::render(
            &crate::domain::menu::Reply::Prompt {
                text: shorten(text, keep),
            },
            cx,
        );
        if doc.len() <= twiml::MAX_INLINE || keep == 0 {
            return doc;
        }
        keep = keep * 9 / 10;
    }
}

/// The start and the end of `text` (the menu is at its end), `keep` bytes in all.
fn shorten(text: &str, keep: usize) -> String {
    let head = keep / 2;
    let tail = keep - head;
    let start: String = text
        .chars()
        .scan(0, |n, c| {
            *n += c.len_utf8();
            (*n <= head).then_some(c)
        })
        .collect();
    let end: String = {
        let mut v: Vec<char> = text
            .chars()
            .rev()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= tail).then_some(c)
            })
            .collect();
        v.reverse();
        v.into_iter().collect()
    };
    format!("{start} … {end}")
}

/// The Account SID is not a secret, but URLs in logs need not carry it.
fn mask_account(url: &str, account_sid: &str) -> String {
    url.replace(account_sid, "AC…")
}

/// Twilio's error body: the legacy `{code, message, more_info, status}` or RFC 9457
/// `{title, detail, code, ...}`; every field optional (NOTES.md §2).
fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize, Default)]
    struct Problem {
        code: Option<serde_json::Value>,
        message: Option<String>,
        title: Option<String>,
        detail: Option<String>,
    }
    let Ok(problem) = serde_json::from_slice::<Problem>(body) else {
        return String::from_utf8_lossy(&body[..body.len().min(200)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
    };
    let text = [problem.message, problem.title, problem.detail]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    match problem.code {
        Some(code) => format!("error {code}: {text}"),
        None => text,
    }
}

/// What a Twilio answer means for whoever placed the request.
fn refusal(what: &str, status: u16, body: &[u8], retry_after: Option<Duration>) -> ProviderError {
    let detail = error_detail(body);
    match status {
        401 | 403 => ProviderError::Config(format!(
            "Twilio answered {status} to {what}: {detail}. Check TWILIO_ACCOUNT_SID and \
             TWILIO_AUTH_TOKEN (or TWILIO_API_KEY/TWILIO_API_SECRET)"
        )),
        429 | 500..=599 => ProviderError::Transient {
            message: format!("Twilio answered {status} to {what}: {detail}"),
            retry_after,
        },
        _ => ProviderError::Permanent(format!("Twilio answered {status} to {what}: {detail}")),
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

fn created(what: &str, status: u16, body: &[u8]) -> Result<String, ProviderError> {
    serde_json::from_slice::<Created>(body)
        .map(|c| c.sid)
        .map_err(|e| ProviderError::Transient {
            message: format!("Twilio answered {status} to {what} without a sid: {e}"),
            retry_after: None,
        })
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn ready(&self) -> Result<(), String> {
        self.credentials.ready(
            "Twilio refused our credentials on the last call: check TWILIO_ACCOUNT_SID and \
             TWILIO_AUTH_TOKEN (or the API key)",
        )
    }

    /// `POST /Accounts/{AccountSid}/Calls.json` → 201 with the call's `sid`.
    async fn place_call(&self, request: &CallRequest) -> Result<PlacedCall, ProviderError> {
        let (status, retry_after, body) = self
            .post(
                &self.account_url("Calls.json"),
                &self.create_call_form(request),
            )
            .await?;
        self.credentials.answered(status);
        match status {
            200 | 201 => created("a call", status, &body).map(|sid| PlacedCall {
                provider_call_id: sid,
            }),
            _ => Err(refusal("a call", status, &body, retry_after)),
        }
    }

    /// `POST /Calls/{Sid}.json` with `Status=completed`, which ends a call in any state. A
    /// call that already ended is not a failure here.
    async fn hang_up(&self, provider_call_id: &str) -> Result<(), ProviderError> {
        let url = self.account_url(&format!("Calls/{provider_call_id}.json"));
        let (status, retry_after, body) =
            self.post(&url, &[("Status", "completed".into())]).await?;
        match status {
            200..=299 | 400 | 404 => Ok(()),
            _ => Err(refusal("a hang-up", status, &body, retry_after)),
        }
    }

    /// `POST /Accounts/{AccountSid}/Messages.json` → 201 with the message's `sid`.
    async fn send_sms(&self, sms: &SmsRequest) -> Result<String, ProviderError> {
        let form = [
            ("To", sms.to.e164().to_string()),
            ("From", self.config.from_number.e164().to_string()),
            ("Body", sms.text.clone()),
            ("StatusCallback", self.urls.sms_status.clone()),
            ("ValidityPeriod", SMS_VALIDITY_SECS.to_string()),
        ];
        let (status, retry_after, body) =
            self.post(&self.account_url("Messages.json"), &form).await?;
        match status {
            200 | 201 => created("a text", status, &body),
            _ => Err(refusal("a text", status, &body, retry_after)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::menu::Reply;

    #[test]
    fn errors_of_either_shape_are_read() {
        assert_eq!(
            error_detail(br#"{"code":21211,"message":"The 'To' number +1555 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#),
            "error 21211: The 'To' number +1555 is not a valid phone number."
        );
        assert_eq!(
            error_detail(br#"{"type":"x","title":"Too Many Requests","status":429,"code":20429,"detail":"slow down"}"#),
            "error 20429: Too Many Requests: slow down"
        );
        assert_eq!(error_detail(b"<html>\n</html>"), "<html></html>");
        assert!(matches!(
            refusal("a call", 401, b"{}", None),
            ProviderError::Config(m) if m.contains("TWILIO_AUTH_TOKEN")
        ));
        assert!(matches!(
            refusal("a call", 503, b"{}", Some(Duration::from_secs(2))),
            ProviderError::Transient {
                retry_after: Some(_),
                ..
            }
        ));
        assert!(matches!(
            refusal("a call", 400, b"{}", None),
            ProviderError::Permanent(_)
        ));
    }

    #[test]
    fn a_long_announcement_is_shortened_to_fit_inline() {
        let cx = ReplyContext {
            answer_url: "https://x/webhooks/twilio/gather?call=1",
            language: "en-US",
            speech: true,
            caller_id: "+15005550006",
        };
        let text = format!("{} Press 1 to acknowledge.", "Bed <4> & more. ".repeat(400));
        let doc = inline_twiml(&Reply::Prompt { text }, &cx);
        assert!(doc.len() <= twiml::MAX_INLINE, "{}", doc.len());
        assert!(
            doc.contains("Press 1 to acknowledge.</Say></Gather>"),
            "{doc}"
        );
        assert!(
            doc.contains("<Say language=\"en-US\">Bed &lt;4&gt;"),
            "{doc}"
        );
    }
}
