//! The planner: a pure function of (desired, recorded, evidence, now) → [`Plan`].
//!
//! No clock reads, no files, no processes. Everything time-dependent takes `now`; everything
//! read from git (approvals from commit trailers) arrives pre-computed in [`Evidence`].

mod deps;
mod fleet;
mod gates;
mod model;
mod parallel;
pub mod path;
mod requires;
mod resolve;
mod rollouts;
pub mod schedule;
pub mod timeline;

use foldhash::HashMap;
use std::sync::Arc;

use crate::manifest::Version;

use crate::manifest::{Diagnostic, Release, Severity, Target};
use crate::policy::approvals::ApprovalIndex;
use crate::policy::gates::WindowGate;
use crate::policy::{self, Governing};
use crate::state::{RecordedConfig, TargetRecord, TargetStatus};

pub use model::{
    Action, ActionKind, ApprovalState, Blocker, BlockerKind, ConfigChange, Evidence, Plan, PlanInput, PlanIssue,
    ReleaseNote, Rollout, RolloutWave, Status, Summary,
};
pub use path::{Direction, PlannedMigration};

use deps::{apply_dependency_blockers, gate_dependencies};
use gates::gates;
pub use requires::pinned_requirement_conflicts;
pub use resolve::{ReleaseChoice, release_choices, resolve_pin};
use resolve::{Resolved, channel_allowed, denied_by, resolve};
use rollouts::{apply_wave_blockers, plan_rollouts};

/// What the per-target pass shares: caches that keep the planner linear in the fleet's size.
struct Shared<'a> {
    windows: WindowGate<'a>,
    approvals: ApprovalIndex<'a>,
    /// Each release's note, made once and shared by every action crossing it (issue #17): per
    /// component, by the address and length of its releases in the input (which outlives the
    /// pass), one slot per release, so an action finds its notes with one lookup.
    notes: HashMap<(usize, usize), Vec<Option<Arc<ReleaseNote>>>>,
    /// Each distinct install or upgrade path, made once (issue #17): a fleet moves between a
    /// few versions, so 10,000 targets share a few hundred paths.
    paths: HashMap<PathKey<'a>, Arc<UpPath>>,
    /// Each approval rule's eligible addresses, by the address and length of its `approvers`
    /// list in the input (which outlives the pass, so no other list can take its address).
    eligible: HashMap<(usize, usize), Arc<[String]>>,
    /// The shortfall text of a rule nobody approved yet, by its eligible list (by address: the
    /// list is one of [`Self::eligible`]'s, kept for the pass) and the approvals it requires.
    unapproved: HashMap<(usize, u32), Arc<str>>,
}

/// What an install or upgrade path is computed from, all of it borrowed from the input: the
/// component's releases, the version moved from (none: an install), the release moved to (by
/// address: one of those releases), the target's channels, and the governing policy (its deny
/// list; by address, 0 for the built-in one and for an install, which no deny list shapes).
#[derive(PartialEq, Eq, Hash)]
struct PathKey<'a> {
    releases: (usize, usize),
    from: Option<&'a Version>,
    to: usize,
    channels: &'a [String],
    policy: usize,
}

/// An install or upgrade path: what [`plan_target`] puts in the action for it.
struct UpPath {
    /// The releases deployed in turn (the last is the one moved to), or why there is no path.
    stops: Result<Vec<Version>, path::NoPath>,
    /// The `up` migrations in run order (none without a path).
    migrations: Arc<[PlannedMigration]>,
    /// The notes of the releases crossed (see [`Action::releases`]).
    notes: Arc<[Arc<ReleaseNote>]>,
}

impl<'a> Shared<'a> {
    /// The notes of the `releases` (one component's) that `crossed` accepts, in their order.
    fn notes(&mut self, releases: &[Release], crossed: impl Fn(&Release) -> bool) -> Arc<[Arc<ReleaseNote>]> {
        let key = (releases.as_ptr() as usize, releases.len());
        let slots = self.notes.entry(key).or_insert_with(|| vec![None; releases.len()]);
        releases
            .iter()
            .zip(slots.iter_mut())
            .filter(|(release, _)| crossed(release))
            .map(|(release, slot)| Arc::clone(slot.get_or_insert_with(|| Arc::new(ReleaseNote::of(release)))))
            .collect()
    }

    /// The eligible addresses of a rule listing `approvers`
    /// ([`crate::policy::approvals::eligible_addresses`]), made once per list.
    fn eligible(&mut self, approvers: &'a [String]) -> &Arc<[String]> {
        self.eligible
            .entry((approvers.as_ptr() as usize, approvers.len()))
            .or_insert_with(|| crate::policy::approvals::eligible_addresses(approvers))
    }

    /// [`Tally::shortfall`] of `tally`, which no one approved yet, made once per rule.
    fn unapproved(&mut self, tally: &crate::policy::approvals::Tally) -> Arc<str> {
        debug_assert!(tally.have.is_empty() && tally.missing > 0);
        let key = (tally.eligible.as_ptr() as usize, tally.required);
        let text = self
            .unapproved
            .entry(key)
            .or_insert_with(|| tally.shortfall().unwrap_or_default().into());
        debug_assert_eq!(Some(&**text), tally.shortfall().as_deref());
        Arc::clone(text)
    }

    /// The path that installs `to` on `target` (`from` none) or upgrades it from `from`, among
    /// its component's `releases`, under `governing`: computed on first use, then shared.
    fn up_path(
        &mut self,
        releases: &'a [Release],
        from: Option<&'a Version>,
        to: &'a Release,
        target: &'a Target,
        governing: Governing<'a>,
    ) -> Arc<UpPath> {
        let key = PathKey {
            releases: (releases.as_ptr() as usize, releases.len()),
            from,
            to: std::ptr::from_ref(to) as usize,
            channels: &target.spec().channels,
            policy: match (from, governing.policy()) {
                (Some(_), Some(policy)) => std::ptr::from_ref(policy) as usize,
                _ => 0,
            },
        };
        if let Some(known) = self.paths.get(&key) {
            return Arc::clone(known);
        }
        let migrates = |r: &Release| channel_allowed(target, r);
        let path = match from {
            None => UpPath {
                stops: Ok(vec![to.version.clone()]),
                migrations: path::up_migrations(releases, None, &[to], migrates).into(),
                notes: self.notes(releases, |r| std::ptr::eq(r, to)),
            },
            Some(current) => {
                let deployable = |r: &Release| {
                    !r.spec().yanked && channel_allowed(target, r) && denied_by(governing, &r.version).is_none()
                };
                let (stops, migrations) = match path::upgrade_stops(releases, current, &to.version, deployable) {
                    Ok(stops) => (
                        Ok(stops.iter().map(|s| s.version.clone()).collect()),
                        path::up_migrations(releases, Some(current), &stops, migrates).into(),
                    ),
                    Err(no_path) => (Err(no_path), Arc::from([])),
                };
                UpPath {
                    stops,
                    migrations,
                    notes: self.notes(releases, |r| {
                        &r.version > current && r.version <= to.version && migrates(r)
                    }),
                }
            }
        };
        let path = Arc::new(path);
        self.paths.insert(key, Arc::clone(&path));
        path
    }
}

/// Plans every desired and recorded target.
///
/// # Guarantees
/// Pure and deterministic: the same input gives the same plan, actions sorted by target name.
pub fn plan(input: &PlanInput) -> Plan {
    let _stage = tracing::debug_span!("plan").entered();
    let fleet = fleet::Fleet::of(input);
    let threads = parallel::threads_for(fleet.targets().len());
    let mut actions = parallel::plan_targets(input, &fleet, threads);
    // Waves and dependencies look across targets, so they run once every action is known. Both
    // only read the actions (neither reads what the other adds), so on a fleet large enough for
    // two threads they run side by side; their blockers are then pushed in one thread's order.
    let ((rollouts, wave_blockers), dependency_blockers) = if threads > 1 {
        std::thread::scope(|scope| {
            let dependencies = scope.spawn(|| gate_dependencies(input, &fleet, &actions));
            let rollouts = plan_rollouts(input, &fleet, &actions);
            match dependencies.join() {
                Ok(blockers) => (rollouts, blockers),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    } else {
        (
            plan_rollouts(input, &fleet, &actions),
            gate_dependencies(input, &fleet, &actions),
        )
    };
    apply_wave_blockers(&mut actions, wave_blockers);
    apply_dependency_blockers(&mut actions, dependency_blockers);
    requires::gate_requirements(input, &mut actions);
    for action in &mut actions {
        if action.status == Status::Ready && !action.blocked_by.is_empty() {
            action.status = Status::Blocked;
        }
    }
    for (name, record) in fleet.recorded_only() {
        if record.status != TargetStatus::Removed {
            actions.push(plan_removal(name, record));
        }
    }
    actions.sort_by(|a, b| a.target.cmp(&b.target));
    let mut plan = Plan {
        head: None,
        base: None,
        now: input.now.to_string(),
        actions,
        violations: Vec::new(),
        warnings: Vec::new(),
        summary: Summary::default(),
        rollouts,
    };
    plan.summarize();
    plan
}

/// Adds load diagnostics to a plan (violations and warnings) and recounts.
pub fn attach_diagnostics(plan: &mut Plan, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        match d.severity {
            Severity::Warning => plan.warnings.push(d.into()),
            Severity::Invalid | Severity::Violation => plan.violations.push(d.into()),
        }
    }
    plan.summarize();
}

fn plan_removal(name: &str, record: &TargetRecord) -> Action {
    Action {
        target: name.to_string(),
        component: record.component.clone(),
        action: ActionKind::Remove,
        from: record.version.clone(),
        to: None,
        stops: Vec::new(),
        migrations: Arc::from([]),
        wave: None,
        status: Status::Ready,
        blocked_by: Vec::new(),
        config_diff: Vec::new(),
        policy: None,
        approvals: None,
        update_type: None,
        urgency: None,
        reason: None,
        breaking: false,
        releases: Arc::from([]),
        violations: Vec::new(),
        warnings: Vec::new(),
    }
}

fn empty_action(target: &Target, from: Option<&Version>) -> Action {
    Action {
        target: target.name().to_string(),
        component: target.spec().component.clone(),
        action: ActionKind::Noop,
        from: from.cloned(),
        to: None,
        stops: Vec::new(),
        migrations: Arc::from([]),
        wave: None,
        status: Status::Noop,
        blocked_by: Vec::new(),
        config_diff: Vec::new(),
        policy: None,
        approvals: None,
        update_type: None,
        urgency: None,
        reason: None,
        breaking: false,
        releases: Arc::from([]),
        violations: Vec::new(),
        warnings: Vec::new(),
    }
}

fn config_diff(record: Option<&TargetRecord>, target: &Target) -> Vec<ConfigChange> {
    // The same config recorded: nothing differs, without sorting and comparing key by key
    // (issue #17: 10,000 configs on every pass). Compared, not trusted by the record's
    // `config_hash`: the state branch is a branch anyone with push access can edit. A record
    // found equal before answers by the hash of its own values (`RecordedConfig::known_equal`).
    if let Some(recorded) = record.and_then(|r| r.config.as_ref())
        && recorded.known_equal(&target.spec().config, &target.config_hash)
    {
        return Vec::new();
    }
    let empty = serde_json::Map::new();
    let old = record
        .and_then(|r| r.config.as_ref())
        .map_or(&empty, RecordedConfig::values);
    let new = &target.spec().config;
    // Every key of either, sorted and once: a sorted vector, not a set of one node per key.
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| ConfigChange {
            key: k.clone(),
            from: old.get(k).cloned(),
            to: new.get(k).cloned(),
        })
        .collect()
}

/// Plans one target; `record` is the state branch's record of it (see [`fleet::Fleet::records`]).
fn plan_target<'a>(
    input: &'a PlanInput,
    shared: &mut Shared<'a>,
    target: &'a Target,
    record: Option<&'a TargetRecord>,
) -> Action {
    let record = record.filter(|r| r.status != TargetStatus::Removed);
    let current = record.and_then(|r| r.version.as_ref());
    let mut action = empty_action(target, current);
    let governing = match policy::select_policy(input.desired, target) {
        Ok(g) => g,
        Err(tie) => {
            action.violations.push(tie.to_string());
            action.status = Status::Violation;
            return action;
        }
    };
    action.policy = governing.name().map(str::to_string);
    if let Some(record) = record
        && record.component != target.spec().component
    {
        action.violations.push(format!(
            "target was recorded for component `{}` and now names `{}`; a target runs one component: create a new target instead",
            record.component,
            target.spec().component
        ));
        action.status = Status::Violation;
        return action;
    }

    let mut warnings = Vec::new();
    let release = match resolve(input, target, governing, current, &mut warnings) {
        Resolved::Release(r) => r,
        Resolved::Violation(message) => {
            action.violations.push(message);
            action.warnings = warnings;
            action.status = Status::Violation;
            return action;
        }
    };
    action.warnings = warnings;
    let to = &release.version;
    action.to = Some(to.clone());
    if release.spec().urgency == crate::manifest::Urgency::Emergency {
        action.urgency = Some(release.spec().urgency);
        action.reason = release.spec().reason.clone();
    }
    if let Some(note) = &release.spec().deprecated {
        action
            .warnings
            .push(format!("{} {} is deprecated: {note}", target.spec().component, to));
    }
    action.config_diff = config_diff(record, target);
    let component = &target.spec().component;
    let releases: &[Release] = input.desired.releases.get(component).map_or(&[], Vec::as_slice);
    let migrates = |r: &Release| channel_allowed(target, r);

    match current {
        Some(current) if current > to => {
            action.action = ActionKind::Downgrade;
            // The revert exemption covers only versions this target ran before (issue #18,
            // attack 6); any other lower version follows the rules of an upgrade of that size.
            if !record.is_some_and(|r| r.rollback_points.contains(to)) {
                action.update_type = Some(policy::update_type(Some(current), to));
                action.warnings.push(format!(
                    "{to} never ran on this target (not a rollback point): this downgrade follows the {} update rules (approvals, waves, windows, release age)",
                    policy::update_type(Some(current), to).as_str()
                ));
            }
            action.stops = vec![to.clone()];
            let applied = record.map_or(&[][..], |r| r.applied_migrations.as_slice());
            action.migrations = path::down_migrations(applied, current, to).into();
            let has_restore = input
                .desired
                .components
                .get(component)
                .is_some_and(|c| c.spec.steps.restore.is_some());
            for m in action.migrations.iter().filter(|m| m.direction == Direction::Restore) {
                if has_restore {
                    action.warnings.push(format!("migration {} of {} has no down: it is undone by `restore` from the snapshot taken before it ran", m.id, m.release));
                } else {
                    action.violations.push(format!(
                        "cannot downgrade from {current} to {to}: migration `{}` of {} is irreversible (no `down`); add a `down` to it, give component `{component}` a `restore` step, or pin a version ≥ {}",
                        m.id, m.release, m.release
                    ));
                }
            }
        }
        Some(current) if current == to => {
            let changed = record.is_none_or(|r| r.config_hash.as_deref() != Some(target.config_hash.as_str()));
            if changed {
                action.action = ActionKind::Config;
                let has_reload = input
                    .desired
                    .components
                    .get(component)
                    .is_some_and(|c| c.spec.steps.reload.is_some());
                if !has_reload {
                    action.warnings.push(format!(
                        "component `{component}` has no `reload` step: the config change is applied by redeploying {to}"
                    ));
                }
            } else if record.is_some_and(|r| r.status == TargetStatus::Drifted)
                && governing.spec().on_drift == crate::manifest::OnDrift::Reconcile
            {
                // Drifted, and the policy says to put it back: redeploy the recorded version.
                action.action = ActionKind::Upgrade;
                action.stops = vec![to.clone()];
                action.warnings.push(format!(
                    "drifted: observe saw {}; onDrift: reconcile redeploys {to}",
                    record.and_then(|r| r.observed_version.as_deref()).unwrap_or("nothing")
                ));
            } else {
                action.action = ActionKind::Noop;
            }
        }
        // An install (nothing recorded) or an upgrade.
        _ => {
            action.action = if current.is_none() {
                ActionKind::Install
            } else {
                ActionKind::Upgrade
            };
            let path = shared.up_path(releases, current, release, target, governing);
            match &path.stops {
                Ok(stops) => {
                    action.stops.clone_from(stops);
                    action.migrations = Arc::clone(&path.migrations);
                }
                Err(no_path) => action.violations.push(no_path.0.clone()),
            }
            action.releases = Arc::clone(&path.notes);
        }
    }
    action.update_type = match action.action {
        ActionKind::Install | ActionKind::Upgrade => Some(resolve::update_type_of(releases, current, release)),
        // Set above for a downgrade to a version that never ran here.
        ActionKind::Downgrade => action.update_type,
        _ => None,
    };
    // An install's and an upgrade's notes came with their path.
    if let (ActionKind::Downgrade, Some(current)) = (action.action, current) {
        action.releases = shared.notes(releases, |r| &r.version > to && &r.version <= current && migrates(r));
    }
    // A fresh install breaks no caller of an older version, and a downgrade's notes are of
    // releases being taken away: only an upgrade is breaking.
    action.breaking = action.action == ActionKind::Upgrade && action.releases.iter().any(|r| r.breaking);

    if !action.violations.is_empty() {
        action.status = Status::Violation;
        return action;
    }
    if action.action == ActionKind::Noop {
        if let Some(r) = record
            && r.status == TargetStatus::InProgress
        {
            action.blocked_by.push(in_progress_blocker(r));
            action.status = Status::Blocked;
        }
        return action;
    }
    gates(input, shared, target, governing, record, release, &mut action);
    action.status = if !action.violations.is_empty() {
        Status::Violation
    } else if action.blocked_by.is_empty() {
        Status::Ready
    } else {
        Status::Blocked
    };
    action
}

fn in_progress_blocker(record: &TargetRecord) -> Blocker {
    let attempt = record.last_attempt.as_ref();
    Blocker::new(
        BlockerKind::InProgress,
        match attempt {
            Some(a) => format!(
                "attempt {} ({} → {}) did not finish; the next apply resumes or rolls it back",
                a.id,
                a.from.as_ref().map_or_else(|| "none".to_string(), Version::to_string),
                a.to
            ),
            None => "an attempt did not finish; the next apply resumes or rolls it back".to_string(),
        },
    )
}

#[cfg(test)]
mod tests;
