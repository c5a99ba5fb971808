//! Checkouts of desired commits under `.git/gantry/checkouts/`, where steps run.
//!
//! A step's scripts must come from the same commit as the manifests that planned it, so every
//! commit gets its own directory, written once with git2 (never touching the work tree, the
//! index or HEAD) and reused by later passes.

use std::path::PathBuf;

use git2::Oid;

use super::{SourceError, WatchedRepo};

/// How many checkouts to keep; older ones are deleted when a new one is made.
const KEEP_CHECKOUTS: usize = 5;

impl WatchedRepo {
    /// The directory holding a checkout of `commit`, creating it when missing.
    ///
    /// # Guarantees
    /// The directory is complete when returned: it is written under a temporary name and
    /// renamed into place, so a killed process never leaves a half checkout that looks whole.
    ///
    /// # Errors
    /// git or file system failures.
    pub fn checkout(&self, commit: Oid) -> Result<PathBuf, SourceError> {
        let root = self.gantry_dir().join("checkouts");
        let dir = root.join(commit.to_string());
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::create_dir_all(&root).map_err(|e| SourceError::Io {
            path: root.clone(),
            source: e,
        })?;
        let partial = root.join(format!(".partial-{commit}-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|e| SourceError::Io {
                path: partial.clone(),
                source: e,
            })?;
        }
        let tree = self.repo.find_commit(commit)?.tree()?;
        let mut builder = git2::build::CheckoutBuilder::new();
        builder
            .target_dir(&partial)
            .force()
            .recreate_missing(true)
            .update_index(false);
        self.repo.checkout_tree(tree.as_object(), Some(&mut builder))?;
        std::fs::rename(&partial, &dir).map_err(|e| SourceError::Io {
            path: dir.clone(),
            source: e,
        })?;
        self.prune_checkouts(&root);
        Ok(dir)
    }

    /// Keeps the newest [`KEEP_CHECKOUTS`] checkouts; failures to delete are harmless.
    fn prune_checkouts(&self, root: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(root) else { return };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        dirs.sort();
        let excess = dirs.len().saturating_sub(KEEP_CHECKOUTS);
        for (_, path) in dirs.into_iter().take(excess) {
            let _ = std::fs::remove_dir_all(path);
        }
    }

    /// The work tree of the watched repository (its git dir for a bare repository).
    pub fn root(&self) -> PathBuf {
        self.repo
            .workdir()
            .map_or_else(|| self.repo.path().to_path_buf(), std::path::Path::to_path_buf)
    }
}
