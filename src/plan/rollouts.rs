//! Rollouts across targets: grouping installs and upgrades by (component, version, policy),
//! wave assignment, halts, and promotion across stages (`after`, on a policy or on a wave).

use foldhash::{HashMap, HashMapExt};

use crate::manifest::Version;
use jiff::Timestamp;

use crate::manifest::StageRef;
use crate::policy::Governing;
use crate::policy::waves::{self, Member, WaveGate};
use crate::state::TargetStatus;

use super::fleet::Fleet;
use super::gates::governing_by_name;
use super::model::{Action, ActionKind, Blocker, BlockerKind, PlanInput, Rollout, RolloutWave, Status};

/// Groups installs and upgrades into rollouts, assigns waves, and blocks the targets whose
/// wave may not start yet (`wave`) or whose rollout is halted (`halted`).
///
/// A rollout is keyed by (component, version, policy); its members are the targets whose
/// action starts it (violations excluded: they never run and would hold a wave forever) plus
/// the desired targets the state branch records in `rollouts/<component>@<version>.yaml`.
/// Downgrades to a rollback point skip waves: a revert goes everywhere at once; a downgrade to a
/// version that never ran on the target is grouped like an upgrade.
///
/// The actions are only read (so this can run beside [`super::deps::gate_dependencies`]): the
/// wave blockers are returned, for [`apply_wave_blockers`].
///
/// # Guarantees
/// Linear in the number of actions (plus sorting each rollout once).
pub(super) fn plan_rollouts(input: &PlanInput, fleet: &Fleet, actions: &[Action]) -> (Vec<Rollout>, Vec<WaveBlocker>) {
    // Borrowed from the actions: a rollout's key is copied once per rollout, not per action.
    type Key<'a> = (&'a str, &'a Version, Option<&'a str>);
    // Grouped by hash, then the few groups sorted: a search of an ordered map per action
    // compared names and versions from its root 10,000 times (issue #17).
    let mut groups: HashMap<Key, Vec<usize>> = HashMap::new();
    for (i, a) in actions.iter().enumerate() {
        if (matches!(a.action, ActionKind::Install | ActionKind::Upgrade)
            || (a.action == ActionKind::Downgrade && a.update_type.is_some()))
            && a.status != Status::Violation
            && let Some(to) = &a.to
        {
            groups
                .entry((a.component.as_str(), to, a.policy.as_deref()))
                .or_default()
                .push(i);
        }
    }
    // Only a recorded rollout names members that have no action in it (by their policy).
    let policy_of: HashMap<&str, Option<&str>> = if input.recorded.rollouts.is_empty() {
        HashMap::new()
    } else {
        actions
            .iter()
            .map(|a| (a.target.as_str(), a.policy.as_deref()))
            .collect()
    };
    // Targets per (component, policy), for stages (`after`) to look at the stage before.
    let mut stages: HashMap<(&str, &str), Vec<&str>> = HashMap::new();
    if input
        .desired
        .policies
        .iter()
        .any(|p| p.manifest.spec.after.is_some() || p.wave_after.iter().any(Option::is_some))
    {
        for a in actions.iter() {
            if let Some(policy) = a.policy.as_deref() {
                stages
                    .entry((a.component.as_str(), policy))
                    .or_default()
                    .push(a.target.as_str());
            }
        }
    }
    let mut groups: Vec<(Key, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_unstable_by_key(|(key, _)| *key);
    // At least one per grouped action (its wave).
    let mut wave_blockers: Vec<WaveBlocker> = Vec::with_capacity(groups.iter().map(|(_, g)| g.len()).sum());
    let mut rollouts = Vec::with_capacity(groups.len());
    for ((component, version, policy_name), indices) in groups {
        let governing = governing_by_name(input.desired, policy_name);
        let record = if input.recorded.rollouts.is_empty() {
            None
        } else {
            input.recorded.rollouts.get(&(component.to_string(), version.clone()))
        };
        let labels_of = |name: &str| input.desired.targets.get(name).map(|t| input.desired.labels_of(t));
        let mut members: Vec<Member> = indices
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                // Its labels are read from its target: fetched a few members on (issue #17).
                if let Some(&ahead) = indices.get(k + crate::prefetch::AHEAD) {
                    fleet.fetch(ahead);
                }
                Member {
                    name: actions[i].target.as_str(),
                    labels: fleet.target(i, &actions[i].target).map(|t| input.desired.labels_of(t)),
                }
            })
            .collect();
        if let Some(record) = record {
            members.extend(
                record
                    .targets
                    .keys()
                    .filter(|t| policy_of.get(t.as_str()).is_some_and(|p| *p == policy_name))
                    .map(|t| Member {
                        name: t.as_str(),
                        labels: labels_of(t),
                    }),
            );
        }
        let spec = governing.spec();
        // Health checks run through every soak when the policy or the component has any.
        let component_health = input
            .desired
            .components
            .get(component)
            .is_some_and(|c| c.spec.steps.health.is_some());
        let health = governing.health();
        let analysis = (component_health || health.has_checks()).then(|| {
            Some(health.interval)
                .filter(|i| !i.is_zero())
                .unwrap_or(crate::manifest::health::DEFAULT_INTERVAL)
        });
        let rules = waves::WaveRules {
            specs: &spec.rollout.waves,
            soaks: governing.wave_soaks(),
            group_by: spec.rollout.group_by.as_deref(),
            analysis,
        };
        // The first members are the actions of `indices`, in order: their waves by place.
        let waves::Assignment {
            waves: planned,
            wave_of,
        } = waves::assign(rules, &members, record);
        let stage = stage_blocker(input, governing, component, version, record, &stages);
        let wave_stages: Vec<Option<Blocker>> = (0..planned.len())
            .map(|w| wave_stage_blocker(input, governing, component, version, record, &stages, &planned, w))
            .collect();
        let progress = waves::progress(&planned, record, input.now);
        let halted = waves::halted(record, spec.rollout.max_failures);
        // A target whose spec changed since the halt (`gantry retry`) is no longer held by it.
        let held = |name: &str| {
            let Some(halt) = record.and_then(|r| r.halted.as_ref()) else {
                return true;
            };
            match (halt.specs.get(name), input.desired.targets.get(name)) {
                (Some(then), Some(target)) => *then == target.spec_hash(),
                _ => true,
            }
        };
        // What each wave waits for is the same for all its targets: worded once per wave.
        let wave_gates: Vec<Blocker> = (0..planned.len())
            .map(|w| {
                let wave_name = &planned[w].name;
                match waves::gate(&planned, &progress, w) {
                    WaveGate::Go => Blocker::new(BlockerKind::Wave, String::new()),
                    WaveGate::WaitsFor { wave, finished, total } => Blocker::new(
                        BlockerKind::Wave,
                        format!(
                            "in wave {wave_name}: waits for wave {wave} to finish ({finished} of {total} targets done)"
                        ),
                    ),
                    WaveGate::Soaking { wave, until, analysis } => {
                        let when = if until > input.now { "ends" } else { "ended" };
                        let mut reason = format!("in wave {wave_name}: waits for wave {wave}: soak {when} at {until}");
                        if let Some(analysis) = analysis {
                            reason.push_str(&format!("; {analysis}"));
                        }
                        let mut b = Blocker::new(BlockerKind::Wave, reason);
                        b.until = Some(until);
                        b
                    }
                }
            })
            .collect();
        for (&i, &w) in indices.iter().zip(&wave_of) {
            let wave_name = planned[w].name.clone();
            // A target the rollout already started is past its wave gate, not past a halt: one
            // that left the version and comes back starts anew (entries are written when an
            // attempt finishes, so none of them is still running).
            if record.is_some_and(|r| r.targets.contains_key(&actions[i].target)) {
                if let Some(reason) = halted.as_ref().filter(|_| held(&actions[i].target)) {
                    wave_blockers.push((i, wave_name.clone(), Blocker::new(BlockerKind::Halted, reason.clone())));
                }
                wave_blockers.push((i, wave_name, Blocker::new(BlockerKind::Wave, String::new())));
                continue;
            }
            if let Some(reason) = halted.as_ref().filter(|_| held(&actions[i].target)) {
                wave_blockers.push((i, wave_name.clone(), Blocker::new(BlockerKind::Halted, reason.clone())));
            }
            if let Some(blocker) = &stage {
                wave_blockers.push((i, wave_name.clone(), blocker.clone()));
            }
            if let Some(blocker) = &wave_stages[w] {
                wave_blockers.push((i, wave_name.clone(), blocker.clone()));
            }
            wave_blockers.push((i, wave_name, wave_gates[w].clone()));
        }
        rollouts.push(Rollout {
            component: component.to_string(),
            version: version.clone(),
            policy: policy_name.map(str::to_string),
            waves: planned
                .into_iter()
                .zip(progress)
                .map(|(wave, p)| RolloutWave {
                    name: wave.name,
                    targets: wave.targets,
                    status: p.status,
                    soak_until: p.soak_until,
                    analysis: p.analysis,
                })
                .collect(),
            halted,
        });
    }
    (rollouts, wave_blockers)
}

/// How [`plan_rollouts`] holds an action: its index, its wave's name, the blocker (an empty
/// reason marks "wave recorded, nothing to wait for").
pub(super) type WaveBlocker = (usize, String, Blocker);

/// Records each action's wave and pushes the blockers with a reason, in order.
pub(super) fn apply_wave_blockers(actions: &mut [Action], wave_blockers: Vec<WaveBlocker>) {
    // An empty reason marks "wave recorded, nothing to wait for".
    for (i, wave, blocker) in wave_blockers {
        actions[i].wave = Some(wave);
        if !blocker.reason.is_empty() {
            actions[i].blocked_by.push(blocker);
        }
    }
}

/// The blocker of a rollout whose policy comes `after` another (promotion across environments):
/// the other policy's targets of the component must all run `version`, converged, and have for
/// `after.soak`. `None` when the gate is open or the policy has no `after`.
pub(super) fn stage_blocker(
    input: &PlanInput,
    governing: Governing,
    component: &str,
    version: &Version,
    record: Option<&crate::state::RolloutRecord>,
    stages: &HashMap<(&str, &str), Vec<&str>>,
) -> Option<Blocker> {
    let policy = governing.policy()?;
    let after = policy.manifest.spec.after.as_ref()?;
    let members = stage_members(
        input,
        record,
        version,
        stages.get(&(component, after.policy.as_str())).map(Vec::as_slice),
    );
    let stage = &after.policy;
    let name = &policy.manifest.name;
    gate_blocker(
        waves::stage_gate(&members, policy.after_soak, input.now),
        input.now,
        |done, total| {
            format!(
                "waits for stage `{stage}` (policy `{name}` comes after it): {done} of its {total} {component} targets run {version}"
            )
        },
        |since, left, until| {
            format!(
                "waits for stage `{stage}` (policy `{name}` comes after it): {component} {version} complete there since {since}, healthy for {left} more until {until}"
            )
        },
    )
}

/// The blocker of wave `w` of a rollout when that wave declares `after` (SPEC §8): another
/// policy's targets of the component, or every target of an earlier wave of this rollout, must
/// run `version`, converged, and have for `after.soak`. `None` when the gate is open or the wave
/// has no `after` (the implicit `rest` wave never has one).
#[allow(clippy::too_many_arguments)] // One rollout's context; a struct for one call adds nothing.
pub(super) fn wave_stage_blocker(
    input: &PlanInput,
    governing: Governing,
    component: &str,
    version: &Version,
    record: Option<&crate::state::RolloutRecord>,
    stages: &HashMap<(&str, &str), Vec<&str>>,
    planned: &[waves::PlannedWave],
    w: usize,
) -> Option<Blocker> {
    let after = governing.wave_afters().get(w)?.as_ref()?;
    let wave = &planned.get(w)?.name;
    let policy = governing.name().unwrap_or_default();
    match &after.stage {
        StageRef::Policy(stage) => {
            let members = stage_members(
                input,
                record,
                version,
                stages.get(&(component, stage.as_str())).map(Vec::as_slice),
            );
            gate_blocker(
                waves::stage_gate(&members, after.soak, input.now),
                input.now,
                |done, total| {
                    format!(
                        "in wave {wave}: waits for stage `{stage}` (wave `{wave}` of policy `{policy}` comes after it): {done} of its {total} {component} targets run {version}"
                    )
                },
                |since, left, until| {
                    format!(
                        "in wave {wave}: waits for stage `{stage}` (wave `{wave}` of policy `{policy}` comes after it): {component} {version} complete there since {since}, healthy for {left} more until {until}"
                    )
                },
            )
        }
        StageRef::Wave(v) => {
            let earlier = planned.get(*v)?;
            let targets: Vec<&str> = earlier.targets.iter().map(String::as_str).collect();
            let members = stage_members(input, record, version, Some(&targets));
            let first = &earlier.name;
            gate_blocker(
                waves::stage_gate(&members, after.soak, input.now),
                input.now,
                |done, total| {
                    format!(
                        "in wave {wave}: waits for wave `{first}` (after: {{ wave: {first} }}): {done} of its {total} targets run {version}"
                    )
                },
                |since, left, until| {
                    format!(
                        "in wave {wave}: waits for wave `{first}` (after: {{ wave: {first} }}): complete since {since}, healthy for {left} more until {until}"
                    )
                },
            )
        }
    }
}

/// When each of `targets` converged on `version` (`None`: it does not run it, or its last
/// attempt failed or was rolled back), for [`waves::stage_gate`].
fn stage_members(
    input: &PlanInput,
    record: Option<&crate::state::RolloutRecord>,
    version: &Version,
    targets: Option<&[&str]>,
) -> Vec<Option<Timestamp>> {
    let converged_since = |target: &str| -> Option<Timestamp> {
        let r = input.recorded.targets.get(target)?;
        if r.version.as_ref() != Some(version) || r.status != TargetStatus::Converged {
            return None;
        }
        let finished = record
            .and_then(|rec| rec.targets.get(target)?.finished.as_deref())
            .or_else(|| r.last_attempt.as_ref()?.finished.as_deref());
        Some(finished.and_then(|f| f.parse().ok()).unwrap_or(Timestamp::MIN))
    };
    targets
        .map(|targets| targets.iter().map(|t| converged_since(t)).collect())
        .unwrap_or_default()
}

/// A stage gate as a blocker: `waiting(done, total)` or `soaking(since, time left, until)` words
/// the reason; a soaking gate carries the instant it opens.
fn gate_blocker(
    gate: waves::StageGate,
    now: Timestamp,
    waiting: impl FnOnce(usize, usize) -> String,
    soaking: impl FnOnce(Timestamp, String, Timestamp) -> String,
) -> Option<Blocker> {
    match gate {
        waves::StageGate::Open => None,
        waves::StageGate::Waiting { done, total } => Some(Blocker::new(BlockerKind::Wave, waiting(done, total))),
        waves::StageGate::Soaking { since, until } => {
            let left = crate::executor::human_duration(until.duration_since(now).unsigned_abs());
            let mut b = Blocker::new(BlockerKind::Wave, soaking(since, left, until));
            b.until = Some(until);
            Some(b)
        }
    }
}
