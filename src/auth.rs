//! Who may use the dashboard and the API: people with passwords (Argon2id hashes), machines
//! with API tokens (only their SHA-256 is configured), each with a role.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

impl User {
    /// Changes when the user's password or role does: a session started under another one
    /// is over (`http::auth::principal`).
    pub fn credential(&self) -> String {
        token_hash(&format!("{}\n{}", self.role.as_str(), self.password_hash))
    }
}

/// Argon2 memory of one password check, in 1 KiB blocks: OWASP's first Argon2id choice
/// (19 MiB). Hashes that need more are refused when the configuration is read.
pub const MEMORY_BLOCKS: usize = 19 * 1024;

/// OWASP's first Argon2id choice: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(MEMORY_BLOCKS as u32, 2, 1, None).expect("valid Argon2 parameters"),
    )
}

/// An Argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    hash_with_salt(password, uuid::Uuid::new_v4().as_bytes())
}

/// The same hash every time for the same password (its salt is derived from it): for a
/// password given in the environment, which is hashed again at every reload and must not
/// end its sessions by looking changed. The hash is only ever held in memory.
pub fn stable_hash(password: &str) -> String {
    hash_with_salt(password, &Sha256::digest(password.as_bytes())[..16])
}

fn hash_with_salt(password: &str, salt: &[u8]) -> String {
    let salt = SaltString::encode_b64(salt).expect("16 bytes make a valid salt");
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `phc`, computed in `memory` (never allocated
/// here: see `PasswordChecks`).
fn verify(password: &[u8], phc: &str, memory: &mut [Block]) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(hash.algorithm),
        Params::try_from(&hash),
        hash.salt,
        hash.hash,
    ) else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut out, memory)
        .is_ok()
        && same(&out, expected.as_bytes())
}

/// The password checks that may run at once, each computed in Argon2 memory allocated once
/// and then reused: however many sign-ins arrive, checks hold at most `checks` × 19 MiB.
/// (A fresh 19 MiB per check let the allocator keep a copy per blocking thread: gigabytes
/// under a sign-in flood.)
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
    memory: Mutex<Vec<Vec<Block>>>,
}

/// One running password check: a permit and its memory, both given back when dropped.
pub struct PasswordCheck {
    memory: Vec<Block>,
    pool: Arc<PasswordChecks>,
    _permit: OwnedSemaphorePermit,
}

impl PasswordChecks {
    pub fn new(checks: usize) -> Arc<PasswordChecks> {
        Arc::new(PasswordChecks {
            permits: Arc::new(Semaphore::new(checks)),
            memory: Mutex::default(),
        })
    }

    /// A free check, or `None` when none frees up within `wait`.
    pub async fn acquire(self: &Arc<Self>, wait: Duration) -> Option<PasswordCheck> {
        let permit = tokio::time::timeout(wait, self.permits.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        let memory = self
            .memory
            .lock()
            .expect("password memory lock")
            .pop()
            .unwrap_or_default();
        Some(PasswordCheck {
            memory,
            pool: self.clone(),
            _permit: permit,
        })
    }
}

impl PasswordCheck {
    /// `Access::sign_in` in this check's memory. Takes tens of milliseconds of CPU: call it
    /// off the async threads.
    pub fn sign_in<'a>(
        &mut self,
        access: &'a Access,
        name: &str,
        password: &str,
    ) -> Option<&'a User> {
        if self.memory.is_empty() {
            // Allocated on first use only, so that an instance nobody signs in to holds none.
            self.memory = vec![Block::default(); MEMORY_BLOCKS];
        }
        access.sign_in(name, password, &mut self.memory)
    }
}

impl Drop for PasswordCheck {
    fn drop(&mut self) {
        if !self.memory.is_empty() {
            let memory = std::mem::take(&mut self.memory);
            self.pool
                .memory
                .lock()
                .expect("password memory lock")
                .push(memory);
        }
    }
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
    let params = Params::try_from(&hash).map_err(|e| {
        format!("has unusable Argon2 parameters ({e}); make one with `alertcall hash-password`")
    })?;
    if params.block_count() > MEMORY_BLOCKS {
        return Err(format!(
            "needs {} KiB of memory per check; at most {MEMORY_BLOCKS} KiB are allowed, so that \
             sign-ins cannot exhaust memory: make one with `alertcall hash-password`",
            params.m_cost()
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
    /// The check runs in `memory` (see `PasswordChecks`).
    pub fn sign_in(&self, name: &str, password: &str, memory: &mut [Block]) -> Option<&User> {
        let user = self.users.iter().find(|u| u.name == name);
        let hash = user.map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = verify(password.as_bytes(), hash, memory);
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
        let mut memory = vec![Block::default(); MEMORY_BLOCKS];
        assert_eq!(
            access
                .sign_in("eve", "correct horse", &mut memory)
                .unwrap()
                .role,
            Role::Admin
        );
        assert!(access.sign_in("eve", "wrong", &mut memory).is_none());
        assert!(
            access
                .sign_in("nobody", "correct horse", &mut memory)
                .is_none()
        );
        let stable = stable_hash("correct horse");
        assert_eq!(
            stable,
            stable_hash("correct horse"),
            "same password, same hash"
        );
        assert!(verify(b"correct horse", &stable, &mut memory));
    }

    #[test]
    fn hashes_needing_more_memory_than_a_check_has_are_refused() {
        let big = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(2 * MEMORY_BLOCKS as u32, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
        .unwrap()
        .to_string();
        assert!(check_hash(&big).unwrap_err().contains("at most 19456 KiB"));
    }

    #[test]
    fn a_credential_changes_with_the_password_or_the_role() {
        let user = User {
            name: "eve".into(),
            role: Role::Admin,
            password_hash: DUMMY_HASH.into(),
        };
        let demoted = User {
            role: Role::Viewer,
            ..user.clone()
        };
        let new_password = User {
            password_hash: stable_hash("another"),
            ..user.clone()
        };
        assert_eq!(user.credential(), user.clone().credential());
        assert_ne!(user.credential(), demoted.credential());
        assert_ne!(user.credential(), new_password.credential());
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
