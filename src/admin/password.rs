//! Password hashing (Argon2id with the crate's default, OWASP-recommended parameters) and the
//! rules a new password must meet. Hashing takes tens of milliseconds on purpose, so callers on
//! the async runtime go through `accounts`, which runs it on the blocking pool.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;

/// The shortest password accepted (NIST SP 800-63B asks for at least 8; admins guard secrets).
pub const MIN_LENGTH: usize = 10;
/// The longest accepted: Argon2 takes any length, but a megabyte "password" is an attack.
pub const MAX_LENGTH: usize = 256;

/// Why a new password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_LENGTH} characters")]
    TooShort,
    #[error("the password must be at most {MAX_LENGTH} characters")]
    TooLong,
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Checks a new password against the length rules.
pub fn check(password: &str) -> Result<(), PasswordError> {
    match password.chars().count() {
        n if n < MIN_LENGTH => Err(PasswordError::TooShort),
        n if n > MAX_LENGTH => Err(PasswordError::TooLong),
        _ => Ok(()),
    }
}

/// The PHC string of a new password (random salt).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (false for a malformed hash, too).
pub fn verify(password: &str, phc: &str) -> bool {
    password.len() <= MAX_LENGTH * 4 && Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// A hash no password matches, verified for unknown usernames so that a wrong name takes as
/// long as a wrong password (no account enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash(&generate()).expect("a generated password hashes"))
}

/// A generated password: 20 characters from an alphabet without look-alikes (~114 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_only_its_password() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("correct horse battery", "not a hash"));
        assert!(!verify("anything at all", decoy_hash()));
    }

    #[test]
    fn length_rules() {
        assert_eq!(hash("short"), Err(PasswordError::TooShort));
        assert_eq!(check(&"x".repeat(MAX_LENGTH + 1)), Err(PasswordError::TooLong));
        let g = generate();
        assert_eq!(g.len(), 20);
        assert!(check(&g).is_ok());
        assert_ne!(g, generate());
    }
}
