//! MLLP framing (HL7 v2's Minimal Lower Layer Protocol): each message travels as
//! `0x0B` message `0x1C 0x0D`, many messages one after another on one connection.
//!
//! The framer is a `tokio_util` `Decoder`, so reading, buffering and end-of-stream handling
//! are tokio's; it only finds frame boundaries, with a cap on a message's size so that a
//! peer cannot make the listener buffer without bound. Bytes outside a frame (line noise,
//! a peer's stray newline) are dropped.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Start of a frame.
pub const START: u8 = 0x0B;
/// End of a frame: `0x1C` followed by a carriage return.
pub const END: [u8; 2] = [0x1C, 0x0D];
/// How much of an oversized message is kept, to answer it with its own control id.
const KEPT_HEAD: usize = 1024;

/// One frame read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole message, without the framing bytes.
    Message(Bytes),
    /// A message longer than the cap: its first bytes (for the control id), the rest dropped.
    Oversized(Bytes),
}

/// Frames `0x0B` … `0x1C 0x0D`, each message at most `max_message` bytes.
#[derive(Debug)]
pub struct MllpCodec {
    max_message: usize,
    /// Inside an oversized frame: the head kept, the rest being skipped to its end.
    skipping: Option<Bytes>,
}

impl MllpCodec {
    pub fn new(max_message: usize) -> MllpCodec {
        MllpCodec {
            max_message,
            skipping: None,
        }
    }

    /// Drops what an oversized frame still sends; the frame when its end arrives.
    fn skip(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        match find_end(buf) {
            Some(end) => {
                buf.advance(end + END.len());
                self.skipping.take().map(Frame::Oversized)
            }
            None => {
                // Keep a trailing 0x1C: its carriage return may come in the next read.
                let keep = usize::from(buf.last() == Some(&END[0]));
                buf.advance(buf.len() - keep);
                None
            }
        }
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(END.len()).position(|w| w == END)
}

impl Decoder for MllpCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        if self.skipping.is_some() {
            return Ok(self.skip(buf));
        }
        // Anything before a frame's start byte is noise.
        match buf.iter().position(|&b| b == START) {
            Some(start) => buf.advance(start),
            None => {
                buf.clear();
                return Ok(None);
            }
        }
        let body = &buf[1..];
        match find_end(body) {
            Some(end) if end <= self.max_message => {
                let frame = buf.split_to(1 + end + END.len());
                Ok(Some(Frame::Message(frame.freeze().slice(1..1 + end))))
            }
            Some(_) => {
                self.skipping = Some(Bytes::copy_from_slice(&body[..KEPT_HEAD.min(body.len())]));
                Ok(self.skip(buf))
            }
            // `+ 1`: a last 0x1C within the cap may be the start of the end marker.
            None if body.len() > self.max_message + 1 => {
                self.skipping = Some(Bytes::copy_from_slice(&body[..KEPT_HEAD.min(body.len())]));
                Ok(self.skip(buf))
            }
            None => {
                buf.reserve(self.max_message.min(64 * 1024));
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        // A frame cut off by the peer closing is no message: nothing is taken from it.
        let frame = self.decode(buf)?;
        buf.clear();
        Ok(frame)
    }
}

/// `message` framed for the wire.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.extend_from_slice(&END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one read at a time, then the end of the stream.
    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Frame> {
        let mut codec = MllpCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn msg(text: &str) -> Frame {
        Frame::Message(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn frames_are_cut_at_their_markers() {
        let wire = [frame(b"MSH|one"), frame(b"MSH|two")].concat();
        assert_eq!(frames(100, &[&wire]), vec![msg("MSH|one"), msg("MSH|two")]);
    }

    #[test]
    fn noise_between_frames_is_dropped() {
        let wire = [
            b"\r\n junk".to_vec(),
            frame(b"MSH|a"),
            b"\x1c\r\n".to_vec(),
            frame(b"MSH|b"),
        ]
        .concat();
        assert_eq!(frames(100, &[&wire]), vec![msg("MSH|a"), msg("MSH|b")]);
    }

    #[test]
    fn an_end_marker_split_across_reads_still_ends_the_frame() {
        assert_eq!(
            frames(100, &[b"\x0bMSH|a\x1c", b"\r\x0bMSH|b\x1c\r"]),
            vec![msg("MSH|a"), msg("MSH|b")]
        );
    }

    #[test]
    fn an_oversized_message_is_skipped_whole_and_the_next_one_read() {
        let big = vec![b'x'; 5000];
        let wire = [frame(&big), frame(b"MSH|after")].concat();
        let got = frames(100, &[&wire[..10], &wire[10..3000], &wire[3000..]]);
        assert_eq!(got.len(), 2);
        assert!(matches!(&got[0], Frame::Oversized(head) if head.len() <= KEPT_HEAD));
        assert_eq!(got[1], msg("MSH|after"));
    }

    #[test]
    fn a_message_of_exactly_the_cap_is_taken() {
        let wire = frame(&[b'y'; 100]);
        assert_eq!(frames(100, &[&wire]), vec![msg(&"y".repeat(100))]);
        assert!(matches!(frames(99, &[&wire])[0], Frame::Oversized(_)));
    }

    #[test]
    fn a_truncated_frame_yields_nothing() {
        assert_eq!(frames(100, &[b"\x0bMSH|cut off"]), vec![]);
        assert_eq!(frames(100, &[b"\x0bMSH|cut off\x1c"]), vec![]);
    }

    proptest! {
        /// However the bytes are split into reads, the same messages come out.
        #[test]
        fn splitting_reads_changes_nothing(
            messages in prop::collection::vec("[A-Za-z0-9|^~&\r ]{0,60}", 0..6),
            noise in prop::collection::vec("[a-z\n]{0,5}", 6),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut wire = Vec::new();
            for (m, n) in messages.iter().zip(&noise) {
                wire.extend_from_slice(n.as_bytes());
                wire.extend(frame(m.as_bytes()));
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for p in points {
                chunks.push(&wire[at..p]);
                at = p;
            }
            chunks.push(&wire[at..]);
            let expected: Vec<Frame> = messages.iter().map(|m| msg(m)).collect();
            prop_assert_eq!(frames(64, &chunks), expected);
        }

        /// Random bytes never panic, never yield a frame longer than the cap, and never
        /// make the buffer grow far past it.
        #[test]
        fn random_bytes_are_bounded(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12),
        ) {
            let mut codec = MllpCodec::new(128);
            let mut buf = BytesMut::new();
            for chunk in &chunks {
                buf.extend_from_slice(chunk);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    if let Frame::Message(m) = f {
                        prop_assert!(m.len() <= 128);
                    }
                }
                prop_assert!(buf.len() <= 128 + 2 + 300);
            }
            let _ = codec.decode_eof(&mut buf).unwrap();
        }
    }
}
