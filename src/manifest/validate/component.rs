//! Component manifests: executors, steps, health checks, and `dependsOn` without cycles.

use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;

use super::BUILTIN_EXECUTOR;
use super::template::check_argv;

pub(super) fn check_component(
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
        let dep = dep.component();
        if !components.contains_key(dep) {
            diags.push(component.origin.diagnostic(
                Severity::Violation,
                "unknown_reference",
                &format!("/spec/dependsOn/{i}"),
                format!("dependsOn names unknown component `{dep}`"),
            ));
        } else if dep == component.name {
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
    // A pair or nothing: a `quiesce` alone would leave the workflows stopped after every
    // attempt, and a `resume` alone (it only runs after a `quiesce`) would never run.
    match (&spec.steps.quiesce, &spec.steps.resume) {
        (Some(_), None) => diags.push(component.origin.diagnostic(
            Severity::Violation,
            "missing_step",
            "/spec/steps/quiesce",
            format!(
                "component `{}` has a `quiesce` step and no `resume` step; add `resume` (it starts the stopped workflows again after every attempt and rollback) or remove `quiesce`",
                component.name
            ),
        )),
        (None, Some(_)) => diags.push(component.origin.diagnostic(
            Severity::Violation,
            "missing_step",
            "/spec/steps/resume",
            format!(
                "component `{}` has a `resume` step and no `quiesce` step; `resume` only runs after `quiesce`: add `quiesce` or remove `resume`",
                component.name
            ),
        )),
        _ => {}
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

pub(super) fn check_dependency_cycles(
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) {
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
                let Some((dep_name, _)) = components.get_key_value(dep.component()) else {
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
