//! The shop's product catalog: finding products through the client's store GraphQL
//! (`shared/contracts/graphql-magento.md` §3) and turning them into the product cards a visitor
//! sees ([`crate::realtime::protocol::ProductView`]).
//!
//! - [`intent`]: whether a visitor's words ask for a product, without a model.
//! - [`setup`]: each client's catalog from its settings, and the card an answer stores.
//! - [`timing`]: our share of a product answer's latency, for the benchmark.
//! - [`search`]: the product-search client (Magento 2's `products` query by default, other
//!   schemas through a field mapping), its errors and a short per-client result cache.

pub mod intent;
pub mod search;
pub mod setup;
pub mod timing;
