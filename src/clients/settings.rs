//! The one settings table. Every client setting is declared here once with its type, default,
//! validation, admin group and whether it is a secret; `docs/settings.md` mirrors it (a test
//! keeps them in step), and everything that shows, exports or logs settings reads `secret` here.

/// How a setting's value is checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `#rgb` or `#rrggbb`.
    Color,
    /// One of the listed values.
    Select(&'static [&'static str]),
    /// An http(s) URL the server sends requests to (checked against the upstream policy).
    UpstreamUrl,
    /// A ws(s) URL the server opens a WebSocket to (checked like [`Kind::UpstreamUrl`]).
    UpstreamSocketUrl,
    /// A Trello board: its id, its 8-character short link, or its `trello.com/b/…` URL
    /// (stored as the id or short link).
    TrelloBoard,
    /// A public http(s) or ws(s) URL that visitors' browsers connect to.
    PublicUrl,
    /// An http(s) web page the widget links to (visitors open it; the server never does).
    PageUrl,
    /// Hosts the widget may run on (see `origin`).
    DomainList,
    /// Comma-separated ids.
    IdList,
    /// One line of text up to `max` characters.
    Text { max: usize },
    /// One line of text up to `max` characters, with common values offered by their labels
    /// (value, label); any other value is accepted too (a custom model name).
    Suggested { max: usize, options: &'static [(&'static str, &'static str)] },
    /// Free text over several lines up to `max` characters.
    Multiline { max: usize },
    /// An integer in a range.
    Int { min: i64, max: i64 },
    /// A write-only secret.
    Secret,
    /// A duration like `6h` or `1d`, at least a minute; empty means never.
    Interval,
    /// A GraphQL field mapping (`question=title,answer=content.html`).
    FieldMapping,
    /// Where a non-Magento catalog puts its products (`items=search.hits,name=title,…`).
    ProductFields,
    /// Write-only HTTP headers, a JSON object of strings (e.g. `{"Store": "de_de"}`).
    SecretHeaders,
}

impl Kind {
    /// The admin panel's control for the kind (also the admin API's `type`).
    pub fn control(self) -> &'static str {
        match self {
            Kind::Color => "color",
            Kind::Select(_) => "select",
            Kind::Suggested { .. } => "suggested",
            Kind::UpstreamUrl | Kind::UpstreamSocketUrl | Kind::PublicUrl | Kind::PageUrl | Kind::TrelloBoard => "url",
            Kind::DomainList | Kind::IdList => "list",
            Kind::Text { .. } | Kind::Interval | Kind::FieldMapping | Kind::ProductFields => "text",
            Kind::Multiline { .. } => "textarea",
            Kind::Int { .. } => "number",
            Kind::Secret => "password",
            Kind::SecretHeaders => "secret-headers",
        }
    }
}

/// The admin panel's groups, in the product's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    General,
    Model,
    Training,
    Operator,
    Tasks,
    Catalog,
    Privacy,
}

impl Group {
    /// Every group, in the product's order.
    pub const ALL: [Group; 7] =
        [Group::General, Group::Model, Group::Training, Group::Operator, Group::Tasks, Group::Catalog, Group::Privacy];

    /// The group's stable id in the admin API and URLs.
    pub fn id(self) -> &'static str {
        match self {
            Group::General => "general",
            Group::Model => "model",
            Group::Training => "knowledge",
            Group::Operator => "operator",
            Group::Tasks => "tasks",
            Group::Catalog => "catalog",
            Group::Privacy => "privacy",
        }
    }

    /// Display name of the group.
    pub fn label(self) -> &'static str {
        match self {
            Group::General => "General",
            Group::Model => "AI model",
            Group::Training => "Knowledge (training and embeddings)",
            Group::Operator => "Operator (Chatwoot)",
            Group::Tasks => "Tasks (Trello)",
            Group::Catalog => "Products (catalog)",
            Group::Privacy => "Privacy",
        }
    }
}

/// One row of the settings table.
#[derive(Debug, Clone, Copy)]
pub struct SettingDef {
    pub key: &'static str,
    pub kind: Kind,
    /// The effective value when nothing is stored ("" means unset).
    pub default: &'static str,
    pub group: Group,
    /// For secrets: the URL setting whose host the secret is sent to. Changing that host
    /// clears the secret unless it is given again in the same change.
    pub follows: Option<&'static str>,
    pub help: &'static str,
}

impl SettingDef {
    /// Whether the value is write-only and encrypted at rest.
    pub fn secret(&self) -> bool {
        matches!(self.kind, Kind::Secret | Kind::SecretHeaders)
    }
}

/// The models the admin panel offers for `model_type`, with readable labels.
pub const MODELS: &[(&str, &str)] = &[
    ("gpt-4o-mini", "OpenAI GPT-4o mini"),
    ("gpt-4o", "OpenAI GPT-4o"),
    ("gpt-4.1-mini", "OpenAI GPT-4.1 mini"),
    ("gpt-4.1-nano", "OpenAI GPT-4.1 nano"),
    ("gpt-4.1", "OpenAI GPT-4.1"),
    ("gpt-5-mini", "OpenAI GPT-5 mini"),
    ("gpt-5-nano", "OpenAI GPT-5 nano"),
    ("gpt-5", "OpenAI GPT-5"),
    ("o4-mini", "OpenAI o4-mini (reasoning)"),
    ("claude-haiku-4-5", "Anthropic Claude Haiku 4.5"),
    ("claude-sonnet-4-5", "Anthropic Claude Sonnet 4.5"),
];

/// The positions a launcher can take.
pub const POSITIONS: &[&str] = &["bottom-right", "bottom-left", "top-right", "top-left"];

const fn def(key: &'static str, kind: Kind, default: &'static str, group: Group, help: &'static str) -> SettingDef {
    SettingDef { key, kind, default, group, follows: None, help }
}

const fn secret(key: &'static str, group: Group, follows: &'static str, help: &'static str) -> SettingDef {
    SettingDef { key, kind: Kind::Secret, default: "", group, follows: Some(follows), help }
}

const fn secret_headers(key: &'static str, group: Group, follows: &'static str, help: &'static str) -> SettingDef {
    SettingDef { key, kind: Kind::SecretHeaders, default: "", group, follows: Some(follows), help }
}

/// Every client setting, in admin-panel order.
pub const SETTINGS: &[SettingDef] = &[
    def("bot_name", Kind::Text { max: 60 }, "Assistant", Group::General, "Name shown in the chat header."),
    def(
        "greeting",
        Kind::Text { max: 500 },
        "Hi! How can I help you today?",
        Group::General,
        "First message shown when the chat opens.",
    ),
    def(
        "language",
        Kind::Text { max: 16 },
        "en",
        Group::General,
        "Language of the knowledge base, an ISO 639-1 code. Stemming (and stop words where available) for \
         ar, da, de, el, en, es, fi, fr, hu, it, nl, no, pt, ro, ru, sv, ta, tr; any other code (uk, pl, cs, …) \
         is indexed without stemming and matched by character n-grams and typo correction.",
    ),
    def(
        "contact_text",
        Kind::Text { max: 500 },
        "Please contact the shop directly and we will help you.",
        Group::General,
        "Offered when the assistant has no answer and no operator is configured.",
    ),
    def("button_color", Kind::Color, "#000000", Group::General, "Launcher button color."),
    def("bg_color", Kind::Color, "#ffffff", Group::General, "Chat panel background color."),
    def("position", Kind::Select(POSITIONS), "bottom-right", Group::General, "Corner of the launcher."),
    def(
        "allowed_domains",
        Kind::DomainList,
        "",
        Group::General,
        "Hosts the widget and its socket work on; empty accepts no browser origin.",
    ),
    def(
        "socket_url",
        Kind::PublicUrl,
        "",
        Group::General,
        "Public URL of this server as browsers reach it (defaults to --public-url).",
    ),
    def(
        "model_provider",
        Kind::Select(&["openai", "anthropic"]),
        "openai",
        Group::Model,
        "Wire format of the model API: `openai` (OpenAI and every compatible server: Azure OpenAI, Ollama, vLLM, \
         OpenRouter, …) or `anthropic` (Messages API). Changing it clears the API token unless it is given again.",
    ),
    def(
        "model_type",
        Kind::Suggested { max: 100, options: MODELS },
        "gpt-4o-mini",
        Group::Model,
        "Model id of the provider, or a custom model name. Left at the default, Anthropic uses claude-haiku-4-5.",
    ),
    secret("model_token", Group::Model, "model_url", "API token of the model provider."),
    def(
        "model_url",
        Kind::UpstreamUrl,
        "",
        Group::Model,
        "API URL, a base (`http://localhost:11434/v1`) or the full endpoint \
         (`https://api.openai.com/v1/chat/completions`); empty means the provider's own. Azure OpenAI deployment \
         URLs (with `api-version`) are sent the `api-key` header.",
    ),
    def(
        "model_max_tokens",
        Kind::Int { min: 0, max: 100_000 },
        "800",
        Group::Model,
        "Most tokens one model reply may have (0: the provider's own limit).",
    ),
    def(
        "model_max_tokens_field",
        Kind::Select(&["auto", "max_completion_tokens", "max_tokens"]),
        "auto",
        Group::Model,
        "How the reply limit is sent: auto uses max_completion_tokens for OpenAI and Azure, max_tokens elsewhere (Ollama, vLLM, OpenRouter).",
    ),
    def(
        "model_first_token_timeout",
        Kind::Int { min: 1, max: 300 },
        "15",
        Group::Model,
        "Seconds to wait for the model's first token before the built-in answer takes over.",
    ),
    def(
        "model_idle_timeout",
        Kind::Int { min: 1, max: 300 },
        "10",
        Group::Model,
        "Seconds of silence allowed between the model's tokens.",
    ),
    def(
        "model_daily_token_budget",
        Kind::Int { min: 0, max: 1_000_000_000 },
        "500000",
        Group::Model,
        "Model tokens (prompt + completion) per UTC day for this client; past it the built-in answers take over.",
    ),
    def(
        "model_ip_token_cap",
        Kind::Int { min: 0, max: 100_000_000 },
        "100000",
        Group::Model,
        "Model tokens answers to one visitor address may use per UTC day (per server node); past it that address gets the built-in answers.",
    ),
    def(
        "model_session_token_cap",
        Kind::Int { min: 0, max: 100_000_000 },
        "30000",
        Group::Model,
        "Model tokens one visitor session may use; past it that visitor gets the built-in answers.",
    ),
    def(
        "graphql_query",
        Kind::Multiline { max: 20_000 },
        "",
        Group::Training,
        "Raw GraphQL query returning FAQ entries.",
    ),
    def(
        "graphql_url",
        Kind::UpstreamUrl,
        "",
        Group::Training,
        "GraphQL API URL of the training source; empty means none.",
    ),
    def(
        "embedding_url",
        Kind::UpstreamUrl,
        "",
        Group::Training,
        "OpenAI-compatible embeddings API for semantic search (OpenAI, Azure, Ollama, vLLM, text-embeddings-inference…): \
         a base (`http://localhost:11434/v1`) or the full `/embeddings` endpoint. Empty: the server's own model if it \
         was started with `--embedding-model`, else full-text search alone.",
    ),
    def(
        "embedding_model",
        Kind::Text { max: 200 },
        "text-embedding-3-small",
        Group::Training,
        "Model name sent to the embeddings API. Changing it (or the URL) re-embeds the knowledge.",
    ),
    secret("embedding_token", Group::Training, "embedding_url", "API token of the embeddings API."),
    def(
        "chunk_size",
        Kind::Int { min: 1, max: 10_000_000 },
        "100",
        Group::Training,
        "Page size of paged queries (above 1,000 clamped to 1,000); batch size of writes otherwise.",
    ),
    def(
        "train_interval",
        Kind::Interval,
        "",
        Group::Training,
        "Train on a schedule, e.g. 6h or 1d (at least 1m); empty trains only on demand.",
    ),
    secret_headers(
        "graphql_headers",
        Group::Training,
        "graphql_url",
        "Headers sent to the GraphQL source, a JSON object, e.g. {\"Store\": \"de_de\"}.",
    ),
    def(
        "graphql_fields",
        Kind::FieldMapping,
        "",
        Group::Training,
        "Field mapping, e.g. question=title,answer=content.html,id=faq_id; empty finds them.",
    ),
    secret("operator_token", Group::Operator, "operator_url", "Chatwoot access token."),
    def("operator_url", Kind::UpstreamUrl, "", Group::Operator, "Chatwoot URL."),
    def(
        "operator_account_id",
        Kind::Int { min: 1, max: i64::MAX },
        "",
        Group::Operator,
        "Chatwoot account id (optional).",
    ),
    def("operator_inbox_id", Kind::Int { min: 1, max: i64::MAX }, "", Group::Operator, "Chatwoot inbox id (optional)."),
    secret(
        "operator_webhook_secret",
        Group::Operator,
        "operator_url",
        "Secret Chatwoot signs webhooks with (the API inbox's secret); read from Chatwoot with the token when empty.",
    ),
    def(
        "operator_allow_unsigned_webhooks",
        Kind::Select(&["off", "on"]),
        "off",
        Group::Operator,
        "Accept unsigned webhooks: only for Chatwoot older than 4.13, which can't sign them.",
    ),
    secret(
        "operator_bot_token",
        Group::Operator,
        "operator_url",
        "Access token of a Chatwoot agent bot (optional): hand-offs then notify agents as official bot hand-offs.",
    ),
    def(
        "operator_cable",
        Kind::Select(&["off", "on"]),
        "off",
        Group::Operator,
        "Receive operator replies over Chatwoot's ActionCable WebSocket: for a server Chatwoot can't call.",
    ),
    def(
        "operator_cable_url",
        Kind::UpstreamSocketUrl,
        "",
        Group::Operator,
        "Chatwoot's ActionCable URL; empty means the Chatwoot URL's /cable (ws or wss).",
    ),
    def(
        "handoff_after_unanswered",
        Kind::Int { min: 0, max: 10 },
        "2",
        Group::Operator,
        "Hand off after this many \"don't know\" answers in a row; 0 never.",
    ),
    def(
        "handoff_keywords",
        Kind::Text { max: 500 },
        "human, real person, operator, agent, Mensch, Mitarbeiter, humain, conseiller, humano, agente, оператор, людина",
        Group::Operator,
        "Words, comma-separated, that hand a visitor's message to a person.",
    ),
    def(
        "handoff_max_per_session",
        Kind::Int { min: 0, max: 20 },
        "3",
        Group::Operator,
        "Hand-offs one conversation may start.",
    ),
    def("tasks_provider", Kind::Select(&["trello"]), "trello", Group::Tasks, "Task provider."),
    secret("trello_key", Group::Tasks, "trello_api_url", "Trello API key."),
    secret("trello_token", Group::Tasks, "trello_api_url", "Trello API token."),
    def(
        "trello_api_url",
        Kind::UpstreamUrl,
        "https://api.trello.com/1",
        Group::Tasks,
        "Trello API base URL (advanced: a proxy may stand in).",
    ),
    def(
        "trello_board_id",
        Kind::TrelloBoard,
        "",
        Group::Tasks,
        "Trello board: paste the board's URL (https://trello.com/b/<boardId>/<slug>), its short link or its id.",
    ),
    def("trello_list_id", Kind::Text { max: 64 }, "", Group::Tasks, "Trello list id new cards go to."),
    def("trello_label_ids", Kind::IdList, "", Group::Tasks, "Label ids added to every card."),
    def(
        "tasks_require_confirmation",
        Kind::Select(&["on", "off"]),
        "on",
        Group::Tasks,
        "Ask the visitor before creating a task; off creates it at once.",
    ),
    def(
        "tasks_max_per_session_day",
        Kind::Int { min: 0, max: 50 },
        "3",
        Group::Tasks,
        "Tasks one conversation may create a day; 0 turns tasks off.",
    ),
    def(
        "product_graphql_url",
        Kind::UpstreamUrl,
        "",
        Group::Catalog,
        "GraphQL URL of the product catalog; empty means the training source's graphql_url.",
    ),
    def(
        "product_query",
        Kind::Multiline { max: 20_000 },
        "",
        Group::Catalog,
        "GraphQL product search with $search and $pageSize; empty means Magento 2's products query.",
    ),
    def(
        "store_url",
        Kind::PublicUrl,
        "",
        Group::Catalog,
        "The shop's base URL, for product links the catalog gives as paths (url_key).",
    ),
    def(
        "product_fields",
        Kind::ProductFields,
        "",
        Group::Catalog,
        "For a non-Magento schema: items=…,name=…,url=…,price=…,currency=…,image=…,stock=…; empty reads Magento's.",
    ),
    secret_headers(
        "product_headers",
        Group::Catalog,
        "product_graphql_url",
        "Headers sent to the catalog, a JSON object, e.g. {\"Store\": \"de_de\"}.",
    ),
    def(
        "product_max_results",
        Kind::Int { min: 1, max: 12 },
        "4",
        Group::Catalog,
        "Product cards one answer shows at most.",
    ),
    def(
        "privacy_url",
        Kind::PageUrl,
        "",
        Group::Privacy,
        "The shop's privacy page: the widget shows a line linking to it above the conversation; empty shows none.",
    ),
    def(
        "retention_days",
        Kind::Int { min: 0, max: 3650 },
        "0",
        Group::Privacy,
        "Delete conversations idle this many days, as an erasure request does (their messages, the visitor's \
         name and email, hand-off links, queued deliveries and task records; cards already in Trello and \
         conversations in Chatwoot stay there, see docs/privacy.md); 0 keeps them. Checked hourly.",
    ),
];

/// Looks a setting up by key.
pub fn find(key: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.key == key)
}

/// Secrets bound to the URL setting `url_key`.
pub fn secrets_following(url_key: &str) -> impl Iterator<Item = &'static SettingDef> + '_ {
    SETTINGS.iter().filter(move |d| d.follows == Some(url_key))
}

/// The settings table as Markdown, as `docs/settings.md` carries it.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | group | type | default | secret | meaning |\n|---|---|---|---|---|---|\n");
    for d in SETTINGS {
        let kind = match d.kind {
            Kind::Color => "color (`#rgb` / `#rrggbb`)".to_string(),
            Kind::Select(options) => {
                format!("select: {}", options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", "))
            }
            Kind::UpstreamUrl => "URL the server calls (http/https)".to_string(),
            Kind::UpstreamSocketUrl => "WebSocket URL the server connects to (ws/wss)".to_string(),
            Kind::TrelloBoard => "Trello board id, short link or board URL".to_string(),
            Kind::PublicUrl => "public URL (http/https/ws/wss)".to_string(),
            Kind::PageUrl => "web page URL (http/https)".to_string(),
            Kind::DomainList => "list of hosts".to_string(),
            Kind::IdList => "list of ids".to_string(),
            Kind::Text { max } => format!("text, ≤ {max} chars"),
            Kind::Suggested { max, options } => format!(
                "text, ≤ {max} chars; offered: {}",
                options.iter().map(|(v, label)| format!("`{v}` ({label})")).collect::<Vec<_>>().join(", ")
            ),
            Kind::Multiline { max } => format!("multi-line text, ≤ {max} chars"),
            Kind::Int { min, max } if max == i64::MAX => format!("integer ≥ {min}"),
            Kind::Int { min, max } => format!("integer {min}–{max}"),
            Kind::Secret => "password (write-only)".to_string(),
            Kind::SecretHeaders => "headers, JSON object (write-only)".to_string(),
            Kind::FieldMapping => "field mapping `key=path,…`".to_string(),
            Kind::ProductFields => "product field mapping `key=path,…`".to_string(),
            Kind::Interval => "duration (`30m`, `6h`, `1d`)".to_string(),
        };
        let default = if d.default.is_empty() { String::new() } else { format!("`{}`", d.default) };
        let secret = match d.follows {
            Some(url) => format!("yes (cleared when `{url}` changes host)"),
            None => String::new(),
        };
        out.push_str(&format!("| `{}` | {} | {kind} | {default} | {secret} | {} |\n", d.key, d.group.label(), d.help));
    }
    out
}

#[cfg(test)]
mod tests {
    /// The `language` help lists exactly the codes retrieval stems.
    #[test]
    fn language_help_lists_the_stemmed_languages() {
        let help = super::SETTINGS.iter().find(|d| d.key == "language").unwrap().help;
        let listed = help.split("Stemming").nth(1).unwrap().split(';').next().unwrap();
        let codes: Vec<&str> = listed
            .split([',', ' ', ')', '('])
            .filter(|w| w.len() == 2 && w.chars().all(|c| c.is_ascii_lowercase()))
            .collect();
        assert_eq!(codes, crate::knowledge::STEMMED_LANGUAGES);
    }

    /// `docs/settings.md` must carry exactly this table; `UPDATE_DOCS=1 cargo test` rewrites it.
    #[test]
    fn docs_match_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/settings.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- settings-table:start -->\n", "<!-- settings-table:end -->");
        let (before, rest) = doc.split_once(start).expect("start marker");
        let (current, after) = rest.split_once(end).expect("end marker");
        let table = super::markdown_table();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, format!("{before}{start}{table}{end}{after}")).unwrap();
        } else {
            assert_eq!(
                current, table,
                "docs/settings.md is out of date: run UPDATE_DOCS=1 cargo test --lib docs_match"
            );
        }
    }
}
