//! The call menu as TwiML (NOTES.md §4): the same replies as Vonage's NCCO. The prompt is a
//! `<Gather>` wrapping the whole `<Say>`, so a key pressed mid-sentence is not lost, and it
//! posts to its action even when nothing was pressed (`actionOnEmptyResult`), so silence is
//! answered by the menu (asked again, then goodbye) exactly as on Vonage.

use std::fmt::Write as _;

use crate::domain::menu::{self, Destination, Reply};
use crate::telephony::ReplyContext;

/// Seconds the menu waits after the prompt for a key or a word.
const GATHER_TIMEOUT_SECS: u64 = 10;
/// How long the room's phone rings when a nurse is connected to it (as on Vonage).
const DIAL_TIMEOUT_SECS: u64 = 30;
/// Words the recogniser should expect: the answers the menu understands.
const SPEECH_HINTS: &str = "yes, acknowledge, on my way, repeat, details, connect me, conference, join the call, busy, can't, decline";
/// Twilio refuses inline `Twiml` longer than this (NOTES.md §2).
pub const MAX_INLINE: usize = 4000;

/// Renders a reply as a TwiML document.
/// Renders a reply as a TwiML document. `cx.answer_url` is `<Gather>`'s action (absolute:
/// Twilio signs exactly that URL); `cx.caller_id` our Twilio number in E.164.
pub fn render(reply: &Reply, cx: &ReplyContext) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#);
    let say = |out: &mut String, text: &str| {
        let _ = write!(
            out,
            r#"<Say language="{}">{}</Say>"#,
            escape(cx.language),
            escape(text)
        );
    };
    match reply {
        Reply::Prompt { text } => {
            let input = if cx.speech { "dtmf speech" } else { "dtmf" };
            let _ = write!(
                out,
                r#"<Gather input="{input}" numDigits="1" timeout="{GATHER_TIMEOUT_SECS}" action="{}" method="POST" actionOnEmptyResult="true""#,
                escape(cx.answer_url)
            );
            if cx.speech {
                let _ = write!(
                    out,
                    r#" language="{}" hints="{}" speechTimeout="auto""#,
                    escape(cx.language),
                    escape(SPEECH_HINTS)
                );
            }
            out.push('>');
            say(&mut out, text);
            out.push_str("</Gather>");
        }
        Reply::Say { text } => {
            say(&mut out, text);
            out.push_str("<Hangup/>");
        }
        Reply::Connect { text, to } => {
            say(&mut out, text);
            let _ = write!(
                out,
                r#"<Dial callerId="{}" timeout="{DIAL_TIMEOUT_SECS}">"#,
                escape(cx.caller_id)
            );
            match to {
                Destination::Phone(phone) => {
                    let _ = write!(out, "<Number>{}</Number>", escape(phone.e164()));
                }
                Destination::Sip(uri) => {
                    let _ = write!(out, "<Sip>{}</Sip>", escape(uri));
                }
            }
            out.push_str("</Dial>");
            // `<Dial>` returns when the room's leg ends or never answers: say so rather
            // than leave the nurse in silence.
            say(&mut out, menu::CONNECTION_ENDED);
        }
        Reply::Conference { text, name } => {
            say(&mut out, text);
            let _ = write!(
                out,
                r#"<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="false">{}</Conference></Dial>"#,
                escape(name)
            );
        }
    }
    out.push_str("</Response>");
    out
}

/// XML text and attribute escaping: alert text is untrusted.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0; a space says the same.
            c if c.is_control() && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(speech: bool) -> ReplyContext<'static> {
        ReplyContext {
            answer_url: "https://x.example/webhooks/twilio/gather?call=1&x=2",
            language: "en-GB",
            speech,
            caller_id: "+447700900001",
        }
    }

    #[test]
    fn the_prompt_is_a_gather_around_the_whole_say() {
        let doc = render(
            &Reply::Prompt {
                text: "Bed <4> & \"more\"".into(),
            },
            &cx(false),
        );
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Gather input=\"dtmf\" \
             numDigits=\"1\" timeout=\"10\" action=\"https://x.example/webhooks/twilio/gather?call=1&amp;x=2\" \
             method=\"POST\" actionOnEmptyResult=\"true\"><Say language=\"en-GB\">Bed &lt;4&gt; \
             &amp; &quot;more&quot;</Say></Gather></Response>"
        );
        let speech = render(&Reply::Prompt { text: "Hi".into() }, &cx(true));
        assert!(speech.contains(r#"input="dtmf speech""#), "{speech}");
        assert!(speech.contains(r#"hints="yes, acknowledge"#), "{speech}");
    }

    #[test]
    fn says_dials_and_conferences() {
        let bye = render(&Reply::Say { text: "Bye".into() }, &cx(false));
        assert!(bye.ends_with(r#"<Say language="en-GB">Bye</Say><Hangup/></Response>"#));
        let phone = render(
            &Reply::Connect {
                text: "Connecting".into(),
                to: Destination::Phone(crate::domain::phone::Phone::parse("+13855550107").unwrap()),
            },
            &cx(false),
        );
        assert!(
            phone.contains(r#"<Dial callerId="+447700900001" timeout="30"><Number>+13855550107</Number></Dial>"#),
            "{phone}"
        );
        assert!(phone.ends_with(&format!(
            r#"<Say language="en-GB">{}</Say></Response>"#,
            menu::CONNECTION_ENDED
        )));
        let sip = render(
            &Reply::Connect {
                text: "Connecting".into(),
                to: Destination::Sip("sip:room2@intercom.example.org".into()),
            },
            &cx(false),
        );
        assert!(
            sip.contains("<Sip>sip:room2@intercom.example.org</Sip>"),
            "{sip}"
        );
        let conf = render(
            &Reply::Conference {
                text: "Joining".into(),
                name: "alertcall-a1".into(),
            },
            &cx(false),
        );
        assert!(conf.contains(
            r#"<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="false">alertcall-a1</Conference></Dial>"#
        ));
    }

    #[test]
    fn control_characters_do_not_break_the_document() {
        assert_eq!(escape("a\u{0}b\u{1b}c'"), "a b c&apos;");
    }
}
