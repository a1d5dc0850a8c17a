//! Bringing the real server into each state in which an active critical alert reaches
//! nobody, the real way: one alertcall.toml whose policies are chosen by alert type, one
//! alert per reason (its `alert_type` is the reason's name), and the fake Vonage answering
//! as the reason needs. Used by `reach` (one server per reason, both databases) and by
//! `browser` (the banners in Chromium, as few servers as the reasons allow).

use alertcall::domain::reach::Reason;

use crate::db::{Backend, TestDb};
use crate::fake_vonage::{Behaviour, FakeVonage};

pub const NURSE: &str = "+13854019951";
/// The fallback contact: a charge desk, called and texted.
pub const DESK: &str = "+13854019960";
/// A number Vonage refuses for good ("Invalid number").
pub const REFUSED: &str = "+13854019980";

/// One way to reach nobody.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub reason: Reason,
    /// Whom the policy for this alert type notifies; `None`: no policy matches.
    pub notify: Option<&'static str>,
    /// The alert is two days old when alertcall first sees it.
    pub old: bool,
    /// How the fake Vonage answers every call: a provider-wide failure, which leaves every
    /// other escalating alert unreached for the same reason, so it needs a server of its own.
    pub provider: Option<fn(usize) -> Behaviour>,
    /// The database refuses alertcall's page for this alert (a trigger, as a permission or a
    /// hospital's own trigger on alertcall's tables would), so it is never taken in.
    pub refuse_intake: bool,
    /// Part of the banner's sentence.
    pub message: &'static str,
}

/// One per reason. A new reason gets its line here; the browser test fails until it has.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        reason: Reason::NoPolicy,
        notify: None,
        old: false,
        provider: None,
        refuse_intake: false,
        message: "No escalation policy matches this alert (severity \"critical\", type \"no_policy\"",
    },
    Scenario {
        reason: Reason::NobodyOnCall,
        notify: Some("person:nophone"),
        old: false,
        provider: None,
        refuse_intake: false,
        message: "only people without a phone number (Ana Souza)",
    },
    Scenario {
        reason: Reason::ProviderDown,
        notify: Some("person:nurse"),
        old: false,
        provider: Some(|_| Behaviour::Status(401, None)),
        refuse_intake: false,
        message: "Vonage cannot place calls",
    },
    Scenario {
        reason: Reason::Skipped,
        notify: Some("person:nurse"),
        old: true,
        provider: None,
        refuse_intake: false,
        message: "older than 24 h (ALERTCALL_MAX_ALERT_AGE)",
    },
    Scenario {
        reason: Reason::Exhausted,
        notify: Some("person:nurse"),
        old: false,
        provider: None,
        refuse_intake: false,
        message: "Every step of policy \"exhausted\" was called and nobody pressed 1",
    },
    Scenario {
        reason: Reason::FailedForGood,
        notify: Some("person:wrong"),
        old: false,
        provider: None,
        refuse_intake: false,
        message: "The call to Lee Wong was refused for good",
    },
    Scenario {
        reason: Reason::NotTakenIn,
        notify: Some("person:nurse"),
        old: false,
        provider: None,
        refuse_intake: true,
        message: "alertcall has not taken this alert in",
    },
];

/// The scenario for `reason`.
pub fn scenario(reason: Reason) -> Scenario {
    *SCENARIOS
        .iter()
        .find(|s| s.reason == reason)
        .unwrap_or_else(|| panic!("no scenario for {}", reason.as_str()))
}

/// alertcall.toml: a nurse, someone without a phone, someone whose number Vonage refuses, a
/// charge desk as the fallback contact, and per scenario a policy for its alert type.
pub fn config() -> tempfile::NamedTempFile {
    let policies: String = SCENARIOS
        .iter()
        .filter_map(|s| {
            let name = s.reason.as_str();
            s.notify.map(|notify| {
                format!(
                    r#"
[[policies]]
name = "{name}"
alert_types = ["{name}"]
renotify_every = "10m"
[[policies.steps]]
notify = ["{notify}"]
wait = "1s"
"#
                )
            })
        })
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            r#"
[hospital]
fallback = ["person:desk"]

[[staff]]
id = "nurse"
name = "Dev Patel"
phone = "{NURSE}"

[[staff]]
id = "nophone"
name = "Ana Souza"
sms = "+13854019970"

[[staff]]
id = "wrong"
name = "Lee Wong"
phone = "{REFUSED}"

[[staff]]
id = "desk"
name = "Charge desk"
phone = "{DESK}"
sms = "{DESK}"
{policies}"#
        ),
    )
    .unwrap();
    file
}

/// The fake Vonage for a server running `scenarios` (at most one provider-wide failure).
pub async fn fake_vonage(scenarios: &[Scenario]) -> FakeVonage {
    let fake = FakeVonage::start().await;
    fake.answer_number(REFUSED, Behaviour::Status(400, None));
    let mut wide = scenarios.iter().filter_map(|s| s.provider);
    if let Some(pick) = wide.next() {
        fake.set_default(pick);
    }
    assert!(
        wide.next().is_none(),
        "one provider-wide failure per server"
    );
    fake
}

/// Inserts the scenario's active critical alert, as the hospital app would, and returns its
/// id.
pub async fn raise(db: &TestDb, s: &Scenario) -> String {
    let triggered = if s.old {
        db.hours_ago(48)
    } else {
        db.hours_ago(0)
    };
    let reason = s.reason.as_str();
    if s.refuse_intake {
        refuse_pages(db, reason).await;
    }
    db.scalar(&format!(
        "INSERT INTO alerts (patient_id, room_id, severity, alert_type, message, triggered_at) \
         VALUES ('P001', 'R2', 'critical', '{reason}', 'Seizure ({reason})', {triggered}) \
         RETURNING CAST(id AS TEXT)"
    ))
    .await
    .expect("alert id")
}

/// A trigger makes the database refuse alertcall's page for alerts of `alert_type`.
async fn refuse_pages(db: &TestDb, alert_type: &str) {
    let pages = db.table("pages");
    let refused = format!(
        "(SELECT alert_type FROM alerts WHERE CAST(id AS TEXT) = NEW.alert_id) = '{alert_type}'"
    );
    match db.backend {
        Backend::Postgres => {
            db.exec(&format!(
                "CREATE FUNCTION alertcall.refuse_page() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN IF {refused} THEN RAISE EXCEPTION 'page refused'; END IF; \
                 RETURN NEW; END $$"
            ))
            .await;
            db.exec(&format!(
                "CREATE TRIGGER refuse_page BEFORE INSERT ON {pages} \
                 FOR EACH ROW EXECUTE FUNCTION alertcall.refuse_page()"
            ))
            .await;
        }
        Backend::Sqlite => {
            db.exec(&format!(
                "CREATE TRIGGER refuse_page BEFORE INSERT ON {pages} WHEN {refused} \
                 BEGIN SELECT RAISE(ABORT, 'page refused'); END"
            ))
            .await;
        }
    }
}
