//! Server settings, layered: built-in defaults, then an optional TOML file (`--config`), then
//! environment variables (`AIA_…`) and flags, which win. Nothing here knows HTTP or SQL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ipnet::IpNet;
use serde::Deserialize;

use crate::clients::UpstreamPolicy;
use crate::realtime::LimitSettings;

/// Options shared by every command that opens the database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Directory for the SQLite database and the secret key.
    #[arg(long, env = "AIA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL (postgres://… for several nodes; default: SQLite in the data directory).
    #[arg(long, env = "AIA_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// TOML file with any of these options (flags and environment win).
    #[arg(long, env = "AIA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also refuse private and loopback upstream URLs (multi-tenant hosting).
    #[arg(long, env = "AIA_DENY_PRIVATE_UPSTREAMS")]
    pub deny_private_upstreams: bool,
}

/// Options of `aia-chat serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on [default: 0.0.0.0:3015].
    #[arg(long, env = "AIA_ADDR", value_name = "ADDR")]
    pub addr: Option<SocketAddr>,
    /// Public base URL of this server as browsers reach it (for connect codes and socket URLs).
    #[arg(long, env = "AIA_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<url::Url>,
    /// Don't create the demo client on first start (production).
    #[arg(long, env = "AIA_NO_DEMO")]
    pub no_demo: bool,
    /// How long to let writes finish on SIGTERM, e.g. 10s or 500ms [default: 10s].
    #[arg(long, env = "AIA_SHUTDOWN_GRACE", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Redis that links this node to the others (redis://…): with --database-url postgres://…
    /// it makes the node one of several identical nodes behind a load balancer.
    #[arg(long, env = "AIA_REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// How often the node looks in the database for changed clients, e.g. 500ms or 10s
    /// [default: 500ms]. With Redis, changes made through any node reach the others at once
    /// and this is the safety net (and how `aia-chat client set` from a shell arrives).
    #[arg(long, env = "AIA_RELOAD_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub reload_interval: Option<Duration>,
    /// Proxies whose X-Forwarded-For is believed (CIDR list): per-address limits then use the
    /// visitor's address the load balancer reports.
    #[arg(long, env = "AIA_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',', num_args = 1..)]
    pub trusted_proxies: Vec<IpNet>,
    /// Visitor messages per session per minute [default: 60, burst 10].
    #[arg(long, env = "AIA_MESSAGES_PER_MINUTE")]
    pub messages_per_minute: Option<u32>,
    /// Open sockets per IP [default: 64].
    #[arg(long, env = "AIA_SOCKETS_PER_IP")]
    pub sockets_per_ip: Option<u32>,
    /// New sessions per IP per minute [default: 30].
    #[arg(long, env = "AIA_SESSIONS_PER_MINUTE")]
    pub sessions_per_minute: Option<u32>,
    /// Read-only admin token for admin API reads such as `/api/tasks/lists` (sent as
    /// `Authorization: Bearer …`); without it those endpoints are closed.
    #[arg(long, env = "AIA_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The first admin's password, used once: on a start that finds no admin account. Without
    /// it a generated one is written to `DATA_DIR/initial-admin-password` (mode 0600).
    #[arg(long, env = "AIA_ADMIN_PASSWORD", value_name = "PASSWORD", hide = true, hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Also log the text of every visitor message (off: message texts are personal data and
    /// never reach the logs otherwise).
    #[arg(long, env = "AIA_LOG_MESSAGES")]
    pub log_messages: bool,
    /// Where Prometheus scrapes metrics (`GET /metrics`), or `off` [default: 127.0.0.1:9315].
    /// Keep it off the public port and network: it names clients and counts their traffic.
    #[arg(long, env = "AIA_METRICS_ADDR", value_name = "ADDR|off", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<MetricsAddr>,
    /// Log lines as `pretty` text for people or `json` (one object per line) for collectors.
    #[arg(long, env = "AIA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// A sentence-embedding model directory (BERT family as sentence-transformers saves it:
    /// `config.json`, `tokenizer.json`, `model.safetensors`, `1_Pooling/`), run in-process for
    /// every client without an `embedding_url`: retrieval becomes hybrid (full-text + vectors).
    #[arg(long, env = "AIA_EMBEDDING_MODEL", value_name = "DIR")]
    pub embedding_model: Option<PathBuf>,
}

/// Where metrics are served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsAddr {
    /// Not at all.
    Off,
    /// 127.0.0.1:9315, when free: a second node on the same host logs a warning and goes on
    /// without, rather than refusing to start over an address nobody asked for.
    #[default]
    Default,
    /// Exactly here (a start fails when it is taken).
    At(SocketAddr),
}

impl MetricsAddr {
    /// The documented default address.
    pub const DEFAULT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9315);
}

/// Parses `--metrics-addr`: an address or `off`.
pub fn parse_metrics_addr(s: &str) -> Result<MetricsAddr, String> {
    match s.trim() {
        "off" | "none" | "" => Ok(MetricsAddr::Off),
        addr => addr
            .parse()
            .map(MetricsAddr::At)
            .map_err(|_| format!("'{addr}' is not an address like 127.0.0.1:9315, or off")),
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable text, colored on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

/// The TOML file: the same options, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<url::Url>,
    no_demo: Option<bool>,
    shutdown_grace: Option<String>,
    trusted_proxies: Option<Vec<IpNet>>,
    redis_url: Option<String>,
    deny_private_upstreams: Option<bool>,
    messages_per_minute: Option<u32>,
    sockets_per_ip: Option<u32>,
    sessions_per_minute: Option<u32>,
    embedding_model: Option<PathBuf>,
    metrics_addr: Option<String>,
}

fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// Parses `10s`, `500ms`, `2m`, `6h`, `1d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| format!("'{s}' is not a duration like 10s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("'{s}': unknown unit (use ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("'{s}' is too long a duration"))
}

/// Where the store lives and how upstream URLs are policed: what `serve` and the CLI share.
#[derive(Clone)]
pub struct StoreSettings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub upstream: UpstreamPolicy,
    /// `AIA_SECRET_KEY`, if given (never printed).
    pub secret_key: Option<String>,
}

impl StoreSettings {
    /// Whether the database is PostgreSQL, which several nodes (and their leases) may share;
    /// SQLite is one server's own.
    pub fn shared(&self) -> bool {
        self.database_url.as_deref().is_some_and(|u| u.starts_with("postgres"))
    }
}

/// The read-only admin token: compared in constant time, never printed.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token of at least 16 characters (a short one is too easy to guess).
    pub fn new(token: &str) -> Result<AdminToken, String> {
        let token = token.trim();
        if token.chars().count() < 16 {
            return Err("the admin token (AIA_ADMIN_TOKEN) must be at least 16 characters".into());
        }
        Ok(AdminToken(token.to_string()))
    }

    /// Whether `given` is the token (the time taken doesn't depend on where they differ).
    pub fn matches(&self, given: &str) -> bool {
        crate::ids::same_secret(&self.0, given)
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("data_dir", &self.data_dir)
            .field("database", &if self.database_url.is_some() { "url (redacted)" } else { "sqlite in data dir" })
            .field("upstream", &self.upstream)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreSettings,
    pub addr: SocketAddr,
    pub public_url: Option<url::Url>,
    pub demo: bool,
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// Redis linking this node to the others (never printed: it may carry a password).
    pub redis_url: Option<SecretUrl>,
    pub limits: LimitSettings,
    /// The read-only admin token (`None`: admin reads are closed).
    pub admin_token: Option<AdminToken>,
    /// How often the server checks the store for changed clients.
    pub reload_interval: Duration,
    /// How often the server looks for clients whose scheduled training is due.
    pub schedule_interval: Duration,
    /// How often conversations past their client's `retention_days` are deleted.
    pub retention_interval: Duration,
    /// The in-process sentence-embedding model's directory, if any.
    pub embedding_model: Option<PathBuf>,
    /// `AIA_ADMIN_PASSWORD`, for the first admin account.
    pub admin_password: Option<Password>,
    /// Whether visitor message texts are logged (`--log-messages`).
    pub log_messages: bool,
    /// Where Prometheus metrics are served.
    pub metrics_addr: MetricsAddr,
    /// How long a connection may take to send a complete request head (from its opening or
    /// its previous answer) before it is closed: slow-loris clients hold nothing for long.
    /// Not a flag (10 s); tests shorten it.
    pub head_timeout: Duration,
    /// How long a request body may take to arrive in full after its head before the request
    /// is answered 408 and the connection closed. Not a flag (30 s); tests shorten it.
    pub body_timeout: Duration,
}

/// A URL that may carry a password (Redis): never printed.
#[derive(Clone)]
pub struct SecretUrl(pub String);

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretUrl([redacted])")
    }
}

/// A password from the environment: never printed.
#[derive(Clone)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Settings {
    /// Tells the log redactor every secret the server was started with.
    pub fn remember_secrets(&self) {
        let store = &self.store;
        for url in [store.database_url.as_deref(), self.redis_url.as_ref().map(|u| u.0.as_str())].into_iter().flatten()
        {
            crate::redact::remember_url_password(url);
        }
        for secret in [
            store.secret_key.as_deref(),
            self.admin_token.as_ref().map(|t| t.0.as_str()),
            self.admin_password.as_ref().map(|p| p.0.as_str()),
        ]
        .into_iter()
        .flatten()
        {
            crate::redact::remember(secret);
        }
    }
}

impl StoreArgs {
    fn resolve(&self, file: &FileConfig) -> StoreSettings {
        StoreSettings {
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("./aia-data")),
            database_url: self.database_url.clone().or_else(|| file.database_url.clone()),
            upstream: UpstreamPolicy {
                deny_private: self.deny_private_upstreams || file.deny_private_upstreams.unwrap_or(false),
            },
            secret_key: std::env::var("AIA_SECRET_KEY").ok().filter(|k| !k.trim().is_empty()),
        }
    }

    /// Resolves the store settings for CLI commands.
    pub fn settings(&self) -> anyhow::Result<StoreSettings> {
        Ok(self.resolve(&read_file(self.config.as_deref())?))
    }
}

impl ServeArgs {
    /// Resolves flags, environment and the TOML file into settings.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let file = read_file(self.store.config.as_deref())?;
        let defaults = LimitSettings::default();
        let shutdown_grace = match (self.shutdown_grace, &file.shutdown_grace) {
            (Some(d), _) => d,
            (None, Some(text)) => parse_duration(text).map_err(anyhow::Error::msg)?,
            (None, None) => Duration::from_secs(10),
        };
        Ok(Settings {
            store: self.store.resolve(&file),
            addr: self.addr.or(file.addr).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 3015))),
            public_url: self.public_url.clone().or(file.public_url),
            demo: !(self.no_demo || file.no_demo.unwrap_or(false)),
            shutdown_grace,
            trusted_proxies: if self.trusted_proxies.is_empty() {
                file.trusted_proxies.unwrap_or_default()
            } else {
                self.trusted_proxies.clone()
            },
            redis_url: self.redis_url.clone().or(file.redis_url).filter(|u| !u.trim().is_empty()).map(SecretUrl),
            limits: LimitSettings {
                messages_per_minute: self
                    .messages_per_minute
                    .or(file.messages_per_minute)
                    .unwrap_or(defaults.messages_per_minute),
                message_burst: defaults.message_burst,
                sockets_per_ip: self.sockets_per_ip.or(file.sockets_per_ip).unwrap_or(defaults.sockets_per_ip),
                sessions_per_minute: self
                    .sessions_per_minute
                    .or(file.sessions_per_minute)
                    .unwrap_or(defaults.sessions_per_minute),
            },
            admin_token: match self.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                Some(t) => Some(AdminToken::new(t).map_err(anyhow::Error::msg)?),
                None => None,
            },
            reload_interval: self.reload_interval.unwrap_or(Duration::from_millis(500)).max(Duration::from_millis(50)),
            schedule_interval: Duration::from_secs(30),
            retention_interval: Duration::from_secs(3600),
            embedding_model: self.embedding_model.clone().or(file.embedding_model),
            admin_password: self.admin_password.clone().filter(|p| !p.is_empty()).map(Password),
            log_messages: self.log_messages,
            metrics_addr: match (self.metrics_addr, &file.metrics_addr) {
                (Some(m), _) => m,
                (None, Some(text)) => parse_metrics_addr(text).map_err(anyhow::Error::msg)?,
                (None, None) => MetricsAddr::Default,
            },
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        // Found by fuzzing the settings validators: this used to panic.
        assert_eq!(
            parse_duration(&"6".repeat(400)).unwrap_err(),
            format!("'{}' is too long a duration", "6".repeat(400))
        );
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aia.toml");
        std::fs::write(
            &path,
            "addr = \"127.0.0.1:4000\"\nno_demo = true\nshutdown_grace = \"2s\"\nsockets_per_ip = 5\n",
        )
        .unwrap();
        let mut args =
            ServeArgs { store: StoreArgs { config: Some(path), ..Default::default() }, ..Default::default() };
        let s = args.settings().unwrap();
        assert_eq!(s.addr.port(), 4000);
        assert!(!s.demo);
        assert_eq!(s.shutdown_grace, Duration::from_secs(2));
        assert_eq!(s.limits.sockets_per_ip, 5);
        args.addr = Some("127.0.0.1:5000".parse().unwrap());
        assert_eq!(args.settings().unwrap().addr.port(), 5000);
    }
}
