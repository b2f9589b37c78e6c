//! `aia-chat ask`: a smoke test that talks to a server exactly as the widget does. The reply
//! goes to stdout, the session token to stderr, refusals and timeouts to a one-line reason and
//! a non-zero exit. The output format is fixed (snapshot-tested): scripts read it.

use std::process::ExitCode;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::clients::socket_url;

/// Arguments of `aia-chat ask`.
#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The server's base URL.
    #[arg(long, env = "AIA_URL", default_value = "http://127.0.0.1:3015")]
    url: url::Url,
    /// The client uid.
    #[arg(long, env = "AIA_CLIENT", default_value = "demo")]
    client: String,
    /// Origin header to send [default: the origin of --url].
    #[arg(long, env = "AIA_ORIGIN")]
    origin: Option<String>,
    /// Resume this session (the token printed on stderr by an earlier ask).
    #[arg(long, env = "AIA_SESSION", hide_env_values = true)]
    session: Option<String>,
    /// After the reply, stay connected this many seconds and print every further message.
    #[arg(long, env = "AIA_LISTEN", value_name = "SECS")]
    listen: Option<u64>,
    /// Give up after this many seconds without a reply.
    #[arg(long, env = "AIA_TIMEOUT", value_name = "SECS", default_value_t = 15)]
    timeout: u64,
    /// The question.
    question: String,
}

/// How often a listening `ask` pings (the server closes sockets silent for 90 s).
const PING_EVERY: Duration = Duration::from_secs(25);

/// Exit codes: 0 answered, 2 refused (unknown client, forbidden origin, rate limited…),
/// 3 timed out, 1 anything else (no server, protocol error).
enum Failure {
    Refused(String),
    Timeout(String),
    Other(String),
}

/// Formats one message as `ask` prints it: one line, with a tag for everything that is not
/// a plain assistant answer.
pub fn format_message(message: &Value) -> String {
    let text = message["text"].as_str().unwrap_or("").replace("\r\n", "\n").replace('\n', " ");
    match message["role"].as_str().unwrap_or("") {
        "assistant" => text,
        "operator" => match message["author"].as_str() {
            Some(name) => format!("[operator {name}] {text}"),
            None => format!("[operator] {text}"),
        },
        "visitor" => format!("[you] {text}"),
        other => format!("[{other}] {text}"),
    }
}

/// Runs `ask` and returns the process exit code.
pub async fn run(args: AskArgs) -> ExitCode {
    match ask(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(why)) => {
            eprintln!("refused: {why}");
            ExitCode::from(2)
        }
        Err(Failure::Timeout(why)) => {
            eprintln!("timeout: {why}");
            ExitCode::from(3)
        }
        Err(Failure::Other(why)) => {
            eprintln!("error: {why}");
            ExitCode::from(1)
        }
    }
}

fn refusal(body: Option<&[u8]>, status: u16) -> Failure {
    let error = body.and_then(|b| serde_json::from_slice::<Value>(b).ok()).map(|v| v["error"].clone());
    match error {
        Some(e) if e["code"].is_string() => {
            Failure::Refused(format!("{}: {}", e["code"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
        }
        _ => Failure::Refused(format!("HTTP {status}")),
    }
}

async fn ask(args: AskArgs) -> Result<(), Failure> {
    let ws_url = socket_url(args.url.as_str())
        .ok_or_else(|| Failure::Other(format!("{} is not an http(s) or ws(s) URL", args.url)))?;
    let origin = args.origin.clone().unwrap_or_else(|| args.url.origin().ascii_serialization());
    let mut request = format!(
        "{ws_url}?clientUid={}",
        url::form_urlencoded::byte_serialize(args.client.as_bytes()).collect::<String>()
    )
    .into_client_request()
    .map_err(|e| Failure::Other(e.to_string()))?;
    request.headers_mut().insert("origin", origin.parse().map_err(|_| Failure::Other("invalid --origin".into()))?);
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let connect = tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(request)).await;
    let (mut ws, _) = match connect {
        Err(_) => return Err(Failure::Timeout("connecting took too long".into())),
        Ok(Err(WsError::Http(response))) => {
            return Err(refusal(response.body().as_deref(), response.status().as_u16()));
        }
        Ok(Err(e)) => return Err(Failure::Other(format!("cannot connect to {ws_url}: {e}"))),
        Ok(Ok(pair)) => pair,
    };
    let mut hello = json!({"type": "hello", "v": 1});
    if let Some(s) = &args.session {
        hello["session"] = json!(s);
    }
    let id = format!("ask-{:x}", rand::random::<u64>());
    let mut frames = vec![hello, json!({"type": "message", "id": id, "text": args.question})];
    for frame in frames.drain(..) {
        ws.send(Message::Text(frame.to_string().into())).await.map_err(|e| Failure::Other(e.to_string()))?;
    }
    let mut asked_seq: Option<i64> = None;
    let mut answered = false;
    let mut listen_until: Option<Instant> = None;
    let mut next_ping = Instant::now() + PING_EVERY;
    loop {
        let until = listen_until.unwrap_or(deadline);
        let next = match tokio::time::timeout_at(until.min(next_ping), ws.next()).await {
            Err(_) if Instant::now() < until => {
                // Idle sockets are closed after 90 s: keep a long --listen alive.
                next_ping = Instant::now() + PING_EVERY;
                let ping = json!({"type": "ping"}).to_string();
                ws.send(Message::Text(ping.into())).await.map_err(|e| Failure::Other(e.to_string()))?;
                continue;
            }
            Err(_) if listen_until.is_some() => return Ok(()),
            Err(_) => return Err(Failure::Timeout(format!("no reply within {} s", args.timeout))),
            Ok(None) | Ok(Some(Err(_))) if answered => return Ok(()),
            Ok(None) | Ok(Some(Err(_))) => return Err(Failure::Other("the server closed the connection".into())),
            Ok(Some(Ok(m))) => m,
        };
        let Message::Text(text) = next else { continue };
        let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
        match frame["type"].as_str().unwrap_or("") {
            "welcome" => eprintln!("session: {}", frame["session"].as_str().unwrap_or("")),
            "ack" if frame["id"] == json!(id) => asked_seq = frame["seq"].as_i64(),
            "error" => {
                let why =
                    format!("{}: {}", frame["code"].as_str().unwrap_or(""), frame["message"].as_str().unwrap_or(""));
                if answered {
                    println!("[error] {why}");
                } else {
                    return Err(Failure::Refused(why));
                }
            }
            "message" => {
                let message = &frame["message"];
                if !answered {
                    if asked_seq.is_some() && message["replyTo"].as_i64() == asked_seq {
                        println!("{}", format_message(message));
                        answered = true;
                        match args.listen {
                            Some(secs) => listen_until = Some(Instant::now() + Duration::from_secs(secs)),
                            None => return Ok(()),
                        }
                    }
                } else if message["clientId"] != json!(id) {
                    println!("{}", format_message(message));
                }
            }
            "reconnect" if answered => return Ok(()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_format_is_stable() {
        let lines: Vec<String> = [
            json!({"role": "assistant", "text": "Two to four days."}),
            json!({"role": "assistant", "text": "line one\nline two"}),
            json!({"role": "operator", "author": "Sam", "text": "Hello, Sam here."}),
            json!({"role": "visitor", "text": "hi from another tab"}),
            json!({"role": "system", "text": "An operator joined."}),
        ]
        .iter()
        .map(format_message)
        .collect();
        insta::assert_snapshot!(lines.join("\n"), @r"
        Two to four days.
        line one line two
        [operator Sam] Hello, Sam here.
        [you] hi from another tab
        [system] An operator joined.
        ");
    }
}
