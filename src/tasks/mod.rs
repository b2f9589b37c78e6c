//! Tasks made from chats: the task provider (Trello) a conversation becomes a card with.

pub mod trello;
