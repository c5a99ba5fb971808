//! Attempt programs: the exact list of steps an action runs, fixed before the first one starts.
//!
//! A program is journaled with its attempt, so a reconciler killed midway resumes exactly the
//! steps it planned (from the same desired commit), not a re-plan against newer manifests.

use semver::Version;
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
    /// The snapshot was restored: every migration applied after it is undone.
    Restored { undone: Vec<(Version, String)> },
    /// The target was removed.
    Removed,
}

/// One step of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// Unique within the attempt, ordered: `03-deploy-1.2.0`.
    pub id: String,
    pub kind: StepKind,
    /// The argv templates (rendered by the executor).
    pub argv: Vec<String>,
    /// `version` in templates: the stop, or the release a migration belongs to.
    pub version: String,
    pub release: Option<String>,
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
}

impl PlannedStep {
    fn new(index: usize, kind: StepKind, label: &str, argv: Vec<String>, version: &str, effect: Effect) -> PlannedStep {
        PlannedStep {
            id: format!("{index:02}-{}-{label}", kind.as_str()),
            kind,
            argv,
            version: version.to_string(),
            release: None,
            migration: None,
            snapshot_of: None,
            with_policy_checks: false,
            previous_config: false,
            effect,
            reason: None,
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
        version: &str,
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
        let v = version.to_string();
        self.push(
            StepKind::Deploy,
            &v,
            argv,
            &v,
            Effect::Deployed {
                version: version.clone(),
            },
        );
        self.health(&v);
        Ok(())
    }

    /// A health step, when there is something to check (the component's `health` step or the
    /// policy's checks); an empty probe would only cost a journal entry.
    fn health(&mut self, version: &str) {
        if self.component.steps.health.is_none() && !self.policy_checks {
            return;
        }
        let argv = self.component.steps.health.clone().unwrap_or_default();
        self.push(StepKind::Health, version, argv, version, Effect::None)
            .with_policy_checks = true;
    }

    fn snapshot(&mut self, version: &str) -> bool {
        match self.component.steps.snapshot.clone() {
            Some(argv) => {
                self.push(StepKind::Snapshot, version, argv, version, Effect::SnapshotTaken);
                true
            }
            None => false,
        }
    }
}

/// Builds the forward program of an action (SPEC §3): for an upgrade, an optional snapshot, then
/// per stop `pre` migrations → deploy → health → `post` migrations; a downgrade undoes the
/// recorded migrations newest first, then deploys; a config change reloads.
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
    let to = action.to.as_deref().map(Version::parse).transpose().ok().flatten();
    let from_text = action.from.clone().unwrap_or_default();
    match (action.action, to) {
        (ActionKind::Install | ActionKind::Upgrade, Some(_)) => {
            b.snapshot(&from_text);
            for stop in &action.stops {
                let stop_version = Version::parse(stop)
                    .map_err(|_| ProgramError::UnknownRelease(component_name.into(), stop.clone()))?;
                for phase in [Phase::Pre, Phase::Post] {
                    if phase == Phase::Post {
                        b.deploy(&stop_version)?;
                    }
                    for planned in action.migrations.iter().filter(|m| &m.stop == stop && m.phase == phase) {
                        let release_version = Version::parse(&planned.release).map_err(|_| {
                            ProgramError::UnknownRelease(component_name.into(), planned.release.clone())
                        })?;
                        let release = desired.release(component_name, &release_version).ok_or_else(|| {
                            ProgramError::UnknownRelease(component_name.into(), planned.release.clone())
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
                            &planned.release,
                            Effect::MigrationApplied { migration: applied },
                        );
                        step.release = Some(planned.release.clone());
                        step.migration = Some(migration.id.clone());
                    }
                }
            }
        }
        (ActionKind::Downgrade, Some(to)) => {
            b.snapshot(&from_text);
            let applied = record.map_or(&[][..], |r| r.applied_migrations.as_slice());
            for planned in &action.migrations {
                let Some(recorded) = applied
                    .iter()
                    .rev()
                    .find(|m| m.release.to_string() == planned.release && m.id == planned.id)
                else {
                    continue;
                };
                undo_migration(&mut b, recorded)?;
            }
            b.deploy(&to)?;
        }
        (ActionKind::Config, Some(to)) => match component.steps.reload.clone() {
            Some(argv) => {
                let v = to.to_string();
                b.push(StepKind::Reload, &v, argv, &v, Effect::None);
                b.health(&v);
            }
            None => b.deploy(&to)?,
        },
        (ActionKind::Remove, _) => {
            if let Some(argv) = component.steps.remove.clone() {
                b.push(StepKind::Remove, "target", argv, &from_text, Effect::Removed);
            }
        }
        _ => {}
    }
    Ok(b.steps)
}

fn undo_migration(b: &mut Builder, recorded: &AppliedMigration) -> Result<(), ProgramError> {
    let release = recorded.release.to_string();
    match &recorded.down {
        Some(down) => {
            let step = b.push(
                StepKind::MigrateDown,
                &recorded.id,
                down.clone(),
                &release,
                Effect::MigrationUndone {
                    release: recorded.release.clone(),
                    id: recorded.id.clone(),
                },
            );
            step.release = Some(release);
            step.migration = Some(recorded.id.clone());
        }
        None => {
            let argv = b
                .component
                .steps
                .restore
                .clone()
                .ok_or_else(|| ProgramError::Irreversible {
                    release: release.clone(),
                    id: recorded.id.clone(),
                })?;
            let step = b.push(
                StepKind::Restore,
                &recorded.id,
                argv,
                &release,
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
    pub snapshot_taken: bool,
    pub removed: bool,
}

impl Progress {
    /// The state before the attempt.
    pub fn start(record: Option<&TargetRecord>) -> Progress {
        Progress {
            version: record.and_then(|r| r.version.clone()),
            applied: record.map(|r| r.applied_migrations.clone()).unwrap_or_default(),
            snapshot_taken: false,
            removed: false,
        }
    }

    /// Applies one completed step's effect.
    pub fn apply(&mut self, effect: &Effect) {
        match effect {
            Effect::None => {}
            Effect::Deployed { version } => self.version = Some(version.clone()),
            Effect::MigrationApplied { migration } => {
                self.applied
                    .retain(|m| !(m.release == migration.release && m.id == migration.id));
                self.applied.push(migration.clone());
            }
            Effect::MigrationUndone { release, id } => self.applied.retain(|m| !(&m.release == release && &m.id == id)),
            Effect::SnapshotTaken => self.snapshot_taken = true,
            Effect::Restored { undone } => self
                .applied
                .retain(|m| !undone.iter().any(|(r, i)| &m.release == r && &m.id == i)),
            Effect::Removed => self.removed = true,
        }
    }
}

/// Builds the rollback program of a failed attempt (SPEC §3): the `down`s of the migrations this
/// attempt applied, newest first — or one `restore` from the attempt's snapshot when one of them
/// has no `down` — then a deploy of the version the attempt started from.
///
/// # Errors
/// [`ProgramError::Irreversible`] when a migration has no `down` and there is no snapshot to
/// restore; the attempt then ends `failed`, with state saying exactly what was applied.
#[allow(clippy::too_many_arguments)]
pub fn rollback_program(
    desired: &Desired,
    component_name: &str,
    action: &str,
    start: &Progress,
    now: &Progress,
    attempt: &str,
    policy_checks: bool,
    failed_deploy: bool,
) -> Result<Vec<PlannedStep>, ProgramError> {
    let mut b = Builder::new(desired, component_name, policy_checks)?;
    let component = b.component;
    if action == ActionKind::Config.as_str() {
        // A config change is undone by applying the previous config the same way.
        let version = start.version.as_ref().map_or_else(String::new, Version::to_string);
        match component.steps.reload.clone() {
            Some(argv) => {
                b.push(StepKind::Reload, &version, argv, &version, Effect::None)
                    .previous_config = true;
                b.health(&version);
            }
            None => {
                if let Some(v) = &start.version {
                    b.deploy(v)?;
                }
            }
        }
        for step in &mut b.steps {
            step.previous_config = true;
            step.id = format!("rb-{}", step.id);
        }
        return Ok(b.steps);
    }
    let ours: Vec<&AppliedMigration> = now.applied.iter().filter(|m| m.attempt == attempt).collect();
    let irreversible = ours.iter().find(|m| m.down.is_none());
    match irreversible {
        Some(m) if !(now.snapshot_taken && component.steps.restore.is_some()) => {
            return Err(ProgramError::Irreversible {
                release: m.release.to_string(),
                id: m.id.clone(),
            });
        }
        Some(_) => {
            let argv = component.steps.restore.clone().unwrap_or_default();
            let undone = ours.iter().map(|m| (m.release.clone(), m.id.clone())).collect();
            let label = start
                .version
                .as_ref()
                .map_or_else(|| "none".to_string(), Version::to_string);
            let step = b.push(StepKind::Restore, &label, argv, &label, Effect::Restored { undone });
            step.snapshot_of = Some(attempt.to_string());
        }
        None => {
            for m in ours.iter().rev() {
                undo_migration(&mut b, m)?;
            }
        }
    }
    // A deploy that failed part-way (timed out, crashed) may have changed the target even though
    // the recorded version did not move, so it is redeployed too.
    if (now.version != start.version || failed_deploy)
        && let Some(version) = &start.version
    {
        b.deploy(version)?;
    }
    for step in &mut b.steps {
        step.id = format!("rb-{}", step.id);
    }
    Ok(b.steps)
}
