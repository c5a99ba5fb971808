//! The operations users invoke, returning typed reports; `cli` prints them, `server` reuses them.

pub mod agents;
pub mod clone;
pub mod shared;
