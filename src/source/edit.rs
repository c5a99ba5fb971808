//! Commits on the desired branch that gantry proposes (e.g. `gantry rollback`), made with git2.

use std::path::Path;

use git2::{FileMode, Oid};

use super::{SourceError, WatchedRepo};

/// Where a proposed change goes.
#[derive(Debug, Clone)]
pub enum ChangeBranch {
    /// Onto the tip of the desired branch.
    Desired(String),
    /// A new branch from the desired branch's tip, for a pull request.
    New { base: String, name: String },
}

impl WatchedRepo {
    /// Writes one file's new content in a commit whose parent is the tip of the base branch,
    /// without touching the work tree, the index or HEAD. The commit is created first and only
    /// then is a branch moved (compare-and-swap against the tip it was built on), so `check`
    /// can refuse it (e.g. when it does not validate) before anyone sees it.
    ///
    /// # Errors
    /// git failures; [`SourceError::Refused`] when `check` refuses or the new branch exists.
    pub fn commit_file_change(
        &self,
        branch: &ChangeBranch,
        path: &str,
        content: &[u8],
        message: &str,
        check: impl FnOnce(Oid) -> Result<(), String>,
    ) -> Result<Oid, SourceError> {
        self.commit_files_change(branch, &[(path, content)], message, check)
    }

    /// [`commit_file_change`](Self::commit_file_change) for several files in one commit.
    ///
    /// # Errors
    /// As `commit_file_change`.
    pub fn commit_files_change(
        &self,
        branch: &ChangeBranch,
        files: &[(&str, &[u8])],
        message: &str,
        check: impl FnOnce(Oid) -> Result<(), String>,
    ) -> Result<Oid, SourceError> {
        let base = match branch {
            ChangeBranch::Desired(b) | ChangeBranch::New { base: b, .. } => b,
        };
        let tip = self.branch_tip(base)?;
        let parent = self.repo.find_commit(tip)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            let blob = self.repo.blob(content)?;
            let mode = parent
                .tree()?
                .get_path(Path::new(path))
                .map(|e| e.filemode())
                .unwrap_or(i32::from(FileMode::Blob));
            let mode = if mode == i32::from(FileMode::BlobExecutable) {
                FileMode::BlobExecutable
            } else {
                FileMode::Blob
            };
            update.upsert(path, blob, mode);
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &parent.tree()?)?)?;
        let signature = self
            .repo
            .signature()
            .or_else(|_| git2::Signature::now("gantry", "gantry@localhost"))?;
        let commit = self
            .repo
            .commit(None, &signature, &signature, message, &tree, &[&parent])?;
        check(commit).map_err(SourceError::Refused)?;
        match branch {
            ChangeBranch::Desired(b) => {
                self.repo.reference_matching(
                    &format!("refs/heads/{b}"),
                    commit,
                    true,
                    tip,
                    message.lines().next().unwrap_or(""),
                )?;
            }
            ChangeBranch::New { name, .. } => {
                let refname = format!("refs/heads/{name}");
                if self.repo.find_reference(&refname).is_ok() {
                    return Err(SourceError::Refused(format!(
                        "branch `{name}` already exists; choose another --branch name"
                    )));
                }
                self.repo
                    .reference(&refname, commit, false, message.lines().next().unwrap_or(""))?;
            }
        }
        Ok(commit)
    }
}
