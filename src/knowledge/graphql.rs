//! A client's GraphQL training source: POST the admin's raw query (with paging variables when
//! it declares them) and read the response as `contracts/graphql-magento.md` §1 prescribes —
//! a JSON body with `data` or `errors` is interpreted whatever the status; only 502/503/504 and
//! timeouts are retried (queries are idempotent).

use std::time::Duration;

use serde_json::{Value, json};

/// How a query pages, detected from the variables it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// No paging variables: the query runs once.
    Once,
    /// `$pageSize` / `$currentPage` (Magento): pages 1, 2, … up to `page_info.total_pages`.
    Pages,
    /// `$first` / `$after` (Relay cursors): while `pageInfo.hasNextPage`.
    Cursor,
    /// `$limit` / `$offset`: until a page comes back short.
    Offset,
}

fn declares(query: &str, var: &str) -> bool {
    let needle = format!("${var}");
    query.match_indices(&needle).any(|(i, _)| {
        let rest = &query[i + needle.len()..];
        !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_') && rest.trim_start().starts_with(':')
    })
}

/// Detects the paging style from the query text.
pub fn paging(query: &str) -> Paging {
    if declares(query, "pageSize") && declares(query, "currentPage") {
        Paging::Pages
    } else if declares(query, "first") && declares(query, "after") {
        Paging::Cursor
    } else if declares(query, "limit") && declares(query, "offset") {
        Paging::Offset
    } else {
        Paging::Once
    }
}

/// Why a page could not be fetched; the message says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("page {page}: the GraphQL server answered HTTP {status} without a GraphQL body{detail}")]
    Http { page: u32, status: u16, detail: String },
    #[error("page {page}: GraphQL errors{}: {messages}", status_note(*.status))]
    Graphql { page: u32, status: u16, messages: String },
    #[error("page {page}: the response is not JSON ({reason})")]
    InvalidJson { page: u32, reason: String },
    #[error("page {page}: {reason}")]
    Transport { page: u32, reason: String },
    #[error("the source URL is refused: {0}")]
    Refused(String),
}

/// One fetch of the source.
pub struct Source<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
}

/// What a non-200 status adds to GraphQL errors: Magento answers 401 for a refused token and
/// 403 for data the credentials may not see, which point at `graphql_headers`.
fn status_note(status: u16) -> String {
    match status {
        200 => String::new(),
        401 => " (HTTP 401: the store refused the credentials in graphql_headers)".into(),
        403 => " (HTTP 403: these credentials may not read this data)".into(),
        other => format!(" (HTTP {other})"),
    }
}

/// GraphQL `errors` as one line: the first `max` messages, each with its path.
pub(crate) fn describe_errors(errors: &[Value], max: usize) -> String {
    errors
        .iter()
        .take(max)
        .map(|e| {
            let message = e["message"].as_str().unwrap_or("(no message)");
            match e["path"].as_array() {
                Some(path) if !path.is_empty() => {
                    let path: Vec<String> =
                        path.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string)).collect();
                    format!("{message} (at {})", path.join("."))
                }
                _ => message.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Source<'_> {
    /// Fetches one page with `variables`; returns `data`. Partial data with errors is an
    /// error: training must not silently drop what failed.
    pub async fn fetch(&self, page: u32, variables: Value) -> Result<Value, SourceError> {
        let mut delay = Duration::from_millis(500);
        for attempt in 0.. {
            match self.fetch_once(page, &variables).await {
                Err(SourceError::Transport { .. } | SourceError::Http { status: 502..=504, .. }) if attempt < 3 => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// One attempt at one page, without [`Source::fetch`]'s retries: the admin's test button
    /// reports a failure at once instead of after a backoff.
    pub async fn fetch_without_retry(&self, page: u32, variables: Value) -> Result<Value, SourceError> {
        self.fetch_once(page, &variables).await
    }

    async fn fetch_once(&self, page: u32, variables: &Value) -> Result<Value, SourceError> {
        let mut request = self
            .client
            .post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .json(&json!({"query": self.query, "variables": variables}));
        for (name, value) in self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.map_err(|e| SourceError::Transport {
            page,
            reason: if e.is_timeout() {
                "timed out".into()
            } else {
                format!("request failed: {}", crate::outbound::error_text(&e))
            },
        })?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| SourceError::Transport { page, reason: crate::outbound::error_text(&e) })?;
        let parsed: Result<Value, _> = serde_json::from_slice(&body);
        let object = match parsed {
            Ok(Value::Object(o)) if o.contains_key("data") || o.contains_key("errors") => o,
            Ok(_) if status >= 400 => return Err(SourceError::Http { page, status, detail: String::new() }),
            Ok(_) => return Err(SourceError::InvalidJson { page, reason: "no data or errors key".into() }),
            Err(_) if status >= 400 => return Err(SourceError::Http { page, status, detail: snippet(&body) }),
            Err(e) => return Err(SourceError::InvalidJson { page, reason: e.to_string() }),
        };
        if let Some(errors) = object.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            return Err(SourceError::Graphql { page, status, messages: describe_errors(errors, 5) });
        }
        match object.get("data") {
            Some(data @ Value::Object(_)) => Ok(data.clone()),
            _ => Err(SourceError::InvalidJson { page, reason: "data is missing or not an object".into() }),
        }
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().filter(|c| !c.is_control()).take(120).collect();
    if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim()) }
}

/// Finds the first value under `key` anywhere in `value` (depth-first).
pub fn find_key<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(o) => o.get(key).or_else(|| o.values().find_map(|v| find_key(v, key))),
        Value::Array(a) => a.iter().find_map(|v| find_key(v, key)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_styles() {
        assert_eq!(paging("query { faq { question answer } }"), Paging::Once);
        assert_eq!(
            paging(
                "query F($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { q a } page_info { total_pages } } }"
            ),
            Paging::Pages
        );
        assert_eq!(
            paging(
                "query ($first: Int, $after: String) { faqs(first: $first, after: $after) { edges { node { q } } } }"
            ),
            Paging::Cursor
        );
        assert_eq!(paging("query($limit:Int,$offset:Int){ faqs(limit:$limit, offset:$offset) { q } }"), Paging::Offset);
        assert_eq!(paging("query($limitX: Int) { a }"), Paging::Once);
    }
}
