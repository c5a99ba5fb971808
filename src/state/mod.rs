//! The state branch: recorded state read from and written to `gantry/state` (SPEC §4).
pub mod record;
mod tmp_reader;
pub use record::*;
pub use tmp_reader::*;
