//! Chatwoot webhook signatures (contract §5.2): `X-Chatwoot-Signature` is `sha256=` and the
//! lowercase hex HMAC-SHA256, keyed with the inbox's webhook secret, of `timestamp.body` — the
//! timestamp is signed too, so an old delivery can't be replayed with a fresh one.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from our clock, either way.
pub const MAX_SKEW_SECS: i64 = 300;

/// Why a webhook was refused; each maps to 401 with this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the webhook is not signed (X-Chatwoot-Signature is missing)")]
    Unsigned,
    #[error("X-Chatwoot-Timestamp is missing or not a number")]
    BadTimestamp,
    #[error("the webhook's timestamp is more than 5 minutes from the server's clock")]
    Stale,
    #[error("X-Chatwoot-Signature is not sha256= and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the webhook secret")]
    Mismatch,
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value Chatwoot sends for `body` at `timestamp` (our test fakes sign with it).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

/// Checks the signature headers over the raw body, before anything parses it. The comparison
/// takes constant time; `now` is unix seconds.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::Unsigned)?;
    let ts = timestamp.ok_or(SignatureError::BadTimestamp)?;
    let at: i64 = ts.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now - at).abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale);
    }
    let digest = signature
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    mac(secret, ts.trim(), body).verify_slice(&digest).map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"message_created","id":1}"#;

    #[test]
    fn the_contracts_test_vector() {
        let expected = "sha256=1a26866369af1b016f8bd15eabe3c3da8dbcca2247023c82a984694652c6e20a";
        assert_eq!(sign("test-secret", "1781690100", BODY), expected);
        assert_eq!(verify("test-secret", Some("1781690100"), Some(expected), BODY, 1781690100), Ok(()));
    }

    #[test]
    fn refusals_say_why() {
        let good = sign("test-secret", "1781690100", BODY);
        let check =
            |ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| verify("test-secret", ts, sig, body, now);
        assert_eq!(check(Some("1781690100"), None, BODY, 1781690100), Err(SignatureError::Unsigned));
        assert_eq!(check(None, Some(&good), BODY, 1781690100), Err(SignatureError::BadTimestamp));
        assert_eq!(check(Some("soon"), Some(&good), BODY, 1781690100), Err(SignatureError::BadTimestamp));
        assert_eq!(check(Some("1781690100"), Some(&good), BODY, 1781690100 + 301), Err(SignatureError::Stale));
        assert_eq!(check(Some("1781690100"), Some(&good), BODY, 1781690100 - 301), Err(SignatureError::Stale));
        assert_eq!(check(Some("1781690100"), Some(&good), BODY, 1781690100 + 300), Ok(()));
        assert_eq!(check(Some("1781690100"), Some("sha256=abc"), BODY, 1781690100), Err(SignatureError::Malformed));
        assert_eq!(check(Some("1781690100"), Some(&good[7..]), BODY, 1781690100), Err(SignatureError::Malformed));
        // The classic mistake: signing the body alone.
        let body_only = format!("sha256={}", {
            let mut m = Hmac::<Sha256>::new_from_slice(b"test-secret").unwrap();
            m.update(BODY);
            hex::encode(m.finalize().into_bytes())
        });
        assert!(body_only.starts_with("sha256=b9da6049"), "{body_only}");
        assert_eq!(check(Some("1781690100"), Some(&body_only), BODY, 1781690100), Err(SignatureError::Mismatch));
        // Another client's secret, a changed body, a replayed signature with a new timestamp.
        let other = sign("other-secret", "1781690100", BODY);
        assert_eq!(check(Some("1781690100"), Some(&other), BODY, 1781690100), Err(SignatureError::Mismatch));
        assert_eq!(check(Some("1781690100"), Some(&good), b"{}", 1781690100), Err(SignatureError::Mismatch));
        assert_eq!(check(Some("1781690101"), Some(&good), BODY, 1781690100), Err(SignatureError::Mismatch));
    }
}
