//! The manifest files of a commit's tree, and which of them changed between two trees, read one
//! directory level at a time so that a directory whose tree id did not change is not read again
//! (issue #17). On a 10,000-target fleet in 20 directories a one-file commit changes three trees
//! (the root, `targets/`, one tenant's directory); listing every manifest read and hash-checked
//! all 22 (libgit2 keeps no tree over 4 KiB in its object cache), and the approvals walk's
//! `diff_tree_to_tree` iterated all 10,000 entries of both sides.
//!
//! # Guarantees
//! - **Keyed by tree id**: a level (a tree's own manifest files and subdirectories, by name) is
//!   a function of the tree's content, so a cached level can only be the right one; and levels
//!   are kept for one repository at a time, so a tree another repository lacks is an error
//!   there, as without the cache.
//! - **Same answer with or without the cache**: the daemon enables it ([`enable`]); a CLI
//!   process reads every tree, as before. Both go through the same code.
//! - **Bounded**: levels not used by the last two listings are dropped after each listing, and
//!   a level that would take the cache over [`MAX_CACHED_ENTRIES`] entries is not kept (a cold
//!   approvals walk over a long history reads its trees without keeping them).

use foldhash::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use git2::{ObjectType, Oid, Repository};

use super::{SourceError, TreeFile, is_manifest_path};

/// Entries (files and directories, over every cached level) the cache may hold.
pub const MAX_CACHED_ENTRIES: usize = 200_000;

/// One tree's own entries: its manifest files and its subdirectories, in tree order.
#[derive(Debug, Default)]
struct Level {
    /// (name, blob, file mode) of each blob whose name is a manifest's (`is_manifest_path`).
    files: Vec<(String, Oid, i32)>,
    /// (name, tree) of each subdirectory.
    dirs: Vec<(String, Oid)>,
}

#[derive(Default)]
struct Cache {
    /// The repository the levels were read from: another one starts afresh, so a level is never
    /// answered for a repository that does not hold the tree.
    git_dir: std::path::PathBuf,
    levels: HashMap<Oid, (Arc<Level>, u64)>,
    /// Files and directories over every kept level, and the most there may be.
    entries: usize,
    max_entries: usize,
    /// Bumped by every listing; a level remembers the last listing that used it.
    generation: u64,
}

static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();

/// Keeps tree levels between listings in this process (the daemon, at start).
pub fn enable() {
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            max_entries: MAX_CACHED_ENTRIES,
            ..Cache::default()
        })
    });
}

impl Level {
    fn entries(&self) -> usize {
        self.files.len() + self.dirs.len()
    }
}

fn cache() -> Option<std::sync::MutexGuard<'static, Cache>> {
    CACHE
        .get()
        .map(|c| c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Reads levels, from the process's cache when enabled.
struct Reader<'r> {
    repo: &'r Repository,
    generation: Option<u64>,
}

impl<'r> Reader<'r> {
    /// A reader for one listing or one comparison (`bump`: a new generation for the retention).
    fn new(repo: &'r Repository, bump: bool) -> Reader<'r> {
        let generation = cache().map(|mut c| {
            if c.git_dir != repo.path() {
                c.levels.clear();
                c.entries = 0;
                c.git_dir = repo.path().to_path_buf();
            }
            if bump {
                c.generation += 1;
            }
            c.generation
        });
        Reader { repo, generation }
    }

    fn level(&self, tree: Oid) -> Result<Arc<Level>, SourceError> {
        if let Some(generation) = self.generation
            && let Some(mut cache) = cache()
            && cache.git_dir == self.repo.path()
            && let Some((level, used)) = cache.levels.get_mut(&tree)
        {
            *used = generation;
            return Ok(Arc::clone(level));
        }
        let read = self.repo.find_tree(tree)?;
        let mut level = Level::default();
        for entry in read.iter() {
            // A name that is not UTF-8 cannot be a manifest's path (as before: skipped).
            let Ok(name) = entry.name() else { continue };
            match entry.kind() {
                Some(ObjectType::Tree) => level.dirs.push((name.to_string(), entry.id())),
                Some(ObjectType::Blob) if is_manifest_path(name) => {
                    level.files.push((name.to_string(), entry.id(), entry.filemode()));
                }
                _ => {}
            }
        }
        let level = Arc::new(level);
        if let Some(generation) = self.generation
            && let Some(mut cache) = cache()
            // Another repository's reader may have taken the cache over meanwhile.
            && cache.git_dir == self.repo.path()
            && cache.entries + level.entries() <= cache.max_entries
            && !cache.levels.contains_key(&tree)
        {
            cache.entries += level.entries();
            cache.levels.insert(tree, (Arc::clone(&level), generation));
        }
        Ok(level)
    }

    /// Drops what the last two listings did not use.
    fn retain(&self) {
        let (Some(generation), Some(mut cache)) = (self.generation, cache()) else {
            return;
        };
        cache.levels.retain(|_, (_, used)| *used + 1 >= generation);
        cache.entries = cache.levels.values().map(|(level, _)| level.entries()).sum();
    }
}

/// The manifest files (`is_manifest_path`, `gantry.toml` excepted) under `tree`, by path. With
/// `prefixes` (directories ending in `/`), only those under one of them; without, directories
/// whose name starts with `.` are skipped.
///
/// # Errors
/// git failures reading a tree.
pub fn manifest_files(repo: &Repository, tree: Oid, prefixes: Option<&[String]>) -> Result<Vec<TreeFile>, SourceError> {
    let reader = Reader::new(repo, true);
    let mut found = Vec::new();
    list(&reader, tree, "", prefixes, &mut found)?;
    reader.retain();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn list(
    reader: &Reader<'_>,
    tree: Oid,
    dir: &str,
    prefixes: Option<&[String]>,
    found: &mut Vec<TreeFile>,
) -> Result<(), SourceError> {
    let level = reader.level(tree)?;
    for (name, oid, mode) in &level.files {
        // Put together without the formatting machinery: one per manifest file of the commit on
        // every listing (issue #17).
        let mut path = String::with_capacity(dir.len() + name.len());
        path.push_str(dir);
        path.push_str(name);
        let under = prefixes.is_none_or(|ps| ps.iter().any(|p| path.starts_with(p.as_str())));
        if under && path != "gantry.toml" {
            found.push(TreeFile {
                path,
                oid: *oid,
                mode: *mode,
            });
        }
    }
    for (name, oid) in &level.dirs {
        let dir_path = format!("{dir}{name}/");
        let descend = match prefixes {
            // Only directories that lead to or lie under a listed path.
            Some(prefixes) => prefixes
                .iter()
                .any(|p| p.starts_with(dir_path.as_str()) || dir_path.starts_with(p.as_str())),
            None => !name.starts_with('.'),
        };
        if descend {
            list(reader, *oid, &dir_path, prefixes, found)?;
        }
    }
    Ok(())
}

/// A manifest file that differs between two trees: its path and its blob on each side (`None`
/// where it does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    pub old: Option<Oid>,
    pub new: Option<Oid>,
}

/// Every manifest file (`is_manifest_path`, hidden directories included) whose blob differs
/// between `old` and `new`, in path order; a subdirectory with the same tree id on both sides
/// is not read. File modes are not compared (the history walk compares contents).
///
/// # Errors
/// git failures reading a tree.
pub fn changed_files(repo: &Repository, old: Oid, new: Oid) -> Result<Vec<ChangedFile>, SourceError> {
    let reader = Reader::new(repo, false);
    let mut changed = Vec::new();
    compare(&reader, Some(old), Some(new), "", &mut changed)?;
    changed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changed)
}

fn compare(
    reader: &Reader<'_>,
    old: Option<Oid>,
    new: Option<Oid>,
    dir: &str,
    changed: &mut Vec<ChangedFile>,
) -> Result<(), SourceError> {
    if old == new {
        return Ok(());
    }
    let empty = Arc::new(Level::default());
    let old = old.map_or_else(|| Ok(Arc::clone(&empty)), |t| reader.level(t))?;
    let new = new.map_or_else(|| Ok(Arc::clone(&empty)), |t| reader.level(t))?;
    let old_files: HashMap<&str, Oid> = old.files.iter().map(|(n, o, _)| (n.as_str(), *o)).collect();
    let new_files: HashMap<&str, Oid> = new.files.iter().map(|(n, o, _)| (n.as_str(), *o)).collect();
    for (name, then) in &old_files {
        let now = new_files.get(name).copied();
        if now != Some(*then) {
            changed.push(ChangedFile {
                path: format!("{dir}{name}"),
                old: Some(*then),
                new: now,
            });
        }
    }
    for (name, now) in &new_files {
        if !old_files.contains_key(name) {
            changed.push(ChangedFile {
                path: format!("{dir}{name}"),
                old: None,
                new: Some(*now),
            });
        }
    }
    let old_dirs: HashMap<&str, Oid> = old.dirs.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    let new_dirs: HashMap<&str, Oid> = new.dirs.iter().map(|(n, o)| (n.as_str(), *o)).collect();
    for (name, then) in &old_dirs {
        compare(
            reader,
            Some(*then),
            new_dirs.get(name).copied(),
            &format!("{dir}{name}/"),
            changed,
        )?;
    }
    for (name, now) in &new_dirs {
        if !old_dirs.contains_key(name) {
            compare(reader, None, Some(*now), &format!("{dir}{name}/"), changed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit of `files` (path → content) in `repo`, and its tree.
    fn tree_of(repo: &Repository, files: &[(&str, &str)]) -> Oid {
        let mut index = git2::Index::new().unwrap();
        for (path, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            let mode = if path.ends_with(".sh") { 0o100_755 } else { 0o100_644 };
            index
                .add(&git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode,
                    uid: 0,
                    gid: 0,
                    file_size: 0,
                    id: blob,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                })
                .unwrap();
        }
        index.write_tree_to(repo).unwrap()
    }

    /// What libgit2's own diff says changed (manifest paths only), as the walk used it.
    fn libgit2_changes(repo: &Repository, old: Oid, new: Oid) -> Vec<ChangedFile> {
        let (old, new) = (repo.find_tree(old).unwrap(), repo.find_tree(new).unwrap());
        let diff = repo.diff_tree_to_tree(Some(&old), Some(&new), None).unwrap();
        let mut changes: Vec<ChangedFile> = diff
            .deltas()
            .filter_map(|d| {
                let path = d
                    .new_file()
                    .path()
                    .or_else(|| d.old_file().path())?
                    .to_str()?
                    .to_string();
                let side = |id: Oid| (!id.is_zero()).then_some(id);
                (is_manifest_path(&path) && d.old_file().id() != d.new_file().id()).then(|| ChangedFile {
                    path,
                    old: side(d.old_file().id()),
                    new: side(d.new_file().id()),
                })
            })
            .collect();
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        changes
    }

    #[test]
    fn changes_match_libgit2s_diff_whether_cached_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let before = tree_of(
            &repo,
            &[
                ("targets/a/one.yaml", "1"),
                ("targets/a/two.yaml", "2"),
                ("targets/b/three.yaml", "3"),
                ("targets/b/notes.txt", "x"),
                ("gone/four.yml", "4"),
                ("becomes-dir.yaml", "5"),
                (".hidden/six.toml", "6"),
                ("same/seven.yaml", "7"),
            ],
        );
        let after = tree_of(
            &repo,
            &[
                ("targets/a/one.yaml", "1 edited"),
                ("targets/a/two.yaml", "2"),
                ("targets/b/three.yaml", "3"),
                ("targets/b/notes.txt", "y"),
                ("targets/c/new.yaml", "8"),
                ("becomes-dir.yaml/inner.yaml", "5"),
                (".hidden/six.toml", "6 edited"),
                ("same/seven.yaml", "7"),
            ],
        );
        let expected = libgit2_changes(&repo, before, after);
        assert_eq!(
            expected.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(),
            [
                ".hidden/six.toml",
                "becomes-dir.yaml",
                "becomes-dir.yaml/inner.yaml",
                "gone/four.yml",
                "targets/a/one.yaml",
                "targets/c/new.yaml"
            ]
        );
        assert_eq!(changed_files(&repo, before, after).unwrap(), expected, "uncached");
        enable();
        // Twice: the second answer comes from cached levels.
        assert_eq!(changed_files(&repo, before, after).unwrap(), expected, "cached, first");
        assert_eq!(changed_files(&repo, before, after).unwrap(), expected, "cached, again");
        assert!(changed_files(&repo, after, after).unwrap().is_empty());
    }

    #[test]
    fn listing_skips_hidden_directories_and_honours_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let tree = tree_of(
            &repo,
            &[
                ("gantry.toml", ""),
                ("a/x.yaml", ""),
                ("a/b/y.yml", ""),
                ("a/b/run.sh", ""),
                (".git-crypt/k.yaml", ""),
                ("c/z.toml", ""),
            ],
        );
        let paths = |prefixes: Option<&[String]>| -> Vec<String> {
            manifest_files(&repo, tree, prefixes)
                .unwrap()
                .into_iter()
                .map(|f| f.path)
                .collect()
        };
        for round in ["uncached", "cached"] {
            if round == "cached" {
                enable();
            }
            assert_eq!(paths(None), ["a/b/y.yml", "a/x.yaml", "c/z.toml"], "{round}");
            let only = ["a/b/".to_string(), ".git-crypt/".to_string()];
            assert_eq!(paths(Some(&only)), [".git-crypt/k.yaml", "a/b/y.yml"], "{round}");
        }
    }

    #[test]
    fn the_cache_keeps_no_level_past_its_bound_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let files: Vec<(String, String)> = (0..6)
            .map(|i| (format!("d{}/f{i}.yaml", i % 2), i.to_string()))
            .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let tree = tree_of(&repo, &files);
        let listed = |repo| -> Vec<(String, Oid)> {
            manifest_files(repo, tree, None)
                .unwrap()
                .into_iter()
                .map(|f| (f.path, f.oid))
                .collect()
        };
        enable();
        // Room for the two directories' levels (3 files each) but not the root's as well.
        let bound = 6;
        let expected = {
            let mut c = cache().unwrap();
            c.max_entries = bound;
            c.levels.clear();
            c.entries = 0;
            drop(c);
            listed(&repo)
        };
        assert_eq!(expected.len(), 6);
        for _ in 0..3 {
            assert_eq!(listed(&repo), expected, "the same listing, from the cache or not");
            let c = cache().unwrap();
            let held: usize = c.levels.values().map(|(l, _)| l.entries()).sum();
            assert!(held <= bound, "{held} entries kept over a bound of {bound}");
            assert_eq!(held, c.entries, "the count matches what is held");
        }
        cache().unwrap().max_entries = MAX_CACHED_ENTRIES;
    }

    #[test]
    fn an_unreadable_tree_is_an_error_not_an_empty_listing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let missing = Oid::from_bytes(&[7; 20]).unwrap();
        assert!(manifest_files(&repo, missing, None).is_err());
        let tree = tree_of(&repo, &[("a.yaml", "")]);
        assert!(changed_files(&repo, tree, missing).is_err());
        // A tree listed (and cached) in one repository is not answered for another that
        // lacks it.
        enable();
        assert_eq!(manifest_files(&repo, tree, None).unwrap().len(), 1);
        let other_dir = tempfile::tempdir().unwrap();
        let other = Repository::init(other_dir.path()).unwrap();
        assert!(manifest_files(&other, tree, None).is_err());
    }
}
