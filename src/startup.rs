//! Building and running the service: one entry point for `main` and the tests.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, ProviderConfig};
use crate::engine::{Clock, Engine, Source};
use crate::http::{self, AppState};
use crate::store::{self, DynStore};
use crate::telephony::simulator::Simulator;
use crate::telephony::twilio::{TwilioProvider, TwilioUrls};
use crate::telephony::vonage::VonageProvider;
use crate::telephony::webhook_token::WebhookKey;
use crate::telephony::{Provider, ProviderError};

/// A bound, migrated, ready-to-run service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    sim_events: Option<tokio::sync::mpsc::UnboundedReceiver<crate::domain::call::CallEvent>>,
    /// The HL7 alarm listener, when `ALERTCALL_HL7_LISTEN` is set.
    hl7: Option<TcpListener>,
}

/// The client of a phone network (not the simulator).
fn network_provider(
    network: &ProviderConfig,
    config: &Config,
    webhook_key: &WebhookKey,
) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(match network {
        ProviderConfig::Vonage(vonage) => Arc::new(VonageProvider::new(
            vonage.clone(),
            config.event_url(),
            config.input_url(),
            webhook_key.clone(),
            config.language.clone(),
            config.ringing_timer,
            config.provider_timeout,
        )?),
        ProviderConfig::Twilio(twilio) => Arc::new(TwilioProvider::new(
            twilio.clone(),
            TwilioUrls::new(&config.public_url),
            config.language.clone(),
            config.ringing_timer,
            config.provider_timeout,
        )?),
        ProviderConfig::Simulator => {
            return Err(ProviderError::Config(
                "the simulator is not a phone network".into(),
            ));
        }
    })
}

impl Application {
    /// Connects to the database, runs migrations, binds the listener, builds the provider.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Clock::system()).await
    }

    /// `build`, with the engine reading `clock` (tests pass one they move forward).
    pub async fn build_with_clock(mut config: Config, clock: Clock) -> anyhow::Result<Application> {
        let store = store::connect(&config.database_url).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}\nCheck DATABASE_URL ({}); `alertcall check` tests the connection.",
                crate::config::redact_url(&config.database_url)
            )
        })?;
        store.migrate().await?;
        let webhook_key = WebhookKey::load(&store).await?;
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} ({e}); set ALERTCALL_LISTEN to a free address:port",
                config.listen
            )
        })?;
        let local = listener.local_addr()?;
        if !config.public_url_set {
            config.public_url = format!("http://{local}");
        }
        let hl7 = match &config.hl7 {
            None => None,
            Some(settings) => Some(TcpListener::bind(settings.listen).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen for HL7 on {} ({e}); set ALERTCALL_HL7_LISTEN to a free address:port",
                    settings.listen
                )
            })?),
        };
        let mut app = Self::with_store(config, store, listener, webhook_key, clock)?;
        app.hl7 = hl7;
        Ok(app)
    }

    fn with_store(
        mut config: Config,
        store: DynStore,
        listener: TcpListener,
        webhook_key: WebhookKey,
        clock: Clock,
    ) -> anyhow::Result<Application> {
        let directory = config.directory()?;
        if directory.access.is_empty()
            && config.api_token.is_none()
            && config.admin_password.is_none()
        {
            config.admin_password = Some(bootstrap_password()?);
        }
        let (provider, sim, sim_events): (Arc<dyn Provider>, _, _) = match &config.provider {
            ProviderConfig::Simulator => {
                let (sim, events) = Simulator::new(config.ringing_timer);
                let sim = Arc::new(sim);
                (sim.clone(), Some(sim), Some(events))
            }
            network => (
                network_provider(network, &config, &webhook_key)?,
                None,
                None,
            ),
        };
        let engine = Engine::new(store, provider, Arc::new(config), directory, clock);
        Ok(Application {
            listener,
            state: AppState::new(engine, sim, webhook_key),
            sim_events,
            hl7: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Where the HL7 alarm listener is bound, when it is on.
    pub fn hl7_addr(&self) -> Option<SocketAddr> {
        self.hl7.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.state.engine.clone()
    }

    pub fn simulator(&self) -> Option<Arc<Simulator>> {
        self.state.sim.clone()
    }

    /// Serves HTTP and runs the engine until `shutdown` resolves or the database cannot be
    /// written for good (`Engine::database_unwritable`).
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let engine = self.state.engine.clone();
        if let Some(mut events) = self.sim_events {
            let engine = engine.clone();
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if let Err(e) = engine.handle_call_event(&event, Source::Simulator).await {
                        engine.store_failed(&e);
                        tracing::warn!(error = %e, "could not record a simulated call event");
                    }
                }
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let engine_task = tokio::spawn(engine.clone().run({
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }));
        let config = &self.state.engine.config;
        let files = crate::server::raise_file_limit();
        let limits =
            crate::server::Limits::new(config.header_read_timeout, config.max_connections, files);
        tracing::info!(
            open_files = files,
            max_connections = limits.max_connections,
            header_read_timeout = ?limits.header_read_timeout,
            "connection limits"
        );
        if let (Some(listener), Some(settings)) = (self.hl7, config.hl7.clone()) {
            let mut rx = stop_rx.clone();
            tokio::spawn(crate::hl7::listener::serve(
                listener,
                engine.clone(),
                settings,
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            ));
            let mut rx = stop_rx.clone();
            tokio::spawn(crate::hl7::supervise::run(engine.clone(), async move {
                let _ = rx.wait_for(|s| *s).await;
            }));
        }
        let app = http::router(self.state);
        let mut stopping = stop_rx.clone();
        let mut rx = stop_rx;
        tokio::spawn({
            let engine = engine.clone();
            async move {
                tokio::select! {
                    () = shutdown => {}
                    () = engine.unwritable() => {}
                }
                let _ = stop_tx.send(true);
            }
        });
        let server = crate::server::serve(self.listener, app, limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        // Stopping (SIGTERM, or an unwritable database) waits for no supervisor's patience:
        // requests still open after `STOP_GRACE` (a dashboard's event stream never ends by
        // itself) are cut.
        let cut_short = async move {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            () = server => {}
            () = cut_short => {}
        }
        let _ = engine_task.await;
        Ok(())
    }
}

/// How long in-flight requests get to finish once `serve` stops.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a fresh install keeps its first admin password.
pub const BOOTSTRAP_PASSWORD_FILE: &str = "alertcall-admin-password";

/// With nobody configured to sign in, the dashboard still needs a way in: a random admin
/// password, kept (owner-only) in `alertcall-admin-password` in the working directory and
/// reused on restarts. The log says where it is, never what it is.
fn bootstrap_password() -> anyhow::Result<crate::config::Secret> {
    let path = std::path::Path::new(BOOTSTRAP_PASSWORD_FILE);
    let password = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => {
            let password = crate::auth::random_token()[..24].to_string();
            write_private(path, &password).map_err(|e| {
                anyhow::anyhow!(
                    "no users are configured and {} cannot be written ({e}); set ALERTCALL_ADMIN_PASSWORD or add [[users]] to alertcall.toml",
                    path.display()
                )
            })?;
            password
        }
    };
    tracing::warn!(
        file = %std::fs::canonicalize(path).unwrap_or_else(|_| path.into()).display(),
        "no [[users]] in alertcall.toml and no ALERTCALL_ADMIN_PASSWORD: sign in to the dashboard as \"admin\" with the password in this file"
    );
    Ok(crate::config::Secret(password))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")
}
