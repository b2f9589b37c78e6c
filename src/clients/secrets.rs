//! Secrets at rest: XChaCha20-Poly1305 under one server key, with the client uid and setting
//! key as associated data so a ciphertext cannot be moved to another client or field. The key
//! lives in `DATA_DIR/secret.key` (mode 0600, created on first start) or `AIA_SECRET_KEY`; the
//! database remembers its fingerprint and a different key is refused, never silently replaced.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Failures of key handling and decryption.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key text is not 32 bytes of hex or base64.
    #[error("the secret key must be 32 bytes, hex (64 characters) or base64 encoded")]
    BadKey,
    /// The key does not match the database.
    #[error(
        "the secret key (fingerprint {given}) is not the key this database was created with \
         (fingerprint {expected}); restore the original key (AIA_SECRET_KEY or DATA_DIR/secret.key)"
    )]
    Mismatch { given: String, expected: String },
    /// A stored secret could not be decrypted (tampered, or moved between fields).
    #[error("a stored secret could not be decrypted")]
    Undecryptable,
    /// Reading or writing the key file failed.
    #[error("secret key file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The server key; cloning is cheap and the key never appears in Debug output.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    fingerprint: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox(fingerprint {})", self.fingerprint)
    }
}

const PREFIX: &str = "v1:";

fn decode_key(text: &str) -> Result<[u8; 32], SecretError> {
    let text = text.trim();
    let bytes = hex::decode(text).ok().or_else(|| B64.decode(text).ok()).ok_or(SecretError::BadKey)?;
    bytes.try_into().map_err(|_| SecretError::BadKey)
}

impl SecretBox {
    /// Builds the box from raw key bytes.
    pub fn new(key: [u8; 32]) -> SecretBox {
        let digest = Sha256::new().chain_update(b"aia-chat secret key fingerprint\0").chain_update(key).finalize();
        SecretBox { cipher: XChaCha20Poly1305::new(&key.into()), fingerprint: hex::encode(&digest[..8]) }
    }

    /// Parses a key given as text (`AIA_SECRET_KEY`).
    pub fn from_text(text: &str) -> Result<SecretBox, SecretError> {
        crate::redact::remember(text);
        decode_key(text).map(SecretBox::new)
    }

    /// Loads `dir/secret.key`, creating it (mode 0600) with a fresh random key if absent.
    pub fn load_or_create(dir: &Path) -> Result<SecretBox, SecretError> {
        let path = dir.join("secret.key");
        let io = |source| SecretError::Io { path: path.display().to_string(), source };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut file = open_private(&path).map_err(io)?;
                file.write_all(hex::encode(key).as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(SecretBox::new(key))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Loads `dir/secret.key` if it exists (`None` when it does not); never creates it, for
    /// commands that must not invent a key (`restore`, `doctor`).
    pub fn load(dir: &Path) -> Result<Option<SecretBox>, SecretError> {
        let path = dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_text(&text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::Io { path: path.display().to_string(), source }),
        }
    }

    /// A short public fingerprint of the key, stored in the database.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Refuses a key whose fingerprint differs from the one the database remembers.
    pub fn check(&self, expected: &str) -> Result<(), SecretError> {
        if expected == self.fingerprint {
            Ok(())
        } else {
            Err(SecretError::Mismatch { given: self.fingerprint.clone(), expected: expected.into() })
        }
    }

    /// Encrypts `plain` for the setting `key` of client `uid`.
    pub fn seal(&self, uid: &str, key: &str, plain: &str) -> String {
        crate::redact::remember(plain);
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = aad(uid, key);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts a value sealed for the same client and setting.
    pub fn open(&self, uid: &str, key: &str, sealed: &str) -> Result<String, SecretError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|raw| raw.len() > 24)
            .ok_or(SecretError::Undecryptable)?;
        let (nonce, body) = raw.split_at(24);
        let aad = aad(uid, key);
        let plain = self
            .cipher
            .decrypt(
                &XNonce::try_from(nonce).map_err(|_| SecretError::Undecryptable)?,
                Payload { msg: body, aad: aad.as_bytes() },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        let plain = String::from_utf8(plain).map_err(|_| SecretError::Undecryptable)?;
        // Whatever this process can read, its logs mask.
        crate::redact::remember(&plain);
        Ok(plain)
    }
}

fn aad(uid: &str, key: &str) -> String {
    format!("aia-chat\0{uid}\0{key}")
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_binds_client_and_field() {
        let b = SecretBox::new([7; 32]);
        let sealed = b.seal("shop", "model_token", "sk-123");
        assert!(!sealed.contains("sk-123"));
        assert_eq!(b.open("shop", "model_token", &sealed).unwrap(), "sk-123");
        assert!(b.open("other", "model_token", &sealed).is_err());
        assert!(b.open("shop", "operator_token", &sealed).is_err());
        assert!(SecretBox::new([8; 32]).open("shop", "model_token", &sealed).is_err());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretBox::load_or_create(dir.path()).unwrap();
        let b = SecretBox::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secret.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(b.check("0000").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any text comes back from its box; a changed byte, another client, another setting
        /// or another key is refused, never decrypted into something else.
        #[test]
        fn sealed_secrets_round_trip_and_refuse_tampering_and_swaps(
            plain in "\\PC{0,200}",
            uid in "[a-z0-9-]{1,20}",
            key in proptest::sample::select(vec!["model_token", "operator_token", "trello_key", "trello_token"]),
            other in proptest::sample::select(vec!["embedding_token", "operator_bot_token"]),
            flip in 0usize..1000,
            bit in 0u8..8,
        ) {
            let b = SecretBox::new([42; 32]);
            let sealed = b.seal(&uid, key, &plain);
            proptest::prop_assert_eq!(b.open(&uid, key, &sealed).unwrap(), plain.clone());
            let someone_else = format!("{uid}x");
            proptest::prop_assert!(b.open(&someone_else, key, &sealed).is_err());
            proptest::prop_assert!(b.open(&uid, other, &sealed).is_err());
            proptest::prop_assert!(SecretBox::new([43; 32]).open(&uid, key, &sealed).is_err());
            let mut raw = B64.decode(sealed.strip_prefix(PREFIX).unwrap()).unwrap();
            let at = flip % raw.len();
            raw[at] ^= 1 << bit;
            let tampered = format!("{PREFIX}{}", B64.encode(&raw));
            proptest::prop_assert!(b.open(&uid, key, &tampered).is_err(), "byte {} bit {}", at, bit);
        }
    }
}
