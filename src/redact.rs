//! The last line of defence for secrets in logs: every formatted log line passes through
//! [`redact`] before it is written. Two nets, because either alone has holes:
//! - **shapes**: the values of `key=`, `token=`, `secret=`, `password=` (and their `api_key`,
//!   `access_token`… kin) in query strings or `k=v` text, `Bearer …` credentials and the
//!   password in `scheme://user:password@host`;
//! - **values**: every secret this process has decrypted or was given (client settings through
//!   the secret box, the admin token, the server key, database and Redis passwords) is
//!   remembered and masked wherever it appears, whatever surrounds it.
//!
//! Code should still never log a secret; this catches the mistake, it does not excuse it.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::RwLock;

/// What a masked secret becomes.
pub const MASK: &str = "[redacted]";

/// Remembered secrets stop growing here (rotations over a long uptime): beyond it the shape
/// rules still apply.
const MAX_REMEMBERED: usize = 10_000;
/// Shorter values are not remembered: masking `abc` everywhere would mangle ordinary words.
const MIN_REMEMBERED: usize = 6;

static KNOWN: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Remembers `secret` so that no log line shows it.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_REMEMBERED {
        return;
    }
    if KNOWN.read().map(|k| k.contains(secret)).unwrap_or(true) {
        return;
    }
    if let Ok(mut known) = KNOWN.write()
        && known.len() < MAX_REMEMBERED
    {
        known.insert(secret.to_string());
    }
}

/// Remembers the password of a URL such as `postgres://user:password@host/db`.
pub fn remember_url_password(url: &str) {
    if let Ok(url) = url::Url::parse(url)
        && let Some(password) = url.password()
    {
        remember(password);
        if let Ok(decoded) = urlencoding_decode(password) {
            remember(&decoded);
        }
    }
}

fn urlencoding_decode(s: &str) -> Result<String, std::str::Utf8Error> {
    Ok(url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default())
}

/// Parameter names whose values are credentials (compared case-insensitively, as the end of
/// the name: `api_key`, `x-api-key`, `access_token`, `client_secret`…).
const SECRET_NAMES: &[&str] = &["key", "token", "secret", "password", "passwd", "pwd", "signature", "auth"];

/// `line` with every secret masked.
pub fn redact(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    if let Ok(known) = KNOWN.read() {
        for secret in known.iter() {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
    }
    let shaped = mask_shapes(&out);
    match shaped {
        Some(s) => Cow::Owned(s),
        None => out,
    }
}

/// Masks `name=value` credentials, `Bearer value` and URL passwords; `None` when nothing
/// matched (the common case, without an allocation).
fn mask_shapes(line: &str) -> Option<String> {
    let bytes = line.as_bytes();
    // (start, end, whether the mask needs quotes to keep a JSON line valid)
    let mut spans: Vec<(usize, usize, bool)> = Vec::new();
    // name=value and name: value, where the name ends in a credential word.
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'=' && b != b':' {
            continue;
        }
        // The name before the separator, unquoted (`token=`) or quoted (JSON `"token":`,
        // or `\"token\":` inside a JSON string).
        let mut name_end = i;
        let mut quoted = false;
        while name_end > 0 && matches!(bytes[name_end - 1], b'"' | b'\\') {
            name_end -= 1;
            quoted = true;
        }
        let name_start = bytes[..name_end]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-'))
            .map_or(0, |p| p + 1);
        let name = &line[name_start..name_end];
        if name.is_empty() || !credential_name(name) {
            continue;
        }
        let mut start = i + 1;
        if b == b':' {
            // `"key": "…"` (JSON) or `key: "…"` (a Debug struct); not free text's `key: …`
            // nor a URL's `://`.
            if bytes.get(start) == Some(&b' ') {
                start += 1;
            }
            if !quoted && bytes.get(start) != Some(&b'"') {
                continue;
            }
        }
        // Skip the value's opening quote (escaped inside a JSON string). A bare JSON value
        // (`"password":true`) becomes a string.
        let bare_json = b == b':' && quoted && !matches!(bytes.get(start), Some(b'"') | Some(b'\\'));
        while matches!(bytes.get(start), Some(b'"') | Some(b'\\')) {
            start += 1;
        }
        let end = value_end(bytes, start);
        if end > start && &line[start..end] != MASK {
            spans.push((start, end, bare_json));
        }
    }
    // Bearer / Basic credentials.
    for scheme in ["Bearer ", "bearer ", "Basic ", "basic "] {
        let mut from = 0;
        while let Some(p) = line[from..].find(scheme) {
            let start = from + p + scheme.len();
            let end = value_end(bytes, start);
            if end > start && &line[start..end] != MASK {
                spans.push((start, end, false));
            }
            from = start;
        }
    }
    // scheme://user:password@host
    let mut from = 0;
    while let Some(p) = line[from..].find("://") {
        let auth_start = from + p + 3;
        let auth_end = value_end(bytes, auth_start);
        if let Some(at) = line[auth_start..auth_end].rfind('@')
            && let Some(colon) = line[auth_start..auth_start + at].find(':')
        {
            let (start, end) = (auth_start + colon + 1, auth_start + at);
            if end > start && &line[start..end] != MASK {
                spans.push((start, end, false));
            }
        }
        from = auth_start;
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for (start, end, quote) in spans {
        if start < at {
            continue;
        }
        out.push_str(&line[at..start]);
        if quote {
            out.push('"');
            out.push_str(MASK);
            out.push('"');
        } else {
            out.push_str(MASK);
        }
        at = end;
    }
    out.push_str(&line[at..]);
    Some(out)
}

fn credential_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|word| {
        lower == *word
            || lower.strip_suffix(word).is_some_and(|head| head.ends_with('_') || head.ends_with('-'))
            || (lower.ends_with(word) && lower.len() > word.len() && matches!(*word, "token" | "secret" | "password"))
    })
}

/// Where a credential value ends: at whitespace, a quote, a separator of query strings or
/// structured text.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while let Some(&c) = bytes.get(end) {
        if c.is_ascii_whitespace() || matches!(c, b'&' | b'"' | b'\'' | b'\\' | b',' | b';' | b')' | b'}' | b']' | b'>')
        {
            break;
        }
        end += 1;
    }
    end
}

/// A log writer that masks secrets in every line it is given (the fmt layer writes one whole
/// event per `write`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = RedactingWriter<std::io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(std::io::stderr())
    }
}

/// Wraps a writer; see [`Stderr`].
#[derive(Debug)]
pub struct RedactingWriter<W>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(redact(text).as_bytes())?,
            Err(_) => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_text_credentials_are_masked() {
        assert_eq!(
            redact("GET https://api.trello.com/1/boards/b?key=abc123&token=ATTAxyz&fields=name"),
            "GET https://api.trello.com/1/boards/b?key=[redacted]&token=[redacted]&fields=name"
        );
        assert_eq!(
            redact("api_key=s3cr3t access_token=t0k3n other=1"),
            "api_key=[redacted] access_token=[redacted] other=1"
        );
        assert_eq!(
            redact(r#"{"message":"failed","url":"https://x/?token=abc"}"#),
            r#"{"message":"failed","url":"https://x/?token=[redacted]"}"#
        );
        assert_eq!(redact("authorization: Bearer sk-live-123"), "authorization: Bearer [redacted]");
        assert_eq!(redact("redis://:hunter22@127.0.0.1:6379/0"), "redis://:[redacted]@127.0.0.1:6379/0");
        assert_eq!(redact("postgres://aia:pw-9@db/aia"), "postgres://aia:[redacted]@db/aia");
        assert_eq!(redact(r#"{"api_key": "abcdef"}"#), r#"{"api_key": "[redacted]"}"#);
        // JSON lines stay JSON.
        let line = r#"{"message":"changed","password":true,"token":"t0k3n-1","n":1}"#;
        let masked = redact(line);
        assert_eq!(masked, r#"{"message":"changed","password":"[redacted]","token":"[redacted]","n":1}"#);
        serde_json::from_str::<serde_json::Value>(&masked).unwrap();
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for line in [
            "client settings or knowledge reloaded clients=[\"demo\"]",
            "open http://127.0.0.1:3015 to chat with the demo assistant",
            "monkey=1 turkey=2 keyboard=3",
            "the key is in the drawer",
            "operator delivery failed; retrying error=\"401 Unauthorized\"",
            "session=12 seq=4",
        ] {
            assert_eq!(redact(line), line);
        }
    }

    #[test]
    fn remembered_values_are_masked_anywhere() {
        remember("canary-remembered-1f2e");
        remember("abc");
        assert_eq!(
            redact("error: upstream said canary-remembered-1f2e is wrong"),
            "error: upstream said [redacted] is wrong"
        );
        assert_eq!(redact("abc"), "abc", "too short to remember");
        remember_url_password("redis://:p%40ss-word-77@127.0.0.1:6379");
        assert_eq!(redact("tried p@ss-word-77 and p%40ss-word-77"), "tried [redacted] and [redacted]");
    }

    #[test]
    fn the_writer_masks_what_it_writes() {
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"GET /1/lists?key=k1k1k1&token=t2t2t2\n").unwrap();
        assert_eq!(String::from_utf8(w.0).unwrap(), "GET /1/lists?key=[redacted]&token=[redacted]\n");
    }
}
