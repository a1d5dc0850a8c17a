//! One event, one log line. A value logged from outside (a webhook's uuid, an alert id
//! written by another system) could otherwise carry a newline and forge the lines after it.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Wraps a writer so that each formatted event (the formatter writes one at a time) has its
/// control characters escaped (`\n` as `\\n`), keeping only its final newline. Tabs stay,
/// and so do escape sequences: the formatter colours its own output and already escapes
/// them in values.
pub struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }
}

pub struct OneLineWriter<W>(W);

fn forges_lines(b: u8) -> bool {
    b.is_ascii_control() && b != b'\t' && b != 0x1b
}

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (text, end) = match buf.strip_suffix(b"\n") {
            Some(text) => (text, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !text.iter().copied().any(forges_lines) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in text {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if forges_lines(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(event: &[u8]) -> Vec<u8> {
        let mut w = OneLineWriter(Vec::new());
        w.write_all(event).unwrap();
        w.0
    }

    #[test]
    fn an_event_stays_on_one_line() {
        assert_eq!(written(b"plain\tline\n"), b"plain\tline\n");
        assert_eq!(
            written(b"alert_id=A1\n2026-12-03 ERROR forged\r\n"),
            b"alert_id=A1\\n2026-12-03 ERROR forged\\r\n"
        );
        assert_eq!(written(b"nul\0bell\x07"), b"nul\\x00bell\\x07");
        assert_eq!(written("é \x1b[1m".as_bytes()), "é \x1b[1m".as_bytes());
    }
}
