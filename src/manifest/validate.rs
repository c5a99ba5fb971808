//! Semantic validation: cross-checks the schema cannot express, producing the resolved [`Desired`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use semver::{Version, VersionReq};

use super::diagnostic::{Diagnostic, Severity};
use super::load::{Kind, Manifest, Manifests, index_by_name};
use super::types::*;
use super::values::{self, VersionWanted};

/// The variables a step template may use (SPEC §5).
pub const TEMPLATE_VARIABLES: [&str; 11] = [
    "target",
    "component",
    "version",
    "from",
    "to",
    "release",
    "migration",
    "attempt",
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
    pub manifest: Manifest<ReleaseSpec>,
}

impl Release {
    pub fn spec(&self) -> &ReleaseSpec {
        &self.manifest.spec
    }
    /// The prerelease channel: the first dot-separated word of the prerelease tag.
    pub fn channel(&self) -> Option<&str> {
        (!self.version.pre.is_empty()).then(|| self.version.pre.as_str().split('.').next().unwrap_or(""))
    }
}

/// A target with its parsed version wish and config hash.
#[derive(Debug, Clone)]
pub struct Target {
    pub wanted: VersionWanted,
    /// sha256 of the canonical JSON of `spec.config`.
    pub config_hash: String,
    pub manifest: Manifest<TargetSpec>,
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
    pub health_interval: Option<Duration>,
    pub health_soak: Option<Duration>,
    /// `minReleaseAge` per update type: patch, minor, major.
    pub min_release_age: [Option<Duration>; 3],
    /// Soak per wave, in wave order.
    pub wave_soak: Vec<Option<Duration>>,
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
    for kind_names in [
        names_of(&manifests.components),
        names_of(&manifests.releases),
        names_of(&manifests.targets),
        names_of(&manifests.policies),
        names_of(&manifests.windows),
        names_of(&manifests.approvals),
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

    // Targets are many: the accepted ones are moved into `desired`, not cloned.
    let target_list = std::mem::take(&mut manifests.targets);
    let mut accepted: BTreeMap<&str, (VersionWanted, String)> = BTreeMap::new();
    for target in index_by_name(Kind::Target, &target_list, &mut diags).values() {
        if let Some(parts) = check_target(target, &components, &desired.releases, &mut diags) {
            accepted.insert(&target.name, parts);
        }
    }
    let mut accepted: BTreeMap<String, (VersionWanted, String)> =
        accepted.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    for manifest in target_list {
        // The first manifest of a name is the one `index_by_name` kept.
        if let Some((wanted, config_hash)) = accepted.remove(&manifest.name) {
            let target = Target {
                wanted,
                config_hash,
                manifest,
            };
            desired.targets.insert(target.manifest.name.clone(), target);
        }
    }

    let policies = index_by_name(Kind::Policy, &manifests.policies, &mut diags);
    for policy in policies.values() {
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

    (desired, diags)
}

type NameRef<'a> = (&'a super::load::Origin, &'a str, &'a Labels);

fn names_of<S>(items: &[Manifest<S>]) -> Vec<NameRef<'_>> {
    items.iter().map(|m| (&m.origin, m.name.as_str(), &m.labels)).collect()
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

fn validate_config(manifests: &Manifests, diags: &mut Vec<Diagnostic>) {
    let Some(origin) = &manifests.config_origin else { return };
    let config = &manifests.config;
    if let Err(e) = config.poll_interval() {
        diags.push(origin.diagnostic(Severity::Invalid, "duration", "/poll_interval", e));
    }
    for (name, executor) in &config.executors {
        let pointer = format!("/executors/{name}");
        if !values::is_valid_name(name) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "name",
                &pointer,
                format!("executor name `{name}` is invalid (lowercase letters, digits, `.`, `_`, `-`)"),
            ));
        }
        match (executor.executor_type, &executor.command) {
            (ExecutorType::Plugin, None) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &pointer,
                format!("executor `{name}` is a plugin but has no `command` (the program to start, e.g. [\"plugins/kubectl.py\"])"),
            )),
            (ExecutorType::Plugin, Some(command)) if command.is_empty() || command[0].is_empty() => diags.push(
                origin.diagnostic(Severity::Invalid, "schema", &format!("{pointer}/command"), format!("executor `{name}`: `command` must name a program")),
            ),
            _ => {}
        }
    }
    if config.listen.parse::<std::net::SocketAddr>().is_err() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/listen",
            format!("listen `{}` is not an address such as 127.0.0.1:9184", config.listen),
        ));
    }
    for (field, branch) in [
        ("desired_branch", &config.desired_branch),
        ("state_branch", &config.state_branch),
    ] {
        if !values::is_valid_branch_name(branch) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &format!("/{field}"),
                format!("{field} `{branch}` is not a valid branch name"),
            ));
        }
    }
    if config.desired_branch == config.state_branch {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/state_branch",
            "state_branch must differ from desired_branch: gantry writes only to its own branch",
        ));
    }
}

/// Statements a step template has no use for: they reach for other templates (which do not
/// exist: each argv element is rendered alone) or define reusable code.
const FORBIDDEN_STATEMENTS: [&str; 7] = ["include", "import", "from", "extends", "block", "macro", "call"];

/// The first statement tag of `template` that [`FORBIDDEN_STATEMENTS`] lists, if any.
fn forbidden_statement(template: &str) -> Option<&'static str> {
    template.match_indices("{%").find_map(|(at, _)| {
        let rest = template[at + 2..].trim_start_matches(['-', '+']).trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        FORBIDDEN_STATEMENTS.into_iter().find(|s| *s == word)
    })
}

/// Whether an expression of `template` names `self` (minijinja's handle on the template's own
/// blocks, which it does not count as a variable).
fn uses_self(template: &str) -> bool {
    let bytes = template.as_bytes();
    template.match_indices("self").any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + 4).copied();
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        !before.is_some_and(|b| ident(b) || b == b'.') && !after.is_some_and(ident) && inside_tag(template, at)
    })
}

/// Whether byte `at` lies inside a `{{ }}` or `{% %}` tag (not in literal text).
fn inside_tag(template: &str, at: usize) -> bool {
    let head = &template[..at];
    let open = head.rfind("{{").into_iter().chain(head.rfind("{%")).max();
    let close = head.rfind("}}").into_iter().chain(head.rfind("%}")).max();
    match (open, close) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Whether a (compiling) template refers to `weight`.
fn uses_weight(template: &str) -> bool {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .is_ok_and(|t| t.undeclared_variables(false).contains("weight"))
}

/// Checks that a template compiles and uses only the variables gantry provides.
///
/// Templates are only compiled here, never rendered, so nothing in them runs at validation.
pub fn template_problem(template: &str) -> Option<String> {
    if let Some(statement) = forbidden_statement(template) {
        return Some(format!(
            "template uses `{{% {statement} %}}`; a step template is one self-contained string (no include, import, extends, block, macro or call)"
        ));
    }
    if uses_self(template) {
        return Some(format!(
            "template uses unknown variable `self` (available: {})",
            TEMPLATE_VARIABLES.join(", ")
        ));
    }
    let env = minijinja::Environment::new();
    match env.template_from_str(template) {
        Err(e) => Some(format!(
            "template does not compile: {}",
            e.detail().unwrap_or(&e.to_string())
        )),
        Ok(compiled) => {
            let mut unknown: Vec<String> = compiled
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
                .collect();
            unknown.sort();
            (!unknown.is_empty()).then(|| {
                format!(
                    "template uses unknown variable{} `{}` (available: {})",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join("`, `"),
                    TEMPLATE_VARIABLES.join(", ")
                )
            })
        }
    }
}

fn check_argv(origin: &super::load::Origin, pointer: &str, argv: &[String], diags: &mut Vec<Diagnostic>) {
    if argv.is_empty() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            pointer,
            "argv is empty: the first element names the program to run",
        ));
        return;
    }
    if argv[0].trim().is_empty() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "argv",
            &format!("{pointer}/0"),
            "the program (first argv element) is empty",
        ));
    }
    for (i, element) in argv.iter().enumerate() {
        if let Some(problem) = template_problem(element) {
            diags.push(origin.diagnostic(Severity::Invalid, "template", &format!("{pointer}/{i}"), problem));
        } else if !pointer.ends_with("/steps/shift") && uses_weight(element) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "template",
                &format!("{pointer}/{i}"),
                "template uses `weight`, which only a `shift` step defines",
            ));
        }
    }
    let program = &argv[0];
    if !program.contains("{{") && program_escapes(program) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "argv",
            &format!("{pointer}/0"),
            format!("program `{program}` leaves the repository checkout; name a script inside the repository or a program on PATH"),
        ));
    }
}

/// Whether a relative program path climbs out of the checkout (`../x`, `a/../../x`).
fn program_escapes(program: &str) -> bool {
    if program.starts_with('/') {
        return false; // an absolute program (/usr/bin/env) is a choice, not an escape
    }
    let mut depth: i32 = 0;
    for part in program.split('/') {
        match part {
            ".." => depth -= 1,
            "" | "." => {}
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn check_component(
    component: &Manifest<ComponentSpec>,
    config: &RepoConfig,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = &component.spec;
    if let Some(executor) = &spec.executor
        && executor != BUILTIN_EXECUTOR
        && !config.executors.contains_key(executor)
    {
        let known: Vec<&str> = std::iter::once(BUILTIN_EXECUTOR)
            .chain(config.executors.keys().map(String::as_str))
            .collect();
        diags.push(component.origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/executor",
            format!(
                "unknown executor `{executor}` (defined: {}); add it under [executors] in gantry.toml",
                known.join(", ")
            ),
        ));
    }
    for (i, dep) in spec.depends_on.iter().enumerate() {
        if !components.contains_key(dep.as_str()) {
            diags.push(component.origin.diagnostic(
                Severity::Violation,
                "unknown_reference",
                &format!("/spec/dependsOn/{i}"),
                format!("dependsOn names unknown component `{dep}`"),
            ));
        } else if dep == &component.name {
            diags.push(component.origin.diagnostic(
                Severity::Violation,
                "cycle",
                &format!("/spec/dependsOn/{i}"),
                format!("component `{dep}` depends on itself"),
            ));
        }
    }
    for (step, argv) in spec.steps.iter() {
        check_argv(&component.origin, &format!("/spec/steps/{step}"), argv, diags);
    }
    if spec.steps.deploy.is_none()
        && spec.executor.as_deref().is_none_or(|e| {
            e == BUILTIN_EXECUTOR
                || config
                    .executors
                    .get(e)
                    .is_some_and(|x| x.executor_type == ExecutorType::Shell)
        })
    {
        diags.push(component.origin.diagnostic(
            Severity::Violation,
            "missing_step",
            "/spec/steps",
            format!("component `{}` has no `deploy` step; a shell executor needs one (e.g. deploy: [\"scripts/deploy.sh\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\"])", component.name),
        ));
    }
}

fn check_dependency_cycles(components: &BTreeMap<&str, &Manifest<ComponentSpec>>, diags: &mut Vec<Diagnostic>) {
    // Depth-first search with colours; each cycle is reported once, at its smallest member.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 = on stack, 2 = done
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    fn visit<'a>(
        name: &'a str,
        components: &BTreeMap<&'a str, &'a Manifest<ComponentSpec>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        reported: &mut BTreeSet<Vec<String>>,
        diags: &mut Vec<Diagnostic>,
    ) {
        state.insert(name, 1);
        stack.push(name);
        if let Some(component) = components.get(name) {
            for dep in &component.spec.depends_on {
                let Some((dep_name, _)) = components.get_key_value(dep.as_str()) else {
                    continue;
                };
                if *dep_name == name {
                    continue; // reported as "depends on itself"
                }
                match state.get(dep_name) {
                    Some(1) => {
                        let start = stack.iter().position(|n| n == dep_name).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                        let min = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| n.as_str())
                            .map_or(0, |(i, _)| i);
                        cycle.rotate_left(min);
                        if reported.insert(cycle.clone()) {
                            let first = components[cycle[0].as_str()];
                            let mut path = cycle.clone();
                            path.push(cycle[0].clone());
                            diags.push(first.origin.diagnostic(
                                Severity::Violation,
                                "cycle",
                                "/spec/dependsOn",
                                format!(
                                    "dependency cycle: {}; remove one of these dependsOn entries",
                                    path.join(" → ")
                                ),
                            ));
                        }
                    }
                    Some(_) => {}
                    None => visit(dep_name, components, state, stack, reported, diags),
                }
            }
        }
        stack.pop();
        state.insert(name, 2);
    }
    let names: Vec<&str> = components.keys().copied().collect();
    for name in names {
        if !state.contains_key(name) {
            visit(name, components, &mut state, &mut Vec::new(), &mut reported, diags);
        }
    }
}

/// Parses `released`: a date (midnight UTC) or an RFC 3339 instant.
pub fn parse_released(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("`{text}` is not a date (expected YYYY-MM-DD or an RFC 3339 time)"))
}

/// Whether `component` names a Component; reports it at `/spec/component` when not.
fn component_known(
    origin: &super::load::Origin,
    component: &str,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let known = components.contains_key(component);
    if !known {
        diags.push(origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/component",
            format!("unknown component `{component}`; add a Component manifest or fix the name"),
        ));
    }
    known
}

fn check_release(
    release: &Manifest<ReleaseSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Release> {
    let spec = &release.spec;
    let origin = &release.origin;
    let mut ok = component_known(origin, &spec.component, components, diags);
    let version = match values::parse_release_version(&spec.version) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "semver",
                "/spec/version",
                format!("spec.version {e}"),
            ));
            None
        }
    };
    let released = spec.released.as_deref().and_then(|text| match parse_released(text) {
        Ok(ts) => Some(ts),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "date",
                "/spec/released",
                format!("spec.released {e}"),
            ));
            ok = false;
            None
        }
    });
    let upgrade_from = spec
        .upgrade_from
        .as_deref()
        .and_then(|text| match VersionReq::parse(text) {
            Ok(req) => Some(req),
            Err(e) => {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "semver",
                    "/spec/upgradeFrom",
                    format!("spec.upgradeFrom `{text}` is not a version requirement ({e}; expected e.g. \">=1.3.0\")"),
                ));
                ok = false;
                None
            }
        });
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, migration) in spec.migrations.iter().enumerate() {
        let base = format!("/spec/migrations/{i}");
        if let Some(first) = ids.insert(&migration.id, i) {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "duplicate",
                &format!("{base}/id"),
                format!(
                    "migration id `{}` is used twice in this release (also at spec.migrations[{first}])",
                    migration.id
                ),
            ));
        }
        if !values::is_valid_name(&migration.id) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "name",
                &format!("{base}/id"),
                format!(
                    "migration id `{}` is invalid (lowercase letters, digits, `.`, `_`, `-`)",
                    migration.id.escape_debug()
                ),
            ));
        }
        check_argv(origin, &format!("{base}/up"), &migration.up, diags);
        if let Some(down) = &migration.down {
            check_argv(origin, &format!("{base}/down"), down, diags);
        }
    }
    for (i, artifact) in spec.artifacts.iter().enumerate() {
        let base = format!("/spec/artifacts/{i}");
        match (&artifact.path, &artifact.url) {
            (None, None) | (Some(_), Some(_)) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &base,
                "an artifact has exactly one of `path` or `url`",
            )),
            (Some(path), None) if path.starts_with('/') || program_escapes(path) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "artifact",
                &format!("{base}/path"),
                format!("artifact path `{path}` leaves the repository checkout; use a path inside the repository"),
            )),
            _ => {}
        }
        if let Some(digest) = &artifact.sha256
            && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "artifact",
                &format!("{base}/sha256"),
                "sha256 must be 64 hexadecimal digits",
            ));
        }
    }
    let version = version?;
    ok.then(|| Release {
        version,
        released,
        upgrade_from,
        manifest: release.clone(),
    })
}

fn check_target(
    target: &Manifest<TargetSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    releases: &BTreeMap<String, Vec<Release>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(VersionWanted, String)> {
    let spec = &target.spec;
    let origin = &target.origin;
    let ok = component_known(origin, &spec.component, components, diags);
    let wanted = match values::parse_version_wanted(&spec.version) {
        Ok(w) => Some(w),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "semver",
                "/spec/version",
                format!("spec.version {e}"),
            ));
            None
        }
    };
    if let Some(VersionWanted::Pin(pin)) = &wanted
        && ok
        && !releases
            .get(&spec.component)
            .is_some_and(|rs| rs.iter().any(|r| &r.version == pin))
    {
        let known: Vec<String> = releases
            .get(&spec.component)
            .map(|rs| rs.iter().rev().take(5).map(|r| r.version.to_string()).collect())
            .unwrap_or_default();
        diags.push(origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/version",
            format!(
                "no Release of `{}` has version {pin}; add the Release manifest or pin a released version{}",
                spec.component,
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", known.join(", "))
                }
            ),
        ));
    }
    for (i, channel) in spec.channels.iter().enumerate() {
        if channel.is_empty() || !channel.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &format!("/spec/channels/{i}"),
                format!("channel `{channel}` is invalid (letters, digits and `-`, like a prerelease word)"),
            ));
        }
    }
    let wanted = wanted?;
    ok.then(|| (wanted, config_hash(&spec.config)))
}

fn duration_field(
    origin: &super::load::Origin,
    pointer: &str,
    text: Option<&str>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    let text = text?;
    match values::parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "duration",
                pointer,
                format!("{}: {e}", super::load::pointer_to_dotted(pointer)),
            ));
            None
        }
    }
}

fn check_policy(policy: &Manifest<PolicySpec>, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
    let spec = &policy.spec;
    let origin = &policy.origin;
    let before = diags.len();
    let mut deny = Vec::new();
    for (i, entry) in spec.deny.iter().enumerate() {
        match values::parse_version_set(entry) {
            Ok(set) => deny.push(set),
            Err(e) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "semver",
                &format!("/spec/deny/{i}"),
                format!("spec.deny[{i}] {e}"),
            )),
        }
    }
    let rules = [
        ("patch", &spec.updates.patch),
        ("minor", &spec.updates.minor),
        ("major", &spec.updates.major),
    ];
    let mut min_release_age = [None, None, None];
    for (i, (name, rule)) in rules.iter().enumerate() {
        let base = format!("/spec/updates/{name}");
        min_release_age[i] = duration_field(
            origin,
            &format!("{base}/minReleaseAge"),
            rule.min_release_age.as_deref(),
            diags,
        );
        if rule.approvals > 0 && !rule.approvers.is_empty() && (rule.approvers.len() as u32) < rule.approvals {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "approval",
                &format!("{base}/approvals"),
                format!("{name} updates need {} approvals but only {} approvers are listed; list more approvers or lower the count", rule.approvals, rule.approvers.len()),
            ));
        }
        let mut seen = BTreeSet::new();
        for (j, approver) in rule.approvers.iter().enumerate() {
            if !approver.contains('@') {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "approval",
                    &format!("{base}/approvers/{j}"),
                    format!("approver `{approver}` is not an email address"),
                ));
            }
            if !seen.insert(approver.to_ascii_lowercase()) {
                diags.push(origin.diagnostic(
                    Severity::Warning,
                    "approval",
                    &format!("{base}/approvers/{j}"),
                    format!("approver `{approver}` is listed twice"),
                ));
            }
        }
    }
    let mut wave_soak = Vec::new();
    let mut wave_names = BTreeSet::new();
    for (i, wave) in spec.rollout.waves.iter().enumerate() {
        let base = format!("/spec/rollout/waves/{i}");
        wave_soak.push(duration_field(
            origin,
            &format!("{base}/soak"),
            wave.soak.as_deref(),
            diags,
        ));
        if !wave_names.insert(wave.name.as_str()) {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "duplicate",
                &format!("{base}/name"),
                format!("wave name `{}` is used twice", wave.name),
            ));
        }
        if wave.selector.is_none() && wave.percent.is_none() {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &base,
                format!("wave `{}` needs a `selector` or a `percent`", wave.name),
            ));
        }
        if let Some(p) = wave.percent
            && !(1..=100).contains(&p)
        {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &format!("{base}/percent"),
                format!("percent {p} is outside 1-100"),
            ));
        }
    }
    if spec.rollout.max_parallel == 0 {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/spec/rollout/maxParallel",
            "maxParallel must be at least 1",
        ));
    }
    let mut check_names = BTreeMap::new();
    for (i, check) in spec.health.checks.iter().enumerate() {
        let base = format!("/spec/health/checks/{i}");
        if let Some(first) = check_names.insert(check.name.as_str(), i) {
            // Results and failures are reported by check name; two checks with one name would
            // make "check `http` failed" ambiguous.
            diags.push(origin.diagnostic(
                Severity::Violation,
                "duplicate",
                &format!("{base}/name"),
                format!(
                    "health check name `{}` is used twice (also at spec.health.checks[{first}]); give each check its own name",
                    check.name
                ),
            ));
        }
        check_health(origin, &base, check, diags);
    }
    let step_timeout = duration_field(origin, "/spec/stepTimeout", spec.step_timeout.as_deref(), diags);
    if step_timeout == Some(Duration::ZERO) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "duration",
            "/spec/stepTimeout",
            "stepTimeout must be longer than 0",
        ));
    }
    let health_interval = duration_field(origin, "/spec/health/interval", spec.health.interval.as_deref(), diags);
    let health_soak = duration_field(origin, "/spec/health/soak", spec.health.soak.as_deref(), diags);
    let after_soak = spec.after.as_ref().map_or(Duration::ZERO, |after| {
        if after.policy == policy.name {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                "/spec/after/policy",
                format!(
                    "policy `{}` cannot come after itself; name the stage before it",
                    policy.name
                ),
            ));
        }
        duration_field(origin, "/spec/after/soak", after.soak.as_deref(), diags).unwrap_or_default()
    });
    let traffic_analysis = spec.traffic.as_ref().map_or(Duration::ZERO, |traffic| {
        let mut previous = 0;
        for (i, &weight) in traffic.steps.iter().enumerate() {
            if weight == 0 || weight > 100 || weight <= previous {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "schema",
                    &format!("/spec/traffic/steps/{i}"),
                    format!("traffic step {weight} must be 1-100 and above the step before it ({previous})"),
                ));
            }
            previous = weight;
        }
        if traffic.steps.is_empty() {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                "/spec/traffic/steps",
                "traffic needs at least one step (blue-green is `steps: [100]`)",
            ));
        }
        duration_field(origin, "/spec/traffic/analysis", traffic.analysis.as_deref(), diags).unwrap_or_default()
    });
    if let Some(label) = &spec.rollout.group_by
        && label.trim().is_empty()
    {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/spec/rollout/groupBy",
            "groupBy must name a label (e.g. `tenant`)",
        ));
    }
    let clean = !diags[before..].iter().any(|d| d.severity != Severity::Warning);
    clean.then(|| Policy {
        deny,
        step_timeout,
        health_interval,
        health_soak,
        min_release_age,
        wave_soak,
        after_soak,
        traffic_analysis,
        manifest: policy.clone(),
    })
}

fn check_health(origin: &super::load::Origin, base: &str, check: &HealthCheck, diags: &mut Vec<Diagnostic>) {
    let missing = |field: &str| {
        format!(
            "a {} check needs `{field}`",
            match check.check_type {
                CheckType::Http => "http",
                CheckType::Prometheus => "prometheus",
                CheckType::Command => "command",
            }
        )
    };
    match check.check_type {
        CheckType::Http | CheckType::Prometheus => match &check.url {
            None => diags.push(origin.diagnostic(Severity::Invalid, "schema", base, missing("url"))),
            Some(url) => {
                if let Some(p) = template_problem(url) {
                    diags.push(origin.diagnostic(Severity::Invalid, "template", &format!("{base}/url"), p));
                }
                if !url.starts_with("http://") && !url.starts_with("{{") {
                    diags.push(origin.diagnostic(
                        Severity::Invalid,
                        "schema",
                        &format!("{base}/url"),
                        format!("url `{url}` must start with http:// (https checks are not supported yet)"),
                    ));
                }
            }
        },
        CheckType::Command => match &check.argv {
            None => diags.push(origin.diagnostic(Severity::Invalid, "schema", base, missing("argv"))),
            Some(argv) => check_argv(origin, &format!("{base}/argv"), argv, diags),
        },
    }
    if check.check_type == CheckType::Prometheus {
        match &check.query {
            None => diags.push(origin.diagnostic(Severity::Invalid, "schema", base, missing("query"))),
            Some(q) => {
                if let Some(p) = template_problem(q) {
                    diags.push(origin.diagnostic(Severity::Invalid, "template", &format!("{base}/query"), p));
                }
            }
        }
        if check.max.is_none() && check.min.is_none() {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                base,
                "a prometheus check needs `max` or `min`",
            ));
        }
    }
    duration_field(origin, &format!("{base}/timeout"), check.timeout.as_deref(), diags);
}

/// `after.policy` must name a policy, and following `after` from any policy must end (a cycle
/// would hold every stage of it forever).
fn check_promotions(policies: &BTreeMap<&str, &Manifest<PolicySpec>>, diags: &mut Vec<Diagnostic>) {
    for (name, policy) in policies {
        let Some(after) = &policy.spec.after else { continue };
        if !policies.contains_key(after.policy.as_str()) {
            diags.push(policy.origin.diagnostic(
                Severity::Violation,
                "unknown_reference",
                "/spec/after/policy",
                format!(
                    "after.policy names unknown policy `{}`; add that Policy or fix the name",
                    after.policy
                ),
            ));
            continue;
        }
        let mut seen = vec![*name];
        let mut next = after.policy.as_str();
        while let Some(p) = policies.get(next) {
            if seen.contains(&next) {
                if next == *name && seen.len() > 1 {
                    diags.push(policy.origin.diagnostic(
                        Severity::Violation,
                        "cycle",
                        "/spec/after/policy",
                        format!(
                            "promotion cycle: {} → {next}; one stage must come first",
                            seen.join(" → ")
                        ),
                    ));
                }
                break;
            }
            seen.push(next);
            match &p.spec.after {
                Some(a) => next = a.policy.as_str(),
                None => break,
            }
        }
    }
}

fn check_approval(
    approval: &Manifest<ApprovalSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = &approval.spec;
    if !components.contains_key(spec.component.as_str()) {
        diags.push(approval.origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/component",
            format!(
                "unknown component `{}`; add a Component manifest or fix the name",
                spec.component
            ),
        ));
    }
    if let Err(e) = values::parse_release_version(&spec.version) {
        diags.push(approval.origin.diagnostic(
            Severity::Invalid,
            "semver",
            "/spec/version",
            format!("spec.version {e}"),
        ));
    }
    for (i, who) in spec.approved_by.iter().enumerate() {
        if !who.contains('@') {
            diags.push(approval.origin.diagnostic(
                Severity::Invalid,
                "approval",
                &format!("/spec/approvedBy/{i}"),
                format!("approver `{who}` is not an email address"),
            ));
        }
    }
}
