//! Keeping the desired and state branches in step with a remote, without a work tree.
//!
//! The desired branch is only ever fast-forwarded from the remote. The state branch is shared
//! by every reconciler of the fleet: before planning, [`sync_state`] makes the local branch the
//! remote's when the remote is ahead (so a fresh clone runs nothing the remote records as done),
//! and after recording, [`push_state`] publishes new outcome commits.
//!
//! # Guarantees
//! - Local refs move by compare-and-swap (`reference_matching`): a commit written meanwhile is
//!   never overwritten. The caller holds the reconciler lock, so only it writes the state branch.
//! - The remote ref moves only by fast-forward (no force push): a push succeeds only when the
//!   remote's tip is an ancestor of ours, i.e. when ours contains every outcome it has. That is
//!   the compare-and-swap on the remote ref: a push built on an old tip is rejected.
//! - On rejection our unpublished commits are rebuilt on the remote's tip ([`rebase_onto`]:
//!   each commit's changed files over the new parent's tree) and pushed again. Commits already
//!   on the remote are never rebuilt, so no outcome is recorded twice; targets and rollouts are
//!   one file each, so no outcome is lost.

use git2::{Oid, Repository};

use super::remote::{Pushed, Remote, RemoteError};

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Talking to the remote failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The remote kept rejecting our state commits.
    #[error("remote `{remote}`: pushing {branch} was rejected {tries} times (last: {detail}); gantry retries")]
    Rejected {
        remote: String,
        branch: String,
        tries: usize,
        detail: String,
    },
    /// A local git operation failed.
    #[error("remote `{remote}`: updating {what} locally failed: {source}")]
    Local {
        remote: String,
        what: String,
        #[source]
        source: git2::Error,
    },
}

/// What a fetch did to the local desired branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The local branch already had the remote's commit.
    Unchanged,
    /// The local branch moved (created or fast-forwarded) to this commit.
    Advanced(Oid),
    /// The local branch has commits the remote lacks; it is left alone.
    Diverged,
    /// The remote has no such branch.
    Missing,
}

/// What [`sync_state`] did to the local state branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSync {
    /// Local and remote agree (or neither has the branch).
    InSync,
    /// The remote was ahead: the local branch now is the remote's.
    Adopted(Oid),
    /// The local branch had outcomes the remote lacked: they were pushed (rebuilt on the
    /// remote's tip first when both had moved).
    Published(Oid),
}

fn tracking(remote: &str, branch: &str) -> String {
    format!("refs/remotes/{remote}/{branch}")
}

/// Fetches `branch` into `refs/remotes/<remote>/<branch>`; the remote's tip, if it has one.
fn fetch_branch(repo: &Repository, remote: &Remote<'_>, branch: &str) -> Result<Option<Oid>, SyncError> {
    let tracking = tracking(remote.name(), branch);
    remote.fetch(&[format!("+refs/heads/{branch}:{tracking}")])?;
    Ok(repo.refname_to_id(&tracking).ok())
}

fn local_err<'a>(remote: &'a Remote<'_>, what: &'a str) -> impl Fn(git2::Error) -> SyncError + 'a {
    move |source| SyncError::Local {
        remote: remote.name().to_string(),
        what: what.to_string(),
        source,
    }
}

/// Fetches the desired branch and fast-forwards the local one when it is behind.
///
/// # Errors
/// [`SyncError`].
pub fn fetch_desired(repo: &Repository, remote: &Remote<'_>, branch: &str) -> Result<Fetched, SyncError> {
    let Some(theirs) = fetch_branch(repo, remote, branch)? else {
        return Ok(Fetched::Missing);
    };
    let err = local_err(remote, branch);
    let local = format!("refs/heads/{branch}");
    let message = format!("gantry: fast-forward {branch} from {}", remote.name());
    match repo.refname_to_id(&local) {
        Err(_) => {
            repo.reference(&local, theirs, false, &message).map_err(&err)?;
            Ok(Fetched::Advanced(theirs))
        }
        Ok(ours) if ours == theirs => Ok(Fetched::Unchanged),
        Ok(ours) if repo.graph_descendant_of(theirs, ours).map_err(&err)? => {
            repo.reference_matching(&local, theirs, true, ours, &message)
                .map_err(&err)?;
            Ok(Fetched::Advanced(theirs))
        }
        Ok(_) => Ok(Fetched::Diverged),
    }
}

/// Brings the local state branch in step with the remote's before planning: adopts the
/// remote's when it is ahead, publishes ours when ours is ahead, rebuilds ours on theirs when
/// both moved. The caller holds the reconciler lock.
///
/// # Errors
/// [`SyncError`]; on error the local branch is unchanged or only fast-forwarded.
pub fn sync_state(repo: &Repository, remote: &Remote<'_>, branch: &str) -> Result<StateSync, SyncError> {
    let theirs = fetch_branch(repo, remote, branch)?;
    let err = local_err(remote, branch);
    let local = format!("refs/heads/{branch}");
    let ours = repo.refname_to_id(&local).ok();
    match (ours, theirs) {
        (None, None) => Ok(StateSync::InSync),
        (None, Some(theirs)) => {
            repo.reference(&local, theirs, false, &format!("gantry: state from {}", remote.name()))
                .map_err(&err)?;
            Ok(StateSync::Adopted(theirs))
        }
        (Some(ours), Some(theirs)) if ours == theirs => Ok(StateSync::InSync),
        (Some(ours), Some(theirs)) if repo.graph_descendant_of(theirs, ours).map_err(&err)? => {
            repo.reference_matching(
                &local,
                theirs,
                true,
                ours,
                &format!("gantry: fast-forward state from {}", remote.name()),
            )
            .map_err(&err)?;
            Ok(StateSync::Adopted(theirs))
        }
        (Some(_), _) => push_state(repo, remote, branch).map(StateSync::Published),
    }
}

/// Makes the local state branch exactly the remote's, dropping local commits the remote lacks
/// (a clustered member taking up a new leadership, issue #14: what it recorded and did not
/// publish in an earlier life is stale, and the journals of those attempts are still in etcd,
/// so the new leadership records them again from there). Nothing changes when the remote has
/// no state branch yet. Returns the remote's tip.
///
/// # Errors
/// [`SyncError`]: fetching failed or the ref could not be set.
pub fn adopt_remote_state(repo: &Repository, remote: &Remote<'_>, branch: &str) -> Result<Option<Oid>, SyncError> {
    let theirs = fetch_branch(repo, remote, branch)?;
    if let Some(theirs) = theirs {
        let local = format!("refs/heads/{branch}");
        if repo.refname_to_id(&local).ok() != Some(theirs) {
            repo.reference(
                &local,
                theirs,
                true,
                &format!("gantry: adopt state from {}", remote.name()),
            )
            .map_err(local_err(remote, branch))?;
        }
    }
    Ok(theirs)
}

/// Pushes the state branch (fast-forward only). When the remote rejects it because another
/// reconciler pushed meanwhile, fetches the remote's tip, rebuilds our unpublished commits on
/// it and pushes again, up to five times. Returns the published tip.
///
/// # Errors
/// [`SyncError::Rejected`] when the remote still refuses; transport errors as they come.
pub fn push_state(repo: &Repository, remote: &Remote<'_>, branch: &str) -> Result<Oid, SyncError> {
    const TRIES: usize = 5;
    let err = local_err(remote, branch);
    let local = format!("refs/heads/{branch}");
    let mut last = String::new();
    for _ in 0..TRIES {
        let ours = repo.refname_to_id(&local).map_err(&err)?;
        match remote.push(&[format!("{local}:{local}")])? {
            Pushed::Accepted => {
                // Keep the tracking ref honest so the next sync sees no difference.
                let _ = repo.reference(&tracking(remote.name(), branch), ours, true, "gantry: pushed state");
                return Ok(ours);
            }
            Pushed::Rejected(refs) => {
                last = refs
                    .iter()
                    .map(|(name, why)| format!("{name}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
        }
        let Some(theirs) = fetch_branch(repo, remote, branch)? else {
            continue;
        };
        if ours == theirs || repo.graph_descendant_of(ours, theirs).map_err(&err)? {
            continue; // Already on top: the rejection was something else; try again.
        }
        let rebased = if repo.graph_descendant_of(theirs, ours).map_err(&err)? {
            theirs // Someone pushed exactly our commits and more: nothing of ours is missing.
        } else {
            rebase_onto(repo, ours, theirs, crate::state::signing::configured()).map_err(&err)?
        };
        repo.reference_matching(&local, rebased, true, ours, "gantry: rebase state onto the remote's")
            .map_err(&err)?;
        // A pin that cannot be moved only makes the next read report a rewrite (which the
        // operator can check and clear); it must not stop the push of recorded outcomes.
        if let Err(e) = crate::state::signing::rebuilt(repo, branch, ours, theirs, rebased) {
            tracing::warn!(
                branch,
                "the last verified state commit was not moved after the rebuild: {e}"
            );
        }
        tracing::info!(
            remote = remote.name(),
            branch,
            "state branch rebuilt on the remote's tip before pushing again"
        );
    }
    Err(SyncError::Rejected {
        remote: remote.name().to_string(),
        branch: branch.to_string(),
        tries: TRIES,
        detail: last,
    })
}

/// Rebuilds the commits of `ours` that `theirs` lacks on top of `theirs`, oldest first, each
/// one's changed files applied over the new parent's tree, each signed with `signer` when given
/// (the rebuilt commit has a new parent, so an old signature would not cover it). Returns the
/// new tip.
///
/// # Errors
/// git failures.
pub fn rebase_onto(
    repo: &Repository,
    ours: Oid,
    theirs: Oid,
    signer: Option<&super::trust::CommitSigner>,
) -> Result<Oid, git2::Error> {
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
        let base = parent.tree()?;
        for delta in diff.deltas() {
            let new = delta.new_file();
            match (delta.status(), new.path()) {
                (git2::Delta::Deleted, _) => {
                    // Already gone on their side (e.g. a claim another writer released): a
                    // no-op, not an error ("failed to remove entry: file isn't in the tree"
                    // made every later sync fail, issue #14).
                    if let Some(path) = delta.old_file().path()
                        && base.get_path(path).is_ok()
                    {
                        update.remove(path);
                    }
                }
                (_, Some(path)) => {
                    update.upsert(path, new.id(), git2::FileMode::Blob);
                }
                (_, None) => {}
            }
        }
        let tree = repo.find_tree(update.create_updated(repo, &base)?)?;
        let id = crate::state::signing::commit_with(
            signer,
            repo,
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
    use crate::source::remote::GitAuth;

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

    /// Regression (issue #14): ours deletes a file theirs already deleted (a claim released on
    /// both sides). Rebasing failed with "file isn't in the tree", and so did every later sync
    /// of that clone: a standby that had led before could never lead again.
    #[test]
    fn rebasing_a_deletion_of_a_file_already_gone_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(
            &repo,
            None,
            &[("claims/t.yaml", Some("claim")), ("a", Some("1"))],
            "base",
        );
        let theirs = commit(
            &repo,
            Some(base),
            &[("claims/t.yaml", None), ("b", Some("2"))],
            "theirs",
        );
        let ours = commit(&repo, Some(base), &[("claims/t.yaml", None), ("c", Some("3"))], "ours");
        let rebased = rebase_onto(&repo, ours, theirs, None).unwrap();
        assert_eq!(read(&repo, rebased, "claims/t.yaml"), None);
        assert_eq!(read(&repo, rebased, "b").as_deref(), Some("2"));
        assert_eq!(read(&repo, rebased, "c").as_deref(), Some("3"));
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
        let tip = rebase_onto(&repo, ours2, theirs, None).unwrap();
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

    fn messages(repo: &Repository, tip: Oid) -> Vec<String> {
        let mut walk = repo.revwalk().unwrap();
        walk.push(tip).unwrap();
        walk.map(|id| {
            repo.find_commit(id.unwrap())
                .unwrap()
                .summary()
                .unwrap()
                .unwrap()
                .to_string()
        })
        .collect()
    }

    /// Two reconcilers recorded different outcomes on the same tip; the second push is refused
    /// (not a fast-forward), rebuilt on the remote's tip and pushed: the remote ends with both
    /// outcomes, each recorded exactly once. A third sync changes nothing.
    #[test]
    fn a_rejected_push_is_rebuilt_on_the_remote_tip_and_loses_or_doubles_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bare = Repository::init_bare(dir.path().join("remote.git")).unwrap();
        let base = commit(&bare, None, &[("targets/a.yaml", Some("a: 0"))], "base");
        bare.reference("refs/heads/gantry/state", base, true, "seed").unwrap();
        let url = format!("file://{}", dir.path().join("remote.git").display());
        let auth = GitAuth::default();
        let clone = |name: &str| {
            let repo = Repository::init_bare(dir.path().join(name)).unwrap();
            repo.remote("origin", &url).unwrap();
            repo
        };
        let (a, b) = (clone("a.git"), clone("b.git"));
        for repo in [&a, &b] {
            let remote = Remote::open(repo, "origin", &auth).unwrap();
            assert_eq!(
                sync_state(repo, &remote, "gantry/state").unwrap(),
                StateSync::Adopted(base)
            );
        }
        let ours_a = commit(&a, Some(base), &[("targets/a.yaml", Some("a: 1"))], "a succeeded");
        a.reference("refs/heads/gantry/state", ours_a, true, "record").unwrap();
        let ours_b = commit(&b, Some(base), &[("targets/b.yaml", Some("b: 1"))], "b succeeded");
        b.reference("refs/heads/gantry/state", ours_b, true, "record").unwrap();

        let remote_a = Remote::open(&a, "origin", &auth).unwrap();
        assert_eq!(push_state(&a, &remote_a, "gantry/state").unwrap(), ours_a);
        let remote_b = Remote::open(&b, "origin", &auth).unwrap();
        let published = push_state(&b, &remote_b, "gantry/state").unwrap();
        assert_ne!(published, ours_b, "rebuilt, not forced");
        assert_eq!(bare.refname_to_id("refs/heads/gantry/state").unwrap(), published);
        assert!(bare.graph_descendant_of(published, ours_a).unwrap(), "A's outcome kept");
        assert_eq!(read(&bare, published, "targets/a.yaml").as_deref(), Some("a: 1"));
        assert_eq!(read(&bare, published, "targets/b.yaml").as_deref(), Some("b: 1"));
        assert_eq!(messages(&bare, published), ["b succeeded", "a succeeded", "base"]);

        // A, behind now, adopts the remote's tip; nothing is pushed or rebuilt again.
        assert_eq!(
            sync_state(&a, &remote_a, "gantry/state").unwrap(),
            StateSync::Adopted(published)
        );
        assert_eq!(sync_state(&b, &remote_b, "gantry/state").unwrap(), StateSync::InSync);
        assert_eq!(messages(&bare, published).len(), 3);
    }
}
