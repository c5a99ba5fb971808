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

/// The exit code of a pass that ran: 4 when an attempt could not start (its journal could not
/// be written), else 2 when a target failed (SPEC §6).
pub fn exit(report: &ApplyReport) -> Exit {
    if !report.not_started.is_empty() {
        Exit::Io
    } else if report.has_failures() {
        Exit::Violations
    } else {
        Exit::Ok
    }
}

/// How long `gantry apply` waits, after its pass, for its notifications to be delivered.
pub const NOTIFY_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// A pass's report, and the notifications that could not be delivered (one line each, for
/// stderr: a webhook that is down never fails the pass).
pub struct Notified {
    pub result: Result<ApplyReport, OpsError>,
    pub undelivered: Vec<String>,
}

/// `gantry apply`: one pass ([`super::shared::apply_shared`]) that sends the `[[notify]]`
/// webhooks the daemon sends for a pass, through the same functions (`ops::notify`): the
/// progress events of the pass, then [`super::notify::after_pass`] (waves completed, targets
/// blocked, converged) or [`super::notify::invalid_commit`]. It then waits up to
/// [`NOTIFY_FLUSH`] for deliveries. A dry run notifies nothing.
pub fn apply_notifying(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    selector: &super::agents::Selector,
    auth: &crate::source::remote::GitAuth,
    sink: &dyn ProgressSink,
) -> Notified {
    let config = super::shared::repo_config(repo);
    let plain = |sink: &dyn ProgressSink| super::shared::apply_shared(repo, options, selector, auth, sink);
    if options.dry_run || config.notify.is_empty() {
        return Notified {
            result: plain(sink).map_err(OpsError::from),
            undelivered: Vec::new(),
        };
    }
    // The pass reads the same state and fails the same way when it cannot.
    let before = match crate::state::read_recorded(&repo.repo, &config.state_branch) {
        Ok(before) => before,
        Err(e) => {
            return Notified {
                result: Err(e.into()),
                undelivered: Vec::new(),
            };
        }
    };
    let notifier = super::notify::Notifier::new(config.notify.clone());
    let memory = std::sync::Mutex::new(super::notify::Memory::default());
    let notices = super::notify::PassNotices::new(&notifier, &memory, &before);
    let tee = Tee {
        sink,
        notices: &notices,
    };
    let result = plain(&tee).map_err(OpsError::from);
    match &result {
        Ok(report) => {
            let now = options.now.unwrap_or_else(jiff::Timestamp::now);
            let after = crate::state::read_recorded(&repo.repo, &config.state_branch);
            let projection = if notifier.wants(super::notify::Event::UpgradeScheduled) {
                super::status::Projection::Schedule
            } else {
                super::status::Projection::Skip
            };
            let status = super::status::status_report(repo, None, now, projection);
            match (after, status) {
                (Ok(after), Ok(status)) => {
                    super::notify::after_pass(
                        &notifier,
                        &memory,
                        &before,
                        &after,
                        &status,
                        !report.outcomes.is_empty(),
                    );
                    super::notify::announce_updates(&notifier, &status, repo.repo.path());
                    if let Some(schedule) = &status.schedule {
                        super::notify::scheduled::announce(&notifier, schedule, repo.repo.path(), now);
                    }
                }
                (Err(e), _) => tracing::warn!("no end-of-pass notifications: {e}"),
                (_, Err(e)) => tracing::warn!("no end-of-pass notifications: {e}"),
            }
        }
        Err(OpsError::Apply(crate::reconcile::apply::ApplyError::InvalidCommit {
            commit, diagnostics, ..
        })) => {
            let errors: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            super::notify::invalid_commit(&notifier, commit, &errors);
        }
        Err(_) => {}
    }
    Notified {
        result,
        undelivered: notifier.finish(NOTIFY_FLUSH),
    }
}

/// Progress to the caller's sink and to the pass's notifications.
struct Tee<'a> {
    sink: &'a dyn ProgressSink,
    notices: &'a super::notify::PassNotices<'a>,
}

impl ProgressSink for Tee<'_> {
    fn event(&self, event: &crate::reconcile::attempt::ProgressEvent) {
        self.sink.event(event);
        self.notices.event(event);
    }
}
