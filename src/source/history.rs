//! Approvals from git history: the `Approved-by:` trailers of the commit that last changed each
//! target's desired version (SPEC §2, Approval).
//!
//! # How the commit is found
//! From the head commit, walk **first parents** (the history of the desired branch as merged;
//! a merge commit stands for its whole pull request) and diff each commit's tree against its
//! first parent's. Only manifest files the diff touches are parsed, on both sides. A target is
//! settled at the first commit (newest first) whose parent had a different `spec.version` for
//! it, or did not have it at all; the walk stops as soon as every asked-for target is settled,
//! or at the root commit, which settles the rest (they were created there).
//!
//! The cost is one tree diff per commit walked plus parsing the changed manifests, never a
//! full parse of every commit. Targets are matched by `metadata.name`, wherever their file is.
//!
//! With `[trust]` set, SPEC §2 counts an address only from a commit signed by a key listed for
//! it; that check belongs to the signature work and is not done here yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use git2::Oid;

use crate::manifest::{self, RawFile};
use crate::policy::approvals::normalize_address;

use super::{SourceError, WatchedRepo, is_manifest_path};

/// The trailer key naming an approver (compared case-insensitively).
pub const APPROVED_BY: &str = "Approved-by";

/// The approver addresses of `message`'s `Approved-by:` trailers, lowercased.
pub fn trailer_approvers(message: &str) -> BTreeSet<String> {
    let Ok(trailers) = git2::message_trailers_strs(message) else {
        return BTreeSet::new();
    };
    trailers
        .iter()
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case(APPROVED_BY))
        .filter_map(|(_, value)| normalize_address(value))
        .collect()
}

/// For each target in `wanted` (name → its `spec.version` text at `head`), the approvers named
/// in the trailers of the commit that last changed that version. Targets whose version commit
/// has no trailers map to an empty set.
///
/// # Errors
/// git failures reading commits, trees or blobs.
pub fn version_change_approvers(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, BTreeSet<String>>, SourceError> {
    let mut found = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    let mut open: BTreeMap<&str, &str> = wanted.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut commit = repo.repo.find_commit(head)?;
    loop {
        let parent = match commit.parent_count() {
            0 => None,
            _ => Some(commit.parent(0)?),
        };
        let Some(parent) = parent else {
            // The root commit created every target still open.
            let approvers = trailer_approvers(commit.message().unwrap_or(""));
            for name in open.keys() {
                found.insert(name.to_string(), approvers.clone());
            }
            return Ok(found);
        };
        let diff = repo
            .repo
            .diff_tree_to_tree(Some(&parent.tree()?), Some(&commit.tree()?), None)?;
        let mut old_files = Vec::new();
        let mut new_files = Vec::new();
        for delta in diff.deltas() {
            let Some(path) = delta.new_file().path().or_else(|| delta.old_file().path()) else {
                continue;
            };
            let path = path.to_string_lossy().replace('\\', "/");
            if !is_manifest_path(&path) || path == "gantry.toml" {
                continue;
            }
            for (oid, side) in [
                (delta.old_file().id(), &mut old_files),
                (delta.new_file().id(), &mut new_files),
            ] {
                if !oid.is_zero() {
                    side.push(RawFile {
                        path: path.clone(),
                        content: manifest::RawContent::Bytes(repo.repo.find_blob(oid)?.content().to_vec()),
                    });
                }
            }
        }
        if !new_files.is_empty() || !old_files.is_empty() {
            let before = target_versions(&old_files);
            let after = target_versions(&new_files);
            let changed: Vec<&str> = open
                .iter()
                .filter(|(name, version)| {
                    // Touched in this commit, and the parent had another version (or none).
                    (after.contains_key(**name) || before.contains_key(**name))
                        && before.get(**name).map(String::as_str) != Some(**version)
                })
                .map(|(name, _)| *name)
                .collect();
            if !changed.is_empty() {
                let approvers = trailer_approvers(commit.message().unwrap_or(""));
                for name in changed {
                    open.remove(name);
                    found.insert(name.to_string(), approvers.clone());
                }
                if open.is_empty() {
                    return Ok(found);
                }
            }
        }
        commit = parent;
    }
}

/// `metadata.name` → `spec.version` of every Target document in `files`.
fn target_versions(files: &[RawFile]) -> HashMap<String, String> {
    if files.is_empty() {
        return HashMap::new();
    }
    let (manifests, _) = manifest::read_manifests(None, files);
    manifests
        .targets
        .into_iter()
        .map(|t| (t.name, t.spec.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_are_case_insensitive_and_addresses_lowercased() {
        let message = "Bump billing to 2.0.0\n\nBody text.\n\nApproved-by: Alice <Alice@Example.com>\napproved-BY: bob@example.com\nSigned-off-by: Carol <carol@example.com>\n";
        let got: Vec<String> = trailer_approvers(message).into_iter().collect();
        assert_eq!(got, vec!["alice@example.com", "bob@example.com"]);
        assert!(trailer_approvers("No trailers here").is_empty());
    }
}
