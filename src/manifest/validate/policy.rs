//! Policy manifests: durations, waves, windows, approvals, health checks, and promotion across
//! policies (`after`) without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values;

use crate::manifest::health::{DEFAULT_INTERVAL, HealthSettings, MetricBounds, PolicyCheck, Probe};

use super::Policy;
use super::template::{check_argv, template_problem};

pub(super) fn duration_field(
    origin: &crate::manifest::load::Origin,
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
                format!("{}: {e}", crate::manifest::load::pointer_to_dotted(pointer)),
            ));
            None
        }
    }
}

pub(super) fn check_policy(policy: &Manifest<PolicySpec>, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
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
    let mut emergency_min_release_age = None;
    let emergency = spec.updates.emergency.as_ref().map(|rule| ("emergency", rule));
    for (i, (name, rule)) in rules.iter().copied().chain(emergency).enumerate() {
        let base = format!("/spec/updates/{name}");
        if name != "emergency" && rule.freezes == Freezes::Override {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "policy",
                &format!("{base}/freezes"),
                format!("spec.updates.{name}.freezes: only updates.emergency may override freezes; remove it here or move the rule to updates.emergency"),
            ));
        }
        let age = duration_field(
            origin,
            &format!("{base}/minReleaseAge"),
            rule.min_release_age.as_deref(),
            diags,
        );
        match min_release_age.get_mut(i) {
            Some(slot) => *slot = age,
            None => emergency_min_release_age = age,
        }
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
    let rollback = &spec.rollback;
    if rollback.approvals > 0
        && !rollback.approvers.is_empty()
        && (rollback.approvers.len() as u32) < rollback.approvals
    {
        diags.push(origin.diagnostic(
            Severity::Violation,
            "approval",
            "/spec/rollback/approvals",
            format!(
                "rollbacks need {} approvals but only {} approvers are listed; list more approvers or lower the count",
                rollback.approvals,
                rollback.approvers.len()
            ),
        ));
    }
    for (j, approver) in rollback.approvers.iter().enumerate() {
        if !approver.contains('@') {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "approval",
                &format!("/spec/rollback/approvers/{j}"),
                format!("approver `{approver}` is not an email address"),
            ));
        }
    }
    let mut wave_soak = Vec::new();
    let mut wave_after = Vec::new();
    let mut wave_names = BTreeSet::new();
    for (i, wave) in spec.rollout.waves.iter().enumerate() {
        let base = format!("/spec/rollout/waves/{i}");
        wave_soak.push(duration_field(
            origin,
            &format!("{base}/soak"),
            wave.soak.as_deref(),
            diags,
        ));
        wave_after.push(
            wave.after
                .as_ref()
                .and_then(|after| check_wave_after(policy, i, after, diags)),
        );
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
    let mut checks = Vec::new();
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
        checks.extend(check_health(origin, &base, check, diags));
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
    if health_interval == Some(Duration::ZERO) && health_soak.is_some_and(|s| !s.is_zero()) {
        // The soak loop would spin: every round due at once (this was only refused when the
        // checks first ran, after the deploy).
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "duration",
            "/spec/health/interval",
            "health.interval must be more than 0 when health.soak is set",
        ));
    }
    let health = HealthSettings {
        checks,
        interval: health_interval.unwrap_or(DEFAULT_INTERVAL),
        soak: health_soak.unwrap_or_default(),
        failure_threshold: spec.health.failure_threshold.max(1),
        peers: spec.health.peers,
    };
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
        health,
        min_release_age,
        emergency_min_release_age,
        wave_soak,
        wave_after,
        after_soak,
        traffic_analysis,
        manifest: policy.clone(),
    })
}

/// Parses `rollout.waves[i].after` (SPEC §8): exactly one of `policy` (another policy; that it
/// exists and no cycle goes through it is [`check_promotions`]' business) or `wave` (an earlier
/// wave of this policy: the same or a later one would wait for itself through the wave order).
fn check_wave_after(
    policy: &Manifest<PolicySpec>,
    i: usize,
    after: &WaveAfter,
    diags: &mut Vec<Diagnostic>,
) -> Option<WaveStage> {
    let origin = &policy.origin;
    let waves = &policy.spec.rollout.waves;
    let name = &waves[i].name;
    let base = format!("/spec/rollout/waves/{i}/after");
    let soak = duration_field(origin, &format!("{base}/soak"), after.soak.as_deref(), diags);
    let stage = match (&after.policy, &after.wave) {
        (Some(stage), None) if *stage == policy.name => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "cycle",
                &format!("{base}/policy"),
                format!(
                    "wave `{name}` cannot wait for its own policy `{stage}`, whose rollout it is part of (a cycle); name another policy, or an earlier wave with `after: {{ wave: NAME }}`"
                ),
            ));
            None
        }
        (Some(stage), None) => Some(StageRef::Policy(stage.clone())),
        (None, Some(wave)) => {
            match waves.iter().position(|w| w.name == *wave) {
                Some(j) if j < i => Some(StageRef::Wave(j)),
                Some(_) => {
                    diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "cycle",
                    &format!("{base}/wave"),
                    format!(
                        "wave `{name}` cannot wait for wave `{wave}`, which comes after it or is itself (waves start in order: a cycle); name an earlier wave"
                    ),
                ));
                    None
                }
                None => {
                    let earlier: Vec<&str> = waves[..i].iter().map(|w| w.name.as_str()).collect();
                    diags.push(origin.diagnostic(
                    Severity::Violation,
                    "unknown_reference",
                    &format!("{base}/wave"),
                    format!(
                        "after.wave names no earlier wave `{wave}` of policy `{}` (earlier waves: {}); fix the name",
                        policy.name,
                        if earlier.is_empty() { "none".to_string() } else { earlier.join(", ") }
                    ),
                ));
                    None
                }
            }
        }
        _ => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &base,
                format!(
                    "wave `{name}`: `after` names exactly one of `policy` (another stage) or `wave` (an earlier wave of this policy)"
                ),
            ));
            None
        }
    };
    Some(WaveStage {
        stage: stage?,
        soak: soak?,
    })
}

/// Checks one health check and types it; `None` (with a diagnostic) when it is not usable.
pub(super) fn check_health(
    origin: &crate::manifest::load::Origin,
    base: &str,
    check: &HealthCheck,
    diags: &mut Vec<Diagnostic>,
) -> Option<PolicyCheck> {
    let before = diags.len();
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
    if let Some(body) = &check.body
        && let Some(p) = template_problem(body)
    {
        diags.push(origin.diagnostic(Severity::Invalid, "template", &format!("{base}/body"), p));
    }
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
    let timeout = duration_field(origin, &format!("{base}/timeout"), check.timeout.as_deref(), diags);
    if diags[before..].iter().any(|d| d.severity != Severity::Warning) {
        return None;
    }
    let probe = match check.check_type {
        CheckType::Command => Probe::Command(check.argv.clone()?),
        CheckType::Http => Probe::Http {
            url: check.url.clone()?,
            expect: check.expect.unwrap_or(200),
            body: check.body.clone(),
        },
        CheckType::Prometheus => Probe::Prometheus {
            url: check.url.clone()?,
            query: check.query.clone()?,
            bounds: MetricBounds {
                min: check.min,
                max: check.max,
            },
            on_no_data: check.on_no_data,
        },
    };
    Some(PolicyCheck {
        name: check.name.clone(),
        timeout,
        probe,
    })
}

/// `components` must name components: a misspelt name would silently leave its targets to
/// another policy (or the built-in one).
pub(super) fn check_policy_components(
    policy: &Manifest<PolicySpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) {
    for (i, name) in policy.spec.components.iter().enumerate() {
        if !components.contains_key(name.as_str()) {
            diags.push(policy.origin.diagnostic(
                Severity::Violation,
                "unknown_reference",
                &format!("/spec/components/{i}"),
                format!("components names unknown component `{name}`; add that Component or fix the name"),
            ));
        }
    }
}

/// Every `after.policy` (of a policy or of one of its waves) must name a policy, and following
/// them from any policy must end: a cycle would hold every stage of it forever. A cycle is
/// reported on each policy in it, naming each one's file.
pub(super) fn check_promotions(policies: &BTreeMap<&str, &Manifest<PolicySpec>>, diags: &mut Vec<Diagnostic>) {
    for (name, policy) in policies {
        let mut cycle_reported = false;
        for (pointer, next) in promotion_edges(policy) {
            if next == *name {
                continue; // Waiting for itself: check_policy reports it.
            }
            if !policies.contains_key(next) {
                diags.push(policy.origin.diagnostic(
                    Severity::Violation,
                    "unknown_reference",
                    &pointer,
                    format!("after.policy names unknown policy `{next}`; add that Policy or fix the name"),
                ));
                continue;
            }
            if cycle_reported {
                continue;
            }
            let mut seen = BTreeSet::new();
            if let Some(path) = path_back(policies, next, name, &mut seen) {
                let named = |p: &str| {
                    policies
                        .get(p)
                        .map_or_else(|| p.to_string(), |m| format!("{p} ({})", m.origin.file))
                };
                let mut steps = vec![named(name)];
                steps.push(named(next));
                steps.extend(path.iter().map(|p| named(p)));
                diags.push(policy.origin.diagnostic(
                    Severity::Violation,
                    "cycle",
                    &pointer,
                    format!(
                        "promotion cycle: {} → {name}; one stage must come first",
                        steps.join(" → ")
                    ),
                ));
                cycle_reported = true;
            }
        }
    }
}

/// The policies `policy` waits for, through its own `after` and its waves', with the pointer of
/// each `after.policy`.
fn promotion_edges(policy: &Manifest<PolicySpec>) -> Vec<(String, &str)> {
    let mut edges = Vec::new();
    if let Some(after) = &policy.spec.after {
        edges.push(("/spec/after/policy".to_string(), after.policy.as_str()));
    }
    for (i, wave) in policy.spec.rollout.waves.iter().enumerate() {
        if let Some(stage) = wave.after.as_ref().and_then(|a| a.policy.as_deref()) {
            edges.push((format!("/spec/rollout/waves/{i}/after/policy"), stage));
        }
    }
    edges
}

/// A path of policies from `from` (excluded) whose last waits for `to`, if `from` waits for `to`
/// through any chain of `after`s; `seen` keeps the search linear.
fn path_back<'a>(
    policies: &BTreeMap<&str, &'a Manifest<PolicySpec>>,
    from: &str,
    to: &str,
    seen: &mut BTreeSet<String>,
) -> Option<Vec<&'a str>> {
    if !seen.insert(from.to_string()) {
        return None;
    }
    let policy = policies.get(from)?;
    for (_, next) in promotion_edges(policy) {
        if next == to {
            return Some(Vec::new());
        }
        if let Some(mut path) = path_back(policies, next, to, seen) {
            path.insert(0, next);
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::manifest::health::{MetricBounds, Probe};
    use crate::manifest::{Diagnostic, RawContent, RawFile, read_manifests, validate};

    fn policy_with_health(health: &str) -> (Option<crate::manifest::Policy>, Vec<Diagnostic>) {
        let yaml =
            format!("apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: p }}\nspec:\n  health:\n{health}");
        let file = RawFile {
            path: "policies/p.yaml".into(),
            content: RawContent::Bytes(yaml.into_bytes()),
        };
        // The schema refuses some mistakes as the files are read, validation the rest.
        let (manifests, mut diags) = read_manifests(None, &[file]);
        let (desired, more) = validate(manifests);
        diags.extend(more);
        (desired.policies.into_iter().next(), diags)
    }

    /// Checks are typed once, here; the executor runs these values as they are (issue #9).
    #[test]
    fn health_checks_are_typed_by_validation() {
        let (policy, diags) = policy_with_health(
            "    checks:\n      - { name: errors, type: prometheus, url: \"http://prom:9090\", query: \"rate(x)\", max: 0.05, timeout: 3s }\n      - { name: up, type: http, url: \"http://{{ target.vars.host }}/up\" }\n    interval: 30s\n    soak: 5m\n    failureThreshold: 2\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let health = policy.unwrap().health;
        assert_eq!(health.interval, Duration::from_secs(30));
        assert_eq!(health.soak, Duration::from_secs(300));
        assert_eq!(health.failure_threshold, 2);
        assert_eq!(health.checks[0].timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            health.checks[0].probe,
            Probe::Prometheus {
                url: "http://prom:9090".into(),
                query: "rate(x)".into(),
                bounds: MetricBounds {
                    min: None,
                    max: Some(0.05)
                },
                on_no_data: crate::manifest::OnNoData::Fail,
            }
        );
        assert_eq!(
            health.checks[1].probe,
            Probe::Http {
                url: "http://{{ target.vars.host }}/up".into(),
                expect: 200,
                body: None
            }
        );
        assert_eq!(
            health.checks[1].timeout_or(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
    }

    /// Each was only refused when the checks first ran, after the deploy had changed the
    /// target; validation refuses them now, with the field, and the policy is not built.
    #[test]
    fn unusable_health_settings_are_refused_by_validation() {
        for (health, line, text) in [
            (
                "    checks:\n      - { name: c, type: prometheus, url: \"http://prom\", max: 1 }\n",
                7,
                "`query` is required",
            ),
            (
                "    checks:\n      - { name: c, type: command, argv: [x], timeout: soon }\n",
                7,
                "\"soon\" is not a valid duration",
            ),
            (
                "    interval: 0s\n    soak: 1m\n",
                6,
                "health.interval must be more than 0",
            ),
        ] {
            let (policy, diags) = policy_with_health(health);
            assert!(policy.is_none(), "{health}");
            assert!(
                diags
                    .iter()
                    .any(|d| d.file == "policies/p.yaml" && d.line == Some(line) && d.message.contains(text)),
                "{health}: {diags:?}"
            );
        }
    }
}
