//! The serde types of every manifest kind and of `gantry.toml`, exactly as users write them.
//!
//! These types and `schemas/*.schema.json` describe the same documents; a test checks that both
//! accept and reject the same fixtures. Semantic rules that a schema cannot express (references,
//! cycles, semver ranges) live in `validate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Label key → value. Selectors match by equality on every listed key.
pub type Labels = BTreeMap<String, String>;

/// `metadata` of every manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An argv array whose elements are minijinja templates.
pub type Argv = Vec<String>;

/// `kind: Component`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ComponentSpec {
    /// A name from `[executors]` in gantry.toml; absent = the built-in `shell` executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// What upgrades first: a component's targets with the same `tenant` label, or shared
    /// targets of any tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    #[serde(default)]
    pub steps: Steps,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema every target's `config` must satisfy, checked by `validate` (issue #16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
    /// How its release versions are written and ordered: `semver` (default) or `calver` dates.
    #[serde(default, skip_serializing_if = "super::version::Versioning::is_semver")]
    pub versioning: super::version::Versioning,
}

/// The step argvs of a component.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Argv>,
    /// Runs before anything of an attempt changes the target; failing holds the action (no
    /// rollback) until the next pass retries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precheck: Option<Argv>,
    /// Sets the share of traffic the new version gets (`{{ weight }}`, 0-100) under a policy's
    /// `traffic` steps; 0 sends everything back to the old version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<Argv>,
    /// Stops the target's workflows (jobs, consumers, schedulers) before an attempt changes
    /// anything; declared together with `resume` (SPEC §5, quiesce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesce: Option<Argv>,
    /// Starts the workflows `quiesce` stopped: the last step of every attempt that ran
    /// `quiesce`, also of its rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Argv>,
}

impl Steps {
    /// Every defined step with its name, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Argv)> {
        [
            ("deploy", &self.deploy),
            ("health", &self.health),
            ("snapshot", &self.snapshot),
            ("restore", &self.restore),
            ("reload", &self.reload),
            ("observe", &self.observe),
            ("remove", &self.remove),
            ("precheck", &self.precheck),
            ("shift", &self.shift),
            ("quiesce", &self.quiesce),
            ("resume", &self.resume),
        ]
        .into_iter()
        .filter_map(|(name, argv)| argv.as_ref().map(|a| (name, a)))
    }
}

/// `kind: Release`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseSpec {
    pub component: String,
    pub version: String,
    /// Release date (`YYYY-MM-DD` or an RFC 3339 instant), for `minReleaseAge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<String>,
    /// Versions this release can be reached from directly; absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_from: Option<String>,
    #[serde(default)]
    pub breaking: bool,
    #[serde(default)]
    pub yanked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changelog: BTreeMap<String, Vec<String>>,
    /// `emergency`: governed by the policy's `updates.emergency` rule (issue #16).
    #[serde(default, skip_serializing_if = "Urgency::is_normal")]
    pub urgency: Urgency,
    /// Why an emergency release cannot wait (required for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Component → the versions of it this release runs with, on the targets that share the
    /// requirement's scope label (`tenant` unless it names another; SPEC §2, issue #16).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requires: BTreeMap<String, Requirement>,
}

/// How urgent a release is (SPEC §2, issue #16).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Governed by the rule of its update type.
    #[default]
    Normal,
    /// Governed by `updates.emergency` when the policy has one.
    Emergency,
}

impl Urgency {
    pub fn is_normal(&self) -> bool {
        *self == Urgency::Normal
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Emergency => "emergency",
        }
    }
}

/// Whether freezes (deny windows) hold an emergency release.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Freezes {
    /// Freezes hold it (the default).
    #[default]
    Hold,
    /// It may start during a freeze.
    Override,
}

impl Freezes {
    pub fn is_hold(&self) -> bool {
        *self == Freezes::Hold
    }
}

/// One `requires` entry of a Release (SPEC §2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Requirement {
    /// `system: ">=2.0"`: the targets of `system` with the same `tenant` label.
    Version(String),
    /// `system: { version: ">=2.0", scope: site }`: the targets of `system` with the same value
    /// of the `site` label.
    Scoped(ScopedRequirement),
}

/// A requirement evaluated within another label than `tenant`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScopedRequirement {
    pub version: String,
    /// The label key whose value the dependent and the required targets share.
    #[serde(default = "default_scope")]
    pub scope: String,
}

fn default_scope() -> String {
    DEFAULT_REQUIREMENT_SCOPE.to_string()
}

/// The label a requirement is evaluated within unless it names another (as `dependsOn`).
pub const DEFAULT_REQUIREMENT_SCOPE: &str = "tenant";

impl Requirement {
    /// The version requirement as written.
    pub fn version(&self) -> &str {
        match self {
            Requirement::Version(v) => v,
            Requirement::Scoped(s) => &s.version,
        }
    }

    /// The label key the requirement is evaluated within.
    pub fn scope(&self) -> &str {
        match self {
            Requirement::Version(_) => DEFAULT_REQUIREMENT_SCOPE,
            Requirement::Scoped(s) => &s.scope,
        }
    }

    /// The JSON pointer of the requirement's version text, given the entry's (`at`).
    pub fn version_pointer(&self, at: &str) -> String {
        match self {
            Requirement::Version(_) => at.to_string(),
            Requirement::Scoped(_) => format!("{at}/version"),
        }
    }
}

/// One migration of a release.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub id: String,
    pub up: Argv,
    /// Absent = irreversible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Argv>,
    #[serde(default)]
    pub phase: Phase,
}

/// When a migration runs relative to its stop's deploy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Before deploying the stop (the default).
    #[default]
    Pre,
    /// After the stop is deployed and healthy.
    Post,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file or URL a release ships, checked against its digest before any step runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `kind: Target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetSpec {
    pub component: String,
    /// An exact version (`2.0.0`) or a requirement (`^1.4`).
    pub version: String,
    /// Prerelease channels a requirement may pick (the first word of the prerelease tag).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub suspend: bool,
    /// A counter with no meaning but change: bumping it (`gantry retry`) is a reviewed change to
    /// the target that re-arms its halted attempt and rollout (SPEC §3).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `kind: Policy`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    /// Only targets of these components (empty: every component), besides the selector: a
    /// frontend can have its own policy without an invented label (issue #16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub updates: Updates,
    /// Versions or requirements never to be deployed to the selected targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    #[serde(default)]
    pub rollout: Rollout,
    #[serde(default)]
    pub health: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout: Option<String>,
    #[serde(default = "yes")]
    pub auto_rollback: bool,
    #[serde(default)]
    pub rollback: RollbackRules,
    #[serde(default = "default_keep_rollback_points")]
    pub keep_rollback_points: u32,
    /// What the next pass does with an attempt a killed reconciler left unfinished.
    #[serde(default)]
    pub on_interrupt: OnInterrupt,
    /// What a pass does with a target whose `observe` step reports another version than the
    /// recorded one.
    #[serde(default)]
    pub on_drift: OnDrift,
    /// True: the selected targets are planned and shown, never executed.
    #[serde(default)]
    pub suspend: bool,
    /// Promotion across environments: this policy's rollout of a version starts only once
    /// another policy's rollout of the same version is complete and healthy for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<After>,
    /// Traffic steps after the deploy of the new version (components with a `shift` step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

/// `traffic: { steps: [5, 25, 50, 100], analysis: 5m }`: the new version's share of traffic is
/// raised weight by weight, each held for `analysis` with the health checks passing; a failure
/// shifts back to 0 before rolling back. Blue-green is `steps: [100]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    pub steps: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<String>,
}

/// `after: { policy: staging, soak: 48h }`: the stage this policy's rollouts wait for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct After {
    /// The policy whose rollout of the same version must be complete first.
    pub policy: String,
    /// How long that rollout must have been complete (and not halted); absent = 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_keep_rollback_points() -> u32 {
    5
}

/// Rules per update type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Updates {
    #[serde(default)]
    pub patch: UpdateRule,
    #[serde(default)]
    pub minor: UpdateRule,
    #[serde(default)]
    pub major: UpdateRule,
    /// For releases with `urgency: emergency`, instead of the rule of their update type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<UpdateRule>,
}

/// What an update of one type needs before it may start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateRule {
    #[serde(default)]
    pub approvals: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// True (default): allow windows gate the start.
    #[serde(default = "yes")]
    pub windows: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_release_age: Option<String>,
    /// Only in `updates.emergency`: whether freezes hold it (`hold`, default) or not.
    #[serde(default, skip_serializing_if = "Freezes::is_hold")]
    pub freezes: Freezes,
}

impl Default for UpdateRule {
    fn default() -> Self {
        UpdateRule {
            approvals: 0,
            approvers: Vec::new(),
            windows: true,
            min_release_age: None,
            freezes: Freezes::Hold,
        }
    }
}

/// Staged rollout settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollout {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveSpec>,
    #[serde(default = "one")]
    pub max_parallel: u32,
    #[serde(default)]
    pub max_failures: u32,
    /// Targets sharing this label's value go in the same wave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            waves: Vec::new(),
            max_parallel: 1,
            max_failures: 0,
            group_by: None,
        }
    }
}

/// One cumulative wave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaveSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    /// Promotion gate of this wave alone: another stage must be complete and healthy first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<WaveAfter>,
}

/// `after: { policy: staging, soak: 48h }` or `after: { wave: canary, soak: 24h }` on a wave:
/// the wave starts only once that policy's rollout of the same version (or that earlier wave of
/// its own rollout) is complete and has been healthy for `soak`. Exactly one of `policy` and
/// `wave` (checked by validation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaveAfter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// How long that stage must have been complete (absent = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
}

/// A wave's `after`, parsed: what the wave waits for, and how long that must have been complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveStage {
    pub stage: StageRef,
    pub soak: std::time::Duration,
}

/// The stage a wave's `after` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageRef {
    /// Another policy's rollout of the same component and version.
    Policy(String),
    /// An earlier wave of the same rollout, by its index in `rollout.waves`.
    Wave(usize),
}

/// Health checks that must pass after every deploy and reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Health {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<String>,
    #[serde(default = "one")]
    pub failure_threshold: u32,
    /// Through every wave's soak, also run the checks on the wave's peers: the rollout's other
    /// converged targets, at the version they run. One failing fails the wave (its targets are
    /// rolled back): a canary that harms its neighbours is caught too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub peers: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            peers: false,
            checks: Vec::new(),
            interval: None,
            soak: None,
            failure_threshold: 1,
        }
    }
}

/// The kinds of health check.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckType {
    Http,
    Prometheus,
    Command,
}

/// One health check. Which fields apply depends on `type` (validated per type).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheck {
    pub name: String,
    #[serde(rename = "type")]
    pub check_type: CheckType,
    /// http, prometheus: the URL (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// http: the expected status code (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<u16>,
    /// http: a substring the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// prometheus: the instant query (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// prometheus: what an empty result means.
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// command: the argv (templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Argv>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// What a metric check does when its query returns nothing.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnNoData {
    #[default]
    Fail,
    Pass,
}

/// Downgrade rules.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RollbackRules {
    /// False (default): downgrades skip waves and allow windows.
    #[serde(default)]
    pub respect_windows: bool,
    /// True (default): deny windows still hold downgrades.
    #[serde(default = "yes_opt", skip_serializing_if = "Option::is_none")]
    pub respect_deny_windows: Option<bool>,
    /// Break-glass (issue #16): approvals a person-initiated downgrade to a rollback point (a
    /// `gantry rollback` commit, a revert) needs before it runs; 0 (default): none. Automatic
    /// rollbacks of a failed attempt are never held.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub approvals: u32,
    /// Who may approve such a downgrade (empty: anyone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

fn yes_opt() -> Option<bool> {
    Some(true)
}

/// What happens to an attempt a killed reconciler left behind.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnInterrupt {
    /// Re-run the interrupted step and continue (steps must be idempotent).
    #[default]
    Resume,
    /// Roll the attempt back.
    Rollback,
}

/// What happens to a drifted target (its `observe` step reports another version).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    /// Record it (`drifted`, with what was seen) and show it; change nothing.
    #[default]
    Report,
    /// Redeploy the recorded version.
    Reconcile,
}

/// `kind: Window`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WindowSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    pub timezone: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<DenyRule>,
}

/// Weekday names as written in windows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// A weekly allow window: on these days, from start to end (end before start crosses midnight).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// Absent = every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Day>>,
    pub start: String,
    pub end: String,
}

/// A freeze: whole dates, a datetime range, or a weekly time range. Exactly one form per rule.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DenyRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Day>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// `kind: Approval`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalSpec {
    pub component: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
    pub approved_by: Vec<String>,
}

/// One `dependsOn` entry of a Component (SPEC §2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Dependency {
    /// `ledger`: that component's targets with the same `tenant` label upgrade first.
    SameTenant(String),
    /// `{ component: kafka, selector: { scope: shared } }`: that component's targets matching the
    /// selector (all of them without one), whatever their tenant: shared infrastructure first.
    Shared(SharedDependency),
}

/// Shared targets a component waits for, across tenants.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SharedDependency {
    pub component: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Labels>,
}

impl Dependency {
    /// The component depended on.
    pub fn component(&self) -> &str {
        match self {
            Dependency::SameTenant(name) => name,
            Dependency::Shared(shared) => &shared.component,
        }
    }
}

/// `gantry.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    #[serde(default = "default_desired_branch")]
    pub desired_branch: String,
    #[serde(default = "default_state_branch")]
    pub state_branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    /// Where manifests live; absent = the whole tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub executors: BTreeMap<String, ExecutorConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyConfig>,
    /// The daemon's HTTP address.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub secrets: SecretsConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub housekeeping: HousekeepingConfig,
}

/// `[housekeeping]`: how often the daemon packs the state branch's loose objects and prunes
/// unreachable ones (`state::housekeeping`), and how old an unreachable object must be first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HousekeepingConfig {
    /// Time between two housekeeping passes of the daemon (a duration: `1h`).
    #[serde(default = "default_housekeeping_interval")]
    pub interval: String,
    /// Unreachable loose objects younger than this are kept (git's `gc.pruneExpire`: a commit
    /// being made next to the daemon writes its objects before the ref that reaches them).
    #[serde(default = "default_prune_after")]
    pub prune_after: String,
}

impl Default for HousekeepingConfig {
    fn default() -> Self {
        HousekeepingConfig {
            interval: default_housekeeping_interval(),
            prune_after: default_prune_after(),
        }
    }
}

fn default_housekeeping_interval() -> String {
    "1h".to_owned()
}
fn default_prune_after() -> String {
    "14d".to_owned()
}

/// `[logs]`: how much of each step's output `.git/gantry/logs` keeps, and for how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Bytes of output kept per step: the first and the last half; the middle is dropped.
    #[serde(default = "default_max_step_bytes")]
    pub max_step_bytes: u64,
    /// Step logs kept (the newest by modification time); older ones are deleted.
    #[serde(default = "default_logs_keep")]
    pub keep: usize,
    /// Step logs older than this are deleted (a duration: `30d`).
    #[serde(default = "default_logs_max_age")]
    pub max_age: String,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            max_step_bytes: default_max_step_bytes(),
            keep: default_logs_keep(),
            max_age: default_logs_max_age(),
        }
    }
}

fn default_max_step_bytes() -> u64 {
    crate::executor::DEFAULT_MAX_STEP_LOG_BYTES
}
fn default_logs_keep() -> usize {
    1000
}
fn default_logs_max_age() -> String {
    "30d".to_owned()
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            desired_branch: default_desired_branch(),
            state_branch: default_state_branch(),
            remote: None,
            poll_interval: default_poll_interval(),
            paths: None,
            executors: BTreeMap::new(),
            trust: None,
            notify: Vec::new(),
            listen: default_listen(),
            secrets: SecretsConfig::default(),
            logs: LogsConfig::default(),
            housekeeping: HousekeepingConfig::default(),
        }
    }
}

impl RepoConfig {
    /// `poll_interval` as a duration, through the one grammar manifests use
    /// ([`super::values::parse_duration`]); `validate` and the daemon both call this, so a value
    /// one accepts the other accepts too (a regression: `1h30m` passed `validate`, then the daemon
    /// refused it, and `10` the other way round).
    ///
    /// # Errors
    /// The user-facing message, prefixed with the field name.
    pub fn poll_interval(&self) -> Result<std::time::Duration, String> {
        match super::values::parse_duration(&self.poll_interval) {
            Ok(d) if d.is_zero() => Err(format!(
                "poll_interval: {} must be longer than 0 (e.g. 30s, 10m, 1h30m)",
                serde_json::Value::String(self.poll_interval.clone())
            )),
            Ok(d) => Ok(d),
            Err(e) => Err(format!("poll_interval: {e}")),
        }
    }
}

fn default_desired_branch() -> String {
    "main".into()
}
fn default_state_branch() -> String {
    "gantry/state".into()
}
fn default_poll_interval() -> String {
    "30s".into()
}
fn default_listen() -> String {
    "127.0.0.1:9184".into()
}

/// The types of executor.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorType {
    Shell,
    Plugin,
}

/// One named executor instance.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    #[serde(rename = "type")]
    pub executor_type: ExecutorType,
    /// plugin: the program and its arguments (relative paths resolve in the desired checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// `[trust]`: only reconcile commits signed by these keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    pub allowed_signers: String,
}

/// One webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// How long before a target's projected start `upgrade_scheduled` is sent, each once
    /// (durations; absent = [`DEFAULT_LEAD_TIMES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_times: Option<Vec<String>>,
}

/// The `upgrade_scheduled` lead times of a webhook that names none: what customers of an
/// installation asked for (a week, a day and an hour ahead).
pub const DEFAULT_LEAD_TIMES: [&str; 3] = ["7d", "24h", "1h"];

/// `[secrets]`: which `vars` are redacted in logs, plans, state and notifications.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Var names that are secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vars: Vec<String>,
    /// Var names matching any of these glob-like patterns (`*token*`) are secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
}

/// `kind: Fleet`: Targets generated from a matrix of tenants × components (SPEC §2, issue #16).
///
/// Every pair gets a Target named `<tenant>-<component>`, labelled `tenant: <tenant>` and
/// `fleet: <fleet name>`, whose fields come from `defaults`, then the overrides for its
/// component, its tenant, and its tenant × component, in that order (a later layer wins; the
/// maps `config`, `vars` and `labels` merge key by key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetSpec {
    /// Tenant names (each becomes a `tenant` label and the first part of a target's name).
    pub tenants: Vec<String>,
    /// Component names (each a Component manifest).
    pub components: Vec<String>,
    /// What every generated target gets.
    #[serde(default)]
    pub defaults: FleetValues,
    /// Per component, per tenant, or per tenant × component.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<FleetOverride>,
}

/// The Target fields a Fleet layer sets; absent fields are left to the layers before it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetValues {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
}

/// One `overrides` entry of a Fleet: a tenant, a component or both, and the fields it sets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FleetOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
}
