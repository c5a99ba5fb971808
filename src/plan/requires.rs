//! Compatibility between components (`Release.spec.requires`, issue #16): a target moves to a
//! release only once the components that release requires run an accepted version on the targets
//! sharing its scope label; a required component moves only when no dependent's running release
//! would be broken by it; combinations the desired state can never reach are violations.

use foldhash::{HashMap, HashMapExt};
use std::collections::{BTreeMap, BTreeSet};

use crate::manifest::Version;

use crate::manifest::values::requirement_accepts;
use crate::manifest::{Desired, Requires, Target, VersionWanted};
use crate::state::TargetStatus;

use super::model::{Action, ActionKind, Blocker, BlockerKind, PlanInput, Status};

/// Why one action waits for another.
struct Wait {
    waiting: usize,
    for_: usize,
    reason: String,
}

/// Checks every action against the `requires` of the releases involved (SPEC §2, Release):
///
/// - the release a target is to run (its `to`) requires, for each entry, that every target of
///   the required component with the same value of the scope label is to run an accepted
///   version: otherwise, or when there is no such target (or the dependent has no such label),
///   the dependent is a violation (the desired state can never satisfy it);
/// - a dependent that changes version waits (`dependency` blocker) until each of those targets
///   is recorded at an accepted version with a sound last attempt: the required upgrade goes
///   first;
/// - a required target's upgrade or downgrade to a version that a dependent's *recorded* release
///   does not accept waits until that dependent has moved (the safe side of a rollback: it is
///   blocked with the reason, never allowed to break a running dependent);
/// - actions that wait on each other in a loop (each one's move breaks the other) are violations:
///   no order satisfies them.
pub(super) fn gate_requirements(input: &PlanInput, actions: &mut [Action]) {
    let desired = input.desired;
    // Most fleets declare no requirement: nothing to index then.
    if !any_requirement(desired) {
        return;
    }
    let no_labels = crate::manifest::Labels::new();
    let labels_of = |name: &str| desired.targets.get(name).map_or(&no_labels, |t| t.labels());
    // (component, label key, label value) → actions of that component's targets with that label.
    let mut peers: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        if a.action == ActionKind::Remove {
            continue;
        }
        for (key, value) in labels_of(&a.target) {
            peers
                .entry((a.component.as_str(), key.as_str(), value.as_str()))
                .or_default()
                .push(i);
        }
    }
    let recorded = |name: &str| {
        input
            .recorded
            .targets
            .get(name)
            .filter(|r| r.status != TargetStatus::Removed)
    };
    let show = |v: Option<&Version>| v.map_or_else(|| "none".to_string(), Version::to_string);
    let mut violations: Vec<(usize, String)> = Vec::new();
    let mut waits: Vec<Wait> = Vec::new();

    // The dependent's side: what its planned release requires.
    for (i, a) in actions.iter().enumerate() {
        let Some(to) = &a.to else { continue };
        if a.status == Status::Violation {
            continue;
        }
        let Some(release) = desired.release(&a.component, to) else {
            continue;
        };
        let moves = matches!(
            a.action,
            ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
        );
        for required in &release.requires {
            let scope = required.scope.as_str();
            let Some(value) = labels_of(&a.target).get(scope) else {
                violations.push((i, no_label(&a.component, to, required, &a.target)));
                continue;
            };
            let Some(theirs) = peers.get(&(required.component.as_str(), scope, value.as_str())) else {
                violations.push((i, no_peer(&a.component, to, required, value)));
                continue;
            };
            for &j in theirs {
                let peer = &actions[j];
                match &peer.to {
                    None => {
                        if moves {
                            waits.push(Wait {
                                waiting: i,
                                for_: j,
                                reason: format!(
                                    "waits for {} ({}: violation) to be fixed first: {} {to} requires {required} ({scope}={value})",
                                    peer.target, peer.component, a.component
                                ),
                            });
                        }
                    }
                    Some(planned) if !requirement_accepts(&required.versions, planned) => violations.push((
                        i,
                        peer_refuses(&a.component, to, required, value, &peer.target, planned),
                    )),
                    Some(planned) if moves => {
                        let record = recorded(&peer.target);
                        let sound = record.is_some_and(|r| {
                            !matches!(
                                r.status,
                                TargetStatus::Failed | TargetStatus::Unknown | TargetStatus::InProgress
                            )
                        });
                        let base = record.and_then(|r| r.version.as_ref());
                        if sound && base.is_some_and(|v| requirement_accepts(&required.versions, v)) {
                            continue;
                        }
                        let state = if sound || record.is_none() {
                            format!("{} {} → {planned}", peer.component, show(base))
                        } else {
                            format!(
                                "{} {}: last attempt {}",
                                peer.component,
                                show(base),
                                record.map_or("", |r| r.status.as_str())
                            )
                        };
                        waits.push(Wait {
                            waiting: i,
                            for_: j,
                            reason: format!(
                                "waits for {} ({state}) to finish first: {} {to} requires {required} ({scope}={value})",
                                peer.target, a.component
                            ),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }

    // The required side: a move that the release a dependent runs now does not accept waits
    // until that dependent has moved.
    for (i, t) in actions.iter().enumerate() {
        let Some(running) = recorded(&t.target).and_then(|r| r.version.as_ref()) else {
            continue;
        };
        let Some(release) = desired.release(&t.component, running) else {
            continue;
        };
        for required in &release.requires {
            let scope = required.scope.as_str();
            let Some(value) = labels_of(&t.target).get(scope) else {
                continue;
            };
            for &j in peers
                .get(&(required.component.as_str(), scope, value.as_str()))
                .into_iter()
                .flatten()
            {
                let b = &actions[j];
                if !matches!(b.action, ActionKind::Upgrade | ActionKind::Downgrade) {
                    continue;
                }
                let Some(planned) = &b.to else { continue };
                if requirement_accepts(&required.versions, planned) {
                    continue;
                }
                waits.push(Wait {
                    waiting: j,
                    for_: i,
                    reason: format!(
                        "waits for {} to move first: it runs {} {running}, which requires {required} ({scope}={value}), and {} {} → {planned} would break it",
                        t.target,
                        t.component,
                        b.component,
                        show(b.from.as_ref())
                    ),
                });
            }
        }
    }

    // Waits in a loop can never be released: each is a violation.
    for member in waiting_loops(&waits) {
        let names: BTreeSet<&str> = member.iter().map(|&k| actions[k].target.as_str()).collect();
        let names: Vec<&str> = names.into_iter().collect();
        for &k in &member {
            violations.push((
                k,
                format!(
                    "no upgrade order satisfies the requirements between {}: each would have to move before the other; change the desired versions so that one can move first (a release accepting both the old and the new version)",
                    names.join(", ")
                ),
            ));
        }
    }

    let mut violated: BTreeSet<usize> = BTreeSet::new();
    for (i, message) in violations {
        violated.insert(i);
        if !actions[i].violations.contains(&message) {
            actions[i].violations.push(message);
        }
        actions[i].status = Status::Violation;
    }
    for wait in waits {
        if !violated.contains(&wait.waiting) {
            actions[wait.waiting]
                .blocked_by
                .push(Blocker::new(BlockerKind::Dependency, wait.reason));
        }
    }
}

fn any_requirement(desired: &Desired) -> bool {
    desired.releases.values().flatten().any(|r| !r.requires.is_empty())
}

fn no_label(component: &str, to: &Version, required: &Requires, target: &str) -> String {
    let scope = &required.scope;
    format!(
        "{component} {to} requires {required} on the targets sharing its `{scope}` label, and target `{target}` has no `{scope}` label; add the label or drop the requirement"
    )
}

fn no_peer(component: &str, to: &Version, required: &Requires, value: &str) -> String {
    format!(
        "{component} {to} requires {required}, and no target of `{}` has {}={value}; add one or drop the requirement",
        required.component, required.scope
    )
}

fn peer_refuses(
    component: &str,
    to: &Version,
    required: &Requires,
    value: &str,
    peer: &str,
    planned: &Version,
) -> String {
    format!(
        "{component} {to} requires {required} ({}={value}), but {peer} is to run {} {planned}; change one of the desired versions",
        required.scope, required.component
    )
}

/// What `validate` can tell without recorded state or a clock: pinned targets whose release's
/// `requires` the desired state can never satisfy (no scope label, no required target sharing
/// it, or a required target pinned to a version it does not accept). The plan reports the same
/// per action, with the same text.
pub fn pinned_requirement_conflicts(desired: &Desired) -> Vec<(&Target, String)> {
    if !any_requirement(desired) {
        return Vec::new();
    }
    let pin = |t: &Target| match &t.wanted {
        VersionWanted::Pin(v) => Some(v.clone()),
        VersionWanted::Requirement(_) => None,
    };
    let mut peers: HashMap<(&str, &str, &str), Vec<&Target>> = HashMap::new();
    for t in desired.targets.values() {
        for (key, value) in t.labels() {
            peers
                .entry((t.spec().component.as_str(), key.as_str(), value.as_str()))
                .or_default()
                .push(t);
        }
    }
    let mut out = Vec::new();
    for target in desired.targets.values() {
        let component = &target.spec().component;
        let Some(to) = pin(target) else { continue };
        let Some(release) = desired.release(component, &to) else {
            continue;
        };
        for required in &release.requires {
            let Some(value) = target.labels().get(&required.scope) else {
                out.push((target, no_label(component, &to, required, target.name())));
                continue;
            };
            let Some(theirs) = peers.get(&(required.component.as_str(), required.scope.as_str(), value.as_str()))
            else {
                out.push((target, no_peer(component, &to, required, value)));
                continue;
            };
            for peer in theirs {
                if let Some(planned) = pin(peer)
                    && !requirement_accepts(&required.versions, &planned)
                {
                    out.push((
                        target,
                        peer_refuses(component, &to, required, value, peer.name(), &planned),
                    ));
                }
            }
        }
    }
    out
}

/// The actions on a loop of waits, one set per loop (strongly connected components of more than
/// one action), found with Kosaraju's two passes.
fn waiting_loops(waits: &[Wait]) -> Vec<Vec<usize>> {
    let mut forward: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut backward: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for w in waits {
        forward.entry(w.waiting).or_default().push(w.for_);
        backward.entry(w.for_).or_default().push(w.waiting);
        forward.entry(w.for_).or_default();
        backward.entry(w.waiting).or_default();
    }
    // First pass: finishing order, iteratively (a fleet can be deep).
    let mut seen: BTreeSet<usize> = BTreeSet::new();
    let mut order: Vec<usize> = Vec::new();
    for &start in forward.keys() {
        if !seen.insert(start) {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        while let Some((node, next)) = stack.pop() {
            let edges = &forward[&node];
            if let Some(&to) = edges.get(next) {
                stack.push((node, next + 1));
                if seen.insert(to) {
                    stack.push((to, 0));
                }
            } else {
                order.push(node);
            }
        }
    }
    // Second pass: components on the reversed graph, in reverse finishing order.
    let mut assigned: BTreeSet<usize> = BTreeSet::new();
    let mut loops = Vec::new();
    for &start in order.iter().rev() {
        if !assigned.insert(start) {
            continue;
        }
        let mut member = vec![start];
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &from in &backward[&node] {
                if assigned.insert(from) {
                    member.push(from);
                    stack.push(from);
                }
            }
        }
        if member.len() > 1 {
            member.sort_unstable();
            loops.push(member);
        }
    }
    loops
}
