//! Who may use the dashboard and the API: people with passwords (Argon2id hashes), machines
//! with API tokens (only their SHA-256 is configured), each with a role.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

/// What a signed-in person or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees everything; changes nothing.
    Viewer,
    /// Also raises, acknowledges and resolves alerts.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// A person who can sign in to the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// An Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub password_hash: String,
}

/// A machine credential: `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    /// SHA-256 of the token, lowercase hex.
    pub sha256: String,
}

/// Everyone who may sign in or call the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub users: Vec<User>,
    pub tokens: Vec<ApiToken>,
}

/// OWASP's first Argon2id choice: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters"),
    )
}

/// An Argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    salt.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters")
        .to_string()
}

/// Whether `text` is a PHC string this service can verify.
pub fn check_hash(text: &str) -> Result<(), String> {
    let hash = PasswordHash::new(text).map_err(|e| {
        format!("is not a password hash ({e}); make one with `alertcall hash-password`")
    })?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "uses {}; only argon2id hashes are accepted (`alertcall hash-password`)",
            hash.algorithm
        ));
    }
    Ok(())
}

/// SHA-256 of `token`, lowercase hex: how tokens and session ids are stored.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The credential of an `Authorization: Bearer <credential>` header. The scheme is
/// case-insensitive (RFC 7235 §2.1), for API tokens and Vonage's signatures alike.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credential) = authorization.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
        .filter(|c| !c.is_empty())
}

/// A new random secret (session ids, CSRF tokens): 244 random bits from the OS.
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Constant-time comparison of two secrets.
pub fn same_secret(a: &str, b: &str) -> bool {
    same(a.as_bytes(), b.as_bytes())
}

impl Access {
    /// The user with this name and password. Unknown names cost as much as wrong passwords,
    /// so a response's timing does not tell which names exist.
    pub fn sign_in(&self, name: &str, password: &str) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = PasswordHash::new(hash)
            .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok());
        user.filter(|_| ok)
    }

    /// The token's name and role.
    pub fn token(&self, token: &str) -> Option<&ApiToken> {
        let hash = token_hash(token);
        self.tokens.iter().find(|t| same_secret(&t.sha256, &hash))
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.tokens.is_empty()
    }
}

/// A valid hash of a random password nobody knows, verified for unknown user names.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpg";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        check_hash(&hash).unwrap();
        let access = Access {
            users: vec![User {
                name: "eve".into(),
                role: Role::Admin,
                password_hash: hash,
            }],
            tokens: vec![],
        };
        assert_eq!(
            access.sign_in("eve", "correct horse").unwrap().role,
            Role::Admin
        );
        assert!(access.sign_in("eve", "wrong").is_none());
        assert!(access.sign_in("nobody", "correct horse").is_none());
    }

    #[test]
    fn only_argon2id_phc_strings_are_accepted() {
        assert!(check_hash("plaintext").is_err());
        assert!(check_hash("$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo").is_err());
        check_hash(DUMMY_HASH).unwrap();
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR  t0k "] {
            assert_eq!(bearer(header), Some("t0k"), "{header}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", ""] {
            assert_eq!(bearer(header), None, "{header}");
        }
    }

    #[test]
    fn tokens_match_by_their_sha256() {
        let access = Access {
            users: vec![],
            tokens: vec![ApiToken {
                name: "grafana".into(),
                role: Role::Viewer,
                sha256: token_hash("s3cret-token"),
            }],
        };
        assert_eq!(access.token("s3cret-token").unwrap().name, "grafana");
        assert!(access.token("s3cret-tokem").is_none());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
