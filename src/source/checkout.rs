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

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Tree};

use super::{SourceError, WatchedRepo};

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
        let partial = root.join(format!(".partial-{commit}-{}", std::process::id()));
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        let tree = self.repo.find_commit(commit)?.tree()?;
        std::fs::create_dir(&partial).map_err(io(&partial))?;
        if let Err(e) = self.write_tree(&tree, &partial, "") {
            // Never used (only the final name is), but not worth keeping either.
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &dir).map_err(io(&dir))?;
        drop(span);
        // Deleting goes on in the background; nothing waits for it.
        drop(self.prune_checkouts(&root));
        Ok(dir)
    }

    /// Writes every entry of `tree` under `dir` (which exists and is empty); `prefix` is the
    /// tree's path in the commit, for messages.
    fn write_tree(&self, tree: &Tree<'_>, dir: &Path, prefix: &str) -> Result<(), SourceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SourceError::Io { path, source }
        };
        for entry in tree {
            let name = safe_name(entry.name_bytes()).ok_or_else(|| {
                SourceError::Refused(format!(
                    "commit tree entry `{prefix}{}` is not a safe file name (`.`, `..`, `.git` or a name with `/`); \
                     nothing of the commit is checked out",
                    String::from_utf8_lossy(entry.name_bytes())
                ))
            })?;
            let path = dir.join(name);
            let mode = entry.filemode();
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    std::fs::create_dir(&path).map_err(io(&path))?;
                    let sub = self.repo.find_tree(entry.id())?;
                    self.write_tree(&sub, &path, &format!("{prefix}{}/", name.to_string_lossy()))?;
                }
                Some(ObjectType::Blob) => {
                    let blob = self.repo.find_blob(entry.id())?;
                    if mode == i32::from(git2::FileMode::Link) {
                        let target = std::ffi::OsStr::from_bytes(blob.content());
                        std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
                    } else {
                        let executable = mode == i32::from(git2::FileMode::BlobExecutable);
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

    /// Keeps the newest [`KEEP_CHECKOUTS`] checkouts; failures to delete are harmless.
    ///
    /// An old checkout is first renamed to `.trash-…` (atomic), then deleted on a background
    /// thread, off the path to the first step: a process killed while deleting never leaves a
    /// half-deleted checkout under its commit's name, where a resumed attempt would take it for
    /// whole. Trash and partial checkouts of earlier processes are deleted too (every caller
    /// holds the reconciler lock, so no other process is writing here).
    fn prune_checkouts(&self, root: &Path) -> Option<std::thread::JoinHandle<()>> {
        static TRASHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let Ok(entries) = std::fs::read_dir(root) else {
            return None;
        };
        let own_partial = format!("-{}", std::process::id());
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        let mut trash: Vec<PathBuf> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".trash-") || (name.starts_with(".partial-") && !name.ends_with(&own_partial)) {
                trash.push(entry.path());
            } else if !name.starts_with('.')
                && let Some(modified) = entry.metadata().ok().and_then(|m| m.modified().ok())
            {
                dirs.push((modified, entry.path()));
            }
        }
        dirs.sort();
        let excess = dirs.len().saturating_sub(KEEP_CHECKOUTS);
        for (_, path) in dirs.into_iter().take(excess) {
            let n = TRASHED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let to = root.join(format!(".trash-{name}-{}-{n}", std::process::id()));
            if std::fs::rename(&path, &to).is_ok() {
                trash.push(to);
            }
        }
        (!trash.is_empty()).then(|| {
            std::thread::spawn(move || {
                for path in trash {
                    let _ = std::fs::remove_dir_all(path);
                }
            })
        })
    }

    /// The work tree of the watched repository (its git dir for a bare repository).
    pub fn root(&self) -> PathBuf {
        self.repo
            .workdir()
            .map_or_else(|| self.repo.path().to_path_buf(), std::path::Path::to_path_buf)
    }
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
        let mut index = repo.index().expect("the index");
        for (path, bytes, mode) in files {
            let blob = repo.blob(bytes).expect("a blob");
            let mut entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: u32::try_from(i32::from(*mode)).expect("a mode"),
                uid: 0,
                gid: 0,
                file_size: 0,
                id: blob,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            entry.flags = u16::try_from(path.len().min(0xfff)).expect("a short path");
            index.add(&entry).expect("an index entry");
        }
        let tree = index.write_tree().expect("a tree");
        let commit = commit_tree(&repo, tree);
        drop(repo);
        let watched = WatchedRepo::open(dir.path()).expect("the repository");
        (dir, watched, commit)
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
            let mut raw = b"100644 ok.yaml\0".to_vec();
            raw.extend_from_slice(blob.as_bytes());
            raw.extend_from_slice(format!("100644 {name}\0").as_bytes());
            raw.extend_from_slice(blob.as_bytes());
            let tree = repo
                .repo
                .odb()
                .expect("the odb")
                .write(ObjectType::Tree, &raw)
                .expect("a raw tree");
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
    /// checkouts a killed process left; a partial of this process (being written) stays.
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
        let mut want: Vec<String> = commits[3..]
            .iter()
            .map(ToString::to_string)
            .chain([own.clone()])
            .collect();
        want.sort();
        assert_eq!(names, want);
        for (i, commit) in commits[3..].iter().enumerate() {
            let a = std::fs::read_to_string(root.join(commit.to_string()).join("a.yaml")).expect("whole");
            assert_eq!(a, format!("a: {}\n", i + 3));
        }
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
