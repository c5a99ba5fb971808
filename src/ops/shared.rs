//! One recorded state across machines: a pass with a remote starts from the remote's recorded
//! state and ends by publishing its outcomes (see `source::sync` for the guarantees).

use std::sync::atomic::AtomicBool;

use crate::manifest::RepoConfig;
use crate::reconcile::apply::{ApplyError, ApplyOptions, ApplyReport, apply, apply_holding_lock};
use crate::reconcile::attempt::ProgressSink;
use crate::source::WatchedRepo;
use crate::source::remote::{GitAuth, Remote};
use crate::source::sync::{self, SyncError};
use crate::state::ReconcilerLock;

/// Why a shared pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The pass itself.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Fetching or publishing recorded state; nothing ran when it happened before the pass.
    #[error("{0}")]
    Sync(#[from] SyncError),
}

/// `gantry.toml` at the tip of the desired branch (defaults when absent or unreadable: the
/// pass itself reports a broken file with its line).
pub fn repo_config(repo: &WatchedRepo) -> RepoConfig {
    let read = || -> Option<RepoConfig> {
        let tip = repo.branch_tip(&repo.desired_branch_hint()).ok()?;
        let bytes = repo.read_file(tip, "gantry.toml").ok()??;
        toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()
    };
    read().unwrap_or_default()
}

/// Before a pass (holding the lock): fast-forward the desired branch from the remote and make
/// the recorded state the remote's when it is ahead. Without `remote` in gantry.toml: nothing.
///
/// # Errors
/// [`SyncError`]: the pass must not run on a state that may be stale.
pub fn sync_before(repo: &WatchedRepo, config: &RepoConfig, auth: &GitAuth) -> Result<(), SyncError> {
    let Some(name) = &config.remote else {
        return Ok(());
    };
    let remote = Remote::open(&repo.repo, name, auth)?;
    sync::fetch_desired(&repo.repo, &remote, &config.desired_branch)?;
    sync::sync_state(&repo.repo, &remote, &config.state_branch)?;
    Ok(())
}

/// After a pass: publish outcome commits (rebuilt on the remote's tip on rejection).
///
/// # Errors
/// [`SyncError`]; the outcomes stay committed locally and the next pass publishes them.
pub fn publish_after(repo: &WatchedRepo, config: &RepoConfig, auth: &GitAuth) -> Result<(), SyncError> {
    let Some(name) = &config.remote else {
        return Ok(());
    };
    let remote = Remote::open(&repo.repo, name, auth)?;
    sync::push_state(&repo.repo, &remote, &config.state_branch).map(|_| ())
}

/// `gantry apply` with a remote: sync, one pass, publish, all under the repository lock
/// (a dry run takes no lock and publishes nothing; it still starts from the remote's state).
///
/// # Errors
/// [`SharedError`].
pub fn apply_shared(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    auth: &GitAuth,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, SharedError> {
    let config = repo_config(repo);
    if config.remote.is_none() {
        return Ok(apply(repo, options, progress)?);
    }
    if options.dry_run {
        let lock = ReconcilerLock::acquire(repo.repo.path()).map_err(ApplyError::Locked)?;
        sync_before(repo, &config, auth)?;
        drop(lock);
        return Ok(apply(repo, options, progress)?);
    }
    let lock = ReconcilerLock::acquire(repo.repo.path()).map_err(ApplyError::Locked)?;
    sync_before(repo, &config, auth)?;
    let report = apply_holding_lock(repo, &lock, options, &AtomicBool::new(false), progress)?;
    if (!report.outcomes.is_empty() || report.resumed > 0)
        && let Err(e) = publish_after(repo, &config, auth)
    {
        // The outcomes are committed locally; the next pass (or daemon) publishes them first.
        tracing::warn!("{e}; the outcomes are recorded locally and published by the next pass");
    }
    Ok(report)
}
