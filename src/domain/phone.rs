//! E.164 phone numbers: parsed once at the edge, rendered per provider.

use std::fmt;

/// A phone number in E.164 form (`+` then 8 to 15 digits, no leading zero).
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("{input:?} is empty: expected an E.164 number such as +13854019951")]
    Empty { input: String },
    #[error("{input:?} is not in E.164 form: it must start with '+' and the country code{hint}")]
    MissingPlus { input: String, hint: String },
    #[error(
        "{input:?} is not a phone number: only digits, spaces, '-', '.', '(' and ')' may follow the '+'"
    )]
    BadCharacter { input: String },
    #[error("{input:?} has {digits} digits: E.164 numbers have 8 to 15 digits after the '+'")]
    BadLength { input: String, digits: usize },
    #[error("{input:?} starts with 0 after the '+': country codes never start with 0")]
    LeadingZero { input: String },
    #[error(
        "{input:?}: no country has the calling code at its start; check the digits after the '+'"
    )]
    NoSuchCountry { input: String },
    #[error(
        "{input:?} keeps the national trunk prefix 0 after the country code; drop it: {suggestion}"
    )]
    TrunkPrefix { input: String, suggestion: String },
    #[error(
        "{input:?} has {national} digits after +{code}, but numbers there have {expected}: a digit is missing or extra"
    )]
    WrongLengthForCountry {
        input: String,
        code: u16,
        national: usize,
        expected: String,
    },
}

impl Phone {
    /// Parses a number written for people (`+1 385-401-9951`) into E.164.
    pub fn parse(input: &str) -> Result<Phone, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(PhoneError::Empty {
                input: input.to_string(),
            });
        }
        let Some(rest) = trimmed.strip_prefix('+') else {
            let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
            let hint = match digits.len() {
                10 => format!(" (if this is a US/Canada number: +1{digits})"),
                11 if digits.starts_with('1') => format!(" (did you mean +{digits}?)"),
                _ => String::new(),
            };
            return Err(PhoneError::MissingPlus {
                input: input.to_string(),
                hint,
            });
        };
        let mut digits = String::with_capacity(15);
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(PhoneError::BadCharacter {
                        input: input.to_string(),
                    });
                }
            }
        }
        if !(8..=15).contains(&digits.len()) {
            return Err(PhoneError::BadLength {
                input: input.to_string(),
                digits: digits.len(),
            });
        }
        if digits.starts_with('0') {
            return Err(PhoneError::LeadingZero {
                input: input.to_string(),
            });
        }
        numbering_plan(input, &digits)?;
        Ok(Phone(format!("+{digits}")))
    }

    /// Vonage's own form (`12178020876`: the country code, no `+`) or E.164, for numbers
    /// copied from the Vonage dashboard. A nurse's number keeps the `+` rule: there a
    /// missing country code is a likely mistake, and `parse` says how to fix it.
    pub fn parse_provider_number(input: &str) -> Result<Phone, PhoneError> {
        let trimmed = input.trim();
        if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit()) {
            return Phone::parse(&format!("+{trimmed}")).map_err(|e| match e {
                // Name what was written, not the number with the '+' we added.
                PhoneError::NoSuchCountry { .. } => PhoneError::NoSuchCountry {
                    input: input.to_string(),
                },
                other => other,
            });
        }
        Phone::parse(input)
    }

    /// `+13854019951`.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// `13854019951`: what Vonage wants.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// `+138*******51`: safe for logs.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Checks `digits` (E.164 without the `+`) against libphonenumber's numbering plans: the
/// country code exists, no trunk prefix follows it, and the national number has a length
/// that country uses for numbers a person answers (pagers, voicemail and access numbers,
/// such as Canada's 7-digit UAN, are left out). Number ranges are deliberately not checked: reserved fictional ranges
/// (US 555-01xx, UK 07700 900xxx) stay usable for drills and tests.
fn numbering_plan(input: &str, digits: &str) -> Result<(), PhoneError> {
    use phonenumber::Type;
    use phonenumber::metadata::DATABASE;
    let code = match phonenumber::parse(None, format!("+{digits}")) {
        Ok(parsed) => parsed.code().value(),
        Err(phonenumber::ParseError::InvalidCountryCode) => {
            return Err(PhoneError::NoSuchCountry {
                input: input.to_string(),
            });
        }
        // Our shape checks passed, so what libphonenumber cannot read is a length it
        // does not know.
        Err(_) => {
            return Err(PhoneError::BadLength {
                input: input.to_string(),
                digits: digits.len(),
            });
        }
    };
    let national = digits.get(code.to_string().len()..).unwrap_or_default();
    let regions = DATABASE.by_code(&code).unwrap_or_default();
    let mut lengths: Vec<u16> = regions
        .iter()
        .flat_map(|meta| {
            let d = meta.descriptors();
            [
                Type::FixedLine,
                Type::Mobile,
                Type::TollFree,
                Type::PremiumRate,
                Type::SharedCost,
                Type::PersonalNumber,
                Type::Voip,
                Type::Unknown,
            ]
            .into_iter()
            .filter_map(|kind| d.get(kind))
            .flat_map(|desc| desc.possible_length().iter().copied())
            .collect::<Vec<_>>()
        })
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let possible = |n: &str| lengths.is_empty() || lengths.contains(&(n.len() as u16));
    if possible(national) {
        return Ok(());
    }
    let without_trunk = regions
        .iter()
        .filter_map(|meta| meta.national_prefix())
        .find_map(|prefix| national.strip_prefix(prefix))
        .filter(|rest| possible(rest));
    if let Some(rest) = without_trunk {
        return Err(PhoneError::TrunkPrefix {
            input: input.to_string(),
            suggestion: format!("+{code}{rest}"),
        });
    }
    Err(PhoneError::WrongLengthForCountry {
        input: input.to_string(),
        code,
        national: national.len(),
        expected: lengths
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or "),
    })
}

/// Masks any phone-like string for logs, keeping the first three and last two characters.
pub fn mask(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < 3 || i >= chars.len() - 2 {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug output is masked so a stray `{:?}` cannot leak a number into the logs.
impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl TryFrom<String> for Phone {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Phone::parse(&value)
    }
}

impl From<Phone> for String {
    fn from(value: Phone) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_with_punctuation() {
        assert_eq!(
            Phone::parse("+1 (385) 401-9951").unwrap().e164(),
            "+13854019951"
        );
        assert_eq!(
            Phone::parse("+447700900123").unwrap().digits(),
            "447700900123"
        );
    }

    #[test]
    fn refuses_national_format_with_the_fix() {
        let err = Phone::parse("385-401-9951").unwrap_err().to_string();
        assert!(err.contains("+13854019951"), "{err}");
        assert!(err.contains("E.164"), "{err}");
    }

    #[test]
    fn refuses_bad_shapes() {
        assert!(matches!(Phone::parse(""), Err(PhoneError::Empty { .. })));
        assert!(matches!(
            Phone::parse("+12"),
            Err(PhoneError::BadLength { .. })
        ));
        assert!(matches!(
            Phone::parse("+0123456789"),
            Err(PhoneError::LeadingZero { .. })
        ));
        assert!(matches!(
            Phone::parse("+1385abc9951"),
            Err(PhoneError::BadCharacter { .. })
        ));
        assert!(matches!(
            Phone::parse("+1234567890123456"),
            Err(PhoneError::BadLength { .. })
        ));
    }

    #[test]
    fn numbering_plans_refuse_what_cannot_ring() {
        let err = Phone::parse("+4407700900123").unwrap_err();
        assert!(
            matches!(&err, PhoneError::TrunkPrefix { suggestion, .. } if suggestion == "+447700900123"),
            "{err}"
        );
        assert!(matches!(
            Phone::parse("+1385401995"),
            Err(PhoneError::WrongLengthForCountry {
                code: 1,
                national: 9,
                ..
            })
        ));
        assert!(matches!(
            Phone::parse("+99912345678"),
            Err(PhoneError::NoSuchCountry { .. })
        ));
        // Reserved fictional ranges and the simulator's default still parse.
        for ok in [
            "+15005550006",
            "+13855550100",
            "+447700900123",
            "+447911123456",
            "+13854019951",
        ] {
            assert!(Phone::parse(ok).is_ok(), "{ok}: {:?}", Phone::parse(ok));
        }
    }

    #[test]
    fn provider_numbers_may_omit_the_plus() {
        assert_eq!(
            Phone::parse_provider_number("12178020876").unwrap().e164(),
            "+12178020876"
        );
        assert_eq!(
            Phone::parse_provider_number("+12178020876").unwrap().e164(),
            "+12178020876"
        );
        assert!(Phone::parse_provider_number("1217802087").is_err());
        // A nurse's number keeps the '+' rule and its suggestion.
        let err = Phone::parse("12178020876").unwrap_err().to_string();
        assert!(err.contains("did you mean +12178020876?"), "{err}");
    }

    #[test]
    fn masks_for_logs() {
        let p = Phone::parse("+13854019951").unwrap();
        assert_eq!(p.masked(), "+13*******51");
        assert_eq!(format!("{p:?}"), "Phone(+13*******51)");
    }
}
