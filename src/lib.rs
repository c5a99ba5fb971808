//! gantry: a declarative GitOps reconciler for upgrades.

pub mod cli;
pub mod cluster;
pub mod executor;
pub mod manifest;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod render;
pub mod server;
pub mod source;
pub mod state;
