//! Password hashing (Argon2id with the crate's default, OWASP-recommended parameters) and the
//! rules a new password must meet. Hashing takes tens of milliseconds on purpose, so callers on
//! the async runtime go through `accounts`, which runs it on the blocking pool.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::{Rng, RngCore};

/// Argon2's working memory (19 MiB by default) is allocated with a capacity of at least this
/// many bytes, though only what the parameters need is used (and touched). glibc serves an
/// allocation this large from mmap and, above 32 MiB, never raises its mmap threshold when it
/// is freed, so the memory goes back to the system after each hash. Allocated at its real
/// size, the first free raises the threshold and every later hash's 19 MiB stays in the
/// heap of whichever thread computed it (measured: +18.6 MiB RSS after five sign-ins).
const WORKING_MEMORY_CAPACITY: usize = 33 << 20;

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

/// Runs Argon2 into `out` with working memory that is returned to the system afterwards.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    let mut memory: Vec<Block> = Vec::with_capacity(blocks.max(WORKING_MEMORY_CAPACITY / std::mem::size_of::<Block>()));
    memory.resize(blocks, Block::default());
    argon.hash_password_into_with_memory(password, salt, out, &mut memory[..])
}

/// The PHC string of a new password (Argon2id v19, the crate's default parameters, a random
/// 16-byte salt).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check(password)?;
    let failed = |e: &dyn std::fmt::Display| PasswordError::Hash(e.to_string());
    let params = Params::default();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(&argon, &params, password.as_bytes(), &salt, &mut out).map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the stored PHC string (false for a malformed hash, too). The
/// parameters are the hash's own, so hashes made with other costs keep verifying.
pub fn verify(password: &str, phc: &str) -> bool {
    let check = || -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = Version::try_from(parsed.version.unwrap_or(Version::V0x13.into())).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let (salt, expected) = (parsed.salt?, parsed.hash?);
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        compute(&argon, &params, password.as_bytes(), salt.as_ref(), &mut out).ok()?;
        // Output's equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    };
    password.len() <= MAX_LENGTH * 4 && check().unwrap_or(false)
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
    fn hashes_of_the_crate_itself_verify_and_ours_are_standard() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::default().hash_password(b"correct horse battery").unwrap().to_string();
        assert!(verify("correct horse battery", &theirs));
        let ours = hash("correct horse battery").unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", ours.as_str()).is_ok());
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
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
