//! gantry: a declarative GitOps reconciler for upgrades.

pub mod manifest;
pub mod policy;
pub mod state;
