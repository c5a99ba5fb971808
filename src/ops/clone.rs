//! `gantry clone URL DIR`: prepares a reconciler's repository from a remote, so that
//! `gantry --repo DIR daemon` (or `apply`) works right after it and starts from the fleet's
//! recorded state.
//!
//! The desired branch is the remote's default branch unless its `gantry.toml` names another;
//! the remote is named as `gantry.toml`'s `remote` (default `origin`); the desired and state
//! branches are created locally from the remote's, and the work tree is checked out for people
//! (gantry itself never reads it).

use std::path::{Path, PathBuf};

use crate::manifest::RepoConfig;
use crate::source::remote::{GitAuth, Remote, RemoteError, display_url};
use crate::source::sync::{self, Fetched, SyncError};

/// How to clone.
#[derive(Debug, Clone)]
pub struct CloneOptions {
    pub url: String,
    pub dir: PathBuf,
    pub auth: GitAuth,
}

/// What the clone holds.
#[derive(Debug, Clone)]
pub struct CloneReport {
    pub dir: PathBuf,
    /// The URL as shown (no password).
    pub url: String,
    pub remote: String,
    pub desired_branch: String,
    pub desired_commit: String,
    pub state_branch: String,
    /// The remote's recorded state, if it has any yet.
    pub state_commit: Option<String>,
    /// `gantry.toml` sets no `remote`: the reconciler will neither fetch nor publish.
    pub remote_unset: bool,
}

/// Why a clone failed. The directory is removed again when the clone created it.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// DIR exists and is not empty.
    #[error("{}: already exists and is not empty (clone into a new or empty directory)", .0.display())]
    NotEmpty(PathBuf),
    /// Talking to the remote failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Fetching a branch failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The remote has no desired branch.
    #[error("{url}: has no branch `{branch}` (push the fleet repository's desired branch first)")]
    NoDesiredBranch { url: String, branch: String },
    /// gantry.toml on the desired branch does not parse.
    #[error("{url}: gantry.toml on `{branch}` is not valid: {message} (fix it on the remote, then clone again)")]
    Config {
        url: String,
        branch: String,
        message: String,
    },
    /// A local git or file operation failed.
    #[error("{}: {message}", dir.display())]
    Local { dir: PathBuf, message: String },
}

/// Clones `options.url` into `options.dir`.
///
/// # Errors
/// [`CloneError`]; nothing is left behind in a directory the clone created.
pub fn clone(options: &CloneOptions) -> Result<CloneReport, CloneError> {
    let dir = &options.dir;
    let existed = dir.exists();
    if existed && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(CloneError::NotEmpty(dir.clone()));
    }
    let result = clone_into(options);
    if result.is_err() {
        let _ = if existed {
            clear(dir)
        } else {
            std::fs::remove_dir_all(dir)
        };
    }
    result
}

fn clear(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

fn clone_into(options: &CloneOptions) -> Result<CloneReport, CloneError> {
    let dir = &options.dir;
    let url = display_url(&options.url);
    let local = |e: git2::Error| CloneError::Local {
        dir: dir.clone(),
        message: e.message().to_string(),
    };
    let repo = git2::Repository::init(dir).map_err(local)?;
    let mut remote_name = "origin".to_string();
    repo.remote(&remote_name, &options.url).map_err(local)?;

    // The desired branch: the remote's HEAD, then whatever its gantry.toml says.
    let head_branch = {
        let remote = Remote::open(&repo, &remote_name, &options.auth)?;
        remote.default_branch()?.unwrap_or_else(|| "main".to_string())
    };
    let config = {
        let remote = Remote::open(&repo, &remote_name, &options.auth)?;
        if sync::fetch_desired(&repo, &remote, &head_branch)? == Fetched::Missing {
            return Err(CloneError::NoDesiredBranch {
                url,
                branch: head_branch,
            });
        }
        read_config(&repo, &head_branch, &url)?
    };
    if let Some(name) = &config.remote
        && *name != remote_name
    {
        let problems = repo.remote_rename(&remote_name, name).map_err(local)?;
        if !problems.is_empty() {
            return Err(CloneError::Local {
                dir: dir.clone(),
                message: format!("cannot rename remote origin to {name}"),
            });
        }
        remote_name.clone_from(name);
    }
    let remote = Remote::open(&repo, &remote_name, &options.auth)?;
    let desired_branch = config.desired_branch.clone();
    if desired_branch != head_branch && sync::fetch_desired(&repo, &remote, &desired_branch)? == Fetched::Missing {
        return Err(CloneError::NoDesiredBranch {
            url,
            branch: desired_branch,
        });
    }
    // Recorded state exactly as the remote has it: a fresh clone runs nothing it records.
    let state = sync::sync_state(&repo, &remote, &config.state_branch)?;
    let state_commit = match state {
        sync::StateSync::InSync | sync::StateSync::Published(_) => None,
        sync::StateSync::Adopted(id) => Some(id.to_string()),
    };
    let desired_ref = format!("refs/heads/{desired_branch}");
    repo.set_head(&desired_ref).map_err(local)?;
    repo.checkout_head(Some(git2::build::CheckoutBuilder::new().force()))
        .map_err(local)?;
    if let Ok(mut branch) = repo.find_branch(&desired_branch, git2::BranchType::Local) {
        let _ = branch.set_upstream(Some(&format!("{remote_name}/{desired_branch}")));
    }
    let desired_commit = repo.refname_to_id(&desired_ref).map_err(local)?.to_string();
    Ok(CloneReport {
        dir: dir.clone(),
        url,
        remote: remote_name,
        desired_branch,
        desired_commit,
        state_branch: config.state_branch.clone(),
        state_commit,
        remote_unset: config.remote.is_none(),
    })
}

fn read_config(repo: &git2::Repository, branch: &str, url: &str) -> Result<RepoConfig, CloneError> {
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .and_then(|r| r.peel_to_commit())
        .map_err(|e| CloneError::Local {
            dir: repo.path().to_path_buf(),
            message: e.message().to_string(),
        })?;
    let tree = commit.tree().map_err(|e| CloneError::Local {
        dir: repo.path().to_path_buf(),
        message: e.message().to_string(),
    })?;
    let Ok(entry) = tree.get_path(Path::new("gantry.toml")) else {
        return Ok(RepoConfig::default());
    };
    let blob = repo.find_blob(entry.id()).map_err(|e| CloneError::Local {
        dir: repo.path().to_path_buf(),
        message: e.message().to_string(),
    })?;
    let bad = |message: String| CloneError::Config {
        url: url.to_string(),
        branch: branch.to_string(),
        message,
    };
    let text = std::str::from_utf8(blob.content()).map_err(|e| bad(e.to_string()))?;
    toml::from_str(text).map_err(|e| bad(e.to_string().lines().next().unwrap_or_default().to_string()))
}
