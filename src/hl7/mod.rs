//! HL7 v2 alarm intake: an Alarm Manager for IHE PCD Alarm Communication Management.
//! Alarm gateways send PCD-04 `ORU^R40` messages over MLLP; each alarm becomes (or updates,
//! or ends) a row in the hospital's `alerts` table, so policies, escalation, the dashboard
//! and analytics treat it as any other alert. Every message is acknowledged only after its
//! write is committed.

pub mod ack;
pub mod intake;
pub mod listener;
pub mod mllp;
pub mod oru;
pub mod report;
pub mod retention;
pub mod send;
pub mod supervise;
pub mod tls;

use std::collections::BTreeMap;

/// `[hl7] priorities` in alertcall.toml: an alarm's priority (`PH`, `PM`, `PL`, `PN`),
/// optionally with its kind (`"PM technical"`), to an alert severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priorities(BTreeMap<String, String>);

/// The priorities an HL7 alarm can have.
pub const PRIORITIES: [&str; 4] = ["PH", "PM", "PL", "PN"];
/// The kinds an HL7 alarm can have.
pub const KINDS: [&str; 3] = ["physiological", "technical", "advisory"];

impl Default for Priorities {
    /// PH → critical (phoned), PM → high, PL → low, PN → info.
    fn default() -> Priorities {
        Priorities(
            [
                ("PH", "critical"),
                ("PM", "high"),
                ("PL", "low"),
                ("PN", "info"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        )
    }
}

impl Priorities {
    /// The defaults with `overrides` (already checked: keys `PRIORITY` or `PRIORITY kind`).
    pub fn with(overrides: impl IntoIterator<Item = (String, String)>) -> Priorities {
        let mut map = Priorities::default().0;
        map.extend(overrides);
        Priorities(map)
    }

    /// The severity of an alarm. An alarm without a priority is taken as `PH`: a monitor
    /// that leaves it out must not go unheard.
    pub fn severity(&self, priority: Option<&str>, kind: Option<&str>) -> String {
        let priority = priority.unwrap_or("PH");
        kind.and_then(|k| self.0.get(&format!("{priority} {k}")))
            .or_else(|| self.0.get(priority))
            .cloned()
            .unwrap_or_else(|| crate::domain::alert::CRITICAL.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_with_the_kind_first() {
        let p = Priorities::with([
            ("PM".to_string(), "critical".to_string()),
            ("PH technical".to_string(), "high".to_string()),
        ]);
        assert_eq!(p.severity(Some("PH"), Some("physiological")), "critical");
        assert_eq!(p.severity(Some("PH"), Some("technical")), "high");
        assert_eq!(p.severity(Some("PM"), None), "critical");
        assert_eq!(p.severity(Some("PL"), None), "low");
        assert_eq!(p.severity(None, None), "critical");
    }
}
