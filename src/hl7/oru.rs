//! Reading an IHE PCD-04 `ORU^R40` (Report Alert) into alarms: pure, no I/O.
//!
//! Each OBR group is one alarm. Its first OBX is the alarm itself (OBX-3 the event code such
//! as `MDC_EVT_HI_GT_LIM`, OBX-5 the text, OBX-8 the priority and source, OBX-18 the
//! device); the OBX segments that share its OBX-4 sub-id prefix (`1.2.1.0` of `1.2.1.0.3`)
//! carry its attributes, matched by their MDC reference-id *text* (`MDC_ATTR_EVENT_PHASE`),
//! never by number: vendors number the same attribute differently.

use std::fmt;

use hl7_parser::Message;
use hl7_parser::message::{Field, Segment, Separators};

/// MSH fields the ACK and the alarm identity need, as sent (the ACK copies them back with
/// the sender's own encoding characters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// MSH-1 and MSH-2.
    pub separators: Separators,
    /// MSH-3 and MSH-4 as sent: who the alarms come from.
    pub sending_application: String,
    pub sending_facility: String,
    /// MSH-5 and MSH-6: who the sender thinks we are (the ACK is sent as them).
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9, e.g. `ORU^R40^ORU_R40`.
    pub message_type: String,
    /// MSH-10: the message control id, echoed in MSA-2.
    pub control_id: String,
    /// MSH-11 and MSH-12, echoed in the ACK.
    pub processing_id: String,
    pub version: String,
}

impl Header {
    /// The sender's identity for alarm ids: MSH-3 and MSH-4 together.
    pub fn source(&self) -> String {
        if self.sending_facility.is_empty() {
            self.sending_application.clone()
        } else {
            format!("{}|{}", self.sending_application, self.sending_facility)
        }
    }
}

/// Where an alarm's phase puts it in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `start`, `start_only`, `present`: a new alarm.
    Start,
    /// `update`, `continue`, `escalate`, `deescalate`: the same alarm, changed.
    Update,
    /// `end`, `stop`, `absent`, or alarm state `inactive`: the alarm is over at its source.
    End,
    /// No phase given: a new alarm if unknown, an update if known.
    Unstated,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Update => "update",
            Phase::End => "end",
            Phase::Unstated => "unstated",
        }
    }
}

/// One alarm: an OBR group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// OBR-3 (filler order number), or OBR-29's parent id for a follow-up: the same for
    /// every message about one alarm from one source.
    pub instance_id: String,
    /// OBX-3 of the alarm: its MDC reference id text (`MDC_EVT_LEAD_OFF`), or its code.
    pub event_code: String,
    /// OBX-5 of the alarm, escapes decoded.
    pub text: Option<String>,
    pub phase: Phase,
    /// `phase` as sent (`continue`, `escalate`, …).
    pub phase_text: Option<String>,
    /// `MDC_ATTR_ALARM_STATE`: `active`, `inactive`, `latched`, …
    pub state: Option<String>,
    /// `MDC_ATTR_ALARM_INACTIVATION_STATE`: `enabled`, `audio-paused`, …
    pub inactivation_state: Option<String>,
    /// `PH`, `PM`, `PL` or `PN` (OBX-8, or `MDC_ATTR_ALARM_PRIORITY`).
    pub priority: Option<String>,
    /// `physiological`, `technical` or `advisory` (OBX-8's `SP`/`ST`/`SA`, or
    /// `MDC_ATTR_ALERT_TYPE`).
    pub kind: Option<String>,
    /// OBX-18 of the alarm: the device's instance identifier.
    pub device: Option<String>,
    /// OBR-7: when the alarm was observed, as sent.
    pub observed_at: Option<String>,
}

/// PV1-3: point of care ^ room ^ bed ^ facility.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub point_of_care: Option<String>,
    pub room: Option<String>,
    pub bed: Option<String>,
    pub facility: Option<String>,
}

/// PID-3 and PID-5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    pub id: String,
    /// "Given Family", as a caller would say it.
    pub name: Option<String>,
}

/// A whole `ORU^R40`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub patient: Option<Patient>,
    pub location: Option<Location>,
    pub alarms: Vec<Alarm>,
}

/// `MSA-1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept: committed.
    Accept,
    /// Application error: the message could not be understood (or stored).
    Error,
    /// Application reject: a message we do not take.
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// Why a message was not taken: the ACK's `MSA-1` and its `ERR` segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: AckCode,
    /// ERR-2: segment id, its sequence (1-based), field, component (0: whole field).
    pub location: (String, usize, usize, usize),
    /// ERR-3, table 0357: 100 segment sequence error, 101 required field missing, 102 data
    /// type error, 103 table value not found, 200 unsupported message type, 207 application
    /// internal error.
    pub hl7_code: u16,
    /// ERR-8: what is wrong, for the sender's people.
    pub text: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (segment, seq, field, component) = &self.location;
        write!(f, "{segment}")?;
        if *seq > 1 {
            write!(f, "[{seq}]")?;
        }
        write!(f, "-{field}")?;
        if *component > 0 {
            write!(f, ".{component}")?;
        }
        write!(f, ": {}", self.text)
    }
}

fn refuse(
    code: AckCode,
    hl7_code: u16,
    at: (&str, usize, usize, usize),
    text: impl Into<String>,
) -> Refusal {
    Refusal {
        code,
        location: (at.0.to_string(), at.1, at.2, at.3),
        hl7_code,
        text: text.into(),
    }
}

/// What came of reading one message: its header (as far as it could be read, for the ACK)
/// and the report or the reason it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub header: Header,
    pub report: Result<Report, Refusal>,
}

/// Reads one message as sent inside an MLLP frame.
pub fn read(bytes: &[u8]) -> Read {
    let text = match decode_charset(bytes) {
        Ok(text) => text,
        Err(refusal) => {
            return Read {
                header: Header::default(),
                report: Err(refusal),
            };
        }
    };
    // A peer's trailing segment separators are not a segment.
    let text = text.trim_end_matches(['\r', '\n']);
    let message = match Message::parse_with_lenient_newlines(text, true) {
        Ok(m) => m,
        Err(e) => {
            return Read {
                header: Header::default(),
                report: Err(refuse(
                    AckCode::Error,
                    102,
                    ("MSH", 1, 1, 0),
                    format!("not an HL7 v2 message ({e})"),
                )),
            };
        }
    };
    let header = header(&message);
    let report = if message.raw_value().len() < text.len() {
        // The parser stops at what it cannot read; an alarm must not lose segments.
        let at = message.raw_value().len();
        let segment = message.segments.len() + 1;
        Err(refuse(
            AckCode::Error,
            100,
            ("MSH", 1, 1, 0),
            // Not quoted: the text may name a patient, and refusals are logged.
            format!("segment {segment} (at byte {at}) cannot be read"),
        ))
    } else {
        report(&message, &header)
    };
    Read { header, report }
}

/// UTF-8, or ISO 8859-1 when MSH-18 says so.
fn decode_charset(bytes: &[u8]) -> Result<std::borrow::Cow<'_, str>, Refusal> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.into()),
        Err(e) => {
            let first = bytes.split(|&b| b == b'\r' || b == b'\n').next();
            let latin1 = first.is_some_and(|msh| {
                msh.split(|&b| b == b'|')
                    .nth(17)
                    .is_some_and(|cs| cs.starts_with(b"8859/1"))
            });
            if latin1 {
                Ok(bytes
                    .iter()
                    .map(|&b| char::from(b))
                    .collect::<String>()
                    .into())
            } else {
                Err(refuse(
                    AckCode::Error,
                    102,
                    ("MSH", 1, 18, 0),
                    format!(
                        "not UTF-8 at byte {} (send UNICODE UTF-8, or 8859/1 in MSH-18)",
                        e.valid_up_to()
                    ),
                ))
            }
        }
    }
}

fn header(message: &Message<'_>) -> Header {
    let sep = &message.separators;
    let Some(msh) = message.segment("MSH") else {
        return Header::default();
    };
    let get = |n: usize| raw(msh, n).unwrap_or_default().to_string();
    Header {
        separators: *sep,
        sending_application: get(3),
        sending_facility: get(4),
        receiving_application: get(5),
        receiving_facility: get(6),
        message_type: get(9),
        control_id: get(10),
        processing_id: get(11),
        version: get(12),
    }
}

fn report(message: &Message<'_>, header: &Header) -> Result<Report, Refusal> {
    let sep = &message.separators;
    let msh = message
        .segment("MSH")
        .expect("parsed messages start with MSH");
    let kind = msh.field(9);
    let code = kind.and_then(|f| f.component(1)).map(|c| c.raw_value());
    let event = kind.and_then(|f| f.component(2)).map(|c| c.raw_value());
    if (code, event) != (Some("ORU"), Some("R40")) {
        return Err(refuse(
            AckCode::Reject,
            200,
            ("MSH", 1, 9, 0),
            format!(
                "message type {:?} is not taken here; send ORU^R40 (IHE PCD-04)",
                header.message_type
            ),
        ));
    }
    if header.control_id.is_empty() {
        return Err(refuse(
            AckCode::Error,
            101,
            ("MSH", 1, 10, 0),
            "the message control id is missing",
        ));
    }
    if header.sending_application.is_empty() {
        return Err(refuse(
            AckCode::Error,
            101,
            ("MSH", 1, 3, 0),
            "the sending application is missing: alarms are told apart by it",
        ));
    }
    let patient = message.segment("PID").and_then(|pid| {
        let id = component(pid, 3, 1).map(|v| decode(v, sep))?;
        let name = pid.field(5).map(|f| {
            let part = |n| {
                f.component(n)
                    .map(|c| decode(c.raw_value(), sep))
                    .unwrap_or_default()
            };
            [part(2), part(3), part(1)]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        });
        Some(Patient {
            id,
            name: name.filter(|n| !n.is_empty()),
        })
    });
    let location = message.segment("PV1").and_then(|pv1| {
        let part = |n| component(pv1, 3, n).map(|v| decode(v, sep));
        let location = Location {
            point_of_care: part(1),
            room: part(2),
            bed: part(3),
            facility: part(4),
        };
        (location != Location::default()).then_some(location)
    });

    let mut alarms = Vec::new();
    let mut obr_seq = 0;
    let mut group: Option<(&Segment<'_>, Vec<(usize, &Segment<'_>)>)> = None;
    let mut obx_seq = 0;
    for segment in message.segments() {
        match segment.name {
            "OBR" => {
                if let Some((obr, obxs)) = group.take() {
                    alarms.push(alarm(obr, obr_seq, &obxs, sep)?);
                }
                obr_seq += 1;
                group = Some((segment, Vec::new()));
            }
            "OBX" => {
                obx_seq += 1;
                match &mut group {
                    Some((_, obxs)) => obxs.push((obx_seq, segment)),
                    None => {
                        return Err(refuse(
                            AckCode::Error,
                            100,
                            ("OBX", obx_seq, 1, 0),
                            "an OBX before any OBR: each alarm is an OBR followed by its OBX segments",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((obr, obxs)) = group.take() {
        alarms.push(alarm(obr, obr_seq, &obxs, sep)?);
    }
    if alarms.is_empty() {
        return Err(refuse(
            AckCode::Error,
            101,
            ("OBR", 1, 0, 0),
            "no OBR segment: an ORU^R40 reports each alarm as an OBR group",
        ));
    }
    Ok(Report {
        patient,
        location,
        alarms,
    })
}

/// The MDC reference-id text of a coded field (`68481^MDC_ATTR_EVENT_PHASE^MDC`), or its
/// alternate text (component 5) when only that carries it.
fn mdc_text<'m>(field: Option<&Field<'m>>) -> Option<&'m str> {
    let field = field?;
    [2, 5]
        .into_iter()
        .filter_map(|n| field.component(n).map(|c| c.raw_value()))
        .find(|t| t.starts_with("MDC_"))
}

fn alarm(
    obr: &Segment<'_>,
    obr_seq: usize,
    obxs: &[(usize, &Segment<'_>)],
    sep: &Separators,
) -> Result<Alarm, Refusal> {
    let at = |field| ("OBR", obr_seq, field, 0);
    let parent = obr
        .field(29)
        .and_then(|f| f.component(2).or_else(|| f.component(1)))
        .and_then(|c| c.subcomponent(1).map(|s| s.raw_value()))
        .filter(|v| !v.is_empty());
    let own = component(obr, 3, 1);
    let instance_id = parent.or(own).map(|v| decode(v, sep)).ok_or_else(|| {
        refuse(
            AckCode::Error,
            101,
            at(3),
            "the alarm instance id (OBR-3, filler order number) is missing",
        )
    })?;
    let is_attribute =
        |s: &Segment<'_>| mdc_text(s.field(3)).is_some_and(|t| t.starts_with("MDC_ATTR_"));
    let Some(&(event_seq, event)) = obxs.iter().find(|(_, s)| !is_attribute(s)) else {
        return Err(refuse(
            AckCode::Error,
            101,
            at(0),
            "the alarm has no event OBX (OBX-3 the event code, e.g. MDC_EVT_HI_GT_LIM)",
        ));
    };
    let event_code = mdc_text(event.field(3))
        .or_else(|| component(event, 3, 1))
        .map(|v| decode(v, sep))
        .ok_or_else(|| {
            refuse(
                AckCode::Error,
                101,
                ("OBX", event_seq, 3, 0),
                "the alarm's event code (OBX-3) is missing",
            )
        })?;
    let prefix = |s: &Segment<'_>| {
        let sub = raw(s, 4).unwrap_or_default();
        sub.rsplit_once('.').map_or("", |(p, _)| p).to_string()
    };
    let event_prefix = prefix(event);
    let attribute = |name: &str| -> Option<(usize, String)> {
        obxs.iter()
            .filter(|(_, s)| is_attribute(s) && prefix(s) == event_prefix)
            .find(|(_, s)| mdc_text(s.field(3)) == Some(name))
            .and_then(|(seq, s)| raw(s, 5).map(|v| (*seq, decode(v, sep).trim().to_string())))
            .filter(|(_, v)| !v.is_empty())
    };
    let phase_attr = attribute("MDC_ATTR_EVENT_PHASE");
    let state = attribute("MDC_ATTR_ALARM_STATE").map(|(_, v)| v);
    let inactivation_state = attribute("MDC_ATTR_ALARM_INACTIVATION_STATE").map(|(_, v)| v);
    let priority_attr = attribute("MDC_ATTR_ALARM_PRIORITY").map(|(_, v)| v);
    let kind_attr = attribute("MDC_ATTR_ALERT_TYPE").map(|(_, v)| v);

    let mut phase = match &phase_attr {
        None => Phase::Unstated,
        Some((seq, p)) => match p.to_ascii_lowercase().as_str() {
            "start" | "start_only" | "present" => Phase::Start,
            "update" | "continue" | "escalate" | "deescalate" | "de-escalate" | "reset" => {
                Phase::Update
            }
            "end" | "stop" | "absent" => Phase::End,
            other => {
                return Err(refuse(
                    AckCode::Error,
                    103,
                    ("OBX", *seq, 5, 0),
                    format!(
                        "event phase {other:?} is not one of start, start_only, present, update, continue, escalate, deescalate, reset, end, stop, absent"
                    ),
                ));
            }
        },
    };
    if state
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("inactive"))
    {
        phase = Phase::End;
    }

    // OBX-8 of the alarm: priority (PH/PM/PL/PN) and source (SP/ST/SA), in any order.
    let flags: Vec<String> = event
        .field(8)
        .map(|f| {
            f.repeats()
                .map(|r| r.raw_value().trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    let priority = flags
        .iter()
        .find(|f| matches!(f.as_str(), "PH" | "PM" | "PL" | "PN"))
        .cloned()
        .or(priority_attr.map(|p| p.to_ascii_uppercase()));
    if let Some(p) = &priority
        && !matches!(p.as_str(), "PH" | "PM" | "PL" | "PN")
    {
        return Err(refuse(
            AckCode::Error,
            103,
            ("OBX", event_seq, 8, 0),
            format!("alarm priority {p:?} is not PH, PM, PL or PN"),
        ));
    }
    let kind = flags
        .iter()
        .find_map(|f| match f.as_str() {
            "SP" => Some("physiological"),
            "ST" => Some("technical"),
            "SA" => Some("advisory"),
            _ => None,
        })
        .map(str::to_string)
        .or(kind_attr.map(|k| k.to_ascii_lowercase()));

    Ok(Alarm {
        instance_id,
        event_code,
        text: raw(event, 5)
            .map(|v| decode(v, sep).trim().to_string())
            .filter(|v| !v.is_empty()),
        phase,
        phase_text: phase_attr.map(|(_, p)| p),
        state,
        inactivation_state,
        priority,
        kind,
        device: raw(event, 18)
            .map(|v| decode(v, sep))
            .filter(|v| !v.is_empty()),
        observed_at: raw(obr, 7).map(str::to_string).filter(|v| !v.is_empty()),
    })
}

/// A field as sent (escapes not decoded), `None` when empty.
fn raw<'m>(segment: &Segment<'m>, n: usize) -> Option<&'m str> {
    segment
        .field(n)
        .map(|f| f.raw_value())
        .filter(|v| !v.is_empty())
}

/// A field's component as sent, `None` when empty.
fn component<'m>(segment: &Segment<'m>, field: usize, n: usize) -> Option<&'m str> {
    segment
        .field(field)
        .and_then(|f| f.component(n))
        .map(|c| c.raw_value())
        .filter(|v| !v.is_empty())
}

/// Decodes HL7 escapes (`\F\ \S\ \T\ \R\ \E\`, `\.br\`, `\Xhh\`); formatting escapes
/// (`\H\`, `\N\`, …) are dropped. Written here because hl7-parser 0.3's decoder slices the
/// text by character counts as byte offsets, which panics on a UTF-8 name before an escape.
pub fn decode(value: &str, sep: &Separators) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find(sep.escape) {
        out.push_str(&rest[..start]);
        let after = &rest[start + sep.escape.len_utf8()..];
        let Some(end) = after.find(sep.escape) else {
            // An escape never closed is kept as sent.
            out.push_str(&rest[start..]);
            return out;
        };
        match &after[..end] {
            "F" => out.push(sep.field),
            "S" => out.push(sep.component),
            "T" => out.push(sep.subcomponent),
            "R" => out.push(sep.repetition),
            "E" => out.push(sep.escape),
            ".br" => out.push('\n'),
            hex if hex.starts_with('X') => {
                let bytes: Option<Vec<u8>> = (1..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                    })
                    .collect();
                if let Some(text) = bytes.and_then(|b| String::from_utf8(b).ok()) {
                    out.push_str(&text);
                }
            }
            _ => {}
        }
        rest = &after[end + sep.escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_decode_next_to_utf8() {
        let sep = Separators::default();
        assert_eq!(
            decode(r"Zoë Ærø\F\pipe\S\hat\T\amp\R\tilde\E\back\.br\next", &sep),
            "Zoë Ærø|pipe^hat&amp~tilde\\back\nnext"
        );
        assert_eq!(decode(r"\X4F4B\ \H\bold\N\", &sep), "OK bold");
        assert_eq!(decode(r"open \F", &sep), r"open \F");
    }

    proptest! {
        /// Any text, any bytes: reading never panics.
        #[test]
        fn reading_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = read(&bytes);
        }

        #[test]
        fn reading_mangled_messages_never_panics(
            segments in prop::collection::vec(
                prop::sample::select(vec![
                    "PID|||P1^^^H^PI||Doe^J", "PV1||I|ICU^3^A", "OBR|1|X|A1^V|196616^MDC_EVT_ALARM^MDC",
                    "OBX|1|ST|1^MDC_EVT_HI^MDC|1.0.0.0.1|text|||PH~SP|||F", "OBX|2|ST|2^MDC_ATTR_EVENT_PHASE^MDC|1.0.0.0.2|start",
                    "OBX|3|ST|3^MDC_ATTR_ALARM_STATE^MDC|1.0.0.0.3|inactive", "\\F\\É\\X41\\", "OBX|||||||||||", "OBR|||",
                    "é^~\\&|", "|||", "\u{1c}",
                ]), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = format!("MSH|^~\\&|A|B|C|D|20260101||ORU^R40^ORU_R40|1|P|2.6\r{}", segments.join("\r"));
            let _ = read(text.as_bytes());
            let at = cut.index(text.len() + 1);
            let _ = read(&text.as_bytes()[..at]);
        }
    }
}
