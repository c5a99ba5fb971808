//! Status: per target, what runs, what is wanted, and what happens next (`gantry status`,
//! `/api/status`, the daemon's notifications and gauges).

use serde::Serialize;

use crate::plan;
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::{Journal, read_recorded};

use super::{OpsError, resolve_commit};

/// One row of `gantry status`.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatusRow {
    pub target: String,
    pub component: String,
    /// The target's labels at the desired commit (empty for a target being removed), so
    /// clients can group and filter (`/api/status?selector=env=prod`).
    pub labels: crate::manifest::Labels,
    pub current: Option<String>,
    pub desired: Option<String>,
    /// Recorded status (`converged`, `failed`, `rolled_back`, `in_progress`, …) or `new`.
    pub status: String,
    pub next_action: String,
    pub plan_status: String,
    pub blockers: Vec<plan::Blocker>,
    pub violations: Vec<String>,
    /// When the next window opens, for targets blocked by windows.
    pub opens_at: Option<String>,
    pub last_outcome: Option<String>,
    pub last_message: Option<String>,
    /// The attempt its journal shows unfinished: running now (a reconciler holds the lock) or
    /// interrupted (the next pass resumes or rolls it back). Null when there is none.
    pub attempt: Option<AttemptInFlight>,
    /// For a target pinned to an exact version: the newest release above the pin it could take
    /// (not yanked, not denied by its policy, of an allowed channel). Null otherwise (issue #15,
    /// `update_available`).
    pub update_available: Option<String>,
}

/// The newest release a pinned target could move to: above the pin, not yanked, not denied by
/// the governing policy, stable or of a channel the target lists. `None` for requirements (they
/// move by themselves) and for pins already at the newest.
fn newer_than_pin(desired: &crate::manifest::Desired, target: &crate::manifest::Target) -> Option<String> {
    let crate::manifest::VersionWanted::Pin(pin) = &target.wanted else {
        return None;
    };
    let governing = crate::policy::select_policy(desired, target).unwrap_or(crate::policy::Governing::BuiltIn);
    let releases = desired.releases.get(&target.spec().component)?;
    releases
        .iter()
        .rev()
        .filter(|r| r.version > *pin)
        // Stable, or of a channel the target lists; then what a pin to it would need: not
        // yanked, not denied (the resolver's own rule).
        .filter(|r| {
            r.channel()
                .is_none_or(|c| target.spec().channels.iter().any(|t| t == c))
        })
        .find(|r| crate::plan::resolve_pin(releases, target, governing, &r.version).is_ok())
        .map(|r| r.version.to_string())
}

/// An attempt that has a journal and no recorded outcome yet.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptInFlight {
    pub id: String,
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    /// RFC 3339.
    pub started: String,
    /// The step running (or interrupted); null between steps.
    pub step: Option<String>,
    pub state: FlightState,
}

/// Whether an unfinished attempt is running or was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlightState {
    /// A live reconciler holds the repository's lock.
    Running,
    /// No reconciler runs: it was killed mid-attempt.
    Interrupted,
}

impl std::fmt::Display for AttemptInFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = self.from.as_deref().unwrap_or("nothing");
        match self.state {
            FlightState::Running => {
                write!(
                    f,
                    "{} {from} → {} in progress since {}",
                    self.action, self.to, self.started
                )?;
                match &self.step {
                    Some(step) => write!(f, ", running step {step}"),
                    None => write!(f, ", between steps"),
                }
            }
            FlightState::Interrupted => write!(
                f,
                "{} {from} → {} interrupted{}; the next apply resumes or rolls it back",
                self.action,
                self.to,
                self.step
                    .as_ref()
                    .map(|s| format!(" during step {s}"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// The whole status document (`--format json` and the daemon's `/api/status`).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub desired_commit: String,
    pub state_commit: Option<String>,
    pub now: String,
    pub valid: bool,
    /// The pinned trust anchor (`.git/gantry/trust-anchor`): the last reconciled commit, whose
    /// signers and state branch are in force; absent before the first apply on this host.
    pub trust_anchor: Option<crate::source::trust::TrustAnchor>,
    pub targets: Vec<TargetStatusRow>,
    /// Rollouts with targets still to start: their waves, soaks and health analysis (as in
    /// `plan --format json`).
    pub rollouts: Vec<plan::Rollout>,
    /// The projected schedule, as `gantry schedule --format json` has it (issue #15): in
    /// `status --format json` and `/api/status`; not computed for the text table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<plan::schedule::Schedule>,
    /// What the status page draws from the schedule (not part of the JSON document).
    #[serde(skip)]
    pub timeline: Option<plan::timeline::Timeline>,
}

/// Whether a status report carries the projected schedule (a planning round per instant
/// something lifts: worth it for JSON, the page and notifications, not for the text table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    Skip,
    Schedule,
}

/// Runs the observe stage now (`gantry status --observe`): holds the reconciler lock while it
/// runs each converged target's `observe` step and records drift (SPEC §4).
///
/// # Errors
/// [`OpsError::Apply`] when the lock is held (exit 3) or the state cannot be read or written.
pub fn observe_now(
    repo: &WatchedRepo,
    now: jiff::Timestamp,
) -> Result<Vec<crate::reconcile::observe::Observation>, OpsError> {
    let _lock =
        crate::state::ReconcilerLock::acquire(repo.repo.path()).map_err(crate::reconcile::apply::ApplyError::from)?;
    let head = repo
        .branch_tip(&repo.desired_branch_hint())
        .map_err(crate::reconcile::apply::ApplyError::from)?;
    Ok(crate::reconcile::observe::observe(
        repo,
        head,
        now,
        &crate::reconcile::runtime::Runtime::default(),
        false,
    )?)
}

/// Builds the status report of a repository at `now`.
///
/// # Errors
/// Reading the repository or the state branch.
pub fn status_report(
    repo: &WatchedRepo,
    rev: Option<&str>,
    now: jiff::Timestamp,
    projection: Projection,
) -> Result<StatusReport, OpsError> {
    let commit = resolve_commit(repo, rev)?;
    let loaded = load_commit(repo, commit)?;
    let mut recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;
    // An attempt a killed reconciler left behind is in progress until the next pass settles it.
    // Its row names the interrupted attempt, not the last finished one (issue #10, item 9).
    // A journal that cannot be read is an error, not "nothing in progress": status must not
    // call a target converged while an attempt on it may be half done.
    let mut unfinished = std::collections::BTreeSet::new();
    let left = Journal::read_unfinished(&Journal::dir(repo.repo.path()))
        .map_err(|e| OpsError::Apply(crate::reconcile::apply::ApplyError::Journal(e)))?;
    // A live reconciler holds the lock: its journals are attempts in flight, not interrupted
    // ones (issue #15: status said an upgrade that was running "did not finish").
    let reconciler_running = !left.is_empty() && crate::state::ReconcilerLock::live_holder(repo.repo.path()).is_some();
    let mut in_flight: std::collections::BTreeMap<String, AttemptInFlight> = std::collections::BTreeMap::new();
    for attempt in left {
        let h = &attempt.header;
        let step = attempt.entries.iter().rev().find_map(|e| match e {
            crate::state::journal::JournalEntry::StepStarted(s) => Some(s.step_id.clone()),
            crate::state::journal::JournalEntry::StepCompleted(_) => None,
        });
        let flight = AttemptInFlight {
            id: h.attempt.clone(),
            action: h.action.clone(),
            from: h.from.as_ref().map(ToString::to_string),
            to: h.to.to_string(),
            started: h.started.to_string(),
            step: step.clone(),
            state: if reconciler_running {
                FlightState::Running
            } else {
                FlightState::Interrupted
            },
        };
        let interrupted = crate::state::AttemptRecord {
            id: h.attempt.clone(),
            desired_commit: h.desired_commit.clone(),
            from: h.from.clone(),
            to: h.to.clone(),
            action: h.action.clone(),
            started: h.started.to_string(),
            finished: None,
            outcome: None,
            message: flight.to_string(),
            config_hash: None,
            output_tail: String::new(),
            spec_hash: h.spec_hash.clone(),
            approvers: h.approvers.clone(),
            emergency: h.emergency.clone(),
        };
        if let Some(record) = recorded.targets.get_mut(&h.target) {
            record.status = crate::state::TargetStatus::InProgress;
            record.last_attempt = Some(interrupted);
        }
        in_flight.insert(h.target.clone(), flight);
        unfinished.insert(attempt.header.target);
    }
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
    let evidence = crate::reconcile::load::evidence(repo, &loaded, &anchor)?;
    let input = loaded.plan_input(&recorded, &evidence, now);
    let plan = plan::plan(&input);
    let (schedule, timeline) = match projection {
        Projection::Skip => (None, None),
        Projection::Schedule => {
            let schedule = plan::schedule::schedule(&input);
            let timeline = plan::timeline::timeline(&input, &schedule);
            (Some(schedule), Some(timeline))
        }
    };
    let targets = plan
        .actions
        .iter()
        .map(|a| {
            let record = recorded.targets.get(&a.target);
            TargetStatusRow {
                target: a.target.clone(),
                component: a.component.clone(),
                labels: loaded
                    .desired
                    .targets
                    .get(&a.target)
                    .map(|t| t.labels().clone())
                    .unwrap_or_default(),
                current: record.and_then(|r| r.version.as_ref()).map(ToString::to_string),
                desired: a.to.as_ref().map(ToString::to_string),
                // An interrupted install has a journal but no record yet.
                status: match record {
                    // Recorded converged, but the desired state asks for more: not converged.
                    Some(r)
                        if r.status == crate::state::TargetStatus::Converged
                            && !matches!(a.action, crate::plan::ActionKind::Noop) =>
                    {
                        "pending".to_string()
                    }
                    Some(r) => r.status.as_str().to_string(),
                    None if unfinished.contains(&a.target) => "in_progress".to_string(),
                    None => "new".to_string(),
                },
                next_action: a.action.as_str().to_string(),
                plan_status: a.status.to_string(),
                opens_at: a
                    .blocked_by
                    .iter()
                    .find_map(|b| b.opens_at.as_ref().map(crate::policy::window::rfc3339)),
                blockers: a
                    .blocked_by
                    .iter()
                    .cloned()
                    .map(|mut b| {
                        // The planner knows only that the attempt has not finished; the journal
                        // and the lock say whether it is running now, and which step.
                        if b.kind == crate::plan::BlockerKind::InProgress
                            && let Some(flight) = in_flight.get(&a.target)
                        {
                            b.reason = format!("attempt {}: {flight}", flight.id).into();
                        }
                        b
                    })
                    .collect(),
                attempt: in_flight.get(&a.target).cloned(),
                update_available: loaded
                    .desired
                    .targets
                    .get(&a.target)
                    .and_then(|t| newer_than_pin(&loaded.desired, t)),
                violations: a.violations.clone(),
                last_outcome: record
                    .and_then(|r| r.last_attempt.as_ref())
                    .and_then(|l| l.outcome)
                    .map(|o| o.as_str().to_string()),
                last_message: record
                    .and_then(|r| r.last_attempt.as_ref())
                    .map(|l| l.message.clone())
                    .filter(|m| !m.is_empty()),
            }
        })
        .collect();
    Ok(StatusReport {
        desired_commit: commit.to_string(),
        state_commit: recorded.commit.clone(),
        now: now.to_string(),
        valid: loaded.is_valid(),
        trust_anchor: match anchor {
            crate::source::trust::AnchorSource::Pinned(a) => Some(a),
            _ => None,
        },
        targets,
        rollouts: plan.rollouts.clone(),
        schedule,
        timeline,
    })
}
