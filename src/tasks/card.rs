//! What a task card says: a name the team can scan, and a description with the summary, the
//! visitor's contact details (marked unverified: anyone can type any name), the page, the end
//! of the conversation and where to find it — by our public conversation id, never the session
//! token. The description ends with a marker unique to the request, so a retry after an
//! ambiguous failure finds the card it may already have made instead of making another.

use crate::store::{Message, Role};

/// Trello's limit for a card's name and description.
const MAX_TEXT: usize = 16_384;
/// How many of the latest messages the card quotes.
const EXCERPT_MESSAGES: usize = 8;
/// How much of one message the card quotes.
const EXCERPT_CHARS: usize = 400;

/// Everything a card is written from.
#[derive(Debug, Clone, Default)]
pub struct CardFacts<'a> {
    pub title: &'a str,
    /// The request in a few sentences (the model's description, or the visitor's words).
    pub summary: &'a str,
    /// Contact details the visitor gave in the chat or the host page passed (unverified).
    pub contact: Vec<String>,
    pub page: Option<&'a str>,
    /// Our public conversation id.
    pub conversation: &'a str,
    /// Where an admin opens the conversation, when the server knows its public URL.
    pub conversation_url: Option<String>,
    pub history: &'a [Message],
    /// The request's marker (see [`marker`]).
    pub marker: &'a str,
}

/// A card ready to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardText {
    pub name: String,
    pub desc: String,
}

/// The marker of request `n` of a conversation: found again in the card's description.
pub fn marker(conversation: &str, request: i64) -> String {
    format!("aia-task:{conversation}:{request}")
}

/// The card's name and Markdown description.
pub fn compose(f: &CardFacts<'_>) -> CardText {
    let name = clip(&one_line(f.title), 200);
    let mut desc = String::new();
    desc.push_str(&clip(f.summary.trim(), 4_000));
    desc.push_str("\n\n");
    if !f.contact.is_empty() {
        desc.push_str("**Contact (unverified, given in the chat):** ");
        desc.push_str(&f.contact.iter().map(|c| one_line(c)).collect::<Vec<_>>().join(" · "));
        desc.push('\n');
    }
    if let Some(page) = f.page.filter(|p| !p.trim().is_empty()) {
        desc.push_str(&format!("**Page:** {}\n", one_line(page)));
    }
    match &f.conversation_url {
        Some(url) => desc.push_str(&format!("**Conversation:** [{}]({url})\n", f.conversation)),
        None => desc.push_str(&format!("**Conversation:** {}\n", f.conversation)),
    }
    let start = f.history.len().saturating_sub(EXCERPT_MESSAGES);
    let quoted: Vec<String> = f.history[start..]
        .iter()
        .filter(|m| !m.text.trim().is_empty())
        .map(|m| format!("> **{}:** {}", speaker(m.role), clip(&one_line(&m.text), EXCERPT_CHARS)))
        .collect();
    if !quoted.is_empty() {
        desc.push_str("\n**Chat excerpt**\n\n");
        desc.push_str(&quoted.join("\n>\n"));
        desc.push('\n');
    }
    let footer = format!("\n---\nCreated by the website assistant · ref `{}`", f.marker);
    let desc = format!("{}{footer}", clip(&desc, MAX_TEXT - footer.chars().count() - 1));
    CardText { name, desc }
}

fn speaker(role: Role) -> &'static str {
    match role {
        Role::Visitor => "Visitor",
        Role::Assistant => "Assistant",
        Role::Operator => "Operator",
        Role::System => "Notice",
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters, with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: Role, text: &str) -> Message {
        Message {
            seq: 0,
            session_id: 1,
            role,
            text: text.into(),
            client_msg_id: None,
            reply_to: None,
            source: None,
            entry_id: None,
            created_at: 0,
            feedback: None,
            author: None,
            attachments: Vec::new(),
            products: Vec::new(),
        }
    }

    #[test]
    fn the_card_carries_what_the_team_needs_and_the_marker() {
        let history = vec![
            message(Role::Visitor, "My kettle arrived broken."),
            message(Role::Assistant, "I'm sorry to hear that."),
            message(Role::Visitor, "Please call me back:\n+49 171 2345678"),
        ];
        let m = marker("c-8f3a", 1);
        let card = compose(&CardFacts {
            title: "Callback: Please call me back",
            summary: "The visitor's kettle arrived broken; they want a call back.",
            contact: vec!["Dana <dana@example.org>".into(), "+49 171 2345678".into()],
            page: Some("https://shop.example/orders/1001"),
            conversation: "c-8f3a",
            conversation_url: None,
            history: &history,
            marker: &m,
        });
        assert_eq!(card.name, "Callback: Please call me back");
        for part in [
            "kettle arrived broken; they want a call back",
            "**Contact (unverified, given in the chat):** Dana <dana@example.org> · +49 171 2345678",
            "**Page:** https://shop.example/orders/1001",
            "**Conversation:** c-8f3a",
            "> **Visitor:** Please call me back: +49 171 2345678",
            "ref `aia-task:c-8f3a:1`",
        ] {
            assert!(card.desc.contains(part), "{part} in {}", card.desc);
        }
    }

    #[test]
    fn long_texts_fit_trello_and_keep_the_marker() {
        let long = "word ".repeat(10_000);
        let history: Vec<Message> = (0..50).map(|_| message(Role::Visitor, &long)).collect();
        let m = marker("c-1", 7);
        let card = compose(&CardFacts {
            title: &long,
            summary: &long,
            conversation: "c-1",
            history: &history,
            marker: &m,
            ..CardFacts::default()
        });
        assert!(card.name.chars().count() <= 200);
        assert!(card.desc.chars().count() <= MAX_TEXT, "{}", card.desc.chars().count());
        assert!(card.desc.ends_with("ref `aia-task:c-1:7`"));
    }
}
