//! Signed state commits (issue #18): with a state signing key configured, every commit gantry
//! writes on the state branch is SSH-signed, and every read of the branch verifies the commits
//! this host has not verified yet, so whoever can push the branch but does not hold a key cannot
//! change what gantry believes it has done without gantry refusing it.
//!
//! # Keys
//! - **The signing key**: an unencrypted OpenSSH ed25519 private key, installed for the process
//!   with [`configure`] (the CLI does it from `--state-signing-key` / `GANTRY_STATE_SIGNING_KEY`,
//!   before any command runs). Commits are signed by [`CommitSigner::commit`], the same code that
//!   signs `gantry approve`'s commits: a `gpgsig` header holding an SSHSIG in namespace `git`,
//!   so `git verify-commit` and `git log --show-signature` check them.
//! - **The keys that count**: `.git/gantry/state_signers` on the reconciler's host (ALLOWED
//!   SIGNERS format; principals are not used), never read from any commit. A configured key's
//!   public half is added to it the first time it is used, so the file's presence pins "state is
//!   signed" for every command on the host, also those run without the private key (`status`,
//!   `history`). Other reconcilers sharing the branch (agents) list their keys there too.
//!
//! # Verification
//! `.git/gantry/state-verified` holds, per state branch, the last state commit verified on this
//! host. A read of the branch ([`verify_branch`], called by every reader):
//! - with a verified commit: the tip must contain it (else the branch was rewritten and an
//!   outcome may be gone: [`StateError::Rewritten`]), and every commit since must be signed by a
//!   listed key ([`StateError::UntrustedCommit`], naming the oldest offending commit);
//! - without one (the first read on this host): every signed commit must verify, and no
//!   unsigned commit may come after a signed one. Unsigned commits with no signed ancestor are
//!   history from before signing was turned on and are accepted (trust on first use, listed as a
//!   residual risk in docs/SECURITY.md);
//! - then the tip is pinned as verified. A commit this host writes on the pinned tip is pinned
//!   as it is written ([`wrote`]).
//!
//! `push_state` rebuilds unpublished commits on the remote's tip; [`rebuilt`] moves the pin back
//! to the commit both histories share, so the rebuilt commits and the remote's are verified on
//! the next read instead of looking like a rewrite.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

use git2::{Oid, Repository, Sort};

use super::{StateError, state_tip};
use crate::source::trust::{AllowedSigners, CommitSigner, TrustError, verify_commit};

/// The host's list of keys whose state commits count, relative to the git dir.
pub const STATE_SIGNERS: &str = "gantry/state_signers";

/// The last verified state commit per state branch, relative to the git dir.
pub const VERIFIED_FILE: &str = "gantry/state-verified";

/// The principal the configured key is listed under in `.git/gantry/state_signers`.
const PRINCIPAL: &str = "gantry-state";

static SIGNER: OnceLock<CommitSigner> = OnceLock::new();

/// Installs the reconciler's state signing key for this process. Called once by the CLI before
/// any command runs (a later call keeps the first key). Library users who never call it write
/// unsigned state commits, as before issue #18.
pub fn configure(signer: CommitSigner) {
    let _ = SIGNER.set(signer);
}

/// The configured state signing key, if any.
pub fn configured() -> Option<&'static CommitSigner> {
    SIGNER.get()
}

/// Writes a state commit (no reference moves): signed with the configured key, if any. Every
/// writer of the state branch (records and outcomes, claims, commits rebuilt on the remote's
/// tip) goes through here.
///
/// # Errors
/// git failures; a signing failure as a git error with its message.
pub fn commit(
    repo: &Repository,
    author: &git2::Signature<'_>,
    committer: &git2::Signature<'_>,
    message: &str,
    tree: &git2::Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<Oid, git2::Error> {
    commit_with(configured(), repo, author, committer, message, tree, parents)
}

/// [`commit`] with an explicit signer (tests; `None` writes an unsigned commit).
///
/// # Errors
/// As [`commit`].
pub fn commit_with(
    signer: Option<&CommitSigner>,
    repo: &Repository,
    author: &git2::Signature<'_>,
    committer: &git2::Signature<'_>,
    message: &str,
    tree: &git2::Tree<'_>,
    parents: &[&git2::Commit<'_>],
) -> Result<Oid, git2::Error> {
    match signer {
        None => repo.commit(None, author, committer, message, tree, parents),
        Some(signer) => signer
            .commit(repo, author, committer, message, tree, parents)
            .map_err(|e| match e {
                TrustError::Git(e) => e,
                other => git2::Error::from_str(&format!("signing the state commit: {other}")),
            }),
    }
}

/// Verifies the state branch when state signing is on for this host (a key is configured or
/// `.git/gantry/state_signers` exists); nothing otherwise. See the module docs.
///
/// # Errors
/// [`StateError::UntrustedCommit`], [`StateError::Rewritten`], [`StateError::Signing`] when the
/// host's files cannot be read or written, git failures.
pub fn verify_branch(repo: &Repository, branch: &str) -> Result<(), StateError> {
    match state_signers(repo, configured())? {
        Some(signers) => verify(repo, branch, &signers),
        None => Ok(()),
    }
}

/// The keys whose state commits count on this host, or `None` when state signing is off. With
/// `signer`, its public half is added to `.git/gantry/state_signers` when missing (pinning).
///
/// # Errors
/// [`StateError::Signing`] when the file cannot be read, written or parsed (naming the line).
pub fn state_signers(repo: &Repository, signer: Option<&CommitSigner>) -> Result<Option<AllowedSigners>, StateError> {
    let path = repo.path().join(STATE_SIGNERS);
    let name = format!(".git/{STATE_SIGNERS}");
    let fail = |message: String| StateError::Signing {
        path: name.clone(),
        message,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(fail(e.to_string())),
    };
    let parse = |text: &str| AllowedSigners::parse(text, &name).map_err(|e| fail(e.to_string()));
    let signers = match (text, signer) {
        (None, None) => return Ok(None),
        (Some(text), None) => parse(&text)?,
        (text, Some(signer)) => {
            let text = text.unwrap_or_default();
            let signers = parse(&text)?;
            if signers.lists(signer.public_key()) {
                signers
            } else {
                let mut text = text;
                if text.is_empty() {
                    text.push_str(
                        "# Keys whose state commits gantry accepts on this host (docs/SECURITY.md,\n\
                         # \"Signed state\"). ALLOWED SIGNERS format; never read from a commit.\n",
                    );
                } else if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&signer.allowed_signers_line(PRINCIPAL));
                text.push('\n');
                write_atomically(&path, &text).map_err(|e| fail(format!("cannot add the signing key: {e}")))?;
                parse(&text)?
            }
        }
    };
    Ok(Some(signers))
}

/// Verifies `branch` against `signers` from the last verified commit (see the module docs), then
/// pins its tip.
///
/// # Errors
/// As [`verify_branch`].
pub fn verify(repo: &Repository, branch: &str, signers: &AllowedSigners) -> Result<(), StateError> {
    let Some(tip) = state_tip(repo, branch)? else {
        return Ok(());
    };
    let mut pins = Pins::read(repo.path())?;
    let git = |action: &str, e: git2::Error| super::branch::git_error(branch, action.to_string(), e);
    let mut walk = repo.revwalk().map_err(|e| git("walking the state branch", e))?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(|e| git("walking the state branch", e))?;
    walk.push(tip).map_err(|e| git("walking the state branch", e))?;
    let since = pins.get(branch);
    match since {
        Some(verified) if verified == tip => return Ok(()),
        Some(verified) => {
            let contained = repo.find_commit(verified).is_ok()
                && repo
                    .graph_descendant_of(tip, verified)
                    .map_err(|e| git("comparing with the last verified state commit", e))?;
            if !contained {
                return Err(StateError::Rewritten {
                    branch: branch.to_string(),
                    tip,
                    verified,
                });
            }
            walk.hide(verified).map_err(|e| git("walking the state branch", e))?;
        }
        None => {}
    }
    // Commits signed, or after a signed one: from there on everything must be signed.
    let mut signed_era: HashSet<Oid> = HashSet::new();
    for oid in walk {
        let oid = oid.map_err(|e| git("walking the state branch", e))?;
        let commit = repo.find_commit(oid).map_err(|e| git("reading a state commit", e))?;
        let after_signed = commit.parent_ids().any(|p| signed_era.contains(&p));
        match verify_commit(repo, oid, signers) {
            Ok(_) => {
                signed_era.insert(oid);
            }
            // Before signing was turned on (first read on this host only).
            Err(TrustError::Unsigned { .. }) if since.is_none() && !after_signed => {}
            Err(e) => {
                return Err(StateError::UntrustedCommit {
                    branch: branch.to_string(),
                    commit: oid,
                    reason: e.to_string(),
                    parent: commit.parent_ids().next(),
                });
            }
        }
    }
    pins.set(branch, tip);
    pins.write(repo.path())
}

/// After a writer put `commit` on the branch on top of `parent`: when `parent` was the last
/// verified commit, `commit` (this host's own, just written) becomes it. So a later reset of the
/// branch to `parent`, dropping what `commit` recorded, is seen as the rewrite it is.
///
/// # Errors
/// [`StateError::Signing`] when the pin cannot be read or written.
pub fn wrote(repo: &Repository, branch: &str, parent: Option<Oid>, commit: Oid) -> Result<(), StateError> {
    if configured().is_none() {
        return Ok(());
    }
    let mut pins = Pins::read(repo.path())?;
    match (pins.get(branch), parent) {
        (Some(pinned), Some(parent)) if pinned == parent => {
            pins.set(branch, commit);
            pins.write(repo.path())
        }
        _ => Ok(()),
    }
}

/// After `push_state` rebuilt our commits (`ours`) on the remote's tip (`theirs`): a pin on a
/// commit that is no longer on the branch moves back to the commit both histories share, so the
/// next read verifies the remote's new commits and the rebuilt ones.
///
/// # Errors
/// [`StateError::Signing`] when the pin cannot be written, git failures.
pub fn rebuilt(repo: &Repository, branch: &str, ours: Oid, theirs: Oid, tip: Oid) -> Result<(), StateError> {
    let mut pins = Pins::read(repo.path())?;
    let Some(verified) = pins.get(branch) else {
        return Ok(());
    };
    let still_there = verified == tip || repo.graph_descendant_of(tip, verified).unwrap_or(false);
    if still_there {
        return Ok(());
    }
    match repo.merge_base(ours, theirs) {
        Ok(shared) if shared == verified || repo.graph_descendant_of(verified, shared).unwrap_or(false) => {
            pins.set(branch, shared);
        }
        // The pin was not ours to move (not on our side of the rebuild): leave it, so the read
        // reports the rewrite.
        Ok(_) => return Ok(()),
        Err(_) => pins.remove(branch),
    }
    pins.write(repo.path())
}

/// `.git/gantry/state-verified`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Pins {
    #[serde(default)]
    verified: BTreeMap<String, String>,
}

impl Pins {
    fn read(git_dir: &Path) -> Result<Pins, StateError> {
        let fail = |message: String| StateError::Signing {
            path: format!(".git/{VERIFIED_FILE}"),
            message,
        };
        let text = match std::fs::read_to_string(git_dir.join(VERIFIED_FILE)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pins::default()),
            Err(e) => return Err(fail(e.to_string())),
        };
        let pins: Pins = toml::from_str(&text).map_err(|e| {
            fail(format!(
                "{e}; it is written only by gantry: restore it, or delete it to verify the whole state branch again"
            ))
        })?;
        if let Some((branch, bad)) = pins.verified.iter().find(|(_, c)| Oid::from_str(c).is_err()) {
            return Err(fail(format!("`{bad}` (for {branch}) is not a commit id")));
        }
        Ok(pins)
    }

    fn get(&self, branch: &str) -> Option<Oid> {
        self.verified.get(branch).and_then(|c| Oid::from_str(c).ok())
    }

    fn set(&mut self, branch: &str, commit: Oid) {
        self.verified.insert(branch.to_string(), commit.to_string());
    }

    fn remove(&mut self, branch: &str) {
        self.verified.remove(branch);
    }

    fn write(&self, git_dir: &Path) -> Result<(), StateError> {
        let fail = |message: String| StateError::Signing {
            path: format!(".git/{VERIFIED_FILE}"),
            message,
        };
        let body = toml::to_string(self).map_err(|e| fail(e.to_string()))?;
        let text = format!(
            "# The last state commit verified on this host, per state branch (docs/SECURITY.md,\n\
             # \"Signed state\"). Written by gantry.\n{body}"
        );
        write_atomically(&git_dir.join(VERIFIED_FILE), &text).map_err(|e| fail(e.to_string()))
    }
}

/// Writes `text` to a temporary file next to `path`, fsyncs it and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Unique per process and call: the daemon's passes and its HTTP handlers read (and pin)
    // the branch from several threads.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{n}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRANCH: &str = "gantry/state";

    fn key(dir: &Path, name: &str) -> CommitSigner {
        let path = dir.join(name);
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        CommitSigner::from_file(&path).unwrap()
    }

    /// A commit on `parent` (or a root) adding `file`, signed by `signer` when given, made the
    /// branch's tip.
    fn commit_on(repo: &Repository, parent: Option<Oid>, file: &str, signer: Option<&CommitSigner>) -> Oid {
        let sig = git2::Signature::new("gantry", "gantry@localhost", &git2::Time::new(1_790_000_000, 0)).unwrap();
        let parent = parent.map(|p| repo.find_commit(p).unwrap());
        let mut builder = repo
            .treebuilder(parent.as_ref().map(|p| p.tree().unwrap()).as_ref())
            .unwrap();
        builder
            .insert(file, repo.blob(file.as_bytes()).unwrap(), 0o100_644)
            .unwrap();
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let id = commit_with(signer, repo, &sig, &sig, file, &tree, &parents).unwrap();
        repo.reference(&format!("refs/heads/{BRANCH}"), id, true, "test")
            .unwrap();
        id
    }

    fn setup() -> (
        tempfile::TempDir,
        Repository,
        CommitSigner,
        CommitSigner,
        AllowedSigners,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path().join("repo.git")).unwrap();
        let ours = key(dir.path(), "ours");
        let other = key(dir.path(), "other");
        let signers = state_signers(&repo, Some(&ours)).unwrap().unwrap();
        (dir, repo, ours, other, signers)
    }

    #[test]
    fn the_configured_key_is_pinned_in_the_hosts_state_signers() {
        let (_dir, repo, ours, other, signers) = setup();
        assert!(signers.lists(ours.public_key()) && !signers.lists(other.public_key()));
        let text = std::fs::read_to_string(repo.path().join(STATE_SIGNERS)).unwrap();
        assert!(text.contains("gantry-state namespaces=\"git\" ssh-ed25519 "), "{text}");
        // Read without the key: still on, same list; adding it again changes nothing.
        assert!(state_signers(&repo, None).unwrap().unwrap().lists(ours.public_key()));
        state_signers(&repo, Some(&ours)).unwrap();
        assert_eq!(std::fs::read_to_string(repo.path().join(STATE_SIGNERS)).unwrap(), text);
        // No file and no key: signing is off.
        let bare = Repository::init_bare(_dir.path().join("other.git")).unwrap();
        assert!(state_signers(&bare, None).unwrap().is_none());
    }

    #[test]
    fn history_from_before_signing_is_accepted_once_then_everything_must_be_signed() {
        let (_dir, repo, ours, _other, signers) = setup();
        let legacy = commit_on(&repo, None, "legacy", None);
        let signed = commit_on(&repo, Some(legacy), "signed", Some(&ours));
        verify(&repo, BRANCH, &signers).unwrap();
        assert_eq!(Pins::read(repo.path()).unwrap().get(BRANCH), Some(signed));
        let forged = commit_on(&repo, Some(signed), "forged", None);
        match verify(&repo, BRANCH, &signers) {
            Err(StateError::UntrustedCommit { commit, parent, .. }) => {
                assert_eq!((commit, parent), (forged, Some(signed)));
            }
            other => panic!("expected UntrustedCommit, got {other:?}"),
        }
        // The pin did not move past the forged commit.
        assert_eq!(Pins::read(repo.path()).unwrap().get(BRANCH), Some(signed));
    }

    #[test]
    fn on_a_first_read_an_unsigned_commit_after_a_signed_one_is_refused() {
        let (dir, repo, ours, other, signers) = setup();
        let signed = commit_on(&repo, None, "signed", Some(&ours));
        let forged = commit_on(&repo, Some(signed), "forged", None);
        let err = verify(&repo, BRANCH, &signers).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "state branch gantry/state: state commit {forged} is not trusted: it has no signature"
            )),
            "{err}"
        );
        assert!(err.contains(&signed.to_string()), "{err}");
        // Signed by a key that is not listed: refused whatever comes before it.
        let repo2 = Repository::init_bare(dir.path().join("two.git")).unwrap();
        let by_other = commit_on(&repo2, None, "other", Some(&other));
        let err = verify(&repo2, BRANCH, &signers).unwrap_err().to_string();
        assert!(
            err.contains(&format!("state commit {by_other} is not trusted: it is signed by key ")),
            "{err}"
        );
        assert!(
            err.contains("which is not listed in .git/gantry/state_signers"),
            "{err}"
        );
        assert!(err.contains("delete the branch, whose first commit it is"), "{err}");
    }

    #[test]
    fn a_branch_reset_under_the_verified_commit_is_a_rewrite() {
        let (_dir, repo, ours, _other, signers) = setup();
        let first = commit_on(&repo, None, "first", Some(&ours));
        let second = commit_on(&repo, Some(first), "second", Some(&ours));
        verify(&repo, BRANCH, &signers).unwrap();
        repo.reference(&format!("refs/heads/{BRANCH}"), first, true, "drop an outcome")
            .unwrap();
        match verify(&repo, BRANCH, &signers) {
            Err(StateError::Rewritten { tip, verified, .. }) => assert_eq!((tip, verified), (first, second)),
            other => panic!("expected Rewritten, got {other:?}"),
        }
    }

    /// `push_state` rebuilds our unpublished commits on the remote's tip: they are signed again
    /// and the pin moves back to the shared commit, so the next read verifies instead of calling
    /// the legitimate rebuild a rewrite.
    #[test]
    fn commits_rebuilt_on_the_remotes_tip_are_signed_and_verify() {
        let (_dir, repo, ours_key, other_key, _) = setup();
        // Another agent's key is listed on this host too.
        let mut text = std::fs::read_to_string(repo.path().join(STATE_SIGNERS)).unwrap();
        text.push_str(&other_key.allowed_signers_line("agent-b"));
        std::fs::write(repo.path().join(STATE_SIGNERS), text).unwrap();
        let signers = state_signers(&repo, None).unwrap().unwrap();

        let base = commit_on(&repo, None, "base", Some(&ours_key));
        let theirs = commit_on(&repo, Some(base), "theirs", Some(&other_key));
        let ours = commit_on(&repo, Some(base), "ours", Some(&ours_key));
        verify(&repo, BRANCH, &signers).unwrap();
        let rebased = crate::source::sync::rebase_onto(&repo, ours, theirs, Some(&ours_key)).unwrap();
        repo.reference(&format!("refs/heads/{BRANCH}"), rebased, true, "rebase")
            .unwrap();
        rebuilt(&repo, BRANCH, ours, theirs, rebased).unwrap();
        assert_eq!(Pins::read(repo.path()).unwrap().get(BRANCH), Some(base));
        verify(&repo, BRANCH, &signers).unwrap();
        assert_eq!(Pins::read(repo.path()).unwrap().get(BRANCH), Some(rebased));
        verify_commit(&repo, rebased, &signers).unwrap();

        // Rebuilt without a key (a reconciler not configured to sign): refused on the next read.
        let unsigned = crate::source::sync::rebase_onto(&repo, ours, theirs, None).unwrap();
        repo.reference(&format!("refs/heads/{BRANCH}"), unsigned, true, "rebase")
            .unwrap();
        rebuilt(&repo, BRANCH, rebased, theirs, unsigned).unwrap();
        assert!(matches!(
            verify(&repo, BRANCH, &signers),
            Err(StateError::UntrustedCommit { commit, .. }) if commit == unsigned
        ));
    }
}
