//! The human operator (Chatwoot). `signature`, `webhook` and `handoff` are pure decisions (is
//! a webhook genuine, what it means, when to hand off and what the agent reads); `chatwoot` is
//! the client of its API. The webhook route and the outbox act on them.

pub mod cable;
pub mod chatwoot;
pub mod handoff;
pub mod inbound;
pub mod relay;
pub mod signature;
pub mod webhook;
