//! Webhook URLs only alertcall can make. Without `VONAGE_SIGNATURE_SECRET` nothing proves
//! that a webhook comes from Vonage, so a voice webhook is taken only on the URL alertcall
//! handed Vonage for that call (`?call=<our id>&token=<HMAC-SHA256 of the id>`) and an
//! inbound SMS only on the Inbound URL that `alertcall check` prints (`?token=...`).
//!
//! The HMAC key is made once and kept in the database (`settings`), so every instance
//! sharing the database makes and accepts the same tokens, across restarts.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::auth::{random_token, same_secret};
use crate::config::{Config, ProviderConfig};
use crate::store::{DynStore, StoreError};

/// The setting that holds the key.
const KEY_SETTING: &str = "webhook_key";
/// The setting recorded when an inbound SMS first arrives on the Inbound URL with its token:
/// from then on SMS replies are known to reach alertcall (`/readyz` `sms_reply_ack`).
const SMS_URL_USED_SETTING: &str = "sms_inbound_url_used_at";

/// What protects the provider's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Every webhook carries the provider's signature (`VONAGE_SIGNATURE_SECRET`, or
    /// Twilio's `X-Twilio-Signature`).
    Signed,
    /// No signature secret: per-call tokens in the voice URLs, a token in the SMS URLs.
    PerCallToken,
    /// The simulator: the provider webhook routes are not mounted.
    NotMounted,
}

impl Protection {
    /// The protection `config` puts in force.
    pub fn of(config: &Config) -> Protection {
        match &config.provider {
            ProviderConfig::Simulator => Protection::NotMounted,
            ProviderConfig::Vonage(v) if v.signature_secret.is_some() => Protection::Signed,
            ProviderConfig::Vonage(_) => Protection::PerCallToken,
            // Twilio signs every webhook with the Auth Token, which alertcall always has.
            ProviderConfig::Twilio(_) => Protection::Signed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Signed => "signed",
            Protection::PerCallToken => "per-call-token",
            Protection::NotMounted => "not-mounted",
        }
    }
}

/// The key behind the tokens.
#[derive(Clone)]
pub struct WebhookKey(Hmac<Sha256>);

impl WebhookKey {
    /// The key kept in the database, made by whichever instance asks first.
    pub async fn load(store: &DynStore) -> Result<WebhookKey, StoreError> {
        let key = store
            .setting_or_insert(KEY_SETTING, &random_token())
            .await?;
        Ok(WebhookKey::new(&key))
    }

    fn new(key: &str) -> WebhookKey {
        WebhookKey(Hmac::new_from_slice(key.as_bytes()).expect("HMAC takes keys of any length"))
    }

    /// Hex HMAC of `purpose` and `subject`: a token for one use cannot stand in for another.
    fn token(&self, purpose: &str, subject: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(subject.as_bytes());
        super::vonage::hex(&mac.finalize().into_bytes())
    }

    /// The token in the webhook URLs of call `call` (our id).
    pub fn call_token(&self, call: Uuid) -> String {
        self.token("call", &call.to_string())
    }

    pub fn verifies_call(&self, call: Uuid, token: &str) -> bool {
        same_secret(&self.call_token(call), token)
    }

    /// The token in the Inbound and Status URLs of text messages.
    pub fn sms_token(&self) -> String {
        self.token("sms", "inbound")
    }

    pub fn verifies_sms(&self, token: &str) -> bool {
        same_secret(&self.sms_token(), token)
    }

    /// `url?call=<id>&token=<call token>`: how a webhook finds its call before the
    /// provider's id is recorded, and proves it is on a URL alertcall made.
    pub fn call_url(&self, url: &str, call: Uuid) -> String {
        format!("{url}?call={call}&token={}", self.call_token(call))
    }

    /// `url?token=<SMS token>`, for the Vonage dashboard's Inbound and Status URLs.
    pub fn sms_url(&self, url: &str) -> String {
        format!("{url}?token={}", self.sms_token())
    }
}

/// Records that an inbound SMS arrived on the Inbound URL with its token (once).
pub async fn note_sms_url_used(store: &DynStore, now: &str) -> Result<(), StoreError> {
    store
        .setting_or_insert(SMS_URL_USED_SETTING, now)
        .await
        .map(|_| ())
}

/// Whether an inbound SMS has ever arrived on the Inbound URL with its token.
pub async fn sms_url_used(store: &DynStore) -> Result<bool, StoreError> {
    Ok(store.setting(SMS_URL_USED_SETTING).await?.is_some())
}

/// Whether a "1" sent by SMS can acknowledge: signed webhooks (or the simulator), or an
/// Inbound URL with its token that Vonage has used. Texts only invite a reply when it can.
pub async fn sms_reply_ack(config: &Config, store: &DynStore) -> Result<bool, StoreError> {
    match Protection::of(config) {
        Protection::Signed | Protection::NotMounted => Ok(true),
        Protection::PerCallToken => sms_url_used(store).await,
    }
}

/// `alertcall check`'s lines on the webhooks: which protection is in force, and, without a
/// signature secret, the Inbound and Status URLs (with their token) for the Vonage dashboard.
/// Lines that start with `!` need the operator's attention. The key is read from (or made
/// in) the database, so the printed token is the one every instance accepts.
pub async fn check_lines(config: &Config, store: Option<&DynStore>) -> Vec<String> {
    let inbound = format!("{}/api/sms/inbound", config.public_url);
    let status = format!("{}/api/sms/status", config.public_url);
    match Protection::of(config) {
        Protection::NotMounted => vec![
            "✓ webhooks: simulator: the provider webhook routes are not mounted (drive the \
             simulated phones with `alertcall sim` or the dashboard)"
                .into(),
        ],
        Protection::Signed if matches!(config.provider, ProviderConfig::Twilio(_)) => {
            let at = |path: &str| {
                format!(
                    "{}{}{path}",
                    config.public_url,
                    super::twilio::webhooks::PREFIX
                )
            };
            vec![format!(
                "✓ webhooks: signed (X-Twilio-Signature with TWILIO_AUTH_TOKEN): calls get {} and \
                 {} with each call; Twilio Console (Phone Numbers → your number → Messaging): \
                 \"A message comes in\" webhook {} (HTTP POST)",
                at(super::twilio::webhooks::STATUS),
                at(super::twilio::webhooks::GATHER),
                at(super::twilio::webhooks::SMS),
            )]
        }
        Protection::Signed => vec![format!(
            "✓ webhooks: signed (VONAGE_SIGNATURE_SECRET): each must carry Vonage's signature; \
             calls get {} and {} with a per-call token; Vonage dashboard: Inbound URL {inbound}, \
             Status URL {status}",
            config.event_url(),
            config.input_url()
        )],
        Protection::PerCallToken => {
            let mut lines = vec![format!(
                "! webhooks: per-call token (no VONAGE_SIGNATURE_SECRET): voice webhooks are taken \
                 only on the URLs alertcall gives Vonage with each call ({}?call=...&token=...); \
                 set VONAGE_SIGNATURE_SECRET to check Vonage's signatures instead",
                config.event_url()
            )];
            let key = match store {
                Some(store) => WebhookKey::load(store).await.map_err(|e| e.to_string()),
                None => Err("the database is not reachable".into()),
            };
            match key {
                Ok(key) => {
                    let used = match store {
                        Some(store) => sms_url_used(store).await.unwrap_or(false),
                        None => false,
                    };
                    lines.push(if used {
                        "✓ SMS replies acknowledge: Vonage posts to the Inbound URL with its token"
                            .into()
                    } else {
                        "! SMS replies do NOT acknowledge until Vonage posts inbound texts to the \
                         Inbound URL below (or VONAGE_SIGNATURE_SECRET is set); a \"1\" sent \
                         elsewhere is refused"
                            .into()
                    });
                    lines.push(format!(
                        "    Vonage dashboard (application → Messages): Inbound URL {}",
                        key.sms_url(&inbound)
                    ));
                    lines.push(format!("    Status URL {}", key.sms_url(&status)));
                }
                Err(e) => lines.push(format!(
                    "! SMS replies do NOT acknowledge: the Inbound URL's token is kept in the \
                     database, which cannot be read ({e})"
                )),
            }
            lines
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_belong_to_one_call_and_one_use() {
        let key = WebhookKey::new("k");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token = key.call_token(a);
        assert_eq!(token.len(), 64);
        assert!(key.verifies_call(a, &token));
        assert!(!key.verifies_call(b, &token), "another call's token");
        assert!(!key.verifies_call(a, &token[..63]));
        assert!(!key.verifies_call(a, ""));
        assert!(
            !WebhookKey::new("other").verifies_call(a, &token),
            "another key"
        );
        assert!(
            !key.verifies_sms(&token),
            "a call token is not the SMS token"
        );
        assert!(key.verifies_sms(&key.sms_token()));
        assert_eq!(
            key.call_url("https://h/api/alerts/call-event", a),
            format!("https://h/api/alerts/call-event?call={a}&token={token}")
        );
    }
}
