//! What a nurse meant: a key press or a spoken answer turned into a menu choice.
//!
//! Speech is matched on whole words after normalising case, punctuation and spacing. A wrong
//! acknowledgement means nobody comes, so the rules lean to safety, in this order:
//!
//! 1. Anything that sounds like a voicemail greeting ("you've reached", "leave me a message",
//!    "at the tone", ...) means nothing, and so does a transcript longer than [`MAX_WORDS`].
//! 2. "I can't hear you" asks for a repeat.
//! 3. A negation ("can't", "not", "no") wins over a "yes"; asking for something ("connect me",
//!    "details") wins over a bare "yes".
//! 4. A question (it starts with who, what, is, are, can, ... or contains a '?') never
//!    acknowledges nor declines: "is it okay?", "are you sure?", "who's coming?" are not a
//!    "yes". It may ask for details or a repeat; anything else is not understood.
//! 5. An acknowledgement ("yes", and "connect me", which acknowledges too) must be short, at
//!    most [`MAX_ACK_WORDS`] words: a nurse answers "yes, on my way", while a greeting that
//!    happens to say "okay" says more. Longer speech that looks like a yes is not understood,
//!    and the nurse is asked again.
//! 6. A key beats whatever speech came with it.
//!
//! A yes is also not taken when another of the recogniser's confident alternatives declines,
//! sounds like a greeting or asks a question.
//!
//! Words alone cannot tell a nurse's "okay" from a greeting's, so the engine also refuses
//! speech once the call is known to be a machine, and holds a spoken acknowledgement that
//! comes before machine detection has spoken (`engine::events`).

use serde::Serialize;

use crate::domain::menu::MenuChoice;

/// Speech results below this confidence are not acted on unless configured otherwise.
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.6;

/// Longer answers are not taken as a choice: a nurse's answer is a few words, a voicemail
/// greeting or a conversation in the background is not.
pub const MAX_WORDS: usize = 16;

/// An acknowledgement is shorter still: "yes", "okay, on my way", "uh yes I'm on my way".
pub const MAX_ACK_WORDS: usize = 6;

/// One transcript the provider's recogniser offers (Vonage: `speech.results[]`, best first).
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechResult {
    pub text: String,
    /// 0.0–1.0; `None` when the provider gave none (treated as not confident).
    pub confidence: Option<f64>,
}

/// How the choice was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Dtmf,
    Speech,
    /// Nothing was pressed or said (or nothing usable).
    Nothing,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Dtmf => "dtmf",
            Via::Speech => "speech",
            Via::Nothing => "none",
        }
    }
}

/// A choice, and what it was made from (for the audit trail).
#[derive(Debug, Clone, PartialEq)]
pub struct Understood {
    pub choice: MenuChoice,
    pub via: Via,
    /// The key(s) pressed, or the transcript acted on (the best one when none matched).
    pub text: Option<String>,
    pub confidence: Option<f64>,
}

/// Keys first: a key press beats speech. Otherwise the most confident transcript at or above
/// `min_confidence` that means something. An acknowledgement is not taken when another
/// confident transcript declines, sounds like a greeting or asks a question (the recogniser's
/// alternatives of "is it okay?" include "it's okay"): nothing is understood and the nurse is
/// asked again.
pub fn understand(digits: &str, speech: &[SpeechResult], min_confidence: f64) -> Understood {
    let digits = digits.trim();
    if !digits.is_empty() {
        return Understood {
            choice: MenuChoice::from_digits(digits),
            via: Via::Dtmf,
            text: Some(digits.to_string()),
            confidence: None,
        };
    }
    let mut confident: Vec<(&SpeechResult, f64, MenuChoice)> = speech
        .iter()
        .filter_map(|r| {
            let c = r.confidence.filter(|c| c.is_finite())?;
            (c >= min_confidence).then(|| (r, c, match_speech(&r.text)))
        })
        .collect();
    // Stable: equal confidences keep the provider's order (best first).
    confident.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = confident
        .iter()
        .find(|(_, _, choice)| *choice != MenuChoice::NotUnderstood);
    if let Some(&(result, confidence, choice)) = best {
        let conflict = choice.acknowledges()
            && confident.iter().any(|(other, _, other_choice)| {
                *other_choice == MenuChoice::Decline || doubts_a_yes(&other.text)
            });
        return Understood {
            choice: if conflict {
                MenuChoice::NotUnderstood
            } else {
                choice
            },
            via: Via::Speech,
            text: Some(result.text.clone()),
            confidence: Some(confidence),
        };
    }
    // Nothing usable: keep the best transcript heard, for the audit trail.
    match speech.first() {
        Some(first) => Understood {
            choice: MenuChoice::NotUnderstood,
            via: Via::Speech,
            text: Some(first.text.clone()),
            confidence: first.confidence,
        },
        None => Understood {
            choice: MenuChoice::NotUnderstood,
            via: Via::Nothing,
            text: None,
            confidence: None,
        },
    }
}

/// Phrases that only a voicemail greeting says: such speech never means anything. A nurse's
/// own "I'm not available" is left to decline (it escalates at once), so only the third
/// person ("Sam is not available") is here.
const VOICEMAIL: &[&str] = &[
    "leave a message",
    "leave me a message",
    "leave your message",
    "leave your name",
    "please leave",
    "record your message",
    "record a message",
    "after the tone",
    "at the tone",
    "after the beep",
    "at the beep",
    "voicemail",
    "voice mail",
    "mailbox",
    "youve reached",
    "you have reached",
    "get back to you",
    "cant come to the phone",
    "cannot come to the phone",
    "can not come to the phone",
    "unable to come to the phone",
    "take your call",
    "not available to take",
    "is not available",
    "is unavailable",
    "you know the drill",
    "you know what to do",
    "the person you are calling",
    "the number you have dialled",
    "the number you have dialed",
];

/// Words that open a question ("whos" is "who's" normalised). "will" is not one: "will do"
/// is an answer.
const QUESTION_STARTS: &[&str] = &[
    "who", "whos", "what", "whats", "where", "wheres", "when", "why", "how", "hows", "is", "isnt",
    "are", "arent", "am", "do", "does", "doesnt", "did", "can", "could", "couldnt", "should",
    "shouldnt", "would", "wouldnt",
];

/// Not a decline, although they contain a negation.
const IDIOMS: &[&str] = &["no problem", "not a problem", "no worries", "no doubt"];

/// "I didn't catch that": asking to hear it again, not declining.
const MISHEARD: &[&str] = &[
    "cant hear",
    "cannot hear",
    "can not hear",
    "couldnt hear",
    "could not hear",
    "didnt hear",
    "did not hear",
    "didnt catch",
    "did not catch",
    "didnt get that",
    "did not get that",
    "didnt understand",
    "did not understand",
];

const DECLINE: &[&str] = &[
    "cant",
    "cannot",
    "can not",
    "not",
    "no",
    "nope",
    "busy",
    "decline",
    "declined",
    "declining",
    "unable",
    "wont",
    "will not",
    "dont",
    "do not",
    "unavailable",
    "negative",
    "someone else",
    "somebody else",
    "next person",
    "escalate",
    "reject",
];

const CONNECT: &[&str] = &[
    "connect",
    "connect me",
    "put me through",
    "bridge",
    "intercom",
    "call the room",
    "talk to the room",
    "speak to the room",
    "talk to the patient",
    "speak to the patient",
];

const CONFERENCE: &[&str] = &[
    "conference",
    "responders",
    "join the call",
    "join the others",
    "team call",
];

const DETAILS: &[&str] = &[
    "details",
    "detail",
    "more information",
    "more info",
    "information",
    "tell me more",
    "what happened",
    "who else",
    "anyone else",
];

const REPEAT: &[&str] = &[
    "repeat",
    "again",
    "pardon",
    "come again",
    "say that again",
    "what",
    "huh",
    "sorry",
];

const ACKNOWLEDGE: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "ok",
    "okay",
    "acknowledge",
    "acknowledged",
    "acknowledging",
    "on my way",
    "coming",
    "on it",
    "got it",
    "will do",
    "roger",
    "affirmative",
    "sure",
    "accept",
    "accepted",
    "confirm",
    "confirmed",
    "responding",
    "be right there",
    "heading there",
    "no problem",
];

/// What a transcript means, on its own. Pure; see the module comment for the rules.
pub fn match_speech(text: &str) -> MenuChoice {
    let words = normalise(text);
    if words.is_empty() || words.len() > MAX_WORDS || contains_any(&words, VOICEMAIL) {
        return MenuChoice::NotUnderstood;
    }
    if contains_any(&words, MISHEARD) {
        return MenuChoice::Repeat;
    }
    let choice = meaning(&words);
    if is_question(text, &words) {
        // A question only asks to hear something: answering it with an acknowledgement or an
        // escalation would act on what the nurse did not say.
        return match choice {
            MenuChoice::Details | MenuChoice::Repeat => choice,
            _ => MenuChoice::NotUnderstood,
        };
    }
    if choice.acknowledges() && words.len() > MAX_ACK_WORDS {
        return MenuChoice::NotUnderstood;
    }
    choice
}

/// What the words ask for, before the question and length rules.
fn meaning(words: &[String]) -> MenuChoice {
    let without_idioms = remove_phrases(words, IDIOMS);
    if contains_any(&without_idioms, DECLINE) {
        return MenuChoice::Decline;
    }
    // Asking for something comes before a bare "yes": "yes, connect me" connects.
    let table = [
        (CONNECT, MenuChoice::ConnectRoom),
        (CONFERENCE, MenuChoice::JoinConference),
        (DETAILS, MenuChoice::Details),
        (REPEAT, MenuChoice::Repeat),
        (ACKNOWLEDGE, MenuChoice::Acknowledge),
    ];
    table
        .into_iter()
        .find(|(phrases, _)| contains_any(words, phrases))
        .map_or(MenuChoice::NotUnderstood, |(_, choice)| choice)
}

/// Whether a transcript shows that the speaker is not simply saying yes: a greeting or a
/// question (see the module comment, rules 1 and 4).
fn doubts_a_yes(text: &str) -> bool {
    let words = normalise(text);
    contains_any(&words, VOICEMAIL) || is_question(text, &words)
}

/// Recognisers punctuate some questions and not others, so the opening word counts as well.
fn is_question(text: &str, words: &[String]) -> bool {
    text.contains('?')
        || words
            .first()
            .is_some_and(|w| QUESTION_STARTS.contains(&w.as_str()))
}

/// Lower case words with apostrophes dropped ("can't" → "cant") and every other non
/// alphanumeric character a separator.
fn normalise(text: &str) -> Vec<String> {
    let mut cleaned = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{b4}') {
            continue;
        }
        if c.is_alphanumeric() {
            cleaned.extend(c.to_lowercase());
        } else {
            cleaned.push(' ');
        }
    }
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// Whether `phrase` (space-separated words) occurs in `words` as whole consecutive words.
fn position(words: &[String], phrase: &str) -> Option<usize> {
    let parts: Vec<&str> = phrase.split(' ').collect();
    if parts.is_empty() || parts.len() > words.len() {
        return None;
    }
    (0..=words.len() - parts.len()).find(|&i| parts.iter().zip(&words[i..]).all(|(p, w)| p == w))
}

fn contains_any(words: &[String], phrases: &[&str]) -> bool {
    phrases.iter().any(|p| position(words, p).is_some())
}

fn remove_phrases(words: &[String], phrases: &[&str]) -> Vec<String> {
    let mut words = words.to_vec();
    for phrase in phrases {
        let len = phrase.split(' ').count();
        while let Some(i) = position(&words, phrase) {
            words.drain(i..i + len);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use MenuChoice::*;

    fn said(text: &str, confidence: f64) -> Vec<SpeechResult> {
        vec![SpeechResult {
            text: text.into(),
            confidence: Some(confidence),
        }]
    }

    #[test]
    fn real_looking_transcripts() {
        let table = [
            ("on my way", Acknowledge),
            ("uh yes I'm on my way", Acknowledge),
            ("Yes!", Acknowledge),
            ("yeah, coming", Acknowledge),
            ("OK", Acknowledge),
            ("Acknowledged.", Acknowledge),
            ("acknowledge", Acknowledge),
            ("no problem, on my way", Acknowledge),
            ("sure thing", Acknowledge),
            ("no I can't", Decline),
            ("I can't come", Decline),
            ("I cannot", Decline),
            ("I can’t right now", Decline),
            ("yes, no, I'm not coming", Decline),
            ("sorry I'm busy", Decline),
            ("decline", Decline),
            ("I'm with another patient, call someone else", Decline),
            ("I'm not sure", Decline),
            ("repeat that please", Repeat),
            ("Repeat.", Repeat),
            ("could you say that again", Repeat),
            ("sorry, I can't hear you", Repeat),
            ("what?", Repeat),
            ("pardon", Repeat),
            ("what are the details", Details),
            ("details please", Details),
            ("yes, give me more information", Details),
            ("who else was called", Details),
            ("connect me to the room", ConnectRoom),
            ("yes connect me", ConnectRoom),
            ("put me through to the room", ConnectRoom),
            ("join the conference", JoinConference),
            ("conference", JoinConference),
            ("", NotUnderstood),
            ("   ...   ", NotUnderstood),
            ("banana", NotUnderstood),
            ("hmm", NotUnderstood),
            // Word boundaries: "notify", "yesterday", "know" are not "not", "yes", "no".
            ("notify yesterday know", NotUnderstood),
            (
                "Hi, you've reached Jane. Please leave a message after the tone.",
                NotUnderstood,
            ),
            ("yes this is the voicemail of Jane", NotUnderstood),
            // Greetings that say "okay" are not a yes.
            ("Hi, this is Jane. Leave me a message, okay?", NotUnderstood),
            (
                "You've reached Sam. Okay, you know the drill.",
                NotUnderstood,
            ),
            ("Okay, you know the drill.", NotUnderstood),
            ("you have reached the desk of Ana okay", NotUnderstood),
            ("Okay, I'll get back to you", NotUnderstood),
            ("yes, please leave your number", NotUnderstood),
            ("Sam can't come to the phone, okay", NotUnderstood),
            ("Sam is not available, okay", NotUnderstood),
            ("Record your message at the tone. OK.", NotUnderstood),
            // ...while a nurse's own "not available" still declines at once.
            ("sorry, I'm not available", Decline),
            // An acknowledgement is short; longer speech that looks like a yes is asked again.
            ("yes I'm on my way now", Acknowledge),
            ("okay so yes I guess I am coming", NotUnderstood),
            ("hello okay thanks for calling goodbye now", NotUnderstood),
            ("yes please connect me to the room now", NotUnderstood),
            // Questions never acknowledge (nor decline); asking for details is details.
            ("who's coming?", NotUnderstood),
            ("whos coming", NotUnderstood),
            ("is anyone else coming?", Details),
            ("who else is coming?", Details),
            ("are you sure?", NotUnderstood),
            ("is it okay?", NotUnderstood),
            ("Is that OK", NotUnderstood),
            ("okay?", NotUnderstood),
            ("can you connect me?", NotUnderstood),
            ("should I come", NotUnderstood),
            ("do you want me to acknowledge", NotUnderstood),
            ("isn't anyone else coming", Details),
            ("can't you call someone else?", NotUnderstood),
            ("did anyone acknowledge", NotUnderstood),
            ("can you repeat that?", Repeat),
            (
                "yes yes yes yes yes yes yes yes yes yes yes yes yes yes yes yes yes",
                NotUnderstood,
            ),
        ];
        for (text, want) in table {
            assert_eq!(match_speech(text), want, "{text:?}");
        }
    }

    #[test]
    fn keys_beat_speech_and_keep_working() {
        let u = understand("1", &said("I can't", 0.99), 0.6);
        assert_eq!((u.choice, u.via), (Acknowledge, Via::Dtmf));
        let u = understand("3", &said("yes", 0.99), 0.6);
        assert_eq!((u.choice, u.via), (Decline, Via::Dtmf));
        assert_eq!(understand("4", &[], 0.6).choice, ConnectRoom);
        assert_eq!(understand("5", &[], 0.6).choice, JoinConference);
        assert_eq!(understand("9", &[], 0.6).choice, Details);
        let u = understand("", &[], 0.6);
        assert_eq!((u.choice, u.via), (NotUnderstood, Via::Nothing));
    }

    #[test]
    fn low_confidence_is_not_understood() {
        let u = understand("", &said("yes", 0.3), 0.6);
        assert_eq!((u.choice, u.via), (NotUnderstood, Via::Speech));
        assert_eq!(u.text.as_deref(), Some("yes"));
        let u = understand(
            "",
            &[SpeechResult {
                text: "yes".into(),
                confidence: None,
            }],
            0.6,
        );
        assert_eq!(u.choice, NotUnderstood);
        let u = understand("", &said("on my way", 0.6), 0.6);
        assert_eq!(u.choice, Acknowledge, "the threshold itself is enough");
        assert_eq!(u.confidence, Some(0.6));
        let nan = understand("", &said("yes", f64::NAN), 0.0);
        assert_eq!(nan.choice, NotUnderstood);
    }

    #[test]
    fn alternatives_pick_the_best_that_means_something() {
        let results = vec![
            SpeechResult {
                text: "on my whey".into(),
                confidence: Some(0.91),
            },
            SpeechResult {
                text: "on my way".into(),
                confidence: Some(0.88),
            },
        ];
        // "on my whey" means nothing; the next confident one does.
        let u = understand("", &results, 0.6);
        assert_eq!(u.choice, Acknowledge);
        assert_eq!(u.text.as_deref(), Some("on my way"));
        // Confident alternatives that disagree between yes and no: ask again.
        let conflicting = vec![
            SpeechResult {
                text: "yes I can".into(),
                confidence: Some(0.8),
            },
            SpeechResult {
                text: "no I can't".into(),
                confidence: Some(0.75),
            },
        ];
        assert_eq!(understand("", &conflicting, 0.6).choice, NotUnderstood);
        // ...unless the disagreeing one is below the threshold.
        let weak = vec![
            SpeechResult {
                text: "yes".into(),
                confidence: Some(0.9),
            },
            SpeechResult {
                text: "no".into(),
                confidence: Some(0.2),
            },
        ];
        assert_eq!(understand("", &weak, 0.6).choice, Acknowledge);
        // A question or a greeting among the confident alternatives: ask again.
        for doubt in ["is it okay?", "You've reached Sam, okay"] {
            let alternatives = vec![
                SpeechResult {
                    text: doubt.into(),
                    confidence: Some(0.9),
                },
                SpeechResult {
                    text: "it's okay".into(),
                    confidence: Some(0.85),
                },
            ];
            assert_eq!(understand("", &alternatives, 0.6).choice, NotUnderstood);
        }
    }
}
