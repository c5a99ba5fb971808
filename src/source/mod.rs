//! The watched repository: desired state read from commits with git2, never from the work tree.

pub mod cache_writer;
pub mod checkout;
pub mod edit;
pub mod history;
pub mod remote;
pub mod sync;
pub mod tree_listing;
pub mod trust;
pub mod walk_cache;

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};

use crate::manifest::{MAX_MANIFEST_BYTES, RawContent, RawFile};

/// Errors reading the repository.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The path is not a git repository.
    #[error("{path}: not a git repository (run `git init`, or pass --repo PATH)")]
    NotARepository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// A revision could not be resolved to a commit.
    #[error("cannot resolve revision `{rev}` to a commit: {message}")]
    UnknownRevision { rev: String, message: String },
    /// The desired branch has no commits yet.
    #[error("branch `{branch}` has no commits (commit your manifests, or pass --rev/--head)")]
    EmptyBranch { branch: String },
    /// A file system operation on gantry's own files failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// gantry declined to write a change.
    #[error("{0}")]
    Refused(String),
    /// Any other git failure.
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// A repository opened for reading desired state.
pub struct WatchedRepo {
    pub repo: Repository,
}

/// Whether a path looks like a manifest file.
pub fn is_manifest_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml") || lower.ends_with(".toml")
}

impl WatchedRepo {
    /// Opens the repository at `path` (a work tree or a bare repository; no discovery upwards,
    /// so `--repo` means exactly that directory).
    ///
    /// # Errors
    /// [`SourceError::NotARepository`].
    pub fn open(path: &Path) -> Result<WatchedRepo, SourceError> {
        let repo = Repository::open_ext(path, git2::RepositoryOpenFlags::NO_SEARCH, std::iter::empty::<&str>())
            .map_err(|source| SourceError::NotARepository {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(WatchedRepo { repo })
    }

    /// The directory for gantry's own files (`.git/gantry`).
    pub fn gantry_dir(&self) -> PathBuf {
        self.repo.path().join("gantry")
    }

    /// Resolves a revision (`main`, `HEAD~1`, a commit id, a tag) to a commit id.
    ///
    /// # Errors
    /// [`SourceError::UnknownRevision`] naming the revision.
    pub fn resolve(&self, rev: &str) -> Result<Oid, SourceError> {
        let object = self
            .repo
            .revparse_single(rev)
            .map_err(|e| SourceError::UnknownRevision {
                rev: rev.to_string(),
                message: e.message().to_string(),
            })?;
        let commit = object.peel_to_commit().map_err(|e| SourceError::UnknownRevision {
            rev: rev.to_string(),
            message: e.message().to_string(),
        })?;
        Ok(commit.id())
    }

    /// The tip of a local branch.
    ///
    /// # Errors
    /// [`SourceError::EmptyBranch`] when it does not exist.
    pub fn branch_tip(&self, branch: &str) -> Result<Oid, SourceError> {
        let reference =
            self.repo
                .find_reference(&format!("refs/heads/{branch}"))
                .map_err(|_| SourceError::EmptyBranch {
                    branch: branch.to_string(),
                })?;
        Ok(reference.peel_to_commit()?.id())
    }

    /// The desired branch's name: from `gantry.toml` at HEAD when HEAD has a commit (so a
    /// repository that names another branch is honoured), else `main`.
    pub fn desired_branch_hint(&self) -> String {
        let from_head = || -> Option<String> {
            let head = self.repo.head().ok()?.peel_to_commit().ok()?;
            let bytes = self.read_file(head.id(), "gantry.toml").ok()??;
            let text = String::from_utf8(bytes).ok()?;
            let table: toml::Table = toml::from_str(&text).ok()?;
            let name = table.get("desired_branch")?.as_str()?;
            // An unusable name is reported by validation with its line; reading `main` here
            // lets validation get that far instead of failing on a branch that cannot exist.
            git2::Reference::is_valid_name(&format!("refs/heads/{name}")).then(|| name.to_string())
        };
        from_head().unwrap_or_else(|| "main".to_string())
    }

    /// One file at a commit, if present.
    ///
    /// # Errors
    /// git failures other than "not found".
    pub fn read_file(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match entry.to_object(&self.repo)?.into_blob() {
            Ok(blob) => Ok(Some(blob.content().to_vec())),
            Err(_) => Ok(None),
        }
    }

    /// Every manifest-looking file (`.yaml`, `.yml`, `.toml`, except `gantry.toml` at the root)
    /// of the commit's tree under `paths` (all of it when `None`), sorted by path.
    ///
    /// # Errors
    /// git failures.
    pub fn manifest_files(&self, commit: Oid, paths: Option<&[String]>) -> Result<Vec<RawFile>, SourceError> {
        self.read_entries(&self.manifest_entries(commit, paths)?)
    }

    /// The entries [`WatchedRepo::manifest_files`] reads, without reading the blobs yet.
    ///
    /// # Errors
    /// git failures.
    pub fn manifest_entries(&self, commit: Oid, paths: Option<&[String]>) -> Result<Vec<TreeFile>, SourceError> {
        let tree = self.repo.find_commit(commit)?.tree_id();
        let prefixes: Option<Vec<String>> =
            paths.map(|p| p.iter().map(|s| format!("{}/", s.trim_matches('/'))).collect());
        tree_listing::manifest_files(&self.repo, tree, prefixes.as_deref())
    }

    /// The content of each entry, in order.
    ///
    /// # Errors
    /// git failures.
    pub fn read_entries(&self, entries: &[TreeFile]) -> Result<Vec<RawFile>, SourceError> {
        entries
            .iter()
            .map(|e| {
                Ok(RawFile {
                    path: e.path.clone(),
                    content: self.blob_content(e.oid, e.mode)?,
                })
            })
            .collect()
    }

    /// One file at a commit as manifests are read: symlinks and oversized files are markers.
    ///
    /// # Errors
    /// git failures other than "not found".
    pub fn read_raw(&self, commit: Oid, path: &str) -> Result<Option<RawFile>, SourceError> {
        let tree = self.repo.find_commit(commit)?.tree()?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(entry) => entry,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if entry.kind() != Some(ObjectType::Blob) {
            return Ok(None);
        }
        Ok(Some(RawFile {
            path: path.to_string(),
            content: self.blob_content(entry.id(), entry.filemode())?,
        }))
    }

    fn blob_content(&self, oid: Oid, mode: i32) -> Result<RawContent, SourceError> {
        let link = mode == i32::from(git2::FileMode::Link);
        let marker = crate::manifest::load::API_MARKER.as_bytes();
        // A loose object (one libgit2 can stream) is sized from its header first, so that a large
        // file is not loaded to be ignored. A packed one is read whole either way (libgit2 cannot
        // stream it), so it is read once, without first resolving its delta chain for the size.
        if !link
            && let Ok((_, size, _)) = self.repo.odb()?.reader(oid)
            && size > MAX_MANIFEST_BYTES
        {
            return Ok(if self.blob_mentions(oid, marker)? {
                RawContent::TooLarge(size)
            } else {
                RawContent::Foreign(size)
            });
        }
        let blob = self.repo.find_blob(oid)?;
        let content = blob.content();
        Ok(if link {
            RawContent::Symlink(String::from_utf8_lossy(content).into_owned())
        } else if content.len() > MAX_MANIFEST_BYTES {
            if content.windows(marker.len()).any(|w| w == marker) {
                RawContent::TooLarge(content.len())
            } else {
                RawContent::Foreign(content.len())
            }
        } else {
            RawContent::Bytes(content.to_vec())
        })
    }

    /// Whether the blob contains `marker`, read in chunks (memory stays small for a loose
    /// object; libgit2 cannot stream a packed one, which is then read whole, once).
    fn blob_mentions(&self, oid: Oid, marker: &[u8]) -> Result<bool, SourceError> {
        use std::io::Read;
        let contains = |hay: &[u8]| hay.windows(marker.len()).any(|w| w == marker);
        let odb = self.repo.odb()?;
        let Ok((mut reader, _, _)) = odb.reader(oid) else {
            return Ok(contains(self.repo.find_blob(oid)?.content()));
        };
        let mut window: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A backend that refuses to stream mid-way: read the blob whole instead.
                Err(_) => return Ok(contains(self.repo.find_blob(oid)?.content())),
            };
            // Keep the end of the previous chunk so a marker split between chunks is found.
            let keep = window.len().min(marker.len() - 1);
            window.drain(..window.len() - keep);
            window.extend_from_slice(&chunk[..n]);
            if contains(&window) {
                return Ok(true);
            }
        }
    }

    /// Text files that differ between two commits (added, modified, deleted), with both sides.
    ///
    /// # Errors
    /// git failures.
    pub fn changed_files(&self, base: Oid, head: Oid) -> Result<Vec<ChangedFile>, SourceError> {
        let base_tree = self.repo.find_commit(base)?.tree()?;
        let head_tree = self.repo.find_commit(head)?.tree()?;
        let diff = self.repo.diff_tree_to_tree(Some(&base_tree), Some(&head_tree), None)?;
        let mut changed = Vec::new();
        for delta in diff.deltas() {
            let path = delta
                .new_file()
                .path()
                .or_else(|| delta.old_file().path())
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            let side = |oid: Oid| -> Option<String> {
                if oid.is_zero() {
                    return None;
                }
                let blob = self.repo.find_blob(oid).ok()?;
                if blob.is_binary() || blob.size() > MAX_MANIFEST_BYTES {
                    return Some(String::from("(binary or too large to show)\n"));
                }
                Some(String::from_utf8_lossy(blob.content()).into_owned())
            };
            changed.push(ChangedFile {
                path,
                old: side(delta.old_file().id()),
                new: side(delta.new_file().id()),
            });
        }
        Ok(changed)
    }

    /// The commit's summary line and time, for plan headers.
    ///
    /// # Errors
    /// git failures.
    pub fn describe(&self, commit: Oid) -> Result<CommitInfo, SourceError> {
        let c = self.repo.find_commit(commit)?;
        Ok(CommitInfo {
            id: commit.to_string(),
            summary: c.summary().ok().flatten().unwrap_or("").to_string(),
        })
    }
}

/// A file of a commit's tree, not read yet.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Path inside the repository, `/`-separated.
    pub path: String,
    pub oid: Oid,
    /// The git file mode (links are told apart from files by it).
    pub mode: i32,
}

/// A file that changed between two commits.
#[derive(Debug, Clone)]
pub struct ChangedFile {
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What plans print about a commit.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub id: String,
    pub summary: String,
}
