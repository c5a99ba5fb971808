//! Dependencies between components (`dependsOn`): a dependent waits until its dependencies'
//! targets of the same tenant have converged.

use std::collections::HashMap;

use semver::Version;

use crate::state::TargetStatus;

use super::model::{Action, ActionKind, Blocker, BlockerKind, PlanInput, Status};

/// Blocks installs and upgrades of a component until the targets of the components it
/// `dependsOn` with the same `tenant` label have converged (SPEC §2, Component).
///
/// A dependency target holds its dependents while its action changes its version (install,
/// upgrade, downgrade) or it has a violation (it cannot converge until fixed). Targets without
/// a `tenant` label have no dependencies; downgrades are not held (a revert must not wait).
pub(super) fn gate_dependencies(input: &PlanInput, actions: &mut [Action]) {
    let tenant_of = |name: &str| input.desired.targets.get(name)?.labels().get("tenant");
    let mut pending: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
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
        if unconverged && let Some(tenant) = tenant_of(&a.target) {
            pending
                .entry((a.component.as_str(), tenant.as_str()))
                .or_default()
                .push(i);
        }
    }
    if pending.is_empty() {
        return;
    }
    let mut blockers: Vec<(usize, Blocker)> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if !matches!(a.action, ActionKind::Install | ActionKind::Upgrade) || a.status == Status::Violation {
            continue;
        }
        let (Some(tenant), Some(component)) = (tenant_of(&a.target), input.desired.components.get(&a.component)) else {
            continue;
        };
        for dep in &component.spec.depends_on {
            for &j in pending.get(&(dep.as_str(), tenant.as_str())).into_iter().flatten() {
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
                            "waits for {} ({what}) to finish first: component `{}` dependsOn `{dep}` (tenant {tenant})",
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
