//! Semantic validation: cross-checks the schema cannot express, producing the resolved [`Desired`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::version::{Version, VersionReq};

use super::diagnostic::{Diagnostic, Severity};
use std::sync::Arc;

use super::load::{Kind, Manifest, Manifests, first_of_each_name, index_by_name};
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
    pub manifest: Arc<Manifest<TargetSpec>>,
    /// The policies that select it, found once by [`validate`] (`policy::select_policy`).
    pub policies: PolicyMatch,
}

/// Which of [`Desired::policies`] select a target: the first two in their priority order, all
/// that `policy::select_policy` needs to pick one or report a tie. Matched once per commit
/// (issue #17: matching every policy's selector against every target was redone four times
/// per pass, at load, for approvals, and twice in the planner).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyMatch {
    pub first: Option<usize>,
    pub second: Option<usize>,
}

impl PolicyMatch {
    /// The first two of `policies` (in order) whose selector and components select `target`.
    pub fn of(policies: &[Policy], target: &Manifest<TargetSpec>) -> PolicyMatch {
        let mut matching = policies.iter().enumerate().filter(|(_, p)| {
            let spec = &p.manifest.spec;
            selector_matches(spec.selector.as_ref(), &target.labels)
                && (spec.components.is_empty() || spec.components.contains(&target.spec.component))
        });
        PolicyMatch {
            first: matching.next().map(|(i, _)| i),
            second: matching.next().map(|(i, _)| i),
        }
    }
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
        release_in(self.releases.get(component)?, version)
    }
}

/// The release of `version` among one component's `releases`, sorted by version as
/// [`Desired::releases`] holds them: found by bisection (issue #17: a fleet's pins were looked
/// up by a scan of every release, 10,000 times per pass).
pub fn release_in<'a>(releases: &'a [Release], version: &Version) -> Option<&'a Release> {
    debug_assert!(releases.is_sorted_by(|a, b| a.version <= b.version));
    releases
        .binary_search_by(|r| Ord::cmp(&r.version, version))
        .ok()
        .map(|at| &releases[at])
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
    // Targets' metadata is checked with their other per-manifest facts below.
    for kind_names in [
        names_of(&manifests.components),
        names_of(&manifests.releases),
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
    let facts = target_facts(&target_list);
    let first_of_name = first_of_each_name(Kind::Target, &target_list, &mut diags);
    let mut accepted: Vec<(String, Target)> = Vec::with_capacity(target_list.len());
    let mut parsed_versions = target::ParsedVersions::default();
    for (manifest, facts) in target_list.iter().zip(facts) {
        diags.extend(facts.metadata.iter().cloned());
        if !first_of_name
            .get(manifest.name.as_str())
            .is_some_and(|first| std::ptr::eq(*first, &**manifest))
        {
            continue;
        }
        let wanted = check_target(
            manifest,
            &components,
            &desired.releases,
            &mut parsed_versions,
            &mut diags,
        );
        check_config_schema(manifest, &config_schemas, &mut diags);
        if let Some(wanted) = wanted {
            accepted.push((
                manifest.name.clone(),
                Target {
                    wanted,
                    config_hash: facts.config_hash.clone(),
                    manifest: Arc::clone(manifest),
                    // Set below, once the policies are known.
                    policies: PolicyMatch::default(),
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
    for target in desired.targets.values_mut() {
        target.policies = PolicyMatch::of(&desired.policies, &target.manifest);
    }

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

/// What `validate` works out from a target manifest alone: its metadata's problems and its
/// config's hash.
#[derive(Debug, Clone)]
struct TargetFacts {
    metadata: Vec<Diagnostic>,
    config_hash: String,
}

impl TargetFacts {
    fn of(target: &Manifest<TargetSpec>) -> TargetFacts {
        let mut metadata = Vec::new();
        check_metadata(&target.origin, &target.name, &target.labels, &mut metadata);
        TargetFacts {
            metadata,
            config_hash: config_hash(&target.spec.config),
        }
    }
}

/// Target facts kept from the last validation, by manifest (the map holds each manifest, so
/// its address cannot be reused while it is a key).
type FactsMemo = foldhash::HashMap<usize, (Arc<Manifest<TargetSpec>>, Arc<TargetFacts>)>;

fn facts_memo() -> &'static std::sync::Mutex<FactsMemo> {
    static MEMO: std::sync::OnceLock<std::sync::Mutex<FactsMemo>> = std::sync::OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// [`TargetFacts`] of each target, in order. With the parse cache on (the daemon), a target
/// whose file did not change is the same `Arc` as in the last validation, and its facts are
/// taken from then (issue #17: hashing 10,000 configs and checking 40,000 labels was a third
/// of validating a one-file change); the memo then keeps this validation's targets only.
fn target_facts(targets: &[Arc<Manifest<TargetSpec>>]) -> Vec<Arc<TargetFacts>> {
    if crate::manifest::parse_cache::global().is_none() {
        return targets.iter().map(|t| Arc::new(TargetFacts::of(t))).collect();
    }
    let key = |t: &Arc<Manifest<TargetSpec>>| Arc::as_ptr(t) as usize;
    let mut before = std::mem::take(&mut *facts_memo().lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let mut now = <FactsMemo as foldhash::HashMapExt>::with_capacity(targets.len());
    let facts = targets
        .iter()
        .map(|target| {
            let facts = match before.remove(&key(target)) {
                // Held by the memo since: the same allocation, so the same manifest.
                Some((kept, facts)) if Arc::ptr_eq(&kept, target) => facts,
                _ => Arc::new(TargetFacts::of(target)),
            };
            now.insert(key(target), (Arc::clone(target), Arc::clone(&facts)));
            facts
        })
        .collect();
    *facts_memo().lock().unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    facts
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{RawContent, RawFile, read_manifests};

    const COMPONENT: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    deploy: [\"d.sh\"]\n";

    fn target(name: &str, config: &str) -> String {
        format!(
            "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: web, version: ^1, config: {{ {config} }} }}\n"
        )
    }

    fn manifests(target: &str) -> Manifests {
        let raw = [("components/web.yaml", COMPONENT), ("targets/eu-1.yaml", target)].map(|(path, text)| RawFile {
            path: path.to_string(),
            content: RawContent::Bytes(text.as_bytes().to_vec()),
        });
        read_manifests(None, &raw).0
    }

    fn name_diagnostics(diags: &[Diagnostic]) -> Vec<String> {
        diags
            .iter()
            .filter(|d| d.kind == "name")
            .map(|d| d.message.clone())
            .collect()
    }

    /// The memo of target facts (on with the parse cache) must give a manifest validated again
    /// the same diagnostics and hash, and a changed manifest its own.
    #[test]
    fn remembered_target_facts_are_those_of_the_same_manifest_only() {
        crate::manifest::parse_cache::enable();
        // A name only validation rejects (reading refuses most bad names; a Fleet's generated
        // targets are checked here only).
        let mut bad = manifests(&target("eu-1", "size: 1"));
        Arc::make_mut(&mut bad.targets[0]).name = "Eu_1".into();
        let (first, first_diags) = validate(bad.clone());
        // The same `Arc`s again, as the parse cache hands an unchanged file to the next pass.
        let (again, again_diags) = validate(bad.clone());
        assert_eq!(name_diagnostics(&first_diags).len(), 1, "{first_diags:?}");
        assert_eq!(name_diagnostics(&again_diags), name_diagnostics(&first_diags));
        assert_eq!(first.targets["Eu_1"].config_hash, again.targets["Eu_1"].config_hash);
        assert!(Arc::ptr_eq(&again.targets["Eu_1"].manifest, &bad.targets[0]));

        // The file edited: a new manifest, whose facts are its own.
        let mut fixed = bad.clone();
        let edited = Arc::make_mut(&mut fixed.targets[0]);
        edited.name = "eu-1".into();
        edited.spec.config.insert("size".into(), serde_json::json!(2));
        let (after, after_diags) = validate(fixed);
        assert!(name_diagnostics(&after_diags).is_empty(), "{after_diags:?}");
        let expected = config_hash(&after.targets["eu-1"].spec().config);
        assert_eq!(after.targets["eu-1"].config_hash, expected);
        assert_ne!(after.targets["eu-1"].config_hash, first.targets["Eu_1"].config_hash);
        // And the first manifest, seen again after another was validated, still has its own.
        let (back, back_diags) = validate(bad);
        assert_eq!(back.targets["Eu_1"].config_hash, first.targets["Eu_1"].config_hash);
        assert_eq!(name_diagnostics(&back_diags), name_diagnostics(&first_diags));
    }
}
