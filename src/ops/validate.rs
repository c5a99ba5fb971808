//! Validation: parse, schema-check and cross-check every manifest at a commit (`gantry validate`).

use git2::Oid;

use crate::manifest::{Diagnostic, Severity};
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;

use super::{Exit, OpsError, resolve_commit};

/// What `validate` found at one commit.
#[derive(Debug)]
pub struct ValidateReport {
    pub commit: Oid,
    /// Every problem and warning, sorted by file and line.
    pub diagnostics: Vec<Diagnostic>,
    /// Whether some file cannot be read at all (syntax, schema, types): exit 1.
    pub invalid: bool,
    /// Whether every file reads but the state can never succeed as declared: exit 2.
    pub violations: bool,
    /// `3 components, 4 releases, …` for the one-line verdict.
    pub counts: String,
}

impl ValidateReport {
    /// The exit code (SPEC §6, §8: 1 unreadable, 2 violations).
    pub fn exit(&self) -> Exit {
        if self.invalid {
            Exit::Invalid
        } else if self.violations {
            Exit::Violations
        } else {
            Exit::Ok
        }
    }

    /// Problems (not warnings).
    pub fn problems(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity != Severity::Warning)
            .count()
    }

    /// The one-line verdict `gantry validate` prints after the diagnostics (on stdout when the
    /// commit is valid, on stderr when not).
    pub fn verdict(&self) -> String {
        let short = &self.commit.to_string()[..12];
        if self.exit() == Exit::Ok {
            format!("{short} is valid: {}", self.counts)
        } else {
            let problems = self.problems();
            format!(
                "{short} is not valid: {problems} problem{}",
                if problems == 1 { "" } else { "s" }
            )
        }
    }
}

/// Validates the manifests at `rev` (default: tip of the desired branch).
///
/// # Errors
/// Only when the repository or the revision cannot be read; problems in the manifests are the
/// report's diagnostics.
pub fn validate(repo: &WatchedRepo, rev: Option<&str>) -> Result<ValidateReport, OpsError> {
    let commit = resolve_commit(repo, rev)?;
    let mut loaded = load_commit(repo, commit)?;
    if !loaded.has_invalid() {
        loaded
            .diagnostics
            .extend(super::artifacts::verify_at_commit(repo, commit, &loaded.desired)?);
        crate::manifest::diagnostic::sort(&mut loaded.diagnostics);
    }
    let d = &loaded.desired;
    let counts = format!(
        "{} components, {} releases, {} targets, {} policies, {} windows, {} approvals",
        d.components.len(),
        d.releases.values().map(Vec::len).sum::<usize>(),
        d.targets.len(),
        d.policies.len(),
        d.windows.len(),
        d.approvals.len()
    );
    Ok(ValidateReport {
        commit,
        invalid: loaded.has_invalid(),
        violations: loaded.has_violations(),
        diagnostics: loaded.diagnostics,
        counts,
    })
}
