//! Reading and writing the state branch: records as YAML files in commits made without a work tree.
//!
//! The state branch holds `targets/<target>.yaml` and `rollouts/<component>@<version>.yaml`
//! (SPEC §4). [`read_recorded`] parses the branch tip into a [`RecordedState`]; a
//! [`StateWriter`] turns a [`Batch`] of record changes and finished attempts into one commit.
//! Both work on the object database only: the working tree, the index and `HEAD` are never read
//! or written, so gantry can record state in a repository someone is working in.

use git2::{ErrorCode, Oid, Repository};

use super::StateError;

mod message;
mod read;
pub mod state_cache;
mod write;

pub(crate) use message::trailer;

/// One record's text parsed as [`read_recorded`] parses it: the fast reader for text in the
/// canonical form gantry writes, serde-saphyr (the reference) for anything else, with its error.
pub(crate) fn parse_record_text<T>(text: &str) -> Result<T, serde_saphyr::Error>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    match read::fast_record(text) {
        Some(record) => Ok(record),
        None => serde_saphyr::from_str(text),
    }
}
pub use read::{RecordCache, enable_process_cache, read_recorded, read_recorded_cached, read_recorded_shared};
pub use write::{Batch, FinishedAttempt, Identity, StateWriter};

/// The directory of target records on the state branch.
pub const TARGETS_DIR: &str = "targets";
/// The directory of rollout records on the state branch.
pub const ROLLOUTS_DIR: &str = "rollouts";

const RECORD_EXT: &str = ".yaml";
const BLOB_MODE: i32 = 0o100_644;
const TREE_MODE: i32 = 0o040_000;
/// Commits writing at least this many records store them in one pack instead of loose objects.
const PACK_THRESHOLD: usize = 32;

/// The full reference name of a state branch (`gantry/state` → `refs/heads/gantry/state`).
///
/// A name that already starts with `refs/` is taken as it is.
///
/// # Errors
/// [`StateError::InvalidBranchName`] when git would not accept the name.
pub fn branch_ref(state_branch: &str) -> Result<String, StateError> {
    let full = if state_branch.starts_with("refs/") {
        state_branch.to_string()
    } else {
        format!("refs/heads/{state_branch}")
    };
    if git2::Reference::is_valid_name(&full) {
        Ok(full)
    } else {
        Err(StateError::InvalidBranchName {
            name: state_branch.to_string(),
        })
    }
}

/// The commit the state branch points at, or `None` when it does not exist yet.
///
/// # Errors
/// [`StateError::InvalidBranchName`], or [`StateError::Git`] when the reference cannot be read.
pub fn state_tip(repo: &Repository, state_branch: &str) -> Result<Option<Oid>, StateError> {
    let refname = branch_ref(state_branch)?;
    match repo.find_reference(&refname) {
        Ok(reference) => {
            let commit = reference
                .peel_to_commit()
                .map_err(|e| git_error(state_branch, "resolving the state branch to a commit", e))?;
            Ok(Some(commit.id()))
        }
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_error(state_branch, "reading the state branch reference", e)),
    }
}

pub(crate) fn git_error(branch: &str, action: impl Into<String>, source: git2::Error) -> StateError {
    StateError::Git {
        branch: branch.to_string(),
        action: action.into(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests;
