//! History: the outcomes recorded on the state branch, newest first (`gantry history`).

use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::{HistoryEntry, read_history};

use super::{OpsError, resolve_commit};

/// Recorded outcomes, newest first, of every target or of `target`.
///
/// The state branch is the one the desired branch's `gantry.toml` names; a repository without a
/// desired branch yet uses the default name.
///
/// # Errors
/// The repository or the state branch cannot be read.
pub fn history(repo: &WatchedRepo, target: Option<&str>) -> Result<Vec<HistoryEntry>, OpsError> {
    let state_branch = match resolve_commit(repo, None) {
        Ok(commit) => load_commit(repo, commit)?.desired.config.state_branch,
        Err(_) => crate::manifest::RepoConfig::default().state_branch,
    };
    Ok(read_history(&repo.repo, &state_branch, target)?)
}
