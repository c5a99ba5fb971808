//! The operations users invoke (status, apply, rollback, init, plan, history, validate), each
//! returning a typed report. `cli` builds options from arguments, calls one function here and
//! prints the report; the daemon (`server`) calls the same functions, never `cli`.
//!
//! Exit codes (SPEC §6) are decided in one place: [`OpsError::exit`] for errors, and each
//! report's `exit()` for outcomes that are not errors (a commit that does not validate, a plan
//! with violations, a pass with failed targets).

pub mod agents;
pub mod apply;
pub mod approve;
pub mod artifacts;
pub mod clone;
pub mod history;
pub mod init;
pub mod notify;
pub mod plan;
pub mod retry;
pub mod rollback;
pub mod schedule;
pub mod selection;
pub mod shared;
pub mod status;
pub mod validate;
pub mod versions;

use git2::Oid;

use crate::reconcile::apply::ApplyError;
use crate::source::{SourceError, WatchedRepo};
use crate::state::LockError;

/// Exit codes (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Invalid input or usage.
    Invalid = 1,
    /// Policy violations (`plan`, `validate`) or failed targets (`apply`).
    Violations = 2,
    /// Another reconciler holds the repository's lock.
    Locked = 3,
    /// gantry could not read or write its own files (`.git/gantry`, the state branch): an OS
    /// error such as a full disk or a read-only directory, named in the message. A pass that
    /// could not take the lock for such a reason, start an attempt or record one ends with
    /// this, never with 0 (issue #12).
    Io = 4,
}

/// An error that ends an operation.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// Bad arguments or input the user must fix.
    #[error("{0}")]
    Usage(String),
    /// A command named a target the desired state does not declare (exit 1, like other usage
    /// errors; the daemon answers 404).
    #[error("unknown target `{target}`: not in the desired state at {commit}; `gantry status` lists the targets")]
    UnknownTarget { target: String, commit: String },
    /// Reading the repository failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Reading recorded state failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A reconcile pass failed or could not start.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// `gantry init` could not write the example repository.
    #[error(transparent)]
    Init(#[from] init::InitError),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon could not start or failed.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    /// Fetching from or publishing to the remote failed (nothing ran when it was before a pass).
    /// Boxed: the error is large, and every command's `Result` carries an `OpsError`.
    #[error(transparent)]
    Sync(Box<crate::source::sync::SyncError>),
    /// `gantry clone` failed.
    /// Boxed, like `Sync`: it holds one.
    #[error(transparent)]
    Clone(Box<clone::CloneError>),
}

impl From<crate::source::sync::SyncError> for OpsError {
    fn from(e: crate::source::sync::SyncError) -> Self {
        OpsError::Sync(Box::new(e))
    }
}

impl From<clone::CloneError> for OpsError {
    fn from(e: clone::CloneError) -> Self {
        OpsError::Clone(Box::new(e))
    }
}

impl OpsError {
    /// The exit code of an operation that ended with this error: the one mapping (SPEC §6).
    pub fn exit(&self) -> Exit {
        match self {
            // Only real contention is 3; a lock file that cannot be created (a read-only
            // `.git/gantry`) is gantry's own files failing: 4, with the OS error.
            OpsError::Apply(ApplyError::Locked(LockError::Held { .. }))
            | OpsError::Server(crate::server::ServerError::Locked(LockError::Held { .. })) => Exit::Locked,
            OpsError::Apply(
                ApplyError::Locked(LockError::Io { .. })
                | ApplyError::Journal(_)
                | ApplyError::Record { .. }
                | ApplyError::Attempt(_),
            )
            | OpsError::Server(crate::server::ServerError::Locked(LockError::Io { .. })) => Exit::Io,
            OpsError::Apply(ApplyError::InvalidCommit {
                violations_only: true, ..
            }) => Exit::Violations,
            OpsError::Usage(_)
            | OpsError::UnknownTarget { .. }
            | OpsError::Source(_)
            | OpsError::Render(_)
            | OpsError::State(_)
            | OpsError::Apply(_)
            | OpsError::Init(_)
            | OpsError::Io(_)
            | OpsError::Server(_)
            | OpsError::Sync(_)
            | OpsError::Clone(_) => Exit::Invalid,
        }
    }
}

/// What to do after a failed pass: the error policy of kube-runtime's controllers and Flux's
/// `TerminalError`, decided here for every [`ApplyError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// The input is wrong (an invalid or untrusted desired commit, unknown targets): running
    /// again cannot help, so the next pass waits until the desired commit changes (or an
    /// operator asks with `POST /api/refresh`).
    WhenInputChanges,
    /// Something outside the input failed (I/O, a full disk, a lock, git): retry with backoff.
    Backoff,
}

/// The error policy: terminal errors wait for new input, transient ones back off.
pub fn error_policy(error: &ApplyError) -> Requeue {
    match error {
        // The anchor file itself could not be read or written: the host, not the input.
        ApplyError::Anchor(e) if matches!(**e, crate::source::trust::TrustError::Anchor(_)) => Requeue::Backoff,
        // A rewound or replaced desired branch, a missing anchor commit: wait for a new commit
        // (or an operator's --allow-rewind).
        ApplyError::InvalidCommit { .. }
        | ApplyError::Untrusted { .. }
        | ApplyError::Anchor(_)
        | ApplyError::UnknownTargets(_) => Requeue::WhenInputChanges,
        ApplyError::Locked(_)
        | ApplyError::Source(_)
        | ApplyError::State(_)
        | ApplyError::Journal(_)
        | ApplyError::Attempt(_)
        | ApplyError::Record { .. } => Requeue::Backoff,
    }
}

/// Resolves `rev`, or the tip of the desired branch.
///
/// # Errors
/// The revision or the branch does not exist.
pub fn resolve_commit(repo: &WatchedRepo, rev: Option<&str>) -> Result<Oid, OpsError> {
    Ok(match rev {
        Some(rev) => repo.resolve(rev)?,
        None => repo.branch_tip(&repo.desired_branch_hint())?,
    })
}

/// The first 12 hex digits of a commit id, as messages show it.
pub fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit-code table of SPEC §6, for every error that has its own code.
    #[test]
    fn errors_map_to_the_exit_codes_of_spec_section_6() {
        let lock = || LockError::Held {
            pid: Some(1),
            since: None,
            path: "x".into(),
        };
        let unwritable = || LockError::Io {
            action: "cannot create",
            path: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        let invalid = |violations_only| ApplyError::InvalidCommit {
            commit: "0".repeat(40),
            diagnostics: Vec::new(),
            violations_only,
        };
        let cases = [
            (OpsError::Usage("bad".into()), Exit::Invalid),
            (OpsError::Apply(ApplyError::Locked(lock())), Exit::Locked),
            (
                OpsError::Server(crate::server::ServerError::Locked(lock())),
                Exit::Locked,
            ),
            // An OS error on the lock is exit 4, never 3 (issue #12) nor 1.
            (OpsError::Apply(ApplyError::Locked(unwritable())), Exit::Io),
            (OpsError::Apply(invalid(true)), Exit::Violations),
            (OpsError::Apply(invalid(false)), Exit::Invalid),
            (OpsError::Io(std::io::Error::other("x")), Exit::Invalid),
        ];
        for (error, want) in cases {
            assert_eq!(error.exit(), want, "{error:?}");
        }
    }

    /// Terminal errors (the input is wrong) wait for a new commit; everything else backs off,
    /// a full disk included (issue #12: a journal write failing on ENOSPC was never retried).
    #[test]
    fn error_policy_separates_terminal_from_transient() {
        let full_disk = crate::state::JournalError::Io {
            action: "cannot write",
            path: "j".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        let cases = [
            (
                ApplyError::InvalidCommit {
                    commit: "c".into(),
                    diagnostics: Vec::new(),
                    violations_only: false,
                },
                Requeue::WhenInputChanges,
            ),
            (ApplyError::UnknownTargets(vec!["x".into()]), Requeue::WhenInputChanges),
            (ApplyError::Journal(full_disk), Requeue::Backoff),
            (
                ApplyError::Source(SourceError::Git(git2::Error::from_str("object not found"))),
                Requeue::Backoff,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error_policy(&error), want, "{error:?}");
        }
    }
}
