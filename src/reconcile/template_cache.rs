//! A cache of the strict step-template check of `load_commit` (every template rendered against
//! every target: about 70% of `status` on a 552-target fleet). Its result depends only on the
//! commit (its tree, and its id, which templates see as `{{ commit }}`) and on the gantry binary
//! (template engine and limits), so it is kept, keyed by both, in the process and in
//! `.git/gantry/cache/templates` (issue #12 item 8).
//!
//! # Guarantees
//! Same as the history walk cache (`source::walk_cache`): keys are a commit id and the binary's
//! identity (version, size and modification time of the executable), so any change to the
//! manifests or to gantry misses; the file carries a SHA-256 of its body and is replaced by
//! rename; a torn, edited or unreadable file is ignored and rebuilt. At most [`MAX_TREES`] commits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::manifest::{Diagnostic, Severity};
use crate::source::walk_cache::{binary_identity, read_digested, write_digested};

/// Commits kept (the daemon's last few desired commits).
pub const MAX_TREES: usize = 8;
const MAGIC: &str = "gantry-template-cache v1";
/// The kind of every diagnostic the template check makes (`reconcile::load`).
pub const KIND: &str = "template";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    tree: String,
    binary: String,
    /// (file, line, column, message) of each `Invalid` `template` diagnostic.
    diagnostics: Vec<(String, Option<u32>, Option<u32>, String)>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Body {
    entries: Vec<Entry>,
}

fn memory() -> &'static Mutex<HashMap<PathBuf, Body>> {
    static MEMORY: OnceLock<Mutex<HashMap<PathBuf, Body>>> = OnceLock::new();
    MEMORY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cache file of the repository whose git directory is `git_dir`.
pub fn file_path(git_dir: &Path) -> PathBuf {
    git_dir.join("gantry").join("cache").join("templates")
}

/// The template diagnostics of the commit `tree` (its id: the field keeps its old name in the
/// file): cached, or `check()` (then kept). Every diagnostic `check` returns must be an `Invalid` one of kind [`KIND`].
pub fn cached(git_dir: &Path, tree: Oid, check: impl FnOnce() -> Vec<Diagnostic>) -> Vec<Diagnostic> {
    let tree = tree.to_string();
    let binary = binary_identity();
    let known = {
        let mut all = lock(memory());
        let body = all.entry(git_dir.to_path_buf()).or_insert_with(|| {
            read_digested(&file_path(git_dir), MAGIC)
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default()
        });
        body.entries
            .iter()
            .find(|e| e.tree == tree && e.binary == binary)
            .cloned()
    };
    if let Some(entry) = known {
        return entry
            .diagnostics
            .into_iter()
            .map(|(file, line, column, message)| Diagnostic {
                severity: Severity::Invalid,
                kind: KIND,
                file,
                line,
                column,
                message,
            })
            .collect();
    }
    let found = check();
    if found.iter().any(|d| d.kind != KIND || d.severity != Severity::Invalid) {
        // Not what this cache can restore exactly: do not keep it.
        return found;
    }
    let entry = Entry {
        tree,
        binary: binary.to_string(),
        diagnostics: found
            .iter()
            .map(|d| (d.file.clone(), d.line, d.column, d.message.clone()))
            .collect(),
    };
    let snapshot = {
        let mut all = lock(memory());
        let body = all.entry(git_dir.to_path_buf()).or_default();
        body.entries
            .retain(|e| e.tree != entry.tree || e.binary != entry.binary);
        body.entries.push(entry);
        let excess = body.entries.len().saturating_sub(MAX_TREES);
        body.entries.drain(..excess);
        body.clone()
    };
    let path = file_path(git_dir);
    crate::source::cache_writer::save(path.clone(), move || match serde_json::to_string(&snapshot) {
        Ok(text) => {
            if let Err(e) = write_digested(&path, MAGIC, &text) {
                tracing::debug!("template check cache not saved ({e})");
            }
        }
        Err(e) => tracing::debug!("template check cache not saved ({e})"),
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_check_is_returned_as_made_and_a_corrupt_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path();
        let tree = Oid::from_bytes(&[7; 20]).unwrap();
        let diagnostic = Diagnostic {
            severity: Severity::Invalid,
            kind: KIND,
            file: "components/web.yaml".into(),
            line: Some(7),
            column: Some(12),
            message: "template `{{ target.vars.host }}` does not render for target `b`".into(),
        };
        let first = cached(git_dir, tree, || vec![diagnostic.clone()]);
        assert_eq!(first, vec![diagnostic.clone()]);
        // From memory, then from the file: the check does not run again.
        assert_eq!(cached(git_dir, tree, || panic!("ran again")), vec![diagnostic.clone()]);
        lock(memory()).remove(git_dir);
        assert_eq!(cached(git_dir, tree, || panic!("ran again")), vec![diagnostic.clone()]);
        // Another tree misses.
        let other = Oid::from_bytes(&[8; 20]).unwrap();
        assert!(cached(git_dir, other, Vec::new).is_empty());
        // A corrupt file is a miss.
        std::fs::write(file_path(git_dir), "gantry-template-cache v1 00\n{}").unwrap();
        lock(memory()).remove(git_dir);
        let mut ran = false;
        cached(git_dir, tree, || {
            ran = true;
            vec![diagnostic.clone()]
        });
        assert!(ran, "a corrupt cache file is ignored");
    }
}
