//! Manifests: the serde types of every kind, their parsing with locations, and validation.
pub mod document;
pub mod schema;
pub mod types;

pub use types::*;
