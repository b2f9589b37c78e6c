//! A client's knowledge: FAQ entries and the full-text index the assistant retrieves from.
//! The index lives in memory and is rebuilt from the store whenever the client's knowledge
//! version changes, so no other process ever touches it.

pub mod dataset;
pub mod eval;
pub mod extract;
pub mod graphql;
pub mod html;
mod index;
pub mod run;
pub mod train;

pub use index::{Hit, KnowledgeIndex, STEMMED_LANGUAGES, Scored};

pub use crate::store::KnowledgeEntry;

/// The bundled sample FAQ of the invented demo shop.
pub fn demo_entries() -> Vec<KnowledgeEntry> {
    serde_json::from_str(include_str!("../../assets/demo-faq.json")).expect("bundled demo FAQ is valid JSON")
}
