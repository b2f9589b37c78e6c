//! The one HTTP client for requests the server makes on a client's behalf (GraphQL sources
//! now; models, Chatwoot and Trello later). Host names are resolved through the upstream
//! policy, so a name that resolves to a link-local or cloud-metadata address (or, with
//! `--deny-private-upstreams`, a private one) is refused at request time, not only when the
//! URL was configured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::clients::UpstreamPolicy;

struct GuardedResolver {
    policy: UpstreamPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let allowed = resolve(policy, name.as_str(), 0).await?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `host` the upstream policy allows; an error naming the host when none is.
pub async fn resolve(policy: UpstreamPolicy, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| policy.check_ip(a.ip()).is_ok()).collect();
    if allowed.is_empty() {
        let why = match resolved.first().map(|a| policy.check_ip(a.ip())) {
            Some(Err(e)) => format!("{host} {e}"),
            _ => format!("{host} did not resolve"),
        };
        return Err(std::io::Error::other(why));
    }
    Ok(allowed)
}

/// A byte stream a WebSocket runs over: plain TCP or TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// An outbound WebSocket (`ws://` or `wss://`, an http(s) URL counts as its ws(s) twin), with
/// the same guards as HTTP: the host resolved through the upstream policy, TLS checked against
/// the platform's roots, and `timeout` for connecting and the handshake together.
pub async fn websocket(
    policy: UpstreamPolicy,
    url: &url::Url,
    timeout: Duration,
) -> Result<tokio_tungstenite::WebSocketStream<Box<dyn Io>>, String> {
    let tls = match url.scheme() {
        "ws" | "http" => false,
        "wss" | "https" => true,
        other => return Err(format!("{other}: not a WebSocket URL")),
    };
    let host = url.host_str().ok_or("the URL has no host")?.to_string();
    let port = url.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
    let mut target = url.clone();
    let _ = target.set_scheme(if tls { "wss" } else { "ws" });
    let connect = async {
        let addrs = resolve(policy, &host, port).await.map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(&addrs[..]).await.map_err(|e| format!("{host}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = if tls {
            use rustls_platform_verifier::ConfigVerifierExt;
            install_crypto_provider();
            let config = rustls::ClientConfig::with_platform_verifier().map_err(|e| format!("TLS: {e}"))?;
            let name = rustls::pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| format!("{host}: {e}"))?
                .to_owned();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            Box::new(connector.connect(name, tcp).await.map_err(|e| format!("TLS with {host}: {e}"))?)
        } else {
            Box::new(tcp)
        };
        let (socket, _) = tokio_tungstenite::client_async(target.as_str(), stream)
            .await
            .map_err(|e| format!("WebSocket handshake with {host}: {e}"))?;
        Ok(socket)
    };
    tokio::time::timeout(timeout, connect).await.map_err(|_| format!("{host}: no connection within {timeout:?}"))?
}

/// A request error as text without its URL, which may carry query-string credentials.
pub fn error_text(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url (") {
        e.truncate(i);
    }
    e
}

/// A transport error as the whole chain of causes ("error sending request: client error
/// (Connect): tcp connect error: Connection refused (os error 111)"), without the URL.
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut reason = error_text(e);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.contains(&text) {
            reason = format!("{reason}: {text}");
        }
        source = s.source();
    }
    reason
}

/// `Retry-After` in seconds, at most `cap` (a date is not a wait we honour).
pub fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let secs = headers.get("retry-after")?.to_str().ok()?.trim().parse::<f64>().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(cap.as_secs_f64())))
}

/// The start of an upstream's answer for an error message: at most `max` characters, control
/// characters dropped, `(empty body)` for nothing.
pub fn body_snippet(body: &[u8], max: usize) -> String {
    let raw: String = String::from_utf8_lossy(body).chars().filter(|c| !c.is_control()).take(max).collect();
    if raw.trim().is_empty() { "(empty body)".into() } else { raw.trim().to_string() }
}

/// Installs the process-wide TLS crypto provider (ring) once; every reqwest client needs it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the outbound client: rustls with the platform's roots, the guarded resolver,
/// redirects followed only within the same origin (see [`same_origin_redirects`]), and a total
/// timeout per request.
pub fn client(policy: UpstreamPolicy, timeout: Duration) -> reqwest::Client {
    builder(policy)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("valid client configuration")
}

/// The same client for streamed responses: only connecting is timed here; the caller times
/// each read (a model may think for a while before its first token, then stream for long).
pub fn streaming_client(policy: UpstreamPolicy, connect: Duration) -> reqwest::Client {
    builder(policy).connect_timeout(connect).build().expect("valid client configuration")
}

/// Follows a redirect only to the same scheme, host and port, at most 5 times. Our requests
/// carry credentials in headers reqwest does not know are secret (`api_access_token`,
/// `api-key`, `x-api-key`, GraphQL headers): a redirect to another host would hand them over,
/// so the 3xx is returned to the caller instead.
fn same_origin_redirects(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let first = attempt
        .previous()
        .first()
        .map(|u| (u.scheme().to_string(), u.host_str().map(str::to_string), u.port_or_known_default()));
    let next = (
        attempt.url().scheme().to_string(),
        attempt.url().host_str().map(str::to_string),
        attempt.url().port_or_known_default(),
    );
    if attempt.previous().len() > 5 {
        attempt.error("too many redirects")
    } else if first.is_some_and(|f| f != next) {
        attempt.stop()
    } else {
        attempt.follow()
    }
}

fn builder(policy: UpstreamPolicy) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        // HTTP(S)_PROXY / ALL_PROXY would move the name lookup to the proxy, out of the
        // address policy's reach (metadata and private addresses): never honoured.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(same_origin_redirects))
        .user_agent(concat!("aia-chat/", env!("CARGO_PKG_VERSION")))
}
