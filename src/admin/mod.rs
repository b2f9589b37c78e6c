//! Admin accounts of the panel: who may sign in (Argon2id passwords, the first account made on
//! first start), how signing in is slowed down after wrong passwords, and what each account may
//! manage. Nothing here knows HTTP; `http::admin` turns these into cookies and responses.

pub mod accounts;
pub mod password;
pub mod throttle;

pub use accounts::{Principal, SignInError, SignedIn};
pub use throttle::LoginThrottle;
