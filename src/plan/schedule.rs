//! The schedule: when every target is projected to start and when each rollout is expected to
//! complete (`gantry schedule`, issue #15 "when will my tenant be upgraded?").
//!
//! A projection, made by the planner itself: plan at `now`; every ready action is taken to start
//! then and to succeed at once; plan again at that instant with those outcomes recorded as
//! `apply` records them (target converged, rollout entry succeeded, wave completed when all its
//! members did); then move time to the next instant something lifts (a window opening, a soak or
//! a stage's soak ending, a release coming of age) and repeat. Windows, waves, soaks, `after`
//! stages, release age and dependencies are therefore taken into account exactly as `apply`
//! would meet them, to the second and across daylight-saving changes (the window arithmetic is
//! the planner's).
//!
//! # Assumptions (said in the output's documentation, SPEC §8)
//! - Attempts take no time and succeed; a wave's health analysis passes when its soak ends.
//! - Nothing that time alone does not lift is projected: a missing approval, a halted rollout,
//!   a suspended target or a violation leaves the target without a projected start, with the
//!   blockers that hold it.
//! - The projection stops one year after `now` ([`HORIZON_DAYS`]).
//!
//! Pure: a function of the plan input, like [`super::plan`].

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::Version;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::state::{
    AnalysisStatus, AttemptRecord, Outcome, RecordedState, RolloutRecord, RolloutTarget, RolloutTargetStatus,
    TargetRecord, TargetStatus, WaveAnalysis, WaveRecord,
};

use super::model::{Action, ActionKind, Blocker, PlanInput, Status};

/// How far ahead the projection looks.
pub const HORIZON_DAYS: i64 = 366;
/// Planning rounds at most (each moves time forward or starts at least one target).
const MAX_ROUNDS: usize = 100_000;

/// When a target is projected to start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSchedule {
    pub target: String,
    pub component: String,
    /// What it will do (`noop`: nothing to do).
    pub action: ActionKind,
    pub from: Option<Version>,
    pub to: Option<Version>,
    pub policy: Option<String>,
    pub wave: Option<String>,
    /// The projected start (null: nothing to do, or held by something time alone does not lift;
    /// `held_by` says what).
    pub projected_start: Option<Timestamp>,
    /// What holds a target without a projected start, as the plan says it at the last instant
    /// the projection reached.
    pub held_by: Vec<Blocker>,
    /// Why it can never start as declared (it is never projected).
    pub violations: Vec<String>,
}

/// A rollout's progress and expected completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutSchedule {
    pub component: String,
    pub version: Version,
    pub policy: Option<String>,
    /// Targets recorded succeeded in it now.
    pub done: usize,
    /// Targets it holds.
    pub total: usize,
    pub waves: Vec<WaveSchedule>,
    /// When its last target is projected to start (and, attempts taking no time, to finish).
    /// Null while any of its targets has no projected start.
    pub expected_completion: Option<Timestamp>,
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaveSchedule {
    pub name: String,
    pub targets: usize,
    /// Its targets recorded succeeded now (`done == targets`: the wave is complete).
    pub done: usize,
    /// The earliest projected start of its targets still to start (null: none projected).
    pub projected_start: Option<Timestamp>,
    /// When its last target still to start is projected to start (null: one is not projected,
    /// or none is left).
    pub projected_completion: Option<Timestamp>,
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub now: Timestamp,
    /// The projection looks no further than this.
    pub horizon: Timestamp,
    pub targets: Vec<TargetSchedule>,
    pub rollouts: Vec<RolloutSchedule>,
}

impl Schedule {
    /// Keeps only the `selected` targets and the rollouts they are in. The projection itself
    /// covered the whole fleet (waves count every target).
    pub fn retain_targets(&mut self, selected: &BTreeSet<String>) {
        self.targets.retain(|t| selected.contains(&t.target));
        let kept: BTreeSet<(&str, &Version, Option<&str>)> = self
            .targets
            .iter()
            .filter_map(|t| Some((t.component.as_str(), t.to.as_ref()?, t.policy.as_deref())))
            .collect();
        let keep: Vec<bool> = self
            .rollouts
            .iter()
            .map(|r| kept.contains(&(r.component.as_str(), &r.version, r.policy.as_deref())))
            .collect();
        let mut keep = keep.into_iter();
        self.rollouts.retain(|_| keep.next().unwrap_or(false));
    }
}

/// Projects the schedule of every target and rollout from `input` (see the module docs).
///
/// # Guarantees
/// Pure and deterministic; the first round is exactly `plan(input)` (except that a wave whose
/// soak is over counts its running health analysis as passed), so a target ready now is
/// projected at `input.now`.
pub fn schedule(input: &PlanInput) -> Schedule {
    let horizon = input
        .now
        .checked_add(SignedDuration::from_hours(24 * HORIZON_DAYS))
        .unwrap_or(Timestamp::MAX);
    let mut recorded = input.recorded.clone();
    assume_analyses_pass(&mut recorded);
    let first = super::plan(&PlanInput {
        recorded: &recorded,
        ..*input
    });
    let mut starts: BTreeMap<String, Timestamp> = BTreeMap::new();
    let mut held: BTreeMap<String, Vec<Blocker>> = BTreeMap::new();
    let mut now = input.now;
    let mut plan = first.clone();
    let mut rounds = 0;
    for _ in 0..MAX_ROUNDS {
        rounds += 1;
        let ready: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| a.status == Status::Ready && !starts.contains_key(&a.target))
            .collect();
        let members = wave_members(&plan.actions, &recorded);
        for action in &ready {
            starts.insert(action.target.clone(), now);
            held.remove(&action.target);
            record_success(&mut recorded, input, action, &members, now);
        }
        for action in plan.actions.iter().filter(|a| a.status == Status::Blocked) {
            if !starts.contains_key(&action.target) {
                held.insert(action.target.clone(), action.blocked_by.clone());
            }
        }
        if ready.is_empty() {
            match next_instant(&plan, &starts, now) {
                Some(next) if next <= horizon => now = next,
                _ => break,
            }
        }
        plan = super::plan(&PlanInput {
            recorded: &recorded,
            now,
            ..*input
        });
    }

    tracing::debug!(rounds, until = %now, "schedule projected");
    let targets: Vec<TargetSchedule> = first
        .actions
        .iter()
        .map(|a| TargetSchedule {
            target: a.target.clone(),
            component: a.component.clone(),
            action: a.action,
            from: a.from.clone(),
            to: a.to.clone(),
            policy: a.policy.clone(),
            wave: a.wave.clone(),
            projected_start: starts.get(&a.target).copied(),
            held_by: if a.action == ActionKind::Noop || starts.contains_key(&a.target) {
                Vec::new()
            } else {
                held.get(&a.target).cloned().unwrap_or_default()
            },
            violations: a.violations.clone(),
        })
        .collect();
    let start_of: BTreeMap<&str, Option<Timestamp>> =
        targets.iter().map(|t| (t.target.as_str(), t.projected_start)).collect();
    let rollouts = first
        .rollouts
        .iter()
        .map(|r| {
            let record = input.recorded.rollouts.get(&(r.component.clone(), r.version.clone()));
            let succeeded = |t: &str| {
                record
                    .and_then(|rec| rec.targets.get(t))
                    .is_some_and(|e| e.status == RolloutTargetStatus::Succeeded)
            };
            let waves: Vec<WaveSchedule> = r
                .waves
                .iter()
                .map(|w| {
                    let pending: Vec<Option<Timestamp>> = w
                        .targets
                        .iter()
                        .filter(|t| !succeeded(t))
                        .map(|t| start_of.get(t.as_str()).copied().flatten())
                        .collect();
                    WaveSchedule {
                        name: w.name.clone(),
                        targets: w.targets.len(),
                        done: w.targets.len() - pending.len(),
                        projected_start: pending.iter().flatten().min().copied(),
                        projected_completion: if !pending.is_empty() && pending.iter().all(Option::is_some) {
                            pending.iter().flatten().max().copied()
                        } else {
                            None
                        },
                    }
                })
                .collect();
            let all: Vec<&String> = r.waves.iter().flat_map(|w| &w.targets).collect();
            let pending: Vec<Option<Timestamp>> = all
                .iter()
                .filter(|t| !succeeded(t))
                .map(|t| start_of.get(t.as_str()).copied().flatten())
                .collect();
            RolloutSchedule {
                component: r.component.clone(),
                version: r.version.clone(),
                policy: r.policy.clone(),
                done: all.iter().filter(|t| succeeded(t)).count(),
                total: all.len(),
                expected_completion: if pending.iter().all(Option::is_some) {
                    pending.iter().flatten().max().copied()
                } else {
                    None
                },
                waves,
            }
        })
        .collect();
    Schedule {
        now: input.now,
        horizon,
        targets,
        rollouts,
    }
}

/// A wave's running analysis counts as passed: the projection assumes healthy waves (their
/// soak still holds until it ends).
fn assume_analyses_pass(recorded: &mut RecordedState) {
    for rollout in recorded.rollouts.values_mut() {
        for wave in &mut rollout.waves {
            if let Some(analysis) = &mut wave.analysis
                && analysis.status == AnalysisStatus::Running
            {
                analysis.status = AnalysisStatus::Passed;
            }
        }
    }
}

/// The members of every (component, version, wave), as `apply` counts them for a wave's
/// completion: the plan's actions in it and the targets its rollout record holds.
fn wave_members(actions: &[Action], recorded: &RecordedState) -> BTreeMap<(String, Version, String), BTreeSet<String>> {
    let mut members: BTreeMap<(String, Version, String), BTreeSet<String>> = BTreeMap::new();
    for a in actions {
        if let (Some(wave), Some(to)) = (&a.wave, &a.to)
            // As `reconcile::apply::wave_members` counts them (a downgrade's wave counts only
            // the targets its rollout record holds).
            && matches!(a.action, ActionKind::Install | ActionKind::Upgrade)
        {
            members
                .entry((a.component.clone(), to.clone(), wave.clone()))
                .or_default()
                .insert(a.target.clone());
        }
    }
    for ((component, version), rollout) in &recorded.rollouts {
        for (target, entry) in &rollout.targets {
            members
                .entry((component.clone(), version.clone(), entry.wave.clone()))
                .or_default()
                .insert(target.clone());
        }
    }
    members
}

/// Records `action` as having started and succeeded at `now`, as `apply` would record it.
fn record_success(
    recorded: &mut RecordedState,
    input: &PlanInput,
    action: &Action,
    members: &BTreeMap<(String, Version, String), BTreeSet<String>>,
    now: Timestamp,
) {
    if action.action == ActionKind::Remove {
        if let Some(record) = recorded.targets.get_mut(&action.target) {
            record.status = TargetStatus::Removed;
        }
        return;
    }
    let (Some(target), Some(to)) = (input.desired.targets.get(&action.target), action.to.clone()) else {
        return;
    };
    let before = recorded.targets.get(&action.target);
    let record = TargetRecord {
        component: action.component.clone(),
        version: Some(to.clone()),
        config_hash: Some(target.config_hash.clone()),
        config: Some(target.spec().config.clone().into()),
        applied_migrations: before.map(|r| r.applied_migrations.clone()).unwrap_or_default(),
        status: TargetStatus::Converged,
        last_attempt: Some(AttemptRecord {
            id: format!("schedule-{}", action.target),
            desired_commit: String::new(),
            from: action.from.clone(),
            to: to.clone(),
            action: action.action.as_str().to_string(),
            started: now.to_string(),
            finished: Some(now.to_string()),
            outcome: Some(Outcome::Succeeded),
            message: String::new(),
            config_hash: Some(target.config_hash.clone()),
            output_tail: String::new(),
            spec_hash: Some(target.spec_hash()),
            approvers: Vec::new(),
            emergency: None,
        }),
        rollback_points: before.map(|r| r.rollback_points.clone()).unwrap_or_default(),
        observed_version: None,
    };
    recorded.targets.insert(action.target.clone(), record);
    let Some(wave) = &action.wave else { return };
    let key = (action.component.clone(), to.clone());
    let rollout = recorded.rollouts.entry(key).or_insert_with(|| RolloutRecord {
        component: action.component.clone(),
        version: to.clone(),
        started: now.to_string(),
        waves: Vec::new(),
        targets: BTreeMap::new(),
        failures: 0,
        halted: None,
    });
    rollout.targets.insert(
        action.target.clone(),
        RolloutTarget {
            wave: wave.clone(),
            status: RolloutTargetStatus::Succeeded,
            started: now.to_string(),
            finished: Some(now.to_string()),
        },
    );
    if !rollout.waves.iter().any(|w| &w.name == wave) {
        rollout.waves.push(WaveRecord {
            name: wave.clone(),
            started: Some(now.to_string()),
            completed: None,
            analysis: None,
        });
    }
    let complete = members
        .get(&(action.component.clone(), to, wave.clone()))
        .into_iter()
        .flatten()
        .chain(std::iter::once(&action.target))
        .all(|t| {
            rollout
                .targets
                .get(t)
                .is_some_and(|e| e.status == RolloutTargetStatus::Succeeded)
        });
    if complete
        && let Some(w) = rollout
            .waves
            .iter_mut()
            .find(|w| &w.name == wave && w.completed.is_none())
    {
        w.completed = Some(now.to_string());
        // The projection assumes the wave's health analysis passes (its soak still holds).
        w.analysis = Some(WaveAnalysis {
            status: AnalysisStatus::Passed,
            rounds: 0,
            last_round: None,
            targets: BTreeMap::new(),
            peers: BTreeMap::new(),
        });
    }
}

/// The next instant after `now` at which something that holds a target not yet started lifts:
/// the earliest time-bound blocker of an action held only by time-bound blockers (a window, a
/// release's age, a soak), or a wave's soak ending. A blocker that waits for other targets (a
/// wave or stage still running, a dependency) changes only when a target starts, and the
/// projection plans again at every instant a target starts; one that time never lifts (an
/// approval, a halt, a suspension) holds its action for good. `None` when nothing is left that
/// time can lift.
fn next_instant(plan: &super::Plan, starts: &BTreeMap<String, Timestamp>, now: Timestamp) -> Option<Timestamp> {
    let blockers = plan
        .actions
        .iter()
        .filter(|a| a.status == Status::Blocked && !starts.contains_key(&a.target))
        .filter(|a| a.blocked_by.iter().all(|b| b.lifts_at().is_some()))
        .flat_map(|a| &a.blocked_by)
        .filter_map(Blocker::lifts_at);
    let soaks = plan.rollouts.iter().flat_map(|r| &r.waves).filter_map(|w| w.soak_until);
    blockers.chain(soaks).filter(|at| *at > now).min()
}
