//! FAQ entries out of a GraphQL `data` object. By default the first list of objects with a
//! question-like and an answer-like field is taken (Relay `edges[].node` unwrapped); a field
//! mapping (`graphql_fields`, e.g. `question=title,answer=content.html,id=faq_id`) names the
//! fields of other schemas. CMS pages and blocks (objects with HTML `content` and no such
//! list) are split into question/answer pairs. HTML answers become text; huge ones are capped.

use std::collections::HashSet;

use serde_json::Value;

use super::KnowledgeEntry;
use super::html;

/// The longest answer kept, in characters; longer ones are cut (and reported).
pub const MAX_ANSWER_CHARS: usize = 8_000;
/// The longest question kept, in characters.
pub const MAX_QUESTION_CHARS: usize = 500;

/// Which field holds what, as dotted paths inside each item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mapping {
    pub id: Option<String>,
    pub question: Option<String>,
    pub answer: Option<String>,
    pub variants: Option<String>,
    pub url: Option<String>,
    pub category: Option<String>,
}

const QUESTION_KEYS: &[&str] = &["question", "title", "q", "faq_question", "name"];
const ANSWER_KEYS: &[&str] = &["answer", "content", "a", "text", "body", "faq_answer"];
const ID_KEYS: &[&str] = &["id", "faq_id", "uid", "identifier"];

impl Mapping {
    /// Parses `key=path,key=path`; keys are id, question, answer, variants, url, category.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let mut m = Mapping::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, path) = pair.split_once('=').ok_or_else(|| format!("'{pair}' is not key=field"))?;
            let path = Some(path.trim().to_string()).filter(|p| !p.is_empty());
            match key.trim() {
                "id" => m.id = path,
                "question" => m.question = path,
                "answer" => m.answer = path,
                "variants" => m.variants = path,
                "url" => m.url = path,
                "category" => m.category = path,
                other => return Err(format!("unknown key '{other}' (id, question, answer, variants, url, category)")),
            }
        }
        Ok(m)
    }
}

fn at<'v>(item: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(item, |v, key| v.get(key))
}

fn first_key<'v>(item: &'v Value, keys: &[&str]) -> Option<&'v Value> {
    keys.iter().find_map(|k| item.get(*k)).filter(|v| !v.is_null())
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(o) => o.get("html").or_else(|| o.get("text")).and_then(text_of),
        _ => None,
    }
}

fn unwrap_node(item: &Value) -> &Value {
    item.get("node").filter(|n| n.is_object()).unwrap_or(item)
}

fn is_faq_item(item: &Value, mapping: &Mapping) -> bool {
    let item = unwrap_node(item);
    let q = mapping.question.as_deref().map_or_else(|| first_key(item, QUESTION_KEYS), |p| at(item, p));
    let a = mapping.answer.as_deref().map_or_else(|| first_key(item, ANSWER_KEYS), |p| at(item, p));
    q.is_some_and(|v| text_of(v).is_some()) && a.is_some()
}

/// Finds the list of FAQ items, returning its JSON path and items.
fn find_list<'v>(value: &'v Value, mapping: &Mapping, path: &mut Vec<String>) -> Option<(String, &'v Vec<Value>)> {
    match value {
        Value::Array(items) if items.iter().any(|i| is_faq_item(i, mapping)) => Some((path.join("."), items)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            path.push(i.to_string());
            let found = find_list(v, mapping, path);
            path.pop();
            found
        }),
        Value::Object(o) => o.iter().find_map(|(k, v)| {
            path.push(k.clone());
            let found = find_list(v, mapping, path);
            path.pop();
            found
        }),
        _ => None,
    }
}

/// What one page yielded.
#[derive(Debug, Default)]
pub struct Extracted {
    pub entries: Vec<KnowledgeEntry>,
    /// Items in the page's list (0 means the source is exhausted for offset paging).
    pub items: usize,
    /// Problems that skipped or changed an item, with where they were.
    pub warnings: Vec<String>,
}

fn clean(text: &str, max: usize) -> (String, bool) {
    let text = if html::looks_like_html(text) { html::to_text(text) } else { text.trim().to_string() };
    if text.chars().count() > max { (text.chars().take(max).collect(), true) } else { (text, false) }
}

/// A stable id for an item without one: a hash of its question.
fn derived_id(question: &str) -> String {
    use sha2::Digest;
    format!("q-{}", hex::encode(&sha2::Sha256::digest(question.trim().to_lowercase().as_bytes())[..8]))
}

/// Extracts the entries of one page of `data`.
pub fn extract(data: &Value, mapping: &Mapping, page: u32) -> Extracted {
    let mut out = Extracted::default();
    let Some((path, items)) = find_list(data, mapping, &mut Vec::new()) else {
        return cms(data, page);
    };
    out.items = items.len();
    for (i, raw) in items.iter().enumerate() {
        let item = unwrap_node(raw);
        let here = format!("page {page}, {path}.{i}");
        let get = |explicit: &Option<String>, keys: &[&str]| {
            explicit.as_deref().map_or_else(|| first_key(item, keys), |p| at(item, p)).and_then(text_of)
        };
        let Some(question) = get(&mapping.question, QUESTION_KEYS).filter(|q| !q.trim().is_empty()) else {
            out.warnings.push(format!("{here}: no question, skipped"));
            continue;
        };
        let Some(answer) = get(&mapping.answer, ANSWER_KEYS).filter(|a| !a.trim().is_empty()) else {
            out.warnings.push(format!("{here}: no answer, skipped"));
            continue;
        };
        let (question, _) = clean(&question, MAX_QUESTION_CHARS);
        let (answer, cut) = clean(&answer, MAX_ANSWER_CHARS);
        if cut {
            out.warnings.push(format!("{here}: answer longer than {MAX_ANSWER_CHARS} characters, cut"));
        }
        let id = get(&mapping.id, ID_KEYS).filter(|id| !id.trim().is_empty()).unwrap_or_else(|| derived_id(&question));
        let variants = mapping
            .variants
            .as_deref()
            .map_or_else(|| item.get("variants"), |p| at(item, p))
            .and_then(Value::as_array)
            .map(|v| v.iter().filter_map(text_of).map(|t| clean(&t, MAX_QUESTION_CHARS).0).collect())
            .unwrap_or_default();
        out.entries.push(KnowledgeEntry {
            id,
            question,
            answer,
            variants,
            category: get(&mapping.category, &["category", "group"]),
            url: get(&mapping.url, &["url"]),
        });
    }
    out
}

/// FAQ pairs from CMS HTML (`cmsPage.content`, `cmsBlocks.items[].content`).
fn cms(data: &Value, page: u32) -> Extracted {
    let mut out = Extracted::default();
    let mut contents = Vec::new();
    collect_content(data, &mut Vec::new(), &mut contents);
    for (path, identifier, html_text) in contents {
        out.items += 1;
        let pairs = html::faq_pairs(&html_text);
        if pairs.is_empty() {
            out.warnings.push(format!("page {page}, {path}: no question/answer pairs in the HTML"));
        }
        for (n, (question, answer)) in pairs.into_iter().enumerate() {
            let (answer, cut) = clean(&answer, MAX_ANSWER_CHARS);
            if cut {
                out.warnings.push(format!("page {page}, {path}: answer {n} cut to {MAX_ANSWER_CHARS} characters"));
            }
            let id = match &identifier {
                Some(ident) => format!("{ident}#{}", derived_id(&question)),
                None => derived_id(&question),
            };
            out.entries.push(KnowledgeEntry {
                id,
                question: clean(&question, MAX_QUESTION_CHARS).0,
                answer,
                variants: Vec::new(),
                category: None,
                url: None,
            });
        }
    }
    out
}

fn collect_content(value: &Value, path: &mut Vec<String>, out: &mut Vec<(String, Option<String>, String)>) {
    match value {
        Value::Object(o) => {
            if let Some(Value::String(html_text)) = o.get("content") {
                let ident = o.get("identifier").and_then(Value::as_str).map(str::to_string);
                out.push((path.join("."), ident, html_text.clone()));
                return;
            }
            for (k, v) in o {
                path.push(k.clone());
                collect_content(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                collect_content(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Drops entries whose id was seen before (the first wins), reporting each.
pub fn dedupe(entries: &mut Vec<KnowledgeEntry>, warnings: &mut Vec<String>) {
    let mut seen = HashSet::new();
    entries.retain(|e| {
        let fresh = seen.insert(e.id.clone());
        if !fresh {
            warnings.push(format!("duplicate id '{}': kept the first", e.id));
        }
        fresh
    });
}

/// Where [`extract`] took each part of an entry from, as JSON paths inside the page's `data`
/// (`[]` stands for every item of a list): the admin's test button shows it so a wrong guess
/// can be corrected with `graphql_fields`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldsUsed {
    /// `list` (objects in a list) or `cms` (question/answer pairs split from CMS HTML).
    pub source: &'static str,
    /// Whether `graphql_fields` named the fields (otherwise they were found automatically).
    pub mapped: bool,
    /// The list of items, or the CMS objects whose `content` was split.
    pub list: String,
    /// Where each entry's question came from.
    pub question: String,
    /// Where each entry's answer came from (`.html` when the HTML of an object was taken).
    pub answer: String,
    /// Where each entry's id came from, or how it was derived.
    pub id: String,
}

/// Which fields of `data` [`extract`] reads with `mapping`; `None` when it finds neither a
/// list of FAQ items nor CMS content.
pub fn fields_used(data: &Value, mapping: &Mapping) -> Option<FieldsUsed> {
    if let Some((path, items)) = find_list(data, mapping, &mut Vec::new()) {
        let raw = items.iter().find(|i| is_faq_item(i, mapping))?;
        let item = unwrap_node(raw);
        let prefix = if std::ptr::eq(item, raw) { format!("{path}[]") } else { format!("{path}[].node") };
        let field = |explicit: &Option<String>, keys: &[&str]| {
            let found = match explicit {
                Some(p) => at(item, p).map(|v| (p.clone(), v)),
                None => keys.iter().find_map(|k| item.get(*k).map(|v| (k.to_string(), v))),
            };
            found.filter(|(_, v)| !v.is_null()).map(|(name, v)| {
                let inner = match v {
                    Value::Object(o) if o.contains_key("html") => ".html",
                    Value::Object(o) if o.contains_key("text") => ".text",
                    _ => "",
                };
                format!("{prefix}.{name}{inner}")
            })
        };
        return Some(FieldsUsed {
            source: "list",
            mapped: mapping.question.is_some() || mapping.answer.is_some() || mapping.id.is_some(),
            list: path.clone(),
            question: field(&mapping.question, QUESTION_KEYS).unwrap_or_else(|| "(none)".into()),
            answer: field(&mapping.answer, ANSWER_KEYS).unwrap_or_else(|| "(none)".into()),
            id: field(&mapping.id, ID_KEYS).unwrap_or_else(|| "none: derived from the question".into()),
        });
    }
    let mut contents = Vec::new();
    collect_content(data, &mut Vec::new(), &mut contents);
    let (first, identifier, _) = contents.first()?;
    let list = contents.iter().map(|(path, _, _)| path.as_str()).collect::<Vec<_>>().join(", ");
    Some(FieldsUsed {
        source: "cms",
        mapped: false,
        list,
        question: format!("headings, <dt> and <summary> in the HTML of {first}.content"),
        answer: "the text after each question, up to the next".into(),
        id: match identifier {
            Some(_) => format!("{first}.identifier and a hash of the question"),
            None => "none: derived from the question".into(),
        },
    })
}

/// What [`extract`] looks for with `mapping`, in words: said when a page gave no entries.
pub fn looked_for(mapping: &Mapping) -> String {
    let named = |explicit: &Option<String>, keys: &[&str]| match explicit {
        Some(path) => format!("at {path}"),
        None => format!("one of {}", keys.join(", ")),
    };
    format!(
        "a list of objects (Relay edges[].node too) with a question ({}) and an answer ({}), \
         or objects with HTML content (CMS pages and blocks) holding headed questions",
        named(&mapping.question, QUESTION_KEYS),
        named(&mapping.answer, ANSWER_KEYS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_lists_relay_nodes_mappings_and_cms() {
        let data = json!({"faq": [{"question": "Q1?", "answer": "<p>A1 &amp; more</p>", "id": 7}, {"question": "", "answer": "x"}]});
        let e = extract(&data, &Mapping::default(), 1);
        assert_eq!(e.items, 2);
        assert_eq!(e.entries.len(), 1);
        assert_eq!((e.entries[0].id.as_str(), e.entries[0].answer.as_str()), ("7", "A1 & more"));
        assert_eq!(e.warnings, vec!["page 1, faq.1: no question, skipped"]);

        let relay =
            json!({"faqs": {"edges": [{"node": {"title": "T?", "content": {"html": "<b>C</b>"}, "uid": "u1"}}]}});
        let e = extract(&relay, &Mapping::default(), 2);
        assert_eq!(
            (e.entries[0].question.as_str(), e.entries[0].answer.as_str(), e.entries[0].id.as_str()),
            ("T?", "C", "u1")
        );

        let custom = json!({"x": {"rows": [{"faq_text": {"q": "Why?"}, "reply": "Because.", "key": "k1"}]}});
        let mapping = Mapping::parse("question=faq_text.q, answer=reply, id=key").unwrap();
        let e = extract(&custom, &mapping, 1);
        assert_eq!(e.entries[0].question, "Why?");
        assert!(Mapping::parse("colour=x").is_err());

        let cms_data = json!({"cmsPage": {"identifier": "faq", "content": "<h3>How long?</h3><p>2 days.</p>"}});
        let e = extract(&cms_data, &Mapping::default(), 1);
        assert_eq!(e.entries.len(), 1);
        assert!(e.entries[0].id.starts_with("faq#q-"));

        let mut entries = vec![e.entries[0].clone(), e.entries[0].clone()];
        let mut warnings = Vec::new();
        dedupe(&mut entries, &mut warnings);
        assert_eq!(entries.len(), 1);
        assert_eq!(warnings.len(), 1);
    }

    #[test]
    fn tells_which_fields_it_used() {
        let relay =
            json!({"faqs": {"edges": [{"node": {"title": "T?", "content": {"html": "<b>C</b>"}, "uid": "u1"}}]}});
        let used = fields_used(&relay, &Mapping::default()).unwrap();
        assert_eq!((used.source, used.mapped, used.list.as_str()), ("list", false, "faqs.edges"));
        assert_eq!(
            (used.question.as_str(), used.answer.as_str(), used.id.as_str()),
            ("faqs.edges[].node.title", "faqs.edges[].node.content.html", "faqs.edges[].node.uid")
        );
        let custom = json!({"x": {"rows": [{"faq_text": {"q": "Why?"}, "reply": "Because."}]}});
        let used = fields_used(&custom, &Mapping::parse("question=faq_text.q,answer=reply").unwrap()).unwrap();
        assert!(used.mapped);
        assert_eq!((used.question.as_str(), used.answer.as_str()), ("x.rows[].faq_text.q", "x.rows[].reply"));
        assert_eq!(used.id, "none: derived from the question");
        let cms_data = json!({"cmsPage": {"identifier": "faq", "content": "<h3>How long?</h3><p>2 days.</p>"}});
        let used = fields_used(&cms_data, &Mapping::default()).unwrap();
        assert_eq!((used.source, used.list.as_str()), ("cms", "cmsPage"));
        assert!(fields_used(&json!({"shop": {"name": "x"}}), &Mapping::default()).is_none());
        assert!(looked_for(&Mapping::default()).contains("one of question, title"));
    }
}
