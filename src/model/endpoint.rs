//! Where a client's model lives and how to authenticate there, from its `model_url` and
//! token. The product's own example gives the full endpoint
//! (`https://api.openai.com/v1/chat/completions`); local servers are usually given by their
//! base (`http://localhost:11434/v1`). Both work, and so do Azure OpenAI's deployment URLs
//! with their `api-version` query and `api-key` header (`shared/contracts/openai.md` §1, §8.4),
//! and Anthropic's Messages API with its `x-api-key` header (§9).

use url::Url;

use super::anthropic::Anthropic;
use super::chat::Protocol;
use super::openai::OpenAi;

/// The default when no `model_url` is set.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// The default for Anthropic when no `model_url` is set.
pub const ANTHROPIC_BASE: &str = "https://api.anthropic.com/v1";

/// Which wire format a client's model speaks (`model_provider`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// OpenAI chat completions, and every compatible server.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

impl Provider {
    /// The provider a `model_provider` value names; anything else is OpenAI-compatible.
    pub fn from_setting(value: &str) -> Provider {
        if value == "anthropic" { Provider::Anthropic } else { Provider::OpenAi }
    }

    /// How requests are written and streams read.
    pub fn protocol(self) -> &'static dyn Protocol {
        match self {
            Provider::OpenAi => &OpenAi,
            Provider::Anthropic => &Anthropic,
        }
    }

    /// The model id used when `model_type` is left at its default.
    pub fn default_model(self) -> &'static str {
        match self {
            Provider::OpenAi => "gpt-4o-mini",
            Provider::Anthropic => "claude-haiku-4-5",
        }
    }
}

/// How requests prove who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer …` (OpenAI and most compatible servers).
    Bearer(String),
    /// `api-key: …` (Azure OpenAI).
    ApiKey(String),
    /// `x-api-key: …` with `anthropic-version` (Anthropic).
    XApiKey(String),
    /// Local servers need none.
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, wherever an endpoint is printed.
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer(…)",
            Auth::ApiKey(_) => "ApiKey(…)",
            Auth::XApiKey(_) => "XApiKey(…)",
            Auth::None => "None",
        })
    }
}

/// A resolved chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub provider: Provider,
    pub url: Url,
    pub auth: Auth,
}

impl Endpoint {
    /// The request field that limits the reply, for `model_max_tokens_field`: OpenAI and Azure
    /// reject `max_tokens` for reasoning models; Ollama and older vLLM ignore
    /// `max_completion_tokens` (contract §2.1). Never both.
    pub fn max_tokens_field(&self, setting: &str) -> &'static str {
        if self.provider == Provider::Anthropic {
            return "max_tokens";
        }
        match setting {
            "max_completion_tokens" => "max_completion_tokens",
            "max_tokens" => "max_tokens",
            _ => {
                let host = self.url.host_str().unwrap_or("").to_ascii_lowercase();
                let official = host == "api.openai.com" || is_azure(&self.url);
                if official { "max_completion_tokens" } else { "max_tokens" }
            }
        }
    }
}

/// Why a `model_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model_url is not an http(s) URL: {0}")]
pub struct BadModelUrl(String);

/// The endpoint for `model_url` (empty: the provider's own) and `token`. A base URL gets the
/// provider's path appended; a full endpoint is taken as it is.
pub fn chat_endpoint(provider: Provider, model_url: &str, token: &str) -> Result<Endpoint, BadModelUrl> {
    let (base, tail) = match provider {
        Provider::OpenAi => (OPENAI_BASE, "/chat/completions"),
        Provider::Anthropic => (ANTHROPIC_BASE, "/messages"),
    };
    let given = if model_url.trim().is_empty() { base } else { model_url.trim() };
    let mut url = Url::parse(given).map_err(|e| BadModelUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadModelUrl(format!("scheme {}", url.scheme())));
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with(tail) {
        url.set_path(&format!("{path}{tail}"));
    }
    let auth = match token.trim() {
        "" => Auth::None,
        t if provider == Provider::Anthropic => Auth::XApiKey(t.to_string()),
        t if is_azure(&url) => Auth::ApiKey(t.to_string()),
        t => Auth::Bearer(t.to_string()),
    };
    Ok(Endpoint { provider, url, auth })
}

/// Azure OpenAI, by its hosts or, behind a gateway or proxy, by its deployment paths and
/// `api-version` query.
pub(crate) fn is_azure(url: &Url) -> bool {
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    host.ends_with(".openai.azure.com")
        || host.ends_with(".cognitiveservices.azure.com")
        || url.path().contains("/openai/deployments/")
        || url.query_pairs().any(|(k, _)| k == "api-version")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(model_url: &str) -> String {
        chat_endpoint(Provider::OpenAi, model_url, "k").unwrap().url.to_string()
    }

    #[test]
    fn bases_and_full_endpoints() {
        assert_eq!(url(""), "https://api.openai.com/v1/chat/completions");
        assert_eq!(url("https://api.openai.com/v1/chat/completions"), "https://api.openai.com/v1/chat/completions");
        assert_eq!(url("http://localhost:11434/v1"), "http://localhost:11434/v1/chat/completions");
        assert_eq!(url("http://localhost:11434/v1/"), "http://localhost:11434/v1/chat/completions");
        assert_eq!(url("https://openrouter.ai/api/v1"), "https://openrouter.ai/api/v1/chat/completions");
        assert_eq!(
            url("https://shop.openai.azure.com/openai/deployments/gpt4o?api-version=2024-10-21"),
            "https://shop.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert!(chat_endpoint(Provider::OpenAi, "ftp://x", "").is_err());
        assert!(chat_endpoint(Provider::OpenAi, "not a url", "").is_err());
    }

    #[test]
    fn the_reply_limit_field_follows_the_provider() {
        let field =
            |url: &str, setting: &str| chat_endpoint(Provider::OpenAi, url, "").unwrap().max_tokens_field(setting);
        assert_eq!(field("", "auto"), "max_completion_tokens");
        assert_eq!(field("https://shop.openai.azure.com/openai/v1", "auto"), "max_completion_tokens");
        assert_eq!(field("http://localhost:11434/v1", "auto"), "max_tokens");
        assert_eq!(field("https://openrouter.ai/api/v1", "auto"), "max_tokens");
        assert_eq!(field("http://localhost:8000/v1", "max_completion_tokens"), "max_completion_tokens");
    }

    #[test]
    fn the_header_follows_the_provider_and_never_prints() {
        assert_eq!(chat_endpoint(Provider::OpenAi, "", "sk-1").unwrap().auth, Auth::Bearer("sk-1".into()));
        assert_eq!(chat_endpoint(Provider::OpenAi, "http://localhost:8000/v1", "").unwrap().auth, Auth::None);
        let azure = chat_endpoint(Provider::OpenAi, "https://shop.openai.azure.com/openai/v1", "az-1").unwrap();
        assert_eq!(azure.auth, Auth::ApiKey("az-1".into()));
        assert!(!format!("{azure:?}").contains("az-1"));
        let proxied = chat_endpoint(
            Provider::OpenAi,
            "http://127.0.0.1:9/openai/deployments/gpt4o?api-version=2024-10-21",
            "az-2",
        )
        .unwrap();
        assert_eq!(proxied.auth, Auth::ApiKey("az-2".into()), "Azure behind a gateway, by its path");
        assert_eq!(proxied.max_tokens_field("auto"), "max_completion_tokens");
    }

    #[test]
    fn anthropic_messages() {
        let e = chat_endpoint(Provider::Anthropic, "", "sk-ant-1").unwrap();
        assert_eq!(e.url.as_str(), "https://api.anthropic.com/v1/messages");
        assert_eq!(e.auth, Auth::XApiKey("sk-ant-1".into()));
        assert!(!format!("{e:?}").contains("sk-ant-1"));
        assert_eq!(e.max_tokens_field("max_completion_tokens"), "max_tokens", "the only field it has");
        let full = chat_endpoint(Provider::Anthropic, "https://api.anthropic.com/v1/messages", "k").unwrap();
        assert_eq!(full.url.as_str(), "https://api.anthropic.com/v1/messages");
        let local = chat_endpoint(Provider::Anthropic, "http://127.0.0.1:8/v1/", "").unwrap();
        assert_eq!((local.url.as_str(), local.auth), ("http://127.0.0.1:8/v1/messages", Auth::None));
    }
}
