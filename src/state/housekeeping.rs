//! Housekeeping of the objects gantry writes (issue #12 item 9: nothing ever packed or pruned
//! the state branch's objects): every state commit adds loose objects, one file each.
//!
//! A pass ([`housekeep`]), run by the daemon every `[housekeeping] interval` while it holds the
//! reconciler lock:
//! 1. **pack**: the loose objects reachable from the state branch are written into one new pack
//!    with libgit2's packbuilder (`.pack` and `.idx` in `objects/pack`, fsynced);
//! 2. **drop packed loose copies**: a loose object is deleted only once its id is read back from
//!    the new pack's index on disk; once gantry has written [`MAX_PACKS`] packs (listed in
//!    `.git/gantry/packs`), the new pack also takes in all their objects and they are deleted;
//! 3. **prune**: a loose object older than `[housekeeping] prune_after` that no ref, reflog entry,
//!    index (of the repository or of a worktree) or worktree HEAD reaches is deleted.
//!
//! # Guarantees
//! - Never deletes an object that anything reachable needs: packed copies first, or unreachable
//!   from everything git itself counts as a root, and old (a `git commit` running next to us
//!   writes objects before the ref that reaches them; `prune_after` is its grace, as git's own
//!   `gc.pruneExpire`).
//! - Interrupted at any point (kill -9, a full disk), the repository stays valid: each deletion
//!   is of an object that is in a durable pack or unreachable, so a partial pass only leaves
//!   fewer loose objects than a whole one; a half-written pack is a temporary file libgit2 never
//!   reads.
//! - No concurrent gantry writer: the caller holds the [`ReconcilerLock`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use git2::{ObjectType, Oid, Repository};
use serde::Serialize;

use super::ReconcilerLock;

/// What one housekeeping pass did (shown in `/api/daemon`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Housekept {
    /// Loose objects before the pass.
    pub loose_before: usize,
    /// Objects written into the new pack (0: nothing was loose, no pack written).
    pub packed: usize,
    /// Loose copies deleted because the new pack has them.
    pub removed_packed: usize,
    /// Unreachable loose objects older than `prune_after` deleted.
    pub pruned: usize,
    /// Loose objects after the pass.
    pub loose_after: usize,
    /// The new pack's file name, when one was written.
    pub pack: Option<String>,
    /// Earlier gantry packs folded into the new one (and deleted).
    pub packs_folded: usize,
}

/// gantry's own packs are folded into one when there are this many.
pub const MAX_PACKS: usize = 8;

/// The list of the packs gantry wrote (`.git/gantry/packs`, one `pack-<hash>` a line).
fn packs_file(git_dir: &Path) -> PathBuf {
    git_dir.join("gantry").join("packs")
}

/// The packs listed, each once: a hand-edited or restored list may name one several times, and
/// counted each time, a fold rebuilt that pack under its own name and then deleted it.
fn our_packs(git_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(packs_file(git_dir)).unwrap_or_default().lines() {
        let name = line.trim();
        let valid = name.starts_with("pack-") && name.len() == 45 && name[5..].bytes().all(|b| b.is_ascii_hexdigit());
        if valid && !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// Adds the pack `name` (`pack-<hash>`), which the state writer just wrote into `objects/pack`,
/// to gantry's own packs, so the next pass folds it with the others once there are
/// [`MAX_PACKS`]: a batch of records is written as a pack, and unlisted, those packs were never
/// folded, one more for every large batch for as long as the daemon ran (issue #17). The
/// caller holds the [`ReconcilerLock`]; a crash before the list is replaced leaves one pack
/// unlisted, which costs a file, not an object.
///
/// # Errors
/// [`HousekeepingError::Io`] when the list cannot be replaced.
pub fn keep_as_ours(git_dir: &Path, name: &str) -> Result<(), HousekeepingError> {
    let mut names = our_packs(git_dir);
    if !names.iter().any(|n| n == name) {
        names.push(name.to_owned());
        write_our_packs(git_dir, &names)?;
    }
    Ok(())
}

/// Replaces the list (a temporary file renamed over it, synced).
fn write_our_packs(git_dir: &Path, names: &[String]) -> Result<(), HousekeepingError> {
    let path = packs_file(git_dir);
    let dir = path.parent().unwrap_or(git_dir);
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let tmp = path.with_file_name("packs.tmp");
    let mut text = names.join("\n");
    text.push('\n');
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming into", &path))?;
    sync_dir(dir)
}

/// Why a housekeeping pass stopped (what it did before stays done and valid).
#[derive(Debug, thiserror::Error)]
pub enum HousekeepingError {
    /// A git operation failed.
    #[error("housekeeping: {action}: {source}")]
    Git {
        action: &'static str,
        #[source]
        source: git2::Error,
    },
    /// A file operation in the object directory failed.
    #[error("housekeeping: {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A pack index (the new pack's, or one of gantry's earlier packs' being folded) does not
    /// read as one: nothing was deleted.
    #[error("housekeeping: {} does not read as a pack index; no object was deleted", path.display())]
    BadIndex { path: PathBuf },
}

fn git(action: &'static str) -> impl FnOnce(git2::Error) -> HousekeepingError {
    move |source| HousekeepingError::Git { action, source }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HousekeepingError {
    let path = path.to_path_buf();
    move |source| HousekeepingError::Io { action, path, source }
}

/// A point in the pass where a test may stop it (a simulated crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The pack and its index are written and synced.
    Packed,
    /// Before deleting one loose object (a packed copy or an unreachable one).
    Deleting,
}

/// One housekeeping pass over the repository at `repo` for the state branch `state_branch`.
///
/// # Errors
/// [`HousekeepingError`]; whatever was done before it stays done, and the repository is valid.
pub fn housekeep(
    repo: &Repository,
    _lock: &ReconcilerLock,
    state_branch: &str,
    prune_after: Duration,
) -> Result<Housekept, HousekeepingError> {
    housekeep_with(
        repo,
        state_branch,
        Some(prune_after),
        SystemTime::now(),
        &mut |_| Ok(()),
    )
}

/// Whether gantry's own packs that are still on disk number [`MAX_PACKS`] or more, the count a
/// housekeeping pass folds into one. A pass that wrote that many large batches (a 10,000-target
/// `apply` writes 64) would otherwise leave each later object lookup to search every one of
/// them: `status` on such a fleet spent a third of its time there (issue #17).
pub fn packs_to_fold(git_dir: &Path) -> bool {
    let pack_dir = git_dir.join("objects").join("pack");
    our_packs(git_dir)
        .iter()
        .filter(|name| pack_dir.join(format!("{name}.idx")).exists())
        .count()
        >= MAX_PACKS
}

/// The first two steps of [`housekeep`] (pack, then drop packed loose copies), without pruning,
/// when [`packs_to_fold`]: what a pass does before it lets go of the lock, so the packs of its
/// large batches do not wait for a daemon's next housekeeping. `None` when there was nothing
/// to fold.
///
/// # Errors
/// As [`housekeep`].
pub fn fold_packs(
    repo: &Repository,
    _lock: &ReconcilerLock,
    state_branch: &str,
) -> Result<Option<Housekept>, HousekeepingError> {
    if !packs_to_fold(repo.path()) {
        return Ok(None);
    }
    housekeep_with(repo, state_branch, None, SystemTime::now(), &mut |_| Ok(())).map(Some)
}

/// [`housekeep`] at the wall-clock time `now`, calling `checkpoint` at each [`Stage`] (tests
/// fail it to interrupt the pass). Without `prune_after`, nothing unreachable is pruned.
pub fn housekeep_with(
    repo: &Repository,
    state_branch: &str,
    prune_after: Option<Duration>,
    now: SystemTime,
    checkpoint: &mut dyn FnMut(Stage) -> Result<(), HousekeepingError>,
) -> Result<Housekept, HousekeepingError> {
    let objects = repo.path().join("objects");
    let loose = loose_objects(&objects)?;
    let mut done = Housekept {
        loose_before: loose.len(),
        ..Housekept::default()
    };
    let loose_ids: HashSet<Oid> = loose.iter().map(|(oid, _)| *oid).collect();

    // 1. Pack the loose objects the state branch reaches.
    let mut ours = HashSet::new();
    if let Ok(reference) = repo.find_reference(&format!("refs/heads/{state_branch}"))
        && let Some(tip) = reference.target()
    {
        let mut walk = repo.revwalk().map_err(git("walking the state branch"))?;
        walk.push(tip).map_err(git("walking the state branch"))?;
        let mut seen = HashSet::new();
        for commit in walk {
            let commit = commit.map_err(git("walking the state branch"))?;
            reach_commit(repo, commit, &mut seen)?;
        }
        ours = seen.into_iter().filter(|oid| loose_ids.contains(oid)).collect();
    }
    let pack_dir = objects.join("pack");
    // gantry's earlier packs: folded into this one once there are MAX_PACKS of them, so their
    // number stays bounded however long the daemon runs.
    let earlier: Vec<String> = our_packs(repo.path())
        .into_iter()
        .filter(|name| pack_dir.join(format!("{name}.idx")).exists())
        .collect();
    let fold = earlier.len() >= MAX_PACKS;
    let mut folded: HashSet<Oid> = HashSet::new();
    if fold {
        for name in &earlier {
            folded.extend(pack_index_ids(&pack_dir.join(format!("{name}.idx")))?);
        }
    }
    if !ours.is_empty() || !folded.is_empty() {
        let mut builder = repo.packbuilder().map_err(git("starting a pack"))?;
        let mut sorted: Vec<Oid> = ours.union(&folded).copied().collect();
        sorted.sort();
        for oid in &sorted {
            builder
                .insert_object(*oid, None)
                .map_err(git("adding an object to the pack"))?;
        }
        std::fs::create_dir_all(&pack_dir).map_err(io("creating", &pack_dir))?;
        builder.write(&pack_dir, 0o444).map_err(git("writing the pack"))?;
        let name = builder
            .name()
            .ok()
            .flatten()
            .map(|n| format!("pack-{n}"))
            .ok_or_else(|| HousekeepingError::BadIndex { path: pack_dir.clone() })?;
        let pack = pack_dir.join(format!("{name}.pack"));
        let index = pack_dir.join(format!("{name}.idx"));
        for path in [&pack, &index] {
            std::fs::File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(io("syncing", path))?;
        }
        sync_dir(&pack_dir)?;
        done.pack = Some(format!("{name}.pack"));
        checkpoint(Stage::Packed)?;
        // 2. Delete a loose copy only when the index on disk lists it.
        let listed = pack_index_ids(&index)?;
        done.packed = listed.len();
        // Earlier packs are retired only when the new one lists every object they hold (it was
        // built from them), so no object is ever deleted by folding: it moves.
        let retire = fold && folded.iter().all(|oid| listed.contains(oid));
        let mut kept: Vec<String> = if retire { Vec::new() } else { earlier.clone() };
        if !kept.contains(&name) {
            kept.push(name.clone());
        }
        write_our_packs(repo.path(), &kept)?;
        for (oid, path) in &loose {
            if ours.contains(oid) && listed.contains(oid) {
                checkpoint(Stage::Deleting)?;
                remove(path)?;
                done.removed_packed += 1;
            }
        }
        if retire {
            // The new pack may have the name of one it folded (a pack's name is the hash of its
            // content: the same objects again make the same pack): that one is the new pack.
            for old in earlier.iter().filter(|old| **old != name) {
                checkpoint(Stage::Deleting)?;
                // The index first: a reader that no longer finds it does not open the pack.
                remove(&pack_dir.join(format!("{old}.idx")))?;
                remove(&pack_dir.join(format!("{old}.pack")))?;
                done.packs_folded += 1;
            }
        }
    }

    // 3. Prune: old loose objects nothing reaches (the full walk only when there are some).
    let old: Vec<&(Oid, PathBuf)> = match prune_after {
        Some(age) => loose
            .iter()
            .filter(|(oid, path)| !ours.contains(oid) && is_older(path, now, age))
            .collect(),
        None => Vec::new(),
    };
    if !old.is_empty() {
        let reachable = everything_reachable(repo)?;
        for (oid, path) in old {
            if !reachable.contains(oid) {
                checkpoint(Stage::Deleting)?;
                remove(path)?;
                done.pruned += 1;
            }
        }
    }
    done.loose_after = loose_objects(&objects)?.len();
    Ok(done)
}

fn remove(path: &Path) -> Result<(), HousekeepingError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("deleting", path)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), HousekeepingError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

fn is_older(path: &Path, now: SystemTime, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| now.duration_since(modified).is_ok_and(|d| d > age))
}

/// Every loose object: its id and file (`objects/ab/cdef…`).
pub fn loose_objects(objects: &Path) -> Result<Vec<(Oid, PathBuf)>, HousekeepingError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(objects) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("listing", objects)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("listing", objects))?;
        let prefix = entry.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let dir = entry.path();
        for file in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
            let file = file.map_err(io("listing", &dir))?;
            let rest = file.file_name().to_string_lossy().into_owned();
            if rest.len() == 38
                && let Ok(oid) = Oid::from_str(&format!("{prefix}{rest}"))
            {
                out.push((oid, file.path()));
            }
        }
    }
    Ok(out)
}

/// The object ids a version-2 pack index lists (`git-index-pack` format: magic, version,
/// fan-out table of 256 counts, then the sorted ids).
fn pack_index_ids(path: &Path) -> Result<HashSet<Oid>, HousekeepingError> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let bad = || HousekeepingError::BadIndex {
        path: path.to_path_buf(),
    };
    if bytes.len() < 8 + 256 * 4 || bytes[..4] != [0xff, b't', b'O', b'c'] || bytes[4..8] != [0, 0, 0, 2] {
        return Err(bad());
    }
    let at = 8 + 255 * 4;
    let count = u32::from_be_bytes(bytes[at..at + 4].try_into().map_err(|_| bad())?) as usize;
    let ids = bytes.get(8 + 256 * 4..8 + 256 * 4 + count * 20).ok_or_else(bad)?;
    ids.chunks(20)
        .map(|id| Oid::from_bytes(id).map_err(|_| bad()))
        .collect()
}

/// Adds a commit, its tree and everything below to `seen`.
fn reach_commit(repo: &Repository, commit: Oid, seen: &mut HashSet<Oid>) -> Result<(), HousekeepingError> {
    if !seen.insert(commit) {
        return Ok(());
    }
    let commit = repo.find_commit(commit).map_err(git("reading a commit"))?;
    reach_tree(repo, commit.tree_id(), seen)
}

fn reach_tree(repo: &Repository, tree: Oid, seen: &mut HashSet<Oid>) -> Result<(), HousekeepingError> {
    if !seen.insert(tree) {
        return Ok(());
    }
    let tree = repo.find_tree(tree).map_err(git("reading a tree"))?;
    for entry in tree.iter() {
        match entry.kind() {
            Some(ObjectType::Tree) => reach_tree(repo, entry.id(), seen)?,
            // A submodule's commit is another repository's object.
            Some(ObjectType::Commit) => {}
            _ => {
                seen.insert(entry.id());
            }
        }
    }
    Ok(())
}

/// Adds what the roots reach: commits through one history walk over all of them (a root per
/// reflog entry would otherwise walk the same history thousands of times), the rest directly.
/// A root whose object is gone (an old reflog entry) reaches nothing; any other failure is an
/// error.
fn reach_roots(repo: &Repository, roots: Vec<Oid>, seen: &mut HashSet<Oid>) -> Result<(), HousekeepingError> {
    let mut walk = repo.revwalk().map_err(git("walking history"))?;
    let mut pending = roots;
    while let Some(oid) = pending.pop() {
        if oid.is_zero() || seen.contains(&oid) {
            continue;
        }
        let object = match repo.find_object(oid, None) {
            Ok(object) => object,
            Err(e) if e.code() == git2::ErrorCode::NotFound => continue,
            Err(e) => return Err(git("reading an object a ref names")(e)),
        };
        match object.kind() {
            Some(ObjectType::Commit) => walk.push(oid).map_err(git("walking history"))?,
            Some(ObjectType::Tree) => reach_tree(repo, oid, seen)?,
            Some(ObjectType::Tag) => {
                seen.insert(oid);
                if let Some(tag) = object.as_tag() {
                    pending.push(tag.target_id());
                }
            }
            _ => {
                seen.insert(oid);
            }
        }
    }
    for commit in walk {
        let commit = commit.map_err(git("walking history"))?;
        reach_commit(repo, commit, seen)?;
    }
    Ok(())
}

/// Everything git counts as reachable: every ref, every reflog entry, the index and HEAD of the
/// repository and of each worktree.
///
/// # Errors
/// Any root that cannot be read fails the walk (and so the prune: nothing is deleted on a
/// partial view).
fn everything_reachable(repo: &Repository) -> Result<HashSet<Oid>, HousekeepingError> {
    let mut seen = HashSet::new();
    let mut roots: Vec<Oid> = Vec::new();
    let mut names = vec!["HEAD".to_string()];
    for reference in repo.references().map_err(git("listing refs"))? {
        let reference = reference.map_err(git("listing refs"))?;
        if let Ok(name) = reference.name() {
            names.push(name.to_string());
        }
        if let Some(target) = reference.resolve().ok().and_then(|r| r.target()) {
            roots.push(target);
        }
    }
    for name in &names {
        if let Ok(reflog) = repo.reflog(name) {
            for entry in reflog.iter() {
                roots.push(entry.id_old());
                roots.push(entry.id_new());
            }
        }
    }
    let mut repos = vec![Repository::open(repo.path()).map_err(git("opening the repository"))?];
    let worktrees = repo.worktrees().map_err(git("listing worktrees"))?;
    for worktree in worktrees.iter().flatten().flatten() {
        if let Ok(worktree) = repo.find_worktree(worktree)
            && let Ok(opened) = Repository::open_from_worktree(&worktree)
        {
            repos.push(opened);
        }
    }
    for r in &repos {
        if let Ok(head) = r.head()
            && let Some(target) = head.target()
        {
            roots.push(target);
        }
        if let Ok(reflog) = r.reflog("HEAD") {
            for entry in reflog.iter() {
                roots.push(entry.id_old());
                roots.push(entry.id_new());
            }
        }
        if !r.is_bare()
            && let Ok(index) = r.index()
        {
            for entry in index.iter() {
                seen.insert(entry.id);
            }
        }
    }
    reach_roots(repo, roots, &mut seen)?;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A repository with `commits` commits on `gantry/state` (one record file changing each
    /// time), a desired branch, an unreachable blob written 30 days ago and one written now, a
    /// 30-day-old blob only the index has, and a 30-day-old commit only a reflog reaches.
    struct Fixture {
        dir: tempfile::TempDir,
        old_unreachable: Oid,
        new_unreachable: Oid,
        index_only: Oid,
        reflog_only: Oid,
    }

    fn age(repo: &Repository, oid: Oid, by: Duration) {
        let hex = oid.to_string();
        let path = repo.path().join("objects").join(&hex[..2]).join(&hex[2..]);
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - by).unwrap();
    }

    /// One whole housekeeping pass (prune after 14 days), not interrupted.
    fn full_pass(repo: &Repository) -> Housekept {
        housekeep_with(repo, "gantry/state", Some(14 * DAY), SystemTime::now(), &mut |_| Ok(())).unwrap()
    }

    fn fixture(commits: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let mut parent: Option<Oid> = None;
        for i in 0..commits {
            let blob = repo
                .blob(format!("status: converged\nversion: 1.0.{i}\n").as_bytes())
                .unwrap();
            let mut targets = repo.treebuilder(None).unwrap();
            targets.insert("acme.yaml", blob, 0o100644).unwrap();
            let targets = targets.write().unwrap();
            let mut root = repo.treebuilder(None).unwrap();
            root.insert("targets", targets, 0o040000).unwrap();
            let tree = repo.find_tree(root.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent.iter().map(|p| repo.find_commit(*p).unwrap()).collect();
            let refs: Vec<&git2::Commit> = parents.iter().collect();
            parent = Some(
                repo.commit(
                    Some("refs/heads/gantry/state"),
                    &sig,
                    &sig,
                    &format!("outcome {i}"),
                    &tree,
                    &refs,
                )
                .unwrap(),
            );
        }
        // The desired branch, through the work tree and index.
        std::fs::write(dir.path().join("README.md"), "hello\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("README.md")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, "main", &tree, &[]).unwrap();
        // An old blob staged in the index only (never committed).
        std::fs::write(dir.path().join("staged.txt"), "staged, not committed\n").unwrap();
        index.add_path(Path::new("staged.txt")).unwrap();
        index.write().unwrap();
        let index_only = index.get_path(Path::new("staged.txt"), 0).unwrap().id;
        // A commit only a reflog reaches: a branch moved onto it and away again.
        let blob = repo.blob(b"only in a reflog\n").unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("x", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let head = repo.head().unwrap().target().unwrap();
        let head_commit = repo.find_commit(head).unwrap();
        let reflog_only = repo
            .commit(Some("refs/heads/side"), &sig, &sig, "side", &tree, &[&head_commit])
            .unwrap();
        repo.reference("refs/heads/side", head, true, "move back").unwrap();
        let old_unreachable = repo.blob(b"nobody needs me\n").unwrap();
        let new_unreachable = repo.blob(b"a git commit in progress wrote me\n").unwrap();
        for oid in [old_unreachable, index_only, reflog_only, tree.id(), blob] {
            age(&repo, oid, 30 * DAY);
        }
        Fixture {
            dir,
            old_unreachable,
            new_unreachable,
            index_only,
            reflog_only,
        }
    }

    /// `git fsck --full` (the git CLI, tests only): no missing or corrupt object, every ref
    /// resolves. Dangling objects are fine.
    fn assert_valid(dir: &Path) {
        let out = std::process::Command::new("git")
            .args(["fsck", "--full", "--no-progress"])
            .current_dir(dir)
            .output()
            .expect("git fsck");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "git fsck failed:\n{text}");
        assert!(
            !text.contains("missing") && !text.contains("error") && !text.contains("broken"),
            "{text}"
        );
        let repo = Repository::open(dir).unwrap();
        for reference in repo.references().unwrap() {
            let reference = reference.unwrap();
            let target = reference.resolve().unwrap().target().unwrap();
            repo.find_object(target, None).unwrap();
        }
    }

    #[test]
    fn housekeeping_packs_state_objects_prunes_only_old_unreachable_ones_and_fsck_stays_clean() {
        let f = fixture(20);
        let repo = Repository::open(f.dir.path()).unwrap();
        let done = full_pass(&repo);
        // 20 commits × (commit, root tree, targets tree, blob) = 80 state objects packed.
        assert_eq!(done.packed, 80, "{done:?}");
        assert_eq!(done.removed_packed, 80, "{done:?}");
        assert_eq!(done.pruned, 1, "only the old unreachable blob: {done:?}");
        assert_eq!(done.loose_after, done.loose_before - 81, "{done:?}");
        assert_valid(f.dir.path());
        let repo = Repository::open(f.dir.path()).unwrap();
        let odb = repo.odb().unwrap();
        assert!(!odb.exists(f.old_unreachable));
        for kept in [f.new_unreachable, f.index_only, f.reflog_only] {
            assert!(odb.exists(kept), "{kept} was deleted");
        }
        // The state branch reads from the pack.
        let tip = repo.refname_to_id("refs/heads/gantry/state").unwrap();
        assert_eq!(repo.find_commit(tip).unwrap().message().ok(), Some("outcome 19"));
        // A second pass has nothing to pack.
        let again = full_pass(&repo);
        assert_eq!(
            (again.packed, again.removed_packed, again.pruned),
            (0, 0, 0),
            "{again:?}"
        );
    }

    /// Regression guard for a daemon running for months: one pack per pass would pile up
    /// thousands of packs; gantry's own are folded into one once there are [`MAX_PACKS`], with
    /// every object they held, and the repository stays valid throughout.
    #[test]
    fn gantry_packs_are_folded_so_their_number_stays_bounded() {
        let f = fixture(1);
        let repo = Repository::open(f.dir.path()).unwrap();
        let packs = |repo: &Repository| {
            std::fs::read_dir(repo.path().join("objects/pack"))
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                        .count()
                })
                .unwrap_or(0)
        };
        let mut folded = 0;
        for i in 0..(2 * MAX_PACKS + 1) {
            state_commit(&repo, i);
            let done = full_pass(&repo);
            folded += done.packs_folded;
            assert!(packs(&repo) <= MAX_PACKS, "pass {i}: {} packs", packs(&repo));
        }
        assert_eq!(folded, 2 * MAX_PACKS, "two folds of {MAX_PACKS} packs");
        assert_valid(f.dir.path());
        let repo = Repository::open(f.dir.path()).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/gantry/state").unwrap();
        assert_eq!(walk.count(), 2 * MAX_PACKS + 2, "every state commit still reads");
    }

    /// One more state commit on `gantry/state` (a record blob, its tree, the commit: loose).
    fn state_commit(repo: &Repository, i: usize) {
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let tip = repo.refname_to_id("refs/heads/gantry/state").unwrap();
        let parent = repo.find_commit(tip).unwrap();
        let blob = repo.blob(format!("pass {i}\n").as_bytes()).unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("record.yaml", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        repo.commit(
            Some("refs/heads/gantry/state"),
            &sig,
            &sig,
            &format!("pass {i}"),
            &tree,
            &[&parent],
        )
        .unwrap();
    }

    /// Issue #17: `apply` folds before it lets go of the lock once gantry's packs number
    /// [`MAX_PACKS`], even when nothing is loose (a pass whose every batch was written as a
    /// pack), and it never prunes: an old unreachable object is the daemon's to judge.
    #[test]
    fn a_pass_folds_its_packs_without_pruning_once_there_are_enough() {
        let f = fixture(1);
        let repo = Repository::open(f.dir.path()).unwrap();
        let lock = ReconcilerLock::acquire(repo.path()).unwrap();
        let idx_count = || {
            std::fs::read_dir(repo.path().join("objects/pack"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                .count()
        };
        for i in 0..MAX_PACKS {
            assert!(!packs_to_fold(repo.path()), "{i} packs");
            assert_eq!(fold_packs(&repo, &lock, "gantry/state").unwrap(), None, "{i} packs");
            state_commit(&repo, i);
            full_pass(&repo);
        }
        assert_eq!(idx_count(), MAX_PACKS);
        let state_loose = |repo: &Repository| {
            let loose: HashSet<Oid> = loose_objects(&repo.path().join("objects"))
                .unwrap()
                .into_iter()
                .map(|(oid, _)| oid)
                .collect();
            let mut walk = repo.revwalk().unwrap();
            walk.push_ref("refs/heads/gantry/state").unwrap();
            walk.flatten().filter(|c| loose.contains(c)).count()
        };
        assert_eq!(
            state_loose(&repo),
            0,
            "every state object is packed: nothing loose to pack"
        );
        let old_unreachable = repo.blob(b"a stray object, long ago\n").unwrap();
        age(&repo, old_unreachable, 30 * DAY);

        assert!(packs_to_fold(repo.path()));
        let done = fold_packs(&repo, &lock, "gantry/state").unwrap().expect("a fold");
        assert_eq!(done.packs_folded, MAX_PACKS, "{done:?}");
        assert_eq!(done.pruned, 0, "{done:?}");
        assert_eq!(idx_count(), 1);
        assert!(!packs_to_fold(repo.path()));
        assert!(repo.odb().unwrap().exists(old_unreachable), "a fold prunes nothing");
        assert_valid(f.dir.path());
        let repo = Repository::open(f.dir.path()).unwrap();
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/gantry/state").unwrap();
        assert_eq!(walk.count(), MAX_PACKS + 1, "every state commit still reads");
    }

    /// Review of issue #17's fold: a list naming one pack eight times (a hand-edited or restored
    /// `.git/gantry/packs`) made the next fold rebuild that pack from its own objects, under the
    /// same name (a pack's name is the hash of its content), and then delete it as a folded
    /// one, with the whole state branch in it. A name counts once, and the new pack is never
    /// among those a fold deletes.
    #[test]
    fn a_pack_listed_many_times_is_never_deleted_by_a_fold() {
        let f = fixture(20);
        let repo = Repository::open(f.dir.path()).unwrap();
        let lock = ReconcilerLock::acquire(repo.path()).unwrap();
        let done = housekeep_with(&repo, "gantry/state", None, SystemTime::now(), &mut |_| Ok(())).unwrap();
        let pack = done.pack.expect("a pack").trim_end_matches(".pack").to_string();
        write_our_packs(repo.path(), &vec![pack.clone(); MAX_PACKS]).unwrap();
        fold_packs(&repo, &lock, "gantry/state").unwrap();
        // Folded with itself alone, it must still be there.
        let folded = housekeep_with(&repo, "gantry/state", None, SystemTime::now(), &mut |_| Ok(())).unwrap();
        assert_eq!(folded.packs_folded, 0, "{folded:?}");
        assert_valid(f.dir.path());
        let repo = Repository::open(f.dir.path()).unwrap();
        let tip = repo.refname_to_id("refs/heads/gantry/state").unwrap();
        assert_eq!(repo.find_commit(tip).unwrap().message().ok(), Some("outcome 19"));
        assert!(repo.path().join(format!("objects/pack/{pack}.idx")).exists());
    }

    /// A pass stopped at every point (after the pack is written, before the 1st, 2nd, 40th,
    /// 81st deletion) leaves a valid repository, and the next pass finishes the job.
    #[test]
    fn an_interrupted_housekeeping_pass_leaves_a_valid_repository() {
        for (stage, after) in [
            (Stage::Packed, 0),
            (Stage::Deleting, 0),
            (Stage::Deleting, 1),
            (Stage::Deleting, 40),
            (Stage::Deleting, 80),
        ] {
            let f = fixture(20);
            let repo = Repository::open(f.dir.path()).unwrap();
            let mut seen = 0;
            let mut crash = |at: Stage| {
                if at == stage {
                    if seen == after {
                        return Err(HousekeepingError::BadIndex {
                            path: PathBuf::from("simulated crash"),
                        });
                    }
                    seen += 1;
                }
                Ok(())
            };
            let stopped = housekeep_with(&repo, "gantry/state", Some(14 * DAY), SystemTime::now(), &mut crash);
            assert!(
                stopped.is_err(),
                "{stage:?} {after}: the simulated crash stops the pass"
            );
            assert_valid(f.dir.path());
            let repo = Repository::open(f.dir.path()).unwrap();
            let done = full_pass(&repo);
            assert_valid(f.dir.path());
            let before = loose_objects(&repo.path().join("objects")).unwrap().len();
            assert_eq!(before, done.loose_after);
            assert!(
                !repo.odb().unwrap().exists(f.old_unreachable),
                "{stage:?} {after}: finished by the next pass"
            );
            assert!(repo.odb().unwrap().exists(f.index_only));
        }
    }
}
