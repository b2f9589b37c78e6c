//! A client's (website's) settings: the settings table, validation, allowed origins, secrets
//! at rest and the rule that a secret follows the host of the URL it is sent to. Nothing here
//! knows HTTP; the store only ever sees validated, normalised text and sealed secrets.

pub mod origin;
pub mod secrets;
pub mod settings;
pub mod upstream;

use std::collections::{BTreeMap, BTreeSet};

pub use origin::OriginRules;
pub use secrets::SecretBox;
pub use settings::{Kind, SETTINGS, SettingDef};
pub use upstream::UpstreamPolicy;

use crate::store::{SettingWrite, StoredSetting};

/// A setting change that was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown setting '{0}' (see docs/settings.md)")]
    Unknown(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> SettingError {
    SettingError::Invalid { key: key.into(), reason: reason.into() }
}

/// A client's stored settings; secrets stay sealed until `secret` opens one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    values: BTreeMap<String, String>,
}

impl ClientSettings {
    /// Builds from the store's rows, ignoring keys the table no longer knows.
    pub fn from_stored(rows: Vec<StoredSetting>) -> ClientSettings {
        let values = rows.into_iter().filter(|r| settings::find(&r.key).is_some()).map(|r| (r.key, r.value)).collect();
        ClientSettings { values }
    }

    /// The effective value of a plain setting: stored, else the table's default.
    pub fn get(&self, key: &str) -> &str {
        debug_assert!(settings::find(key).is_some_and(|d| !d.secret()), "{key} is not a plain setting");
        self.values.get(key).map(String::as_str).unwrap_or_else(|| settings::find(key).map_or("", |d| d.default))
    }

    /// Whether a value is stored (for secrets: whether one is set).
    pub fn is_set(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| !v.is_empty())
    }

    /// Opens a secret for use in an outgoing request.
    pub fn secret(&self, keys: &SecretBox, uid: &str, key: &str) -> Option<Result<String, secrets::SecretError>> {
        self.values.get(key).map(|sealed| keys.open(uid, key, sealed))
    }

    /// The client's allowed origins (validated on write, so parsing cannot fail here).
    pub fn origins(&self) -> OriginRules {
        OriginRules::parse(self.get("allowed_domains")).unwrap_or_default()
    }

    /// Rows for display: secrets only as `set` / `not set`, defaults marked.
    pub fn display_rows(&self) -> Vec<(&'static str, String)> {
        SETTINGS
            .iter()
            .map(|d| {
                let shown = if d.secret() {
                    if self.is_set(d.key) { "set".to_string() } else { "not set".to_string() }
                } else if self.values.contains_key(d.key) {
                    self.get(d.key).to_string()
                } else if d.default.is_empty() {
                    "(not set)".to_string()
                } else {
                    format!("{} (default)", d.default)
                };
                (d.key, shown)
            })
            .collect()
    }

    /// Plans a change: validates every `(key, value)`, seals secrets, and clears secrets whose
    /// URL's host changes unless the same change gives them again. An empty value resets.
    pub fn plan(
        &self,
        uid: &str,
        updates: &[(String, String)],
        policy: UpstreamPolicy,
        keys: &SecretBox,
    ) -> Result<Vec<SettingWrite>, SettingError> {
        let mut writes: Vec<SettingWrite> = Vec::new();
        let given: BTreeSet<&str> = updates.iter().map(|(k, _)| k.as_str()).collect();
        for (key, raw) in updates {
            let def = settings::find(key).ok_or_else(|| SettingError::Unknown(key.clone()))?;
            let value = normalize(def, raw, policy)?;
            let value = match (def.secret(), value) {
                (true, Some(plain)) => Some(keys.seal(uid, def.key, &plain)),
                (_, value) => value,
            };
            // Secrets stay with the party they were given for: a URL moving to another origin
            // (host, but also scheme — https to http would send it in the clear — and port,
            // another service on the same host), or another model provider (the same empty
            // URL then means another host).
            let moved_to = match def.kind {
                Kind::UpstreamUrl => {
                    let old = origin_of(self.get(def.key)).or_else(|| origin_of(def.default));
                    let new = value.as_deref().and_then(origin_of).or_else(|| origin_of(def.default));
                    (old != new).then_some(def.key)
                }
                _ if def.key == "model_provider" => {
                    (value.as_deref().unwrap_or(def.default) != self.get(def.key)).then_some("model_url")
                }
                _ => None,
            };
            if let Some(url_key) = moved_to {
                for secret in settings::secrets_following(url_key) {
                    if !given.contains(secret.key) && self.is_set(secret.key) {
                        writes.push(SettingWrite { key: secret.key.into(), value: None });
                    }
                }
            }
            writes.retain(|w| w.key != def.key);
            writes.push(SettingWrite { key: def.key.into(), value });
        }
        Ok(writes)
    }
}

/// Scheme, host and effective port: where a secret goes (`https://api.x.com:443`).
fn origin_of(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.host_str()?;
    Some(url.origin().ascii_serialization())
}

fn is_color(v: &str) -> bool {
    v.strip_prefix('#')
        .is_some_and(|hex| (hex.len() == 3 || hex.len() == 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Validates and normalises one value; `None` means "unset" (back to the default).
pub fn normalize(def: &SettingDef, raw: &str, policy: UpstreamPolicy) -> Result<Option<String>, SettingError> {
    let key = def.key;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let value = match def.kind {
        Kind::Color if is_color(trimmed) => trimmed.to_ascii_lowercase(),
        Kind::Color => return Err(invalid(key, format!("'{trimmed}' is not a color like #rgb or #rrggbb"))),
        Kind::Select(options) if options.contains(&trimmed) => trimmed.to_string(),
        Kind::Select(options) => return Err(invalid(key, format!("must be one of {}", options.join(", ")))),
        Kind::UpstreamUrl => policy.check_url(trimmed).map_err(|e| invalid(key, e.to_string()))?.to_string(),
        Kind::TrelloBoard => crate::tasks::trello::board_ref(trimmed).map_err(|e| invalid(key, e.to_string()))?,
        Kind::UpstreamSocketUrl => {
            let mut url = url::Url::parse(trimmed).map_err(|_| invalid(key, "is not a valid URL"))?;
            let twin = match url.scheme() {
                "ws" => "http",
                "wss" => "https",
                _ => return Err(invalid(key, "must be a ws:// or wss:// URL")),
            };
            url.set_scheme(twin).map_err(|_| invalid(key, "is not a valid URL"))?;
            policy.check_url(url.as_str()).map_err(|e| invalid(key, e.to_string()))?;
            trimmed.to_string()
        }
        Kind::PublicUrl => {
            let url = url::Url::parse(trimmed).map_err(|_| invalid(key, "is not a valid URL"))?;
            if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") || url.host().is_none() {
                return Err(invalid(key, "must be an http(s) or ws(s) URL"));
            }
            trimmed.to_string()
        }
        Kind::PageUrl => {
            let url = url::Url::parse(trimmed).map_err(|_| invalid(key, "is not a valid URL"))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(invalid(key, "must be an http(s) URL"));
            }
            url.to_string()
        }
        Kind::DomainList => OriginRules::parse(trimmed).map_err(|e| invalid(key, e.to_string()))?.to_text(),
        Kind::IdList => {
            let ids: Vec<&str> = origin::split_list(trimmed).collect();
            if let Some(bad) =
                ids.iter().find(|id| !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(invalid(key, format!("'{bad}' is not an id")));
            }
            ids.join(",")
        }
        Kind::Text { max } | Kind::Multiline { max } | Kind::Suggested { max, .. } => {
            if raw.chars().count() > max {
                return Err(invalid(key, format!("is longer than {max} characters")));
            }
            if !matches!(def.kind, Kind::Multiline { .. }) && raw.contains(['\n', '\r']) {
                return Err(invalid(key, "must be a single line"));
            }
            if matches!(def.kind, Kind::Multiline { .. }) { raw.to_string() } else { trimmed.to_string() }
        }
        Kind::Int { min, max } => match trimmed.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => n.to_string(),
            _ => return Err(invalid(key, format!("must be a whole number from {min} to {max}"))),
        },
        Kind::Interval => match crate::config::parse_duration(trimmed) {
            Ok(d) if d >= std::time::Duration::from_secs(60) => trimmed.to_string(),
            Ok(_) => return Err(invalid(key, "must be at least 1m")),
            Err(e) => return Err(invalid(key, e)),
        },
        Kind::ProductFields => {
            crate::catalog::search::ProductMapping::parse(trimmed).map_err(|e| invalid(key, e))?;
            trimmed.to_string()
        }
        Kind::FieldMapping => {
            crate::knowledge::extract::Mapping::parse(trimmed).map_err(|e| invalid(key, e))?;
            trimmed.to_string()
        }
        Kind::SecretHeaders => {
            let parsed: Result<BTreeMap<String, String>, _> = serde_json::from_str(trimmed);
            let headers =
                parsed.map_err(|_| invalid(key, "must be a JSON object of strings, e.g. {\"Store\": \"de_de\"}"))?;
            for (name, value) in &headers {
                let ok_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
                if !ok_name || value.chars().any(char::is_control) {
                    return Err(invalid(key, format!("'{name}' is not a valid header")));
                }
            }
            trimmed.to_string()
        }
        Kind::Secret => {
            if raw.chars().count() > 4096 || raw.chars().any(char::is_control) {
                return Err(invalid(key, "is not a valid token"));
            }
            trimmed.to_string()
        }
    };
    Ok(Some(value))
}

/// Maps a public URL to the widget's socket URL: http→ws, https→wss, a trailing `/` dropped
/// and `/ws` appended; a ws(s) URL with a path is used as it is.
pub fn socket_url(public: &str) -> Option<String> {
    let url = url::Url::parse(public.trim()).ok()?;
    let has_path = url.path() != "/" && !url.path().is_empty();
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        s @ ("ws" | "wss") if has_path => return Some(format!("{s}{}", &url.as_str()[s.len()..])),
        s @ ("ws" | "wss") => s,
        _ => return None,
    };
    let rest = &url.as_str()[url.scheme().len()..];
    Some(format!("{scheme}{}/ws", rest.trim_end_matches('/')))
}

/// The product's JavaScript connect code for a client, served from `base` (no trailing `/`).
pub fn connect_code(base: &str, uid: &str, settings: &ClientSettings) -> String {
    let socket = match settings.get("socket_url") {
        "" => base,
        s => s,
    };
    format!(
        "<script src=\"{base}/js/ChatBot.js?clientUid={uid}&apiPoint={base}/api/data/ai_chat_bot&buttonColor={}&bgColor={}&position={}&socketUrl={socket}\"></script>",
        settings.get("button_color"),
        settings.get("bg_color"),
        settings.get("position"),
    )
}

/// Whether a client uid is acceptable (it appears in URLs and connect codes).
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(pairs: &[(&str, &str)], keys: &SecretBox) -> ClientSettings {
        let mut s = ClientSettings::default();
        for (k, v) in pairs {
            let value = if settings::find(k).unwrap().secret() { keys.seal("c", k, v) } else { v.to_string() };
            s.values.insert(k.to_string(), value);
        }
        s
    }

    #[test]
    fn secret_follows_url_origin() {
        let keys = SecretBox::new([1; 32]);
        let policy = UpstreamPolicy::default();
        let s = current(&[("model_url", "https://api.openai.com/v1"), ("model_token", "sk")], &keys);
        let w = s.plan("c", &[("model_url".into(), "https://evil.example/v1".into())], policy, &keys).unwrap();
        assert!(w.contains(&SettingWrite { key: "model_token".into(), value: None }));
        let w = s.plan("c", &[("model_url".into(), "https://api.openai.com/v2".into())], policy, &keys).unwrap();
        assert_eq!(w.len(), 1, "same origin keeps the token");
        let w = s.plan("c", &[("model_url".into(), "https://API.openai.com:443/v1".into())], policy, &keys).unwrap();
        assert_eq!(w.len(), 1, "the same origin spelled otherwise keeps the token");
        for elsewhere in ["http://api.openai.com/v1", "https://api.openai.com:8443/v1"] {
            let w = s.plan("c", &[("model_url".into(), elsewhere.into())], policy, &keys).unwrap();
            assert!(w.contains(&SettingWrite { key: "model_token".into(), value: None }), "{elsewhere}");
        }
        let w = s
            .plan(
                "c",
                &[("model_url".into(), "https://x.example".into()), ("model_token".into(), "new".into())],
                policy,
                &keys,
            )
            .unwrap();
        assert!(w.iter().all(|w| w.value.is_some()));
        // Another provider: an OpenAI key is never sent to Anthropic.
        let s = current(&[("model_token", "sk")], &keys);
        let w = s.plan("c", &[("model_provider".into(), "anthropic".into())], policy, &keys).unwrap();
        assert!(w.contains(&SettingWrite { key: "model_token".into(), value: None }));
        let w = s.plan("c", &[("model_provider".into(), "openai".into())], policy, &keys).unwrap();
        assert_eq!(w.len(), 1, "the same provider keeps the token");
    }

    #[test]
    fn validation_names_the_field() {
        let keys = SecretBox::new([1; 32]);
        let s = ClientSettings::default();
        let err = s.plan("c", &[("button_color".into(), "red".into())], UpstreamPolicy::default(), &keys).unwrap_err();
        assert!(err.to_string().starts_with("button_color:"), "{err}");
        let err = s.plan("c", &[("position".into(), "middle".into())], UpstreamPolicy::default(), &keys).unwrap_err();
        assert!(err.to_string().starts_with("position:"));
        assert!(s.plan("c", &[("nope".into(), "x".into())], UpstreamPolicy::default(), &keys).is_err());
    }

    #[test]
    fn boards_and_cable_urls_are_normalised() {
        let keys = SecretBox::new([1; 32]);
        let s = ClientSettings::default();
        let one = |k: &str, v: &str| {
            s.plan("c", &[(k.into(), v.into())], UpstreamPolicy::default(), &keys).map(|w| w[0].value.clone())
        };
        assert_eq!(
            one("trello_board_id", "https://trello.com/b/Zk3PqR7w/support-inbox").unwrap().as_deref(),
            Some("Zk3PqR7w")
        );
        assert_eq!(one("trello_board_id", "Zk3PqR7w").unwrap().as_deref(), Some("Zk3PqR7w"));
        assert!(
            one("trello_board_id", "https://example.com/b/x").unwrap_err().to_string().starts_with("trello_board_id:")
        );
        assert_eq!(
            one("operator_cable_url", "wss://chat.example.com/cable").unwrap().as_deref(),
            Some("wss://chat.example.com/cable")
        );
        assert!(one("operator_cable_url", "https://chat.example.com/cable").is_err(), "a WebSocket URL");
        assert!(one("operator_cable_url", "ws://169.254.169.254/cable").is_err(), "the upstream policy applies");
    }

    #[test]
    fn socket_urls() {
        assert_eq!(socket_url("https://host.com/").unwrap(), "wss://host.com/ws");
        assert_eq!(socket_url("http://localhost:3015").unwrap(), "ws://localhost:3015/ws");
        assert_eq!(socket_url("https://h.com/chat/").unwrap(), "wss://h.com/chat/ws");
        assert_eq!(socket_url("wss://h.com/custom/path").unwrap(), "wss://h.com/custom/path");
        assert_eq!(socket_url("ws://h.com").unwrap(), "ws://h.com/ws");
    }
}
