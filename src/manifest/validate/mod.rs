//! Semantic validation: cross-checks the schema cannot express, producing the resolved [`Desired`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::version::{Version, VersionReq};

use super::diagnostic::{Diagnostic, Severity};
use std::sync::Arc;

use super::load::{Kind, Manifest, Manifests, first_of_each_name, index_by_name};
use super::selectors::{LabelView, Selected, SelectorTable};
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

/// Below this many targets per thread, one thread validates them all: a target whose file did
/// not change takes about a microsecond (its facts and check kept), a thread tens of them.
const MIN_TARGETS_PER_THREAD: usize = 1024;

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
    /// Which of [`Desired::selectors`] match its labels, found once by [`validate`] (see
    /// [`Desired::labels_of`]).
    pub selected: Selected,
    /// Its `tenant` label (`Some(None)`: it has none), found once by [`validate`] (issue #17:
    /// dependencies group a fleet by it on every pass; one text per tenant among the targets
    /// matched in the same validation, a kept target keeping its own);
    /// `None`: not looked up (see [`Target::tenant`]).
    pub tenant: Option<Option<Arc<str>>>,
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

    /// Its `tenant` label: what `labels().get("tenant")` gives, without reading the labels
    /// when [`validate`] made the target.
    pub fn tenant(&self) -> Option<&str> {
        let tenant = match &self.tenant {
            Some(found) => found.as_deref(),
            None => self.labels().get(super::fleet::TENANT_LABEL).map(String::as_str),
        };
        debug_assert_eq!(
            tenant,
            self.labels().get(super::fleet::TENANT_LABEL).map(String::as_str),
            "tenant of `{}`",
            self.name()
        );
        tenant
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
    /// The selectors of [`Self::windows`] and of [`Self::policies`]' waves, which each
    /// [`Target::selected`] was matched against.
    pub selectors: SelectorTable,
}

impl Desired {
    /// `target`'s labels, answering tests of [`Self::selectors`] from its bits.
    pub fn labels_of<'a>(&'a self, target: &'a Target) -> LabelView<'a> {
        LabelView::new(target.labels(), target.selected, &self.selectors)
    }

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

/// Asks for the manifest a few targets after `k` in `targets`, and the name of one nearer, to
/// be brought into the cache (issue #17): the manifests lie scattered over the heap, and
/// checking each began with the processor waiting for it, then for its name, read to find the
/// first target of each name (see [`crate::prefetch`]).
fn fetch_target_ahead(targets: &[Arc<Manifest<TargetSpec>>], k: usize) {
    if let Some(target) = targets.get(k + crate::prefetch::AHEAD) {
        crate::prefetch::fetch(Arc::as_ptr(target));
    }
    if let Some(target) = targets.get(k + crate::prefetch::POINTED_AHEAD) {
        crate::prefetch::fetch_bytes(target.name.as_ptr(), target.name.len());
    }
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
    let mut memo = TargetMemo::taken(&components, &desired.releases);
    let first_of_name = first_of_each_name(Kind::Target, &target_list, &mut diags);
    // On several cores for a large fleet (issue #17), each chunk of the list with its share of the
    // memo; the chunks' results are concatenated in order, as one pass over the list gives them.
    let threads = super::parallel::threads_for_items(target_list.len(), MIN_TARGETS_PER_THREAD);
    let chunks = super::parallel::split_even(&target_list, threads);
    let parts = memo.parts(&chunks.iter().map(|c| c.len()).collect::<Vec<_>>());
    let checked_chunks =
        super::parallel::map_chunks_with(chunks.into_iter().zip(parts).collect(), |chunk, mut memo| {
            let mut diags = Vec::new();
            let mut accepted: Vec<(String, Target)> = Vec::with_capacity(chunk.len());
            let mut parsed_versions = target::ParsedVersions::default();
            for (k, manifest) in chunk.iter().enumerate() {
                fetch_target_ahead(chunk, k);
                let (facts, checked) = memo.of(manifest);
                diags.extend(facts.metadata.iter().cloned());
                if !first_of_name
                    .get(manifest.name.as_str())
                    .is_some_and(|first| std::ptr::eq(*first, &**manifest))
                {
                    memo.keep(manifest, facts, None);
                    continue;
                }
                let checked = checked.unwrap_or_else(|| {
                    let mut found = Vec::new();
                    let wanted = check_target(
                        manifest,
                        &components,
                        &desired.releases,
                        &mut parsed_versions,
                        &mut found,
                    );
                    check_config_schema(manifest, &config_schemas, &mut found);
                    Arc::new(Checked {
                        wanted,
                        diagnostics: found,
                    })
                });
                diags.extend(checked.diagnostics.iter().cloned());
                let wanted = checked.wanted.clone();
                memo.keep(manifest, Arc::clone(&facts), Some(checked));
                if let Some(wanted) = wanted {
                    accepted.push((
                        manifest.name.clone(),
                        Target {
                            wanted,
                            config_hash: facts.config_hash.clone(),
                            manifest: Arc::clone(manifest),
                            // Set below, once the policies and windows are known.
                            policies: PolicyMatch::default(),
                            selected: Selected::default(),
                            tenant: None,
                        },
                    ));
                }
            }
            (accepted, diags, memo)
        });
    let mut accepted: Vec<(String, Target)> = Vec::with_capacity(target_list.len());
    for (more, more_diags, part) in checked_chunks {
        accepted.extend(more);
        diags.extend(more_diags);
        memo.absorb(part);
    }
    memo.store();
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

    // Each target's labels read once, for its policies and for the selectors of windows and
    // waves the planner tests it against (issue #17).
    desired.selectors = SelectorTable::of(
        desired.windows.iter().filter_map(|w| w.spec.selector.as_ref()).chain(
            desired
                .policies
                .iter()
                .flat_map(|p| &p.manifest.spec.rollout.waves)
                .filter_map(|w| w.selector.as_ref()),
        ),
    );
    select_targets(&mut desired);

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

/// What a validation worked out per target manifest, kept for the next one (with the parse
/// cache on, an unchanged file's targets are the same `Arc`s), each entry holding its manifest,
/// so no other manifest can be at its address while it is kept.
///
/// Kept in the order the validation met the targets, and looked up in the same order by the
/// next one: an entry is found at a cursor that moves past it, by address (issue #17: a hash
/// map's removal and insertion per target was a fifth of validating a one-file change). A
/// commit that adds or changes a file leaves its targets without an entry (the cursor stays);
/// one that removes a few targets leaves entries the cursor skips within [`Self::LOOKAHEAD`].
/// From the second lookup the lookahead does not answer (a changed or removed file of many
/// targets), the rest are found through an index by address, built then, and the cursor
/// resumes past each entry so found. Whatever is found, it belongs to that very manifest.
struct ByManifest<V> {
    entries: Vec<Option<(Arc<Manifest<TargetSpec>>, V)>>,
    /// Where the next lookup looks first: just past the last entry found.
    cursor: usize,
    /// Lookups the lookahead did not answer.
    misses: usize,
    /// Each entry's index by its manifest's address, once [`Self::misses`] reached two.
    index: Option<foldhash::HashMap<usize, usize>>,
}

impl<V> Default for ByManifest<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<V> ByManifest<V> {
    /// How many entries past the cursor a lookup looks at: the targets of the files a commit
    /// removed at one place.
    const LOOKAHEAD: usize = 64;

    fn with_capacity(n: usize) -> Self {
        ByManifest {
            entries: Vec::with_capacity(n),
            cursor: 0,
            misses: 0,
            index: None,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// What was kept for `manifest` itself, taken out: only an entry holding that very
    /// manifest is its own.
    fn take(&mut self, manifest: &Arc<Manifest<TargetSpec>>) -> Option<V> {
        let own = |entry: &Option<(Arc<Manifest<TargetSpec>>, V)>| {
            entry.as_ref().is_some_and(|(kept, _)| Arc::ptr_eq(kept, manifest))
        };
        let ahead = self.entries.get(self.cursor..).unwrap_or_default();
        let at = match ahead.iter().take(Self::LOOKAHEAD).position(own) {
            Some(found) => self.cursor + found,
            None => {
                self.misses += 1;
                if self.misses < 2 {
                    return None;
                }
                let entries = &self.entries;
                let index = self.index.get_or_insert_with(|| {
                    entries
                        .iter()
                        .enumerate()
                        .filter_map(|(i, entry)| entry.as_ref().map(|(kept, _)| (Arc::as_ptr(kept) as usize, i)))
                        .collect()
                });
                let at = *index.get(&(Arc::as_ptr(manifest) as usize))?;
                if !own(&self.entries[at]) {
                    return None;
                }
                at
            }
        };
        self.cursor = at + 1;
        self.entries[at].take().map(|(_, value)| value)
    }

    /// The entries cut in contiguous shares proportional to `lens` (out of `total`), in order.
    fn split(mut self, lens: &[usize], total: usize) -> Vec<ByManifest<V>> {
        let kept = self.entries.len();
        let mut starts: Vec<usize> = lens
            .iter()
            .scan(0, |start, len| {
                let at = *start;
                *start += len;
                Some(at)
            })
            .map(|at| (at * kept).checked_div(total).unwrap_or(0))
            .collect();
        let mut shares = Vec::with_capacity(lens.len());
        while let Some(start) = starts.pop() {
            let mut share = ByManifest::with_capacity(0);
            share.entries = self.entries.split_off(start.min(self.entries.len()));
            shares.push(share);
        }
        shares.reverse();
        shares
    }

    /// Keeps `value` for `manifest`, after the entries kept before it.
    fn keep(&mut self, manifest: &Arc<Manifest<TargetSpec>>, value: V) {
        self.entries.push(Some((Arc::clone(manifest), value)));
    }
}

/// What checking a target against the commit's components and releases found
/// (`check_target`, `check_config_schema`): the version it wants, if it is valid, and the
/// diagnostics.
#[derive(Debug)]
struct Checked {
    wanted: Option<values::VersionWanted>,
    diagnostics: Vec<Diagnostic>,
}

/// Everything of the components and releases a target's check reads: each component's name,
/// versioning and config schema, and the versions of its valid releases.
#[derive(Debug, Default, PartialEq)]
struct CheckContext {
    components: Vec<(String, crate::manifest::Versioning, Option<serde_json::Value>)>,
    releases: Vec<(String, Vec<Version>)>,
}

impl CheckContext {
    fn of(components: &BTreeMap<&str, &Manifest<ComponentSpec>>, releases: &BTreeMap<String, Vec<Release>>) -> Self {
        CheckContext {
            components: components
                .iter()
                .map(|(name, c)| ((*name).to_string(), c.spec.versioning, c.spec.config_schema.clone()))
                .collect(),
            releases: releases
                .iter()
                .map(|(component, list)| (component.clone(), list.iter().map(|r| r.version.clone()).collect()))
                .collect(),
        }
    }
}

/// What the last validation worked out per target manifest: its facts, and its check while the
/// components and releases it was checked against are unchanged.
#[derive(Default)]
struct KeptTargets {
    context: CheckContext,
    entries: ByManifest<(Arc<TargetFacts>, Option<Arc<Checked>>)>,
}

/// A test's validation that must leave the kept targets alone (`tests::MEMO_OFF`).
#[cfg(test)]
fn memo_off_in_this_test() -> bool {
    tests::memo_off()
}

#[cfg(not(test))]
fn memo_off_in_this_test() -> bool {
    false
}

fn kept_targets() -> &'static std::sync::Mutex<KeptTargets> {
    static MEMO: std::sync::OnceLock<std::sync::Mutex<KeptTargets>> = std::sync::OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// One validation's use of [`KeptTargets`]. With the parse cache on (the daemon), a target
/// whose file did not change is the same `Arc` as in the last validation, and its facts are
/// taken from then (issue #17: hashing 10,000 configs and checking 40,000 labels was a third of
/// validating a one-file change), and its check too while every component and release it could
/// read is the same (compared by value); the memo then keeps this validation's targets only.
/// Off (a command line run), everything is worked out and nothing kept.
struct TargetMemo {
    on: bool,
    context: CheckContext,
    same_context: bool,
    before: ByManifest<(Arc<TargetFacts>, Option<Arc<Checked>>)>,
    now: ByManifest<(Arc<TargetFacts>, Option<Arc<Checked>>)>,
}

impl TargetMemo {
    fn taken(components: &BTreeMap<&str, &Manifest<ComponentSpec>>, releases: &BTreeMap<String, Vec<Release>>) -> Self {
        if crate::manifest::parse_cache::global().is_none() || memo_off_in_this_test() {
            return TargetMemo {
                on: false,
                context: CheckContext::default(),
                same_context: false,
                before: ByManifest::default(),
                now: ByManifest::default(),
            };
        }
        let kept = std::mem::take(&mut *kept_targets().lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let context = CheckContext::of(components, releases);
        let same_context = kept.context == context;
        let now = ByManifest::with_capacity(kept.entries.len());
        TargetMemo {
            on: true,
            context,
            same_context,
            before: kept.entries,
            now,
        }
    }

    /// `target`'s facts, and its check when the last validation's still holds.
    fn of(&mut self, target: &Arc<Manifest<TargetSpec>>) -> (Arc<TargetFacts>, Option<Arc<Checked>>) {
        match self.before.take(target) {
            Some((facts, checked)) => (facts, checked.filter(|_| self.same_context)),
            None => (Arc::new(TargetFacts::of(target)), None),
        }
    }

    fn keep(&mut self, target: &Arc<Manifest<TargetSpec>>, facts: Arc<TargetFacts>, checked: Option<Arc<Checked>>) {
        if self.on {
            self.now.keep(target, (facts, checked));
        }
    }

    /// This memo's share for each contiguous chunk of the target list, of the given lengths:
    /// each takes the entries kept at the same share of the last validation's list, so in a
    /// commit that changed a few files each chunk finds its own (an entry that moved into
    /// another chunk's share is not found there: that target is worked out again).
    fn parts(&mut self, lens: &[usize]) -> Vec<TargetMemo> {
        let total: usize = lens.iter().sum();
        let shares = std::mem::take(&mut self.before).split(lens, total);
        lens.iter()
            .zip(shares)
            .map(|(&len, before)| TargetMemo {
                on: self.on,
                context: CheckContext::default(),
                same_context: self.same_context,
                before,
                now: ByManifest::with_capacity(if self.on { len } else { 0 }),
            })
            .collect()
    }

    /// Keeps what `part` (the next chunk's share, from [`Self::parts`]) kept.
    fn absorb(&mut self, part: TargetMemo) {
        self.now.entries.extend(part.now.entries);
    }

    fn store(self) {
        if self.on {
            *kept_targets().lock().unwrap_or_else(std::sync::PoisonError::into_inner) = KeptTargets {
                context: self.context,
                entries: self.now,
            };
        }
    }
}

/// What matching a target against the commit's policies and selectors finds, and its tenant.
type Selection = (PolicyMatch, Selected, Option<Arc<str>>);

/// Selections kept from the last validation (by manifest, in name order: [`ByManifest`]), with
/// the policies (selector and components, in priority order) and the selector table they were
/// matched against.
#[derive(Default)]
struct SelectionMemo {
    policies: Vec<(Option<Labels>, Vec<String>)>,
    selectors: SelectorTable,
    entries: ByManifest<Selection>,
}

fn selection_memo() -> &'static std::sync::Mutex<SelectionMemo> {
    static MEMO: std::sync::OnceLock<std::sync::Mutex<SelectionMemo>> = std::sync::OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// Sets each target's [`Target::policies`], [`Target::selected`] and [`Target::tenant`]:
/// its labels read once, for all three (issue #17). With the parse cache on (the daemon), a
/// target whose file did not change is the same `Arc` as in the last validation, and what was
/// found for it then is kept: its policies while the policies' selectors, components and order
/// are the same, its bits while the selector table holds the same selectors, its tenant always
/// (a label of the manifest alone). Its labels are then not read at all.
fn select_targets(desired: &mut Desired) {
    let Desired {
        targets,
        policies,
        selectors,
        ..
    } = desired;
    let memo_on = crate::manifest::parse_cache::global().is_some();
    let lock = || {
        selection_memo()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut before = if memo_on {
        std::mem::take(&mut *lock())
    } else {
        SelectionMemo::default()
    };
    let signature: Vec<(Option<Labels>, Vec<String>)> = policies
        .iter()
        .map(|p| (p.manifest.spec.selector.clone(), p.manifest.spec.components.clone()))
        .collect();
    let same_policies = memo_on && before.policies == signature;
    let carry = selectors.carry_from(&before.selectors);
    let mut tenants: foldhash::HashSet<Arc<str>> = foldhash::HashSet::default();
    let mut now = ByManifest::with_capacity(if memo_on { targets.len() } else { 0 });
    for target in targets.values_mut() {
        let kept = before.entries.take(&target.manifest);
        let manifest = &target.manifest;
        let (matched, selected, tenant) = match kept {
            Some((matched, selected, tenant)) => (
                if same_policies {
                    matched
                } else {
                    PolicyMatch::of(policies, manifest)
                },
                carry
                    .and_then(|carry| carry.apply(selected))
                    .unwrap_or_else(|| selectors.select(&manifest.labels)),
                tenant,
            ),
            None => (
                PolicyMatch::of(policies, manifest),
                selectors.select(&manifest.labels),
                manifest.labels.get(super::fleet::TENANT_LABEL).map(|tenant| {
                    if let Some(shared) = tenants.get(tenant.as_str()) {
                        return Arc::clone(shared);
                    }
                    let shared: Arc<str> = Arc::from(tenant.as_str());
                    tenants.insert(Arc::clone(&shared));
                    shared
                }),
            ),
        };
        if memo_on {
            now.keep(manifest, (matched, selected, tenant.clone()));
        }
        target.policies = matched;
        target.selected = selected;
        target.tenant = Some(tenant);
    }
    if memo_on {
        *lock() = SelectionMemo {
            policies: signature,
            selectors: selectors.clone(),
            entries: now,
        };
    }
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

    thread_local! {
        /// Set: this thread's validations neither read nor replace the kept targets.
        static MEMO_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    pub(super) fn memo_off() -> bool {
        MEMO_OFF.get()
    }

    /// Validates `rest` with `targets` themselves (what the memo kept for them can answer) and
    /// with fresh copies of them (new `Arc`s, the memo off and left as the first validation
    /// left it); asserts both find the same diagnostics and targets, and returns the first.
    fn validated_kept_and_fresh(rest: &str, targets: &[Arc<Manifest<TargetSpec>>]) -> (Desired, Vec<Diagnostic>) {
        let mut kept = read_all_yaml(rest.to_string());
        kept.targets = targets.to_vec();
        let mut fresh = read_all_yaml(rest.to_string());
        fresh.targets = targets.iter().map(|t| Arc::new((**t).clone())).collect();
        let (kept, kept_diags) = validate(kept);
        MEMO_OFF.set(true);
        let (fresh, fresh_diags) = validate(fresh);
        MEMO_OFF.set(false);
        assert_eq!(kept_diags, fresh_diags);
        let summary = |d: &Desired| -> Vec<String> {
            d.targets
                .values()
                .map(|t| format!("{} {:?} {} {:?}", t.name(), t.wanted, t.config_hash, t.tenant))
                .collect()
        };
        assert_eq!(summary(&kept), summary(&fresh));
        (kept, kept_diags)
    }

    /// The manifests of `text`, read as one file `all.yaml`.
    fn read_all_yaml(text: String) -> Manifests {
        read_manifests(
            None,
            &[RawFile {
                path: "all.yaml".to_string(),
                content: RawContent::Bytes(text.into_bytes()),
            }],
        )
        .0
    }

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

    /// Validation matches every target once against the windows' and waves' selectors and
    /// finds its tenant: each answer equals matching the labels, the same selector content in
    /// two places has a bit each, and the targets of a tenant share one tenant text.
    #[test]
    fn targets_carry_their_selector_bits_and_tenant() {
        let header = "apiVersion: gantry.dev/v1\n";
        let target = |name: &str, labels: &str| {
            format!(
                "{header}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: web, version: ^1 }}\n"
            )
        };
        let files = [
            ("components/web.yaml", COMPONENT.to_string()),
            (
                "policies.yaml",
                format!(
                    "{header}kind: Policy\nmetadata: {{ name: staged }}\nspec:\n  selector: {{ env: prod }}\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }} }}\n      - {{ name: eu, selector: {{ region: eu }} }}\n      - {{ name: all, percent: 100 }}\n"
                ),
            ),
            (
                "windows.yaml",
                format!(
                    "{header}kind: Window\nmetadata: {{ name: eu-nights }}\nspec: {{ selector: {{ region: eu }}, timezone: UTC, allow: [{{ days: [sat], start: \"02:00\", end: \"06:00\" }}] }}\n---\n{header}kind: Window\nmetadata: {{ name: freeze }}\nspec: {{ timezone: UTC, deny: [{{ dates: [2026-12-24] }}] }}\n"
                ),
            ),
            (
                "targets/a.yaml",
                target("acme-eu", "tenant: acme, region: eu, ring: \"0\", env: prod"),
            ),
            (
                "targets/b.yaml",
                target("acme-us", "tenant: acme, region: us, env: prod"),
            ),
            (
                "targets/c.yaml",
                target("globex-eu", "tenant: globex, region: eu, ring: \"1\""),
            ),
            ("targets/d.yaml", target("shared", "region: ap")),
        ];
        let raw = files.map(|(path, text)| RawFile {
            path: path.to_string(),
            content: RawContent::Bytes(text.into_bytes()),
        });
        let (desired, diags) = validate(read_manifests(None, &raw).0);
        assert!(diags.iter().all(|d| d.severity == Severity::Warning), "{diags:?}");
        assert_eq!(desired.targets.len(), 4);
        // The window's { region: eu } and the wave's are two selectors with a bit each.
        assert_eq!(desired.selectors.len(), 3);
        let selectors: Vec<&Labels> = desired
            .windows
            .iter()
            .filter_map(|w| w.spec.selector.as_ref())
            .chain(
                desired.policies[0]
                    .manifest
                    .spec
                    .rollout
                    .waves
                    .iter()
                    .filter_map(|w| w.selector.as_ref()),
            )
            .collect();
        assert_eq!(selectors.len(), 3);
        let mut matched = 0;
        for target in desired.targets.values() {
            assert_ne!(target.selected, Selected::default(), "{} has bits", target.name());
            let view = desired.labels_of(target);
            for selector in &selectors {
                let expected = selector_matches(Some(selector), target.labels());
                assert_eq!(view.matches(Some(selector)), expected, "{} {selector:?}", target.name());
                matched += usize::from(expected);
            }
            assert_eq!(
                target.tenant(),
                target.labels().get("tenant").map(String::as_str),
                "{}",
                target.name()
            );
        }
        // acme-eu: ring 0 and region eu twice; globex-eu: region eu twice.
        assert_eq!(matched, 5);
        let tenant = |name: &str| desired.targets[name].tenant.clone().expect("looked up");
        assert!(Arc::ptr_eq(
            tenant("acme-eu").as_ref().expect("acme"),
            tenant("acme-us").as_ref().expect("acme")
        ));
        assert_eq!(tenant("shared"), None);
    }

    /// Issue #17: a fleet large enough to be validated on several threads, each chunk with its
    /// share of the memo, gives what validating fresh copies gives: after a target removed near
    /// the start, one added in the middle, one changed at the chunks' border, and with a name
    /// declared twice across the chunks (the first is kept, the second reported).
    #[test]
    fn a_fleet_validated_in_chunks_equals_a_fresh_validation() {
        crate::manifest::parse_cache::enable();
        let n = 2 * MIN_TARGETS_PER_THREAD + 200;
        let header = "apiVersion: gantry.dev/v1\n";
        let target = |name: String, version: &str, replicas: usize| {
            read_all_yaml(format!(
                "{header}kind: Target\nmetadata: {{ name: {name}, labels: {{ tenant: tenant-{} }} }}\nspec: {{ component: web, version: \"{version}\", config: {{ replicas: {replicas} }} }}\n",
                name.len()
            ))
            .targets
            .remove(0)
        };
        let rest = format!(
            "{header}kind: Component\nmetadata: {{ name: web }}\nspec:\n  steps: {{ deploy: [d.sh] }}\n  configSchema: {{ type: object, properties: {{ replicas: {{ type: integer, maximum: 2000 }} }} }}\n---\n{header}kind: Release\nmetadata: {{ name: web-1 }}\nspec: {{ component: web, version: \"1.2.0\" }}\n"
        );
        let mut list: Vec<_> = (0..n)
            .map(|i| match i {
                // A version no release has, and a config the schema refuses.
                7 => target(format!("t{i}"), "9.9.9", 1),
                8 => target(format!("t{i}"), "1.2.0", 5000),
                // t3 again, in the second chunk.
                i if i == n - 50 => target("t3".to_string(), "1.2.0", 1),
                i => target(format!("t{i}"), "1.2.0", i),
            })
            .collect();
        let check = |list: &[Arc<Manifest<TargetSpec>>]| {
            let (kept, kept_diags) = validated_kept_and_fresh(&rest, list);
            assert_eq!(kept.targets.len(), n - 1, "the duplicate left out");
            kept_diags
        };
        let first = check(&list);
        assert!(
            first
                .iter()
                .any(|d| d.kind == "duplicate" && d.message.contains("`t3`")),
            "{first:?}"
        );
        assert!(first.iter().any(|d| d.kind == "config_schema"), "{first:?}");
        assert!(first.iter().any(|d| d.message.contains("9.9.9")), "{first:?}");
        check(&list);
        list.remove(2);
        list.insert(n / 2, target("added".to_string(), "1.2.0", 1));
        let border = list[n / 2 + 1].name.clone();
        list[n / 2 + 1] = target(border, "1.2.0", 7);
        let again = check(&list);
        assert_eq!(again.len(), first.len());
        check(&list);
    }

    /// Issue #17: what was kept for a target is found again in the next validation's order,
    /// past removed targets and beside added ones, and far off or behind the cursor once the
    /// lookahead missed twice; and only for that very manifest: a copy and a target met twice
    /// find nothing.
    #[test]
    fn kept_entries_are_found_in_order_and_only_for_their_own_manifest() {
        let targets = read_all_yaml(
            (0..200)
                .map(|i| {
                    format!(
                        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i} }}\nspec: {{ component: web, version: \"1.0.0\" }}\n"
                    )
                })
                .collect::<Vec<_>>()
                .join("---\n"),
        )
        .targets;
        let mut kept = ByManifest::default();
        for (i, target) in targets.iter().enumerate() {
            kept.keep(target, i);
        }
        let copy = Arc::new((*targets[3]).clone());
        // Targets 1 and 2 passed over, a copy of 3 met before it, 4 met twice, then targets far
        // off and behind.
        assert_eq!(kept.take(&targets[0]), Some(0));
        assert_eq!(kept.take(&copy), None, "an equal copy is another manifest");
        assert!(kept.index.is_none(), "one miss builds no index");
        assert_eq!(kept.take(&targets[3]), Some(3), "past the targets passed over");
        assert_eq!(kept.take(&targets[4]), Some(4));
        assert_eq!(kept.take(&targets[4]), None, "taken already");
        assert_eq!(
            kept.take(&targets[100]),
            Some(100),
            "beyond the lookahead: by the index"
        );
        assert_eq!(kept.take(&targets[1]), Some(1), "behind the cursor: by the index");
        assert_eq!(kept.take(&targets[100]), None, "taken already, by the index");
        assert_eq!(
            kept.take(&copy),
            None,
            "an equal copy is another manifest, by the index too"
        );
        let last_ahead = 2 + ByManifest::<usize>::LOOKAHEAD - 1;
        assert_eq!(kept.take(&targets[last_ahead]), Some(last_ahead), "ahead of the cursor");
        assert_eq!(kept.take(&targets[199]), Some(199));
        assert_eq!(kept.take(&targets[70]), Some(70));
    }

    /// With the parse cache on, an unchanged target's check (its version wish against the
    /// components and releases, its config against the schema) is kept only while every
    /// component and release it could read is the same: the same target `Arc`s validated with
    /// a release gone, a component's versioning or config schema changed, and the component
    /// gone each get what validating fresh copies of them gets (a memo that kept checks across
    /// any of these fails here).
    #[test]
    fn kept_target_checks_follow_the_components_and_releases_they_were_checked_against() {
        crate::manifest::parse_cache::enable();
        let header = "apiVersion: gantry.dev/v1\n";
        let component = |versioning: &str, schema: &str| {
            format!(
                "{header}kind: Component\nmetadata: {{ name: web }}\nspec:\n  versioning: {versioning}\n  steps: {{ deploy: [d.sh] }}\n{schema}"
            )
        };
        let release = |version: &str| {
            format!(
                "{header}kind: Release\nmetadata: {{ name: web-{version} }}\nspec: {{ component: web, version: \"{version}\" }}\n"
            )
        };
        let target = |name: &str, version: &str, replicas: &str| {
            format!(
                "{header}kind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: web, version: \"{version}\", config: {{ replicas: {replicas} }} }}\n"
            )
        };
        let targets = read_all_yaml(format!(
            "{}---\n{}---\n{}",
            target("pinned", "1.2.0", "2"),
            target("ranged", "^1", "\"two\""),
            target("dated", "2026.10.12", "3")
        ))
        .targets;
        // What validating `rest` with the kept targets finds, checked against validating fresh
        // copies of them (new `Arc`s: nothing kept can answer for them).
        let commit = |rest: String| -> Vec<Diagnostic> { validated_kept_and_fresh(&rest, &targets).1 };
        let schema = "  configSchema: { type: object, properties: { replicas: { type: integer } } }\n";
        let codes = |diags: &[Diagnostic]| -> Vec<String> {
            diags.iter().map(|d| format!("{} {}", d.kind, d.message)).collect()
        };
        let base = commit(format!(
            "{}---\n{}---\n{}",
            component("semver", ""),
            release("1.2.0"),
            release("1.3.0")
        ));
        // The same commit again: everything kept, the same answers.
        assert_eq!(
            codes(&commit(format!(
                "{}---\n{}---\n{}",
                component("semver", ""),
                release("1.2.0"),
                release("1.3.0")
            ))),
            codes(&base)
        );
        // A config schema (nothing else changed): the string is refused now.
        let typed = commit(format!(
            "{}---\n{}---\n{}",
            component("semver", schema),
            release("1.2.0"),
            release("1.3.0")
        ));
        assert!(typed.iter().any(|d| d.kind == "config_schema"), "{typed:?}");
        // The pinned release gone (nothing else changed): its pin is unknown now.
        let gone = commit(format!("{}---\n{}", component("semver", schema), release("1.3.0")));
        assert!(gone.iter().any(|d| d.kind == "unknown_reference"), "{gone:?}");
        // No release left, then another versioning scheme (nothing else changed): the date-like
        // pin is a calendar version now.
        commit(component("semver", schema));
        commit(component("calver", schema));
        // The component renamed, alike in all else; then no component at all.
        let renamed = commit(component("calver", schema).replace("name: web", "name: www"));
        assert!(
            renamed.iter().any(|d| d.message.contains("unknown component")),
            "{renamed:?}"
        );
        let none = commit(release("1.2.0"));
        assert!(none.iter().any(|d| d.message.contains("unknown component")), "{none:?}");
    }

    /// With the parse cache on, what was found for an unchanged target is kept only while it
    /// holds: the same target `Arc`s validated again after a policy's selector, then a
    /// window's selector, then the policies' order changed each get the policies and bits
    /// matching their labels now finds (a memo that ignored any of the three fails here).
    #[test]
    fn kept_selections_follow_the_policies_and_selectors_they_were_matched_against() {
        crate::manifest::parse_cache::enable();
        let header = "apiVersion: gantry.dev/v1\n";
        let policy = |name: &str, priority: u32, selector: &str| {
            format!(
                "{header}kind: Policy\nmetadata: {{ name: {name} }}\nspec: {{ priority: {priority}, selector: {{ {selector} }} }}\n"
            )
        };
        let window = |selector: &str| {
            format!(
                "{header}kind: Window\nmetadata: {{ name: w }}\nspec: {{ selector: {{ {selector} }}, timezone: UTC, allow: [{{ days: [sat], start: \"02:00\", end: \"06:00\" }}] }}\n"
            )
        };
        let target = |name: &str, labels: &str| {
            format!(
                "{header}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: web, version: ^1 }}\n"
            )
        };
        let targets = read_all_yaml(format!(
            "{}---\n{}---\n{}",
            target("eu", "region: eu, env: prod"),
            target("us", "region: us, env: prod"),
            target("dev", "region: eu, env: dev")
        ))
        .targets;
        let commit = |rest: String| {
            let mut manifests = read_all_yaml(format!("{COMPONENT}---\n{rest}"));
            // The same target `Arc`s in every commit, as the parse cache hands them out.
            manifests.targets = targets.clone();
            let (desired, diags) = validate(manifests);
            assert!(diags.iter().all(|d| d.severity == Severity::Warning), "{diags:?}");
            for t in desired.targets.values() {
                assert!(Arc::ptr_eq(
                    &t.manifest,
                    targets.iter().find(|m| m.name == t.name()).unwrap()
                ));
                assert_eq!(
                    t.policies,
                    PolicyMatch::of(&desired.policies, &t.manifest),
                    "{}",
                    t.name()
                );
                for w in &desired.windows {
                    let selector = w.spec.selector.as_ref();
                    assert_eq!(
                        desired
                            .labels_of(t)
                            .matches_resolved(&desired.selectors.resolve(selector.unwrap())),
                        selector_matches(selector, t.labels()),
                        "{}",
                        t.name()
                    );
                }
            }
            desired
        };
        let first = commit(format!(
            "{}---\n{}---\n{}",
            policy("a", 1, "env: prod"),
            policy("b", 2, "region: eu"),
            window("region: eu")
        ));
        assert_eq!(
            first.targets["us"].policies.first,
            Some(1),
            "b (priority 2) first, then a"
        );
        // The same commit again: everything kept.
        commit(format!(
            "{}---\n{}---\n{}",
            policy("a", 1, "env: prod"),
            policy("b", 2, "region: eu"),
            window("region: eu")
        ));
        // A policy's selector changes.
        commit(format!(
            "{}---\n{}---\n{}",
            policy("a", 1, "env: dev"),
            policy("b", 2, "region: eu"),
            window("region: eu")
        ));
        // The window's selector changes.
        commit(format!(
            "{}---\n{}---\n{}",
            policy("a", 1, "env: dev"),
            policy("b", 2, "region: eu"),
            window("region: us")
        ));
        // The policies' order changes.
        let last = commit(format!(
            "{}---\n{}---\n{}",
            policy("a", 3, "env: dev"),
            policy("b", 2, "region: eu"),
            window("region: us")
        ));
        assert_eq!(last.targets["dev"].policies.first, Some(0), "a (priority 3) first now");
    }
}
