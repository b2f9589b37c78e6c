//! The human operator (Chatwoot): what its webhooks mean and whether they are genuine. Pure
//! domain logic: no HTTP and no SQL here; the webhook route and the outbox use it.

pub mod chatwoot;
pub mod signature;
pub mod webhook;
