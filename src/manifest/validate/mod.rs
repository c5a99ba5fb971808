//! Semantic validation: cross-checks the schema cannot express, producing the resolved [`Desired`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::version::{Version, VersionReq};

use super::diagnostic::{Diagnostic, Severity};
use super::load::{Kind, Manifest, Manifests, index_by_name};
use super::types::*;
use super::values::{self, VersionWanted};

mod approval;
mod component;
mod config;
mod policy;
mod release;
mod target;
mod template;

pub use release::parse_released;
pub use template::template_problem;

use approval::check_approval;
use component::{check_component, check_dependency_cycles};
use config::validate_config;
use policy::{check_policy, check_policy_components, check_promotions};
use release::{check_release, check_requirements};
use target::{check_config_schema, check_target, compile_config_schemas};

/// The variables a step template may use (SPEC §5).
pub const TEMPLATE_VARIABLES: [&str; 12] = [
    "target",
    "component",
    "version",
    "from",
    "to",
    "release",
    "migration",
    "attempt",
    "commit",
    "weight",
    "artifact",
    "artifacts",
];

/// The built-in executor a component gets when it names none.
pub const BUILTIN_EXECUTOR: &str = "shell";

/// A release with its parsed version and dates.
#[derive(Debug, Clone)]
pub struct Release {
    pub version: Version,
    pub released: Option<jiff::Timestamp>,
    pub upgrade_from: Option<VersionReq>,
    /// `spec.requires`, parsed, by component name.
    pub requires: Vec<Requires>,
    pub manifest: Manifest<ReleaseSpec>,
}

/// One parsed `requires` entry: the versions of `component` a release runs with, on the targets
/// sharing the release's target's value of the `scope` label.
#[derive(Debug, Clone, PartialEq)]
pub struct Requires {
    pub component: String,
    pub versions: VersionReq,
    pub scope: String,
}

impl std::fmt::Display for Requires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.component, self.versions)
    }
}

impl Release {
    pub fn spec(&self) -> &ReleaseSpec {
        &self.manifest.spec
    }
    /// The prerelease channel: the first dot-separated word of the prerelease tag.
    pub fn channel(&self) -> Option<&str> {
        self.version.channel()
    }
}

/// A target with its parsed version wish and config hash.
#[derive(Debug, Clone)]
pub struct Target {
    pub wanted: VersionWanted,
    /// sha256 of the canonical JSON of `spec.config`.
    pub config_hash: String,
    /// Shared with the parse cache's copy (see `Manifests::targets`).
    pub manifest: std::sync::Arc<Manifest<TargetSpec>>,
}

impl Target {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    /// sha256 of the canonical JSON of the whole spec: any change to it (a new version, config,
    /// `retry`) re-arms a halted target (SPEC §3).
    pub fn spec_hash(&self) -> String {
        match serde_json::to_value(&self.manifest.spec) {
            Ok(serde_json::Value::Object(map)) => config_hash(&map),
            _ => String::new(),
        }
    }
    pub fn spec(&self) -> &TargetSpec {
        &self.manifest.spec
    }
    pub fn labels(&self) -> &Labels {
        &self.manifest.labels
    }
}

/// Parsed durations and version sets of a policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub deny: Vec<VersionWanted>,
    pub step_timeout: Option<Duration>,
    /// `health`, typed: the checks the executor runs as they are here.
    pub health: super::health::HealthSettings,
    /// `minReleaseAge` per update type: patch, minor, major.
    pub min_release_age: [Option<Duration>; 3],
    /// `minReleaseAge` of `updates.emergency`, when it has one.
    pub emergency_min_release_age: Option<Duration>,
    /// Soak per wave, in wave order.
    pub wave_soak: Vec<Option<Duration>>,
    /// The parsed `after` per wave, in wave order (`None`: the wave has none).
    pub wave_after: Vec<Option<WaveStage>>,
    /// The parsed `after.soak` (zero when `after` has none).
    pub after_soak: Duration,
    /// The parsed `traffic.analysis`: how long each traffic weight is held (zero: none).
    pub traffic_analysis: Duration,
    pub manifest: Manifest<PolicySpec>,
}

/// The whole desired state of one commit, validated and indexed.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub config: RepoConfig,
    pub components: BTreeMap<String, Manifest<ComponentSpec>>,
    /// Per component, ascending by version.
    pub releases: BTreeMap<String, Vec<Release>>,
    pub targets: BTreeMap<String, Target>,
    /// Highest priority first, then by name.
    pub policies: Vec<Policy>,
    pub windows: Vec<Manifest<WindowSpec>>,
    pub approvals: Vec<Manifest<ApprovalSpec>>,
}

impl Desired {
    pub fn release(&self, component: &str, version: &Version) -> Option<&Release> {
        self.releases.get(component)?.iter().find(|r| &r.version == version)
    }
}

/// Whether every key of `selector` is a label with that value (an absent selector matches all).
pub fn selector_matches(selector: Option<&Labels>, labels: &Labels) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// sha256 of the canonical (sorted-key) JSON of a config map.
pub fn config_hash(config: &serde_json::Map<String, serde_json::Value>) -> String {
    use sha2::Digest;
    let canonical = serde_json::to_vec(config).unwrap_or_default();
    let digest = sha2::Sha256::digest(&canonical);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    digest
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char])
        .collect()
}

/// Cross-checks manifests and builds the resolved desired state.
///
/// Every problem becomes a diagnostic; the returned `Desired` holds what could be resolved
/// (a target whose version cannot be parsed is left out of it).
pub fn validate(mut manifests: Manifests) -> (Desired, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut desired = Desired {
        config: manifests.config.clone(),
        ..Desired::default()
    };

    validate_config(&manifests, &mut diags);
    // Fleets become Targets first, so theirs are checked exactly like written ones (issue #16).
    super::fleet::expand(&mut manifests, &mut diags);
    for kind_names in [
        names_of(&manifests.components),
        names_of(&manifests.releases),
        names_of(&manifests.targets),
        names_of(&manifests.policies),
        names_of(&manifests.windows),
        names_of(&manifests.approvals),
        names_of(&manifests.fleets),
    ] {
        for (origin, name, labels) in kind_names {
            check_metadata(origin, name, labels, &mut diags);
        }
    }

    let components = index_by_name(Kind::Component, &manifests.components, &mut diags);
    for component in components.values() {
        check_component(component, &manifests.config, &components, &mut diags);
    }
    check_dependency_cycles(&components, &mut diags);
    desired.components = components.iter().map(|(k, v)| (k.to_string(), (*v).clone())).collect();

    let releases = index_by_name(Kind::Release, &manifests.releases, &mut diags);
    let mut by_version: BTreeMap<(String, Version), &Manifest<ReleaseSpec>> = BTreeMap::new();
    for release in releases.values() {
        if let Some(parsed) = check_release(release, &components, &mut diags) {
            let key = (release.spec.component.clone(), parsed.version.clone());
            if let Some(first) = by_version.get(&key) {
                diags.push(release.origin.diagnostic(
                    Severity::Violation,
                    "duplicate",
                    "/spec/version",
                    format!(
                        "release {} of `{}` is declared twice (also by Release `{}` in {})",
                        key.1, key.0, first.name, first.origin.file
                    ),
                ));
                continue;
            }
            by_version.insert(key, release);
            desired
                .releases
                .entry(parsed.manifest.spec.component.clone())
                .or_default()
                .push(parsed);
        }
    }
    for list in desired.releases.values_mut() {
        list.sort_by(|a, b| a.version.cmp(&b.version));
    }
    check_requirements(&desired.releases, &mut diags);

    // Targets are many (issue #17): checked in one pass over the list, the first of each name
    // kept (`index_by_name` reports the others), and collected into the map in bulk.
    let target_list = std::mem::take(&mut manifests.targets);
    let config_schemas = compile_config_schemas(&components, &mut diags);
    let first_of_name: std::collections::HashSet<*const Manifest<TargetSpec>> =
        index_by_name(Kind::Target, &target_list, &mut diags)
            .into_values()
            .map(std::ptr::from_ref)
            .collect();
    let mut accepted: Vec<(String, Target)> = Vec::with_capacity(target_list.len());
    for manifest in target_list {
        if !first_of_name.contains(&std::ptr::from_ref(&*manifest)) {
            continue;
        }
        let parts = check_target(&manifest, &components, &desired.releases, &mut diags);
        check_config_schema(&manifest, &config_schemas, &mut diags);
        if let Some((wanted, config_hash)) = parts {
            accepted.push((
                manifest.name.clone(),
                Target {
                    wanted,
                    config_hash,
                    manifest,
                },
            ));
        }
    }
    desired.targets = accepted.into_iter().collect();

    let policies = index_by_name(Kind::Policy, &manifests.policies, &mut diags);
    for policy in policies.values() {
        check_policy_components(policy, &components, &mut diags);
        if let Some(parsed) = check_policy(policy, &mut diags) {
            desired.policies.push(parsed);
        }
    }
    check_promotions(&policies, &mut diags);
    desired.policies.sort_by(|a, b| {
        b.manifest
            .spec
            .priority
            .cmp(&a.manifest.spec.priority)
            .then(a.manifest.name.cmp(&b.manifest.name))
    });

    let windows = index_by_name(Kind::Window, &manifests.windows, &mut diags);
    desired.windows = windows.values().map(|w| (*w).clone()).collect();

    let approvals = index_by_name(Kind::Approval, &manifests.approvals, &mut diags);
    for approval in approvals.values() {
        check_approval(approval, &components, &mut diags);
    }
    desired.approvals = approvals.values().map(|a| (*a).clone()).collect();
    index_by_name(Kind::Fleet, &manifests.fleets, &mut diags);

    (desired, diags)
}

type NameRef<'a> = (&'a super::load::Origin, &'a str, &'a Labels);

fn names_of<'a, S: 'a, M: std::borrow::Borrow<Manifest<S>>>(items: &'a [M]) -> Vec<NameRef<'a>> {
    items
        .iter()
        .map(std::borrow::Borrow::borrow)
        .map(|m| (&m.origin, m.name.as_str(), &m.labels))
        .collect()
}

fn check_metadata(origin: &super::load::Origin, name: &str, labels: &Labels, diags: &mut Vec<Diagnostic>) {
    if !values::is_valid_name(name) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "name",
            "/metadata/name",
            format!(
                "metadata.name `{}` is invalid: use 1-63 lowercase letters, digits, `.`, `_` or `-`, starting and ending with a letter or digit",
                name.escape_debug()
            ),
        ));
    }
    for (key, value) in labels {
        if let Some(problem) = values::label_problem(key, value) {
            let pointer = format!("/metadata/labels/{}", key.replace('~', "~0").replace('/', "~1"));
            diags.push(origin.diagnostic(Severity::Invalid, "label", &pointer, problem));
        }
    }
}
