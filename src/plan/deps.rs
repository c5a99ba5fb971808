//! Dependencies between components (`dependsOn`): a dependent waits until its dependencies'
//! targets of the same tenant, or the shared targets it names by selector (any tenant), have
//! converged.

use foldhash::{HashMap, HashMapExt};

use crate::manifest::Version;

use crate::manifest::{Dependency, selector_matches};
use crate::state::TargetStatus;

use super::fleet::Fleet;
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
///
/// The actions are only read (so this can run beside [`super::rollouts::plan_rollouts`]): the
/// blockers are returned by action index, in order, for [`apply_dependency_blockers`].
pub(super) fn gate_dependencies(input: &PlanInput, fleet: &Fleet, actions: &[Action]) -> Vec<(usize, Blocker)> {
    let components = &input.desired.components;
    // Only the components some component depends on can hold anyone: index just those, each
    // for the kinds of dependency that name it (same tenant, shared).
    let mut depended_on: HashMap<&str, (bool, bool)> = HashMap::new();
    for dep in components.values().flat_map(|c| &c.spec.depends_on) {
        match dep {
            Dependency::SameTenant(name) => depended_on.entry(name.as_str()).or_default().0 = true,
            Dependency::Shared(shared) => depended_on.entry(shared.component.as_str()).or_default().1 = true,
        }
    }
    if depended_on.is_empty() {
        return Vec::new();
    }
    let tenant_of = |i: usize, name: &str| fleet.target(i, name)?.tenant();
    let mut pending: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    let mut pending_shared: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        // Its tenant is read from its target: fetched a few actions on (issue #17: reading it
        // waited for the target on every action of a large fleet).
        fleet.fetch(i + crate::prefetch::AHEAD);
        let Some(&(same_tenant, shared)) = depended_on.get(a.component.as_str()) else {
            continue;
        };
        // A target whose last attempt failed is not a base to build on, even when its recorded
        // version is the desired one (a failed install that could not be undone; issue #10, bug 4).
        // Looked up only for an action that does not move the version anyway.
        let failed = || {
            fleet.record(i, &a.target).is_some_and(|r| {
                matches!(
                    r.status,
                    TargetStatus::Failed | TargetStatus::Unknown | TargetStatus::InProgress
                )
            })
        };
        let unconverged = matches!(
            a.action,
            ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
        ) || (a.action != ActionKind::Remove && (a.status == Status::Violation || failed()));
        if !unconverged {
            continue;
        }
        if shared {
            pending_shared.entry(a.component.as_str()).or_default().push(i);
        }
        if same_tenant && let Some(tenant) = tenant_of(i, &a.target) {
            pending.entry((a.component.as_str(), tenant)).or_default().push(i);
        }
    }
    if pending.is_empty() && pending_shared.is_empty() {
        return Vec::new();
    }
    let no_labels = crate::manifest::Labels::new();
    let labels_of = |j: usize, name: &str| fleet.target(j, name).map_or(&no_labels, |t| t.labels());
    let mut blockers: Vec<(usize, Blocker)> = Vec::new();
    // What each holder is doing, worded once however many dependents wait for it.
    let holding = pending.values().chain(pending_shared.values()).map(Vec::len).sum();
    let mut what_of: HashMap<usize, String> = HashMap::with_capacity(holding);
    for (i, a) in actions.iter().enumerate() {
        fleet.fetch(i + crate::prefetch::AHEAD);
        if !matches!(a.action, ActionKind::Install | ActionKind::Upgrade) || a.status == Status::Violation {
            continue;
        }
        let Some(component) = components.get(&a.component) else {
            continue;
        };
        if component.spec.depends_on.is_empty() {
            continue;
        }
        let tenant = tenant_of(i, &a.target);
        for dep in &component.spec.depends_on {
            let shared_holders: Vec<usize>;
            let holders: &[usize] = match dep {
                Dependency::SameTenant(name) => match tenant {
                    Some(tenant) => pending.get(&(name.as_str(), tenant)).map_or(&[][..], Vec::as_slice),
                    None => continue,
                },
                Dependency::Shared(shared) => {
                    shared_holders = pending_shared
                        .get(shared.component.as_str())
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|&j| {
                            j != i && selector_matches(shared.selector.as_ref(), labels_of(j, &actions[j].target))
                        })
                        .collect();
                    &shared_holders
                }
            };
            if holders.is_empty() {
                continue;
            }
            // Worded only for a dependent that waits (most of a fleet has nothing to wait for).
            let scope = match dep {
                Dependency::SameTenant(_) => ["tenant ", tenant.unwrap_or_default()].concat(),
                Dependency::Shared(shared) => match &shared.selector {
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
            };
            let dep = dep.component();
            for &j in holders {
                let d = &actions[j];
                let what = what_of.entry(j).or_insert_with(|| {
                    if d.status == Status::Violation {
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
                    }
                });
                // "waits for {target} ({what}) to finish first: component `{component}`
                // dependsOn `{dep}` ({scope})", put together without the formatting machinery
                // (issue #17: thousands of dependents wait on every pass of a large rollout).
                let mut reason = String::with_capacity(
                    70 + d.target.len() + what.len() + a.component.len() + dep.len() + scope.len(),
                );
                for part in [
                    "waits for ",
                    &d.target,
                    " (",
                    what,
                    ") to finish first: component `",
                    &a.component,
                    "` dependsOn `",
                    dep,
                    "` (",
                    &scope,
                    ")",
                ] {
                    reason.push_str(part);
                }
                blockers.push((i, Blocker::new(BlockerKind::Dependency, reason)));
            }
        }
    }
    blockers
}

/// Pushes [`gate_dependencies`]' blockers onto their actions, in order.
pub(super) fn apply_dependency_blockers(actions: &mut [Action], blockers: Vec<(usize, Blocker)>) {
    for (i, b) in blockers {
        actions[i].blocked_by.push(b);
    }
}
