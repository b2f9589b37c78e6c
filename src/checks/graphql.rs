//! The training source check: the first page of `graphql_query`, exactly as a training run
//! fetches it, through the extractor training uses — what it found and how its fields map.
//! Nothing is written to the knowledge base.

use serde_json::{Value, json};

use super::{Outcome, Subject, Toolkit, are_empty, failed, passed, scrub};
use crate::tasks::detect::excerpt;

/// The shape of a JSON value by its keys alone (never its values), `depth` objects deep: what
/// a page looked like when no entries were found in it.
fn shape(value: &Value, depth: usize) -> String {
    match value {
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Object(_) if depth == 0 => "{…}".into(),
        Value::Object(o) => {
            let inner: Vec<String> = o
                .iter()
                .map(|(k, v)| match v {
                    Value::Object(_) | Value::Array(_) => format!("{k} {}", shape(v, depth - 1)),
                    _ => k.clone(),
                })
                .collect();
            format!("{{ {} }}", inner.join(" "))
        }
        Value::Array(items) => match items.first() {
            Some(first @ (Value::Object(_) | Value::Array(_))) => format!("[{}]", shape(first, depth)),
            Some(_) => "[…]".into(),
            None => "[]".into(),
        },
        _ => String::new(),
    }
}

/// The training source: the first page of `graphql_query`, exactly as a training run fetches
/// it, through the extractor training uses; nothing is written to the knowledge base.
pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>) -> Outcome {
    use crate::knowledge::extract::{Mapping, dedupe, extract, fields_used, looked_for};
    use crate::knowledge::graphql::{Paging, Source, find_key, paging};
    use crate::knowledge::train::{MAX_PAGE_SIZE, first_page_variables};
    let s = client.settings;
    let (url, query) = (s.get("graphql_url"), s.get("graphql_query"));
    let missing: Vec<&str> = [("graphql_url", url.is_empty()), ("graphql_query", query.trim().is_empty())]
        .into_iter()
        .filter_map(|(key, empty)| empty.then_some(key))
        .collect();
    if !missing.is_empty() {
        let o = failed(
            "No training source is configured: the knowledge base holds only what was imported.",
            "Knowledge settings",
            are_empty(&missing, " and "),
            "Set graphql_url (the store's GraphQL endpoint) and graphql_query (a query returning the FAQ entries), \
             then save and test again.",
        );
        return if missing.len() == 2 { o.unconfigured() } else { o };
    }
    if let Err(e) = kit.upstream.check_url(url) {
        return failed(
            "The training source's URL is refused.",
            "graphql_url",
            format!("graphql_url {e}"),
            "Correct graphql_url.",
        );
    }
    let headers: Vec<(String, String)> = match s.secret(kit.keys, client.uid, "graphql_headers") {
        None => Vec::new(),
        Some(Err(e)) => {
            return failed(
                "The GraphQL headers cannot be read.",
                "graphql_headers",
                format!("graphql_headers: {e}"),
                "Set graphql_headers again.",
            );
        }
        // serde's message could quote a value: only where the text goes wrong is told.
        Some(Ok(text)) => match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&text) {
            Ok(map) => map.into_iter().collect(),
            Err(e) => {
                return failed(
                    "The GraphQL headers cannot be used.",
                    "graphql_headers",
                    format!(
                        "graphql_headers is not a JSON object of header names and text values (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                    "Set graphql_headers to a JSON object, e.g. {\"Authorization\": \"Bearer …\", \"Store\": \"default\"}.",
                );
            }
        },
    };
    let mapping = match Mapping::parse(s.get("graphql_fields")) {
        Ok(m) => m,
        Err(why) => {
            return failed(
                "The field mapping cannot be used.",
                "graphql_fields",
                format!("graphql_fields: {why}"),
                "Correct graphql_fields, e.g. question=title,answer=content.html,id=faq_id, or empty it to find the \
                 fields automatically.",
            );
        }
    };
    let secrets: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
    let place = format!("GraphQL source ({url})");
    let size = s.get("chunk_size").parse::<u32>().unwrap_or(100).clamp(1, MAX_PAGE_SIZE);
    let source = Source { client: kit.training_http, url, query, headers: &headers };
    let data = match source.fetch_without_retry(1, first_page_variables(query, size)).await {
        Ok(data) => data,
        Err(e) => return source_failed(&e, place, &secrets),
    };
    let mut extracted = extract(&data, &mapping, 1);
    dedupe(&mut extracted.entries, &mut extracted.warnings);
    let used = fields_used(&data, &mapping);
    let warnings: Vec<String> =
        extracted.warnings.iter().take(5).map(|w| excerpt(&scrub(w.clone(), &secrets), 200)).collect();
    if extracted.entries.is_empty() {
        let what = match &used {
            Some(u) if extracted.items > 0 => format!(
                "the {} items of {} gave no entry: {}",
                extracted.items,
                u.list,
                if warnings.is_empty() { "no question or answer in them".to_string() } else { warnings.join("; ") }
            ),
            _ => format!("the first page has no FAQ entries: looked for {}", looked_for(&mapping)),
        };
        let fix = if s.get("graphql_fields").is_empty() {
            "Name the fields with graphql_fields (e.g. question=title,answer=content.html,id=faq_id, paths inside \
             each item), or change graphql_query to select question and answer fields."
        } else {
            "Correct graphql_fields (paths inside each item of the list) or graphql_query."
        };
        let mut o = failed("The GraphQL source answered, but no FAQ entries were found.", place, what, fix);
        o.details = json!({"data": excerpt(&shape(&data, 4), 400), "fields": used});
        return o;
    }
    let (paging_text, total_pages) = match paging(query) {
        Paging::Once => ("none: the query runs once".to_string(), None),
        Paging::Pages => {
            (format!("$pageSize/$currentPage, {size} a page"), find_key(&data, "total_pages").and_then(Value::as_u64))
        }
        Paging::Cursor => (format!("$first/$after, {size} a page"), None),
        Paging::Offset => (format!("$limit/$offset, {size} a page"), None),
    };
    let preview: Vec<Value> = extracted
        .entries
        .iter()
        .take(3)
        .map(|e| {
            json!({
                "id": excerpt(&e.id, 80),
                "question": excerpt(&e.question, 160),
                "answer": excerpt(&e.answer, 160),
            })
        })
        .collect();
    let n = extracted.entries.len();
    let mut summary = format!("The first page gave {n} {}", if n == 1 { "entry" } else { "entries" });
    match total_pages {
        Some(t) if t > 1 => summary.push_str(&format!(" (page 1 of {t})")),
        _ => {}
    }
    summary.push('.');
    let mut o = passed(
        summary,
        json!({
            "entries": n,
            "items": extracted.items,
            "paging": paging_text,
            "total_pages": total_pages,
            "fields": used,
            "preview": preview,
            "warnings": warnings,
        }),
    );
    if let Some(u) = &used {
        let mapped = if u.mapped { "graphql_fields" } else { "found automatically" };
        o.notes.push(format!(
            "maps ({mapped}): {} items of {}; question ← {}, answer ← {}, id ← {}",
            extracted.items, u.list, u.question, u.answer, u.id
        ));
    }
    o.notes.push(format!("paging: {paging_text}"));
    if let Some(first) = extracted.entries.first() {
        o.notes.push(format!("first entry: {} → {}", excerpt(&first.question, 80), excerpt(&first.answer, 80)));
    }
    o.notes.extend(warnings.iter().map(|w| format!("warning: {w}")));
    o
}

/// A failed fetch of the training source, with what to change for each kind of failure.
fn source_failed(e: &crate::knowledge::graphql::SourceError, place: String, secrets: &[&str]) -> Outcome {
    use crate::knowledge::graphql::SourceError;
    let (summary, fix) = match e {
        SourceError::Http { status: 401 | 403, .. } | SourceError::Graphql { status: 401 | 403, .. } => (
            "The GraphQL source refused the credentials.",
            "Check graphql_headers (e.g. {\"Authorization\": \"Bearer …\"}): the token may be wrong, expired, or \
             not allowed to read this data.",
        ),
        SourceError::Http { status: 404, .. } => (
            "The GraphQL source's URL was not found.",
            "Check graphql_url: it is usually the store's address followed by /graphql.",
        ),
        SourceError::Http { .. } => (
            "The GraphQL source answered with an error.",
            "Check graphql_url and that the store is up; if it is busy, test again later.",
        ),
        SourceError::Graphql { .. } => (
            "The GraphQL query was refused.",
            "Correct graphql_query where the message says (try it in the store's GraphQL playground first).",
        ),
        SourceError::InvalidJson { .. } => {
            ("The answer is not GraphQL.", "Check graphql_url: it must be the GraphQL endpoint itself, not a web page.")
        }
        SourceError::Transport { .. } => (
            "The GraphQL source did not answer.",
            "Check graphql_url and that this server can reach it (address, DNS, firewall, TLS).",
        ),
        SourceError::Refused(_) => ("The training source's URL is refused.", "Correct graphql_url."),
    };
    failed(summary, place, excerpt(&scrub(e.to_string(), secrets), 400), fix)
}
