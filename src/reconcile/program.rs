//! Attempt programs: the exact list of steps an action runs, fixed before the first one starts.
//!
//! A program is journaled with its attempt, so a reconciler killed midway resumes exactly the
//! steps it planned (from the same desired commit), not a re-plan against newer manifests.

use crate::manifest::Version;
use serde::{Deserialize, Serialize};

use crate::executor::StepKind;
use crate::manifest::{ComponentSpec, Desired, Phase, Target};
use crate::plan::{Action, ActionKind};
use crate::state::{AppliedMigration, TargetRecord};

/// What a completed step changed on the target, replayed to know where an attempt stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Nothing recorded changes (health, snapshot, reload, observe).
    None,
    /// The target now runs this version.
    Deployed { version: Version },
    /// A migration's `up` ran.
    MigrationApplied { migration: AppliedMigration },
    /// A migration's `down` ran (or a restore undid it).
    MigrationUndone { release: Version, id: String },
    /// A snapshot exists for this attempt: `restore` can return to it.
    SnapshotTaken,
    /// The snapshot was restored: every migration applied after it is undone. (Journals of
    /// older gantry versions; new programs write [`Effect::RestoredTo`].)
    Restored { undone: Vec<(Version, String)> },
    /// A snapshot was restored: the applied migrations are exactly those recorded when it was
    /// taken. A restore undoes every migration applied at or after its snapshot, whoever applied
    /// them, so none of them may be undone again (issue #10, bug 1).
    RestoredTo { applied: Vec<AppliedMigration> },
    /// The target was removed.
    Removed,
    /// The new version now gets this share of traffic.
    Shifted { weight: u32 },
    /// The `remove` step undid an install: nothing runs on the target any more (the record stays).
    Undeployed,
    /// `quiesce` stopped the target's workflows: until a `resume` completes, they stay stopped.
    Quiesced,
    /// `resume` started the workflows again.
    Resumed,
}

/// A step's version as the journal has always written it: its text, or `""` for none.
mod version_text {
    use crate::manifest::Version;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(version: &Option<Version>, s: S) -> Result<S::Ok, S::Error> {
        match version {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Version>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        Version::parse(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// One step of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Unique within the attempt, ordered: `03-deploy-1.2.0`.
    pub id: String,
    pub kind: StepKind,
    /// The argv templates (rendered by the executor).
    pub argv: Vec<String>,
    /// `version` in templates: the stop, or the release a migration belongs to (`None`: no
    /// version, e.g. the snapshot before an install; templates see the empty string).
    #[serde(with = "version_text")]
    pub version: Option<Version>,
    /// The release a migration step belongs to.
    pub release: Option<Version>,
    pub migration: Option<String>,
    /// For `restore`: the attempt whose snapshot to restore (templates see it as `attempt`).
    pub snapshot_of: Option<String>,
    /// For health: run the policy's checks as well as the component's `health` step.
    pub with_policy_checks: bool,
    /// Render with the config recorded before the attempt (undoing a config change).
    #[serde(default)]
    pub previous_config: bool,
    pub effect: Effect,
    /// Why this step runs, when the program does not say it by itself: the first step of an
    /// analysis rollback carries the analysis failure (it becomes the attempt's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `shift`: the traffic weight it sets (templates see it as `weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// For a health step holding a traffic weight: how long the checks must keep passing
    /// (milliseconds; instead of the policy's `health.soak`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
}

impl PlannedStep {
    fn new(
        index: usize,
        kind: StepKind,
        label: &str,
        argv: Vec<String>,
        version: Option<&Version>,
        effect: Effect,
    ) -> PlannedStep {
        PlannedStep {
            id: format!("{index:02}-{}-{label}", kind.as_str()),
            kind,
            argv,
            version: version.cloned(),
            release: None,
            migration: None,
            snapshot_of: None,
            with_policy_checks: false,
            previous_config: false,
            effect,
            reason: None,
            weight: None,
            hold_ms: None,
        }
    }
}

/// Why a program cannot be built (the planner should have caught these; they guard drift).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProgramError {
    #[error("component `{0}` is not in the desired state")]
    UnknownComponent(String),
    #[error("release {1} of `{0}` is not in the desired state")]
    UnknownRelease(String, String),
    #[error("migration `{id}` of {release} was recorded without a `down` and component has no `restore` step")]
    Irreversible { release: String, id: String },
    #[error("component `{0}` has no `deploy` step")]
    NoDeploy(String),
    /// The attempt undid migrations (a downgrade) and took no snapshot to return to.
    #[error("the attempt undid migrations and there is no snapshot of this attempt to restore them from")]
    NoSnapshot,
    /// An install cannot be undone without the component's `remove` step.
    #[error("component `{0}` has no `remove` step to undo an install; the installed version stays")]
    NoUndeploy(String),
}

struct Builder<'a> {
    steps: Vec<PlannedStep>,
    component: &'a ComponentSpec,
    component_name: &'a str,
    /// Whether the target's policy declares health checks.
    policy_checks: bool,
}

impl<'a> Builder<'a> {
    fn new(desired: &'a Desired, component_name: &'a str, policy_checks: bool) -> Result<Builder<'a>, ProgramError> {
        let component = &desired
            .components
            .get(component_name)
            .ok_or_else(|| ProgramError::UnknownComponent(component_name.to_string()))?
            .spec;
        Ok(Builder {
            steps: Vec::new(),
            component,
            component_name,
            policy_checks,
        })
    }

    fn push(
        &mut self,
        kind: StepKind,
        label: &str,
        argv: Vec<String>,
        version: Option<&Version>,
        effect: Effect,
    ) -> &mut PlannedStep {
        let index = self.steps.len() + 1;
        self.steps
            .push(PlannedStep::new(index, kind, label, argv, version, effect));
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    fn deploy(&mut self, version: &Version) -> Result<(), ProgramError> {
        let argv = self
            .component
            .steps
            .deploy
            .clone()
            .ok_or_else(|| ProgramError::NoDeploy(self.component_name.to_string()))?;
        self.push(
            StepKind::Deploy,
            &version.to_string(),
            argv,
            Some(version),
            Effect::Deployed {
                version: version.clone(),
            },
        );
        self.health(version);
        Ok(())
    }

    /// A health step, when there is something to check (the component's `health` step or the
    /// policy's checks); an empty probe would only cost a journal entry.
    fn health(&mut self, version: &Version) {
        if self.component.steps.health.is_none() && !self.policy_checks {
            return;
        }
        let argv = self.component.steps.health.clone().unwrap_or_default();
        self.push(
            StepKind::Health,
            &version.to_string(),
            argv,
            Some(version),
            Effect::None,
        )
        .with_policy_checks = true;
    }

    /// Traffic steps after the final deploy: per weight, a `shift` then a health step held for
    /// `hold` (SPEC §8, traffic). Nothing without a `shift` step.
    fn traffic(&mut self, version: &Version, weights: &[u32], hold: std::time::Duration) {
        let Some(argv) = self.component.steps.shift.clone() else {
            return;
        };
        for &weight in weights {
            let step = self.push(
                StepKind::Shift,
                &weight.to_string(),
                argv.clone(),
                Some(version),
                Effect::Shifted { weight },
            );
            step.weight = Some(weight);
            let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
            let argv = self.component.steps.health.clone().unwrap_or_default();
            let step = self.push(
                StepKind::Health,
                &format!("{version}-at-{weight}"),
                argv,
                Some(version),
                Effect::None,
            );
            step.with_policy_checks = true;
            step.hold_ms = Some(hold_ms);
        }
    }

    /// `quiesce`, first step of an attempt (before its snapshot), when the component has one.
    fn quiesce(&mut self, version: Option<&Version>) {
        if let Some(argv) = self.component.steps.quiesce.clone() {
            let label = version.map_or_else(|| "none".to_string(), Version::to_string);
            self.push(StepKind::Quiesce, &label, argv, version, Effect::Quiesced);
        }
    }

    /// `resume`, last step of an attempt that quiesced and of its rollback (`version`: what the
    /// target runs when its workflows start again).
    fn resume(&mut self, version: Option<&Version>) {
        if let Some(argv) = self.component.steps.resume.clone() {
            let label = version.map_or_else(|| "none".to_string(), Version::to_string);
            self.push(StepKind::Resume, &label, argv, version, Effect::Resumed);
        }
    }

    /// Shifts all traffic back to the old version, first thing of a rollback.
    fn shift_back(&mut self, version: Option<&Version>) {
        if let Some(argv) = self.component.steps.shift.clone() {
            let step = self.push(StepKind::Shift, "0", argv, version, Effect::Shifted { weight: 0 });
            step.weight = Some(0);
        }
    }

    /// A snapshot of the target as it is before the attempt (at `version`; `None`: nothing
    /// installed yet).
    fn snapshot(&mut self, version: Option<&Version>) -> bool {
        match self.component.steps.snapshot.clone() {
            Some(argv) => {
                let label = version.map_or_else(String::new, Version::to_string);
                self.push(StepKind::Snapshot, &label, argv, version, Effect::SnapshotTaken);
                true
            }
            None => false,
        }
    }
}

/// Builds the forward program of an action (SPEC §3): for an upgrade, an optional snapshot, then
/// per stop `pre` migrations → deploy → health → `post` migrations; a downgrade undoes the
/// recorded migrations newest first, then deploys; a config change reloads. An install,
/// upgrade, downgrade or config change of a component with `quiesce` starts with it and ends
/// with `resume`, after the last deploy, health and traffic step (SPEC §8, quiesce).
///
/// # Errors
/// [`ProgramError`] when the desired state no longer has what the action names.
pub fn forward_program(
    desired: &Desired,
    target: &Target,
    record: Option<&TargetRecord>,
    action: &Action,
    attempt: &str,
    policy_checks: bool,
) -> Result<Vec<PlannedStep>, ProgramError> {
    let component_name = target.spec().component.as_str();
    let mut b = Builder::new(desired, component_name, policy_checks)?;
    let component = b.component;
    // The plan is typed: versions arrive as versions, so nothing here parses text back (a parse
    // failure used to be dropped silently, turning an upgrade into an empty program).
    let to = action.to.clone();
    let from = action.from.as_ref();
    let quiesced = to.is_some()
        && matches!(
            action.action,
            ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade | ActionKind::Config
        );
    if quiesced {
        b.quiesce(from);
    }
    match (action.action, to) {
        (ActionKind::Install | ActionKind::Upgrade, Some(_)) => {
            b.snapshot(from);
            for stop in &action.stops {
                for phase in [Phase::Pre, Phase::Post] {
                    if phase == Phase::Post {
                        b.deploy(stop)?;
                    }
                    for planned in action.migrations.iter().filter(|m| &m.stop == stop && m.phase == phase) {
                        let release_version = &planned.release;
                        let release = desired.release(component_name, release_version).ok_or_else(|| {
                            ProgramError::UnknownRelease(component_name.into(), planned.release.to_string())
                        })?;
                        let Some(migration) = release.spec().migrations.iter().find(|m| m.id == planned.id) else {
                            continue;
                        };
                        let applied = AppliedMigration {
                            release: release_version.clone(),
                            id: migration.id.clone(),
                            phase: migration.phase,
                            down: migration.down.clone(),
                            attempt: attempt.to_string(),
                        };
                        let step = b.push(
                            StepKind::MigrateUp,
                            &migration.id,
                            migration.up.clone(),
                            Some(release_version),
                            Effect::MigrationApplied { migration: applied },
                        );
                        step.release = Some(release_version.clone());
                        step.migration = Some(migration.id.clone());
                    }
                }
            }
            // Traffic steps, when the target's policy declares them, after the final stop.
            let traffic = crate::policy::select_policy(desired, target)
                .ok()
                .and_then(|g| g.policy())
                .and_then(|p| Some((p.manifest.spec.traffic.as_ref()?, p.traffic_analysis)));
            if let (Some((traffic, hold)), Some(last)) = (traffic, action.stops.last()) {
                b.traffic(last, &traffic.steps, hold);
            }
        }
        (ActionKind::Downgrade, Some(to)) => {
            b.snapshot(from);
            let applied = record.map_or(&[][..], |r| r.applied_migrations.as_slice());
            let undo: Vec<(Version, String)> = action
                .migrations
                .iter()
                .map(|m| (m.release.clone(), m.id.clone()))
                .collect();
            downgrade_migrations(&mut b, desired, applied, &undo)?;
            b.deploy(&to)?;
        }
        (ActionKind::Config, Some(to)) => match component.steps.reload.clone() {
            Some(argv) => {
                b.push(StepKind::Reload, &to.to_string(), argv, Some(&to), Effect::None);
                b.health(&to);
            }
            None => b.deploy(&to)?,
        },
        (ActionKind::Remove, _) => {
            if let Some(argv) = component.steps.remove.clone() {
                b.push(StepKind::Remove, "target", argv, from, Effect::Removed);
            }
        }
        _ => {}
    }
    if quiesced {
        b.resume(action.to.as_ref());
    }
    Ok(b.steps)
}

/// Undoes the migrations named in `undo`, newest first, from the chronological `applied` list.
///
/// # The model (SPEC §4, "What an attempt changed")
/// A reversible migration is undone by its `down`. An irreversible one is undone by restoring
/// the snapshot of the attempt that applied it, and that restore returns the data to the moment
/// of the snapshot: every migration applied at or after it is gone too, so none of their `down`s
/// runs afterwards (they would fail on tables that are no longer there: issue #10, bug 1).
/// Migrations the restore removed that the downgrade must keep are applied again (`up`), so the
/// target ends with exactly the migrations of the releases it keeps.
fn downgrade_migrations(
    b: &mut Builder,
    desired: &Desired,
    applied: &[AppliedMigration],
    undo: &[(Version, String)],
) -> Result<(), ProgramError> {
    let wanted = |m: &AppliedMigration| undo.iter().any(|(r, i)| *r == m.release && *i == m.id);
    let mut state: Vec<AppliedMigration> = applied.to_vec();
    let mut reapply: Vec<AppliedMigration> = Vec::new();
    while let Some(index) = state.iter().rposition(wanted) {
        let m = state[index].clone();
        if m.down.is_some() {
            undo_migration(b, &m)?;
            state.remove(index);
            continue;
        }
        let argv = b
            .component
            .steps
            .restore
            .clone()
            .ok_or_else(|| ProgramError::Irreversible {
                release: m.release.to_string(),
                id: m.id.clone(),
            })?;
        // The restore returns to the snapshot taken before the first migration of its attempt.
        let first = state.iter().position(|x| x.attempt == m.attempt).unwrap_or(index);
        let kept = state[..first].to_vec();
        let lost: Vec<AppliedMigration> = state[first..].iter().filter(|x| !wanted(x)).cloned().collect();
        // Re-applied ones were applied after the snapshot: they come back after the restore.
        reapply.retain(|r| !lost.iter().any(|l| l.release == r.release && l.id == r.id));
        reapply.splice(0..0, lost);
        let step = b.push(
            StepKind::Restore,
            &m.id,
            argv,
            Some(&m.release),
            Effect::RestoredTo { applied: kept.clone() },
        );
        step.snapshot_of = Some(m.attempt.clone());
        step.migration = Some(m.id.clone());
        state = kept;
    }
    for m in reapply {
        let release = desired
            .release(b.component_name, &m.release)
            .ok_or_else(|| ProgramError::UnknownRelease(b.component_name.to_string(), m.release.to_string()))?;
        let Some(migration) = release.spec().migrations.iter().find(|x| x.id == m.id) else {
            return Err(ProgramError::UnknownRelease(
                b.component_name.to_string(),
                format!("{} (migration `{}`)", m.release, m.id),
            ));
        };
        let label = format!("{}-again", m.id);
        let step = b.push(
            StepKind::MigrateUp,
            &label,
            migration.up.clone(),
            Some(&m.release),
            Effect::MigrationApplied {
                // It keeps the attempt whose snapshot precedes it: restoring that snapshot is still
                // what undoes it (the restore just returned the data to that very snapshot).
                migration: AppliedMigration {
                    down: migration.down.clone(),
                    ..m.clone()
                },
            },
        );
        step.release = Some(m.release.clone());
        step.migration = Some(m.id.clone());
    }
    Ok(())
}

fn undo_migration(b: &mut Builder, recorded: &AppliedMigration) -> Result<(), ProgramError> {
    let release = &recorded.release;
    match &recorded.down {
        Some(down) => {
            let step = b.push(
                StepKind::MigrateDown,
                &recorded.id,
                down.clone(),
                Some(release),
                Effect::MigrationUndone {
                    release: recorded.release.clone(),
                    id: recorded.id.clone(),
                },
            );
            step.release = Some(release.clone());
            step.migration = Some(recorded.id.clone());
        }
        None => {
            let argv = b
                .component
                .steps
                .restore
                .clone()
                .ok_or_else(|| ProgramError::Irreversible {
                    release: release.to_string(),
                    id: recorded.id.clone(),
                })?;
            let step = b.push(
                StepKind::Restore,
                &recorded.id,
                argv,
                Some(release),
                Effect::Restored {
                    undone: vec![(recorded.release.clone(), recorded.id.clone())],
                },
            );
            step.snapshot_of = Some(recorded.attempt.clone());
            step.migration = Some(recorded.id.clone());
        }
    }
    Ok(())
}

/// Where an attempt stands after replaying the effects of its completed steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub version: Option<Version>,
    pub applied: Vec<AppliedMigration>,
    /// The applied migrations when this attempt's snapshot was taken (`None`: no snapshot yet).
    pub at_snapshot: Option<Vec<AppliedMigration>>,
    pub removed: bool,
    /// The traffic weight this attempt last shifted to (`None`: it shifted nothing).
    pub weight: Option<u32>,
    /// This attempt's `quiesce` completed and no `resume` has since: the workflows are stopped.
    pub quiesced: bool,
}

impl Progress {
    /// The state before the attempt.
    pub fn start(record: Option<&TargetRecord>) -> Progress {
        Progress {
            version: record.and_then(|r| r.version.clone()),
            applied: record.map(|r| r.applied_migrations.clone()).unwrap_or_default(),
            at_snapshot: None,
            removed: false,
            weight: None,
            quiesced: false,
        }
    }

    /// Whether the target's workflows may be stopped: a `quiesce` completed and no `resume`
    /// since, or the step that stopped the attempt is a `quiesce` (a failing one may have
    /// stopped some of them, an interrupted one all).
    pub fn may_be_quiesced(&self, stopped: Option<Stopped>) -> bool {
        self.quiesced || stopped.is_some_and(|s| s.step.effect == Effect::Quiesced)
    }

    /// Whether this attempt took a snapshot that `restore` can return to.
    pub fn snapshot_taken(&self) -> bool {
        self.at_snapshot.is_some()
    }

    /// Applies one completed step's effect.
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::None => {}
            Effect::Deployed { version } => self.version = Some(version.clone()),
            // An `up` of a migration already applied changes nothing (migrations are idempotent):
            // it keeps its place, and with it the snapshot that precedes it.
            Effect::MigrationApplied { migration } => {
                if !self
                    .applied
                    .iter()
                    .any(|m| m.release == migration.release && m.id == migration.id)
                {
                    self.applied.push(migration.clone());
                }
            }
            Effect::MigrationUndone { release, id } => self.applied.retain(|m| !(&m.release == release && &m.id == id)),
            Effect::SnapshotTaken => self.at_snapshot = Some(self.applied.clone()),
            Effect::Restored { undone } => self
                .applied
                .retain(|m| !undone.iter().any(|(r, i)| &m.release == r && &m.id == i)),
            Effect::RestoredTo { applied } => self.applied = applied.clone(),
            Effect::Removed => self.removed = true,
            Effect::Shifted { weight } => self.weight = Some(*weight),
            Effect::Undeployed => self.version = None,
            Effect::Quiesced => self.quiesced = true,
            Effect::Resumed => self.quiesced = false,
        }
    }
}

/// The step that stopped an attempt, for its rollback.
#[derive(Debug, Clone, Copy)]
pub struct Stopped<'a> {
    pub step: &'a PlannedStep,
    /// `Interrupted`: the reconciler died during the step, which may have completed, in part or
    /// in full. `Failed`: the step reported failure.
    pub how: StopKind,
}

/// How the step that stopped an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    Failed,
    Interrupted,
}

/// Builds the rollback program of a failed attempt (SPEC §4, "What an attempt changed").
///
/// - Migrations this attempt applied are undone by their `down`s, newest first, unless one of
///   them has no `down`, the step that stopped the attempt is an irreversible `up` (it may have
///   written part of its changes), or the attempt undid migrations (a downgrade): then one
///   `restore` from the attempt's own snapshot returns the data to where the attempt started.
/// - The version is put back by deploying the one the attempt started from (also after a deploy
///   that failed part-way). An install is undone by the component's `remove` step.
/// - When the workflows may be stopped ([`Progress::may_be_quiesced`]: also after a failing
///   `quiesce`), `resume` is the last step, after the target is restored.
/// - A completed attempt (`stopped` is `None`: a wave's analysis failed during its soak) of a
///   component with `quiesce` is undone between a `quiesce` first and a `resume` last.
///
/// # Errors
/// [`ProgramError`] when the attempt cannot be undone (an irreversible change and no snapshot
/// or no `restore` step, an install without `remove`). The attempt then ends `failed`, and its
/// record says exactly what the completed steps left (SPEC §4).
#[allow(clippy::too_many_arguments)]
pub fn rollback_program(
    desired: &Desired,
    component_name: &str,
    config_change: bool,
    start: &Progress,
    now: &Progress,
    attempt: &str,
    policy_checks: bool,
    stopped: Option<Stopped>,
) -> Result<Vec<PlannedStep>, ProgramError> {
    let mut b = Builder::new(desired, component_name, policy_checks)?;
    let component = b.component;
    let quiesced = now.may_be_quiesced(stopped);
    if config_change {
        // A config change is undone by applying the previous config the same way.
        match (component.steps.reload.clone(), &start.version) {
            (Some(argv), version) => {
                let label = version.as_ref().map_or_else(String::new, Version::to_string);
                b.push(StepKind::Reload, &label, argv, version.as_ref(), Effect::None)
                    .previous_config = true;
                if let Some(v) = version {
                    b.health(v);
                }
            }
            (None, Some(v)) => b.deploy(v)?,
            (None, None) => {}
        }
        if quiesced {
            b.resume(start.version.as_ref());
        }
        for step in &mut b.steps {
            step.previous_config = true;
            step.id = format!("rb-{}", step.id);
        }
        return Ok(b.steps);
    }
    // A completed attempt (no stopped step: its wave's analysis failed during the soak) left
    // the workflows running on the new version: they are stopped before it is undone, like
    // before any change, and started again last (issue #16, "quiesce around every attempt").
    let quiesced = if stopped.is_none() && !quiesced && component.steps.quiesce.is_some() {
        b.quiesce(now.version.as_ref());
        true
    } else {
        quiesced
    };
    // Traffic first: every request goes back to the old version before anything is undone.
    if now.weight.is_some_and(|w| w > 0) {
        b.shift_back(now.version.as_ref());
    }
    let mut ours: Vec<AppliedMigration> = now.applied.iter().filter(|m| m.attempt == attempt).cloned().collect();
    // A stopped `up` may have changed the target: an irreversible one needs the snapshot; an
    // interrupted reversible one is undone by its `down` (downs must tolerate a missing change).
    let mut dirty: Option<(String, String)> = None;
    if let Some(Stopped { step, how }) = stopped
        && let Effect::MigrationApplied { migration } = &step.effect
        && !ours
            .iter()
            .any(|m| m.release == migration.release && m.id == migration.id)
    {
        match (&migration.down, how) {
            (None, _) => dirty = Some((migration.release.to_string(), migration.id.clone())),
            (Some(_), StopKind::Interrupted) => ours.push(migration.clone()),
            (Some(_), StopKind::Failed) => {}
        }
    }
    let undid = start.applied.iter().any(|m| !now.applied.contains(m))
        || matches!(stopped, Some(Stopped { step, how: StopKind::Interrupted }) if matches!(step.effect, Effect::MigrationUndone { .. } | Effect::RestoredTo { .. } | Effect::Restored { .. }));
    let irreversible = ours
        .iter()
        .find(|m| m.down.is_none())
        .map(|m| (m.release.to_string(), m.id.clone()))
        .or(dirty);
    let needs_restore = irreversible.is_some() || undid;
    if needs_restore {
        let restore = component.steps.restore.clone();
        match (&now.at_snapshot, restore) {
            (Some(at_snapshot), Some(argv)) => {
                let label = start
                    .version
                    .as_ref()
                    .map_or_else(|| "none".to_string(), Version::to_string);
                let step = b.push(
                    StepKind::Restore,
                    &label,
                    argv,
                    start.version.as_ref(),
                    Effect::RestoredTo {
                        applied: at_snapshot.clone(),
                    },
                );
                step.snapshot_of = Some(attempt.to_string());
            }
            _ => {
                return Err(match irreversible {
                    Some((release, id)) => ProgramError::Irreversible { release, id },
                    None => ProgramError::NoSnapshot,
                });
            }
        }
    } else {
        for m in ours.iter().rev() {
            undo_migration(&mut b, m)?;
        }
    }
    // A deploy that failed part-way (timed out, crashed) may have changed the target even though
    // the recorded version did not move, so it is redeployed too.
    let deploy_stopped = stopped.is_some_and(|s| s.step.kind == StepKind::Deploy);
    if now.version != start.version || deploy_stopped {
        match &start.version {
            Some(version) => b.deploy(version)?,
            None => match component.steps.remove.clone() {
                Some(argv) => {
                    b.push(
                        StepKind::Remove,
                        "install",
                        argv,
                        now.version.as_ref(),
                        Effect::Undeployed,
                    );
                }
                // Nothing recorded was deployed: a deploy that failed at once left nothing.
                None if now.version.is_none() => {}
                None => return Err(ProgramError::NoUndeploy(component_name.to_string())),
            },
        }
    }
    if quiesced {
        b.resume(start.version.as_ref());
    }
    for step in &mut b.steps {
        step.id = format!("rb-{}", step.id);
    }
    Ok(b.steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(version: Option<&str>) -> PlannedStep {
        let version = version.map(|v| Version::parse(v).unwrap());
        PlannedStep::new(
            1,
            StepKind::Snapshot,
            "x",
            vec!["snap".into()],
            version.as_ref(),
            Effect::SnapshotTaken,
        )
    }

    /// The journal is read back by the next gantry (resume after a crash or an upgrade of gantry
    /// itself): typing `version` must not change what the journal says (issue #9).
    #[test]
    fn a_step_version_reads_and_writes_as_the_journal_always_had_it() {
        for (version, text) in [(Some("1.2.0"), "\"1.2.0\""), (None, "\"\"")] {
            let json = serde_json::to_string(&step(version)).unwrap();
            assert!(json.contains(&format!("\"version\":{text}")), "{json}");
            let back: PlannedStep = serde_json::from_str(&json).unwrap();
            assert_eq!(back, step(version));
        }
    }

    /// A journal whose version is not a version is an error when it is read, not an empty
    /// version that would silently skip the artifacts of a deploy.
    #[test]
    fn a_journaled_step_with_a_bad_version_does_not_read() {
        let json = serde_json::to_string(&step(Some("1.2.0")))
            .unwrap()
            .replace("\"1.2.0\"", "\"1.2\"");
        let err = serde_json::from_str::<PlannedStep>(&json).unwrap_err().to_string();
        assert!(err.contains("1.2") || err.contains("unexpected end"), "{err}");
    }

    const DB: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: db }\nspec:\n  steps:\n    deploy: [deploy]\n    snapshot: [snapshot]\n    restore: [restore]\n    remove: [remove]\n";
    /// `DB` with workflows to stop around every attempt.
    const DB_QUIESCE: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: db }\nspec:\n  steps:\n    deploy: [deploy]\n    snapshot: [snapshot]\n    restore: [restore]\n    remove: [remove]\n    reload: [reload]\n    quiesce: [quiesce]\n    resume: [resume]\n";
    /// `DB_QUIESCE` without `restore`: a failure past the irreversible migration cannot roll back.
    const DB_QUIESCE_NO_RESTORE: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: db }\nspec:\n  steps:\n    deploy: [deploy]\n    quiesce: [quiesce]\n    resume: [resume]\n";
    const DB_NO_RESTORE: &str =
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: db }\nspec:\n  steps:\n    deploy: [deploy]\n";
    /// 1.0.0 → 1.2.0 stops at 1.1.0 (1.2.0 needs ≥1.1.0). 1.1.0 brings a reversible `pre`
    /// migration and an irreversible `post` one; 1.2.0 a reversible `pre` one.
    const RELEASES: &str = "---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: db-1.0.0 }\nspec: { component: db, version: 1.0.0, released: 2026-01-01 }\n---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: db-1.1.0 }\nspec:\n  component: db\n  version: 1.1.0\n  released: 2026-01-02\n  migrations:\n    - { id: index, up: [up, index], down: [down, index] }\n    - { id: split, phase: post, up: [up, split] }\n---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: db-1.2.0 }\nspec:\n  component: db\n  version: 1.2.0\n  released: 2026-01-03\n  upgradeFrom: \">=1.1.0\"\n  migrations:\n    - { id: column, up: [up, column], down: [down, column] }\n---\napiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: t }\nspec: { component: db, version: 1.2.0 }\n";

    fn upgrade(component: &str) -> (Desired, Vec<PlannedStep>, Progress) {
        let (desired, action) = upgrade_action(component);
        let record = crate::state::branch::tests::target("db", "1.0.0");
        let target = &desired.targets["t"];
        let steps = forward_program(&desired, target, Some(&record), &action, "a1", false).unwrap();
        (desired, steps, Progress::start(Some(&record)))
    }

    /// The planned 1.0.0 → 1.2.0 upgrade of `t`.
    fn upgrade_action(component: &str) -> (Desired, Action) {
        let file = crate::manifest::RawFile {
            path: "all.yaml".into(),
            content: crate::manifest::RawContent::Bytes(format!("{component}{RELEASES}").into_bytes()),
        };
        let (manifests, diags) = crate::manifest::read_manifests(None, &[file]);
        assert!(diags.is_empty(), "{diags:?}");
        let (desired, diags) = crate::manifest::validate(manifests);
        assert!(diags.is_empty(), "{diags:?}");
        let mut recorded = crate::state::RecordedState::default();
        let record = crate::state::branch::tests::target("db", "1.0.0");
        recorded.targets.insert("t".into(), record.clone());
        let evidence = crate::plan::Evidence::default();
        let plan = crate::plan::plan(&crate::plan::PlanInput {
            desired: &desired,
            windows: &[],
            recorded: &recorded,
            evidence: &evidence,
            now: "2026-06-01T00:00:00Z".parse().unwrap(),
        });
        let action = plan.actions.iter().find(|a| a.target == "t").unwrap().clone();
        (desired, action)
    }

    fn replay(mut progress: Progress, steps: &[PlannedStep]) -> Progress {
        for step in steps {
            progress.apply(&step.effect);
        }
        progress
    }

    fn migrations(p: &Progress) -> Vec<String> {
        p.applied.iter().map(|m| format!("{}:{}", m.release, m.id)).collect()
    }

    /// The forward program of an upgrade with a stop: snapshot, then per stop `pre` migrations,
    /// deploy, `post` migrations (SPEC §3).
    #[test]
    fn an_upgrade_with_a_stop_runs_each_releases_migrations_around_its_deploy() {
        let (_, steps, _) = upgrade(DB);
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "01-snapshot-1.0.0",
                "02-migrate_up-index",
                "03-deploy-1.1.0",
                "04-migrate_up-split",
                "05-migrate_up-column",
                "06-deploy-1.2.0"
            ]
        );
    }

    /// Rollback after each possible failing (and each interrupted) step of that upgrade: the
    /// rollback's effects, replayed after what completed, give back exactly the version and the
    /// migrations the target started with; no `down` runs for a migration the attempt did not
    /// apply or a restore already took away (issue #10's bug 1, as a table over every step).
    #[test]
    fn rollback_after_each_step_returns_the_target_to_where_it_started() {
        let (desired, forward, start) = upgrade(DB);
        for k in 0..forward.len() {
            for how in [StopKind::Failed, StopKind::Interrupted] {
                let now = replay(start.clone(), &forward[..k]);
                let stopped = Stopped { step: &forward[k], how };
                let rollback = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped))
                    .unwrap_or_else(|e| panic!("step {} {how:?}: {e}", forward[k].id));
                // An interrupted step may have completed: its effect counts before the rollback.
                let mut after = now.clone();
                if how == StopKind::Interrupted {
                    after.apply(&forward[k].effect);
                }
                let end = replay(after, &rollback);
                let at = format!(
                    "{} {how:?}: {:?}",
                    forward[k].id,
                    rollback.iter().map(|s| &s.id).collect::<Vec<_>>()
                );
                assert_eq!(end.version, start.version, "{at}");
                assert_eq!(migrations(&end), migrations(&start), "{at}");
                let downs: Vec<&str> = rollback
                    .iter()
                    .filter(|s| s.kind == StepKind::MigrateDown)
                    .filter_map(|s| s.migration.as_deref())
                    .collect();
                let restored = rollback.iter().any(|s| s.kind == StepKind::Restore);
                assert!(!restored || downs.is_empty(), "a restore and downs: {at}");
                for id in &downs {
                    assert!(
                        now.applied.iter().any(|m| &m.id == id) || how == StopKind::Interrupted,
                        "down of `{id}`, never applied: {at}"
                    );
                }
                assert!(rollback.iter().all(|s| s.id.starts_with("rb-")), "{at}");
            }
        }
    }

    /// Without a `restore` step, a failure in or after the irreversible migration cannot be undone:
    /// the program says which migration, so the attempt ends `failed` with the truth (SPEC §4)
    /// instead of deploying the old version over a changed schema.
    #[test]
    fn rollback_past_an_irreversible_migration_without_restore_is_refused_naming_it() {
        let (desired, forward, start) = upgrade(DB_NO_RESTORE);
        let split = forward.iter().position(|s| s.id.ends_with("migrate_up-split")).unwrap();
        for k in 0..forward.len() {
            let now = replay(start.clone(), &forward[..k]);
            let stopped = Stopped {
                step: &forward[k],
                how: StopKind::Failed,
            };
            let result = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped));
            // The irreversible `up` itself failing may have written part of its changes.
            if k >= split {
                let err = result.unwrap_err();
                assert_eq!(
                    err,
                    ProgramError::Irreversible {
                        release: "1.1.0".into(),
                        id: "split".into()
                    }
                );
            } else {
                let end = replay(now, &result.unwrap());
                assert_eq!(
                    (end.version.clone(), migrations(&end)),
                    (start.version.clone(), migrations(&start))
                );
            }
        }
    }

    fn ids(steps: &[PlannedStep]) -> Vec<&str> {
        steps.iter().map(|s| s.id.as_str()).collect()
    }

    /// Issue #16 (quiesce): an upgrade stops the workflows before anything else (the snapshot
    /// included) and starts them again after its last step.
    #[test]
    fn an_upgrade_of_a_quiescing_component_starts_with_quiesce_and_ends_with_resume() {
        let (_, steps, _) = upgrade(DB_QUIESCE);
        assert_eq!(
            ids(&steps),
            [
                "01-quiesce-1.0.0",
                "02-snapshot-1.0.0",
                "03-migrate_up-index",
                "04-deploy-1.1.0",
                "05-migrate_up-split",
                "06-migrate_up-column",
                "07-deploy-1.2.0",
                "08-resume-1.2.0"
            ]
        );
        assert_eq!(steps[0].effect, Effect::Quiesced);
        assert_eq!(steps[7].effect, Effect::Resumed);
    }

    /// Issue #16 (quiesce), as a table over every step of the upgrade, failing and interrupted
    /// (the crash case: the journal replays `quiesced`, so a rolled-back resumed attempt is the
    /// same): the rollback returns version and migrations, ends with `resume` exactly when the
    /// workflows may be stopped, and leaves the target not quiesced. A failing `quiesce` counts
    /// as stopped (it may have stopped part of them): its rollback is `resume` alone.
    #[test]
    fn rollback_after_each_step_of_a_quiescing_upgrade_ends_with_the_workflows_running() {
        let (desired, forward, start) = upgrade(DB_QUIESCE);
        for k in 0..forward.len() {
            for how in [StopKind::Failed, StopKind::Interrupted] {
                let now = replay(start.clone(), &forward[..k]);
                let stopped = Stopped { step: &forward[k], how };
                let rollback = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped))
                    .unwrap_or_else(|e| panic!("step {} {how:?}: {e}", forward[k].id));
                let mut after = now.clone();
                if how == StopKind::Interrupted {
                    after.apply(&forward[k].effect);
                }
                let end = replay(after, &rollback);
                let at = format!("{} {how:?}: {:?}", forward[k].id, ids(&rollback));
                assert!(!end.quiesced, "ends quiesced: {at}");
                assert_eq!(end.version, start.version, "{at}");
                assert_eq!(migrations(&end), migrations(&start), "{at}");
                // Every stop is after `quiesce` started: the rollback always resumes, last.
                let last = rollback.last().unwrap_or_else(|| panic!("empty rollback: {at}"));
                assert_eq!(last.kind, StepKind::Resume, "{at}");
                assert_eq!(last.version, start.version, "{at}");
                assert_eq!(
                    rollback.iter().filter(|s| s.kind == StepKind::Resume).count(),
                    1,
                    "{at}"
                );
                if k == 0 {
                    assert_eq!(ids(&rollback), ["rb-01-resume-1.0.0"], "{at}");
                }
            }
        }
    }

    /// The rollback of a completed upgrade (its wave's analysis failed during the soak, so no
    /// step stopped it) runs between a `quiesce` first and a `resume` last: the upgrade had
    /// resumed the workflows, and undoing it is a change like any other (issue #16). Replayed,
    /// it ends at the starting version and migrations with the workflows running.
    #[test]
    fn the_rollback_of_a_completed_quiescing_upgrade_quiesces_first_and_resumes_last() {
        let (desired, forward, start) = upgrade(DB_QUIESCE);
        let done = replay(start.clone(), &forward);
        assert!(!done.quiesced, "the upgrade resumed the workflows");
        let rollback = rollback_program(&desired, "db", false, &start, &done, "a1", false, None).unwrap();
        let kinds: Vec<StepKind> = rollback.iter().map(|s| s.kind).collect();
        assert_eq!(kinds.first(), Some(&StepKind::Quiesce), "{:?}", ids(&rollback));
        assert_eq!(kinds.last(), Some(&StepKind::Resume), "{:?}", ids(&rollback));
        assert_eq!(
            rollback.first().unwrap().version,
            done.version,
            "quiesced at the new version"
        );
        assert_eq!(
            rollback.last().unwrap().version,
            start.version,
            "resumed at the old one"
        );
        let end = replay(done.clone(), &rollback);
        assert!(!end.quiesced);
        assert_eq!(end.version, start.version);
        assert_eq!(migrations(&end), migrations(&start));
        // Interrupted after its own quiesce, the rollback of that rollback still resumes.
        let mid = replay(done, &rollback[..1]);
        assert!(mid.quiesced && mid.may_be_quiesced(None));
        // Without `quiesce` a completed upgrade's rollback has neither step.
        let (plain, forward, start) = upgrade(DB);
        let done = replay(start.clone(), &forward);
        let rollback = rollback_program(&plain, "db", false, &start, &done, "a1", false, None).unwrap();
        assert!(
            rollback
                .iter()
                .all(|s| s.kind != StepKind::Quiesce && s.kind != StepKind::Resume),
            "{:?}",
            ids(&rollback)
        );
    }

    /// Without a `quiesce` step nothing changes: no `resume` in a rollback (the model only adds
    /// one when `quiesce` ran).
    #[test]
    fn a_component_without_quiesce_never_gets_a_resume() {
        let (desired, forward, start) = upgrade(DB);
        for k in 0..forward.len() {
            let now = replay(start.clone(), &forward[..k]);
            let stopped = Stopped {
                step: &forward[k],
                how: StopKind::Failed,
            };
            let rollback = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped)).unwrap();
            assert!(
                rollback.iter().all(|s| s.kind != StepKind::Resume),
                "{:?}",
                ids(&rollback)
            );
            assert!(!now.may_be_quiesced(Some(stopped)));
        }
    }

    /// A rollback that cannot be built (an irreversible migration and no `restore`) runs
    /// nothing, `resume` included: the progress still says the workflows may be stopped, which
    /// is what the attempt's message reports (SPEC §4).
    #[test]
    fn a_refused_rollback_leaves_the_progress_quiesced_for_the_record() {
        let (desired, forward, start) = upgrade(DB_QUIESCE_NO_RESTORE);
        let split = forward.iter().position(|s| s.id.ends_with("migrate_up-split")).unwrap();
        let now = replay(start.clone(), &forward[..split]);
        let stopped = Stopped {
            step: &forward[split],
            how: StopKind::Failed,
        };
        let err = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped)).unwrap_err();
        assert!(matches!(err, ProgramError::Irreversible { .. }), "{err}");
        assert!(now.quiesced && now.may_be_quiesced(Some(stopped)));
    }

    /// A config change quiesces too; its rollback (the previous config) ends with `resume`,
    /// also when the reload or the `resume` itself failed.
    #[test]
    fn a_config_change_is_quiesced_and_its_rollback_resumes() {
        let (desired, mut action) = upgrade_action(DB_QUIESCE);
        let record = crate::state::branch::tests::target("db", "1.2.0");
        let v = Version::parse("1.2.0").unwrap();
        action.action = ActionKind::Config;
        action.from = Some(v.clone());
        action.to = Some(v);
        action.stops.clear();
        action.migrations = std::sync::Arc::from([]);
        let forward = forward_program(&desired, &desired.targets["t"], Some(&record), &action, "a1", false).unwrap();
        assert_eq!(
            ids(&forward),
            ["01-quiesce-1.2.0", "02-reload-1.2.0", "03-resume-1.2.0"]
        );
        let start = Progress::start(Some(&record));
        for k in 0..forward.len() {
            let now = replay(start.clone(), &forward[..k]);
            let stopped = Stopped {
                step: &forward[k],
                how: StopKind::Failed,
            };
            let rollback = rollback_program(&desired, "db", true, &start, &now, "a1", false, Some(stopped)).unwrap();
            // Even a failed `quiesce` puts the previous config back: the reload is idempotent.
            assert_eq!(
                ids(&rollback),
                ["rb-01-reload-1.2.0", "rb-02-resume-1.2.0"],
                "step {}",
                forward[k].id
            );
            assert!(rollback.iter().all(|s| s.previous_config));
            assert!(!replay(now, &rollback).quiesced);
        }
    }

    /// A downgrade quiesces too, and whichever of its steps fails or is interrupted, its
    /// rollback returns the target and ends not quiesced.
    #[test]
    fn a_quiescing_downgrade_and_its_rollback_after_each_step_end_with_resume() {
        let (desired, mut action) = upgrade_action(DB_QUIESCE);
        let (v110, v120) = (Version::parse("1.1.0").unwrap(), Version::parse("1.2.0").unwrap());
        let mut record = crate::state::branch::tests::target("db", "1.2.0");
        record.applied_migrations = vec![AppliedMigration {
            release: v120.clone(),
            id: "column".into(),
            phase: Phase::Pre,
            down: Some(vec!["down".into(), "column".into()]),
            attempt: "a0".into(),
        }];
        action.action = ActionKind::Downgrade;
        action.from = Some(v120.clone());
        action.to = Some(v110.clone());
        action.stops = vec![v110.clone()];
        action.migrations = vec![crate::plan::PlannedMigration {
            release: v120,
            id: "column".into(),
            direction: crate::plan::Direction::Down,
            phase: Phase::Pre,
            stop: v110,
        }]
        .into();
        let forward = forward_program(&desired, &desired.targets["t"], Some(&record), &action, "a1", false).unwrap();
        assert_eq!(
            ids(&forward),
            [
                "01-quiesce-1.2.0",
                "02-snapshot-1.2.0",
                "03-migrate_down-column",
                "04-deploy-1.1.0",
                "05-resume-1.1.0"
            ]
        );
        let start = Progress::start(Some(&record));
        for k in 0..forward.len() {
            for how in [StopKind::Failed, StopKind::Interrupted] {
                let now = replay(start.clone(), &forward[..k]);
                let stopped = Stopped { step: &forward[k], how };
                let rollback = rollback_program(&desired, "db", false, &start, &now, "a1", false, Some(stopped))
                    .unwrap_or_else(|e| panic!("step {} {how:?}: {e}", forward[k].id));
                let mut after = now.clone();
                if how == StopKind::Interrupted {
                    after.apply(&forward[k].effect);
                }
                let end = replay(after, &rollback);
                let at = format!("{} {how:?}: {:?}", forward[k].id, ids(&rollback));
                assert!(!end.quiesced, "{at}");
                assert_eq!(rollback.last().map(|s| s.kind), Some(StepKind::Resume), "{at}");
                assert_eq!(end.version, start.version, "{at}");
                assert_eq!(migrations(&end), migrations(&start), "{at}");
            }
        }
    }
}
