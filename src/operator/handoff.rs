//! When a conversation should go to a person, and what the person is given: pure decisions
//! over the visitor's text and the stored conversation, so the socket and the outbox only act.

use crate::store::{Message, Role};

/// Why a hand-off starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The widget's "talk to a human" action.
    Asked,
    /// The visitor's words matched `handoff_keywords`.
    Keyword,
    /// The model called `handoff_to_human`.
    Model,
    /// `handoff_after_unanswered` "don't know" answers in a row.
    Unanswered,
}

impl Trigger {
    /// For the agent's transcript and the logs.
    pub fn describe(self) -> &'static str {
        match self {
            Trigger::Asked => "the visitor asked for a person",
            Trigger::Keyword => "the visitor's message asked for a person",
            Trigger::Model => "the assistant decided a person should take over",
            Trigger::Unanswered => "the assistant could not answer several questions in a row",
        }
    }
}

/// Whether `text` asks for a person: one of the comma-separated `keywords` appears as whole
/// words (case-insensitive), so "agent" matches "an agent please" but not "agentur".
pub fn asks_for_person(text: &str, keywords: &str) -> bool {
    let words: Vec<String> = text.to_lowercase().split(|c: char| !c.is_alphanumeric()).map(str::to_string).collect();
    keywords.split(',').map(|k| k.trim().to_lowercase()).filter(|k| !k.is_empty()).any(|k| {
        let needle: Vec<&str> = k.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let hay: Vec<&str> = words.iter().map(String::as_str).filter(|w| !w.is_empty()).collect();
        !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_slice())
    })
}

/// How many of the latest assistant answers in a row were the honest "I don't know"
/// (`source` `fallback`), newest first; `history` is oldest first.
pub fn unanswered_streak(history: &[Message]) -> usize {
    history
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .take_while(|m| m.source.as_deref() == Some("fallback"))
        .count()
}

/// The conversation so far as the agent reads it: who said what, oldest first, with why the
/// hand-off happened and the page the visitor is on. Visitor-given names stay unverified.
pub fn transcript(history: &[Message], why: Trigger, page: Option<&str>, visitor: Option<&str>) -> String {
    let mut out = format!("Hand-off from the website assistant: {}.\n", why.describe());
    if let Some(page) = page {
        out.push_str(&format!("Page: {page}\n"));
    }
    if let Some(who) = visitor {
        out.push_str(&format!("Visitor says they are: {who} (unverified)\n"));
    }
    out.push_str("\nConversation so far:\n");
    for m in history {
        let who = match m.role {
            Role::Visitor => "Visitor",
            Role::Assistant => "Assistant",
            Role::Operator => "Operator",
            Role::System => "Notice",
        };
        out.push_str(&format!("{who}: {}\n", m.text.trim()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(role: Role, text: &str, source: Option<&str>) -> Message {
        Message {
            seq: 1,
            session_id: 1,
            role,
            text: text.into(),
            client_msg_id: None,
            reply_to: None,
            source: source.map(Into::into),
            entry_id: None,
            created_at: 0,
            feedback: None,
            author: None,
            attachments: Vec::new(),
            products: Vec::new(),
        }
    }

    #[test]
    fn keywords_match_whole_words_in_any_case() {
        let k = "human, real person, operator, оператор, Mensch";
        assert!(asks_for_person("Can I talk to a HUMAN please?", k));
        assert!(asks_for_person("I want a real   person!", k));
        assert!(asks_for_person("Дайте оператора? Ні, просто оператор.", k));
        assert!(asks_for_person("Bitte einen Mensch.", k));
        assert!(!asks_for_person("Is this humane?", k), "not inside a word");
        assert!(!asks_for_person("a person who is real", k), "phrases in order");
        assert!(!asks_for_person("human", ""), "no keywords, no match");
        assert!(!asks_for_person("", k));
    }

    #[test]
    fn the_streak_counts_only_the_latest_fallbacks() {
        let v = |t: &str| message(Role::Visitor, t, None);
        let a = |s: &str| message(Role::Assistant, "…", Some(s));
        let h =
            [v("q1"), a("fallback"), v("q2"), a("knowledge"), v("q3"), a("fallback"), v("q4"), a("fallback"), v("q5")];
        assert_eq!(unanswered_streak(&h), 2);
        assert_eq!(unanswered_streak(&h[..4]), 0);
        assert_eq!(unanswered_streak(&[]), 0);
    }

    #[test]
    fn the_transcript_reads_well_and_marks_what_is_unverified() {
        let h = [
            message(Role::Visitor, "Where is my order 1001?", None),
            message(Role::Assistant, "I don't know.", Some("fallback")),
        ];
        let t = transcript(&h, Trigger::Keyword, Some("https://shop.example/orders"), Some("Ada <ada@example.com>"));
        assert_eq!(
            t,
            "Hand-off from the website assistant: the visitor's message asked for a person.\n\
             Page: https://shop.example/orders\n\
             Visitor says they are: Ada <ada@example.com> (unverified)\n\n\
             Conversation so far:\nVisitor: Where is my order 1001?\nAssistant: I don't know.\n"
        );
    }
}
