//! The planner: a pure function of (desired, recorded, evidence, now) → [`Plan`].
//!
//! No clock reads, no files, no processes. Everything time-dependent takes `now`; everything
//! read from git (approvals from commit trailers) arrives pre-computed in [`Evidence`].

pub mod path;

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use semver::Version;
use serde::Serialize;

use crate::manifest::{Desired, Diagnostic, Release, Severity, Target, VersionWanted};
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

/// Whether an action may run now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ready,
    Blocked,
    Violation,
    Noop,
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

/// One reason an action is blocked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocker {
    pub kind: BlockerKind,
    pub reason: String,
    /// For `window`: when the next allowed window opens (RFC 3339 with offset).
    pub opens_at: Option<String>,
    /// For time-bound blockers (`release_age`, `wave` soak): when it lifts (RFC 3339).
    pub until: Option<String>,
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
    pub from: Option<String>,
    pub to: Option<String>,
    /// Releases deployed in turn; the last is `to`.
    pub stops: Vec<String>,
    pub migrations: Vec<PlannedMigration>,
    pub wave: Option<String>,
    pub status: Status,
    pub blocked_by: Vec<Blocker>,
    pub config_diff: Vec<ConfigChange>,
    pub policy: Option<String>,
    pub approvals: Option<ApprovalState>,
    pub update_type: Option<UpdateType>,
    pub violations: Vec<String>,
    pub warnings: Vec<String>,
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
}

/// Everything the planner reads.
pub struct PlanInput<'a> {
    pub desired: &'a Desired,
    pub recorded: &'a RecordedState,
    pub evidence: &'a Evidence,
    pub now: Timestamp,
}

/// Plans every desired and recorded target.
///
/// # Guarantees
/// Pure and deterministic: the same input gives the same plan, actions sorted by target name.
pub fn plan(input: &PlanInput) -> Plan {
    let mut actions: Vec<Action> = input.desired.targets.values().map(|t| plan_target(input, t)).collect();
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
        from: record.version.as_ref().map(Version::to_string),
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
        violations: Vec::new(),
        warnings: Vec::new(),
    }
}

fn empty_action(target: &Target, from: Option<&Version>) -> Action {
    Action {
        target: target.name().to_string(),
        component: target.spec().component.clone(),
        action: ActionKind::Noop,
        from: from.map(Version::to_string),
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

fn plan_target(input: &PlanInput, target: &Target) -> Action {
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
    action.to = Some(to.to_string());
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
            action.stops = vec![to.to_string()];
            action.migrations = path::up_migrations(releases, None, &[release], migrates);
        }
        Some(current) if current < to => {
            action.action = ActionKind::Upgrade;
            match path::upgrade_stops(releases, current, to, deployable) {
                Ok(stops) => {
                    action.stops = stops.iter().map(|s| s.version.to_string()).collect();
                    action.migrations = path::up_migrations(releases, Some(current), &stops, migrates);
                }
                Err(no_path) => action.violations.push(no_path.0),
            }
        }
        Some(current) if current > to => {
            action.action = ActionKind::Downgrade;
            action.stops = vec![to.to_string()];
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
            } else {
                action.action = ActionKind::Noop;
            }
        }
    }
    action.update_type = match action.action {
        ActionKind::Install | ActionKind::Upgrade => Some(policy::update_type(current, to)),
        _ => None,
    };

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
    action.blocked_by = gates(input, target, governing, record, release, &action);
    action.status = if action.blocked_by.is_empty() {
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

/// Every reason the action cannot start now (all of them, not just the first).
fn gates(
    input: &PlanInput,
    target: &Target,
    governing: Governing,
    record: Option<&TargetRecord>,
    release: &Release,
    action: &Action,
) -> Vec<Blocker> {
    let mut blockers = Vec::new();
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
            && action.action != ActionKind::Config
        {
            blockers.push(Blocker::new(
                BlockerKind::Halted,
                format!(
                    "the last attempt to {} ({}) ended {}: {}; change the desired version (fix forward or revert) to try again",
                    last.to,
                    last.id,
                    last.outcome.map_or("", Outcome::as_str),
                    if last.message.is_empty() { "no message" } else { &last.message }
                ),
            ));
        }
    }
    if matches!(action.action, ActionKind::Install | ActionKind::Upgrade)
        && let Some(kind) = action.update_type
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
        b.until = Some(at.to_string());
        blockers.push(b);
    }
    blockers
}
