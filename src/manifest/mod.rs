//! Manifests: the serde types of every kind, their parsing with locations, and validation.
//!
//! No I/O and no git here: callers hand in the bytes of a commit's files.
pub mod diagnostic;
pub mod document;
pub mod edit;
pub mod fleet;
pub mod health;
pub mod load;
pub mod parallel;
pub mod parse_cache;
pub mod schema;
pub mod secrets;
pub mod selectors;
pub mod types;
pub mod validate;
pub mod values;
pub mod version;

pub use diagnostic::{Diagnostic, Severity};
pub use load::{Kind, Manifest, Manifests, Origin, RawContent, RawFile, read_manifests};
pub use selectors::{LabelView, Selected, SelectorTable};
pub use types::*;
pub use validate::{Desired, Policy, PolicyMatch, Release, Requires, Target, release_in, selector_matches, validate};
pub use values::VersionWanted;
pub use version::{Version, VersionReq, Versioning};

/// The largest manifest gantry reads. Real manifests are kilobytes; this bounds memory.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
