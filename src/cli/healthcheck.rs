//! `aia-chat healthcheck`: asks a running server whether it is ready (`GET /readyz`), for
//! container health checks and service managers, where the image has no curl. Exit 0 when
//! ready; 1 with the reason (draining, database unavailable, no answer) otherwise.

use std::process::ExitCode;
use std::time::Duration;

use crate::clients::UpstreamPolicy;

/// Arguments of `aia-chat healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// The server's base URL (its `/readyz` is asked).
    #[arg(long, env = "AIA_URL", default_value = "http://127.0.0.1:3015")]
    url: url::Url,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
}

/// Asks `/readyz` once and prints what it said.
pub async fn run(args: HealthcheckArgs) -> ExitCode {
    let url = format!("{}/readyz", args.url.as_str().trim_end_matches('/'));
    let http = crate::outbound::client(UpstreamPolicy::default(), Duration::from_secs(args.timeout.max(1)));
    match http.get(&url).send().await {
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            let said = body.trim().chars().take(200).collect::<String>();
            if status.is_success() {
                println!("{said}");
                ExitCode::SUCCESS
            } else {
                eprintln!("not ready: HTTP {} {said}", status.as_u16());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let why = if e.is_timeout() { "no answer in time".to_string() } else { crate::outbound::error_chain(&e) };
            eprintln!("not ready: {url}: {why}");
            ExitCode::FAILURE
        }
    }
}
