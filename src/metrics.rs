//! Prometheus metrics: one registry per running service, served at `/metrics`.
//!
//! Every counter is incremented at the one place that decides the thing it counts, so the
//! numbers equal the audit trail of this process.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderResult {
    provider: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcome {
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AckLabels {
    via: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChoiceLabels {
    choice: String,
    via: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderKind {
    provider: String,
    kind: String,
}

/// Seconds from an alert's `triggered_at`: 10 ms to about 20 minutes.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        1200.0,
    ])
}

pub struct Metrics {
    registry: Registry,
    alerts_detected: Counter,
    calls_placed: Family<ProviderResult, Counter>,
    call_outcomes: Family<ProviderOutcome, Counter>,
    sms_sent: Family<ProviderResult, Counter>,
    webhooks: Family<WebhookLabels, Counter>,
    escalation_steps: Counter,
    exhausted: Counter,
    acknowledgements: Family<AckLabels, Counter>,
    menu_choices: Family<ChoiceLabels, Counter>,
    alert_to_dial: Histogram,
    alert_to_ack: Histogram,
    database_errors: Counter,
    database_write_failures: Counter,
    provider_errors: Family<ProviderKind, Counter>,
    unreached: Family<ReasonLabel, Gauge>,
    dispatch_loop_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    heartbeats: Family<ResultLabel, Counter>,
    hl7_messages: Family<ResultLabel, Counter>,
    hl7_links: Family<StateLabel, Gauge>,
    hl7_reports: Family<ResultLabel, Counter>,
    hl7_reports_unsent: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("alertcall");
        let m = Metrics {
            alerts_detected: Counter::default(),
            calls_placed: Family::default(),
            call_outcomes: Family::default(),
            sms_sent: Family::default(),
            webhooks: Family::default(),
            escalation_steps: Counter::default(),
            exhausted: Counter::default(),
            acknowledgements: Family::default(),
            menu_choices: Family::default(),
            alert_to_dial: latency_histogram(),
            alert_to_ack: latency_histogram(),
            database_errors: Counter::default(),
            database_write_failures: Counter::default(),
            provider_errors: Family::default(),
            unreached: Family::default(),
            dispatch_loop_age: Gauge::default(),
            heartbeats: Family::default(),
            hl7_messages: Family::default(),
            hl7_links: Family::default(),
            hl7_reports: Family::default(),
            hl7_reports_unsent: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "alerts_detected",
            "Critical alerts taken in for paging",
            m.alerts_detected.clone(),
        );
        registry.register(
            "calls_placed",
            "Calls asked of the provider, by result (placed, refused, error)",
            m.calls_placed.clone(),
        );
        registry.register(
            "call_outcomes",
            "Calls that ended, by final status",
            m.call_outcomes.clone(),
        );
        registry.register(
            "sms_sent",
            "Text messages asked of the provider, by result",
            m.sms_sent.clone(),
        );
        registry.register(
            "webhooks",
            "Provider webhooks received, by kind and result (incl. rejected signatures)",
            m.webhooks.clone(),
        );
        registry.register(
            "escalation_steps",
            "Escalation steps notified (first step included)",
            m.escalation_steps.clone(),
        );
        registry.register(
            "escalations_exhausted",
            "Escalation policies that ran out without an acknowledgement",
            m.exhausted.clone(),
        );
        registry.register(
            "acknowledgements",
            "Alerts acknowledged or resolved through alertcall, by channel and action",
            m.acknowledgements.clone(),
        );
        registry.register(
            "menu_choices",
            "Choices made on the call menu, by choice and by keypad or speech",
            m.menu_choices.clone(),
        );
        registry.register(
            "alert_to_dial_seconds",
            "Seconds from an alert's triggered_at to the provider accepting its first call",
            m.alert_to_dial.clone(),
        );
        registry.register(
            "alert_to_acknowledge_seconds",
            "Seconds from an alert's triggered_at to its acknowledgement through alertcall",
            m.alert_to_ack.clone(),
        );
        registry.register(
            "database_errors",
            "Database operations that failed",
            m.database_errors.clone(),
        );
        registry.register(
            "database_write_failures",
            "Database writes refused for lack of space, an I/O error or read-only files",
            m.database_write_failures.clone(),
        );
        registry.register(
            "provider_errors",
            "Provider requests that failed, by provider and kind",
            m.provider_errors.clone(),
        );
        registry.register(
            "unreached_alerts",
            "Active critical alerts nobody is being reached about, by reason",
            m.unreached.clone(),
        );
        registry.register(
            "dispatch_loop_age_seconds",
            "Seconds since this instance's dispatcher last went round its loop",
            m.dispatch_loop_age.clone(),
        );
        registry.register(
            "heartbeats",
            "Heartbeat intervals, by result: sent, error (the monitor did not take it), withheld (something is wrong)",
            m.heartbeats.clone(),
        );
        registry.register(
            "hl7_messages",
            "HL7 messages answered by this instance, by ACK code: AA, AE, AR",
            m.hl7_messages.clone(),
        );
        registry.register(
            "hl7_links",
            "HL7 sources supervised by their watchdogs, by state: up, down (silent past [hl7] watchdog_timeout), closed (signed off)",
            m.hl7_links.clone(),
        );
        registry.register(
            "hl7_status_reports",
            "HL7 status reports (ORA^R41) to alarm sources, by result: sent (acknowledged AA), failed (an attempt; retried), lost (could not be queued)",
            m.hl7_reports.clone(),
        );
        registry.register(
            "hl7_status_reports_unsent",
            "HL7 status reports queued and not yet acknowledged by their source (counted up to 100)",
            m.hl7_reports_unsent.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    pub fn alert_detected(&self) {
        self.alerts_detected.inc();
    }

    pub fn call_placed(&self, provider: &str, result: &str) {
        self.calls_placed
            .get_or_create(&ProviderResult {
                provider: provider.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn call_ended(&self, provider: &str, outcome: &str) {
        self.call_outcomes
            .get_or_create(&ProviderOutcome {
                provider: provider.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn sms(&self, provider: &str, result: &str) {
        self.sms_sent
            .get_or_create(&ProviderResult {
                provider: provider.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn webhook(&self, kind: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn escalation_step(&self) {
        self.escalation_steps.inc();
    }

    pub fn escalation_exhausted(&self) {
        self.exhausted.inc();
    }

    /// `via`: phone, sms, dashboard, api, cli; `action`: acknowledged or resolved.
    pub fn acknowledged(&self, via: &str, action: &str, seconds: Option<f64>) {
        self.acknowledgements
            .get_or_create(&AckLabels {
                via: via.into(),
                action: action.into(),
            })
            .inc();
        if let Some(s) = seconds.filter(|_| action == "acknowledged") {
            self.alert_to_ack.observe(s.max(0.0));
        }
    }

    pub fn menu_choice(&self, choice: &str, via: &str) {
        self.menu_choices
            .get_or_create(&ChoiceLabels {
                choice: choice.into(),
                via: via.into(),
            })
            .inc();
    }

    pub fn first_dial(&self, seconds: f64) {
        self.alert_to_dial.observe(seconds.max(0.0));
    }

    pub fn database_error(&self) {
        self.database_errors.inc();
    }

    pub fn database_write_failure(&self) {
        self.database_write_failures.inc();
    }

    pub fn unreached(&self, reason: &str, alerts: i64) {
        self.unreached
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .set(alerts);
    }

    pub fn dispatch_loop_age(&self, seconds: f64) {
        self.dispatch_loop_age.set(seconds);
    }

    pub fn heartbeat(&self, result: &str) {
        self.heartbeats
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// One HL7 message answered with `code` (AA, AE or AR).
    pub fn hl7_message(&self, code: &str) {
        self.hl7_messages
            .get_or_create(&ResultLabel {
                result: code.into(),
            })
            .inc();
    }

    /// One HL7 status report sent, failed (an attempt) or lost.
    pub fn hl7_report(&self, result: &str) {
        self.hl7_reports
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn hl7_reports_unsent(&self, reports: i64) {
        self.hl7_reports_unsent.set(reports);
    }

    /// How many supervised HL7 sources are in `state`.
    pub fn hl7_links(&self, state: &str, sources: i64) {
        self.hl7_links
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .set(sources);
    }

    pub fn provider_error(&self, provider: &str, kind: &str) {
        self.provider_errors
            .get_or_create(&ProviderKind {
                provider: provider.into(),
                kind: kind.into(),
            })
            .inc();
    }
}
