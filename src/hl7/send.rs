//! `alertcall hl7 send <file>`: an MLLP client for testing an installation. It sends the
//! messages in a file one after another on one connection, framed by the listener's own
//! framer, and reads each ACK with a timeout: what the gateway would see.

use std::time::Duration;

use futures_util::StreamExt;
use hl7_parser::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::FramedRead;

use super::mllp::{Frame, MllpCodec, frame};

/// The largest ACK taken: ours are a few hundred bytes.
const MAX_ACK: usize = 64 * 1024;

/// The messages in a file: segments separated by `\r`, `\n` or `\r\n` (normalised to `\r`),
/// a new message at every `MSH`. Blank lines are dropped.
pub fn messages(text: &str) -> Result<Vec<String>, String> {
    let mut messages: Vec<Vec<&str>> = Vec::new();
    for segment in text.split(['\r', '\n']).filter(|s| !s.trim().is_empty()) {
        if segment.starts_with("MSH") {
            messages.push(vec![segment]);
        } else if let Some(message) = messages.last_mut() {
            message.push(segment);
        } else {
            return Err(format!(
                "the first segment is not MSH (it starts {:?}): an HL7 message starts with its MSH segment",
                segment.chars().take(3).collect::<String>()
            ));
        }
    }
    if messages.is_empty() {
        return Err("no HL7 message in it (a message starts with an MSH segment)".into());
    }
    Ok(messages.into_iter().map(|m| m.join("\r")).collect())
}

/// An ACK, read: MSA-1, MSA-2 and the ERR segment's location, code and text.
#[derive(Debug, PartialEq, Eq)]
pub struct Ack {
    pub code: String,
    pub control_id: String,
    pub error: Option<String>,
}

impl Ack {
    pub fn accepted(&self) -> bool {
        self.code == "AA"
    }

    /// The ACK in plain words: `AA: accepted`, `AE: error: OBX^3^5: 103 Table value not
    /// found: phase "later" is unknown`.
    pub fn describe(&self) -> String {
        let meaning = match self.code.as_str() {
            "AA" => "accepted: the receiver took the message and stored its alarms",
            "AE" => "error: the receiver could not take this message; fix it (or send it again)",
            "AR" => "rejected: the receiver does not take this kind of message",
            _ => "not an application acknowledgement (AA, AE or AR)",
        };
        let mut text = format!("{}: {meaning}", self.code);
        if let Some(error) = &self.error {
            text.push_str(&format!("\n    {error}"));
        }
        text
    }
}

/// Reads an ACK's MSA and ERR.
pub fn read_ack(bytes: &[u8]) -> Result<Ack, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the ACK is not UTF-8: {e}"))?;
    let message = Message::parse_with_lenient_newlines(text.trim_end_matches(['\r', '\n']), true)
        .map_err(|e| format!("the answer is not an HL7 message ({e}): {text:?}"))?;
    let field = |segment: &str, n: usize| {
        message
            .segment(segment)
            .and_then(|s| s.field(n))
            .map(|f| super::oru::decode(f.raw_value(), &message.separators))
            .filter(|v| !v.is_empty())
    };
    let code = field("MSA", 1).ok_or_else(|| format!("the answer has no MSA-1: {text:?}"))?;
    let component = |segment: &str, n: usize, c: usize| {
        message
            .segment(segment)
            .and_then(|s| s.field(n))
            .and_then(|f| f.component(c))
            .map(|v| super::oru::decode(v.raw_value(), &message.separators))
            .filter(|v| !v.is_empty())
    };
    // ERR-2 (segment ^ sequence ^ field ^ repetition ^ component) as `OBX-5.2`, ERR-3's
    // code and name, ERR-8's text.
    let error = message.segment("ERR").map(|_| {
        let at = component("ERR", 2, 1).map(|segment| {
            let mut at = format!("at {segment}");
            if let Some(field) = component("ERR", 2, 3) {
                at.push_str(&format!("-{field}"));
                if let Some(c) = component("ERR", 2, 5) {
                    at.push_str(&format!(".{c}"));
                }
            }
            at
        });
        let code = component("ERR", 3, 1).map(|code| match component("ERR", 3, 2) {
            Some(name) => format!("{code} {name}"),
            None => code,
        });
        [at, code, field("ERR", 8)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ")
    });
    Ok(Ack {
        code,
        control_id: field("MSA", 2).unwrap_or_default(),
        error,
    })
}

/// One connection to a listener.
pub struct Client {
    acks: FramedRead<OwnedReadHalf, MllpCodec>,
    write: OwnedWriteHalf,
    timeout: Duration,
}

impl Client {
    /// Connects to `to` (`host:port`) within `timeout`.
    pub async fn connect(to: &str, timeout: Duration) -> Result<Client, String> {
        let nothing = |why: String| format!("nothing answers at {to} ({why})");
        let stream = tokio::time::timeout(timeout, TcpStream::connect(to))
            .await
            .map_err(|_| nothing(format!("no connection within {}", human(timeout))))?
            .map_err(|e| nothing(e.to_string()))?;
        let (read, write) = stream.into_split();
        Ok(Client {
            acks: FramedRead::new(read, MllpCodec::new(MAX_ACK)),
            write,
            timeout,
        })
    }

    /// Sends one message and waits for its ACK.
    pub async fn send(&mut self, message: &str) -> Result<Ack, String> {
        let exchange = async {
            self.write
                .write_all(&frame(message.as_bytes()))
                .await
                .map_err(|e| format!("the message could not be sent: {e}"))?;
            match self.acks.next().await {
                Some(Ok(Frame::Message(ack))) => read_ack(&ack),
                Some(Ok(Frame::Oversized(_))) => Err(format!(
                    "the answer is larger than {MAX_ACK} bytes: not an ACK"
                )),
                Some(Err(e)) => Err(format!("the ACK could not be read: {e}")),
                None => Err("the receiver closed the connection without an ACK".into()),
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no ACK within {}", human(self.timeout)))?
    }
}

fn human(d: Duration) -> String {
    crate::domain::alert::human_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_holds_one_or_several_messages_with_any_line_ends() {
        let text =
            "MSH|^~\\&|A|||||ORU^R40|1|P|2.6\r\nOBR|1\n\nMSH|^~\\&|A|||||ORU^R40|2|P|2.6\rOBX|1\n";
        assert_eq!(
            messages(text).unwrap(),
            vec![
                "MSH|^~\\&|A|||||ORU^R40|1|P|2.6\rOBR|1",
                "MSH|^~\\&|A|||||ORU^R40|2|P|2.6\rOBX|1"
            ]
        );
        assert!(messages("").unwrap_err().contains("no HL7 message"));
        assert!(messages("PID|1\nMSH|x").unwrap_err().contains("not MSH"));
    }

    #[test]
    fn an_ack_is_read_in_plain_words() {
        let ack = read_ack(b"MSH|^~\\&|alertcall||GW||20261203||ACK^R40^ACK|x|P|2.6\rMSA|AE|X-2\rERR||OBX^3^5|103^Table value not found^HL70357|E||||phase \\F\\ later\r").unwrap();
        assert_eq!(ack.code, "AE");
        assert_eq!(ack.control_id, "X-2");
        assert!(!ack.accepted());
        assert_eq!(
            ack.describe(),
            "AE: error: the receiver could not take this message; fix it (or send it again)\n    at OBX-5: 103 Table value not found: phase | later"
        );
        let aa = read_ack(b"MSH|^~\\&|a\rMSA|AA|1").unwrap();
        assert!(aa.accepted());
        assert_eq!(aa.error, None);
        assert!(read_ack(b"MSH|^~\\&|a").unwrap_err().contains("no MSA-1"));
        assert!(read_ack(b"hello").is_err());
    }
}
