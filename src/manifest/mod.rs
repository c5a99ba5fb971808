//! Manifests: the serde types of every kind, their parsing with locations, and validation.
pub mod document;
pub mod types;

pub use types::*;
