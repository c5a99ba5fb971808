//! Operations users invoke, returning typed reports; `cli` and `server` call these.

pub mod approve;
