//! Who may do what: roles, password hashing (Argon2id), password policy, and API token
//! generation. Pure functions; the session and token checks of each request live in `web::auth`.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Roles are ordered: each one may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Analyst,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Analyst, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Analyst => "analyst",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Analyst => "Analyst",
            Role::Operator => "Operator",
            Role::Admin => "Admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim().to_ascii_lowercase().as_str() {
            "analyst" => Some(Role::Analyst),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether this role may do what `required` may.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash that costs as much to check as a real one, so that an unknown user name (or one
/// without a password) takes as long to refuse as a wrong password. Its password is random and
/// dies with the process; and a check against it never signs anybody in anyway.
pub fn dummy_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&random_token(32)).unwrap_or_default())
}

pub const MIN_PASSWORD_LEN: usize = 12;
pub const MAX_PASSWORD_LEN: usize = 256;

/// The password policy. Returns the reason in words a person can act on.
pub fn check_password_strength(username: &str, password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("The password is empty.".into());
    }
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(format!(
            "The password is too short: use at least {MIN_PASSWORD_LEN} characters (a few words work well)."
        ));
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(format!("The password is too long: at most {MAX_PASSWORD_LEN} characters."));
    }
    let lower = password.to_lowercase();
    if !username.is_empty() && lower.contains(&username.to_lowercase()) {
        return Err("The password must not contain the user name.".into());
    }
    let distinct: std::collections::HashSet<char> = password.chars().collect();
    if distinct.len() < 5 {
        return Err("The password repeats too few characters: use at least 5 different ones.".into());
    }
    // zxcvbn: common passwords, names, words, keyboard rows, dates and years, l33t spellings,
    // and the words of this product and of password sprays (seasons, months), however combined.
    // Score 4 of 4 ("very unguessable", over 10^10 guesses): sprays try one guess per account,
    // so what they hold (`Summer2026!`, `P@ssw0rd2026!!`) scores 3 and is refused.
    let mut context = vec![username];
    context.extend_from_slice(SPRAY_WORDS);
    let estimate = zxcvbn::zxcvbn(password, &context);
    if estimate.score() < zxcvbn::Score::Four {
        let why = estimate.feedback().and_then(|f| f.warning()).map(|w| format!(" ({w})")).unwrap_or_default();
        return Err(format!("The password is too easy to guess{why}: add a few uncommon words, or use a passphrase."));
    }
    Ok(())
}

/// Words password sprays are built of, and this product's: zxcvbn treats them as known words.
const SPRAY_WORDS: &[&str] = &[
    "endpoint",
    "analytics",
    "endpointanalytics",
    "defender",
    "microsoft",
    "security",
    "admin",
    "administrator",
    "welcome",
    "company",
    "spring",
    "summer",
    "autumn",
    "fall",
    "winter",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// User names: what a person can type and read in the audit log.
pub fn check_username(username: &str) -> Result<(), String> {
    let ok_chars = username.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if username.is_empty() || username.len() > 64 || !ok_chars {
        return Err("A user name has 1 to 64 characters: letters, digits, '.', '_', '-' or '@'.".into());
    }
    Ok(())
}

/// A fresh random secret as URL-safe text (`bytes` bytes of entropy).
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// API tokens are shown once and stored only as this hash. They carry 256 bits of entropy, so
/// a fast hash is enough (no password-style stretching needed).
pub fn hash_api_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// New API tokens start with a recognisable prefix so that secret scanners can find leaked ones.
pub fn new_api_token() -> String {
    format!("ea_{}", random_token(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_what_they_may_do() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Analyst));
        assert!(!Role::Analyst.allows(Role::Operator));
        assert_eq!(Role::parse(" Admin "), Some(Role::Admin));
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn weak_passwords_are_refused_with_a_reason() {
        assert!(check_password_strength("alice", "").unwrap_err().contains("empty"));
        assert!(check_password_strength("alice", "short").unwrap_err().contains("too short"));
        assert!(check_password_strength("alice", "alice-is-great-2026").is_err());
        assert!(check_password_strength("bob", "aaaaaaaaaaaaaaa").is_err());
        assert!(check_password_strength("bob", "password1234").is_err());
        assert!(check_password_strength("bob", "correct horse battery").is_ok());
    }

    #[test]
    fn passwords_verify_against_their_hash_only() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
