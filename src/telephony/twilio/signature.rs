//! `X-Twilio-Signature` (NOTES.md §6): base64 HMAC-SHA1, keyed with the Auth Token, over the
//! exact URL Twilio requested followed by each POST parameter's name and value, sorted by
//! name. Twilio is inconsistent about default ports, so, as its own libraries do, a match for
//! the URL with or without `:443`/`:80` is accepted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// Why a signature was refused (said in the 401 and the refusal log, never the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("unsigned: no X-Twilio-Signature header")]
    Missing,
    #[error(
        "X-Twilio-Webhooks-Signature-Settings asks for a signature scheme alertcall does not \
         check ({0:?}); only the Auth Token's HMAC-SHA1 is accepted"
    )]
    UnsupportedScheme(String),
    #[error("the X-Twilio-Signature does not match the URL and parameters (forged or tampered)")]
    Mismatch,
}

/// The signature Twilio sends for a form POST of `params` to `url` (as its helper libraries
/// compute it: identical repeated values count once).
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(mac(auth_token, url, params).finalize().into_bytes())
}

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> Hmac<Sha1> {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// Checks a form POST's signature. `settings` is the `X-Twilio-Webhooks-Signature-Settings`
/// header: absent or empty means the Auth Token's HMAC-SHA1; anything else is refused
/// rather than accepted unchecked.
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
    settings: Option<&str>,
) -> Result<(), SignatureError> {
    if let Some(settings) = settings.map(str::trim).filter(|s| !s.is_empty()) {
        return Err(SignatureError::UnsupportedScheme(
            settings.chars().take(80).collect(),
        ));
    }
    let signature = signature.ok_or(SignatureError::Missing)?;
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return Err(SignatureError::Mismatch);
    };
    let matches = |url: &str| mac(auth_token, url, params).verify_slice(&given).is_ok();
    if url_variants(url).iter().any(|u| matches(u)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `url` as given, and with its default port added or removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_string()];
    let Ok(parsed) = url::Url::parse(url) else {
        return variants;
    };
    let default: u16 = match parsed.scheme() {
        "https" => 443,
        "http" => 80,
        _ => return variants,
    };
    let authority_end = |u: &str| {
        let after_scheme = u.find("://").map_or(0, |i| i + 3);
        u[after_scheme..]
            .find(['/', '?', '#'])
            .map_or(u.len(), |i| after_scheme + i)
    };
    let end = authority_end(url);
    let authority = &url[..end];
    if authority.ends_with(&format!(":{default}")) {
        // `url` normalises the default port away; cut it from the text instead, so the
        // rest of the URL stays byte for byte what Twilio signed.
        let cut = authority.len() - format!(":{default}").len();
        variants.push(format!("{}{}", &url[..cut], &url[end..]));
    } else if parsed.port().is_none() {
        variants.push(format!("{authority}:{default}{}", &url[end..]));
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn example(caller: &str) -> Vec<(String, String)> {
        params(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", caller),
            ("To", "+18005551212"),
        ])
    }

    /// The vectors of Twilio's documentation and of twilio-python's own tests (NOTES.md §6).
    #[test]
    fn published_vectors() {
        assert_eq!(
            sign("12345", URL, &example("+12349013030")),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            sign("12345", URL, &example("+14158675309")),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            sign(
                "12345",
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &example("+14158675309")
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        let repeated = params(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            sign("12345", URL, &repeated),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn accepts_the_url_with_or_without_the_default_port() {
        let p = example("+14158675309");
        let ok = |url: &str, sig: &str| verify("12345", url, &p, Some(sig), None);
        assert_eq!(ok(URL, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
        assert_eq!(ok(URL, "kvajT1Ptam85bY51eRf/AJRuM3w="), Ok(()));
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(ok(with_port, "RSOYDt4T1cUTdK1PDd93/VVr8B8="), Ok(()));
        assert_eq!(ok(with_port, "kvajT1Ptam85bY51eRf/AJRuM3w="), Ok(()));
        // Another port is another URL.
        let other = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
        assert_eq!(
            ok(other, "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            url_variants("http://h/p?q=1"),
            ["http://h/p?q=1", "http://h:80/p?q=1"]
        );
        assert_eq!(url_variants("http://h:80"), ["http://h:80", "http://h"]);
    }

    #[test]
    fn refuses_missing_forged_and_unknown_schemes() {
        let p = example("+14158675309");
        let good = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
        assert_eq!(
            verify("12345", URL, &p, None, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("54321", URL, &p, Some(good), None),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("12345", URL, &p, Some("not base64!"), None),
            Err(SignatureError::Mismatch)
        );
        let tampered = params(&[("CallSid", "CA1234567890ABCDE"), ("Digits", "1")]);
        assert_eq!(
            verify("12345", URL, &tampered, Some(good), None),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(
                "12345",
                URL,
                &p,
                Some(good),
                Some("key=KS1,algorithm=HMAC_SHA256")
            ),
            Err(SignatureError::UnsupportedScheme(_))
        ));
        assert_eq!(verify("12345", URL, &p, Some(good), Some("")), Ok(()));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
            prop::collection::vec(("[A-Za-z]{1,12}", ".{0,30}"), 0..8)
        }

        proptest! {
            #[test]
            fn a_signature_verifies_in_any_parameter_order(mut p in pairs(), token in "[0-9a-f]{32}") {
                let sig = sign(&token, URL, &p);
                p.reverse();
                prop_assert!(verify(&token, URL, &p, Some(&sig), None).is_ok());
            }

            #[test]
            fn any_change_is_refused(p in pairs(), token in "[0-9a-f]{32}", extra in "[A-Za-z]{1,12}", value in ".{0,10}") {
                let sig = sign(&token, URL, &p);
                let mut more = p.clone();
                more.push((extra.clone(), value.clone()));
                prop_assume!(!p.contains(&(extra, value)));
                prop_assert!(verify(&token, URL, &more, Some(&sig), None).is_err());
                prop_assert!(verify(&token, "https://mycompany.com/other", &p, Some(&sig), None).is_err());
            }

            #[test]
            fn random_headers_are_refused(header in ".{0,64}", p in pairs()) {
                prop_assert!(verify("12345", URL, &p, Some(&header), None).is_err());
            }
        }
    }
}
