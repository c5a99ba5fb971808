//! gantry: a declarative GitOps reconciler for upgrades.

pub mod cli;
pub mod cluster;
pub mod executor;
pub mod hex;
pub mod manifest;
pub mod ops;
pub mod plan;
pub mod policy;
pub mod prefetch;
pub mod reconcile;
pub mod render;
pub mod server;
pub mod source;
pub mod state;
/// An error and its causes on one line (`opening …/lock: Read-only file system (os error 30)`),
/// skipping a cause whose text the message already holds. Messages name the OS error this way
/// wherever an error is shown to people (the CLI, the daemon's logs and API).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
