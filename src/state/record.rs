//! Recorded state: what gantry knows it has done, as stored on the state branch (SPEC §4).
//!
//! `targets/<target>.yaml` holds a [`TargetRecord`]; `rollouts/<component>@<version>.yaml` holds a
//! [`RolloutRecord`]. These types are the one definition of that YAML, shared by the reader, the
//! writer and the planner.
//!
//! Records reject unknown fields. A field gantry does not know comes from a hand edit or from a
//! newer gantry; accepting it would drop it silently on the next write of that record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::manifest::Phase;

/// The status a target was left in by its last attempt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Running the recorded version, last attempt succeeded.
    Converged,
    /// An attempt is under way (or was interrupted; the journal says where).
    InProgress,
    /// The last attempt failed and could not be rolled back completely.
    Failed,
    /// The last attempt failed and was rolled back to the version it started from.
    RolledBack,
    /// The target was deleted from the desired state and its removal recorded.
    Removed,
    /// The last attempt failed and where the target stands is not known: a step the reconciler
    /// was killed during (so it may have taken effect) failed when run again. `version` and
    /// `applied_migrations` hold the last known state; `last_attempt.message` says which step.
    /// Like `failed`, it holds the target (and its dependents) until its spec changes.
    Unknown,
    /// The component's `observe` step reported another version than the recorded one
    /// (`observed_version` says what it saw). Set by the observe stage (SPEC §4, drift).
    Drifted,
}

impl TargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Converged => "converged",
            TargetStatus::InProgress => "in_progress",
            TargetStatus::Failed => "failed",
            TargetStatus::RolledBack => "rolled_back",
            TargetStatus::Removed => "removed",
            TargetStatus::Unknown => "unknown",
            TargetStatus::Drifted => "drifted",
        }
    }
}

impl std::fmt::Display for TargetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a finished attempt ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    RolledBack,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A migration that has run `up` on a target and not been undone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppliedMigration {
    /// The version of the release the migration belongs to.
    pub release: crate::manifest::Version,
    pub id: String,
    pub phase: Phase,
    /// The `down` argv as it was declared when `up` ran, so a downgrade can undo it even if
    /// the release manifest changed since. Absent = irreversible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<Vec<String>>,
    /// The attempt that applied it.
    pub attempt: String,
}

/// The last attempt on a target.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttemptRecord {
    pub id: String,
    pub desired_commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<crate::manifest::Version>,
    pub to: crate::manifest::Version,
    /// The action kind (`install`, `upgrade`, `downgrade`, `config`, `remove`).
    pub action: String,
    /// RFC 3339.
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The config hash the attempt applied, so a failed config change stays halted until the
    /// config changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The last lines of output of the step that decided the outcome.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_tail: String,
    /// The hash of the target's spec the attempt ran for: a failed attempt holds the target
    /// until the spec changes (any field, e.g. `retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// The approvers whose approvals counted for the release (`approvals.have` of the plan the
    /// attempt started from). Absent in records written before it was recorded (issue #15).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The reason of the emergency release the attempt moved to (issue #16); absent for a
    /// normal release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

/// `targets/<name>.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetRecord {
    pub component: String,
    /// The version the target runs, as far as gantry knows. Absent = nothing installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<crate::manifest::Version>,
    /// sha256 of the canonical JSON of the config the target was last deployed/reloaded with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The config values behind `config_hash`, so plans can show what a change alters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RecordedConfig>,
    #[serde(default)]
    pub applied_migrations: Vec<AppliedMigration>,
    pub status: TargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<AttemptRecord>,
    /// Versions this target ran before, newest first, at most `keepRollbackPoints`.
    #[serde(default)]
    pub rollback_points: Vec<crate::manifest::Version>,
    /// What the component's `observe` step last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_version: Option<String>,
}

/// The config values a target was last deployed or reloaded with (`config` of its record),
/// and, once the planner has found them equal to a desired config, their hash.
///
/// The planner compares each recorded config with the desired one on every pass (issue #17: on
/// 10,000 targets that was a fifth of planning them). It does not trust the record's
/// `config_hash` for that: the state branch can be edited by hand, and the plan's config diff
/// shows what the record holds. Once a comparison found the values equal to a desired config,
/// that config's hash is kept here, and the next pass over the same record (the daemon's:
/// records are shared between passes while the state branch does not move) compares two hashes
/// instead: a desired config with the kept hash has the same JSON text as the one found equal,
/// so it is equal to these values too.
///
/// The values cannot be changed in place: a new config is a new `RecordedConfig` with no hash.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordedConfig {
    values: serde_json::Map<String, serde_json::Value>,
    /// `validate::config_hash` of `values`, once known.
    #[serde(skip)]
    hash: std::sync::OnceLock<Box<str>>,
}

impl RecordedConfig {
    /// The recorded values.
    pub fn values(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.values
    }

    /// The recorded values, taken out.
    pub fn into_values(self) -> serde_json::Map<String, serde_json::Value> {
        self.values
    }

    /// The hash kept by [`Self::known_equal`], once it found these values equal to a config.
    pub fn kept_hash(&self) -> Option<&str> {
        self.hash.get().map(|hash| &**hash)
    }

    /// Whether these values are known to equal `values`, whose `validate::config_hash` is
    /// `hash` (the caller's promise: the planner passes a desired target's config and its hash).
    /// Answered by the hashes once an earlier call found the values equal to a config, by value
    /// before. `true` is always exact; `false` after a kept hash says only that `values` differ
    /// in JSON text from the config found equal (`0.0` and `-0.0` are equal values with other
    /// texts): the caller then compares key by key.
    pub fn known_equal(&self, values: &serde_json::Map<String, serde_json::Value>, hash: &str) -> bool {
        if let Some(known) = self.hash.get() {
            return **known == *hash;
        }
        let equal = self.values == *values;
        if equal {
            // Kept: a config with this hash has the JSON text of `values`, so is equal to them.
            let _ = self.hash.set(hash.into());
        }
        equal
    }
}

impl From<serde_json::Map<String, serde_json::Value>> for RecordedConfig {
    fn from(values: serde_json::Map<String, serde_json::Value>) -> Self {
        RecordedConfig {
            values,
            hash: std::sync::OnceLock::new(),
        }
    }
}

/// Equal when the values are (the hash is only a memo of them).
impl PartialEq for RecordedConfig {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

/// The values alone, as the map they replace printed.
impl std::fmt::Debug for RecordedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.values.fmt(f)
    }
}

/// Progress of one target within a rollout.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RolloutTargetStatus {
    InProgress,
    Succeeded,
    Failed,
    RolledBack,
}

impl RolloutTargetStatus {
    /// The name users see (the YAML/JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutTargetStatus::InProgress => "in_progress",
            RolloutTargetStatus::Succeeded => "succeeded",
            RolloutTargetStatus::Failed => "failed",
            RolloutTargetStatus::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for RolloutTargetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One target's entry in a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutTarget {
    pub wave: String,
    pub status: RolloutTargetStatus,
    pub started: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

/// One wave's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaveRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// When every target of the wave finished; the next wave may start after its soak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
    /// The health analysis run through the wave's soak (absent: none ran yet, or the wave has
    /// no soak or no checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<WaveAnalysis>,
}

/// Where an analysis stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisStatus {
    /// Rounds are still due (or the last one had a failure below the threshold).
    Running,
    /// A round at or after the soak's end passed on every target still in the wave.
    Passed,
    /// A check failed `failureThreshold` rounds in a row (for a target: it was rolled back).
    Failed,
}

impl AnalysisStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisStatus::Running => "running",
            AnalysisStatus::Passed => "passed",
            AnalysisStatus::Failed => "failed",
        }
    }
}

/// The policy's health checks run on every target of a wave through its soak (SPEC §8).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WaveAnalysis {
    pub status: AnalysisStatus,
    /// Rounds run so far.
    pub rounds: u32,
    /// The scheduled instant of the latest round run (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round: Option<String>,
    /// Per target of the wave.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetAnalysis>,
    /// Per peer watched with the wave (`health.peers`): the rollout's other converged targets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<String, TargetAnalysis>,
}

/// One target's analysis.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetAnalysis {
    pub status: AnalysisStatus,
    /// Per check: consecutive failed rounds.
    #[serde(default)]
    pub failures: BTreeMap<String, u32>,
    /// Per check: what its last round said (the value a metric had, the status an endpoint gave).
    #[serde(default)]
    pub last: BTreeMap<String, String>,
}

/// Why and when a rollout stopped.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Halt {
    pub at: String,
    pub target: String,
    pub reason: String,
    /// The spec hash of every target of the rollout when it halted: a target whose spec has
    /// changed since (e.g. `gantry retry`) is no longer held by this halt.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub specs: BTreeMap<String, String>,
}

/// `rollouts/<component>@<version>.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutRecord {
    pub component: String,
    pub version: crate::manifest::Version,
    pub started: String,
    #[serde(default)]
    pub waves: Vec<WaveRecord>,
    #[serde(default)]
    pub targets: BTreeMap<String, RolloutTarget>,
    #[serde(default)]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<Halt>,
}

impl TargetRecord {
    /// The state branch path of a target's record.
    pub fn path(target: &str) -> String {
        format!("targets/{target}.yaml")
    }
}

impl RolloutRecord {
    /// The state branch path of a rollout.
    pub fn path(component: &str, version: &crate::manifest::Version) -> String {
        format!("rollouts/{component}@{version}.yaml")
    }
}

/// Everything read from the state branch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedState {
    /// The state branch commit this was read from (absent: no state branch yet).
    pub commit: Option<String>,
    pub targets: BTreeMap<String, TargetRecord>,
    /// Keyed by `(component, version)`.
    pub rollouts: BTreeMap<(String, crate::manifest::Version), RolloutRecord>,
}
