//! gantry: a declarative GitOps reconciler for upgrades.

pub mod executor;
pub mod manifest;
pub mod state;
