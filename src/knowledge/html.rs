//! HTML to text, and FAQ pairs out of CMS HTML. Shops keep FAQs as HTML in CMS pages and
//! blocks: a heading, `<dt>` or `<summary>` is a question and what follows it (up to the next
//! one) its answer. Answers are stored as plain text — the widget shows text, never HTML.

/// A lexed piece of HTML.
enum Token<'a> {
    Text(&'a str),
    Open(String),
    Close(String),
}

fn lex(html: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        if lt > 0 {
            out.push(Token::Text(&rest[..lt]));
        }
        let after = &rest[lt + 1..];
        let Some(gt) = after.find('>') else {
            out.push(Token::Text(&rest[lt..]));
            return out;
        };
        let tag = &after[..gt];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !name.is_empty() {
            out.push(if closing { Token::Close(name) } else { Token::Open(name) });
        }
        rest = &after[gt + 1..];
    }
    if !rest.is_empty() {
        out.push(Token::Text(rest));
    }
    out
}

/// Decodes the character references that occur in shop content.
fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| match &after[..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" | "#39" => Some('\''),
            "nbsp" => Some(' '),
            n if n.starts_with("#x") || n.starts_with("#X") => {
                u32::from_str_radix(&n[2..], 16).ok().and_then(char::from_u32)
            }
            n if n.starts_with('#') => n[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const BLOCKS: &[&str] = &["p", "br", "div", "li", "ul", "ol", "tr", "table", "section", "blockquote"];
const SKIP: &[&str] = &["script", "style", "template"];

fn tidy(text: &str) -> String {
    let lines: Vec<String> =
        text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|l| !l.is_empty()).collect();
    lines.join("\n")
}

/// Whether text looks like HTML rather than plain text.
pub fn looks_like_html(text: &str) -> bool {
    text.contains('<') && text.contains('>') && lex(text).iter().any(|t| matches!(t, Token::Open(_) | Token::Close(_)))
}

/// The visible text of an HTML fragment, block elements on their own lines.
pub fn to_text(html: &str) -> String {
    let mut out = String::new();
    let mut skipping: Option<String> = None;
    for token in lex(html) {
        match token {
            Token::Open(n) if SKIP.contains(&n.as_str()) => skipping = Some(n),
            Token::Close(n) if skipping.as_deref() == Some(n.as_str()) => skipping = None,
            _ if skipping.is_some() => {}
            Token::Text(t) => out.push_str(&decode(t)),
            Token::Open(n) | Token::Close(n) if BLOCKS.contains(&n.as_str()) || is_question_tag(&n) => out.push('\n'),
            _ => {}
        }
    }
    tidy(&out)
}

fn is_question_tag(name: &str) -> bool {
    matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "dt" | "summary")
}

/// Question/answer pairs of a CMS page or block: headings, `<dt>`/`<dd>` and
/// `<details>`/`<summary>` open a question; the text after it, up to the next one, is the
/// answer. Pairs without an answer are dropped.
pub fn faq_pairs(html: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let (mut question, mut answer) = (None::<String>, String::new());
    let mut in_question: Option<String> = None;
    let mut q_text = String::new();
    let mut skipping: Option<String> = None;
    let flush = |question: &mut Option<String>, answer: &mut String, pairs: &mut Vec<(String, String)>| {
        if let Some(q) = question.take() {
            let a = tidy(answer);
            if !q.is_empty() && !a.is_empty() {
                pairs.push((q, a));
            }
        }
        answer.clear();
    };
    for token in lex(html) {
        match token {
            Token::Open(n) if SKIP.contains(&n.as_str()) => skipping = Some(n),
            Token::Close(n) if skipping.as_deref() == Some(n.as_str()) => skipping = None,
            _ if skipping.is_some() => {}
            Token::Open(n) if is_question_tag(&n) => {
                flush(&mut question, &mut answer, &mut pairs);
                in_question = Some(n);
                q_text.clear();
            }
            Token::Close(n) if in_question.as_deref() == Some(n.as_str()) => {
                in_question = None;
                question = Some(tidy(&q_text).replace('\n', " "));
            }
            Token::Close(n) if n == "details" => flush(&mut question, &mut answer, &mut pairs),
            Token::Text(t) if in_question.is_some() => q_text.push_str(&decode(t)),
            Token::Text(t) if question.is_some() => answer.push_str(&decode(t)),
            Token::Open(n) | Token::Close(n) if question.is_some() && BLOCKS.contains(&n.as_str()) => answer.push('\n'),
            _ => {}
        }
    }
    flush(&mut question, &mut answer, &mut pairs);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cms_html_splits_into_pairs() {
        let html = "<h2>FAQ</h2><h3>How long does shipping take?</h3><p>2&ndash;4 days &amp; free.</p><p>Really.</p>\
                    <dl><dt>Can I pay by invoice?</dt><dd>Yes, up to 500&nbsp;EUR.</dd></dl>\
                    <details><summary>Returns?</summary>30 days <b>free</b>.</details><script>alert(1)</script>";
        let pairs = faq_pairs(html);
        assert_eq!(
            pairs,
            vec![
                ("How long does shipping take?".to_string(), "2&ndash;4 days & free.\nReally.".to_string()),
                ("Can I pay by invoice?".to_string(), "Yes, up to 500 EUR.".to_string()),
                ("Returns?".to_string(), "30 days free.".to_string()),
            ]
        );
        assert_eq!(to_text("<p>a &lt;b&gt;</p><p>c</p><style>x{}</style>"), "a <b>\nc");
        assert!(looks_like_html("<p>x</p>") && !looks_like_html("1 < 2 > 0"));
    }
}
