//! Dependencies between components (`dependsOn`): a dependent waits until its dependencies'
//! targets of the same tenant, or the shared targets it names by selector (any tenant), have
//! converged.

use std::collections::HashMap;

use crate::manifest::Version;

use crate::manifest::{Dependency, selector_matches};
use crate::state::TargetStatus;

use super::model::{Action, ActionKind, Blocker, BlockerKind, PlanInput, Status};

/// Blocks installs and upgrades of a component until the targets of the components it
/// `dependsOn` have converged (SPEC §2, Component): for a name, those with the same `tenant`
/// label; for `{ component, selector }`, those matching the selector whatever their tenant
/// (shared infrastructure; issue #16: tenant services upgraded while the shared Kafka they need
/// was still pending, silently).
///
/// A dependency target holds its dependents while its action changes its version (install,
/// upgrade, downgrade) or it has a violation (it cannot converge until fixed). Targets without
/// a `tenant` label have no same-tenant dependencies; downgrades are not held (a revert must
/// not wait).
pub(super) fn gate_dependencies(input: &PlanInput, actions: &mut [Action]) {
    let tenant_of = |name: &str| input.desired.targets.get(name)?.labels().get("tenant");
    let mut pending: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut pending_shared: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        // A target whose last attempt failed is not a base to build on, even when its recorded
        // version is the desired one (a failed install that could not be undone; issue #10, bug 4).
        let failed = input.recorded.targets.get(&a.target).is_some_and(|r| {
            matches!(
                r.status,
                TargetStatus::Failed | TargetStatus::Unknown | TargetStatus::InProgress
            )
        });
        let unconverged = matches!(
            a.action,
            ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
        ) || (a.status == Status::Violation && a.action != ActionKind::Remove)
            || (failed && a.action != ActionKind::Remove);
        if !unconverged {
            continue;
        }
        pending_shared.entry(a.component.as_str()).or_default().push(i);
        if let Some(tenant) = tenant_of(&a.target) {
            pending
                .entry((a.component.as_str(), tenant.as_str()))
                .or_default()
                .push(i);
        }
    }
    if pending_shared.is_empty() {
        return;
    }
    let no_labels = crate::manifest::Labels::new();
    let labels_of = |name: &str| input.desired.targets.get(name).map_or(&no_labels, |t| t.labels());
    let mut blockers: Vec<(usize, Blocker)> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if !matches!(a.action, ActionKind::Install | ActionKind::Upgrade) || a.status == Status::Violation {
            continue;
        }
        let Some(component) = input.desired.components.get(&a.component) else {
            continue;
        };
        let tenant = tenant_of(&a.target);
        for dep in &component.spec.depends_on {
            let (holders, scope): (Vec<usize>, String) = match dep {
                Dependency::SameTenant(name) => match tenant {
                    Some(tenant) => (
                        pending
                            .get(&(name.as_str(), tenant.as_str()))
                            .cloned()
                            .unwrap_or_default(),
                        format!("tenant {tenant}"),
                    ),
                    None => continue,
                },
                Dependency::Shared(shared) => (
                    pending_shared
                        .get(shared.component.as_str())
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&j| {
                            j != i && selector_matches(shared.selector.as_ref(), labels_of(&actions[j].target))
                        })
                        .collect(),
                    match &shared.selector {
                        Some(selector) => format!(
                            "shared: {}",
                            selector
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                        None => "shared: every target".to_string(),
                    },
                ),
            };
            let dep = dep.component();
            for j in holders {
                let d = &actions[j];
                let what = if d.status == Status::Violation {
                    format!("{}: violation", d.component)
                } else if d.action == ActionKind::Noop || d.action == ActionKind::Config {
                    format!(
                        "{} {}: last attempt failed",
                        d.component,
                        d.to.as_ref().map_or_else(|| "none".to_string(), Version::to_string)
                    )
                } else {
                    format!(
                        "{} {} → {}",
                        d.component,
                        d.from.as_ref().map_or_else(|| "none".to_string(), Version::to_string),
                        d.to.as_ref().map_or_else(|| "none".to_string(), Version::to_string)
                    )
                };
                blockers.push((
                    i,
                    Blocker::new(
                        BlockerKind::Dependency,
                        format!(
                            "waits for {} ({what}) to finish first: component `{}` dependsOn `{dep}` ({scope})",
                            d.target, a.component
                        ),
                    ),
                ));
            }
        }
    }
    for (i, b) in blockers {
        actions[i].blocked_by.push(b);
    }
}
