//! Checkouts of desired commits under `.git/gantry/checkouts/`, where steps run.
//!
//! A step's scripts must come from the same commit as the manifests that planned it, so every
//! commit gets its own directory, written once from the commit's tree (never touching the work
//! tree, the index or HEAD) and reused by later passes.
//!
//! The files are written straight from the tree's blobs: libgit2's checkout machinery (index,
//! attributes, status of the target directory) canonicalized every path twice and cost about a
//! millisecond a file, the largest fixed cost between a new commit and its first step (issue #17).
//! What is written is exactly the tree: blob bytes as stored (no filters or line-ending
//! conversion), executable files `0777 & !umask`, others `0666 & !umask` (what libgit2 and git
//! do), symbolic links as links, submodules as empty directories.
//!
//! A new commit's checkout is made from the one it pushes out (the oldest kept), so that its
//! cost follows what the commit changes rather than the size of the repository:
//! - carried over ([`inventory`]): when nothing changed that old checkout since gantry wrote it,
//!   it is patched into the new one (changed files rewritten in place, added ones created,
//!   removed ones deleted) and renamed;
//! - otherwise written whole, moving over the file at the same path in the old checkout
//!   (rewritten unless identical) instead of creating one ([`Reuse`]): creating files while
//!   deleting others was most of the time from a new commit to its first step on ext4 without a
//!   journal.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Tree};

use super::{SourceError, WatchedRepo};

mod inventory;

/// How many checkouts to keep; older ones are deleted when a new one is made.
const KEEP_CHECKOUTS: usize = 5;

impl WatchedRepo {
    /// The directory holding a checkout of `commit`, creating it when missing.
    ///
    /// # Guarantees
    /// The directory is complete when returned: it is written under a temporary name and
    /// renamed into place, so a killed process never leaves a half checkout that looks whole.
    /// A tree entry that could escape the checkout (`..`, `.git`, a name with `/`) refuses the
    /// whole checkout.
    ///
    /// # Errors
    /// git or file system failures, [`SourceError::Refused`] for an unsafe tree entry.
    pub fn checkout(&self, commit: Oid) -> Result<PathBuf, SourceError> {
        let root = self.gantry_dir().join("checkouts");
        let dir = root.join(commit.to_string());
        if dir.is_dir() {
            return Ok(dir);
        }
        let span = tracing::debug_span!("checkout.write").entered();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SourceError::Io { path, source }
        };
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        let tree = self.repo.find_commit(commit)?.tree()?;
        // The checkouts past the newest (this one among them) go now, so one of them can be
        // carried over to this commit, or its identical files moved into this one, instead of
        // being deleted while new ones are created.
        let (mut trash, pushed_out) = trash_old_checkouts(&root, KEEP_CHECKOUTS - 1);
        match self.carry_over(&root, &pushed_out, commit, &tree, &dir) {
            Ok(Some(carried)) => {
                trash.retain(|t| *t != carried);
                drop(delete_in_background(trash, root));
                drop(span);
                tracing::debug!(from = %carried.display(), "checkout carried over");
                return Ok(dir);
            }
            Ok(None) => {}
            Err(refused) => {
                drop(delete_in_background(trash, root));
                return Err(refused);
            }
        }
        let partial = root.join(format!(".partial-{commit}-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        let reuse = Reuse::new(&partial, &trash);
        let written = self.write_tree(&tree, &partial, "", &reuse);
        if written.is_ok() {
            // Without an inventory the next checkout is written whole: no reason to fail this one.
            let stored = inventory::Inventory::take(self, commit, &tree, &partial).and_then(|i| i.store(&root));
            if let Err(e) = stored {
                tracing::warn!(checkout = %partial.display(), "no inventory kept for the checkout: {e}");
            }
        }
        let named = written.and_then(|()| std::fs::rename(&partial, &dir).map_err(io(&dir)));
        if named.is_err() {
            // Never used (only the final name is), but not worth keeping either.
            let _ = std::fs::remove_dir_all(&partial);
        }
        // Deleting goes on in the background; nothing waits for it. Started once this
        // checkout has its name, so its inventory is not taken for a leftover.
        drop(delete_in_background(trash, root));
        named?;
        drop(span);
        tracing::debug!(reused = reuse.taken.get(), "checkout written");
        Ok(dir)
    }

    /// Patches one of the checkouts just pushed out (trashed by this call, so no thread of an
    /// earlier one is deleting it) that nothing changed since gantry wrote it into a checkout
    /// of `commit`, and renames it to `dir` ([`inventory`]). Returns the trashed directory used,
    /// or `None` when none qualifies (the caller writes the checkout whole).
    ///
    /// # Errors
    /// [`SourceError::Refused`] for an unsafe tree entry; other failures fall back to a whole
    /// write, which meets them again if they were not the old checkout's.
    fn carry_over(
        &self,
        root: &Path,
        pushed_out: &[PathBuf],
        commit: Oid,
        tree: &Tree<'_>,
        dir: &Path,
    ) -> Result<Option<PathBuf>, SourceError> {
        for old in pushed_out {
            let Some(was) = trashed_commit(old) else { continue };
            let Some(inventory) =
                tracing::debug_span!("checkout.inventory_load").in_scope(|| inventory::Inventory::load(root, was))
            else {
                continue;
            };
            if inventory::a_process_works_in(old) {
                tracing::debug!(checkout = %old.display(), "not carried over: a process works in it");
                continue;
            }
            if let Err(changed) = tracing::debug_span!("checkout.verify").in_scope(|| inventory.verify(self, old)) {
                tracing::debug!(checkout = %old.display(), "not carried over: {changed}");
                continue;
            }
            let patched = tracing::debug_span!("checkout.patch")
                .in_scope(|| inventory::patch(self, &inventory, old, commit, tree))
                .and_then(|patched| tracing::debug_span!("checkout.inventory_store").in_scope(|| patched.store(root)))
                .and_then(|()| {
                    std::fs::rename(old, dir).map_err(|source| SourceError::Io {
                        path: dir.to_path_buf(),
                        source,
                    })
                });
            match patched {
                Ok(()) => return Ok(Some(old.clone())),
                Err(refused @ SourceError::Refused(_)) => return Err(refused),
                Err(e) => {
                    tracing::debug!(checkout = %old.display(), "not carried over: {e}");
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// Writes every entry of `tree` under `dir` (which exists and is empty); `prefix` is the
    /// tree's path in the commit, for messages.
    fn write_tree(&self, tree: &Tree<'_>, dir: &Path, prefix: &str, reuse: &Reuse) -> Result<(), SourceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SourceError::Io { path, source }
        };
        let mut names = std::collections::HashSet::new();
        for entry in tree {
            let name = safe_name(entry.name_bytes()).ok_or_else(|| {
                SourceError::Refused(format!(
                    "commit tree entry `{prefix}{}` is not a safe file name (`.`, `..`, `.git` or a name with `/`); \
                     nothing of the commit is checked out",
                    String::from_utf8_lossy(entry.name_bytes())
                ))
            })?;
            // A forged tree can name a path twice; refused as a carry-over refuses it (a file
            // taken over from an old checkout would otherwise let the second one win).
            if !names.insert(name.to_os_string()) {
                return Err(SourceError::Refused(format!(
                    "commit tree entry `{prefix}{}` is named twice in its tree; nothing of the commit is checked out",
                    name.to_string_lossy()
                )));
            }
            let path = dir.join(name);
            let mode = entry.filemode();
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    std::fs::create_dir(&path).map_err(io(&path))?;
                    let sub = self.repo.find_tree(entry.id())?;
                    self.write_tree(&sub, &path, &format!("{prefix}{}/", name.to_string_lossy()), reuse)?;
                }
                Some(ObjectType::Blob) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    if mode == i32::from(git2::FileMode::Link) {
                        let target = std::ffi::OsStr::from_bytes(blob.content());
                        std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
                    } else {
                        let executable = mode == i32::from(git2::FileMode::BlobExecutable);
                        if reuse.take(&path, blob.content(), executable) {
                            continue;
                        }
                        let mut file = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(if executable { 0o777 } else { 0o666 })
                            .open(&path)
                            .map_err(io(&path))?;
                        file.write_all(blob.content()).map_err(io(&path))?;
                    }
                }
                // A submodule (a commit in the tree): an empty directory, as git leaves it
                // before `git submodule update`.
                Some(ObjectType::Commit) => std::fs::create_dir(&path).map_err(io(&path))?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Keeps the newest [`KEEP_CHECKOUTS`] checkouts; failures to delete are harmless (see
    /// [`trash_old_checkouts`]).
    #[cfg(test)]
    fn prune_checkouts(&self, root: &Path) -> Option<std::thread::JoinHandle<()>> {
        delete_in_background(trash_old_checkouts(root, KEEP_CHECKOUTS).0, root.to_path_buf())
    }

    /// The work tree of the watched repository (its git dir for a bare repository).
    pub fn root(&self) -> PathBuf {
        self.repo
            .workdir()
            .map_or_else(|| self.repo.path().to_path_buf(), std::path::Path::to_path_buf)
    }
}

/// Renames every checkout but the newest `keep` to `.trash-…` and returns them with the trash
/// and partial checkouts earlier calls and processes left, for [`delete_in_background`]; and
/// apart, the ones this call renamed.
///
/// An old checkout is renamed first (atomic), then deleted off the path to the first step: a
/// process killed while deleting never leaves a half-deleted checkout under its commit's name,
/// where a resumed attempt would take it for whole. Every caller holds the reconciler lock, so
/// no other process is writing here.
fn trash_old_checkouts(root: &Path, keep: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    static TRASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Ok(entries) = std::fs::read_dir(root) else {
        return (Vec::new(), Vec::new());
    };
    let own_partial = format!("-{}", std::process::id());
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    let mut trash: Vec<PathBuf> = Vec::new();
    let mut inventories: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(commit) = name.strip_prefix(".inventory-") {
            // `<commit>`, or `<commit>.<pid>` while being written.
            let commit = commit.split('.').next().unwrap_or_default().to_string();
            inventories.push((commit, entry.path()));
        } else if name.starts_with(".trash-") || (name.starts_with(".partial-") && !name.ends_with(&own_partial)) {
            trash.push(entry.path());
        } else if !name.starts_with('.')
            && let Some(modified) = entry.metadata().ok().and_then(|m| m.modified().ok())
        {
            dirs.push((modified, entry.path()));
        }
    }
    // Inventories of checkouts that are neither kept nor trash: left by a killed process.
    for (commit, path) in inventories {
        let held = |dir: &PathBuf| dir.file_name().is_some_and(|n| n.to_string_lossy() == commit);
        let trashed = |dir: &PathBuf| trashed_commit(dir).is_some_and(|c| c.to_string() == commit);
        if !dirs.iter().any(|(_, d)| held(d)) && !trash.iter().any(trashed) {
            let _ = std::fs::remove_file(path);
        }
    }
    dirs.sort();
    let excess = dirs.len().saturating_sub(keep);
    let mut pushed_out = Vec::new();
    for (_, path) in dirs.into_iter().take(excess) {
        let n = TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = root.join(format!(".trash-{name}-{}-{n}", std::process::id()));
        if std::fs::rename(&path, &to).is_ok() {
            trash.push(to.clone());
            pushed_out.push(to);
        }
    }
    (trash, pushed_out)
}

/// Deletes `trash` on a background thread, with the inventories of the commits it held (unless
/// their checkout exists again); `None` when there is nothing to delete.
fn delete_in_background(trash: Vec<PathBuf>, root: PathBuf) -> Option<std::thread::JoinHandle<()>> {
    (!trash.is_empty()).then(|| {
        std::thread::spawn(move || {
            for path in trash {
                let _ = std::fs::remove_dir_all(&path);
                if let Some(commit) = trashed_commit(&path)
                    && !root.join(commit.to_string()).is_dir()
                {
                    let _ = std::fs::remove_file(inventory::Inventory::path(&root, commit));
                }
            }
        })
    })
}

/// The commit a trashed checkout (`.trash-<commit>-<pid>-<n>`) held.
fn trashed_commit(path: &Path) -> Option<Oid> {
    let name = path.file_name()?.to_str()?.strip_prefix(".trash-")?;
    Oid::from_str(name.get(..40)?).ok()
}

/// Files of trashed checkouts that a new checkout takes over instead of creating its own
/// (issue #17): on ext4 without a journal each create scans past the inodes deleted in the last
/// minute (up to five), so deleting an old checkout's files while creating the new one's cost
/// about half a millisecond a file, most of the time from a new commit to its first step.
///
/// # Guarantees
/// A file is taken only from the same path in a trashed checkout (only `.trash-…` ones, never
/// a killed process's partial one), only when it is a regular file with no other link, owned as
/// a new file would be, without extended attributes (ACLs), and it is rewritten to the blob's
/// bytes and the new-file mode unless it already is exactly that. So what a step changed in an
/// old checkout (a file rewritten in place, a mode changed, a hard link made) is never carried
/// over: the new checkout is exactly the commit's tree either way.
struct Reuse {
    /// The partial checkout being written.
    partial: PathBuf,
    /// Trashed complete checkouts.
    roots: Vec<PathBuf>,
    /// Permission bits of a new file and a new executable file (`0666`/`0777` less the umask,
    /// read from the partial directory's own mode, made with `0777`).
    file_mode: u32,
    exec_mode: u32,
    /// Owner and group a new file gets (the partial directory's).
    owner: (u32, u32),
    taken: std::cell::Cell<usize>,
}

impl Reuse {
    fn new(partial: &Path, trash: &[PathBuf]) -> Reuse {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(partial).ok();
        let dir_mode = meta.as_ref().map_or(0, |m| m.permissions().mode() & 0o777);
        let owner = meta.as_ref().map_or((u32::MAX, u32::MAX), |m| (m.uid(), m.gid()));
        let roots = trash
            .iter()
            .filter(|t| t.file_name().is_some_and(|n| n.as_bytes().starts_with(b".trash-")))
            .cloned()
            .collect::<Vec<_>>();
        Reuse {
            partial: partial.to_path_buf(),
            // Without the umask (a mode of 0), nothing is taken.
            roots: if dir_mode == 0 { Vec::new() } else { roots },
            file_mode: 0o666 & dir_mode,
            exec_mode: dir_mode,
            owner,
            taken: std::cell::Cell::new(0),
        }
    }

    /// Moves the file at the same path in a trashed checkout to `path`, rewritten to `content`
    /// and the new-file mode unless it already is exactly that; false when there is none that
    /// qualifies (then the caller creates the file).
    fn take(&self, path: &Path, content: &[u8], executable: bool) -> bool {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(rel) = path.strip_prefix(&self.partial) else {
            return false;
        };
        let want = if executable { self.exec_mode } else { self.file_mode };
        for root in &self.roots {
            let candidate = root.join(rel);
            let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
                continue;
            };
            // Only what a new file would be: ours (owner and group as the partial directory
            // has them), a regular file with no other link, and no extended attributes (ACLs).
            if !meta.file_type().is_file()
                || meta.nlink() != 1
                || (meta.uid(), meta.gid()) != self.owner
                || has_xattrs(&candidate)
            {
                continue;
            }
            let identical = meta.mode() & 0o7777 == want
                && meta.len() == content.len() as u64
                && std::fs::read(&candidate).is_ok_and(|bytes| bytes == content);
            let rewritten = identical
                || std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&candidate)
                    .and_then(|mut file| {
                        file.write_all(content)?;
                        file.set_permissions(std::fs::Permissions::from_mode(want))
                    })
                    .is_ok();
            if rewritten && std::fs::rename(&candidate, path).is_ok() {
                self.taken.set(self.taken.get() + 1);
                return true;
            }
        }
        false
    }
}

/// Whether `path` (not followed) has extended attributes, or they cannot be listed.
fn has_xattrs(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: llistxattr with a null buffer and size 0 only returns the size the list needs;
    // `c_path` is a valid NUL-terminated string for the duration of the call.
    let size = unsafe { nix::libc::llistxattr(c_path.as_ptr(), std::ptr::null_mut(), 0) };
    size != 0
}

/// `name` as a path component that stays inside the checkout, or `None`: empty, `.`, `..`,
/// `.git` in any case, or holding `/` or NUL (git refuses to check such trees out too).
fn safe_name(name: &[u8]) -> Option<&std::ffi::OsStr> {
    let unsafe_name = name.is_empty()
        || name == b"."
        || name == b".."
        || name.eq_ignore_ascii_case(b".git")
        || name.iter().any(|b| *b == b'/' || *b == 0);
    (!unsafe_name).then(|| std::ffi::OsStr::from_bytes(name))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A repository with one commit of `files` (path, bytes, git mode).
    fn repo_with(files: &[(&str, &[u8], git2::FileMode)]) -> (tempfile::TempDir, WatchedRepo, Oid) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let repo = git2::Repository::init(dir.path()).expect("git init");
        let commit = commit_files(&repo, files);
        drop(repo);
        let watched = WatchedRepo::open(dir.path()).expect("the repository");
        (dir, watched, commit)
    }

    /// A commit (without parents) of exactly `files` (path, bytes, git mode).
    fn commit_files(repo: &git2::Repository, files: &[(&str, &[u8], git2::FileMode)]) -> Oid {
        let mut index = git2::Index::new().expect("an index");
        for (path, bytes, mode) in files {
            let id = if *mode == git2::FileMode::Commit {
                // A submodule: any commit id will do, nothing reads it.
                Oid::from_str("1234567890123456789012345678901234567890").expect("an id")
            } else {
                repo.blob(bytes).expect("a blob")
            };
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: u32::try_from(i32::from(*mode)).expect("a mode"),
                uid: 0,
                gid: 0,
                file_size: 0,
                id,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            entry.flags = u16::try_from(path.len().min(0xfff)).expect("a short path");
            index.add(&entry).expect("an index entry");
        }
        let tree = index.write_tree_to(repo).expect("a tree");
        commit_tree(repo, tree)
    }

    /// A tree object written as given, entries in order (`"<mode> <name>"` and the object): git
    /// itself refuses to write such forged trees, the object database does not.
    fn raw_tree(repo: &git2::Repository, entries: &[(&str, Oid)]) -> Oid {
        let mut raw = Vec::new();
        for (mode_and_name, id) in entries {
            raw.extend_from_slice(mode_and_name.as_bytes());
            raw.push(0);
            raw.extend_from_slice(id.as_bytes());
        }
        repo.odb()
            .expect("the odb")
            .write(ObjectType::Tree, &raw)
            .expect("a raw tree")
    }

    fn commit_tree(repo: &git2::Repository, tree: Oid) -> Oid {
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1_700_000_000, 0)).expect("a signature");
        let tree = repo.find_tree(tree).expect("the tree");
        repo.commit(None, &sig, &sig, "files", &tree, &[]).expect("a commit")
    }

    /// Every path under `dir`: file bytes and permission bits, link targets, directories.
    fn listing(dir: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("a directory") {
                let path = entry.expect("an entry").path();
                let rel = path.strip_prefix(dir).expect("inside").to_string_lossy().into_owned();
                let meta = std::fs::symlink_metadata(&path).expect("metadata");
                let what = if meta.file_type().is_symlink() {
                    format!("link -> {}", std::fs::read_link(&path).expect("a link").display())
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    "dir".to_string()
                } else {
                    let bytes = std::fs::read(&path).expect("a file");
                    format!(
                        "{:o} {}",
                        meta.permissions().mode() & 0o777,
                        String::from_utf8_lossy(&bytes)
                    )
                };
                out.insert(rel, what);
            }
        }
        out
    }

    /// The checkout holds exactly what libgit2's own checkout (the writer used before issue
    /// #17) makes of the same tree: nested files, executable bits, symbolic links, bytes
    /// untouched (CRLF, no trailing newline, empty files).
    #[test]
    fn checkout_matches_libgit2_checkout_of_the_same_tree() {
        use git2::FileMode::{Blob, BlobExecutable, Link};
        let (dir, repo, commit) = repo_with(&[
            ("gantry.toml", b"desired_branch = \"main\"\n", Blob),
            ("scripts/deploy.sh", b"#!/bin/sh\necho hi\r\n", BlobExecutable),
            ("scripts/lib/common.sh", b"no newline", Blob),
            ("targets/a.yaml", b"", Blob),
            ("current", b"scripts/deploy.sh", Link),
            ("deep/er/still/file.txt", b"x\n", Blob),
        ]);
        let ours = repo.checkout(commit).expect("a checkout");
        let theirs = dir.path().join("libgit2");
        let tree = repo
            .repo
            .find_commit(commit)
            .expect("the commit")
            .tree()
            .expect("its tree");
        let mut builder = git2::build::CheckoutBuilder::new();
        builder
            .target_dir(&theirs)
            .force()
            .recreate_missing(true)
            .update_index(false);
        repo.repo
            .checkout_tree(tree.as_object(), Some(&mut builder))
            .expect("libgit2 checkout");
        let (ours, theirs) = (listing(&ours), listing(&theirs));
        assert_eq!(ours, theirs);
        assert_eq!(
            ours.get("current").map(String::as_str),
            Some("link -> scripts/deploy.sh")
        );
        assert!(ours["scripts/deploy.sh"].starts_with("7"), "{ours:?}");
    }

    /// A half-written checkout left by a killed pass (its `.partial-…` directory, with a stray
    /// file the commit does not have) is neither used nor merged into the next checkout.
    #[test]
    fn a_partial_checkout_left_by_a_kill_is_never_used() {
        let (_dir, repo, commit) = repo_with(&[("a.yaml", b"a: 1\n", git2::FileMode::Blob)]);
        let root = repo.gantry_dir().join("checkouts");
        let partial = root.join(format!(".partial-{commit}-{}", std::process::id()));
        std::fs::create_dir_all(partial.join("sub")).expect("a partial");
        std::fs::write(partial.join("stray.sh"), "rm -rf /").expect("a stray file");
        std::fs::write(partial.join("a.yaml"), "a: half").expect("a half file");
        let dir = repo.checkout(commit).expect("a checkout");
        assert_eq!(
            listing(&dir),
            BTreeMap::from([("a.yaml".to_string(), "644 a: 1\n".to_string())])
        );
        assert!(!partial.exists(), "the partial became the checkout");
    }

    /// A forged tree naming `..` or `.git` (git itself refuses to write one; a raw object can
    /// hold it) is refused whole: nothing is left under the final name or a partial one.
    #[test]
    fn a_tree_entry_escaping_the_checkout_refuses_the_whole_commit() {
        for name in ["..", ".git", ".GIT", "."] {
            let (_dir, repo, _) = repo_with(&[("ok.yaml", b"a: 1\n", git2::FileMode::Blob)]);
            let blob = repo.repo.blob(b"owned\n").expect("a blob");
            let tree = raw_tree(
                &repo.repo,
                &[("100644 ok.yaml", blob), (&format!("100644 {name}"), blob)],
            );
            let commit = commit_tree(&repo.repo, tree);
            let err = repo.checkout(commit).expect_err("refused");
            assert!(
                matches!(&err, SourceError::Refused(m) if m.contains(&format!("`{name}`"))),
                "{name}: {err}"
            );
            let root = repo.gantry_dir().join("checkouts");
            let left: Vec<_> = std::fs::read_dir(&root)
                .expect("the root")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "{name}: {left:?}");
        }
    }

    /// Old checkouts go (the newest five stay, each whole), and so do the trash and partial
    /// checkouts a killed process left, and the inventories of checkouts gone; a partial of
    /// this process (being written) stays.
    #[test]
    fn pruning_keeps_the_newest_whole_and_clears_what_killed_processes_left() {
        let (_dir, repo, first) = repo_with(&[("a.yaml", b"a: 0\n", git2::FileMode::Blob)]);
        let mut commits = vec![first];
        for i in 1..8 {
            let blob = repo.repo.blob(format!("a: {i}\n").as_bytes()).expect("a blob");
            let mut tree = repo.repo.treebuilder(None).expect("a tree builder");
            tree.insert("a.yaml", blob, 0o100644).expect("an entry");
            commits.push(commit_tree(&repo.repo, tree.write().expect("a tree")));
        }
        let root = repo.gantry_dir().join("checkouts");
        let left = [".trash-old-1-0", ".partial-abc-4000000", ".partial-abc-4000001"];
        let own = format!(".partial-def-{}", std::process::id());
        for name in left.iter().copied().chain([own.as_str()]) {
            std::fs::create_dir_all(root.join(name).join("sub")).expect("a leftover");
        }
        for (i, commit) in commits.iter().enumerate() {
            let dir = repo.checkout(*commit).expect("a checkout");
            // Distinct modification times, oldest first.
            let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + i as u64);
            std::fs::File::open(&dir)
                .and_then(|f| f.set_modified(at))
                .expect("mtime");
        }
        if let Some(deleting) = repo.prune_checkouts(&root) {
            deleting.join().expect("the deleting thread");
        }
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .expect("the root")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // Each kept checkout with its inventory; the inventories of the others went with them.
        let mut want: Vec<String> = commits[3..]
            .iter()
            .flat_map(|c| [c.to_string(), format!(".inventory-{c}")])
            .chain([own.clone()])
            .collect();
        want.sort();
        assert_eq!(names, want);
        for (i, commit) in commits[3..].iter().enumerate() {
            let a = std::fs::read_to_string(root.join(commit.to_string()).join("a.yaml")).expect("whole");
            assert_eq!(a, format!("a: {}\n", i + 3));
        }
    }

    /// Issue #17: a new checkout takes over the files of the checkout it pushes out (the same
    /// inodes, so no create): identical ones as they are, ones a step rewrote or chmodded
    /// rewritten to the blob and mode, never one with another link. The new checkout is exactly
    /// its tree either way.
    #[test]
    fn a_new_checkout_takes_over_the_files_of_a_trashed_one_and_is_exactly_its_tree() {
        use std::os::unix::fs::MetadataExt;
        let files: [(&str, &[u8]); 7] = [
            ("foreign.yaml", b"owned\n"),
            ("acl.yaml", b"attributes\n"),
            ("same.yaml", b"same: 1\n"),
            ("dir/same.sh", b"#!/bin/sh\n"),
            ("rewritten.yaml", b"original\n"),
            ("chmodded.yaml", b"mode\n"),
            ("linked.yaml", b"linked\n"),
        ];
        let (_dir, repo, first) = repo_with(
            &files
                .iter()
                .map(|(p, b)| {
                    (
                        *p,
                        *b,
                        if p.ends_with(".sh") {
                            git2::FileMode::BlobExecutable
                        } else {
                            git2::FileMode::Blob
                        },
                    )
                })
                .collect::<Vec<_>>(),
        );
        let root = repo.gantry_dir().join("checkouts");
        let oldest = repo.checkout(first).expect("a checkout");
        let inode = |p: &Path| std::fs::metadata(p).expect("a file").ino();
        let before: BTreeMap<&str, u64> = files.iter().map(|(p, _)| (*p, inode(&oldest.join(p)))).collect();
        // What steps did in the oldest checkout.
        std::fs::write(oldest.join("rewritten.yaml"), b"changed!\n").expect("rewrite");
        std::fs::set_permissions(oldest.join("chmodded.yaml"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::hard_link(oldest.join("linked.yaml"), oldest.join("link-elsewhere")).expect("a link");
        // Given away (only root can; elsewhere the file stays ours and this case is moot).
        let given_away = std::os::unix::fs::chown(oldest.join("foreign.yaml"), Some(4242), Some(4242)).is_ok();
        // An extended attribute (what an ACL is stored as), where the file system takes one.
        let attributed = {
            let path = std::ffi::CString::new(oldest.join("acl.yaml").as_os_str().as_bytes()).unwrap();
            // SAFETY: valid NUL-terminated strings and a 1-byte value that outlive the call.
            unsafe {
                nix::libc::lsetxattr(path.as_ptr(), c"user.gantry-test".as_ptr(), b"x".as_ptr().cast(), 1, 0) == 0
            }
        };
        std::fs::File::open(&oldest)
            .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)))
            .expect("mtime");

        // Commits with the same files and one more each, until the oldest checkout is pushed out.
        let mut newest = oldest.clone();
        for i in 0..KEEP_CHECKOUTS {
            let mut tree = repo
                .repo
                .treebuilder(Some(&repo.repo.find_commit(first).unwrap().tree().unwrap()))
                .unwrap();
            tree.insert(format!("extra-{i}"), repo.repo.blob(b"x").unwrap(), 0o100644)
                .unwrap();
            newest = repo
                .checkout(commit_tree(&repo.repo, tree.write().unwrap()))
                .expect("a checkout");
        }
        assert!(!oldest.exists(), "the oldest checkout was pushed out");
        assert_eq!(inode(&newest.join("same.yaml")), before["same.yaml"], "taken over");
        assert_eq!(inode(&newest.join("dir/same.sh")), before["dir/same.sh"], "taken over");
        // What a step rewrote or chmodded is taken over too, but rewritten to the blob and the
        // new-file mode; a file with another link is left alone.
        assert_eq!(inode(&newest.join("rewritten.yaml")), before["rewritten.yaml"]);
        assert_eq!(inode(&newest.join("chmodded.yaml")), before["chmodded.yaml"]);
        assert_ne!(
            inode(&newest.join("linked.yaml")),
            before["linked.yaml"],
            "a file with another link is never taken over"
        );
        if attributed {
            assert_ne!(
                inode(&newest.join("acl.yaml")),
                before["acl.yaml"],
                "a file with xattrs"
            );
            assert!(!has_xattrs(&newest.join("acl.yaml")));
        }
        if given_away {
            assert_ne!(
                inode(&newest.join("foreign.yaml")),
                before["foreign.yaml"],
                "another owner's file"
            );
            assert_ne!(std::fs::metadata(newest.join("foreign.yaml")).unwrap().uid(), 4242);
        }
        let listing = listing(&newest);
        assert_eq!(listing["rewritten.yaml"], format!("{:o} original\n", 0o666 & !umask()));
        assert_eq!(listing["chmodded.yaml"], format!("{:o} mode\n", 0o666 & !umask()));
        assert_eq!(listing["dir/same.sh"], format!("{:o} #!/bin/sh\n", 0o777 & !umask()));
        assert!(!listing.contains_key("link-elsewhere"));
        assert_eq!(
            std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count(),
            KEEP_CHECKOUTS
        );
    }

    /// libgit2's own checkout of `commit` (the writer used before issue #17), listed: what
    /// every checkout of that commit must equal.
    fn libgit2_listing(repo: &WatchedRepo, commit: Oid, at: &Path) -> BTreeMap<String, String> {
        let tree = repo.repo.find_commit(commit).unwrap().tree().unwrap();
        let mut builder = git2::build::CheckoutBuilder::new();
        builder
            .target_dir(at)
            .force()
            .recreate_missing(true)
            .update_index(false);
        repo.repo
            .checkout_tree(tree.as_object(), Some(&mut builder))
            .expect("libgit2 checkout");
        listing(at)
    }

    /// Asserts that `checkout` holds exactly what libgit2's checkout of `commit` (made under
    /// `scratch`) holds; `context` names the case.
    fn assert_exactly_the_tree(repo: &WatchedRepo, commit: Oid, checkout: &Path, scratch: &Path, context: &str) {
        assert_eq!(listing(checkout), libgit2_listing(repo, commit, scratch), "{context}");
    }

    /// The checkout directory's own inode: kept by a carry-over (the old checkout is renamed),
    /// new when a checkout is written whole.
    fn dir_inode(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(dir).expect("a checkout").ino()
    }

    /// Checks out `KEEP_CHECKOUTS - 1` newer commits of one changing file, so that the next
    /// checkout pushes out every one older than them.
    fn check_out_fillers(repo: &WatchedRepo, round: &str) {
        for i in 0..KEEP_CHECKOUTS - 1 {
            let filler = commit_files(
                &repo.repo,
                &[("filler.yaml", format!("{round} {i}\n").as_bytes(), git2::FileMode::Blob)],
            );
            repo.checkout(filler).expect("a filler checkout");
        }
    }

    /// Issue #17: the checkout being pushed out is patched into the new commit's (its directory
    /// kept, unchanged files untouched, changed ones rewritten in place) and is then exactly
    /// the new tree, whatever changed between the two: bytes, executable bits, a file becoming
    /// a directory and back, links retargeted or becoming files, a submodule becoming a tree,
    /// whole directories added and removed. Twice in a row, so an inventory taken after a
    /// carry-over carries over too.
    #[test]
    fn a_pushed_out_checkout_is_carried_over_to_exactly_the_new_tree() {
        use git2::FileMode::{Blob, BlobExecutable, Commit, Link};
        let base: Vec<(&str, &[u8], git2::FileMode)> = vec![
            ("same.yaml", b"same\n", Blob),
            ("changed.yaml", b"old\n", Blob),
            ("grows.yaml", b"x", Blob),
            ("flip.sh", b"#!/bin/sh\n", Blob),
            ("unflip.sh", b"#!/bin/sh\n", BlobExecutable),
            ("becomes-dir", b"a file\n", Blob),
            ("was-dir/a.yaml", b"a\n", Blob),
            ("was-dir/deep/b.yaml", b"b\n", Blob),
            ("link", b"same.yaml", Link),
            ("link-to-file", b"same.yaml", Link),
            ("gone/x.yaml", b"x\n", Blob),
            ("module", b"", Commit),
            ("empty", b"", Blob),
        ];
        let changed: Vec<(&str, &[u8], git2::FileMode)> = vec![
            ("same.yaml", b"same\n", Blob),
            ("changed.yaml", b"new\n", Blob),
            ("grows.yaml", b"a longer file than before\n", Blob),
            ("flip.sh", b"#!/bin/sh\n", BlobExecutable),
            ("unflip.sh", b"#!/bin/sh\n", Blob),
            ("becomes-dir/inner.yaml", b"inner\n", Blob),
            ("was-dir", b"now a file\n", Blob),
            ("link", b"changed.yaml", Link),
            ("link-to-file", b"a file now\n", Blob),
            ("module/file.yaml", b"a tree now\n", Blob),
            ("empty", b"", Blob),
            ("added.yaml", b"added\n", Blob),
            ("added/new/deep.yaml", b"deep\n", BlobExecutable),
        ];
        let (dir, repo, first) = repo_with(&base);
        let oldest = repo.checkout(first).expect("a checkout");
        let (root_inode, same_inode, changed_inode) = (
            dir_inode(&oldest),
            dir_inode(&oldest.join("same.yaml")),
            dir_inode(&oldest.join("changed.yaml")),
        );
        check_out_fillers(&repo, "one");
        let second = commit_files(&repo.repo, &changed);
        let carried = repo.checkout(second).expect("a checkout");
        assert!(!oldest.exists(), "pushed out");
        assert_eq!(dir_inode(&carried), root_inode, "carried over, not written whole");
        assert_eq!(dir_inode(&carried.join("same.yaml")), same_inode, "untouched");
        assert_eq!(
            dir_inode(&carried.join("changed.yaml")),
            changed_inode,
            "rewritten in place"
        );
        assert_exactly_the_tree(&repo, second, &carried, &dir.path().join("reference-2"), "");

        check_out_fillers(&repo, "two");
        let third = commit_files(&repo.repo, &base);
        let back = repo.checkout(third).expect("a checkout");
        assert_eq!(dir_inode(&back), root_inode, "carried over again");
        assert_exactly_the_tree(&repo, third, &back, &dir.path().join("reference-3"), "");
    }

    /// Issue #17: a checkout that anything changed after gantry wrote it is never carried over,
    /// even a change that keeps size and modification time (only its ctime tells); the new
    /// checkout is written whole and is exactly its tree. The untouched case is carried over,
    /// so the test does see a carry-over when there is one.
    #[test]
    fn a_checkout_changed_after_it_was_written_is_never_carried_over() {
        use git2::FileMode::{Blob, BlobExecutable, Link};
        type Change = fn(&Path);
        let changes: [(&str, Change); 11] = [
            ("untouched", |_| {}),
            ("rewritten with the same size and modification time", |dir| {
                let path = dir.join("dir/b.yaml");
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                std::fs::write(&path, b"B\n").unwrap();
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(modified))
                    .unwrap();
            }),
            ("chmodded", |dir| {
                std::fs::set_permissions(dir.join("a.yaml"), std::fs::Permissions::from_mode(0o600)).unwrap();
            }),
            ("a file added", |dir| {
                std::fs::write(dir.join("dir/extra.sh"), b"rm -rf /\n").unwrap()
            }),
            ("a file removed", |dir| {
                std::fs::remove_file(dir.join("dir/b.yaml")).unwrap()
            }),
            ("a file renamed", |dir| {
                std::fs::rename(dir.join("dir/b.yaml"), dir.join("dir/c.yaml")).unwrap();
            }),
            ("a hard link made", |dir| {
                std::fs::hard_link(dir.join("dir/b.yaml"), dir.join("../../hard-link")).unwrap();
            }),
            ("a file replaced by a link", |dir| {
                std::fs::remove_file(dir.join("run.sh")).unwrap();
                std::os::unix::fs::symlink("a.yaml", dir.join("run.sh")).unwrap();
            }),
            ("a link retargeted", |dir| {
                std::fs::remove_file(dir.join("link")).unwrap();
                std::os::unix::fs::symlink("dir/b.yaml", dir.join("link")).unwrap();
            }),
            ("a directory chmodded", |dir| {
                std::fs::set_permissions(dir.join("dir"), std::fs::Permissions::from_mode(0o700)).unwrap();
            }),
            ("a file added at the top", |dir| {
                std::fs::write(dir.join("extra"), b"x").unwrap()
            }),
        ];
        for (what, change) in changes {
            let (dir, repo, first) = repo_with(&[
                ("a.yaml", b"a\n", Blob),
                ("dir/b.yaml", b"b\n", Blob),
                ("run.sh", b"#!/bin/sh\n", BlobExecutable),
                ("link", b"a.yaml", Link),
            ]);
            let oldest = repo.checkout(first).expect("a checkout");
            let root_inode = dir_inode(&oldest);
            change(&oldest);
            check_out_fillers(&repo, "fill");
            let next = commit_files(
                &repo.repo,
                &[
                    ("a.yaml", b"a, changed\n", Blob),
                    ("dir/b.yaml", b"b\n", Blob),
                    ("run.sh", b"#!/bin/sh\n", BlobExecutable),
                    ("link", b"a.yaml", Link),
                ],
            );
            let new = repo.checkout(next).expect("a checkout");
            assert_eq!(
                dir_inode(&new) == root_inode,
                what == "untouched",
                "{what}: carried over only when untouched"
            );
            assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), what);
        }
    }

    /// Issue #17: an inventory that is not whole (torn by a crash: its last line missing) or
    /// not the commit's is not used; the checkout is written whole and is exactly its tree.
    #[test]
    fn a_torn_or_foreign_inventory_is_never_used() {
        for damage in ["torn", "foreign"] {
            let (dir, repo, first) = repo_with(&[("a.yaml", b"a\n", git2::FileMode::Blob)]);
            let oldest = repo.checkout(first).expect("a checkout");
            let root_inode = dir_inode(&oldest);
            let root = repo.gantry_dir().join("checkouts");
            let path = inventory::Inventory::path(&root, first);
            let text = std::fs::read_to_string(&path).expect("an inventory");
            let damaged = match damage {
                "torn" => text
                    .lines()
                    .filter(|l| !l.starts_with("end "))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => text.replace(&first.to_string(), &"0".repeat(40)),
            };
            std::fs::write(&path, damaged).expect("damaged");
            check_out_fillers(&repo, damage);
            let next = commit_files(&repo.repo, &[("a.yaml", b"a, changed\n", git2::FileMode::Blob)]);
            let new = repo.checkout(next).expect("a checkout");
            assert_ne!(dir_inode(&new), root_inode, "{damage}: written whole");
            assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), damage);
        }
    }

    /// Issue #17: trash an earlier call or a killed process left (whole, with its inventory) is
    /// never carried over: a thread of that call may be deleting it while it is patched. Only
    /// the checkouts a call pushes out itself are, and the leftover is deleted.
    #[test]
    fn trash_left_by_an_earlier_call_is_never_carried_over() {
        let (dir, repo, first) = repo_with(&[("a.yaml", b"a\n", git2::FileMode::Blob)]);
        let written = repo.checkout(first).expect("a checkout");
        let root_inode = dir_inode(&written);
        let root = repo.gantry_dir().join("checkouts");
        let leftover = root.join(format!(".trash-{first}-4000000-0"));
        std::fs::rename(&written, &leftover).expect("left as trash");
        let next = commit_files(&repo.repo, &[("a.yaml", b"a, changed\n", git2::FileMode::Blob)]);
        let new = repo.checkout(next).expect("a checkout");
        assert_ne!(dir_inode(&new), root_inode);
        assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), "");
        if let Some(deleting) = repo.prune_checkouts(&root) {
            deleting.join().expect("the deleting thread");
        }
        assert!(!leftover.exists());
        assert!(
            !inventory::Inventory::path(&root, first).exists(),
            "its inventory went too"
        );
    }

    /// A forged tree naming `..` is refused by a carry-over as by a whole write: nothing gets
    /// the commit's name, and the kept checkouts stay whole.
    #[test]
    fn a_carry_over_refuses_a_tree_entry_escaping_the_checkout() {
        let (_dir, repo, first) = repo_with(&[("ok.yaml", b"a: 1\n", git2::FileMode::Blob)]);
        repo.checkout(first).expect("a checkout");
        check_out_fillers(&repo, "fill");
        let blob = repo.repo.blob(b"owned\n").expect("a blob");
        let tree = raw_tree(&repo.repo, &[("100644 ..", blob), ("100644 ok.yaml", blob)]);
        let forged = commit_tree(&repo.repo, tree);
        let err = repo.checkout(forged).expect_err("refused");
        assert!(matches!(&err, SourceError::Refused(m) if m.contains("`..`")), "{err}");
        let root = repo.gantry_dir().join("checkouts");
        assert!(!root.join(forged.to_string()).exists());
        let whole = std::fs::read_dir(&root)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .inspect(|e| assert!(e.path().join("filler.yaml").is_file(), "{:?}", e.path()))
            .count();
        assert_eq!(whole, KEEP_CHECKOUTS - 1);
    }

    /// Review of issue #17's carry-over: a directory the new commit replaces by a link (to a
    /// sibling, or to a directory outside) is removed before the link is made, so removing its
    /// files never follows the link: nothing outside the old directory is touched, and the
    /// checkout is exactly the tree.
    #[test]
    fn a_directory_replaced_by_a_link_is_never_followed() {
        use git2::FileMode::{Blob, Link};
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("values.yaml"), b"precious\n").unwrap();
        std::fs::write(outside.path().join("sub/x.yaml"), b"precious\n").unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        for link in ["common", target.as_str()] {
            let (dir, repo, first) = repo_with(&[
                ("common/values.yaml", b"v\n", Blob),
                ("shared/values.yaml", b"v\n", Blob),
                ("shared/sub/x.yaml", b"x\n", Blob),
            ]);
            let oldest = repo.checkout(first).expect("a checkout");
            let root_inode = dir_inode(&oldest);
            check_out_fillers(&repo, "fill");
            let next = commit_files(
                &repo.repo,
                &[("common/values.yaml", b"v\n", Blob), ("shared", link.as_bytes(), Link)],
            );
            let new = repo.checkout(next).expect("a checkout");
            assert_eq!(dir_inode(&new), root_inode, "{link}: carried over");
            assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), link);
            assert_eq!(
                std::fs::read(outside.path().join("values.yaml")).unwrap(),
                b"precious\n"
            );
            assert_eq!(std::fs::read(outside.path().join("sub/x.yaml")).unwrap(), b"precious\n");
        }
    }

    /// Review of issue #17's carry-over: a forged tree naming one path twice (a link to a
    /// directory outside, and a directory of files) is refused before the old checkout is
    /// touched; nothing outside is written and nothing gets the commit's name.
    #[test]
    fn a_tree_naming_a_path_twice_is_refused_before_anything_changes() {
        use git2::FileMode::Blob;
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim.txt"), b"precious\n").unwrap();
        let (_dir, repo, first) = repo_with(&[("a/victim.txt", b"old\n", Blob), ("ok.yaml", b"1\n", Blob)]);
        repo.checkout(first).expect("a checkout");
        check_out_fillers(&repo, "fill");
        let link = repo.repo.blob(outside.path().to_str().unwrap().as_bytes()).unwrap();
        let owned = repo.repo.blob(b"owned\n").unwrap();
        let sub = raw_tree(&repo.repo, &[("100644 new.txt", owned), ("100644 victim.txt", owned)]);
        let one = repo.repo.blob(b"1\n").unwrap();
        let tree = raw_tree(
            &repo.repo,
            &[("120000 a", link), ("40000 a", sub), ("100644 ok.yaml", one)],
        );
        let forged = commit_tree(&repo.repo, tree);
        let err = repo.checkout(forged).expect_err("refused");
        assert!(
            matches!(&err, SourceError::Refused(m) if m.contains("`a` is named twice")),
            "{err}"
        );
        assert_eq!(std::fs::read(outside.path().join("victim.txt")).unwrap(), b"precious\n");
        assert!(!outside.path().join("new.txt").exists());
        assert!(!repo.gantry_dir().join("checkouts").join(forged.to_string()).exists());
    }

    /// Review of issue #17's carry-over: where the checkouts directory is setgid (`git init
    /// --shared`), every checkout directory is too, as a new one would be; that is no change,
    /// and the checkout is carried over.
    #[test]
    fn a_setgid_checkouts_directory_still_carries_over() {
        use git2::FileMode::Blob;
        let (dir, repo, first) = repo_with(&[("a.yaml", b"a\n", Blob), ("dir/b.yaml", b"b\n", Blob)]);
        let root = repo.gantry_dir().join("checkouts");
        std::fs::create_dir_all(&root).unwrap();
        let mode = std::fs::metadata(&root).unwrap().permissions().mode();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode | 0o2000)).unwrap();
        let oldest = repo.checkout(first).expect("a checkout");
        assert_ne!(
            std::fs::metadata(oldest.join("dir")).unwrap().permissions().mode() & 0o2000,
            0
        );
        let root_inode = dir_inode(&oldest);
        check_out_fillers(&repo, "fill");
        let next = commit_files(
            &repo.repo,
            &[("a.yaml", b"a, changed\n", Blob), ("dir/b.yaml", b"b\n", Blob)],
        );
        let new = repo.checkout(next).expect("a checkout");
        assert_eq!(dir_inode(&new), root_inode, "carried over");
        assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), "");
    }

    /// A forged tree naming a file twice is refused by a whole write too (it failed on the
    /// second create before, or let the second win when a file was taken over).
    #[test]
    fn a_whole_write_refuses_a_tree_naming_a_path_twice() {
        let (_dir, repo, _) = repo_with(&[("ok.yaml", b"1\n", git2::FileMode::Blob)]);
        let (one, two) = (repo.repo.blob(b"one\n").unwrap(), repo.repo.blob(b"two\n").unwrap());
        let tree = raw_tree(&repo.repo, &[("100644 a.yaml", one), ("100644 a.yaml", two)]);
        let forged = commit_tree(&repo.repo, tree);
        let err = repo.checkout(forged).expect_err("refused");
        assert!(
            matches!(&err, SourceError::Refused(m) if m.contains("`a.yaml` is named twice")),
            "{err}"
        );
        assert!(!repo.gantry_dir().join("checkouts").join(forged.to_string()).exists());
    }

    /// Review of issue #17's carry-over: a process whose working directory is in the checkout
    /// being pushed out (a service a step started) would write into the next commit's checkout
    /// if that directory became it; such a checkout is written whole instead.
    #[test]
    fn a_checkout_a_process_works_in_is_never_carried_over() {
        use git2::FileMode::Blob;
        let (dir, repo, first) = repo_with(&[("a.yaml", b"a\n", Blob)]);
        // `.git/gantry` a link to another directory: `/proc` shows the resolved path.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), repo.gantry_dir()).unwrap();
        let oldest = repo.checkout(first).expect("a checkout");
        let root_inode = dir_inode(&oldest);
        let mut service = std::process::Command::new("sleep")
            .arg("600")
            .current_dir(&oldest)
            .spawn()
            .expect("a process working in the checkout");
        check_out_fillers(&repo, "fill");
        let next = commit_files(&repo.repo, &[("a.yaml", b"a, changed\n", Blob)]);
        let new = repo.checkout(next).expect("a checkout");
        let _ = service.kill();
        let _ = service.wait();
        assert_ne!(dir_inode(&new), root_inode, "written whole");
        assert_exactly_the_tree(&repo, next, &new, &dir.path().join("reference"), "");
    }

    /// The process's umask, read from a directory made with 0777.
    fn umask() -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("d");
        std::fs::create_dir(&made).unwrap();
        0o777 & !(std::fs::metadata(&made).unwrap().permissions().mode() & 0o777)
    }

    #[test]
    fn safe_names() {
        for (name, safe) in [
            (&b"a.yaml"[..], true),
            (b"..a", true),
            (b".gitignore", true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b".git", false),
            (b".Git", false),
            (b"a/b", false),
            (b"a\0b", false),
        ] {
            assert_eq!(safe_name(name).is_some(), safe, "{:?}", String::from_utf8_lossy(name));
        }
    }
}
