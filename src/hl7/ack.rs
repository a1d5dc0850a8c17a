//! The acknowledgement alertcall sends back for every message: `ACK^R40^ACK` with `MSA`, and
//! an `ERR` segment naming the field when the message is refused.

use chrono::{DateTime, Utc};

use hl7_parser::message::Separators;

use super::oru::{AckCode, Header, Refusal};

/// The ACK to `header`, sent at `now` with control id `our_id`.
pub fn render(
    header: &Header,
    code: AckCode,
    refusal: Option<&Refusal>,
    our_id: &str,
    now: DateTime<Utc>,
) -> String {
    // The sender's own encoding characters, so its fields are copied back as they came.
    let sep = header.separators;
    let (f, c) = (sep.field, sep.component);
    let or = |v: &str, default: &str| {
        if v.is_empty() {
            default.to_string()
        } else {
            v.to_string()
        }
    };
    let mut ack = msh(
        sep,
        [
            &or(&header.receiving_application, "alertcall"),
            &header.receiving_facility,
            &header.sending_application,
            &header.sending_facility,
        ],
        &format!("ACK{c}R40{c}ACK"),
        our_id,
        now,
        [&or(&header.processing_id, "P"), &or(&header.version, "2.6")],
    );
    ack.push_str(&format!(
        "\rMSA{f}{}{f}{}",
        code.as_str(),
        header.control_id
    ));
    if let Some(r) = refusal {
        let (segment, seq, field, component) = &r.location;
        let mut location = format!("{segment}{c}{seq}");
        if *field > 0 {
            location.push_str(&format!("{c}{field}"));
            if *component > 0 {
                location.push_str(&format!("{c}1{c}{component}"));
            }
        }
        ack.push_str(&format!(
            "\rERR{f}{f}{location}{f}{code}{c}{name}{c}HL70357{f}E{f}{f}{f}{f}{text}",
            code = r.hl7_code,
            name = error_name(r.hl7_code),
            text = sep.encode(&r.text),
        ));
    }
    ack.push('\r');
    ack
}

/// An MSH segment alertcall sends: `from_to` is MSH-3 to MSH-6 (sending application and
/// facility, receiving application and facility) as they go on the wire; MSH-9's message
/// type, MSH-10 our control id, and MSH-11, MSH-12 (`processing_version`) follow.
pub(super) fn msh(
    sep: Separators,
    from_to: [&str; 4],
    message_type: &str,
    our_id: &str,
    now: DateTime<Utc>,
    processing_version: [&str; 2],
) -> String {
    // Separators display as MSH-1 and MSH-2 together.
    let mut fields = vec![format!("MSH{sep}")];
    fields.extend(from_to.iter().map(|v| v.to_string()));
    fields.push(now.format("%Y%m%d%H%M%S%.3f+0000").to_string());
    fields.push(String::new());
    fields.push(message_type.to_string());
    fields.push(sep.encode(our_id).to_string());
    fields.extend(processing_version.iter().map(|v| v.to_string()));
    fields.join(&sep.field.to_string())
}

/// HL7 table 0357's names for the codes alertcall sends.
fn error_name(code: u16) -> &'static str {
    match code {
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        _ => "Application internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            separators: Separators::default(),
            sending_application: "GW^0012^EUI-64".into(),
            sending_facility: "ICU".into(),
            receiving_application: String::new(),
            receiving_facility: String::new(),
            message_type: "ORU^R40^ORU_R40".into(),
            control_id: "MSG7".into(),
            processing_id: "P".into(),
            version: "2.6".into(),
        }
    }

    #[test]
    fn an_accept_echoes_the_control_id_and_addresses_the_sender() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .into();
        let ack = render(&header(), AckCode::Accept, None, "A1", now);
        assert_eq!(
            ack,
            "MSH|^~\\&|alertcall||GW^0012^EUI-64|ICU|20261203100000.000+0000||ACK^R40^ACK|A1|P|2.6\rMSA|AA|MSG7\r"
        );
    }

    #[test]
    fn an_error_names_the_field() {
        let now = Utc::now();
        let refusal = Refusal {
            code: AckCode::Error,
            location: ("OBX".into(), 3, 5, 0),
            hl7_code: 103,
            text: "phase \"later\" is unknown".into(),
        };
        let ack = render(&header(), AckCode::Error, Some(&refusal), "A2", now);
        assert!(
            ack.ends_with("MSA|AE|MSG7\rERR||OBX^3^5|103^Table value not found^HL70357|E||||phase \"later\" is unknown\r"),
            "{ack}"
        );
    }
}
