//! The Chatwoot check: the hand-over to people as the relay would find it (`relay::connect`):
//! the credentials, the account, an API-channel inbox, a webhook secret Chatwoot's calls can
//! be verified with, and whether the inbox's webhook URL points at this server — without
//! remembering anything or writing a setting.

use serde_json::json;

use super::{Outcome, Subject, Toolkit, are_empty, failed, passed, scrub};
use crate::tasks::detect::excerpt;

/// The hand-over to people: the Chatwoot account and inbox as the relay would find them
/// (`relay::connect`), without remembering anything or writing a setting.
pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>) -> Outcome {
    use crate::operator::chatwoot::{API_CHANNEL, Chatwoot, ChatwootConfig, ChatwootError};
    let s = client.settings;
    let uid = client.uid;
    let base_url = &kit.base_url;
    let settings_place = "Operator (Chatwoot) settings";
    let missing: Vec<&str> = [
        ("operator_url", s.get("operator_url").is_empty()),
        ("operator_token", !s.is_set("operator_token")),
        ("operator_inbox_id", s.get("operator_inbox_id").is_empty()),
    ]
    .into_iter()
    .filter_map(|(key, empty)| empty.then_some(key))
    .collect();
    if !missing.is_empty() {
        let nothing = missing.len() == 3;
        let o = failed(
            "The hand-over to people is not set up.",
            settings_place,
            are_empty(&missing, ", "),
            "Set operator_url (Chatwoot's address), operator_token (an administrator's access token: Profile \
             settings → Access token) and operator_inbox_id (an API-channel inbox: Settings → Inboxes), then save \
             and test again.",
        );
        return if nothing { o.unconfigured() } else { o };
    }
    // The error is the setting that cannot be read, and why.
    let secret = |key: &'static str| match s.secret(kit.keys, uid, key) {
        Some(Ok(v)) if !v.trim().is_empty() => Ok(Some(v)),
        Some(Err(e)) => Err((key, e.to_string())),
        _ => Ok(None),
    };
    let url = s.get("operator_url");
    let base = match url::Url::parse(url) {
        Ok(base) => base,
        Err(e) => {
            return failed(
                "The Chatwoot URL cannot be used.",
                "operator_url",
                format!("operator_url: {e}"),
                "Set operator_url to Chatwoot's address, e.g. https://chat.example.com.",
            );
        }
    };
    let (admin_token, bot_token, webhook_secret) =
        match (secret("operator_token"), secret("operator_bot_token"), secret("operator_webhook_secret")) {
            (Ok(Some(a)), Ok(b), Ok(w)) => (a, b, w),
            (Ok(None), ..) => {
                return failed(
                    "The hand-over to people is not set up.",
                    settings_place,
                    "operator_token is empty",
                    "Set operator_token to an administrator's access token (Profile settings → Access token).",
                );
            }
            (Err((key, why)), ..) | (_, Err((key, why)), _) | (.., Err((key, why))) => {
                return failed(
                    "A Chatwoot secret cannot be read.",
                    key,
                    format!("{key}: {why}"),
                    format!("Set {key} again."),
                );
            }
        };
    let Ok(inbox_id) = s.get("operator_inbox_id").parse::<i64>() else {
        return failed(
            "The inbox id cannot be used.",
            "operator_inbox_id",
            "it is not a number",
            "Set operator_inbox_id.",
        );
    };
    let secrets: Vec<&str> =
        [Some(admin_token.as_str()), bot_token.as_deref(), webhook_secret.as_deref()].into_iter().flatten().collect();
    let place = |what: &str| format!("Chatwoot ({}), {what}", url.trim_end_matches('/'));
    let http = kit.operator_http;
    let configured_account = s.get("operator_account_id").parse::<i64>().ok();
    let account_id = match configured_account {
        Some(id) => id,
        None => match Chatwoot::profile_account(http, &base, &admin_token).await {
            Ok(id) => id,
            Err(ChatwootError::Invalid(why)) => {
                return failed(
                    "Chatwoot answered, but the account cannot be chosen from the token.",
                    place("the token's profile"),
                    scrub(why, &secrets),
                    "Set operator_account_id to the account to use (the number after /app/accounts/ in Chatwoot's \
                     address bar).",
                );
            }
            Err(e) => return chatwoot_failed(e, place("the token's profile (/api/v1/profile)"), None, &secrets),
        },
    };
    let account_from = if configured_account.is_some() { "operator_account_id" } else { "the token's only account" };
    let config =
        ChatwootConfig { base, account_id, inbox_id, admin_token: admin_token.clone(), bot_token: bot_token.clone() };
    let chatwoot = match Chatwoot::new(config, http.clone()) {
        Ok(c) => c,
        Err(e) => {
            return failed(
                "The Chatwoot settings cannot be used.",
                settings_place,
                scrub(e.to_string(), &secrets),
                "Correct operator_url and operator_token.",
            );
        }
    };
    let inbox_place = place(&format!("account {account_id}, inbox {inbox_id}"));
    let (inbox, name) = match chatwoot.inbox_named(inbox_id).await {
        Ok(found) => found,
        Err(e) => return chatwoot_failed(e, inbox_place, Some((account_id, inbox_id, account_from)), &secrets),
    };
    let mut details = json!({
        "account_id": account_id,
        "account_from": account_from,
        "inbox": {"id": inbox.id, "name": name, "channel_type": inbox.channel_type},
        "bot_token": chatwoot.has_bot_token(),
        "webhook_url": format!("{base_url}/api/webhook/{uid}"),
    });
    if inbox.channel_type != API_CHANNEL {
        return failed(
            "Chatwoot answered, but the inbox is not an API channel.",
            "operator_inbox_id",
            format!(
                "inbox {inbox_id} ({}) is a {} inbox; the assistant needs an API-channel inbox ({API_CHANNEL})",
                name.as_deref().unwrap_or("unnamed"),
                inbox.channel_type
            ),
            format!(
                "Create an API inbox in Chatwoot (Settings → Inboxes → Add Inbox → API) with the webhook URL \
                 {base_url}/api/webhook/{uid}, then set operator_inbox_id to its id."
            ),
        )
        .with_details(details);
    }
    let inbox_secret = inbox.secret.as_deref().filter(|v| !v.is_empty());
    let signing = match (webhook_secret.as_deref(), inbox_secret) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            return failed(
                "Chatwoot answered, but the webhook secret is not the inbox's: agents' replies would be refused.",
                "operator_webhook_secret",
                format!("operator_webhook_secret differs from the secret of inbox {inbox_id}"),
                "Clear operator_webhook_secret (it is then read from the inbox), or paste the inbox's secret.",
            )
            .with_details(details);
        }
        (Some(_), _) => "operator_webhook_secret is set",
        (None, Some(_)) => "taken from the inbox at the first hand-off (operator_webhook_secret is empty)",
        (None, None) if s.get("operator_allow_unsigned_webhooks") == "on" => {
            "none: unsigned webhooks are accepted (operator_allow_unsigned_webhooks=on)"
        }
        (None, None) => {
            return failed(
                "Chatwoot answered, but its webhooks cannot be verified: agents' replies would be refused.",
                "operator_webhook_secret",
                format!(
                    "the inbox {inbox_id} has no webhook secret (Chatwoot before 4.13) and operator_webhook_secret is empty"
                ),
                "Upgrade Chatwoot to 4.13 or later (its API inboxes sign webhooks), or set \
                 operator_allow_unsigned_webhooks=on if only trusted networks reach this server.",
            )
            .with_details(details);
        }
    };
    details["webhook_secret"] = json!(signing);
    let inbox_name = name.as_deref().unwrap_or("unnamed");
    let webhook = match webhook_target(kit, s, uid, inbox_name, inbox.webhook_url.as_deref()) {
        Ok(found) => scrub(found, &secrets),
        Err((summary, what, fix)) => {
            let place = format!("Chatwoot inbox {inbox_id} ({inbox_name}), its webhook URL");
            return failed(summary, place, scrub(what, &secrets), fix).with_details(details);
        }
    };
    details["inbox_webhook_url"] = json!(inbox.webhook_url.as_deref().map(|u| scrub(u.to_string(), &secrets)));
    details["webhook_url_check"] = json!(webhook);
    let mut o =
        passed(format!("Chatwoot answered: account {account_id}, API inbox \"{inbox_name}\" ({inbox_id})."), details);
    o.notes.push(format!("account {account_id} ({account_from})"));
    o.notes.push(format!("webhook secret: {signing}"));
    o.notes.push(format!("webhook URL: {webhook}"));
    o
}

/// Whether the webhooks of the inbox named `inbox` (posted to `theirs`) reach this server:
/// `Ok` says how it stands, `Err` is the summary, what is wrong and the fix.
fn webhook_target(
    kit: &Toolkit<'_>,
    s: &crate::clients::ClientSettings,
    uid: &str,
    inbox: &str,
    theirs: Option<&str>,
) -> Result<String, (&'static str, String, String)> {
    let ours = format!("{}/api/webhook/{uid}", kit.base_url);
    let set_it = format!(
        "Set the webhook URL of the inbox in Chatwoot (Settings → Inboxes → {inbox} → Configuration) to {ours}"
    );
    if s.get("operator_cable") == "on" {
        return Ok("not used: agents' replies come over ActionCable (operator_cable=on)".into());
    }
    let Some(theirs) = theirs.map(str::trim).filter(|u| !u.is_empty()) else {
        return Err((
            "Chatwoot answered, but the inbox calls no webhook: agents' replies would never arrive.",
            "the inbox has no webhook URL".into(),
            format!("{set_it}, or set operator_cable=on if Chatwoot cannot reach this server."),
        ));
    };
    let Some(public) = &kit.public_url else {
        return Ok(format!(
            "{theirs} (not compared with this server's address: its public URL is unknown; give --public-url or AIA_PUBLIC_URL)"
        ));
    };
    let normal = |u: &str| url::Url::parse(u).map(|u| u.as_str().trim_end_matches('/').to_string()).ok();
    let here = [format!("{public}/api/webhook/{uid}"), format!("{public}/api/webhook")];
    if normal(theirs).is_some_and(|t| here.iter().any(|h| normal(h).as_deref() == Some(t.as_str()))) {
        return Ok(format!("{theirs} (this server)"));
    }
    Err((
        "Chatwoot answered, but the inbox sends its webhooks elsewhere: agents' replies would not arrive.",
        format!("the inbox's webhook URL is {theirs}, not this server's {public}/api/webhook/{uid}"),
        format!("{set_it}, or correct --public-url (AIA_PUBLIC_URL) if {theirs} is this server too."),
    ))
}

/// A refused or failed Chatwoot call, at the profile (`inbox` is `None`) or at the inbox
/// (account id, inbox id, where the account came from).
fn chatwoot_failed(
    e: crate::operator::chatwoot::ChatwootError,
    place: String,
    inbox: Option<(i64, i64, &str)>,
    secrets: &[&str],
) -> Outcome {
    use crate::operator::chatwoot::ChatwootError;
    let what = excerpt(&scrub(e.to_string(), secrets), 400);
    let (summary, fix) = match (&e, inbox) {
        (ChatwootError::Unauthorized(_), None) => (
            "Chatwoot refused the access token.".to_string(),
            "Check operator_token: an administrator's access token (Chatwoot → Profile settings → Access token)."
                .to_string(),
        ),
        (ChatwootError::Unauthorized(_), Some((account, _, from))) => (
            "Chatwoot refused the access token for this account.".to_string(),
            format!(
                "Check operator_token (an administrator's access token: Profile settings → Access token) and that \
                 its user belongs to account {account} ({from})."
            ),
        ),
        (ChatwootError::NotFound, None) => (
            "Chatwoot's profile API was not found.".to_string(),
            "Check operator_url: Chatwoot's own address (with its path prefix, if any), not a page of it.".to_string(),
        ),
        (ChatwootError::NotFound, Some((account, inbox, from))) => (
            "Chatwoot has no such inbox in this account.".to_string(),
            format!(
                "Check operator_inbox_id (the number after /inboxes/ in the inbox's settings address) and the \
                 account {account} ({from}): the inbox {inbox} must belong to it."
            ),
        ),
        (ChatwootError::Unavailable(_), _) => (
            "Chatwoot did not answer.".to_string(),
            "Check operator_url and that this server can reach Chatwoot (address, DNS, firewall, TLS).".to_string(),
        ),
        (ChatwootError::RateLimited { .. }, _) => {
            ("Chatwoot is rate limiting.".to_string(), "Test again in a minute.".to_string())
        }
        (ChatwootError::Invalid(_) | ChatwootError::Protocol(_), _) => (
            "Chatwoot's answer was unexpected.".to_string(),
            "Check operator_url: it must be Chatwoot's own address (with its path prefix, if any).".to_string(),
        ),
    };
    failed(&summary, place, what, fix)
}
