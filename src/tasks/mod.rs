//! Tasks made from chats: `detect` finds an explicit request without a model, `card` writes
//! what the team reads, and the task provider (Trello) a conversation becomes a card with.

pub mod card;
pub mod detect;
pub mod flow;
pub mod provider;
pub mod trello;
