//! gantry: a declarative GitOps reconciler for upgrades.

pub mod manifest;
pub mod state;
