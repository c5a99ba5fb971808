//! The per-target pass over both cores (issue #17): every target's action depends only on the
//! input (and on memo caches that give the same answer whoever fills them), so the targets are
//! split into contiguous chunks, each planned on its own thread with its own caches, and the
//! actions concatenated in chunk order: the same actions, in the same order, as one thread gives.

use crate::policy::approvals::ApprovalIndex;
use crate::policy::gates::WindowGate;
use crate::prefetch::{AHEAD, POINTED_AHEAD};

use super::fleet::Fleet;
use super::{Action, PlanInput, Shared, plan_target};

/// Below this many targets per thread one thread plans them: spawning costs more than it saves.
const MIN_TARGETS_PER_THREAD: usize = 512;

/// At most this many threads.
const MAX_THREADS: usize = 4;

/// How many threads to plan `targets` targets with (1 for small fleets).
pub fn threads_for(targets: usize) -> usize {
    crate::manifest::parallel::cores()
        .min(MAX_THREADS)
        .min(targets / MIN_TARGETS_PER_THREAD)
        .max(1)
}

/// The action of every desired target, in the order of `input.desired.targets` (`fleet`'s),
/// planned on `threads` threads (the result does not depend on it).
pub(super) fn plan_targets(input: &PlanInput, fleet: &Fleet, threads: usize) -> Vec<Action> {
    let indices: Vec<usize> = (0..fleet.targets().len()).collect();
    let chunks = crate::manifest::parallel::split_even(&indices, threads);
    let plan_chunk = |chunk: &[usize]| -> Vec<Action> {
        let mut shared = Shared {
            windows: WindowGate::new(input.windows, &input.desired.windows, input.now),
            approvals: ApprovalIndex::new(&input.desired.approvals),
            notes: Default::default(),
            paths: Default::default(),
            eligible: Default::default(),
            unapproved: Default::default(),
        };
        chunk
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                // Targets, manifests and records lie scattered over the heap: the first reads of a
                // record and a manifest were a third of `plan_target`'s own time on 10,000 targets
                // (issue #17; see `crate::prefetch`).
                if let Some(&ahead) = chunk.get(k + AHEAD) {
                    fleet.fetch(ahead);
                }
                if let Some(&ahead) = chunk.get(k + POINTED_AHEAD) {
                    fleet.fetch_pointed(ahead);
                }
                plan_target(input, &mut shared, fleet.targets()[i], fleet.records()[i])
            })
            .collect()
    };
    if chunks.len() <= 1 {
        return plan_chunk(&indices);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks[1..]
            .iter()
            .map(|chunk| {
                let plan_chunk = &plan_chunk;
                scope.spawn(move || plan_chunk(chunk))
            })
            .collect();
        let mut actions = plan_chunk(chunks[0]);
        for handle in handles {
            match handle.join() {
                Ok(more) => actions.extend(more),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        actions
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::manifest::Version;

    use super::*;
    use crate::manifest::{Desired, validate};
    use crate::plan::Evidence;
    use crate::policy::window::WindowSchedule;
    use crate::state::{RecordedState, TargetRecord, TargetStatus};

    const HEADER: &str = "apiVersion: gantry.dev/v1\n";

    /// A fleet with every gate the per-target pass looks at: two components, releases of three
    /// update types, a policy with approvals and waves, a zoned window and a freeze, targets
    /// pinned and ranged, recorded at older versions or with another config, and an Approval.
    fn fleet(targets: usize) -> String {
        let mut yaml = String::new();
        for component in ["billing", "ledger"] {
            yaml.push_str(&format!(
                "---\n{HEADER}kind: Component\nmetadata: {{ name: {component} }}\nspec: {{ steps: {{ deploy: [d] }} }}\n"
            ));
            for (i, version) in ["1.0.0", "1.0.1", "1.1.0", "2.0.0"].iter().enumerate() {
                yaml.push_str(&format!(
                    "---\n{HEADER}kind: Release\nmetadata: {{ name: {component}-{version} }}\nspec: {{ component: {component}, version: {version}, released: \"2026-11-{:02}T00:00:00Z\" }}\n",
                    10 + i * 3
                ));
            }
        }
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: careful }}\nspec:\n  selector: {{ tier: prod }}\n  updates:\n    major: {{ approvals: 1, approvers: [alice@example.com], minReleaseAge: 3d }}\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: half, percent: 50 }}\n      - {{ name: all, percent: 100 }}\n"
        ));
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Window\nmetadata: {{ name: eu-nights }}\nspec:\n  selector: {{ region: eu }}\n  timezone: Europe/Berlin\n  allow: [{{ days: [mon, tue, wed, thu, fri], start: \"22:00\", end: \"05:00\" }}]\n"
        ));
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Window\nmetadata: {{ name: freeze }}\nspec:\n  selector: {{ region: ap }}\n  timezone: UTC\n  deny: [{{ dates: [2026-11-21] }}]\n"
        ));
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Approval\nmetadata: {{ name: ok-billing-2 }}\nspec: {{ component: billing, version: 2.0.0, approvedBy: [alice@example.com] }}\n"
        ));
        for i in 0..targets {
            let component = if i % 3 == 0 { "ledger" } else { "billing" };
            let version = ["2.0.0", "1.1.0", "^1", "1.0.1", "~1.0"][i % 5];
            let region = ["eu", "us", "ap"][i % 3];
            let tier = if i % 4 == 0 { "dev" } else { "prod" };
            yaml.push_str(&format!(
                "---\n{HEADER}kind: Target\nmetadata: {{ name: t{i:04}, labels: {{ region: {region}, tier: {tier}, ring: \"{}\" }} }}\nspec: {{ component: {component}, version: \"{version}\", config: {{ size: {} }} }}\n",
                i % 7,
                i % 2
            ));
        }
        yaml
    }

    /// [`fleet`] of `targets` targets validated (without a diagnostic), its windows compiled,
    /// and [`recorded`] for it.
    fn fleet_state(targets: usize) -> (Desired, Vec<WindowSchedule>, RecordedState) {
        let (desired, windows) = crate::plan::tests::load(&fleet(targets));
        (desired, windows, recorded(targets))
    }

    fn recorded(targets: usize) -> RecordedState {
        let records: BTreeMap<String, TargetRecord> = (0..targets)
            .filter(|i| i % 6 != 5)
            .map(|i| {
                let component = if i % 3 == 0 { "ledger" } else { "billing" };
                let mut config = serde_json::Map::new();
                config.insert("size".into(), serde_json::json!(i % 4 / 2));
                let record = TargetRecord {
                    component: component.into(),
                    version: Some(Version::parse(["1.0.0", "1.0.1", "2.0.0"][i % 3]).unwrap()),
                    config_hash: Some(validate::config_hash(&config)),
                    config: Some(config.into()),
                    applied_migrations: Vec::new(),
                    status: if i % 11 == 0 {
                        TargetStatus::Failed
                    } else {
                        TargetStatus::Converged
                    },
                    last_attempt: None,
                    rollback_points: Vec::new(),
                    observed_version: None,
                };
                (format!("t{i:04}"), record)
            })
            .collect();
        RecordedState {
            targets: records,
            ..RecordedState::default()
        }
    }

    /// Evidence leaves out the targets no approver is found for (issue #17): the plan is the same
    /// as with an empty set of approvers for every one of them.
    #[test]
    fn a_target_left_out_of_the_evidence_is_planned_as_one_without_approvers() {
        let (desired, windows, recorded) = fleet_state(700);
        let mut sparse = Evidence::default();
        sparse
            .commit_approvers
            .insert("t0001".into(), ["alice@example.com".to_string()].into_iter().collect());
        let mut full = sparse.clone();
        for name in desired.targets.keys() {
            full.commit_approvers.entry(name.clone()).or_default();
        }
        let plan_with = |evidence: &Evidence| {
            let plan = crate::plan::plan(&PlanInput {
                desired: &desired,
                windows: &windows,
                recorded: &recorded,
                evidence,
                now: "2026-11-21T10:00:00Z".parse().unwrap(),
            });
            serde_json::to_string(&plan).unwrap()
        };
        let planned = plan_with(&sparse);
        assert!(planned.contains("\"approval\""), "the fleet has approval gates");
        assert!(planned == plan_with(&full));
    }

    /// Issue #17: a fleet's records found on several threads are, for every target, the record
    /// its name finds, with records of targets no longer desired between and around them.
    #[test]
    fn records_joined_on_threads_are_the_records_of_each_name() {
        let (desired, _, mut recorded) = fleet_state(700);
        let gone = recorded.targets["t0001"].clone();
        for name in ["a-first", "t0003-gone", "t0350-gone", "t0350", "zz-last"] {
            recorded.targets.insert(name.into(), gone.clone());
        }
        let evidence = Evidence::default();
        let input = PlanInput {
            desired: &desired,
            windows: &[],
            recorded: &recorded,
            evidence: &evidence,
            now: "2026-11-21T10:00:00Z".parse().unwrap(),
        };
        let expected: Vec<Option<&TargetRecord>> =
            desired.targets.keys().map(|name| recorded.targets.get(name)).collect();
        assert!(expected.iter().any(Option::is_none) && expected.iter().any(Option::is_some));
        for threads in [1, 2, 3, 7] {
            let fleet = Fleet::joined_on(&input, threads);
            assert_eq!(fleet.targets().len(), desired.targets.len());
            let same = fleet.records().iter().zip(&expected).all(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => std::ptr::eq(*a, *b),
                (None, None) => true,
                _ => false,
            });
            assert!(same, "{threads} threads joined other records");
        }
    }

    /// Issue #17: planning targets on several threads gives the same actions, byte for byte,
    /// in the same order as one thread, whatever the thread count (each thread has its own
    /// window and approval caches; nothing else is shared).
    #[test]
    fn parallel_plan_is_byte_identical_to_sequential() {
        let (desired, windows, recorded) = fleet_state(700);
        let mut evidence = Evidence::default();
        evidence
            .commit_approvers
            .insert("t0001".into(), ["alice@example.com".to_string()].into_iter().collect());
        let input = PlanInput {
            desired: &desired,
            windows: &windows,
            recorded: &recorded,
            evidence: &evidence,
            // Saturday: the ap freeze is on, eu nights are closed.
            now: "2026-11-21T10:00:00Z".parse().unwrap(),
        };
        let fleet = Fleet::of(&input);
        let sequential = serde_json::to_string(&plan_targets(&input, &fleet, 1)).unwrap();
        // The fleet exercises what the threads must agree on.
        for needle in [
            "\"window\"",
            "\"approval\"",
            "\"release_age\"",
            "\"upgrade\"",
            "\"config\"",
        ] {
            assert!(sequential.contains(needle), "the fleet never plans {needle}");
        }
        for threads in [2, 3, 4, 7] {
            let parallel = serde_json::to_string(&plan_targets(&input, &fleet, threads)).unwrap();
            assert!(parallel == sequential, "{threads} threads planned differently");
        }
    }
}
