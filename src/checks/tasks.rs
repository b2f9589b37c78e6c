//! The task board check: the Trello board's open lists and labels, read with the client's key
//! and token, and whether the list for new cards and the default labels are on that board.

use serde_json::json;

use super::{Outcome, Subject, Toolkit, failed, passed};
use crate::tasks::provider::Destinations;

/// The settings without which there is no task board at all.
const REQUIRED: [&str; 3] = ["trello_key", "trello_token", "trello_board_id"];

pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>) -> Outcome {
    use crate::tasks::provider::{self, SetupError, TaskProvider};
    use crate::tasks::trello::TrelloError;
    let settings = client.settings;
    let place = || format!("Trello ({})", settings.get("trello_api_url"));
    let provider = match provider::for_client(settings, kit.keys, client.uid, kit.tasks_http.clone()) {
        Ok(p) => p,
        Err(SetupError::Missing(key)) => {
            let o = failed(
                "Tasks are not set up.",
                "Tasks (Trello) settings",
                format!("{key} is empty"),
                format!("Set {key}, then save and test again."),
            );
            let nothing = REQUIRED.iter().all(|k| !settings.is_set(k));
            return if nothing { o.unconfigured() } else { o };
        }
        Err(e) => {
            return failed(
                "The task settings cannot be used.",
                "Tasks (Trello) settings",
                e.to_string(),
                "Correct the Trello settings.",
            );
        }
    };
    let found = match provider.destinations().await {
        Ok(found) => found,
        Err(e) => {
            let board = settings.get("trello_board_id");
            let (summary, fix) = match &e {
                TrelloError::Unauthorized(_) => (
                    "Trello refused the key or the token.".to_string(),
                    format!(
                        "Check trello_key and trello_token (it needs read and write access, and its user must see \
                         the board {board})."
                    ),
                ),
                TrelloError::NotFound(_) | TrelloError::Invalid(_) => (
                    format!("Trello has no board {board}."),
                    "Check trello_board_id: the board's id, or the 8 characters after /b/ in its address.".to_string(),
                ),
                _ => (
                    "Trello did not answer.".to_string(),
                    "Check trello_api_url and that this server can reach Trello; if it is rate limiting, test again \
                     in a minute."
                        .to_string(),
                ),
            };
            return failed(&summary, place(), e.to_string(), fix);
        }
    };
    let list = settings.get("trello_list_id");
    if !list.is_empty() && !found.lists.iter().any(|l| l.id == list) {
        return failed(
            "The board answered, but the list for new cards is not on it.",
            "trello_list_id",
            format!("no open list of the board has the id {list}"),
            "Pick one of the board's lists below.",
        )
        .with_details(json!(found))
        .with_notes(board_notes(&found));
    }
    if list.is_empty() && found.lists.is_empty() {
        return failed(
            "The board answered, but it has no open list for new cards.",
            "trello_board_id",
            "the board has no open list",
            "Add a list to the board in Trello, or set trello_board_id to another board.",
        )
        .with_details(json!(found));
    }
    let missing: Vec<&str> = crate::clients::origin::split_list(settings.get("trello_label_ids"))
        .filter(|id| !found.labels.iter().any(|l| l.id == *id))
        .collect();
    if !missing.is_empty() {
        return failed(
            "The board answered, but some default labels are not on it.",
            "trello_label_ids",
            format!("unknown label ids: {}", missing.join(", ")),
            "Remove them or pick labels from the board's list below.",
        )
        .with_details(json!(found))
        .with_notes(board_notes(&found));
    }
    let summary = format!("The board answered: {} open lists, {} labels.", found.lists.len(), found.labels.len());
    let mut o = passed(summary, json!(found));
    let named = |id: &str| found.lists.iter().find(|l| l.id == id).map(|l| l.name.clone());
    o.notes.push(match named(list) {
        Some(name) => format!("new cards go to the list \"{name}\" ({list})"),
        None => "new cards go to the board's first open list (trello_list_id is empty)".to_string(),
    });
    let labels: Vec<String> = crate::clients::origin::split_list(settings.get("trello_label_ids"))
        .filter_map(|id| found.labels.iter().find(|l| l.id == id).map(|l| format!("\"{}\"", l.name)))
        .collect();
    if !labels.is_empty() {
        o.notes.push(format!("default labels: {}", labels.join(", ")));
    }
    o
}

/// The board's lists and labels to pick from, a line each.
fn board_notes(found: &Destinations) -> Vec<String> {
    let lists = found.lists.iter().map(|l| format!("list \"{}\": {}", l.name, l.id));
    let labels = found.labels.iter().map(|l| {
        let color = l.color.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
        format!("label \"{}\"{color}: {}", l.name, l.id)
    });
    lists.chain(labels).collect()
}
