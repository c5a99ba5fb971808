//! The state branch: recorded state read from and written to `gantry/state` (SPEC §4).
pub mod record;

pub use record::*;
