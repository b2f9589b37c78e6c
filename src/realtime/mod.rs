//! The realtime side: the versioned frame protocol, the session hub that delivers events to
//! every socket of a session, and the abuse limits.

pub mod hub;
pub mod limits;
pub mod protocol;

pub use hub::Hub;
pub use limits::{LimitSettings, Limits};
