//! A training run: page through a client's GraphQL source, extract FAQ entries, and hand them
//! over for an atomic swap. Nothing is written unless every page succeeded, so a failed run
//! leaves the previous knowledge serving.

use serde_json::{Value, json};

use super::KnowledgeEntry;
use super::extract::{Mapping, dedupe, extract};
use super::graphql::{Paging, Source, SourceError, find_key, paging};

/// Page sizes above this are clamped: stores cap them (the product's example is 128,000).
pub const MAX_PAGE_SIZE: u32 = 1_000;
/// A source that pages further than this is treated as broken.
pub const MAX_PAGES: u32 = 100_000;

/// Where and how to fetch.
pub struct TrainSource<'a> {
    pub source: Source<'a>,
    pub chunk_size: u32,
    pub mapping: Mapping,
}

/// Progress after each page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub pages: u32,
    pub entries: usize,
    /// Known for Magento-style paging (`total_pages`).
    pub total_pages: Option<u32>,
}

/// A finished fetch.
#[derive(Debug, Default)]
pub struct Fetched {
    pub entries: Vec<KnowledgeEntry>,
    pub pages: u32,
    pub warnings: Vec<String>,
}

/// The variables of the first request [`fetch_all`] makes for `query` (page 1, or the start of
/// the cursor or offset), so the admin's test button fetches exactly the page training starts
/// with.
pub fn first_page_variables(query: &str, chunk_size: u32) -> Value {
    let size = chunk_size.clamp(1, MAX_PAGE_SIZE);
    match paging(query) {
        Paging::Once => json!({}),
        Paging::Pages => json!({"pageSize": size, "currentPage": 1}),
        Paging::Cursor => json!({"first": size, "after": null}),
        Paging::Offset => json!({"limit": size, "offset": 0}),
    }
}

/// Fetches every page of the source.
pub async fn fetch_all(src: &TrainSource<'_>, mut on_page: impl FnMut(Progress)) -> Result<Fetched, SourceError> {
    let size = src.chunk_size.clamp(1, MAX_PAGE_SIZE);
    let style = paging(src.source.query);
    let mut out = Fetched::default();
    let mut cursor: Option<String> = None;
    let mut total_pages = None;
    for page in 1..=MAX_PAGES {
        let variables = match style {
            Paging::Once => json!({}),
            Paging::Pages => json!({"pageSize": size, "currentPage": page}),
            Paging::Cursor => json!({"first": size, "after": cursor}),
            Paging::Offset => json!({"limit": size, "offset": u64::from(page - 1) * u64::from(size)}),
        };
        let data = src.source.fetch(page, variables).await?;
        let extracted = extract(&data, &src.mapping, page);
        out.pages = page;
        out.entries.extend(extracted.entries);
        out.warnings.extend(extracted.warnings);
        let done = match style {
            Paging::Once => true,
            Paging::Pages => {
                total_pages = find_key(&data, "total_pages").and_then(Value::as_u64).map(|t| t as u32);
                extracted.items == 0 || total_pages.is_none_or(|t| page >= t)
            }
            Paging::Cursor => {
                let info = find_key(&data, "pageInfo").or_else(|| find_key(&data, "page_info"));
                let next = info.and_then(|i| i.get("hasNextPage")).and_then(Value::as_bool).unwrap_or(false);
                let end = info.and_then(|i| i.get("endCursor")).and_then(Value::as_str).map(str::to_string);
                let stuck = end.is_none() || end == cursor;
                cursor = end;
                extracted.items == 0 || !next || stuck
            }
            Paging::Offset => extracted.items < size as usize,
        };
        on_page(Progress { pages: page, entries: out.entries.len(), total_pages });
        if done {
            dedupe(&mut out.entries, &mut out.warnings);
            return Ok(out);
        }
    }
    Err(SourceError::Transport {
        page: MAX_PAGES,
        reason: format!("more than {MAX_PAGES} pages: is the paging broken?"),
    })
}
