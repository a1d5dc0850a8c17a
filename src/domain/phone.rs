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
        Ok(Phone(format!("+{digits}")))
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
    fn masks_for_logs() {
        let p = Phone::parse("+13854019951").unwrap();
        assert_eq!(p.masked(), "+13*******51");
        assert_eq!(format!("{p:?}"), "Phone(+13*******51)");
    }
}
