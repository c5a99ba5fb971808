//! The daemon's remote: fetch the desired branch, keep the state branch in step with the
//! remote's (see `source::sync`), and report failures as one line for `/api/daemon`.

use crate::source::remote::{GitAuth, Remote};
use crate::source::sync::{self, Fetched, StateSync, SyncError};

/// Fetches the desired branch and fast-forwards the local one.
///
/// # Errors
/// [`SyncError`] naming the remote and the cause.
pub fn fetch_desired(
    repo: &git2::Repository,
    remote: &str,
    branch: &str,
    auth: &GitAuth,
) -> Result<Fetched, SyncError> {
    let remote = Remote::open(repo, remote, auth)?;
    sync::fetch_desired(repo, &remote, branch)
}

/// Before a pass: the state branch becomes the remote's when the remote is ahead, and our
/// unpublished outcomes are pushed. The daemon holds the reconciler lock.
///
/// # Errors
/// [`SyncError`] naming the remote and the cause.
pub fn sync_state(repo: &git2::Repository, remote: &str, branch: &str, auth: &GitAuth) -> Result<StateSync, SyncError> {
    let remote = Remote::open(repo, remote, auth)?;
    sync::sync_state(repo, &remote, branch)
}

/// After a pass: publish new outcome commits (rebuilt on the remote's tip on rejection).
///
/// # Errors
/// [`SyncError`] naming the remote and the cause.
pub fn push_state(repo: &git2::Repository, remote: &str, branch: &str, auth: &GitAuth) -> Result<(), SyncError> {
    let remote = Remote::open(repo, remote, auth)?;
    sync::push_state(repo, &remote, branch).map(|_| ())
}
