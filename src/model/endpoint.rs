//! Where a client's model lives and how to authenticate there, from its `model_url` and
//! token. The product's own example gives the full endpoint
//! (`https://api.openai.com/v1/chat/completions`); local servers are usually given by their
//! base (`http://localhost:11434/v1`). Both work, and so do Azure OpenAI's deployment URLs
//! with their `api-version` query and `api-key` header (`shared/contracts/openai.md` §1, §8.4).

use url::Url;

/// The default when no `model_url` is set.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// How requests prove who they are.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer …` (OpenAI and most compatible servers).
    Bearer(String),
    /// `api-key: …` (Azure OpenAI).
    ApiKey(String),
    /// Local servers need none.
    None,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself, wherever an endpoint is printed.
        f.write_str(match self {
            Auth::Bearer(_) => "Bearer(…)",
            Auth::ApiKey(_) => "ApiKey(…)",
            Auth::None => "None",
        })
    }
}

/// A resolved chat-completions endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    pub auth: Auth,
}

impl Endpoint {
    /// The request field that limits the reply, for `model_max_tokens_field`: OpenAI and Azure
    /// reject `max_tokens` for reasoning models; Ollama and older vLLM ignore
    /// `max_completion_tokens` (contract §2.1). Never both.
    pub fn max_tokens_field(&self, setting: &str) -> &'static str {
        match setting {
            "max_completion_tokens" => "max_completion_tokens",
            "max_tokens" => "max_tokens",
            _ => {
                let host = self.url.host_str().unwrap_or("").to_ascii_lowercase();
                let official = host == "api.openai.com"
                    || host.ends_with(".openai.azure.com")
                    || host.ends_with(".cognitiveservices.azure.com");
                if official { "max_completion_tokens" } else { "max_tokens" }
            }
        }
    }
}

/// Why a `model_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model_url is not an http(s) URL: {0}")]
pub struct BadModelUrl(String);

/// The chat-completions endpoint for `model_url` (empty: OpenAI) and `token`.
pub fn chat_endpoint(model_url: &str, token: &str) -> Result<Endpoint, BadModelUrl> {
    let given = if model_url.trim().is_empty() { OPENAI_BASE } else { model_url.trim() };
    let mut url = Url::parse(given).map_err(|e| BadModelUrl(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadModelUrl(format!("scheme {}", url.scheme())));
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !path.ends_with("/chat/completions") {
        url.set_path(&format!("{path}/chat/completions"));
    }
    let host = url.host_str().unwrap_or("").to_ascii_lowercase();
    let azure = host.ends_with(".openai.azure.com") || host.ends_with(".cognitiveservices.azure.com");
    let auth = match (token.trim(), azure) {
        ("", _) => Auth::None,
        (t, true) => Auth::ApiKey(t.to_string()),
        (t, false) => Auth::Bearer(t.to_string()),
    };
    Ok(Endpoint { url, auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(model_url: &str) -> String {
        chat_endpoint(model_url, "k").unwrap().url.to_string()
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
        assert!(chat_endpoint("ftp://x", "").is_err());
        assert!(chat_endpoint("not a url", "").is_err());
    }

    #[test]
    fn the_reply_limit_field_follows_the_provider() {
        let field = |url: &str, setting: &str| chat_endpoint(url, "").unwrap().max_tokens_field(setting);
        assert_eq!(field("", "auto"), "max_completion_tokens");
        assert_eq!(field("https://shop.openai.azure.com/openai/v1", "auto"), "max_completion_tokens");
        assert_eq!(field("http://localhost:11434/v1", "auto"), "max_tokens");
        assert_eq!(field("https://openrouter.ai/api/v1", "auto"), "max_tokens");
        assert_eq!(field("http://localhost:8000/v1", "max_completion_tokens"), "max_completion_tokens");
    }

    #[test]
    fn the_header_follows_the_provider_and_never_prints() {
        assert_eq!(chat_endpoint("", "sk-1").unwrap().auth, Auth::Bearer("sk-1".into()));
        assert_eq!(chat_endpoint("http://localhost:8000/v1", "").unwrap().auth, Auth::None);
        let azure = chat_endpoint("https://shop.openai.azure.com/openai/v1", "az-1").unwrap();
        assert_eq!(azure.auth, Auth::ApiKey("az-1".into()));
        assert!(!format!("{azure:?}").contains("az-1"));
    }
}
