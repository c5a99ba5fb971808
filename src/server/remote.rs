//! The daemon's remote: fetch the desired branch, push the state branch (rebasing on rejection).
//!
//! No work tree, index or HEAD is touched: the desired branch ref is fast-forwarded in place,
//! and state commits are rebuilt from trees. Only transports compiled into git2 work (`file://`
//! and local paths with the default features).

use git2::{Oid, Repository};

use super::ServerError;

/// What a fetch did to the local desired branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The local branch already had the remote's commit.
    Unchanged,
    /// The local branch moved (created or fast-forwarded) to this commit.
    Advanced(Oid),
    /// The local branch has commits the remote lacks; it is left alone.
    Diverged,
}

/// Fetches `branch` from `remote` into `refs/remotes/<remote>/<branch>` and fast-forwards the
/// local branch when it is behind.
///
/// # Errors
/// [`ServerError::Remote`] when the remote is unknown or the fetch fails.
pub fn fetch_desired(repo: &Repository, remote: &str, branch: &str) -> Result<Fetched, ServerError> {
    let err = |e: git2::Error| ServerError::Remote {
        remote: remote.to_string(),
        message: e.message().to_string(),
    };
    let tracking = format!("refs/remotes/{remote}/{branch}");
    let mut handle = repo.find_remote(remote).map_err(err)?;
    handle
        .fetch(&[format!("+refs/heads/{branch}:{tracking}")], None, None)
        .map_err(err)?;
    let theirs = repo.refname_to_id(&tracking).map_err(err)?;
    let local = format!("refs/heads/{branch}");
    let message = format!("gantry: fast-forward {branch} from {remote}");
    match repo.refname_to_id(&local) {
        Err(_) => {
            repo.reference(&local, theirs, false, &message).map_err(err)?;
            Ok(Fetched::Advanced(theirs))
        }
        Ok(ours) if ours == theirs => Ok(Fetched::Unchanged),
        Ok(ours) if repo.graph_descendant_of(theirs, ours).map_err(err)? => {
            // Compare-and-swap: a local commit made meanwhile is never overwritten.
            repo.reference_matching(&local, theirs, true, ours, &message)
                .map_err(err)?;
            Ok(Fetched::Advanced(theirs))
        }
        Ok(_) => Ok(Fetched::Diverged),
    }
}

/// Pushes the state branch. When the remote rejects it (another writer pushed state commits),
/// fetches the remote's state branch, rebuilds our new commits on top of it (each commit's
/// changed files over their tree: targets and rollouts are one file each, so no outcome is lost)
/// and pushes again, up to three times.
///
/// # Errors
/// [`ServerError::Remote`] when pushing still fails.
pub fn push_state(repo: &Repository, remote: &str, branch: &str) -> Result<(), ServerError> {
    let err = |e: git2::Error| ServerError::Remote {
        remote: remote.to_string(),
        message: e.message().to_string(),
    };
    let local = format!("refs/heads/{branch}");
    let mut last = String::new();
    for _ in 0..3 {
        let mut handle = repo.find_remote(remote).map_err(err)?;
        let mut rejection: Option<String> = None;
        let pushed = {
            let mut callbacks = git2::RemoteCallbacks::new();
            callbacks.push_update_reference(|_, status| {
                if let Some(status) = status {
                    rejection = Some(status.to_string());
                }
                Ok(())
            });
            let mut options = git2::PushOptions::new();
            options.remote_callbacks(callbacks);
            handle.push(&[format!("{local}:{local}")], Some(&mut options))
        };
        match (pushed, rejection) {
            (Ok(()), None) => return Ok(()),
            (Ok(()), Some(why)) => last = why,
            (Err(e), _) => last = e.message().to_string(),
        }
        // Rejected (most likely not a fast-forward): rebase on what the remote has.
        let tracking = format!("refs/remotes/{remote}/{branch}");
        handle
            .fetch(&[format!("+{local}:{tracking}")], None, None)
            .map_err(err)?;
        let theirs = repo.refname_to_id(&tracking).map_err(err)?;
        let ours = repo.refname_to_id(&local).map_err(err)?;
        if repo.graph_descendant_of(ours, theirs).map_err(err)? || ours == theirs {
            continue; // Already on top: the rejection was something else; try again.
        }
        let rebased = rebase_onto(repo, ours, theirs).map_err(err)?;
        repo.reference_matching(&local, rebased, true, ours, "gantry: rebase state onto the remote's")
            .map_err(err)?;
        tracing::info!(
            remote,
            branch,
            "state branch rebased onto the remote's before pushing again"
        );
    }
    Err(ServerError::Remote {
        remote: remote.to_string(),
        message: format!("pushing {branch} was rejected: {last}"),
    })
}

/// Rebuilds the commits of `ours` that `theirs` lacks on top of `theirs`, oldest first, each
/// one's changed files applied over the new parent's tree. Returns the new tip.
fn rebase_onto(repo: &Repository, ours: Oid, theirs: Oid) -> Result<Oid, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(ours)?;
    walk.hide(theirs)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    let mut parent = repo.find_commit(theirs)?;
    for id in walk {
        let commit = repo.find_commit(id?)?;
        let before = match commit.parent(0) {
            Ok(p) => Some(p.tree()?),
            Err(_) => None,
        };
        let after = commit.tree()?;
        let diff = repo.diff_tree_to_tree(before.as_ref(), Some(&after), None)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for delta in diff.deltas() {
            let new = delta.new_file();
            match (delta.status(), new.path()) {
                (git2::Delta::Deleted, _) => {
                    if let Some(path) = delta.old_file().path() {
                        update.remove(path);
                    }
                }
                (_, Some(path)) => {
                    update.upsert(path, new.id(), git2::FileMode::Blob);
                }
                (_, None) => {}
            }
        }
        let tree = repo.find_tree(update.create_updated(repo, &parent.tree()?)?)?;
        let id = repo.commit(
            None,
            &commit.author(),
            &commit.committer(),
            commit.message().unwrap_or_default(),
            &tree,
            &[&parent],
        )?;
        parent = repo.find_commit(id)?;
    }
    Ok(parent.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(repo: &Repository, parent: Option<Oid>, files: &[(&str, Option<&str>)], message: &str) -> Oid {
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(1_790_000_000, 0)).unwrap();
        let parent = parent.map(|p| repo.find_commit(p).unwrap());
        let base = match &parent {
            Some(p) => p.tree().unwrap(),
            None => repo
                .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
                .unwrap(),
        };
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in files {
            match content {
                Some(text) => update.upsert(*path, repo.blob(text.as_bytes()).unwrap(), git2::FileMode::Blob),
                None => update.remove(*path),
            };
        }
        let tree = repo.find_tree(update.create_updated(repo, &base).unwrap()).unwrap();
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(None, &sig, &sig, message, &tree, &parents).unwrap()
    }

    fn read(repo: &Repository, commit: Oid, path: &str) -> Option<String> {
        let tree = repo.find_commit(commit).unwrap().tree().unwrap();
        let entry = tree.get_path(std::path::Path::new(path)).ok()?;
        Some(String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap())
    }

    /// Two writers recorded outcomes of different targets on the same base: rebasing ours on
    /// theirs keeps both, and ours win for the files ours changed.
    #[test]
    fn rebasing_state_commits_keeps_every_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(
            &repo,
            None,
            &[("targets/a.yaml", Some("a: 1")), ("targets/gone.yaml", Some("x"))],
            "base",
        );
        let theirs = commit(&repo, Some(base), &[("targets/b.yaml", Some("b: 2"))], "theirs");
        let ours1 = commit(&repo, Some(base), &[("targets/a.yaml", Some("a: 2"))], "ours 1");
        let ours2 = commit(
            &repo,
            Some(ours1),
            &[("targets/gone.yaml", None), ("rollouts/r.yaml", Some("r"))],
            "ours 2",
        );
        let tip = rebase_onto(&repo, ours2, theirs).unwrap();
        assert!(repo.graph_descendant_of(tip, theirs).unwrap());
        assert_eq!(read(&repo, tip, "targets/a.yaml").as_deref(), Some("a: 2"));
        assert_eq!(read(&repo, tip, "targets/b.yaml").as_deref(), Some("b: 2"));
        assert_eq!(read(&repo, tip, "rollouts/r.yaml").as_deref(), Some("r"));
        assert_eq!(read(&repo, tip, "targets/gone.yaml"), None);
        let messages: Vec<String> = {
            let mut walk = repo.revwalk().unwrap();
            walk.push(tip).unwrap();
            walk.hide(theirs).unwrap();
            walk.map(|id| {
                repo.find_commit(id.unwrap())
                    .unwrap()
                    .summary_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap()
            })
            .collect()
        };
        assert_eq!(messages, ["ours 2", "ours 1"]);
    }
}
