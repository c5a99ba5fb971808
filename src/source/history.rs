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
//! it: callers pass the **anchored** allowed signers (never the head's own list, which the
//! approving commit itself could have changed), and the settling commit's trailers are kept only
//! for the addresses its verified signing key is listed for (none when it is unsigned).
//!
//! The same walk finds, for each `Approval` manifest, the commit that last changed it
//! ([`approval_commits`]): with `[trust]` an Approval counts only for the addresses that
//! commit's signing key is listed for, so an approver approves by signing the commit that adds
//! their Approval, and nobody can write one for them.

use foldhash::{HashMap, HashMapExt};
use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;

use crate::manifest::{self, RawFile};
use crate::policy::approvals::normalize_address;

use super::trust::{self, AllowedSigners};
use super::walk_cache::{Settled, WalkCache};
use super::{SourceError, WatchedRepo};

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

/// The approvers a commit's `Approved-by:` trailers name and, with `signers` (`[trust]`), its
/// verified signature vouches for.
pub fn commit_approvers(
    repo: &WatchedRepo,
    commit: &git2::Commit,
    signers: Option<&AllowedSigners>,
) -> BTreeSet<String> {
    let named = trailer_approvers(commit.message().unwrap_or(""));
    match signers {
        None => named,
        Some(signers) => match trust::vouched(repo, commit.id(), signers, named.clone()) {
            Ok((signer, kept, dropped)) => {
                if !dropped.is_empty() {
                    tracing::warn!(
                        commit = %commit.id(),
                        "Approved-by {} not counted: the commit is signed by {} ({}), which is not listed for them in {} and in the list before the commit",
                        dropped.join(", "),
                        signer.email,
                        signer.fingerprint,
                        signers.source_name
                    );
                }
                kept.into_iter().collect()
            }
            Err(e) => {
                if !named.is_empty() {
                    tracing::warn!(commit = %commit.id(), "Approved-by trailers not counted: {e}");
                }
                BTreeSet::new()
            }
        },
    }
}

/// The commit that last changed a target's version, and the approvers its trailers name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionApproval {
    pub commit: Oid,
    pub approvers: BTreeSet<String>,
}

/// For each target in `wanted` (its name and its `spec.version` text at `head`), in `wanted`'s
/// order, the approvers named in the trailers of the commit that last changed that version.
/// Targets whose version commit has no trailers get an empty set.
///
/// In order rather than by name (issue #17): a fleet's 10,000 names were copied into two maps
/// each pass, most of them only to be dropped for having no approvers.
///
/// # Errors
/// git failures reading commits, trees or blobs.
pub fn version_change_approvers(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &[(&str, &str)],
    signers: Option<&AllowedSigners>,
) -> Result<Vec<VersionApproval>, SourceError> {
    let settled = settling_commits(repo, head, wanted, Extract::TargetVersions)?;
    // Each settling commit's trailers are read once: 10,000 names share a few commits.
    let mut by_commit: HashMap<Oid, BTreeSet<String>> = HashMap::new();
    settled
        .into_iter()
        .map(|commit| {
            let approvers = match by_commit.entry(commit) {
                std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                std::collections::hash_map::Entry::Vacant(e) => e
                    .insert(commit_approvers(repo, &repo.repo.find_commit(commit)?, signers))
                    .clone(),
            };
            Ok(VersionApproval { commit, approvers })
        })
        .collect()
}

/// For each `Approval` manifest in `wanted` (name → [`approval_fingerprint`] of its spec at
/// `head`), the commit that last changed it: the newest first-parent commit whose parent did
/// not have that Approval with that content.
///
/// # Errors
/// git failures reading commits, trees or blobs.
pub fn approval_commits(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Oid>, SourceError> {
    let settled = settling_commits(repo, head, &entries(wanted), Extract::Approvals)?;
    Ok(wanted.keys().cloned().zip(settled).collect())
}

/// For each release in `wanted` ([`release_key`] → [`release_fingerprint`] at `head`), the
/// commit that last changed it (added it or edited its name or spec). An approval made at a
/// commit that is this one or a descendant of it approved this content.
///
/// # Errors
/// git failures reading commits, trees or blobs.
pub fn release_commits(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Oid>, SourceError> {
    let settled = settling_commits(repo, head, &entries(wanted), Extract::Releases)?;
    Ok(wanted.keys().cloned().zip(settled).collect())
}

/// The names and values of `wanted`, for [`settling_commits`].
fn entries(wanted: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    wanted.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `component@version` of a Release (the version normalized when it parses).
pub fn release_key(spec: &crate::manifest::ReleaseSpec) -> String {
    let version =
        crate::manifest::Version::parse(spec.version.trim()).map_or_else(|_| spec.version.clone(), |v| v.to_string());
    format!("{}@{version}", spec.component)
}

/// What a Release is compared by along history: its name and spec, as JSON.
pub fn release_fingerprint(name: &str, spec: &crate::manifest::ReleaseSpec) -> String {
    serde_json::to_string(&(name, spec)).unwrap_or_default()
}

/// What an Approval is compared by along history: its spec, as JSON.
pub fn approval_fingerprint(spec: &crate::manifest::ApprovalSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
}

/// Which documents a walk follows, and the value compared along history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Extract {
    /// Targets, by `spec.version`.
    TargetVersions,
    /// Approvals, by [`approval_fingerprint`].
    Approvals,
    /// Releases, by [`release_key`] → [`release_fingerprint`].
    Releases,
}

impl Extract {
    /// The walk's name in the cache (`source::walk_cache`).
    fn cache_kind(self) -> &'static str {
        match self {
            Extract::TargetVersions => "target_versions",
            Extract::Approvals => "approvals",
            Extract::Releases => "releases",
        }
    }
}

/// For each name in `wanted` (a name and its value at `head`), in `wanted`'s order, the newest
/// first-parent commit at which the value became what it is at `head` (the root commit settles
/// the rest).
///
/// The walk consults the history walk cache (`source::walk_cache`) at every commit it reaches,
/// head included: a name still open at commit C has, at C, the value it has at head (no commit
/// walked so far changed it), so what settled it from C settled it from head. A walk that did
/// more than a short walk's work ([`WalkWork::worth_storing`]), or a short walk from a head this
/// process walked before without storing, stores its result under `head`.
fn settling_commits(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &[(&str, &str)],
    extract: Extract,
) -> Result<Vec<Oid>, SourceError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let _span = tracing::debug_span!("history.walk", kind = extract.cache_kind()).entered();
    let git_dir = repo.repo.path().to_path_buf();
    let cache = WalkCache::load(&git_dir);
    let (settled, work) = walk(repo, head, wanted, extract, &cache)?;
    if work.worth_storing()
        || (work.commits > 0 && WalkCache::walked_unstored_before(&git_dir, extract.cache_kind(), head))
    {
        let stored: Settled = wanted
            .iter()
            .zip(&settled)
            .map(|((name, value), commit)| ((*name).to_string(), ((*value).to_string(), *commit)))
            .collect();
        WalkCache::store(&git_dir, extract.cache_kind(), head, stored);
    }
    Ok(settled)
}

/// What a walk read of history: the cost of doing it again, weighed against the cost of storing
/// its result (a cache entry of every wanted name, written to the file in the background).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WalkWork {
    /// Commits diffed against their parent.
    commits: usize,
    /// Blobs read and parsed (each side of every changed manifest, once per walk).
    blobs: usize,
    /// Whether the cache had no entry of this kind of walk (a first walk is always stored).
    first: bool,
    /// Whether an entry the walk reached was found wrong. Storing replaces one under the walk's
    /// own head; one under an older head is passed over by every walk that reaches it (each then
    /// stores its own answer) until it ages out of the cache.
    rejected: bool,
}

/// A walk of at most this many commits, and of at most [`STORE_AFTER_BLOBS`] blobs, is not
/// stored the first time: the next walk from a descendant repeats it (a tree diff and a few
/// changed files per commit), while storing copies every wanted name and rewrites the file
/// (issue #17: a daemon's pass after a one-file commit spent more on storing its one-commit
/// walk, and on writing the file beside the planner, than on the walk). A daemon following a
/// branch therefore stores about every 17th commit, and a head walked a second time (its next
/// pass) is stored then.
const STORE_AFTER_COMMITS: usize = 16;
/// See [`STORE_AFTER_COMMITS`]: a walk that parsed more blobs than this (a few milliseconds of
/// small manifests) is stored, so a commit that edits a whole fleet is not parsed again by every
/// later walk.
const STORE_AFTER_BLOBS: usize = 256;

impl WalkWork {
    /// Whether the walk did enough that the next one should not repeat it.
    fn worth_storing(self) -> bool {
        let learnt = self.commits > 0;
        learnt && (self.first || self.rejected || self.commits > STORE_AFTER_COMMITS || self.blobs > STORE_AFTER_BLOBS)
    }
}

/// [`settling_commits`]' walk: the settling commit of each name of `wanted`, in its order; also
/// what it read of history (nothing: all from the cache).
fn walk(
    repo: &WatchedRepo,
    head: Oid,
    wanted: &[(&str, &str)],
    extract: Extract,
    walk_cache: &WalkCache,
) -> Result<(Vec<Oid>, WalkWork), SourceError> {
    // Names are found by their place in `wanted`: no name is copied, and no map is built of
    // 10,000 of them (issue #17: inserts and bulk builds, each comparing long names, cost more
    // than the rest of a cached walk). Every place is set before the walk returns. Each place
    // is settled on its own, so neither order nor distinct names are needed.
    let mut settled: Vec<Oid> = vec![Oid::ZERO_SHA1; wanted.len()];
    // The places of the names still open, in `wanted`'s order.
    let mut open: Vec<usize> = (0..wanted.len()).collect();
    let mut work = WalkWork {
        first: !walk_cache.has_kind(extract.cache_kind()),
        ..WalkWork::default()
    };
    let mut cache: HashMap<BlobKey, Vec<(String, String)>> = HashMap::new();
    let mut commit = repo.repo.find_commit(head)?;
    loop {
        if let Some(known) = walk_cache.get(extract.cache_kind(), commit.id()) {
            // Never trusted over the repository: a settling commit the object database does
            // not have is a miss. (Checking ancestry too cost 195 ms on 10,000 commits, more
            // than the cache saves; the file sits in `.git`, as trusted as the objects.)
            // Looked up once per settling commit, not once per name (10,000 names share a few).
            let mut present: HashMap<Oid, bool> = HashMap::new();
            // The names are asked for in `wanted`'s order (name order, from the evidence).
            let mut known = known.cursor();
            let mut still_open = Vec::with_capacity(open.len());
            for (k, &at) in open.iter().enumerate() {
                // The texts compared a few names on, on both sides, asked for now (issue #17: the
                // lookups waited on them, scattered over the heap): the wanted name and value of
                // the name open a few places on, and the cache's entries a few places on (the
                // same ones while the cache holds just the names wanted).
                if let Some(&ahead) = open.get(k + crate::prefetch::AHEAD) {
                    let (name, value) = wanted[ahead];
                    crate::prefetch::fetch_bytes(name.as_ptr(), name.len());
                    crate::prefetch::fetch_bytes(value.as_ptr(), value.len());
                }
                known.fetch_ahead(crate::prefetch::AHEAD);
                let (name, value) = wanted[at];
                match known.find(name) {
                    Some((v, by))
                        if v == value && *present.entry(*by).or_insert_with(|| repo.repo.find_commit(*by).is_ok()) =>
                    {
                        settled[at] = *by;
                    }
                    known => {
                        // An entry that cannot hold at this commit (another value, or a settling
                        // commit that is not there): stored over once the walk knows better.
                        work.rejected |= known.is_some();
                        still_open.push(at);
                    }
                }
            }
            open = still_open;
            if open.is_empty() {
                return Ok((settled, work));
            }
        }
        work.commits += 1;
        let parent = match commit.parent_count() {
            0 => None,
            _ => Some(commit.parent(0)?),
        };
        let Some(parent) = parent else {
            // The root commit created every name still open.
            for at in open {
                settled[at] = commit.id();
            }
            return Ok((settled, work));
        };
        // Only the directories whose tree changed are read (`source::tree_listing`).
        let changes = super::tree_listing::changed_files(&repo.repo, parent.tree_id(), commit.tree_id())?;
        let mut old_blobs = Vec::new();
        let mut new_blobs = Vec::new();
        for change in changes {
            if change.path == "gantry.toml" {
                continue;
            }
            // The same bytes read as TOML or as YAML depending on the name.
            let toml = change.path.to_ascii_lowercase().ends_with(".toml");
            if let Some(oid) = change.old {
                old_blobs.push((change.path.clone(), (oid, toml)));
            }
            if let Some(oid) = change.new {
                new_blobs.push((change.path, (oid, toml)));
            }
        }
        // A blob is parsed once per walk: the old side of one commit is often the new side of
        // an earlier one (a file edited again and again).
        let uncached: Vec<(String, BlobKey)> = old_blobs
            .iter()
            .chain(&new_blobs)
            .filter(|(_, key)| !cache.contains_key(key))
            .map(|(path, key)| (*key, path.clone()))
            .collect::<BTreeMap<BlobKey, String>>()
            .into_iter()
            .map(|(key, path)| (path, key))
            .collect();
        work.blobs += uncached.len();
        let mut files = Vec::with_capacity(uncached.len());
        for (path, (oid, _)) in &uncached {
            files.push(RawFile {
                path: path.clone(),
                content: manifest::RawContent::Bytes(repo.repo.find_blob(*oid)?.content().to_vec()),
            });
        }
        for (key, versions) in uncached.iter().map(|(_, key)| *key).zip(blob_values(&files, extract)) {
            cache.insert(key, versions);
        }
        drop(files);
        let side = |blobs: &[(String, BlobKey)]| -> HashMap<&str, &str> {
            blobs
                .iter()
                .filter_map(|(_, key)| cache.get(key))
                .flat_map(|versions| versions.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                .collect()
        };
        let (before, after) = (side(&old_blobs), side(&new_blobs));
        if !before.is_empty() || !after.is_empty() {
            open.retain(|&at| {
                let (name, value) = wanted[at];
                // Touched in this commit, and the parent had another value (or none).
                let changed =
                    (after.contains_key(name) || before.contains_key(name)) && before.get(name) != Some(&value);
                if changed {
                    settled[at] = commit.id();
                }
                !changed
            });
            if open.is_empty() {
                return Ok((settled, work));
            }
        }
        commit = parent;
    }
}

/// A blob and whether it is read as TOML.
type BlobKey = (Oid, bool);

/// Per file, in order: `metadata.name` → the compared value of every document `extract` follows
/// (the last of a name wins), read on several threads when there are many files.
fn blob_values(files: &[RawFile], extract: Extract) -> Vec<Vec<(String, String)>> {
    let bytes: usize = files
        .iter()
        .map(|f| match &f.content {
            manifest::RawContent::Bytes(b) => b.len(),
            _ => 0,
        })
        .sum();
    // Weighed by size (a manifest is a few hundred bytes): a few large files are worth it too.
    let threads = manifest::parallel::threads_for(bytes / 256);
    let chunks = manifest::parallel::split_even(files, threads);
    let read = |chunk: &[RawFile]| -> Vec<Vec<(String, String)>> {
        chunk
            .iter()
            .map(|file| {
                let (mut manifests, _) = manifest::read_manifests(None, std::slice::from_ref(file));
                let versions: HashMap<String, String> = match extract {
                    // A Fleet's targets too: the commit that changed a generated target's
                    // version (and its `Approved-by:` trailers) is found like a written one's.
                    Extract::TargetVersions => {
                        manifest::fleet::expand(&mut manifests, &mut Vec::new());
                        manifests
                            .targets
                            .into_iter()
                            .map(|t| (t.name.clone(), t.spec.version.clone()))
                            .collect()
                    }
                    Extract::Approvals => manifests
                        .approvals
                        .into_iter()
                        .map(|a| (a.name, approval_fingerprint(&a.spec)))
                        .collect(),
                    Extract::Releases => manifests
                        .releases
                        .into_iter()
                        .map(|r| (release_key(&r.spec), release_fingerprint(&r.name, &r.spec)))
                        .collect(),
                };
                versions.into_iter().collect()
            })
            .collect()
    };
    if chunks.len() <= 1 {
        return read(files);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks[1..].iter().map(|c| scope.spawn(move || read(c))).collect();
        let mut out = read(chunks[0]);
        for handle in handles {
            out.extend(handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(git: &git2::Repository, files: &[(&str, &str)], message: &str) {
        let root = git.workdir().unwrap();
        for entry in std::fs::read_dir(root).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for (path, text) in files {
            std::fs::write(root.join(path), text).unwrap();
        }
        let mut index = git.index().unwrap();
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
        index.update_all(["*"], None).unwrap();
        let tree = git.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<git2::Commit> = git
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        git.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents).unwrap();
    }

    fn target(name: &str, version: &str, config: &str) -> String {
        format!(
            "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: c, version: \"{version}\", config: {{ x: {config} }} }}\n"
        )
    }

    #[test]
    fn finds_the_commit_that_last_changed_each_version() {
        let dir = tempfile::tempdir().unwrap();
        let git = git2::Repository::init(dir.path()).unwrap();
        let both = |a: &str, b: &str| format!("{a}---\n{b}");
        commit(
            &git,
            &[("t.yaml", &both(&target("a", "1.0.0", "1"), &target("b", "1.0.0", "1")))],
            "add\n\nApproved-by: A <a@x.io>\n",
        );
        commit(
            &git,
            &[("t.yaml", &both(&target("a", "2.0.0", "1"), &target("b", "1.0.0", "1")))],
            "bump a\n\nApproved-by: B <b@x.io>\n",
        );
        // Same file, other fields: not a version change.
        commit(
            &git,
            &[("t.yaml", &both(&target("a", "2.0.0", "2"), &target("b", "1.0.0", "2")))],
            "config\n\nApproved-by: C <c@x.io>\n",
        );
        // `b` moves to its own file with the same version: not a change either.
        commit(
            &git,
            &[
                ("t.yaml", &target("a", "2.0.0", "2")),
                ("b.yaml", &target("b", "1.0.0", "2")),
            ],
            "split\n\nApproved-by: D <d@x.io>\n",
        );
        let repo = WatchedRepo { repo: git };
        let head = repo.repo.head().unwrap().peel_to_commit().unwrap().id();
        let wanted: BTreeMap<String, String> = [
            ("a".to_string(), "2.0.0".to_string()),
            ("b".to_string(), "1.0.0".to_string()),
        ]
        .into();
        let found = version_change_approvers(&repo, head, &entries(&wanted), None).unwrap();
        let list = |t: &str| {
            let at = wanted.keys().position(|name| name == t).unwrap();
            found[at].approvers.iter().cloned().collect::<Vec<_>>()
        };
        assert_eq!(list("a"), vec!["b@x.io"]);
        assert_eq!(list("b"), vec!["a@x.io"], "created in the root commit");
    }

    /// Issue #17: a short walk from a descendant of a cached head is not stored (the next walk
    /// repeats it cheaply), a long one and a first one are, and one that met a wrong entry
    /// replaces it. Whatever is stored, every walk answers as a walk without any cache.
    #[test]
    fn only_walks_worth_repeating_are_stored_and_every_walk_answers_as_a_cold_one() {
        let dir = tempfile::tempdir().unwrap();
        let git = git2::Repository::init(dir.path()).unwrap();
        let git_dir = git.path().to_path_buf();
        let kind = Extract::TargetVersions.cache_kind();
        let files = |a: &str, config: usize| {
            vec![
                ("a.yaml", target("a", a, &config.to_string())),
                ("b.yaml", target("b", "1.0.0", "1")),
            ]
        };
        let commit_files = |git: &git2::Repository, a: &str, config: usize, message: &str| {
            let files = files(a, config);
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
            commit(git, &files, message);
            git.head().unwrap().peel_to_commit().unwrap().id()
        };
        let repo = WatchedRepo { repo: git };
        let wanted = |a: &str| -> BTreeMap<String, String> {
            [("a".to_string(), a.to_string()), ("b".to_string(), "1.0.0".to_string())].into()
        };
        // What a walk finds, and what the same walk finds with no cache at all.
        let walk_both = |head: Oid, wanted: &BTreeMap<String, String>| {
            let cached = settling_commits(&repo, head, &entries(wanted), Extract::TargetVersions).unwrap();
            let (cold, _) = walk(
                &repo,
                head,
                &entries(wanted),
                Extract::TargetVersions,
                &WalkCache::default(),
            )
            .unwrap();
            assert_eq!(cached, cold, "from {head}");
            assert_eq!(cached.len(), wanted.len(), "a settling commit for every name");
            wanted.keys().cloned().zip(cached).collect::<BTreeMap<String, Oid>>()
        };
        let stored = |head: Oid| WalkCache::load(&git_dir).get(kind, head).is_some();

        let root = commit_files(&repo.repo, "1.0.0", 0, "add");
        walk_both(root, &wanted("1.0.0"));
        assert!(stored(root), "the first walk is stored");
        // A one-file commit on top: a short walk, not stored, answering from the root's entry;
        // walked again for the same head (the daemon's next pass there), stored.
        let bump = commit_files(&repo.repo, "2.0.0", 0, "bump a\n\nApproved-by: B <b@x.io>\n");
        let found = walk_both(bump, &wanted("2.0.0"));
        assert_eq!((found["a"], found["b"]), (bump, root));
        assert!(!stored(bump), "a walk of one commit is stored");
        walk_both(bump, &wanted("2.0.0"));
        assert!(stored(bump), "a short walk repeated for the same head is not stored");
        // More one-file commits: short walks from the bump's entry, each walked once.
        for config in 1..=STORE_AFTER_COMMITS {
            let head = commit_files(&repo.repo, "2.0.0", config, "config");
            let found = walk_both(head, &wanted("2.0.0"));
            assert_eq!((found["a"], found["b"]), (bump, root));
            assert!(!stored(head), "a walk of {config} commits is stored");
        }
        // One more: past the threshold, stored.
        let mut head = commit_files(&repo.repo, "2.0.0", STORE_AFTER_COMMITS + 1, "config");
        walk_both(head, &wanted("2.0.0"));
        assert!(
            stored(head),
            "a walk of {} commits is not stored",
            STORE_AFTER_COMMITS + 1
        );
        // The next walk is short again (from that entry).
        head = commit_files(&repo.repo, "2.0.0", STORE_AFTER_COMMITS + 2, "config");
        assert_eq!(walk_both(head, &wanted("2.0.0"))["a"], bump);
        assert!(!stored(head));

        // A wrong entry for the next head (a settling commit the repository does not have): not
        // believed, and replaced by the walk's own answer.
        let next = commit_files(&repo.repo, "2.0.0", STORE_AFTER_COMMITS + 3, "config");
        let bogus = Oid::from_str(&"f".repeat(40)).unwrap();
        let forged: Settled = [("a".to_string(), ("2.0.0".to_string(), bogus))].into_iter().collect();
        WalkCache::store(&git_dir, kind, next, forged);
        let found = walk_both(next, &wanted("2.0.0"));
        assert_eq!(found["a"], bump);
        let cache = WalkCache::load(&git_dir);
        assert_eq!(
            cache.get(kind, next).unwrap().get("a"),
            Some(&("2.0.0".to_string(), bump)),
            "the wrong entry was kept"
        );

        // One commit that changes many files (a fleet-wide edit): parsed again by every later
        // walk unless stored, so stored.
        let many: Vec<(String, String)> = (0..=STORE_AFTER_BLOBS)
            .map(|i| (format!("z{i}.yaml"), target(&format!("z{i}"), "1.0.0", "1")))
            .chain(
                files("2.0.0", STORE_AFTER_COMMITS + 3)
                    .into_iter()
                    .map(|(p, t)| (p.to_string(), t)),
            )
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        commit(&repo.repo, &many, "a fleet");
        let wide = repo.repo.head().unwrap().peel_to_commit().unwrap().id();
        assert_eq!(walk_both(wide, &wanted("2.0.0"))["a"], bump);
        assert!(stored(wide), "a walk of {} blobs is not stored", STORE_AFTER_BLOBS + 1);
    }

    #[test]
    fn trailers_are_case_insensitive_and_addresses_lowercased() {
        let message = "Bump billing to 2.0.0\n\nBody text.\n\nApproved-by: Alice <Alice@Example.com>\napproved-BY: bob@example.com\nSigned-off-by: Carol <carol@example.com>\n";
        let got: Vec<String> = trailer_approvers(message).into_iter().collect();
        assert_eq!(got, vec!["alice@example.com", "bob@example.com"]);
        assert!(trailer_approvers("No trailers here").is_empty());
    }
}
