//! The state branch: recorded state read from and written to `gantry/state` (SPEC §4).
//!
//! - [`record`]: the YAML record types (`targets/<target>.yaml`, `rollouts/<c>@<v>.yaml`).
//! - [`branch`]: [`read_recorded`] and [`StateWriter`], which commit without a work tree.
//! - [`history`]: finished attempts read back from the commits' trailers.
//! - [`journal`]: the fsynced per-attempt step journal under `.git/gantry/journal/`.
//! - [`lock`]: the one-reconciler-per-repository lock, `.git/gantry/lock`.
//! - [`logs`]: retention of the step logs under `.git/gantry/logs/`.
//! - [`durability`]: libgit2 told to fsync what it writes (state commits survive a power cut).
//! - [`signing`]: state commits SSH-signed with the reconciler's key and verified when read.
//!
//! # State commit messages
//! A commit recording one finished attempt:
//! ```text
//! billing 1.2.0 → 2.0.0 on acme: succeeded
//!
//! Gantry-Target: acme
//! Gantry-Component: billing
//! Gantry-From: 1.2.0
//! Gantry-To: 2.0.0
//! Gantry-Outcome: succeeded
//! Gantry-Desired-Commit: 4f0c…
//! Gantry-Attempt: acme-20260203T100000Z
//! Gantry-Message: health check http failed 3 times   (only when there is a reason)
//! Gantry-Urgency: emergency                           (only for an emergency release, then:)
//! Gantry-Emergency-Reason: CVE-2026-0001: parser overflow
//! ```
//! An install has no version to start from: `billing (none) → 2.0.0 on acme: succeeded` and
//! `Gantry-From: none`. Several attempts in one commit:
//! ```text
//! gantry: 3 outcomes (2 succeeded, 1 rolled_back)
//!
//! billing 1.2.0 → 2.0.0 on acme: succeeded
//! billing 1.2.0 → 2.0.0 on zen: succeeded
//! ledger 3.1.0 → 3.2.0 on acme-ledger: rolled_back
//!
//! Gantry-Target: acme
//! …one block per outcome, in the same order, each opened by Gantry-Target…
//! ```
//! The trailers are one paragraph at the end, so `git interpret-trailers --parse` and
//! libgit2 read them. Commits that record no outcome (rollout progress, an attempt starting)
//! say `gantry: record progress` (or the batch's own summary line) and have no trailers.
//! Outcome counts list `succeeded`, `failed`, `rolled_back` in that order, omitting zeros.
pub mod branch;
pub mod durability;
pub mod fence;
pub mod history;
pub mod housekeeping;
pub mod journal;
pub mod lock;
pub mod logs;
pub mod record;
pub mod signing;

pub use branch::{
    Batch, FinishedAttempt, Identity, ROLLOUTS_DIR, RecordCache, StateWriter, TARGETS_DIR, branch_ref, read_recorded,
    read_recorded_cached, read_recorded_shared, state_tip,
};
pub use history::{AttemptDetail, HealthAtDecision, HistoryEntry, read_history};
pub use journal::{AttemptHeader, Journal, JournalEntry, JournalError, JournaledAttempt, StepCompleted, StepStarted};
pub use lock::{LockError, ReconcilerLock};
pub use record::*;

/// Why the state branch could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The configured state branch is not a name git accepts for a branch.
    #[error("state branch name {name:?} is not a valid git branch name")]
    InvalidBranchName { name: String },

    /// A record on the state branch is not valid YAML, or does not have the record's fields.
    /// The parser's message is folded in, with its position, so it is not kept as a source.
    #[error(
        "{branch}:{path}:{line}:{column}: {message} (state commit {commit}); the state branch is \
         written only by gantry, so it was edited by hand: fix or revert that commit"
    )]
    Parse {
        branch: String,
        commit: git2::Oid,
        path: String,
        line: u64,
        column: u64,
        message: String,
    },

    /// The state branch's tree has something gantry did not write where a record belongs.
    #[error(
        "{branch}:{path}: {message} (state commit {commit}); the state branch is written only \
         by gantry, so it was edited by hand: fix or revert that commit"
    )]
    Layout {
        branch: String,
        commit: git2::Oid,
        path: String,
        message: String,
    },

    /// A name that would become a file name or a trailer value has characters that cannot.
    #[error("{kind} {name:?} cannot be recorded on the state branch: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },

    /// The branch was not where this writer expected it: someone else (another gantry, a push,
    /// a hand edit) moved it. Nothing was recorded; re-read the state and plan again.
    #[error(
        "state branch {branch} moved: expected it at {}, found it at {}; someone else wrote to it, \
         so nothing was recorded (re-read the state and plan again)",
        show_tip(.expected),
        show_tip(.found)
    )]
    Moved {
        branch: String,
        expected: Option<git2::Oid>,
        found: Option<git2::Oid>,
    },

    /// A record could not be turned into YAML.
    #[error("serializing {path}")]
    Serialize {
        path: String,
        #[source]
        source: serde_saphyr::SerializeError,
    },

    /// Writing new objects into the repository failed.
    #[error("{action} (state branch {branch}): {source}")]
    Io {
        branch: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A state commit is not signed by a key in `.git/gantry/state_signers` (issue #18): it
    /// was written by someone without a reconciler's key, or changed after it was signed.
    #[error(
        "state branch {branch}: state commit {commit} is not trusted: {reason}; nothing was read from \
         the branch. State commits are signed with a reconciler's --state-signing-key and checked \
         against .git/gantry/state_signers: if a reconciler of yours wrote it, add its public key \
         there; otherwise find out who pushed it and {fix}",
        fix = undo_commit(branch, parent)
    )]
    UntrustedCommit {
        branch: String,
        commit: git2::Oid,
        /// Why the signature does not count ("it has no signature", "it is signed by key …").
        reason: String,
        /// The commit's first parent (`None`: it is the branch's first commit).
        parent: Option<git2::Oid>,
    },

    /// The state branch no longer contains the last state commit verified on this host: it
    /// was rewritten or reset, and recorded outcomes may have been dropped (issue #18).
    #[error(
        "state branch {branch} was rewritten: its tip {tip} does not contain {verified}, the last \
         state commit verified on this host (.git/gantry/state-verified), so recorded outcomes may \
         have been dropped; nothing was read from the branch. Restore it (git update-ref \
         refs/heads/{branch} {verified}, and force-push it where the remote has it); or, after \
         checking the new history by hand, delete the `{branch}` line of .git/gantry/state-verified"
    )]
    Rewritten {
        branch: String,
        tip: git2::Oid,
        verified: git2::Oid,
    },

    /// `.git/gantry/state_signers` or `.git/gantry/state-verified` cannot be read or written.
    #[error("{path}: {message}")]
    Signing { path: String, message: String },

    /// A git operation on the repository failed.
    #[error("{action} (state branch {branch}): {source}")]
    Git {
        branch: String,
        action: String,
        #[source]
        source: git2::Error,
    },
}

/// How to take an untrusted commit off the state branch.
fn undo_commit(branch: &str, parent: &Option<git2::Oid>) -> String {
    match parent {
        Some(parent) => format!(
            "reset the branch to the commit before it, {parent} (git update-ref refs/heads/{branch} {parent}, \
             and force-push it where the remote has it)"
        ),
        None => format!(
            "delete the branch, whose first commit it is (git update-ref -d refs/heads/{branch}, and on the remote)"
        ),
    }
}

fn show_tip(tip: &Option<git2::Oid>) -> String {
    tip.map_or_else(|| "(no branch)".to_string(), |oid| oid.to_string())
}

/// Checks a name that becomes part of a file name or a trailer value: a target, a component or
/// an attempt id. ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit, at
/// most 200 characters. Manifest names (`[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?`) always pass.
///
/// # Errors
/// The reason the name is refused.
pub(crate) fn valid_record_name(name: &str) -> Result<(), &'static str> {
    let first = name.bytes().next().ok_or("it is empty")?;
    if name.len() > 200 {
        return Err("it is longer than 200 characters");
    }
    if !first.is_ascii_alphanumeric() {
        return Err("it must start with a letter or a digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}
