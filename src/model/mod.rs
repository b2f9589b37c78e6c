//! Language-model providers: [`endpoint`] resolves where a client's model lives, [`client`]
//! streams one completion over HTTP with timeouts and retries, [`breaker`] stops calling a
//! provider that keeps failing, [`sse`] turns response bytes
//! into events, and [`openai`] turns OpenAI-compatible chat-completion events into forwarded
//! text, assembled tool calls and usage.

pub mod breaker;
pub mod client;
pub mod endpoint;
pub mod openai;
pub mod sse;
