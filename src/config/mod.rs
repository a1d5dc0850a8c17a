//! Settings from the environment (and `.env`), validated once at start. Every problem is
//! reported with the variable's name and what to do about it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::domain::message::MessageSettings;
use crate::domain::phone::Phone;

pub mod file;

/// The embedded default: a SQLite file next to where alertcall runs.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://alertcall.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
pub const DEFAULT_VONAGE_API_URL: &str = "https://api.nexmo.com";
pub const DEFAULT_TWILIO_API_URL: &str = "https://api.twilio.com";
/// The number the simulator "calls" when no nurse is configured, so the quick start works
/// with no configuration at all.
pub const SIMULATED_NURSE: &str = "+15005550006";

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    /// Base URL providers use to reach our webhooks.
    pub public_url: String,
    /// Whether `ALERTCALL_PUBLIC_URL` was given; if not, the URL follows the bound address.
    pub public_url_set: bool,
    pub provider: ProviderConfig,
    pub nurse_phone: Phone,
    pub messages: MessageSettings,
    /// Which of `messages` came from the environment (they win over alertcall.toml).
    pub messages_from_env: (bool, bool),
    pub language: String,
    /// Whether `ALERTCALL_LANGUAGE` was given (it wins over `[hospital] language`).
    pub language_from_env: bool,
    /// How often the database is swept for alerts a notification missed.
    pub sweep_interval: Duration,
    /// How often SQLite's `data_version` is checked for writes by other processes.
    pub sqlite_watch_interval: Duration,
    /// Alerts older than this when first seen are recorded but not called (a freshly installed
    /// alertcall must not phone about last month's alerts).
    pub max_alert_age: Duration,
    /// How long a nurse's phone rings before the provider gives up.
    pub ringing_timer: Duration,
    /// How long to wait for "press 1" after a call before the alert is flagged (escalation
    /// builds on this).
    pub ack_wait: Duration,
    /// New calls per second across this instance; `None` = no limit.
    pub calls_per_second: Option<f64>,
    /// How long a claim on an alert lasts: if this instance dies, another takes the alert
    /// over after this long.
    pub lease: Duration,
    /// Timeout of one request to the provider.
    pub provider_timeout: Duration,
    /// Signed webhooks older than this are refused.
    pub webhook_max_age: Duration,
    /// A client must send a whole request head within this (also the idle limit of a
    /// kept-alive connection).
    pub header_read_timeout: Duration,
    /// Open HTTP connections at most (lowered to fit the file limit; see `server`).
    pub max_connections: usize,
    /// An admin API token (`Authorization: Bearer ...`), besides alertcall.toml's.
    pub api_token: Option<Secret>,
    /// The password of a dashboard user `admin`, besides alertcall.toml's `[[users]]`.
    pub admin_password: Option<Secret>,
    /// Whether `/metrics` needs a token or sign-in like the API.
    pub protect_metrics: bool,
    /// `alertcall.toml` (staff, schedules, policies): `ALERTCALL_CONFIG`, else
    /// `alertcall.toml` in the working directory if it exists.
    pub config_file: Option<PathBuf>,
    pub log_json: bool,
    /// `ALERTCALL_FALLBACK_PHONE`: the safety net called and texted when an alert reaches
    /// nobody; wins over `[hospital] fallback`.
    pub fallback_phone: Option<Phone>,
    /// `ALERTCALL_FALLBACK_RETRY`: how long after a fallback call nobody picked up (or that
    /// failed) the fallback contact is called again, while the alert still reaches nobody.
    pub fallback_retry: Duration,
    /// `ALERTCALL_HEARTBEAT_URL`: requested every `heartbeat_every` while all is well, so a
    /// push monitor pages IT when the pings stop. A secret (the URL is the credential).
    pub heartbeat_url: Option<Secret>,
    pub heartbeat_every: Duration,
    /// The HL7 alarm listener (`ALERTCALL_HL7_LISTEN`); off when `None`.
    pub hl7: Option<Arc<crate::hl7::listener::Settings>>,
}

/// A URL that is a credential (a heartbeat URL), for logs: scheme and host, the rest hidden.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    format!("{scheme}://{host}/***")
}

/// A value that must not reach the logs; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which phone network alertcall talks to.
#[derive(Clone, Debug)]
pub enum ProviderConfig {
    /// Calls nobody: a simulated phone that a person or test answers through the API/CLI.
    Simulator,
    Vonage(VonageConfig),
    Twilio(TwilioConfig),
}

#[derive(Clone)]
pub struct TwilioConfig {
    /// `AC` and 32 hex digits: in every REST path, and the username with the Auth Token.
    pub account_sid: String,
    /// Signs every webhook (`X-Twilio-Signature`); authenticates REST calls unless an API
    /// key is given.
    pub auth_token: Secret,
    /// `TWILIO_API_KEY` (`SK...`) and `TWILIO_API_SECRET`: REST credentials that can be
    /// revoked without rotating the account's Auth Token.
    pub api_key: Option<(String, Secret)>,
    pub from_number: Phone,
    pub api_url: String,
}

impl TwilioConfig {
    /// The REST API's Basic credentials: the API key when given, else the account's.
    pub fn basic_auth(&self) -> (&str, &str) {
        match &self.api_key {
            Some((sid, secret)) => (sid, secret.expose()),
            None => (&self.account_sid, self.auth_token.expose()),
        }
    }
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("api_key", &self.api_key.as_ref().map(|(sid, _)| sid))
            .field("from_number", &self.from_number)
            .field("api_url", &self.api_url)
            .finish()
    }
}

#[derive(Clone)]
pub struct VonageConfig {
    pub application_id: String,
    /// PEM text of the application's private key.
    pub private_key_pem: String,
    pub from_number: Phone,
    pub api_url: String,
    pub signature_secret: Option<String>,
}

impl fmt::Debug for VonageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VonageConfig")
            .field("application_id", &self.application_id)
            .field("private_key_pem", &"<redacted>")
            .field("from_number", &self.from_number)
            .field("api_url", &self.api_url)
            .field(
                "signature_secret",
                &self.signature_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl ProviderConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ProviderConfig::Simulator => "simulator",
            ProviderConfig::Vonage(_) => "vonage",
            ProviderConfig::Twilio(_) => "twilio",
        }
    }
}

/// Everything wrong with the configuration, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the configuration has {} problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        write!(
            f,
            "Fix them (in the environment, .env or alertcall.toml), then run `alertcall check` to verify."
        )
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads the process environment (after loading `.env` if present).
    pub fn from_env() -> Result<Config, ConfigErrors> {
        // A malformed .env stops loading at the bad line; say so instead of silently
        // running with half the settings.
        let dotenv_error = match dotenvy::dotenv() {
            Err(e) if !e.not_found() => Some(format!(
                ".env could not be read completely ({e}); quote values that contain spaces or $"
            )),
            _ => None,
        };
        let config = Config::from_vars(|k| std::env::var(k).ok());
        match (config, dotenv_error) {
            (Ok(c), None) => Ok(c),
            (Ok(_), Some(e)) => Err(ConfigErrors(vec![e])),
            (Err(mut errors), Some(e)) => {
                errors.0.insert(0, e);
                Err(errors)
            }
            (Err(errors), None) => Err(errors),
        }
    }

    /// Builds the configuration from a lookup function, so tests need not touch the
    /// process environment.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigErrors> {
        let get = |k: &str| {
            var(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            errors.push(format!(
                "DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got {:?}); \
                 for the embedded default use {DEFAULT_DATABASE_URL}",
                redact_url(&database_url)
            ));
        }

        let listen_text = get("ALERTCALL_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            errors.push(format!(
                "ALERTCALL_LISTEN={listen_text:?} is not an address:port such as {DEFAULT_LISTEN}"
            ));
            DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses")
        });

        let public_url_set = get("ALERTCALL_PUBLIC_URL").is_some();
        let public_url = get("ALERTCALL_PUBLIC_URL")
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            errors.push(format!(
                "ALERTCALL_PUBLIC_URL={public_url:?} must be an http(s) URL where the provider \
                 reaches this service, e.g. https://alertcall.example.org"
            ));
        }

        let mut duration = |name: &str, default: &str| -> Duration {
            let text = get(name).unwrap_or_else(|| default.to_string());
            parse_duration(&text).unwrap_or_else(|e| {
                errors.push(format!("{name}={text:?}: {e}"));
                parse_duration(default).expect("defaults parse")
            })
        };
        let sweep_interval = duration("ALERTCALL_SWEEP_INTERVAL", "5s");
        let sqlite_watch_interval = duration("ALERTCALL_SQLITE_WATCH_INTERVAL", "20ms");
        let max_alert_age = duration("ALERTCALL_MAX_ALERT_AGE", "24h");
        let ringing_timer = duration("ALERTCALL_RINGING_TIMER", "30s");
        let ack_wait = duration("ALERTCALL_ACK_WAIT", "60s");
        let provider_timeout = duration("ALERTCALL_PROVIDER_TIMEOUT", "10s");
        let lease = duration("ALERTCALL_LEASE", "30s");
        let webhook_max_age = duration("ALERTCALL_WEBHOOK_MAX_AGE", "5m");
        let header_read_timeout = duration("ALERTCALL_HEADER_READ_TIMEOUT", "10s");
        let heartbeat_every = duration("ALERTCALL_HEARTBEAT_EVERY", "60s");
        let fallback_retry = duration("ALERTCALL_FALLBACK_RETRY", "2m");
        let hl7_idle_timeout = duration("ALERTCALL_HL7_IDLE_TIMEOUT", "5m");
        if header_read_timeout.is_zero() {
            errors.push("ALERTCALL_HEADER_READ_TIMEOUT must be above zero".into());
        }
        let max_connections_text =
            get("ALERTCALL_MAX_CONNECTIONS").unwrap_or_else(|| "2048".into());
        let max_connections = match max_connections_text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(format!(
                    "ALERTCALL_MAX_CONNECTIONS={max_connections_text:?} must be a whole number above zero, such as 2048"
                ));
                2048
            }
        };
        if !(1..=120).contains(&ringing_timer.as_secs()) {
            errors.push(
                "ALERTCALL_RINGING_TIMER must be between 1s and 120s (Vonage's limit)".into(),
            );
        }
        if lease < provider_timeout * 2 {
            errors.push(
                "ALERTCALL_LEASE must be at least twice ALERTCALL_PROVIDER_TIMEOUT, or a slow \
                 call could be placed twice"
                    .into(),
            );
        }
        if sweep_interval.is_zero() || sqlite_watch_interval.is_zero() {
            errors.push(
                "ALERTCALL_SWEEP_INTERVAL and ALERTCALL_SQLITE_WATCH_INTERVAL must be above zero"
                    .into(),
            );
        }

        let calls_per_second = match get("ALERTCALL_CALLS_PER_SECOND").as_deref() {
            None => Some(3.0),
            Some("0") | Some("off") | Some("none") => None,
            Some(v) => match v.parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => Some(n),
                _ => {
                    errors.push(format!(
                        "ALERTCALL_CALLS_PER_SECOND={v:?} must be a positive number (Vonage allows 3), or 0 for no limit"
                    ));
                    None
                }
            },
        };

        let (provider, real_provider) = provider_config(&get, &mut errors);
        let hl7 = hl7_settings(&get, hl7_idle_timeout, &mut errors);

        let config_file = match get("ALERTCALL_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    errors.push(format!(
                        "ALERTCALL_CONFIG={:?} does not exist; start from alertcall.example.toml",
                        path.display().to_string()
                    ));
                }
                Some(path)
            }
            None => default_config_file(),
        };

        let nurse_phone = match get("NURSE_PHONE_NUMBER") {
            Some(n) => Phone::parse(&n).unwrap_or_else(|e| {
                errors.push(format!("NURSE_PHONE_NUMBER: {e}"));
                Phone::parse(SIMULATED_NURSE).expect("valid")
            }),
            None => {
                // With an alertcall.toml its policies say whom to call (check validates them).
                if real_provider && config_file.is_none() {
                    errors.push(
                        "NURSE_PHONE_NUMBER is not set: with a real provider and no alertcall.toml, \
                         alertcall needs the number of the nurse to call, in E.164 form such as \
                         +13854019951"
                            .into(),
                    );
                }
                Phone::parse(SIMULATED_NURSE).expect("valid")
            }
        };

        let real_api = match &provider {
            ProviderConfig::Vonage(v) => (v.api_url == DEFAULT_VONAGE_API_URL).then_some("Vonage"),
            ProviderConfig::Twilio(t) => (t.api_url == DEFAULT_TWILIO_API_URL).then_some("Twilio"),
            ProviderConfig::Simulator => None,
        };
        if let Some(name) = real_api
            && !public_url_set
        {
            errors.push(format!(
                "ALERTCALL_PUBLIC_URL is not set: {name} must reach this service's webhooks to \
                 deliver \"press 1\"; set it to the public https URL that forwards to ALERTCALL_LISTEN"
            ));
        }

        let heartbeat_url = get("ALERTCALL_HEARTBEAT_URL").map(Secret);
        if let Some(url) = &heartbeat_url
            && !(url.expose().starts_with("http://") || url.expose().starts_with("https://"))
        {
            errors.push(format!(
                "ALERTCALL_HEARTBEAT_URL ({}) must be an http(s) URL, e.g. your monitor's \
                 https://hc-ping.com/<uuid>",
                mask_url(url.expose())
            ));
        }
        if heartbeat_every.is_zero() {
            errors.push("ALERTCALL_HEARTBEAT_EVERY must be above zero, e.g. 60s".into());
        }

        let fallback_phone = get("ALERTCALL_FALLBACK_PHONE").and_then(|n| {
            Phone::parse(&n)
                .map_err(|e| errors.push(format!("ALERTCALL_FALLBACK_PHONE: {e}")))
                .ok()
        });

        let mut flag = |name: &str, default: bool| match get(name).as_deref() {
            None => default,
            Some("true") | Some("1") | Some("yes") => true,
            Some("false") | Some("0") | Some("no") => false,
            Some(v) => {
                errors.push(format!("{name}={v:?} must be true or false"));
                default
            }
        };
        let include_patient_name = flag("ALERTCALL_SPEAK_PATIENT_NAME", true);
        let protect_metrics = flag("ALERTCALL_PROTECT_METRICS", false);
        let messages_from_env = (
            get("ALERTCALL_HOSPITAL_NAME").is_some(),
            get("ALERTCALL_SPEAK_PATIENT_NAME").is_some(),
        );
        let messages = MessageSettings {
            hospital_name: get("ALERTCALL_HOSPITAL_NAME").unwrap_or_else(|| "the hospital".into()),
            include_patient_name,
        };

        let log_json = match get("ALERTCALL_LOG_FORMAT").as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(v) => {
                errors.push(format!("ALERTCALL_LOG_FORMAT={v:?} must be text or json"));
                false
            }
        };

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            database_url,
            listen,
            public_url,
            public_url_set,
            provider,
            nurse_phone,
            messages,
            messages_from_env,
            language: get("ALERTCALL_LANGUAGE").unwrap_or_else(|| "en-US".into()),
            language_from_env: get("ALERTCALL_LANGUAGE").is_some(),
            sweep_interval,
            sqlite_watch_interval,
            max_alert_age,
            ringing_timer,
            ack_wait,
            calls_per_second,
            provider_timeout,
            lease,
            webhook_max_age,
            header_read_timeout,
            max_connections,
            api_token: get("ALERTCALL_API_TOKEN").map(Secret),
            admin_password: get("ALERTCALL_ADMIN_PASSWORD").map(Secret),
            protect_metrics,
            config_file,
            log_json,
            fallback_phone,
            fallback_retry,
            heartbeat_url,
            heartbeat_every,
            hl7,
        })
    }

    /// `{public}/api/alerts/call-event`, given to the provider as the call's event URL.
    pub fn event_url(&self) -> String {
        format!("{}/api/alerts/call-event", self.public_url)
    }

    /// `{public}/api/alerts/call-response`, where keypad input is posted (the seed's path).
    pub fn input_url(&self) -> String {
        format!("{}/api/alerts/call-response", self.public_url)
    }

    /// Staff, schedules and policies from the config file; empty without one.
    /// Without `ALERTCALL_CONFIG`, `alertcall.toml` is looked for again on each call, so one
    /// created after start is read on the next reload (SIGHUP).
    pub fn directory(&self) -> Result<file::Directory, ConfigErrors> {
        match self.config_file.clone().or_else(default_config_file) {
            Some(path) => file::load(&path).map_err(ConfigErrors),
            None => Ok(file::Directory::default()),
        }
    }

    pub fn signature_secret(&self) -> Option<&str> {
        match &self.provider {
            ProviderConfig::Vonage(v) => v.signature_secret.as_deref(),
            ProviderConfig::Twilio(_) | ProviderConfig::Simulator => None,
        }
    }
}

/// `alertcall.toml` in the working directory, if it exists.
/// `ALERTCALL_HL7_*`: the MLLP listener, when `ALERTCALL_HL7_LISTEN` is set. Listening
/// beyond this machine takes an allow-list: alarms from an unknown peer would be paged.
fn hl7_settings(
    get: &impl Fn(&str) -> Option<String>,
    idle_timeout: Duration,
    errors: &mut Vec<String>,
) -> Option<Arc<crate::hl7::listener::Settings>> {
    let listen_text = get("ALERTCALL_HL7_LISTEN")?;
    let Ok(listen) = listen_text.parse::<SocketAddr>() else {
        errors.push(format!(
            "ALERTCALL_HL7_LISTEN={listen_text:?} is not an address:port such as 0.0.0.0:2575"
        ));
        return None;
    };
    let mut allow = Vec::new();
    for entry in get("ALERTCALL_HL7_ALLOW")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        match entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        {
            Ok(net) => allow.push(net),
            Err(_) => errors.push(format!(
                "ALERTCALL_HL7_ALLOW: {entry:?} is not an address or network such as 10.1.2.3 or 10.1.0.0/16"
            )),
        }
    }
    if allow.is_empty() && !listen.ip().is_loopback() {
        errors.push(format!(
            "ALERTCALL_HL7_LISTEN={listen} takes connections from other machines: set \
             ALERTCALL_HL7_ALLOW to the alarm gateways' addresses (e.g. 10.1.2.3,10.1.4.0/24; \
             0.0.0.0/0,::/0 takes any peer)"
        ));
    }
    for name in ["ALERTCALL_HL7_TLS_CERT", "ALERTCALL_HL7_TLS_KEY"] {
        if get(name).is_some() {
            errors.push(format!(
                "{name}: TLS on the HL7 listener is not supported yet; unset it and put a TLS \
                 terminator (stunnel, HAProxy) in front, or keep the link on a closed network"
            ));
        }
    }
    let number = |name: &str, default: usize, errors: &mut Vec<String>| {
        let text = get(name).unwrap_or_else(|| default.to_string());
        match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                errors.push(format!(
                    "{name}={text:?} must be a whole number above zero, such as {default}"
                ));
                default
            }
        }
    };
    let max_message = number("ALERTCALL_HL7_MAX_MESSAGE", 1024 * 1024, errors);
    let max_connections = number("ALERTCALL_HL7_MAX_CONNECTIONS", 64, errors);
    if idle_timeout.is_zero() {
        errors.push("ALERTCALL_HL7_IDLE_TIMEOUT must be above zero".into());
    }
    Some(Arc::new(crate::hl7::listener::Settings {
        listen,
        allow,
        max_message,
        idle_timeout,
        max_connections,
    }))
}

fn default_config_file() -> Option<PathBuf> {
    Some(PathBuf::from("alertcall.toml")).filter(|p| p.exists())
}

/// The provider, and whether a real one was asked for (even if its settings are broken).
fn provider_config(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> (ProviderConfig, bool) {
    let chosen = match get("ALERTCALL_PROVIDER").as_deref() {
        Some(name @ ("vonage" | "twilio" | "simulator")) => name.to_string(),
        Some(other) => {
            errors.push(format!(
                "ALERTCALL_PROVIDER={other:?} must be vonage, twilio or simulator (or unset: \
                 vonage when VONAGE_APPLICATION_ID is set, twilio when TWILIO_ACCOUNT_SID is, \
                 else the simulator)"
            ));
            return (ProviderConfig::Simulator, false);
        }
        None => match (
            get("VONAGE_APPLICATION_ID").is_some(),
            get("TWILIO_ACCOUNT_SID").is_some(),
        ) {
            (true, true) => {
                errors.push(
                    "both VONAGE_APPLICATION_ID and TWILIO_ACCOUNT_SID are set: say which \
                     network places the calls with ALERTCALL_PROVIDER=vonage or twilio"
                        .into(),
                );
                return (ProviderConfig::Simulator, true);
            }
            (true, false) => "vonage".into(),
            (false, true) => "twilio".into(),
            (false, false) => "simulator".into(),
        },
    };
    let provider = match chosen.as_str() {
        "vonage" => vonage_config(get, errors).map(ProviderConfig::Vonage),
        "twilio" => twilio_config(get, errors).map(ProviderConfig::Twilio),
        _ => return (ProviderConfig::Simulator, false),
    };
    (provider.unwrap_or(ProviderConfig::Simulator), true)
}

fn vonage_config(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<VonageConfig> {
    let application_id = get("VONAGE_APPLICATION_ID").unwrap_or_else(|| {
        errors.push(
            "VONAGE_APPLICATION_ID is not set: copy it from the Vonage dashboard (Applications)"
                .into(),
        );
        String::new()
    });
    let private_key_pem = match (get("VONAGE_PRIVATE_KEY"), get("VONAGE_PRIVATE_KEY_PATH")) {
        (Some(pem), _) => pem.replace("\\n", "\n"),
        (None, Some(path)) => match std::fs::read_to_string(PathBuf::from(&path)) {
            Ok(pem) => pem,
            Err(e) => {
                errors.push(format!(
                    "VONAGE_PRIVATE_KEY_PATH={path:?} cannot be read ({e}): point it at the \
                     private.key file downloaded when the Vonage application was created"
                ));
                String::new()
            }
        },
        (None, None) => {
            errors.push(
                "neither VONAGE_PRIVATE_KEY nor VONAGE_PRIVATE_KEY_PATH is set: the Voice API \
                 needs the application's private key to sign its JWT"
                    .into(),
            );
            String::new()
        }
    };
    if !private_key_pem.is_empty()
        && let Err(e) = crate::telephony::vonage::signing_key(&private_key_pem)
    {
        errors.push(e);
    }
    let from_number = match get("VONAGE_FROM_NUMBER") {
        Some(n) => Phone::parse_provider_number(&n)
            .map_err(|e| errors.push(format!("VONAGE_FROM_NUMBER: {e}")))
            .ok()?,
        None => {
            errors.push(
                "VONAGE_FROM_NUMBER is not set: the Vonage number calls come from, as the \
                 Vonage dashboard shows it (12178020876) or in E.164 form (+12178020876)"
                    .into(),
            );
            return None;
        }
    };
    Some(VonageConfig {
        application_id,
        private_key_pem,
        from_number,
        api_url: get("VONAGE_API_URL")
            .unwrap_or_else(|| DEFAULT_VONAGE_API_URL.into())
            .trim_end_matches('/')
            .to_string(),
        signature_secret: get("VONAGE_SIGNATURE_SECRET"),
    })
}

/// `TWILIO_*`, by the names Twilio's own tools use.
fn twilio_config(
    get: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<TwilioConfig> {
    let sid_like = |value: &str, prefix: &str| {
        value.len() == 34
            && value.starts_with(prefix)
            && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
    };
    let account_sid = match get("TWILIO_ACCOUNT_SID") {
        Some(sid) if sid_like(&sid, "AC") => Some(sid),
        Some(_) => {
            errors.push(
                "TWILIO_ACCOUNT_SID must be the Account SID from the Twilio Console's account \
                 dashboard: AC followed by 32 hex digits"
                    .into(),
            );
            None
        }
        None => {
            errors.push(
                "TWILIO_ACCOUNT_SID is not set: copy the Account SID (AC...) from the Twilio \
                 Console's account dashboard"
                    .into(),
            );
            None
        }
    };
    // The Auth Token is what Twilio signs webhooks with, so it is needed even with an API
    // key: without it no "press 1" could be verified, and none would be taken.
    let auth_token = get("TWILIO_AUTH_TOKEN").map(Secret);
    if auth_token.is_none() {
        errors.push(
            "TWILIO_AUTH_TOKEN is not set: Twilio signs every webhook with the account's Auth \
             Token (Console, account dashboard), so alertcall needs it to verify \"press 1\", \
             even when TWILIO_API_KEY/TWILIO_API_SECRET place the calls"
                .into(),
        );
    }
    let api_key = match (get("TWILIO_API_KEY"), get("TWILIO_API_SECRET")) {
        (None, None) => None,
        (Some(sid), Some(secret)) if sid_like(&sid, "SK") => Some((sid, Secret(secret))),
        (Some(_), Some(_)) => {
            errors.push(
                "TWILIO_API_KEY must be an API key SID: SK followed by 32 hex digits (Console, \
                 API keys & tokens)"
                    .into(),
            );
            None
        }
        (Some(_), None) | (None, Some(_)) => {
            errors.push(
                "TWILIO_API_KEY and TWILIO_API_SECRET go together: set both (an API key and \
                 its secret) or neither (the Auth Token authenticates)"
                    .into(),
            );
            None
        }
    };
    let from_number = match get("TWILIO_FROM_NUMBER") {
        Some(n) => Phone::parse_provider_number(&n)
            .map_err(|e| errors.push(format!("TWILIO_FROM_NUMBER: {e}")))
            .ok(),
        None => {
            errors.push(
                "TWILIO_FROM_NUMBER is not set: the Twilio number calls come from, in E.164 \
                 form (+12178020876)"
                    .into(),
            );
            None
        }
    };
    Some(TwilioConfig {
        account_sid: account_sid?,
        auth_token: auth_token?,
        api_key,
        from_number: from_number?,
        api_url: get("TWILIO_API_URL")
            .unwrap_or_else(|| DEFAULT_TWILIO_API_URL.into())
            .trim_end_matches('/')
            .to_string(),
    })
}

/// `500ms`, `5s`, `2m`, `24h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 5s, 2m or 24h".to_string())?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `postgres://user:secret@host/db?password=x` → `postgres://user:***@host/db?password=***`,
/// for messages and logs. The URL is read by the same (WHATWG) rules as the database driver's,
/// so a raw `@` in a password ends the password at the last `@`, as when connecting; a URL
/// that cannot be read shows nothing before its last `@` and no query.
pub fn redact_url(text: &str) -> String {
    const HIDDEN: &str = "***";
    let secret =
        |key: &str| key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword");
    let Ok(mut url) = url::Url::parse(text) else {
        let Some((scheme, rest)) = text.split_once("://") else {
            return text.split('?').next().unwrap_or_default().to_string();
        };
        let rest = rest.split('?').next().unwrap_or_default();
        return match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{HIDDEN}@{host}"),
            None => format!("{scheme}://{rest}"),
        };
    };
    let mut changed = false;
    if url.password().is_some() {
        changed |= url.set_password(Some(HIDDEN)).is_ok();
    }
    if url.query_pairs().any(|(key, _)| secret(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret(&key) {
                    HIDDEN.into()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.public_url, "http://127.0.0.1:8000");
        assert!(matches!(c.provider, ProviderConfig::Simulator));
        assert_eq!(c.calls_per_second, Some(3.0));
        assert_eq!(
            c.input_url(),
            "http://127.0.0.1:8000/api/alerts/call-response"
        );
    }

    #[test]
    fn names_every_problem_with_the_fix() {
        let err = config(&[
            ("VONAGE_APPLICATION_ID", "app"),
            ("VONAGE_PRIVATE_KEY_PATH", "/nonexistent/private.key"),
            ("VONAGE_FROM_NUMBER", "+447700900001"),
            ("NURSE_PHONE_NUMBER", "385-401-9951"),
            ("DATABASE_URL", "mysql://x"),
            ("ALERTCALL_SWEEP_INTERVAL", "5 fortnights"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 5, "{text}");
        assert!(text.contains("ALERTCALL_PUBLIC_URL"));
        assert!(
            text.contains("VONAGE_PRIVATE_KEY_PATH=\"/nonexistent/private.key\" cannot be read")
        );
        assert!(text.contains("NURSE_PHONE_NUMBER") && text.contains("+13854019951"));
        assert!(text.contains("DATABASE_URL"));
        assert!(text.contains("ALERTCALL_SWEEP_INTERVAL"));
    }

    #[test]
    fn vonage_needs_a_nurse_number() {
        let err = config(&[("ALERTCALL_PROVIDER", "vonage")]).unwrap_err();
        let text = err.to_string();
        for name in [
            "VONAGE_APPLICATION_ID",
            "VONAGE_PRIVATE_KEY",
            "VONAGE_FROM_NUMBER",
            "NURSE_PHONE_NUMBER",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }

    #[test]
    fn real_vonage_needs_a_public_url() {
        let key = include_str!("../../tests/fixtures/vonage-test-private.pem");
        let base = [
            ("VONAGE_APPLICATION_ID", "app"),
            ("VONAGE_PRIVATE_KEY", key),
            ("VONAGE_FROM_NUMBER", "+447700900001"),
            ("NURSE_PHONE_NUMBER", "+13854019951"),
        ];
        let err = config(&base).unwrap_err().to_string();
        assert!(err.contains("ALERTCALL_PUBLIC_URL is not set"), "{err}");
        let mut with_url = base.to_vec();
        with_url.push(("ALERTCALL_PUBLIC_URL", "https://alertcall.example.org/"));
        let c = config(&with_url).unwrap();
        assert_eq!(
            c.event_url(),
            "https://alertcall.example.org/api/alerts/call-event"
        );
        assert!(matches!(c.provider, ProviderConfig::Vonage(_)));
    }

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn twilio_is_configured_by_its_own_names() {
        let err = config(&[("ALERTCALL_PROVIDER", "twilio")])
            .unwrap_err()
            .to_string();
        for name in [
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "TWILIO_FROM_NUMBER",
            "NURSE_PHONE_NUMBER",
        ] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
        let base = [
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "secret-token"),
            ("TWILIO_FROM_NUMBER", "+447700900002"),
            ("NURSE_PHONE_NUMBER", "+13854019951"),
        ];
        let err = config(&base).unwrap_err().to_string();
        assert!(
            err.contains("ALERTCALL_PUBLIC_URL is not set: Twilio"),
            "{err}"
        );
        let mut ok = base.to_vec();
        ok.push(("ALERTCALL_PUBLIC_URL", "https://alertcall.example.org"));
        let c = config(&ok).unwrap();
        let ProviderConfig::Twilio(t) = &c.provider else {
            panic!("twilio is chosen when TWILIO_ACCOUNT_SID is set");
        };
        assert_eq!(t.basic_auth(), (SID, "secret-token"));
        assert_eq!(t.api_url, DEFAULT_TWILIO_API_URL);
        assert!(!format!("{t:?}").contains("secret-token"));
        let key = "SK0123456789abcdef0123456789abcdef";
        let mut with_key = ok.clone();
        with_key.extend([("TWILIO_API_KEY", key), ("TWILIO_API_SECRET", "key-secret")]);
        let c = config(&with_key).unwrap();
        let ProviderConfig::Twilio(t) = &c.provider else {
            panic!("twilio");
        };
        assert_eq!(t.basic_auth(), (key, "key-secret"));
        assert!(!format!("{t:?}").contains("key-secret"));
    }

    #[test]
    fn twilio_refuses_what_cannot_work() {
        let base = [
            ("ALERTCALL_PUBLIC_URL", "https://alertcall.example.org"),
            ("NURSE_PHONE_NUMBER", "+13854019951"),
            ("TWILIO_FROM_NUMBER", "+447700900002"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            config(&vars).unwrap_err().to_string()
        };
        let err = with(&[("TWILIO_ACCOUNT_SID", "AC123"), ("TWILIO_AUTH_TOKEN", "t")]);
        assert!(err.contains("AC followed by 32 hex digits"), "{err}");
        // An API key alone cannot verify webhooks: the Auth Token signs them.
        let err = with(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_API_KEY", "SK0123456789abcdef0123456789abcdef"),
            ("TWILIO_API_SECRET", "s"),
        ]);
        assert!(
            err.contains("TWILIO_AUTH_TOKEN is not set") && err.contains("verify"),
            "{err}"
        );
        let err = with(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_API_KEY", "SK0123456789abcdef0123456789abcdef"),
        ]);
        assert!(err.contains("go together"), "{err}");
        let err = with(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_API_KEY", "AK1"),
            ("TWILIO_API_SECRET", "s"),
        ]);
        assert!(err.contains("SK followed by 32 hex digits"), "{err}");
        let err = with(&[
            ("TWILIO_ACCOUNT_SID", SID),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("VONAGE_APPLICATION_ID", "app"),
        ]);
        assert!(err.contains("ALERTCALL_PROVIDER=vonage or twilio"), "{err}");
        let err = with(&[("ALERTCALL_PROVIDER", "plivo")]);
        assert!(err.contains("must be vonage, twilio or simulator"), "{err}");
    }

    #[test]
    fn the_hl7_listener_refuses_by_default() {
        assert!(config(&[]).unwrap().hl7.is_none(), "off when unset");
        let local = config(&[("ALERTCALL_HL7_LISTEN", "127.0.0.1:2575")]).unwrap();
        let settings = local.hl7.unwrap();
        assert!(settings.allows("127.0.0.1".parse().unwrap()));
        assert!(!settings.allows("10.1.4.20".parse().unwrap()));
        let err = config(&[("ALERTCALL_HL7_LISTEN", "0.0.0.0:2575")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("set ALERTCALL_HL7_ALLOW"), "{err}");
        let open = config(&[
            ("ALERTCALL_HL7_LISTEN", "0.0.0.0:2575"),
            ("ALERTCALL_HL7_ALLOW", "10.1.4.20, 10.2.0.0/16"),
        ])
        .unwrap()
        .hl7
        .unwrap();
        assert!(open.allows("10.1.4.20".parse().unwrap()));
        assert!(open.allows("::ffff:10.2.9.9".parse().unwrap()));
        assert!(!open.allows("10.1.4.21".parse().unwrap()));
        let err = config(&[
            ("ALERTCALL_HL7_LISTEN", "127.0.0.1:2575"),
            ("ALERTCALL_HL7_ALLOW", "ten.one"),
            ("ALERTCALL_HL7_TLS_CERT", "/etc/cert.pem"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"ten.one\" is not an address"), "{err}");
        assert!(err.contains("ALERTCALL_HL7_TLS_CERT: TLS"), "{err}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://postgres:hunter2@db.supabase.co:5432/postgres"),
            "postgres://postgres:***@db.supabase.co:5432/postgres"
        );
        assert_eq!(redact_url("sqlite://alertcall.db"), "sqlite://alertcall.db");
        assert_eq!(
            redact_url("sqlite:data/alertcall.db?mode=rwc"),
            "sqlite:data/alertcall.db?mode=rwc"
        );
    }

    #[test]
    fn redacts_a_password_given_in_the_query() {
        assert_eq!(
            redact_url("postgres://postgres@db:5432/app?sslmode=require&password=hunter2"),
            "postgres://postgres@db:5432/app?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgresql://db/app?PASSWORD=hunter2&sslpassword=key-pass"),
            "postgresql://db/app?PASSWORD=***&sslpassword=***"
        );
    }

    /// The driver splits userinfo at the *last* `@` (WHATWG URL rules), so a raw `@` in a
    /// password still connects; the redaction follows the same rule and shows none of it.
    #[test]
    fn a_raw_at_sign_in_a_password_is_hidden_whole() {
        for url in [
            "postgres://postgres:p@ss@w0rd@db.example.org:5432/postgres",
            "postgres://postgres:p%40ss%40w0rd@db.example.org:5432/postgres",
        ] {
            assert_eq!(
                redact_url(url),
                "postgres://postgres:***@db.example.org:5432/postgres"
            );
        }
        // Unreadable (a raw `/` in the password): nothing before the last `@` is shown.
        let shown = redact_url("postgres://postgres:pa/ss@w0rd@db:5432/app?password=x");
        assert!(
            !shown.contains("ss") && !shown.contains("pa/") && !shown.contains("x"),
            "{shown}"
        );
    }

    #[test]
    fn heartbeat_urls_are_masked() {
        assert_eq!(
            mask_url("https://hc-ping.com/5f3c9e0a-secret?x=1"),
            "https://hc-ping.com/***"
        );
        assert_eq!(
            mask_url("http://user:pw@kuma.local:3001/api/push/abc"),
            "http://kuma.local:3001/***"
        );
    }
}
