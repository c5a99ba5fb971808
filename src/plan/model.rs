//! The plan's data: actions, their blockers and approvals, rollouts and waves, and what the
//! planner reads ([`PlanInput`], [`Evidence`]). Types and their serialized view only; the
//! planning itself is in the sibling modules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::manifest::Version;
use jiff::Timestamp;
use serde::Serialize;

use crate::manifest::{Desired, Diagnostic, Release};
use crate::policy::UpdateType;
use crate::policy::waves::WaveStatus;
use crate::policy::window::WindowSchedule;
use crate::state::RecordedState;

use super::PlannedMigration;

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
    /// Shared (issue #17): the actions a window, a wave or a stage holds get one text between
    /// them instead of a copy each (serialized as the text itself).
    pub reason: Arc<str>,
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
    pub fn new(kind: BlockerKind, reason: impl Into<Arc<str>>) -> Self {
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
    /// Who may approve (empty = anyone); shared by the actions of one rule.
    pub eligible: Arc<[String]>,
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
    /// Shared by every action on the same path (issue #17).
    pub migrations: Arc<[PlannedMigration]>,
    pub wave: Option<String>,
    pub status: Status,
    pub blocked_by: Vec<Blocker>,
    pub config_diff: Vec<ConfigChange>,
    pub policy: Option<String>,
    pub approvals: Option<ApprovalState>,
    pub update_type: Option<UpdateType>,
    /// `emergency` when the release it moves to is one (absent otherwise, issue #16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<crate::manifest::Urgency>,
    /// The emergency release's `reason` (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// An upgrade whose `releases` include one marked `breaking: true`.
    pub breaking: bool,
    /// What the releases this action crosses say to a reviewer, in ascending version order: for
    /// an upgrade every release in (from, to] the target's channels allow (their migrations
    /// run whether or not they are stops), for an install the desired release, for a downgrade
    /// the releases in (to, from] it takes away. Shared by every action crossing the release,
    /// and the list by every action on the same path (issue #17: one reference count to raise
    /// per action, not one per release, on notes both planner threads share).
    pub releases: Arc<[Arc<ReleaseNote>]>,
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

    pub(super) fn of(release: &Release) -> Self {
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
    /// changed the target's desired version. A target without any is left out: the gates read
    /// a missing target as an empty set.
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
