//! Prototype of `aia-chat`'s local sentence embedder (to become `src/semantic/local.rs`),
//! with its evaluation and benchmark binaries.
#![deny(missing_docs)]

pub mod local;
pub mod tools;
