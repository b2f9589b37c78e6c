//! The task provider: where a chat's follow-up becomes a task. The assistant and the HTTP
//! layer use [`TaskProvider`] only, so another provider (Jira, GitHub issues…) slots in by
//! implementing it and being named in `tasks_provider`. Trello is the first.

use async_trait::async_trait;

use super::trello::{NewCard, Position, Trello, TrelloConfig, TrelloError, find_label};
use crate::clients::ClientSettings;
use crate::clients::secrets::SecretBox;

/// A place a task can go (a Trello list).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Destination {
    pub id: String,
    pub name: String,
}

/// A tag a task can carry (a Trello label).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub color: Option<String>,
}

/// What a board offers: where tasks can go and how they can be tagged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Destinations {
    pub lists: Vec<Destination>,
    pub labels: Vec<Tag>,
}

/// A task to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub name: String,
    pub description: String,
    /// Label names to add on top of the configured default labels (matched by name; unknown
    /// names are dropped, never created).
    pub tag_names: Vec<String>,
    /// Unique to the request, inside `description`: how a retry finds what it made.
    pub marker: String,
}

/// A task that exists at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTask {
    pub id: String,
    /// A short reference to show the visitor (the card's short link).
    pub reference: String,
    /// The link for the team (never shown to visitors: boards are private).
    pub url: String,
}

/// Why the provider can't be used for a client.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("tasks are not set up: {0} is empty")]
    Missing(&'static str),
    #[error("{0}")]
    Secret(String),
    #[error(transparent)]
    Provider(#[from] TrelloError),
}

/// A task provider for one client.
#[async_trait]
pub trait TaskProvider: Send + Sync {
    /// The board's open lists and its labels.
    async fn destinations(&self) -> Result<Destinations, TrelloError>;
    /// The task an earlier attempt made for `marker`, if it did.
    async fn find(&self, marker: &str) -> Result<Option<CreatedTask>, TrelloError>;
    /// Creates the task.
    async fn create(&self, task: &NewTask) -> Result<CreatedTask, TrelloError>;

    /// Creates the task exactly once across attempts: after an attempt whose outcome is
    /// unknown (`tried_before`: a timeout, a dropped connection, a crash before its result was
    /// recorded) it first looks for the task that attempt may have made.
    async fn create_once(&self, task: &NewTask, tried_before: bool) -> Result<CreatedTask, TrelloError> {
        if tried_before && let Some(found) = self.find(&task.marker).await? {
            return Ok(found);
        }
        self.create(task).await
    }
}

/// Trello: a board, the list new cards go to, and the labels every card gets.
pub struct TrelloBoard {
    trello: Trello,
    board: String,
    list: String,
    default_labels: Vec<String>,
}

/// The provider `settings` describe, sending over `http` (see [`Trello::http_client`]).
pub fn for_client(
    settings: &ClientSettings,
    keys: &SecretBox,
    uid: &str,
    http: reqwest::Client,
) -> Result<TrelloBoard, SetupError> {
    let secret = |key: &'static str| match settings.secret(keys, uid, key) {
        Some(Ok(v)) if !v.trim().is_empty() => Ok(v),
        Some(Err(e)) => Err(SetupError::Secret(format!("{key}: {e}"))),
        _ => Err(SetupError::Missing(key)),
    };
    let plain = |key: &'static str| {
        let v = settings.get(key).trim();
        if v.is_empty() { Err(SetupError::Missing(key)) } else { Ok(v.to_string()) }
    };
    let base = url::Url::parse(settings.get("trello_api_url"))
        .map_err(|e| SetupError::Provider(TrelloError::Invalid(format!("trello_api_url: {e}"))))?;
    let config = TrelloConfig { base, key: secret("trello_key")?, token: secret("trello_token")? };
    Ok(TrelloBoard {
        trello: Trello::new(config, http)?,
        board: plain("trello_board_id")?,
        list: settings.get("trello_list_id").trim().to_string(),
        default_labels: crate::clients::origin::split_list(settings.get("trello_label_ids"))
            .map(str::to_string)
            .collect(),
    })
}

impl TrelloBoard {
    /// The configured list, or (none configured) the board's first open list.
    async fn list(&self) -> Result<String, TrelloError> {
        if !self.list.is_empty() {
            return Ok(self.list.clone());
        }
        let lists = self.trello.lists(&self.board).await?;
        lists
            .into_iter()
            .find(|l| !l.closed)
            .map(|l| l.id)
            .ok_or_else(|| TrelloError::NotFound("the board has no open list: set trello_list_id".into()))
    }
}

#[async_trait]
impl TaskProvider for TrelloBoard {
    async fn destinations(&self) -> Result<Destinations, TrelloError> {
        let (lists, labels) = tokio::try_join!(self.trello.lists(&self.board), self.trello.labels(&self.board))?;
        Ok(Destinations {
            lists: lists.into_iter().filter(|l| !l.closed).map(|l| Destination { id: l.id, name: l.name }).collect(),
            labels: labels.into_iter().map(|l| Tag { id: l.id, name: l.name, color: l.color }).collect(),
        })
    }

    async fn find(&self, marker: &str) -> Result<Option<CreatedTask>, TrelloError> {
        let list = self.list().await?;
        Ok(self.trello.find_card(&list, marker).await?.map(created))
    }

    async fn create(&self, task: &NewTask) -> Result<CreatedTask, TrelloError> {
        let list = self.list().await?;
        let mut labels = self.default_labels.clone();
        if !task.tag_names.is_empty() {
            let board_labels = self.trello.labels(&self.board).await?;
            for name in &task.tag_names {
                if let Some(l) = find_label(&board_labels, name)
                    && !labels.contains(&l.id)
                {
                    labels.push(l.id.clone());
                }
            }
        }
        let card = NewCard {
            id_list: list,
            name: task.name.clone(),
            desc: task.description.clone(),
            id_labels: labels,
            pos: Position::Top,
            url_source: None,
        };
        Ok(created(self.trello.create_card(&card).await?))
    }
}

/// The card as we keep it. Its link is shown to the shop's admins (the transcript), so only
/// an http(s) URL is kept: the board's answer is outside input like any other.
fn created(card: super::trello::Card) -> CreatedTask {
    let web = |u: &str| u.starts_with("https://") || u.starts_with("http://");
    let url = [&card.short_url, &card.url].into_iter().find(|u| web(u)).cloned().unwrap_or_default();
    let reference = if card.short_link.is_empty() { card.id.clone() } else { card.short_link.clone() };
    CreatedTask { id: card.id, reference, url }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_web_link_of_the_card_is_kept() {
        let card = |short_url: &str, url: &str| super::super::trello::Card {
            short_url: short_url.into(),
            url: url.into(),
            ..Default::default()
        };
        assert_eq!(created(card("https://trello.com/c/a", "https://trello.com/c/a/1-x")).url, "https://trello.com/c/a");
        assert_eq!(created(card("", "https://trello.com/c/a/1-x")).url, "https://trello.com/c/a/1-x");
        assert_eq!(created(card("javascript:alert(1)", "data:text/html,x")).url, "");
        assert_eq!(created(card("javascript:alert(1)", "https://trello.com/c/b")).url, "https://trello.com/c/b");
    }
}
