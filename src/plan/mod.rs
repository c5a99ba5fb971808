//! The planner: a pure function of (desired, recorded, evidence, now) → [`Plan`].
//!
//! No clock reads, no files, no processes. Everything time-dependent takes `now`; everything
//! read from git (approvals from commit trailers) arrives pre-computed in [`Evidence`].

pub mod path;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use semver::Version;
use serde::Serialize;

use crate::manifest::{Desired, Diagnostic, Release, Severity, Target, VersionWanted};
use crate::policy::approvals::{ApprovalIndex, Tally};
use crate::policy::gates::{WindowGate, WindowScope, WindowVerdict};
use crate::policy::waves::{self, Member, WaveGate, WaveStatus};
use crate::policy::window::WindowSchedule;
use crate::policy::{self, Governing, UpdateType};
use crate::state::{Outcome, RecordedState, TargetRecord, TargetStatus};

pub use path::{Direction, PlannedMigration};

/// What a plan does to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Install,
    Upgrade,
    Downgrade,
    Config,
    Noop,
    Remove,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Install => "install",
            ActionKind::Upgrade => "upgrade",
            ActionKind::Downgrade => "downgrade",
            ActionKind::Config => "config",
            ActionKind::Noop => "noop",
            ActionKind::Remove => "remove",
        }
    }
}

impl std::fmt::Display for ActionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an action may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ready,
    Blocked,
    Violation,
    Noop,
}

impl Status {
    /// The name users see (the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ready => "ready",
            Status::Blocked => "blocked",
            Status::Violation => "violation",
            Status::Noop => "noop",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an action cannot start yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum BlockerKind {
    Window,
    Approval,
    Wave,
    Dependency,
    ReleaseAge,
    Halted,
    Suspended,
    InProgress,
}

impl BlockerKind {
    /// The name users see (the JSON value): `release_age`, not the `Debug` name `ReleaseAge`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockerKind::Window => "window",
            BlockerKind::Approval => "approval",
            BlockerKind::Wave => "wave",
            BlockerKind::Dependency => "dependency",
            BlockerKind::ReleaseAge => "release_age",
            BlockerKind::Halted => "halted",
            BlockerKind::Suspended => "suspended",
            BlockerKind::InProgress => "in_progress",
        }
    }
}

impl std::fmt::Display for BlockerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason an action is blocked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocker {
    pub kind: BlockerKind,
    pub reason: String,
    /// For `window`: when the next allowed window opens, in the zone of the window that opens it
    /// (shown as RFC 3339 with that zone's offset).
    #[serde(serialize_with = "view::zoned")]
    pub opens_at: Option<jiff::Zoned>,
    /// For time-bound blockers (`release_age`, `wave` soak): when it lifts (RFC 3339, UTC).
    #[serde(serialize_with = "view::timestamp")]
    pub until: Option<Timestamp>,
}

impl Blocker {
    /// When the blocker lifts, if it is time-bound: `opens_at`, else `until`.
    pub fn lifts_at(&self) -> Option<Timestamp> {
        self.opens_at.as_ref().map(jiff::Zoned::timestamp).or(self.until)
    }

    /// [`Blocker::lifts_at`] as users read it: `opens_at` with its zone's offset, `until` in UTC.
    pub fn lifts_at_text(&self) -> Option<String> {
        match (&self.opens_at, self.until) {
            (Some(zoned), _) => Some(crate::policy::window::rfc3339(zoned)),
            (None, Some(until)) => Some(until.to_string()),
            (None, None) => None,
        }
    }
}

/// How the plan's typed values read in JSON and templates (the plan's serialized view): versions
/// as semver text (semver's own `Serialize`), instants as RFC 3339 text. The strings are exactly
/// those the plan carried when it was stringly typed, so `schemas/plan.schema.json` and the
/// rendered text do not change (tests/plan.rs snapshots).
mod view {
    use serde::Serializer;

    /// An instant with the offset of its zone (`2026-12-05T02:00:00+01:00`).
    pub fn zoned<S: Serializer>(value: &Option<jiff::Zoned>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(zoned) => s.serialize_some(&crate::policy::window::rfc3339(zoned)),
            None => s.serialize_none(),
        }
    }

    /// An instant in UTC (`2026-11-21T10:40:00Z`).
    pub fn timestamp<S: Serializer>(value: &Option<jiff::Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(at) => s.serialize_some(&at.to_string()),
            None => s.serialize_none(),
        }
    }
}

impl Blocker {
    pub fn new(kind: BlockerKind, reason: impl Into<String>) -> Self {
        Blocker {
            kind,
            reason: reason.into(),
            opens_at: None,
            until: None,
        }
    }
}

/// One changed config key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigChange {
    pub key: String,
    pub from: Option<serde_json::Value>,
    pub to: Option<serde_json::Value>,
}

/// Approval progress of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ApprovalState {
    pub required: u32,
    /// Eligible approvers who approved.
    pub have: Vec<String>,
    pub missing: u32,
    /// Who may approve (empty = anyone).
    pub eligible: Vec<String>,
}

/// One target's planned action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    pub target: String,
    pub component: String,
    pub action: ActionKind,
    pub from: Option<Version>,
    pub to: Option<Version>,
    /// Releases deployed in turn; the last is `to`.
    pub stops: Vec<Version>,
    pub migrations: Vec<PlannedMigration>,
    pub wave: Option<String>,
    pub status: Status,
    pub blocked_by: Vec<Blocker>,
    pub config_diff: Vec<ConfigChange>,
    pub policy: Option<String>,
    pub approvals: Option<ApprovalState>,
    pub update_type: Option<UpdateType>,
    /// An upgrade whose `releases` include one marked `breaking: true`.
    pub breaking: bool,
    /// What the releases this action crosses say to a reviewer, in ascending version order: for
    /// an upgrade every release in (from, to] the target's channels allow (their migrations
    /// run whether or not they are stops), for an install the desired release, for a downgrade
    /// the releases in (to, from] it takes away.
    pub releases: Vec<ReleaseNote>,
    pub violations: Vec<String>,
    pub warnings: Vec<String>,
}

/// One release as a reviewer of a plan needs it: its changelog, whether it breaks callers, its
/// deprecation note and which of its migrations cannot be undone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseNote {
    pub version: Version,
    pub breaking: bool,
    /// The release's `deprecated` note (null when it is not deprecated).
    pub deprecated: Option<String>,
    pub yanked: bool,
    /// Ids of this release's migrations that have no `down` (undone only by a `restore`).
    pub irreversible: Vec<String>,
    /// The release's `changelog`, section by section (`added`, `fixed`, `security`, …).
    pub changelog: BTreeMap<String, Vec<String>>,
}

impl ReleaseNote {
    /// Whether it says anything beyond its version (templates list only those).
    pub fn worth_showing(&self) -> bool {
        self.breaking
            || self.deprecated.is_some()
            || self.yanked
            || !self.irreversible.is_empty()
            || !self.changelog.is_empty()
    }

    fn of(release: &Release) -> Self {
        let spec = release.spec();
        ReleaseNote {
            version: release.version.clone(),
            breaking: spec.breaking,
            deprecated: spec.deprecated.clone(),
            yanked: spec.yanked,
            irreversible: spec
                .migrations
                .iter()
                .filter(|m| m.down.is_none())
                .map(|m| m.id.clone())
                .collect(),
            changelog: spec.changelog.clone(),
        }
    }
}

/// A problem of the whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanIssue {
    pub kind: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl From<&Diagnostic> for PlanIssue {
    fn from(d: &Diagnostic) -> Self {
        PlanIssue {
            kind: d.kind.to_string(),
            message: d.message.clone(),
            file: Some(d.file.clone()),
            line: d.line,
            column: d.column,
            target: None,
        }
    }
}

/// Counts by status.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Summary {
    pub ready: usize,
    pub blocked: usize,
    pub violation: usize,
    pub noop: usize,
}

/// The plan: what reconciling `head` would do at `now`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub head: Option<String>,
    pub base: Option<String>,
    pub now: String,
    pub actions: Vec<Action>,
    pub violations: Vec<PlanIssue>,
    pub warnings: Vec<PlanIssue>,
    pub summary: Summary,
    /// Every rollout with a target to start, with its waves (sorted by component, version).
    pub rollouts: Vec<Rollout>,
}

/// A rollout (one component to one version, under one policy) and its waves, for review.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub component: String,
    pub version: Version,
    /// The policy whose waves these are (absent: the built-in default). Targets of one version
    /// under different policies form one rollout per policy, each with that policy's waves.
    pub policy: Option<String>,
    pub waves: Vec<RolloutWave>,
    /// Why the rollout is halted (absent: it is not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub halted: Option<String>,
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutWave {
    pub name: String,
    /// The targets this wave adds (earlier waves' targets are not repeated), in rollout order.
    pub targets: Vec<String>,
    pub status: WaveStatus,
    /// When its soak ends (RFC 3339), once it completed and has a soak.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "view::timestamp")]
    pub soak_until: Option<Timestamp>,
    /// The health analysis through its soak (rounds run and left, last result per check).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<crate::policy::analysis::AnalysisView>,
}

impl Plan {
    /// Whether anything in the plan can never succeed as declared.
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty() || self.actions.iter().any(|a| a.status == Status::Violation)
    }

    /// Recounts `summary` from the actions.
    pub fn summarize(&mut self) {
        let mut s = Summary::default();
        for a in &self.actions {
            match a.status {
                Status::Ready => s.ready += 1,
                Status::Blocked => s.blocked += 1,
                Status::Violation => s.violation += 1,
                Status::Noop => s.noop += 1,
            }
        }
        self.summary = s;
    }
}

/// What was read from git besides the manifests, for gates that need history.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Per target: approver addresses from `Approved-by:` trailers on the commit that last
    /// changed the target's desired version.
    pub commit_approvers: BTreeMap<String, BTreeSet<String>>,
    /// With `[trust]`: what signed history vouches for (`policy::approvals`, issue #18).
    pub trusted: Option<crate::policy::approvals::TrustedApprovals>,
}

/// Everything the planner reads.
pub struct PlanInput<'a> {
    pub desired: &'a Desired,
    /// The commit's `Window` manifests, compiled (see `reconcile::load::LoadedCommit::windows`).
    pub windows: &'a [WindowSchedule],
    pub recorded: &'a RecordedState,
    pub evidence: &'a Evidence,
    pub now: Timestamp,
}

/// What the per-target pass shares: caches that keep the planner linear in the fleet's size.
struct Shared<'a> {
    windows: WindowGate<'a>,
    approvals: ApprovalIndex<'a>,
}

/// Plans every desired and recorded target.
///
/// # Guarantees
/// Pure and deterministic: the same input gives the same plan, actions sorted by target name.
pub fn plan(input: &PlanInput) -> Plan {
    let _stage = tracing::debug_span!("plan").entered();
    let mut shared = Shared {
        windows: WindowGate::new(input.windows, &input.desired.windows, input.now),
        approvals: ApprovalIndex::new(&input.desired.approvals),
    };
    let mut actions: Vec<Action> = input
        .desired
        .targets
        .values()
        .map(|t| plan_target(input, &mut shared, t))
        .collect();
    // Waves and dependencies look across targets, so they run once every action is known.
    let rollouts = plan_rollouts(input, &mut actions);
    gate_dependencies(input, &mut actions);
    for action in &mut actions {
        if action.status == Status::Ready && !action.blocked_by.is_empty() {
            action.status = Status::Blocked;
        }
    }
    for (name, record) in &input.recorded.targets {
        if !input.desired.targets.contains_key(name) && record.status != TargetStatus::Removed {
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
        migrations: Vec::new(),
        wave: None,
        status: Status::Ready,
        blocked_by: Vec::new(),
        config_diff: Vec::new(),
        policy: None,
        approvals: None,
        update_type: None,
        breaking: false,
        releases: Vec::new(),
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
        migrations: Vec::new(),
        wave: None,
        status: Status::Noop,
        blocked_by: Vec::new(),
        config_diff: Vec::new(),
        policy: None,
        approvals: None,
        update_type: None,
        breaking: false,
        releases: Vec::new(),
        violations: Vec::new(),
        warnings: Vec::new(),
    }
}

/// The releases a target may be given: channel allowed for prereleases.
fn channel_allowed(target: &Target, release: &Release) -> bool {
    release
        .channel()
        .is_none_or(|c| target.spec().channels.iter().any(|allowed| allowed == c))
}

fn denied_by(policy: Governing, version: &Version) -> Option<String> {
    let p = policy.policy()?;
    p.deny
        .iter()
        .zip(&p.manifest.spec.deny)
        .find(|(set, _)| set.covers(version))
        .map(|(_, text)| text.clone())
}

/// Whether a requirement matches a release, letting prereleases of allowed channels match by
/// their release version (`^2` accepts `2.1.0-beta.1` for a target on the `beta` channel).
fn requirement_matches(req: &semver::VersionReq, release: &Release) -> bool {
    if req.matches(&release.version) {
        return true;
    }
    if release.version.pre.is_empty() {
        return false;
    }
    let mut stable = release.version.clone();
    stable.pre = semver::Prerelease::EMPTY;
    req.matches(&stable) && req.comparators.iter().all(|c| c.pre.is_empty())
}

/// Resolution of a target's desired version.
enum Resolved<'a> {
    Release(&'a Release),
    /// A requirement nothing satisfies, or a pin that can never be deployed.
    Violation(String),
}

fn resolve<'a>(
    input: &PlanInput<'a>,
    target: &Target,
    governing: Governing,
    current: Option<&Version>,
    warnings: &mut Vec<String>,
) -> Resolved<'a> {
    let component = &target.spec().component;
    let releases: &'a [Release] = input.desired.releases.get(component).map_or(&[], Vec::as_slice);
    match &target.wanted {
        VersionWanted::Pin(pin) => {
            let Some(release) = releases.iter().find(|r| &r.version == pin) else {
                return Resolved::Violation(format!(
                    "no Release of `{component}` has version {pin}; add the Release manifest or pin a released version"
                ));
            };
            if release.spec().yanked {
                let newest = releases.iter().rev().find(|r| {
                    !r.spec().yanked && channel_allowed(target, r) && denied_by(governing, &r.version).is_none()
                });
                return Resolved::Violation(format!(
                    "{component} {pin} is yanked; pin another version{}",
                    newest
                        .map(|r| format!(" (newest available: {})", r.version))
                        .unwrap_or_default()
                ));
            }
            if let Some(rule) = denied_by(governing, pin) {
                return Resolved::Violation(format!(
                    "{component} {pin} is denied by policy `{}` (deny: \"{rule}\"); pin another version",
                    governing.name().unwrap_or("default")
                ));
            }
            Resolved::Release(release)
        }
        VersionWanted::Requirement(req) => {
            let mut too_young: Option<(&Release, Timestamp)> = None;
            for release in releases.iter().rev() {
                if release.spec().yanked
                    || !channel_allowed(target, release)
                    || !requirement_matches(req, release)
                    || denied_by(governing, &release.version).is_some()
                {
                    continue;
                }
                let kind = policy::update_type(current, &release.version);
                if let Some(eligible_at) = release_eligible_at(input, governing, release, kind)
                    && eligible_at > input.now
                {
                    too_young.get_or_insert((release, eligible_at));
                    continue;
                }
                if let Some((young, at)) = too_young {
                    warnings.push(format!(
                        "{} {} matches {req} but is younger than the policy's minReleaseAge; it becomes eligible at {at}",
                        component, young.version
                    ));
                }
                return Resolved::Release(release);
            }
            let available: Vec<String> = releases.iter().rev().take(5).map(|r| r.version.to_string()).collect();
            let why = match too_young {
                Some((young, at)) => format!(" ({} matches but is too new until {at})", young.version),
                None if available.is_empty() => format!(" (`{component}` has no releases)"),
                None => format!(" (available: {})", available.join(", ")),
            };
            Resolved::Violation(format!(
                "no release of `{component}` satisfies {req}{why}; add a release or change the requirement"
            ))
        }
    }
}

/// When a release becomes old enough for the rule of its update type (`None`: no age rule).
fn release_eligible_at(
    input: &PlanInput,
    governing: Governing,
    release: &Release,
    kind: UpdateType,
) -> Option<Timestamp> {
    let age = governing.policy()?.min_release_age[kind.index()]?;
    if age.is_zero() {
        return None;
    }
    let released = release.released.unwrap_or(input.now);
    let span = jiff::SignedDuration::try_from(age).ok()?;
    released.checked_add(span).ok()
}

fn config_diff(record: Option<&TargetRecord>, target: &Target) -> Vec<ConfigChange> {
    let empty = serde_json::Map::new();
    let old = record.and_then(|r| r.config.as_ref()).unwrap_or(&empty);
    let new = &target.spec().config;
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| ConfigChange {
            key: k.clone(),
            from: old.get(k).cloned(),
            to: new.get(k).cloned(),
        })
        .collect()
}

fn plan_target(input: &PlanInput, shared: &mut Shared, target: &Target) -> Action {
    let record = input
        .recorded
        .targets
        .get(target.name())
        .filter(|r| r.status != TargetStatus::Removed);
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
    if let Some(note) = &release.spec().deprecated {
        action
            .warnings
            .push(format!("{} {} is deprecated: {note}", target.spec().component, to));
    }
    action.config_diff = config_diff(record, target);
    let component = &target.spec().component;
    let releases: &[Release] = input.desired.releases.get(component).map_or(&[], Vec::as_slice);
    let deployable =
        |r: &Release| !r.spec().yanked && channel_allowed(target, r) && denied_by(governing, &r.version).is_none();
    let migrates = |r: &Release| channel_allowed(target, r);

    match current {
        None => {
            action.action = ActionKind::Install;
            action.stops = vec![to.clone()];
            action.migrations = path::up_migrations(releases, None, &[release], migrates);
        }
        Some(current) if current < to => {
            action.action = ActionKind::Upgrade;
            match path::upgrade_stops(releases, current, to, deployable) {
                Ok(stops) => {
                    action.stops = stops.iter().map(|s| s.version.clone()).collect();
                    action.migrations = path::up_migrations(releases, Some(current), &stops, migrates);
                }
                Err(no_path) => action.violations.push(no_path.0),
            }
        }
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
            action.migrations = path::down_migrations(applied, current, to);
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
        Some(_) => {
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
    }
    action.update_type = match action.action {
        ActionKind::Install | ActionKind::Upgrade => Some(policy::update_type(current, to)),
        // Set above for a downgrade to a version that never ran here.
        ActionKind::Downgrade => action.update_type,
        _ => None,
    };
    action.releases = match (action.action, current) {
        (ActionKind::Install, _) => vec![ReleaseNote::of(release)],
        (ActionKind::Upgrade, Some(current)) => releases
            .iter()
            .filter(|r| &r.version > current && &r.version <= to && migrates(r))
            .map(ReleaseNote::of)
            .collect(),
        (ActionKind::Downgrade, Some(current)) => releases
            .iter()
            .filter(|r| &r.version > to && &r.version <= current && migrates(r))
            .map(ReleaseNote::of)
            .collect(),
        _ => Vec::new(),
    };
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

/// Pushes every reason the action cannot start now onto `action.blocked_by` (all of them, not
/// just the first), and onto `action.violations` a gate that can never open (a window that
/// never opens, more approvals required than approvers listed).
///
/// Waves and dependencies need every action, so [`plan_rollouts`] and [`gate_dependencies`]
/// add theirs afterwards.
fn gates(
    input: &PlanInput,
    shared: &mut Shared,
    target: &Target,
    governing: Governing,
    record: Option<&TargetRecord>,
    release: &Release,
    action: &mut Action,
) {
    let blockers = &mut action.blocked_by;
    if target.spec().suspend {
        blockers.push(Blocker::new(
            BlockerKind::Suspended,
            "target is suspended (spec.suspend: true)",
        ));
    }
    if governing.spec().suspend {
        blockers.push(Blocker::new(
            BlockerKind::Suspended,
            format!("policy `{}` is suspended", governing.name().unwrap_or("default")),
        ));
    }
    if let Some(r) = record {
        if r.status == TargetStatus::InProgress {
            blockers.push(in_progress_blocker(r));
        }
        if let Some(last) = &r.last_attempt
            && matches!(last.outcome, Some(Outcome::Failed | Outcome::RolledBack))
            && last.to == release.version
            && (action.action != ActionKind::Config || last.config_hash.as_deref() == Some(target.config_hash.as_str()))
            // Any change to the target's spec since the attempt (e.g. `retry`) re-arms it.
            && last.spec_hash.as_ref().is_none_or(|h| *h == target.spec_hash())
        {
            let retry = format!(
                "to try again, bump its spec.retry (`gantry retry {}`) or change its spec (fix forward or revert)",
                target.name()
            );
            blockers.push(Blocker::new(
                BlockerKind::Halted,
                format!(
                    "the last attempt to {} ({}) ended {}: {}; {retry}",
                    last.to,
                    last.id,
                    last.outcome.map_or("", Outcome::as_str),
                    if last.message.is_empty() {
                        "no message"
                    } else {
                        &last.message
                    }
                ),
            ));
        }
    }
    if matches!(
        action.action,
        ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
    ) && let Some(kind) = action.update_type
        && let Some(at) = release_eligible_at(input, governing, release, kind)
        && at > input.now
    {
        let mut b = Blocker::new(
            BlockerKind::ReleaseAge,
            format!(
                "{} {} was released too recently for a {} update under policy `{}`",
                target.spec().component,
                release.version,
                kind.as_str(),
                governing.name().unwrap_or("default")
            ),
        );
        b.until = Some(at);
        blockers.push(b);
    }

    match shared.windows.verdict(target.labels(), window_scope(governing, action)) {
        WindowVerdict::Open => {}
        WindowVerdict::Closed { reason, opens_at } => {
            let mut b = Blocker::new(BlockerKind::Window, reason);
            b.opens_at = Some(opens_at);
            action.blocked_by.push(b);
        }
        WindowVerdict::Never { reason } => action.violations.push(reason),
    }

    // Reverts (to a rollback point: no `update_type`) and config changes need no approvals.
    if let (ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade, Some(kind)) =
        (action.action, action.update_type)
    {
        let rule = governing.rule(kind);
        if rule.approvals > 0 {
            let from_commit = input
                .evidence
                .commit_approvers
                .get(target.name())
                .into_iter()
                .flatten()
                .map(String::as_str);
            let from_manifests = shared
                .approvals
                .matching(&target.spec().component, &release.version, target.labels());
            let (approvers, notes) = crate::policy::approvals::approvers_for(
                input.evidence.trusted.as_ref(),
                target.name(),
                from_commit,
                from_manifests,
                release,
            );
            let tally = Tally::count(rule, approvers);
            if tally.unreachable() {
                action.violations.push(format!(
                    "policy `{}` requires {} approvals for a {} update but lists only {} approvers ({}); lower `approvals` or add approvers",
                    governing.name().unwrap_or("default"),
                    tally.required,
                    kind.as_str(),
                    tally.eligible.len(),
                    tally.eligible.join(", ")
                ));
            } else if let Some(reason) = tally.shortfall() {
                let reason = std::iter::once(reason).chain(notes).collect::<Vec<_>>().join("; ");
                action.blocked_by.push(Blocker::new(BlockerKind::Approval, reason));
            }
            action.approvals = Some(ApprovalState {
                required: tally.required,
                have: tally.have,
                missing: tally.missing,
                eligible: tally.eligible,
            });
        }
    }
}

/// Which window rules hold an action (SPEC §2): installs and upgrades follow their update
/// type's rule (`windows: false` leaves only freezes), config changes the `patch` rule;
/// downgrades only freezes, unless `rollback.respectWindows` (then all of them) or
/// `rollback.respectDenyWindows: false` (then none).
fn window_scope(governing: Governing, action: &Action) -> WindowScope {
    let by_rule = |kind: UpdateType| {
        if governing.rule(kind).windows {
            WindowScope::AllowAndDeny
        } else {
            WindowScope::DenyOnly
        }
    };
    match action.action {
        ActionKind::Install | ActionKind::Upgrade => by_rule(action.update_type.unwrap_or(UpdateType::Major)),
        ActionKind::Config => by_rule(UpdateType::Patch),
        // A downgrade to a version that never ran here follows the upgrade rules.
        ActionKind::Downgrade if action.update_type.is_some() => {
            by_rule(action.update_type.unwrap_or(UpdateType::Major))
        }
        ActionKind::Downgrade => {
            let rollback = &governing.spec().rollback;
            if rollback.respect_windows {
                WindowScope::AllowAndDeny
            } else if rollback.respect_deny_windows == Some(false) {
                WindowScope::Ignore
            } else {
                WindowScope::DenyOnly
            }
        }
        ActionKind::Noop | ActionKind::Remove => WindowScope::Ignore,
    }
}

/// The governing policy of an action, by the name the per-target pass recorded.
fn governing_by_name<'a>(desired: &'a Desired, name: Option<&str>) -> Governing<'a> {
    name.and_then(|n| desired.policies.iter().find(|p| p.manifest.name == n))
        .map_or(Governing::BuiltIn, Governing::Declared)
}

/// Groups installs and upgrades into rollouts, assigns waves, and blocks the targets whose
/// wave may not start yet (`wave`) or whose rollout is halted (`halted`).
///
/// A rollout is keyed by (component, version, policy); its members are the targets whose
/// action starts it (violations excluded: they never run and would hold a wave forever) plus
/// the desired targets the state branch records in `rollouts/<component>@<version>.yaml`.
/// Downgrades to a rollback point skip waves: a revert goes everywhere at once; a downgrade to a
/// version that never ran on the target is grouped like an upgrade.
///
/// # Guarantees
/// Linear in the number of actions (plus sorting each rollout once).
fn plan_rollouts(input: &PlanInput, actions: &mut [Action]) -> Vec<Rollout> {
    type Key = (String, Version, Option<String>);
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (i, a) in actions.iter().enumerate() {
        if (matches!(a.action, ActionKind::Install | ActionKind::Upgrade)
            || (a.action == ActionKind::Downgrade && a.update_type.is_some()))
            && a.status != Status::Violation
            && let Some(to) = a.to.clone()
        {
            groups
                .entry((a.component.clone(), to, a.policy.clone()))
                .or_default()
                .push(i);
        }
    }
    let policy_of: HashMap<&str, Option<&str>> = actions
        .iter()
        .map(|a| (a.target.as_str(), a.policy.as_deref()))
        .collect();
    // Targets per (component, policy), for stages (`after`) to look at the stage before.
    let mut stages: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    if input.desired.policies.iter().any(|p| p.manifest.spec.after.is_some()) {
        for a in actions.iter() {
            if let Some(policy) = a.policy.as_deref() {
                stages
                    .entry((a.component.as_str(), policy))
                    .or_default()
                    .push(a.target.as_str());
            }
        }
    }
    let mut wave_blockers: Vec<(usize, String, Blocker)> = Vec::new();
    let mut rollouts = Vec::with_capacity(groups.len());
    for ((component, version, policy_name), indices) in groups {
        let governing = governing_by_name(input.desired, policy_name.as_deref());
        let record = input.recorded.rollouts.get(&(component.clone(), version.clone()));
        let labels_of = |name: &str| input.desired.targets.get(name).map(|t| t.labels());
        let mut members: Vec<Member> = indices
            .iter()
            .map(|&i| Member {
                name: actions[i].target.as_str(),
                labels: labels_of(&actions[i].target),
            })
            .collect();
        if let Some(record) = record {
            members.extend(
                record
                    .targets
                    .keys()
                    .filter(|t| policy_of.get(t.as_str()).is_some_and(|p| *p == policy_name.as_deref()))
                    .map(|t| Member {
                        name: t.as_str(),
                        labels: labels_of(t),
                    }),
            );
        }
        let spec = governing.spec();
        // Health checks run through every soak when the policy or the component has any.
        let component_health = input
            .desired
            .components
            .get(&component)
            .is_some_and(|c| c.spec.steps.health.is_some());
        let analysis = (component_health || !spec.health.checks.is_empty()).then(|| {
            governing
                .policy()
                .and_then(|p| p.health_interval)
                .filter(|i| !i.is_zero())
                .unwrap_or(crate::executor::health::DEFAULT_INTERVAL)
        });
        let rules = waves::WaveRules {
            specs: &spec.rollout.waves,
            soaks: governing.wave_soaks(),
            group_by: spec.rollout.group_by.as_deref(),
            analysis,
        };
        let planned = waves::assign(rules, &members, record);
        let stage = stage_blocker(input, governing, &component, &version, record, &stages);
        let progress = waves::progress(&planned, record, input.now);
        let halted = waves::halted(record, spec.rollout.max_failures);
        // A target whose spec changed since the halt (`gantry retry`) is no longer held by it.
        let held = |name: &str| {
            let Some(halt) = record.and_then(|r| r.halted.as_ref()) else {
                return true;
            };
            match (halt.specs.get(name), input.desired.targets.get(name)) {
                (Some(then), Some(target)) => *then == target.spec_hash(),
                _ => true,
            }
        };
        let wave_of: HashMap<&str, usize> = planned
            .iter()
            .enumerate()
            .flat_map(|(w, wave)| wave.targets.iter().map(move |t| (t.as_str(), w)))
            .collect();
        for &i in &indices {
            let Some(&w) = wave_of.get(actions[i].target.as_str()) else {
                continue;
            };
            let wave_name = planned[w].name.clone();
            // A target the rollout already started is past its wave gate, not past a halt: one
            // that left the version and comes back starts anew (entries are written when an
            // attempt finishes, so none of them is still running).
            if record.is_some_and(|r| r.targets.contains_key(&actions[i].target)) {
                if let Some(reason) = halted.as_ref().filter(|_| held(&actions[i].target)) {
                    wave_blockers.push((i, wave_name.clone(), Blocker::new(BlockerKind::Halted, reason.clone())));
                }
                wave_blockers.push((i, wave_name, Blocker::new(BlockerKind::Wave, String::new())));
                continue;
            }
            if let Some(reason) = halted.as_ref().filter(|_| held(&actions[i].target)) {
                wave_blockers.push((i, wave_name.clone(), Blocker::new(BlockerKind::Halted, reason.clone())));
            }
            if let Some(blocker) = &stage {
                wave_blockers.push((i, wave_name.clone(), blocker.clone()));
            }
            let blocker = match waves::gate(&planned, &progress, w) {
                WaveGate::Go => Blocker::new(BlockerKind::Wave, String::new()),
                WaveGate::WaitsFor { wave, finished, total } => Blocker::new(
                    BlockerKind::Wave,
                    format!(
                        "in wave {wave_name}: waits for wave {wave} to finish ({finished} of {total} targets done)"
                    ),
                ),
                WaveGate::Soaking { wave, until, analysis } => {
                    let when = if until > input.now { "ends" } else { "ended" };
                    let mut reason = format!("in wave {wave_name}: waits for wave {wave}: soak {when} at {until}");
                    if let Some(analysis) = analysis {
                        reason.push_str(&format!("; {analysis}"));
                    }
                    let mut b = Blocker::new(BlockerKind::Wave, reason);
                    b.until = Some(until);
                    b
                }
            };
            wave_blockers.push((i, wave_name, blocker));
        }
        rollouts.push(Rollout {
            component,
            version: version.clone(),
            policy: policy_name,
            waves: planned
                .into_iter()
                .zip(progress)
                .map(|(wave, p)| RolloutWave {
                    name: wave.name,
                    targets: wave.targets,
                    status: p.status,
                    soak_until: p.soak_until,
                    analysis: p.analysis,
                })
                .collect(),
            halted,
        });
    }
    // An empty reason marks "wave recorded, nothing to wait for".
    for (i, wave, blocker) in wave_blockers {
        actions[i].wave = Some(wave);
        if !blocker.reason.is_empty() {
            actions[i].blocked_by.push(blocker);
        }
    }
    rollouts
}

/// The blocker of a rollout whose policy comes `after` another (promotion across environments):
/// the other policy's targets of the component must all run `version`, converged, and have for
/// `after.soak`. `None` when the gate is open or the policy has no `after`.
fn stage_blocker(
    input: &PlanInput,
    governing: Governing,
    component: &str,
    version: &Version,
    record: Option<&crate::state::RolloutRecord>,
    stages: &HashMap<(&str, &str), Vec<&str>>,
) -> Option<Blocker> {
    let policy = governing.policy()?;
    let after = policy.manifest.spec.after.as_ref()?;
    let converged_since = |target: &str| -> Option<Timestamp> {
        let r = input.recorded.targets.get(target)?;
        if r.version.as_ref() != Some(version) || r.status != TargetStatus::Converged {
            return None;
        }
        let finished = record
            .and_then(|rec| rec.targets.get(target)?.finished.as_deref())
            .or_else(|| r.last_attempt.as_ref()?.finished.as_deref());
        Some(finished.and_then(|f| f.parse().ok()).unwrap_or(Timestamp::MIN))
    };
    let members: Vec<Option<Timestamp>> = stages
        .get(&(component, after.policy.as_str()))
        .map(|targets| targets.iter().map(|t| converged_since(t)).collect())
        .unwrap_or_default();
    let stage = &after.policy;
    match waves::stage_gate(&members, policy.after_soak, input.now) {
        waves::StageGate::Open => None,
        waves::StageGate::Waiting { done, total } => Some(Blocker::new(
            BlockerKind::Wave,
            format!(
                "waits for stage `{stage}` (policy `{}` comes after it): {done} of its {total} {component} targets run {version}",
                policy.manifest.name
            ),
        )),
        waves::StageGate::Soaking { since, until } => {
            let mut b = Blocker::new(
                BlockerKind::Wave,
                format!(
                    "waits for stage `{stage}` (policy `{}` comes after it): {component} {version} complete there since {since}, healthy for {} more until {until}",
                    policy.manifest.name,
                    crate::executor::human_duration(until.duration_since(input.now).unsigned_abs())
                ),
            );
            b.until = Some(until);
            Some(b)
        }
    }
}

/// Blocks installs and upgrades of a component until the targets of the components it
/// `dependsOn` with the same `tenant` label have converged (SPEC §2, Component).
///
/// A dependency target holds its dependents while its action changes its version (install,
/// upgrade, downgrade) or it has a violation (it cannot converge until fixed). Targets without
/// a `tenant` label have no dependencies; downgrades are not held (a revert must not wait).
fn gate_dependencies(input: &PlanInput, actions: &mut [Action]) {
    let tenant_of = |name: &str| input.desired.targets.get(name)?.labels().get("tenant");
    let mut pending: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        // A target whose last attempt failed is not a base to build on, even when its recorded
        // version is the desired one (a failed install that could not be undone; issue #10, bug 4).
        let failed = input.recorded.targets.get(&a.target).is_some_and(|r| {
            matches!(
                r.status,
                TargetStatus::Failed | TargetStatus::Unknown | TargetStatus::InProgress
            )
        });
        let unconverged = matches!(
            a.action,
            ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
        ) || (a.status == Status::Violation && a.action != ActionKind::Remove)
            || (failed && a.action != ActionKind::Remove);
        if unconverged && let Some(tenant) = tenant_of(&a.target) {
            pending
                .entry((a.component.as_str(), tenant.as_str()))
                .or_default()
                .push(i);
        }
    }
    if pending.is_empty() {
        return;
    }
    let mut blockers: Vec<(usize, Blocker)> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if !matches!(a.action, ActionKind::Install | ActionKind::Upgrade) || a.status == Status::Violation {
            continue;
        }
        let (Some(tenant), Some(component)) = (tenant_of(&a.target), input.desired.components.get(&a.component)) else {
            continue;
        };
        for dep in &component.spec.depends_on {
            for &j in pending.get(&(dep.as_str(), tenant.as_str())).into_iter().flatten() {
                let d = &actions[j];
                let what = if d.status == Status::Violation {
                    format!("{}: violation", d.component)
                } else if d.action == ActionKind::Noop || d.action == ActionKind::Config {
                    format!(
                        "{} {}: last attempt failed",
                        d.component,
                        d.to.as_ref().map_or_else(|| "none".to_string(), Version::to_string)
                    )
                } else {
                    format!(
                        "{} {} → {}",
                        d.component,
                        d.from.as_ref().map_or_else(|| "none".to_string(), Version::to_string),
                        d.to.as_ref().map_or_else(|| "none".to_string(), Version::to_string)
                    )
                };
                blockers.push((
                    i,
                    Blocker::new(
                        BlockerKind::Dependency,
                        format!(
                            "waits for {} ({what}) to finish first: component `{}` dependsOn `{dep}` (tenant {tenant})",
                            d.target, a.component
                        ),
                    ),
                ));
            }
        }
    }
    for (i, b) in blockers {
        actions[i].blocked_by.push(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{RawContent, RawFile, read_manifests, validate, validate::config_hash};
    use crate::state::{Halt, RolloutRecord, RolloutTarget, RolloutTargetStatus, WaveRecord};

    /// Regression (issue #9): `gantry status` printed `blocked by releaseage` (a lowercased
    /// `Debug` name) where JSON says `release_age`. User text comes from `Display`, and `Display`
    /// is the serialized name, for every user-facing enum and every variant.
    #[test]
    fn display_is_the_serialized_name_for_every_user_facing_enum() {
        fn check<T: std::fmt::Display + Serialize>(values: &[T]) {
            for v in values {
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(v.to_string()));
            }
        }
        use crate::policy::waves::WaveStatus;
        use crate::state::Outcome;
        check(&[
            BlockerKind::Window,
            BlockerKind::Approval,
            BlockerKind::Wave,
            BlockerKind::Dependency,
            BlockerKind::ReleaseAge,
            BlockerKind::Halted,
            BlockerKind::Suspended,
            BlockerKind::InProgress,
        ]);
        assert_eq!(BlockerKind::ReleaseAge.to_string(), "release_age");
        check(&[Status::Ready, Status::Blocked, Status::Violation, Status::Noop]);
        check(&[
            ActionKind::Install,
            ActionKind::Upgrade,
            ActionKind::Downgrade,
            ActionKind::Config,
            ActionKind::Noop,
            ActionKind::Remove,
        ]);
        check(&[Direction::Up, Direction::Down, Direction::Restore]);
        check(&[crate::manifest::Phase::Pre, crate::manifest::Phase::Post]);
        check(&[UpdateType::Patch, UpdateType::Minor, UpdateType::Major]);
        check(&[
            WaveStatus::Pending,
            WaveStatus::InProgress,
            WaveStatus::Soaking,
            WaveStatus::Complete,
        ]);
        check(&[
            TargetStatus::Converged,
            TargetStatus::InProgress,
            TargetStatus::Failed,
            TargetStatus::RolledBack,
            TargetStatus::Removed,
        ]);
        check(&[Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack]);
        check(&[
            RolloutTargetStatus::InProgress,
            RolloutTargetStatus::Succeeded,
            RolloutTargetStatus::Failed,
            RolloutTargetStatus::RolledBack,
        ]);
    }

    /// Desired state and compiled windows from one YAML stream.
    fn load(yaml: &str) -> (Desired, Vec<WindowSchedule>) {
        let file = RawFile {
            path: "all.yaml".into(),
            content: RawContent::Bytes(yaml.as_bytes().to_vec()),
        };
        let (manifests, diags) = read_manifests(None, &[file]);
        assert!(diags.is_empty(), "{diags:?}");
        let (desired, diags) = validate(manifests);
        assert!(diags.is_empty(), "{diags:?}");
        let windows = desired
            .windows
            .iter()
            .map(|w| WindowSchedule::compile(&w.name, &w.spec).unwrap())
            .collect();
        (desired, windows)
    }

    fn run(desired: &Desired, windows: &[WindowSchedule], recorded: &RecordedState, now: &str) -> Plan {
        plan(&PlanInput {
            desired,
            windows,
            recorded,
            evidence: &Evidence::default(),
            now: now.parse().unwrap(),
        })
    }

    fn converged(component: &str, version: &str) -> TargetRecord {
        TargetRecord {
            component: component.into(),
            version: Some(Version::parse(version).unwrap()),
            config_hash: Some(config_hash(&serde_json::Map::new())),
            config: None,
            applied_migrations: Vec::new(),
            status: TargetStatus::Converged,
            last_attempt: None,
            rollback_points: Vec::new(),
            observed_version: None,
        }
    }

    fn action<'p>(plan: &'p Plan, target: &str) -> &'p Action {
        plan.actions.iter().find(|a| a.target == target).unwrap()
    }

    fn kinds(a: &Action) -> Vec<BlockerKind> {
        a.blocked_by.iter().map(|b| b.kind).collect()
    }

    const HEADER: &str = "apiVersion: gantry.dev/v1\n";

    fn base(extra: &str) -> String {
        format!(
            "{HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: billing-1.0.0 }}\nspec: {{ component: billing, version: 1.0.0 }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec: {{ component: billing, version: 2.0.0 }}\n{extra}"
        )
    }

    fn target(name: &str, version: &str, labels: &str) -> String {
        format!(
            "---\n{HEADER}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: billing, version: \"{version}\" }}\n"
        )
    }

    /// 10 targets, t00 in ring 0; waves canary (ring 0, soak 30m) → half (50%, soak 30m) → all.
    fn staged() -> (Desired, Vec<WindowSchedule>) {
        let mut yaml = base(&format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: staged }}\nspec:\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: half, percent: 50, soak: 30m }}\n      - {{ name: all, percent: 100 }}\n"
        ));
        for i in 0..10 {
            let ring = if i == 0 { "0" } else { "1" };
            yaml.push_str(&target(&format!("t{i:02}"), "2.0.0", &format!("ring: \"{ring}\"")));
        }
        load(&yaml)
    }

    fn all_at_1(desired: &Desired) -> RecordedState {
        RecordedState {
            targets: desired
                .targets
                .keys()
                .map(|t| (t.clone(), converged("billing", "1.0.0")))
                .collect(),
            ..RecordedState::default()
        }
    }

    /// Marks `targets` as upgraded in `wave`, finished at `finished`.
    fn finish(recorded: &mut RecordedState, targets: &[String], wave: &str, finished: &str) {
        let key = ("billing".to_string(), Version::new(2, 0, 0));
        let record = recorded.rollouts.entry(key).or_insert_with(|| RolloutRecord {
            component: "billing".into(),
            version: Version::new(2, 0, 0),
            started: "2026-11-21T10:00:00Z".into(),
            waves: Vec::new(),
            targets: BTreeMap::new(),
            failures: 0,
            halted: None,
        });
        for t in targets {
            record.targets.insert(
                t.clone(),
                RolloutTarget {
                    wave: wave.into(),
                    status: RolloutTargetStatus::Succeeded,
                    started: "2026-11-21T10:00:00Z".into(),
                    finished: Some(finished.into()),
                },
            );
            recorded.targets.insert(t.clone(), converged("billing", "2.0.0"));
        }
    }

    fn ready(plan: &Plan) -> Vec<&str> {
        plan.actions
            .iter()
            .filter(|a| a.status == Status::Ready)
            .map(|a| a.target.as_str())
            .collect()
    }

    #[test]
    fn waves_gate_every_stage_of_a_rollout() {
        let (desired, windows) = staged();
        let mut recorded = all_at_1(&desired);

        // Stage 1: nothing started: only the canary may go.
        let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
        assert_eq!(ready(&p), vec!["t00"]);
        let rollout = &p.rollouts[0];
        let sizes: Vec<(&str, usize)> = rollout
            .waves
            .iter()
            .map(|w| (w.name.as_str(), w.targets.len()))
            .collect();
        assert_eq!(sizes, vec![("canary", 1), ("half", 4), ("all", 5)]);
        let half = rollout.waves[1].targets.clone();
        let all = rollout.waves[2].targets.clone();
        let waiting = action(&p, &half[0]);
        assert_eq!(waiting.wave.as_deref(), Some("half"));
        assert_eq!(kinds(waiting), vec![BlockerKind::Wave]);
        assert_eq!(
            waiting.blocked_by[0].reason,
            "in wave half: waits for wave canary to finish (0 of 1 targets done)"
        );

        // Stage 2: canary done at 10:10, soaking until 10:40.
        finish(&mut recorded, &["t00".into()], "canary", "2026-11-21T10:10:00Z");
        let p = run(&desired, &windows, &recorded, "2026-11-21T10:39:59Z");
        assert!(ready(&p).is_empty(), "{:?}", ready(&p));
        let b = &action(&p, &half[0]).blocked_by[0];
        assert_eq!(
            b.reason,
            "in wave half: waits for wave canary: soak ends at 2026-11-21T10:40:00Z"
        );
        assert_eq!(b.until.map(|t| t.to_string()).as_deref(), Some("2026-11-21T10:40:00Z"));
        assert_eq!(p.rollouts[0].waves[0].status, WaveStatus::Soaking);

        // Stage 3: soak over: the half wave is ready, the rest waits for it.
        let p = run(&desired, &windows, &recorded, "2026-11-21T10:40:00Z");
        let mut expected: Vec<&str> = half.iter().map(String::as_str).collect();
        expected.sort();
        assert_eq!(ready(&p), expected);
        assert_eq!(
            action(&p, &all[0]).blocked_by[0].reason,
            "in wave all: waits for wave half to finish (0 of 4 targets done)"
        );

        // Stage 4: half done at 11:00; the recorded completion time (11:05) wins.
        finish(&mut recorded, &half, "half", "2026-11-21T11:00:00Z");
        recorded.rollouts.values_mut().for_each(|r| {
            r.waves.push(WaveRecord {
                name: "half".into(),
                started: None,
                completed: Some("2026-11-21T11:05:00Z".into()),
                analysis: None,
            })
        });
        let p = run(&desired, &windows, &recorded, "2026-11-21T11:10:00Z");
        assert!(ready(&p).is_empty());
        assert_eq!(
            action(&p, &all[0]).blocked_by[0]
                .until
                .map(|t| t.to_string())
                .as_deref(),
            Some("2026-11-21T11:35:00Z")
        );

        // Stage 5: everything left goes.
        let p = run(&desired, &windows, &recorded, "2026-11-21T11:35:00Z");
        assert_eq!(ready(&p).len(), 5);
        assert!(
            p.rollouts[0].waves[..2]
                .iter()
                .all(|w| w.status == WaveStatus::Complete)
        );
    }

    #[test]
    fn halted_rollout_blocks_every_waiting_target() {
        let (desired, windows) = staged();
        let mut recorded = all_at_1(&desired);
        finish(&mut recorded, &["t00".into()], "canary", "2026-11-21T10:10:00Z");
        for r in recorded.rollouts.values_mut() {
            r.failures = 1;
            r.halted = Some(Halt {
                at: "2026-11-21T10:10:00Z".into(),
                target: "t00".into(),
                reason: "health check http failed".into(),
                specs: Default::default(),
            });
        }
        let p = run(&desired, &windows, &recorded, "2026-11-21T12:00:00Z");
        let waiting: Vec<&Action> = p.actions.iter().filter(|a| a.target != "t00").collect();
        assert_eq!(waiting.len(), 9);
        for a in waiting {
            assert_eq!(a.status, Status::Blocked);
            let halted = a.blocked_by.iter().find(|b| b.kind == BlockerKind::Halted).unwrap();
            assert!(
                halted.reason.contains("after t00 failed: health check http failed"),
                "{}",
                halted.reason
            );
        }
        assert!(p.rollouts[0].halted.is_some());
    }

    #[test]
    fn dependencies_wait_for_the_same_tenant_only() {
        let yaml = format!(
            "{HEADER}kind: Component\nmetadata: {{ name: ledger }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: ledger-1.0.0 }}\nspec: {{ component: ledger, version: 1.0.0 }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: ledger-1.1.0 }}\nspec: {{ component: ledger, version: 1.1.0 }}\n---\n\
             {HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ dependsOn: [ledger], steps: {{ deploy: [d] }} }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
             {HEADER}kind: Target\nmetadata: {{ name: acme-ledger, labels: {{ tenant: acme }} }}\nspec: {{ component: ledger, version: 1.1.0 }}\n---\n\
             {HEADER}kind: Target\nmetadata: {{ name: globex-ledger, labels: {{ tenant: globex }} }}\nspec: {{ component: ledger, version: 1.0.0 }}\n---\n\
             {HEADER}kind: Target\nmetadata: {{ name: acme-billing, labels: {{ tenant: acme }} }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
             {HEADER}kind: Target\nmetadata: {{ name: globex-billing, labels: {{ tenant: globex }} }}\nspec: {{ component: billing, version: 2.0.0 }}\n"
        );
        let (desired, windows) = load(&yaml);
        let mut recorded = RecordedState::default();
        recorded
            .targets
            .insert("acme-ledger".into(), converged("ledger", "1.0.0"));
        recorded
            .targets
            .insert("globex-ledger".into(), converged("ledger", "1.0.0"));
        let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
        let acme = action(&p, "acme-billing");
        assert_eq!(acme.status, Status::Blocked);
        assert_eq!(kinds(acme), vec![BlockerKind::Dependency]);
        assert_eq!(
            acme.blocked_by[0].reason,
            "waits for acme-ledger (ledger 1.0.0 → 1.1.0) to finish first: component `billing` dependsOn `ledger` (tenant acme)"
        );
        assert_eq!(
            action(&p, "globex-billing").status,
            Status::Ready,
            "globex-ledger is converged"
        );
        assert_eq!(action(&p, "acme-ledger").status, Status::Ready);
        // Once acme-ledger converged, acme-billing goes.
        recorded
            .targets
            .insert("acme-ledger".into(), converged("ledger", "1.1.0"));
        let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
        assert_eq!(action(&p, "acme-billing").status, Status::Ready);
    }

    const WEEKEND: &str = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: eu-weekend }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  allow: [{ days: [sat], start: \"02:00\", end: \"06:00\" }]\n";
    const XMAS: &str = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: xmas }\nspec:\n  timezone: Europe/Berlin\n  deny: [{ dates: [2026-12-24] }]\n";

    #[test]
    fn closed_window_blocks_with_exact_opening_and_only_governed_targets() {
        let (desired, windows) = load(&format!(
            "{}{}{}{WEEKEND}",
            base(""),
            target("eu-1", "2.0.0", "region: eu"),
            target("us-1", "2.0.0", "region: us")
        ));
        // Friday 2026-11-20 10:00 UTC.
        let p = run(&desired, &windows, &RecordedState::default(), "2026-11-20T10:00:00Z");
        let eu = action(&p, "eu-1");
        assert_eq!(kinds(eu), vec![BlockerKind::Window]);
        assert_eq!(
            eu.blocked_by[0]
                .opens_at
                .as_ref()
                .map(crate::policy::window::rfc3339)
                .as_deref(),
            Some("2026-11-21T02:00:00+01:00")
        );
        assert_eq!(eu.blocked_by[0].reason, "outside the allow window of \"eu-weekend\"");
        assert_eq!(action(&p, "us-1").status, Status::Ready);
        // Inside the window.
        let p = run(&desired, &windows, &RecordedState::default(), "2026-11-21T01:30:00Z");
        assert_eq!(action(&p, "eu-1").status, Status::Ready);
    }

    #[test]
    fn patch_rule_without_windows_still_respects_freezes() {
        let policy = format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: urgent }}\nspec: {{ updates: {{ patch: {{ windows: false }} }} }}\n---\n{HEADER}kind: Release\nmetadata: {{ name: billing-2.0.1 }}\nspec: {{ component: billing, version: 2.0.1 }}\n"
        );
        let (desired, windows) = load(&format!(
            "{}{}{WEEKEND}{XMAS}",
            base(&policy),
            target("eu-1", "2.0.1", "region: eu")
        ));
        let mut recorded = RecordedState::default();
        recorded.targets.insert("eu-1".into(), converged("billing", "2.0.0"));
        let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
        assert_eq!(
            action(&p, "eu-1").status,
            Status::Ready,
            "allow window ignored for patches"
        );
        let p = run(&desired, &windows, &recorded, "2026-12-24T10:00:00Z");
        let a = action(&p, "eu-1");
        assert_eq!(kinds(a), vec![BlockerKind::Window]);
        assert_eq!(
            a.blocked_by[0]
                .opens_at
                .as_ref()
                .map(crate::policy::window::rfc3339)
                .as_deref(),
            Some("2026-12-25T00:00:00+01:00")
        );
    }

    #[test]
    fn downgrade_window_rules() {
        let cases = [
            // (rollback rules, now, expected blocker kinds)
            ("", "2026-11-20T10:00:00Z", vec![]), // allow windows skipped
            ("", "2026-12-24T10:00:00Z", vec![BlockerKind::Window]), // freezes hold
            (
                "rollback: { respectDenyWindows: false }",
                "2026-12-24T10:00:00Z",
                vec![],
            ),
            (
                "rollback: { respectWindows: true }",
                "2026-11-20T10:00:00Z",
                vec![BlockerKind::Window],
            ),
        ];
        for (rules, now, expected) in cases {
            let policy = format!("---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec: {{ {rules} }}\n");
            let (desired, windows) = load(&format!(
                "{}{}{WEEKEND}{XMAS}",
                base(&policy),
                target("eu-1", "1.0.0", "region: eu")
            ));
            let mut recorded = RecordedState::default();
            let mut record = converged("billing", "2.0.0");
            record.rollback_points = vec![Version::new(1, 0, 0)];
            recorded.targets.insert("eu-1".into(), record);
            let p = run(&desired, &windows, &recorded, now);
            let a = action(&p, "eu-1");
            assert_eq!(a.action, ActionKind::Downgrade);
            assert_eq!(kinds(a), expected, "{rules} at {now}");
            assert_eq!(a.wave, None, "downgrades skip waves");
        }
    }

    /// Issue #18, attack 6: a never-deployed lower version reached every target at once, with no
    /// approval, because any lower version was treated as a revert.
    #[test]
    fn downgrade_exemption_covers_only_rollback_points() {
        let policy = format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec:\n  updates:\n    major: {{ approvals: 1, windows: false }}\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ region: eu }} }}\n"
        );
        let (desired, windows) = load(&format!(
            "{}{}{}",
            base(&policy),
            target("eu-1", "1.0.0", "region: eu"),
            target("us-1", "1.0.0", "region: us")
        ));
        for (points, exempt) in [(vec![Version::new(1, 0, 0)], true), (vec![], false)] {
            let mut recorded = RecordedState::default();
            for name in ["eu-1", "us-1"] {
                let mut record = converged("billing", "2.0.0");
                record.rollback_points = points.clone();
                recorded.targets.insert(name.into(), record);
            }
            let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
            let (eu, us) = (action(&p, "eu-1"), action(&p, "us-1"));
            assert_eq!(eu.action, ActionKind::Downgrade);
            if exempt {
                assert_eq!((eu.status, us.status), (Status::Ready, Status::Ready));
                assert_eq!((eu.update_type, eu.wave.as_deref()), (None, None));
            } else {
                assert_eq!(eu.update_type, Some(UpdateType::Major));
                assert_eq!(kinds(eu), vec![BlockerKind::Approval], "{eu:?}");
                assert!(kinds(us).contains(&BlockerKind::Wave), "{us:?}");
                assert!(
                    eu.warnings.iter().any(|w| w.contains("1.0.0 never ran on this target")),
                    "{eu:?}"
                );
            }
        }
    }

    #[test]
    fn every_blocker_is_listed_with_release_age_until() {
        let policy = format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: slow }}\nspec:\n  suspend: true\n  updates:\n    major: {{ approvals: 1, minReleaseAge: 7d }}\n"
        );
        let yaml = base(&policy).replace(
            "spec: { component: billing, version: 2.0.0 }",
            "spec: { component: billing, version: 2.0.0, released: 2026-11-18 }",
        );
        let (desired, windows) = load(&format!("{yaml}{}{WEEKEND}", target("eu-1", "2.0.0", "region: eu")));
        let mut recorded = RecordedState::default();
        recorded.targets.insert("eu-1".into(), converged("billing", "1.0.0"));
        let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
        let a = action(&p, "eu-1");
        assert_eq!(
            kinds(a),
            vec![
                BlockerKind::Suspended,
                BlockerKind::ReleaseAge,
                BlockerKind::Window,
                BlockerKind::Approval
            ]
        );
        let age = &a.blocked_by[1];
        assert_eq!(
            age.until.map(|t| t.to_string()).as_deref(),
            Some("2026-11-25T00:00:00Z")
        );
        assert_eq!(a.approvals.as_ref().map(|s| s.missing), Some(1));
    }

    #[test]
    fn window_that_never_opens_is_a_violation() {
        let never = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: never }\nspec:\n  timezone: UTC\n  allow: [{ days: [sat], start: \"02:00\", end: \"06:00\" }]\n  deny: [{ days: [sat], start: \"00:00\", end: \"24:00\" }]\n";
        let (desired, windows) = load(&format!("{}{}{never}", base(""), target("t", "2.0.0", "a: b")));
        let p = run(&desired, &windows, &RecordedState::default(), "2026-11-20T10:00:00Z");
        let a = action(&p, "t");
        assert_eq!(a.status, Status::Violation);
        assert!(
            a.violations[0].contains("never open within 400 days"),
            "{:?}",
            a.violations
        );
    }
}
