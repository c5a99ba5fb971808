//! The seam through which a high-availability cluster (`crate::cluster`, issue #14) fences this
//! process's state writes. Without `--etcd` nothing is installed and every call is a no-op, so
//! the file journal and outcome commits behave exactly as before.
//!
//! # Contract
//! - [`journal_written`] runs after every journal line is written to the file and **before** the
//!   caller goes on (a `StepStarted` line is written just before its step starts). The cluster
//!   stores the whole journal in etcd in a transaction that succeeds only while this member's
//!   leadership is current; an error makes the journal write fail, so the step does not start.
//! - [`journal_removed`] runs after an attempt's journal is removed (its outcome committed
//!   locally). The stored copy stays until [`published`]: a successor that finds the outcome
//!   missing from the shared state resumes the attempt from it instead of running it again.
//! - [`published`] runs once outcomes reached the shared recorded state (pushed, or committed
//!   when there is no remote): the stored copies of removed journals go.
//! - [`trailer`] is the `Gantry-Fence:` value outcome commits carry (`shard/member@revision`).

use std::path::Path;
use std::sync::OnceLock;

/// What a cluster does around state writes (see the module docs).
pub trait StateFence: Send + Sync {
    /// The journal at `path` changed: store it, fenced. `Err` carries a one-line reason.
    fn journal_written(&self, path: &Path) -> Result<(), String>;
    /// The journal at `path` was removed: its stored copy is to go once published.
    fn journal_removed(&self, path: &Path) -> Result<(), String>;
    /// Outcomes are published: remove the stored copies of removed journals, fenced.
    fn published(&self);
    /// The `Gantry-Fence:` trailer value, while this process leads.
    fn trailer(&self) -> Option<String>;
}

static FENCE: OnceLock<Box<dyn StateFence>> = OnceLock::new();

/// Installs the process's fence (once: a daemon joins one shard for its whole life).
/// Returns `false` when one was installed already.
pub fn install(fence: Box<dyn StateFence>) -> bool {
    FENCE.set(fence).is_ok()
}

/// See [`StateFence::journal_written`]; `Ok` when no fence is installed.
pub(crate) fn journal_written(path: &Path) -> Result<(), String> {
    FENCE.get().map_or(Ok(()), |f| f.journal_written(path))
}

/// See [`StateFence::journal_removed`]; `Ok` when no fence is installed.
pub(crate) fn journal_removed(path: &Path) -> Result<(), String> {
    FENCE.get().map_or(Ok(()), |f| f.journal_removed(path))
}

/// See [`StateFence::published`].
pub(crate) fn published() {
    if let Some(f) = FENCE.get() {
        f.published();
    }
}

/// See [`StateFence::trailer`].
pub(crate) fn trailer() -> Option<String> {
    FENCE.get().and_then(|f| f.trailer())
}
