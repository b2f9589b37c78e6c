//! Language-model providers: [`chat`] is a conversation in the product's terms and the
//! [`chat::Protocol`] each provider implements ([`openai`] and every compatible server,
//! [`anthropic`]); [`endpoint`] resolves where a client's model lives, [`client`]
//! streams one completion over HTTP with timeouts and retries, [`breaker`] stops calling a
//! provider that keeps failing, [`sse`] turns response bytes
//! into events.

pub mod anthropic;
pub mod breaker;
pub mod chat;
pub mod client;
pub mod endpoint;
pub mod openai;
pub mod sse;
