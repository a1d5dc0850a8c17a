//! Phone networks behind one trait: Vonage and Twilio; the simulator is the default
//! when no provider is configured, so everything runs offline.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::menu::Reply;
use crate::domain::phone::Phone;

pub mod simulator;
pub mod twilio;
pub mod vonage;
pub mod webhook_token;

/// The HTTP client a provider talks to its API with: `timeout` for a whole request, 3 s to
/// connect.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3))
        .user_agent(concat!("alertcall/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ProviderError::Config(format!("cannot build an HTTP client: {e}")))
}

/// Whether the provider refused our credentials (401/403) on the last create-call: then no
/// call can be placed until a person fixes them (`Provider::ready`). Only calls count: an
/// account without SMS must not make the instance unready.
#[derive(Debug, Default)]
pub struct CredentialsSeen(std::sync::atomic::AtomicBool);

impl CredentialsSeen {
    /// After each create-call answer: a refusal marks them refused, a success heals.
    pub fn answered(&self, status: u16) {
        use std::sync::atomic::Ordering::Relaxed;
        match status {
            401 | 403 => self.0.store(true, Relaxed),
            200..=299 => self.0.store(false, Relaxed),
            _ => {}
        }
    }

    /// `Err(fix)` while the last answer refused them.
    pub fn ready(&self, fix: &str) -> Result<(), String> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(fix.to_string()),
            false => Ok(()),
        }
    }
}

/// How the engine's replies are rendered on one call (as an NCCO, as TwiML).
#[derive(Debug, Clone, Copy)]
pub struct ReplyContext<'a> {
    /// Where the menu posts the nurse's answer: the call's own URL.
    pub answer_url: &'a str,
    /// BCP-47, for text-to-speech and speech recognition.
    pub language: &'a str,
    /// Whether the menu also listens for spoken answers.
    pub speech: bool,
    /// Our number as the provider writes it, shown to a room's phone when the nurse is
    /// connected to it.
    pub caller_id: &'a str,
}

/// A call to place.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// Our id for the call; carried in the webhook URLs so events can find the call even
    /// before the provider's id is recorded.
    pub call_id: Uuid,
    pub to: Phone,
    /// What the nurse hears first: the announcement and the menu.
    pub greeting: Reply,
    /// BCP-47 language the call speaks and understands (the nurse's, else the hospital's).
    pub language: String,
    /// Whether the menu also listens for spoken answers.
    pub speech: bool,
    /// The patient's name as the call may speak it, for views that must hide it
    /// (`[dashboard] show_patient_name = false`).
    pub patient_name: Option<String>,
}

/// The provider accepted the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    pub provider_call_id: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// Our configuration is wrong: the provider refused our credentials (401/403, the
    /// message says so) or our key cannot sign. Retrying will not help, a person must fix it.
    #[error("{0}")]
    Config(String),
    /// This call can never succeed (e.g. an invalid number); the message says who refused it.
    #[error("{0}")]
    Permanent(String),
    /// Worth retrying: rate limit, server error, timeout, connection failure.
    #[error("temporary provider failure: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Whether calls can be placed as configured (for `/readyz`); why not, for the log.
    /// Start-up already refuses a missing or malformed configuration, so this is what only
    /// the running provider learns, e.g. that its credentials are refused.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    async fn place_call(&self, request: &CallRequest) -> Result<PlacedCall, ProviderError>;
    /// Ends a call that is ringing or in progress (someone else acknowledged).
    async fn hang_up(&self, provider_call_id: &str) -> Result<(), ProviderError>;
    /// Sends a text message; returns the provider's message id.
    async fn send_sms(&self, sms: &SmsRequest) -> Result<String, ProviderError>;
}

/// A text message to send.
#[derive(Debug, Clone)]
pub struct SmsRequest {
    pub to: Phone,
    pub text: String,
    /// Ours, echoed in delivery receipts (Vonage `client_ref`).
    pub client_ref: String,
    /// As in `CallRequest`.
    pub patient_name: Option<String>,
}
