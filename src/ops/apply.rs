//! Apply: one reconcile pass now (`gantry apply`), reporting progress to a sink.

use crate::reconcile::apply::{ApplyOptions, ApplyReport};
use crate::reconcile::attempt::ProgressSink;
use crate::source::WatchedRepo;
use crate::state::Outcome;

use super::{Exit, OpsError};

/// Runs one pass: takes the repository's lock, resumes interrupted attempts, plans and runs the
/// ready actions, records outcomes. Progress goes to `sink` as it happens.
///
/// # Errors
/// See [`crate::reconcile::apply::ApplyError`]; an invalid desired commit is an error carrying
/// its diagnostics, and nothing of it runs.
pub fn apply(repo: &WatchedRepo, options: &ApplyOptions, sink: &dyn ProgressSink) -> Result<ApplyReport, OpsError> {
    Ok(crate::reconcile::apply::apply(repo, options, sink)?)
}

/// Counts of a finished pass, for its summary line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassCounts {
    pub attempts: usize,
    pub succeeded: usize,
    /// Failed or rolled back.
    pub failed: usize,
    pub resumed: usize,
    pub blocked: usize,
    pub violations: usize,
}

/// The counts of `report`.
pub fn counts(report: &ApplyReport) -> PassCounts {
    let failed = report
        .outcomes
        .iter()
        .filter(|o| o.outcome != Outcome::Succeeded)
        .count();
    PassCounts {
        attempts: report.outcomes.len(),
        succeeded: report.outcomes.len() - failed,
        failed,
        resumed: report.resumed,
        blocked: report.plan.as_ref().map_or(0, |p| p.summary.blocked),
        violations: report.plan.as_ref().map_or(0, |p| p.summary.violation),
    }
}

/// The exit code of a pass that ran: 2 when a target failed (SPEC §6).
pub fn exit(report: &ApplyReport) -> Exit {
    if report.has_failures() {
        Exit::Violations
    } else {
        Exit::Ok
    }
}
