//! Language-model providers. The wire formats live here, free of the rest of the server:
//! [`sse`] turns response bytes into events, [`openai`] turns OpenAI-compatible chat
//! completion events into forwarded text, assembled tool calls and usage.

pub mod openai;
pub mod sse;
