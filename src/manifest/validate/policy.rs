//! Policy manifests: durations, waves, windows, approvals, health checks, and promotion across
//! policies (`after`) without cycles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values;

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

pub(super) fn check_health(
    origin: &crate::manifest::load::Origin,
    base: &str,
    check: &HealthCheck,
    diags: &mut Vec<Diagnostic>,
) {
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
pub(super) fn check_promotions(policies: &BTreeMap<&str, &Manifest<PolicySpec>>, diags: &mut Vec<Diagnostic>) {
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
