//! `alertcall.toml`: staff, on-call schedules and escalation policies, too rich for
//! environment variables. Validated as a whole; every problem names its line and field.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

use super::parse_duration;
use crate::domain::alert::Alert;
use crate::domain::escalation::{Matcher, Policy, Step, Target};
use crate::domain::menu::Destination;
use crate::domain::phone::Phone;
use crate::domain::schedule::{Override, Schedule, Shift, local_instant};

/// A person who can be notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub phone: Option<Phone>,
    pub sms: Option<Phone>,
    /// BCP-47 language of this person's calls (spoken and recognised), e.g. "en-GB".
    pub language: Option<String>,
}

/// `[[rooms]]`: what a call about an alert in this room can do besides the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLink {
    /// The room's id or name as alerts carry it (compared without regard to case).
    pub room: String,
    /// Where key 4 connects the nurse: the bedside intercom or a video room's SIP gateway.
    pub connect: Option<Destination>,
    /// Whether the details (key 9) repeat the patient's name; unset: as the announcement.
    pub include_patient_name_in_details: Option<bool>,
}

/// Everything `alertcall.toml` describes, checked and resolved.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// `[messages]`: what calls and texts say.
    pub hospital_name: Option<String>,
    pub include_patient_name: Option<bool>,
    /// `[hospital] language`: what calls speak and understand (ALERTCALL_LANGUAGE wins).
    pub language: Option<String>,
    /// `[hospital] time_zone`, for the clock times calls say.
    pub time_zone: Option<TimeZone>,
    /// `[speech] enabled`: whether calls understand spoken answers (default on).
    pub speech: Option<bool>,
    /// `[speech] min_confidence`: speech results below this are not acted on.
    pub speech_min_confidence: Option<f64>,
    pub rooms: Vec<RoomLink>,
    pub staff: HashMap<String, Person>,
    pub schedules: Vec<Schedule>,
    pub policies: Vec<Policy>,
    /// `[[users]]` and `[[api_tokens]]`: who may use the dashboard and the API.
    pub access: crate::auth::Access,
    /// `[dashboard] show_patient_name`: false hides names on the dashboard and in the API.
    pub show_patient_name: Option<bool>,
    /// `[hl7] priorities`: HL7 alarm priority to alert severity.
    pub hl7_priorities: crate::hl7::Priorities,
    /// `[hl7] watchdog_timeout`; `hl7_watchdog_timeout()` gives the default.
    pub hl7_watchdog_timeout: Option<Duration>,
    /// `[hl7] report_status`: the Alarm Reporter's MLLP address (`host:port`), to which the
    /// status of each HL7 alarm goes back (PCD-05 `ORA^R41`); none when not set.
    pub hl7_report_status: Option<String>,
    /// `[hl7] keep_messages`; `hl7_keep_messages()` gives the default.
    pub hl7_keep_messages: Option<Duration>,
    /// `[hospital] fallback`: the hospital's safety net (a charge-nurse desk, a supervisor),
    /// called and texted when an alert reaches nobody; not a step of any policy.
    pub fallback: Vec<Target>,
}

impl Directory {
    /// How long a supervised HL7 source may be silent before its link is down (30 s).
    pub fn hl7_watchdog_timeout(&self) -> Duration {
        self.hl7_watchdog_timeout
            .unwrap_or(crate::hl7::supervise::DEFAULT_TIMEOUT)
    }

    /// How long HL7 message control ids and sent status reports are kept (7 days).
    pub fn hl7_keep_messages(&self) -> Duration {
        self.hl7_keep_messages
            .unwrap_or(crate::hl7::retention::DEFAULT_KEEP)
    }

    /// What an alert's timeline sentences need from here: names, policies, schedules and
    /// the hospital's time zone (this machine's when none is set), with the alert's `calls`.
    pub fn timeline<'a>(
        &'a self,
        calls: &'a [crate::domain::call::CallRecord],
        whole_numbers: bool,
    ) -> crate::domain::timeline::Context<'a> {
        crate::domain::timeline::Context {
            names: self
                .staff
                .iter()
                .map(|(id, p)| (id.as_str(), p.name.as_str()))
                .collect(),
            policies: &self.policies,
            schedules: &self.schedules,
            time_zone: self.time_zone.clone().unwrap_or_else(TimeZone::system),
            calls: calls
                .iter()
                .map(|c| {
                    let call = crate::domain::timeline::CallRef {
                        person: c.person.as_deref(),
                        to: &c.to_number,
                    };
                    (c.id.to_string(), call)
                })
                .collect(),
            whole_numbers,
        }
    }

    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|s| s.name == name)
    }

    /// The `[[rooms]]` entry for the alert's room (by id, then by name).
    pub fn room(&self, alert: &Alert) -> Option<&RoomLink> {
        let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim());
        [alert.room_id.as_deref(), alert.room_name.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|key| self.rooms.iter().find(|r| same(&r.room, key)))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    hospital: HospitalDoc,
    #[serde(default)]
    messages: MessagesDoc,
    #[serde(default)]
    staff: Vec<PersonDoc>,
    #[serde(default)]
    schedules: Vec<ScheduleDoc>,
    #[serde(default)]
    policies: Vec<PolicyDoc>,
    #[serde(default)]
    speech: SpeechDoc,
    #[serde(default)]
    rooms: Vec<RoomDoc>,
    #[serde(default)]
    users: Vec<UserDoc>,
    #[serde(default)]
    api_tokens: Vec<TokenDoc>,
    #[serde(default)]
    dashboard: DashboardDoc,
    #[serde(default)]
    hl7: Hl7Doc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Hl7Doc {
    /// `{ PH = "critical", PM = "high", "PM technical" = "critical" }`: an alarm's priority
    /// (and kind) to the alert severity.
    priorities: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    /// `"30s"`: a source that sent watchdogs and then nothing for this long is an alarm.
    watchdog_timeout: Option<Spanned<String>>,
    /// `"gateway.icu.example:2576"`: where the status of each alarm goes back (ORA^R41).
    report_status: Option<Spanned<String>>,
    /// `"168h"`: how long the control ids of messages taken and the status reports sent are
    /// kept.
    keep_messages: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserDoc {
    name: Spanned<String>,
    role: Spanned<String>,
    /// From `alertcall hash-password`.
    password_hash: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenDoc {
    name: Spanned<String>,
    role: Spanned<String>,
    /// SHA-256 of the token in hex (`alertcall hash-password --token` prints a token and it).
    sha256: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DashboardDoc {
    show_patient_name: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SpeechDoc {
    enabled: Option<bool>,
    min_confidence: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomDoc {
    room: Spanned<String>,
    connect: Option<Spanned<String>>,
    include_patient_name_in_details: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HospitalDoc {
    time_zone: Option<Spanned<String>>,
    /// E.g. "1": numbers written without `+` get this country calling code.
    default_country_code: Option<Spanned<String>>,
    /// BCP-47, e.g. "en-GB": the language calls speak and understand.
    language: Option<Spanned<String>>,
    /// Who is called and texted when an alert reaches nobody (`person:charge-desk`).
    #[serde(default)]
    fallback: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MessagesDoc {
    /// Spoken as "Critical alert at <hospital_name>."
    hospital_name: Option<String>,
    /// false: calls and texts leave the patient's name out.
    include_patient_name: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonDoc {
    id: Spanned<String>,
    name: String,
    phone: Option<Spanned<String>>,
    sms: Option<Spanned<String>>,
    language: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleDoc {
    name: Spanned<String>,
    time_zone: Option<Spanned<String>>,
    #[serde(default)]
    shifts: Vec<ShiftDoc>,
    #[serde(default)]
    overrides: Vec<OverrideDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftDoc {
    name: String,
    start: Spanned<String>,
    end: Spanned<String>,
    people: Spanned<Vec<String>>,
    #[serde(default = "one")]
    rotate_every_days: Spanned<i64>,
    rotation_start: Option<Spanned<String>>,
}

fn one() -> Spanned<i64> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideDoc {
    person: Spanned<String>,
    replaces: Option<Spanned<String>>,
    start: Spanned<String>,
    end: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyDoc {
    name: String,
    #[serde(default)]
    severities: Vec<String>,
    #[serde(default)]
    alert_types: Vec<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default = "one_round")]
    rounds: Spanned<u32>,
    renotify_every: Option<Spanned<String>>,
    steps: Spanned<Vec<StepDoc>>,
}

fn one_round() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDoc {
    notify: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    call: bool,
    #[serde(default)]
    sms: bool,
    wait: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// Default wait for an acknowledgement at each step.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Default cadence of re-notifying the last step after a policy is exhausted.
pub const DEFAULT_RENOTIFY: Duration = Duration::from_secs(300);

/// Collects problems, each with the line it is on.
struct Problems<'a> {
    file: &'a str,
    source: &'a str,
    list: Vec<String>,
}

impl Problems<'_> {
    fn line(&self, span: &std::ops::Range<usize>) -> usize {
        self.source[..span.start.min(self.source.len())]
            .matches('\n')
            .count()
            + 1
    }

    fn at<T>(&mut self, value: &Spanned<T>, field: &str, message: impl std::fmt::Display) {
        let line = self.line(&value.span());
        self.list
            .push(format!("{}:{line}: {field}: {message}", self.file));
    }
}

/// Reads and checks `path`. Errors name the file, line and field of every problem.
pub fn load(path: &Path) -> Result<Directory, Vec<String>> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot be read ({e})", path.display())])?;
    parse(&path.display().to_string(), &source)
}

/// Parses and checks the text of an `alertcall.toml`.
pub fn parse(file: &str, source: &str) -> Result<Directory, Vec<String>> {
    let doc: FileDoc = toml::from_str(source).map_err(|e| {
        let line = e
            .span()
            .map(|s| source[..s.start.min(source.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!(":{l}")).unwrap_or_default();
        vec![format!("{file}{at}: {}", e.message())]
    })?;
    let mut p = Problems {
        file,
        source,
        list: Vec::new(),
    };

    let default_tz = match &doc.hospital.time_zone {
        Some(tz) => zone(&mut p, tz, "hospital.time_zone"),
        None => Some(TimeZone::UTC),
    };
    let country = doc.hospital.default_country_code.as_ref().and_then(|c| {
        let code = c.get_ref().trim_start_matches('+');
        if (1..=3).contains(&code.len()) && code.chars().all(|ch| ch.is_ascii_digit()) {
            Some(code.to_string())
        } else {
            p.at(
                c,
                "hospital.default_country_code",
                "must be 1 to 3 digits, e.g. \"1\" or \"44\"",
            );
            None
        }
    });

    let mut staff = HashMap::new();
    for (i, person) in doc.staff.iter().enumerate() {
        let id = person.id.get_ref().trim().to_string();
        if id.is_empty() {
            p.at(&person.id, &format!("staff[{i}].id"), "must not be empty");
        } else if staff.contains_key(&id) {
            p.at(
                &person.id,
                &format!("staff[{i}].id"),
                format!("{id:?} is used twice"),
            );
        }
        let mut number = |field: &str, value: &Option<Spanned<String>>| {
            let v = value.as_ref()?;
            match phone(v.get_ref(), country.as_deref()) {
                Ok(phone) => Some(phone),
                Err(e) => {
                    p.at(v, &format!("staff[{i}].{field} ({id})"), e);
                    None
                }
            }
        };
        let voice = number("phone", &person.phone);
        let sms = number("sms", &person.sms);
        let language = checked_language(
            &mut p,
            &person.language,
            &format!("staff[{i}].language ({id})"),
        );
        if person.phone.is_none() && person.sms.is_none() {
            p.at(
                &person.id,
                &format!("staff[{i}]"),
                "needs a phone or an sms number",
            );
        }
        staff.insert(
            id.clone(),
            Person {
                id,
                name: person.name.clone(),
                phone: voice,
                sms,
                language,
            },
        );
    }
    let known = |p: &mut Problems, who: &Spanned<String>, field: &str| {
        if !staff.contains_key(who.get_ref().as_str()) {
            p.at(
                who,
                field,
                format!("no staff member has id {:?}", who.get_ref()),
            );
        }
    };

    let mut schedules = Vec::new();
    let mut names = HashSet::new();
    for (i, s) in doc.schedules.iter().enumerate() {
        let name = s.name.get_ref().clone();
        if !names.insert(name.clone()) {
            p.at(
                &s.name,
                &format!("schedules[{i}].name"),
                format!("{name:?} is used twice"),
            );
        }
        let tz = match &s.time_zone {
            Some(tz) => zone(&mut p, tz, &format!("schedules[{i}].time_zone")),
            None => default_tz.clone(),
        };
        let mut shifts = Vec::new();
        for (j, shift) in s.shifts.iter().enumerate() {
            let field = format!("schedules[{i}].shifts[{j}]");
            let start = time(&mut p, &shift.start, &format!("{field}.start"));
            let end = time(&mut p, &shift.end, &format!("{field}.end"));
            for who in shift.people.get_ref() {
                if !staff.contains_key(who) {
                    p.at(
                        &shift.people,
                        &format!("{field}.people"),
                        format!("no staff member has id {who:?}"),
                    );
                }
            }
            if shift.people.get_ref().is_empty() {
                p.at(&shift.people, &format!("{field}.people"), "names nobody");
            }
            if *shift.rotate_every_days.get_ref() < 1 {
                p.at(
                    &shift.rotate_every_days,
                    &format!("{field}.rotate_every_days"),
                    "must be 1 or more",
                );
            }
            let rotation_start = match &shift.rotation_start {
                Some(d) => d
                    .get_ref()
                    .parse::<Date>()
                    .map_err(|_| {
                        p.at(
                            d,
                            &format!("{field}.rotation_start"),
                            "must be a date such as 2026-01-05",
                        );
                    })
                    .ok(),
                None => Some(jiff::civil::date(2026, 1, 5)),
            };
            if let (Some(start), Some(end), Some(rotation_start)) = (start, end, rotation_start) {
                shifts.push(Shift {
                    name: shift.name.clone(),
                    start,
                    end,
                    people: shift.people.get_ref().clone(),
                    rotation_days: *shift.rotate_every_days.get_ref(),
                    rotation_start,
                });
            }
        }
        let mut overrides = Vec::new();
        for (j, o) in s.overrides.iter().enumerate() {
            let field = format!("schedules[{i}].overrides[{j}]");
            known(&mut p, &o.person, &format!("{field}.person"));
            if let Some(r) = &o.replaces {
                known(&mut p, r, &format!("{field}.replaces"));
            }
            let start = tz
                .as_ref()
                .and_then(|tz| instant(&mut p, tz, &o.start, &format!("{field}.start")));
            let end = tz
                .as_ref()
                .and_then(|tz| instant(&mut p, tz, &o.end, &format!("{field}.end")));
            if let (Some(start), Some(end)) = (start, end) {
                if end <= start {
                    p.at(&o.end, &format!("{field}.end"), "must be after start");
                }
                overrides.push(Override {
                    person: o.person.get_ref().clone(),
                    replaces: o.replaces.as_ref().map(|r| r.get_ref().clone()),
                    start,
                    end,
                });
            }
        }
        if let Some(time_zone) = tz {
            schedules.push(Schedule {
                name,
                time_zone,
                shifts,
                overrides,
            });
        }
    }

    let mut policies = Vec::new();
    for (i, policy) in doc.policies.iter().enumerate() {
        let field = format!("policies[{i}] ({})", policy.name);
        if policy.steps.get_ref().is_empty() {
            p.at(
                &policy.steps,
                &format!("{field}.steps"),
                "a policy needs at least one step",
            );
        }
        if *policy.rounds.get_ref() < 1 {
            p.at(
                &policy.rounds,
                &format!("{field}.rounds"),
                "must be 1 or more",
            );
        }
        let renotify_every = match &policy.renotify_every {
            Some(d) => duration(&mut p, d, &format!("{field}.renotify_every")),
            None => DEFAULT_RENOTIFY,
        };
        let mut steps = Vec::new();
        for (j, step) in policy.steps.get_ref().iter().enumerate() {
            let sfield = format!("{field}.steps[{j}]");
            let mut targets = Vec::new();
            let notify = format!("{sfield}.notify");
            for t in &step.notify {
                targets.extend(known_target(&mut p, t, &notify, &staff, &names));
            }
            if step.notify.is_empty() {
                p.at(
                    &policy.steps,
                    &format!("{sfield}.notify"),
                    "names nobody to notify",
                );
            }
            if !step.call && !step.sms {
                p.at(
                    &policy.steps,
                    &sfield,
                    "call and sms are both off: the step would notify nobody",
                );
            }
            let wait = match &step.wait {
                Some(w) => duration(&mut p, w, &format!("{sfield}.wait")),
                None => DEFAULT_WAIT,
            };
            steps.push(Step {
                targets,
                call: step.call,
                sms: step.sms,
                wait,
            });
        }
        policies.push(Policy {
            name: policy.name.clone(),
            matcher: Matcher {
                severities: policy.severities.clone(),
                alert_types: policy.alert_types.clone(),
                rooms: policy.rooms.clone(),
            },
            steps,
            rounds: *policy.rounds.get_ref(),
            renotify_every,
        });
    }

    let fallback = doc
        .hospital
        .fallback
        .iter()
        .filter_map(|t| known_target(&mut p, t, "hospital.fallback", &staff, &names))
        .collect();

    let language = checked_language(&mut p, &doc.hospital.language, "hospital.language");
    let speech_min_confidence = doc.speech.min_confidence.as_ref().and_then(|c| {
        let v = *c.get_ref();
        if (0.0..=1.0).contains(&v) {
            Some(v)
        } else {
            p.at(
                c,
                "speech.min_confidence",
                "must be between 0.0 and 1.0 (the recogniser's confidence), e.g. 0.6",
            );
            None
        }
    });
    let mut rooms: Vec<RoomLink> = Vec::new();
    for (i, r) in doc.rooms.iter().enumerate() {
        let name = r.room.get_ref().trim().to_string();
        let field = format!("rooms[{i}]");
        if name.is_empty() {
            p.at(&r.room, &format!("{field}.room"), "must not be empty");
        } else if rooms.iter().any(|o| o.room.eq_ignore_ascii_case(&name)) {
            p.at(
                &r.room,
                &format!("{field}.room"),
                format!("{name:?} is listed twice"),
            );
        }
        let connect = r.connect.as_ref().and_then(|c| {
            destination(c.get_ref(), country.as_deref())
                .map_err(|e| p.at(c, &format!("{field}.connect ({name})"), e))
                .ok()
        });
        rooms.push(RoomLink {
            room: name,
            connect,
            include_patient_name_in_details: r.include_patient_name_in_details,
        });
    }

    let access = access(&mut p, &doc);
    let hl7_priorities = doc
        .hl7
        .priorities
        .as_ref()
        .map(|d| hl7_priorities(&mut p, d))
        .unwrap_or_default();
    let hl7_watchdog_timeout = doc.hl7.watchdog_timeout.as_ref().map(|d| {
        let timeout = duration(&mut p, d, "hl7.watchdog_timeout");
        if timeout < Duration::from_secs(1) {
            p.at(d, "hl7.watchdog_timeout", "must be at least 1s");
        }
        timeout
    });
    let hl7_keep_messages = doc.hl7.keep_messages.as_ref().map(|d| {
        let keep = duration(&mut p, d, "hl7.keep_messages");
        if keep < Duration::from_secs(3600) {
            p.at(
                d,
                "hl7.keep_messages",
                "must be at least 1h: a gateway resending a message within it must be recognised",
            );
        }
        keep
    });
    let hl7_report_status = doc.hl7.report_status.as_ref().map(|d| {
        let address = d.get_ref().trim().to_string();
        let port = address
            .rsplit_once(':')
            .filter(|(host, _)| !host.is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port > 0);
        if port.is_none() {
            p.at(
                d,
                "hl7.report_status",
                "must be host:port, the Alarm Reporter's MLLP address (e.g. \"10.1.4.7:2576\")",
            );
        }
        address
    });

    if p.list.is_empty() {
        Ok(Directory {
            hospital_name: doc.messages.hospital_name.clone(),
            include_patient_name: doc.messages.include_patient_name,
            language,
            time_zone: doc.hospital.time_zone.as_ref().and(default_tz),
            speech: doc.speech.enabled,
            speech_min_confidence,
            rooms,
            staff,
            schedules,
            policies,
            access,
            show_patient_name: doc.dashboard.show_patient_name,
            fallback,
            hl7_priorities,
            hl7_watchdog_timeout,
            hl7_report_status,
            hl7_keep_messages,
        })
    } else {
        Err(p.list)
    }
}

/// `[hl7] priorities`, checked: keys `PH`, `PM`, `PL`, `PN`, each optionally followed by a
/// kind (`"PM technical"`); values non-empty severities.
fn hl7_priorities(
    p: &mut Problems,
    doc: &Spanned<std::collections::BTreeMap<String, String>>,
) -> crate::hl7::Priorities {
    let mut checked = Vec::new();
    for (key, severity) in doc.get_ref() {
        let mut words = key.split_whitespace();
        let priority = words.next().unwrap_or_default();
        let kind = words.next();
        let known = crate::hl7::PRIORITIES.contains(&priority)
            && kind.is_none_or(|k| crate::hl7::KINDS.contains(&k))
            && words.next().is_none();
        if !known {
            p.at(
                doc,
                "hl7.priorities",
                format!(
                    "{key:?} is not a priority (PH, PM, PL, PN), optionally followed by a kind (physiological, technical, advisory), e.g. \"PM technical\""
                ),
            );
        } else if severity.trim().is_empty() {
            p.at(
                doc,
                &format!("hl7.priorities.{key}"),
                "must name a severity, e.g. \"critical\"",
            );
        } else {
            let key = kind.map_or(priority.to_string(), |k| format!("{priority} {k}"));
            checked.push((key, severity.trim().to_string()));
        }
    }
    crate::hl7::Priorities::with(checked)
}

/// `[[users]]` and `[[api_tokens]]`, checked: known roles, real hashes, unique names.
fn access(p: &mut Problems, doc: &FileDoc) -> crate::auth::Access {
    use crate::auth::{Access, ApiToken, Role, User};
    let mut roles: Vec<Option<Role>> = Vec::new();
    let fields = doc
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (&u.role, format!("users[{i}].role")))
        .chain(
            doc.api_tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (&t.role, format!("api_tokens[{i}].role"))),
        );
    for (r, field) in fields {
        let role = Role::parse(r.get_ref());
        if role.is_none() {
            p.at(
                r,
                &field,
                format!(
                    "{:?} is not a role: use \"viewer\" or \"admin\"",
                    r.get_ref()
                ),
            );
        }
        roles.push(role);
    }
    let mut access = Access::default();
    let mut names = std::collections::HashSet::new();
    for (i, user) in doc.users.iter().enumerate() {
        if !names.insert(user.name.get_ref().as_str()) || user.name.get_ref().trim().is_empty() {
            p.at(
                &user.name,
                &format!("users[{i}].name"),
                "must be unique and not empty",
            );
        }
        if let Err(e) = crate::auth::check_hash(user.password_hash.get_ref()) {
            p.at(&user.password_hash, &format!("users[{i}].password_hash"), e);
        }
        if let Some(role) = roles[i] {
            access.users.push(User {
                name: user.name.get_ref().clone(),
                role,
                password_hash: user.password_hash.get_ref().clone(),
            });
        }
    }
    for (i, token) in doc.api_tokens.iter().enumerate() {
        let hex = token.sha256.get_ref().to_ascii_lowercase();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            p.at(
                &token.sha256,
                &format!("api_tokens[{i}].sha256"),
                "must be 64 hex digits (`alertcall hash-password --token` prints one)",
            );
        }
        if let Some(role) = roles[doc.users.len() + i] {
            access.tokens.push(ApiToken {
                name: token.name.get_ref().clone(),
                role,
                sha256: hex,
            });
        }
    }
    access
}

/// A phone number as staff write it: E.164, or national with a configured country code.
fn phone(text: &str, country: Option<&str>) -> Result<Phone, String> {
    match (Phone::parse(text), country) {
        (Ok(p), _) => Ok(p),
        (Err(_), Some(code)) if !text.trim().starts_with('+') => {
            let digits: String = text.chars().filter(char::is_ascii_digit).collect();
            // A national trunk prefix (0 in most countries) is dropped, as when dialling
            // from abroad.
            let national = if code == "1" {
                &digits[..]
            } else {
                digits.trim_start_matches('0')
            };
            let national = national
                .strip_prefix(code)
                .filter(|_| code == "1" && national.len() == 11)
                .unwrap_or(national);
            Phone::parse(&format!("+{code}{national}")).map_err(|_| {
                Phone::parse(text)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default()
            })
        }
        (Err(e), _) => Err(e.to_string()),
    }
}

/// Where key 4 connects: a `sip:`/`sips:` URI, or a phone number as staff numbers are written.
fn destination(text: &str, country: Option<&str>) -> Result<Destination, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return Destination::parse(text);
    }
    phone(text, country)
        .map(Destination::Phone)
        .map_err(|e| format!("must be a phone number or a sip: URI ({e})"))
}

/// A BCP-47 language tag such as "en-GB" or "es-419".
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    first_ok
        && tag.len() <= 35
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn checked_language(
    p: &mut Problems,
    value: &Option<Spanned<String>>,
    field: &str,
) -> Option<String> {
    let v = value.as_ref()?;
    let tag = v.get_ref().trim();
    if is_language_tag(tag) {
        Some(tag.to_string())
    } else {
        p.at(
            v,
            field,
            format!("{tag:?} is not a language tag such as en-US or en-GB"),
        );
        None
    }
}

/// A target naming a known person or schedule; otherwise a problem, reported at `field`.
fn known_target(
    p: &mut Problems,
    t: &Spanned<String>,
    field: &str,
    staff: &HashMap<String, Person>,
    schedules: &HashSet<String>,
) -> Option<Target> {
    let problem = match target(t.get_ref()) {
        Some(Target::Person(who)) if !staff.contains_key(&who) => {
            format!("no staff member has id {who:?}")
        }
        Some(Target::OnCall(s) | Target::Everyone(s)) if !schedules.contains(&s) => {
            format!("no schedule is named {s:?}")
        }
        Some(target) => return Some(target),
        None => format!(
            "{:?} must be person:<id>, oncall:<schedule> or everyone:<schedule>",
            t.get_ref()
        ),
    };
    p.at(t, field, problem);
    None
}

/// `person:ana`, `oncall:icu`, `everyone:icu`.
fn target(text: &str) -> Option<Target> {
    let (kind, name) = text.split_once(':')?;
    let name = name.trim().to_string();
    if name.is_empty() {
        return None;
    }
    match kind.trim() {
        "person" => Some(Target::Person(name)),
        "oncall" => Some(Target::OnCall(name)),
        "everyone" => Some(Target::Everyone(name)),
        _ => None,
    }
}

fn zone(p: &mut Problems, tz: &Spanned<String>, field: &str) -> Option<TimeZone> {
    TimeZone::get(tz.get_ref())
        .map_err(|_| {
            p.at(
                tz,
                field,
                format!(
                    "{:?} is not an IANA time zone such as America/Denver",
                    tz.get_ref()
                ),
            )
        })
        .ok()
}

fn time(p: &mut Problems, t: &Spanned<String>, field: &str) -> Option<Time> {
    t.get_ref()
        .parse::<Time>()
        .map_err(|_| {
            p.at(
                t,
                field,
                format!("{:?} is not a time such as 07:00", t.get_ref()),
            )
        })
        .ok()
}

fn instant(
    p: &mut Problems,
    tz: &TimeZone,
    t: &Spanned<String>,
    field: &str,
) -> Option<jiff::Timestamp> {
    t.get_ref()
        .parse::<DateTime>()
        .ok()
        .and_then(|dt| local_instant(tz, dt))
        .or_else(|| {
            p.at(
                t,
                field,
                format!(
                    "{:?} is not a local date and time such as 2026-03-12T19:00",
                    t.get_ref()
                ),
            );
            None
        })
}

fn duration(p: &mut Problems, d: &Spanned<String>, field: &str) -> Duration {
    parse_duration(d.get_ref()).unwrap_or_else(|e| {
        p.at(d, field, e);
        DEFAULT_WAIT
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const EXAMPLE: &str = include_str!("../../alertcall.example.toml");

    #[test]
    fn the_operator_guide_shows_the_example_file_as_it_is() {
        let guide = include_str!("../../docs/operator-guide.md");
        assert!(
            guide.contains(&format!("```toml\n{EXAMPLE}```")),
            "docs/operator-guide.md's complete example must be alertcall.example.toml, unchanged"
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        let dir = parse("alertcall.example.toml", EXAMPLE).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(dir.staff.len(), 6);
        assert_eq!(dir.schedules.len(), 2);
        assert_eq!(dir.policies.len(), 3);
        assert_eq!(dir.policies[0].steps[0].wait, Duration::from_secs(30));
        assert_eq!(dir.rooms.len(), 2);
        assert_eq!(dir.speech_min_confidence, Some(0.6));
        assert_eq!(dir.hl7_watchdog_timeout(), Duration::from_secs(30));
        assert_eq!(
            dir.hl7_priorities.severity(Some("PM"), Some("technical")),
            "critical"
        );
        assert_eq!(dir.hl7_report_status, None);
        assert_eq!(dir.staff["cho"].language.as_deref(), Some("en-GB"));
        assert_eq!(
            dir.staff["ana"].phone.as_ref().map(Phone::e164),
            Some("+13855550101")
        );
        // Copied to production unchanged, it rings nobody: every number is in the reserved
        // fictional range 555-0100 to 555-0199.
        for person in dir.staff.values() {
            for n in [&person.phone, &person.sms].into_iter().flatten() {
                assert!(n.e164().starts_with("+138555501"), "{n}");
            }
        }
    }

    #[test]
    fn problems_name_the_line_and_field() {
        let text = r#"
[[staff]]
id = "ana"
name = "Ana"
phone = "385-401-9951"

[[schedules]]
name = "icu"
time_zone = "Mars/Olympus"

[[policies]]
name = "default"
[[policies.steps]]
notify = ["person:bob", "oncall:nowhere", "pager:ana"]
wait = "soon"
"#;
        let errors = parse("alertcall.toml", text).unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("alertcall.toml:5: staff[0].phone (ana)") && all.contains("+13854019951"),
            "{all}"
        );
        assert!(
            all.contains("alertcall.toml:9: schedules[0].time_zone"),
            "{all}"
        );
        assert!(all.contains("alertcall.toml:14: policies[0] (default).steps[0].notify: no staff member has id \"bob\""), "{all}");
        assert!(all.contains("no schedule is named \"nowhere\""), "{all}");
        assert!(all.contains("\"pager:ana\" must be person:<id>"), "{all}");
        assert!(
            all.contains("alertcall.toml:15: policies[0] (default).steps[0].wait"),
            "{all}"
        );
        assert_eq!(errors.len(), 6, "{all}");
    }

    #[test]
    fn the_fallback_contact_names_known_staff() {
        let text = r#"
[hospital]
fallback = ["person:desk", "oncall:icu"]

[[staff]]
id = "desk"
name = "Charge desk"
phone = "+13854019951"
"#;
        let errors = parse("alertcall.toml", text).unwrap_err();
        assert_eq!(
            errors,
            ["alertcall.toml:3: hospital.fallback: no schedule is named \"icu\""]
        );
        let ok = parse("alertcall.toml", &text.replace(", \"oncall:icu\"", "")).unwrap();
        assert_eq!(ok.fallback, [Target::Person("desk".into())]);
    }

    #[test]
    fn hl7_priorities_are_checked() {
        let ok = parse(
            "alertcall.toml",
            "[hl7]\npriorities = { PM = \"critical\", \"PL technical\" = \"high\" }\n",
        )
        .unwrap();
        assert_eq!(ok.hl7_priorities.severity(Some("PM"), None), "critical");
        assert_eq!(
            ok.hl7_priorities.severity(Some("PL"), Some("technical")),
            "high"
        );
        assert_eq!(ok.hl7_priorities.severity(Some("PL"), None), "low");
        let errors = parse(
            "alertcall.toml",
            "\n[hl7]\npriorities = { PX = \"critical\", \"PM loud\" = \"high\" }\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("alertcall.toml:3: hl7.priorities:"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_hl7_report_status_address_is_checked() {
        let none = parse("alertcall.toml", "").unwrap();
        assert_eq!(none.hl7_report_status, None);
        let ok = parse("alertcall.toml", "[hl7]\nreport_status = \"gw.icu:2576\"\n").unwrap();
        assert_eq!(ok.hl7_report_status.as_deref(), Some("gw.icu:2576"));
        for bad in ["\"gw.icu\"", "\":2576\"", "\"gw:0\"", "\"gw:port\""] {
            let errors =
                parse("alertcall.toml", &format!("[hl7]\nreport_status = {bad}\n")).unwrap_err();
            assert!(
                errors[0].starts_with("alertcall.toml:2: hl7.report_status:"),
                "{bad}: {errors:?}"
            );
        }
    }

    #[test]
    fn the_hl7_watchdog_timeout_is_checked() {
        let none = parse("alertcall.toml", "").unwrap();
        assert_eq!(none.hl7_watchdog_timeout(), Duration::from_secs(30));
        let ok = parse("alertcall.toml", "[hl7]\nwatchdog_timeout = \"2m\"\n").unwrap();
        assert_eq!(ok.hl7_watchdog_timeout(), Duration::from_secs(120));
        assert_eq!(none.hl7_keep_messages(), Duration::from_secs(7 * 24 * 3600));
        let keep = parse("alertcall.toml", "[hl7]\nkeep_messages = \"48h\"\n").unwrap();
        assert_eq!(keep.hl7_keep_messages(), Duration::from_secs(48 * 3600));
        let errors = parse("alertcall.toml", "[hl7]\nkeep_messages = \"5m\"\n").unwrap_err();
        assert!(errors[0].starts_with("alertcall.toml:2: hl7.keep_messages: must be at least 1h"));
        for bad in ["\"soon\"", "\"200ms\""] {
            let errors = parse(
                "alertcall.toml",
                &format!("[hl7]\nwatchdog_timeout = {bad}\n"),
            )
            .unwrap_err();
            assert!(
                errors[0].starts_with("alertcall.toml:2: hl7.watchdog_timeout:"),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_and_unknown_fields_have_lines() {
        let errors = parse(
            "a.toml",
            "[[staff]]\nid = \"ana\"\nname = \"Ana\"\nfone = \"+13854019951\"\n",
        )
        .unwrap_err();
        assert!(
            errors[0].starts_with("a.toml:4:") && errors[0].contains("fone"),
            "{errors:?}"
        );
        let errors = parse("a.toml", "[[staff]\n").unwrap_err();
        assert!(errors[0].starts_with("a.toml:1:"), "{errors:?}");
    }

    #[test]
    fn a_default_country_code_normalises_national_numbers() {
        assert_eq!(
            phone("385-401-9951", Some("1")).unwrap().e164(),
            "+13854019951"
        );
        assert_eq!(
            phone("1 385 401 9951", Some("1")).unwrap().e164(),
            "+13854019951"
        );
        assert_eq!(
            phone("07911 123456", Some("44")).unwrap().e164(),
            "+447911123456"
        );
        assert!(phone("385-401-9951", None).is_err());
        assert_eq!(
            phone("+447911123456", Some("1")).unwrap().e164(),
            "+447911123456"
        );
    }

    #[test]
    fn rooms_languages_and_speech_are_checked() {
        let text = r#"
[hospital]
default_country_code = "1"
language = "en-GB"

[speech]
enabled = true
min_confidence = 0.7

[[staff]]
id = "ana"
name = "Ana"
phone = "+13854019951"
language = "es-US"

[[rooms]]
room = "Room 2"
connect = "sip:room2@intercom.example.org"
include_patient_name_in_details = false

[[rooms]]
room = "R7"
connect = "385-555-0107"
"#;
        let dir = parse("alertcall.toml", text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(dir.language.as_deref(), Some("en-GB"));
        assert_eq!(dir.speech, Some(true));
        assert_eq!(dir.speech_min_confidence, Some(0.7));
        assert_eq!(dir.staff["ana"].language.as_deref(), Some("es-US"));
        assert_eq!(dir.rooms.len(), 2);
        assert_eq!(
            dir.rooms[0].connect,
            Some(Destination::Sip("sip:room2@intercom.example.org".into()))
        );
        assert_eq!(dir.rooms[0].include_patient_name_in_details, Some(false));
        assert_eq!(
            dir.rooms[1].connect,
            Some(Destination::Phone(Phone::parse("+13855550107").unwrap()))
        );

        let broken = r#"
[hospital]
language = "English"

[speech]
min_confidence = 1.5

[[staff]]
id = "ana"
name = "Ana"
phone = "+13854019951"
language = "en_US"

[[rooms]]
room = "Room 2"
connect = "sip:"

[[rooms]]
room = "room 2"
connect = "call me maybe"
"#;
        let errors = parse("alertcall.toml", broken).unwrap_err();
        let all = errors.join("\n");
        for want in [
            "alertcall.toml:3: hospital.language:",
            "alertcall.toml:6: speech.min_confidence:",
            "alertcall.toml:12: staff[0].language (ana):",
            "alertcall.toml:16: rooms[0].connect (Room 2):",
            "alertcall.toml:19: rooms[1].room: \"room 2\" is listed twice",
            "alertcall.toml:20: rooms[1].connect (room 2):",
        ] {
            assert!(all.contains(want), "{want} missing from\n{all}");
        }
        assert_eq!(errors.len(), 6, "{all}");
    }
}
