//! The planner's tests: tables over small fleets, one guarantee each.

use std::collections::BTreeMap;

use crate::manifest::Version;
use serde::Serialize;

use crate::manifest::Desired;
use crate::policy::UpdateType;
use crate::policy::waves::WaveStatus;
use crate::policy::window::WindowSchedule;
use crate::state::{RecordedConfig, RecordedState, TargetRecord, TargetStatus};

use super::*;
use crate::manifest::{RawContent, RawFile, read_manifests, validate, validate::config_hash};
use crate::state::{Halt, RolloutRecord, RolloutTarget, RolloutTargetStatus, WaveRecord};

/// Regression (issue #9): `gantry status` printed `blocked by releaseage` (a lowercased
/// `Debug` name) where JSON says `release_age`. User text comes from `Display`, and `Display`
/// is the serialized name, for every user-facing enum and every variant.
#[test]
fn display_is_the_serialized_name_for_every_user_facing_enum() {
    fn check<T: std::fmt::Display + Serialize>(values: &[T]) {
        for v in values {
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(v.to_string()));
        }
    }
    use crate::policy::waves::WaveStatus;
    use crate::state::Outcome;
    check(&[
        BlockerKind::Window,
        BlockerKind::Approval,
        BlockerKind::Wave,
        BlockerKind::Dependency,
        BlockerKind::ReleaseAge,
        BlockerKind::Halted,
        BlockerKind::Suspended,
        BlockerKind::InProgress,
    ]);
    assert_eq!(BlockerKind::ReleaseAge.to_string(), "release_age");
    check(&[Status::Ready, Status::Blocked, Status::Violation, Status::Noop]);
    check(&[
        ActionKind::Install,
        ActionKind::Upgrade,
        ActionKind::Downgrade,
        ActionKind::Config,
        ActionKind::Noop,
        ActionKind::Remove,
    ]);
    check(&[Direction::Up, Direction::Down, Direction::Restore]);
    check(&[crate::manifest::Phase::Pre, crate::manifest::Phase::Post]);
    check(&[UpdateType::Patch, UpdateType::Minor, UpdateType::Major]);
    check(&[
        WaveStatus::Pending,
        WaveStatus::InProgress,
        WaveStatus::Soaking,
        WaveStatus::Complete,
    ]);
    check(&[
        TargetStatus::Converged,
        TargetStatus::InProgress,
        TargetStatus::Failed,
        TargetStatus::RolledBack,
        TargetStatus::Removed,
    ]);
    check(&[Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack]);
    check(&[
        RolloutTargetStatus::InProgress,
        RolloutTargetStatus::Succeeded,
        RolloutTargetStatus::Failed,
        RolloutTargetStatus::RolledBack,
    ]);
}

/// Desired state and compiled windows from one YAML stream (no diagnostic allowed).
pub(super) fn load(yaml: &str) -> (Desired, Vec<WindowSchedule>) {
    let file = RawFile {
        path: "all.yaml".into(),
        content: RawContent::Bytes(yaml.as_bytes().to_vec()),
    };
    let (manifests, diags) = read_manifests(None, &[file]);
    assert!(diags.is_empty(), "{diags:?}");
    let (desired, diags) = validate(manifests);
    assert!(diags.is_empty(), "{diags:?}");
    let windows = desired
        .windows
        .iter()
        .map(|w| WindowSchedule::compile(&w.name, &w.spec).unwrap())
        .collect();
    (desired, windows)
}

fn run(desired: &Desired, windows: &[WindowSchedule], recorded: &RecordedState, now: &str) -> Plan {
    plan(&PlanInput {
        desired,
        windows,
        recorded,
        evidence: &Evidence::default(),
        now: now.parse().unwrap(),
    })
}

fn converged(component: &str, version: &str) -> TargetRecord {
    TargetRecord {
        component: component.into(),
        version: Some(Version::parse(version).unwrap()),
        config_hash: Some(config_hash(&serde_json::Map::new())),
        config: None,
        applied_migrations: Vec::new(),
        status: TargetStatus::Converged,
        last_attempt: None,
        rollback_points: Vec::new(),
        observed_version: None,
    }
}

fn action<'p>(plan: &'p Plan, target: &str) -> &'p Action {
    plan.actions.iter().find(|a| a.target == target).unwrap()
}

fn kinds(a: &Action) -> Vec<BlockerKind> {
    a.blocked_by.iter().map(|b| b.kind).collect()
}

const HEADER: &str = "apiVersion: gantry.dev/v1\n";

fn base(extra: &str) -> String {
    format!(
        "{HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: billing-1.0.0 }}\nspec: {{ component: billing, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec: {{ component: billing, version: 2.0.0 }}\n{extra}"
    )
}

fn target(name: &str, version: &str, labels: &str) -> String {
    format!(
        "---\n{HEADER}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: billing, version: \"{version}\" }}\n"
    )
}

/// 10 targets, t00 in ring 0; waves canary (ring 0, soak 30m) → half (50%, soak 30m) → all.
fn staged() -> (Desired, Vec<WindowSchedule>) {
    let mut yaml = base(&format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: staged }}\nspec:\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: half, percent: 50, soak: 30m }}\n      - {{ name: all, percent: 100 }}\n"
    ));
    for i in 0..10 {
        let ring = if i == 0 { "0" } else { "1" };
        yaml.push_str(&target(&format!("t{i:02}"), "2.0.0", &format!("ring: \"{ring}\"")));
    }
    load(&yaml)
}

/// [`staged`] whose `all` wave also waits for the canary to have been healthy for 2 h.
fn staged_after_canary() -> (Desired, Vec<WindowSchedule>) {
    let mut yaml = base(&format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: staged }}\nspec:\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: half, percent: 50, soak: 30m }}\n      - {{ name: all, percent: 100, after: {{ wave: canary, soak: 2h }} }}\n"
    ));
    for i in 0..10 {
        let ring = if i == 0 { "0" } else { "1" };
        yaml.push_str(&target(&format!("t{i:02}"), "2.0.0", &format!("ring: \"{ring}\"")));
    }
    load(&yaml)
}

/// A wave's `after: { wave: canary, soak: 2h }` holds it past the wave before it until 2 h after
/// the canary finished, to the second; a canary that is no longer converged keeps it closed.
#[test]
fn a_wave_after_an_earlier_wave_opens_at_that_waves_completion_plus_its_soak() {
    let (desired, windows) = staged_after_canary();
    let mut recorded = all_at_1(&desired);
    finish(&mut recorded, &["t00".into()], "canary", "2026-11-21T10:10:00Z");
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:40:00Z");
    let half = p.rollouts[0].waves[1].targets.clone();
    let all = p.rollouts[0].waves[2].targets.clone();
    finish(&mut recorded, &half, "half", "2026-11-21T10:45:00Z");
    let gate = "in wave all: waits for wave `canary` (after: { wave: canary }): ";
    // (now, the `all` wave's targets ready, the `after` blocker: reason suffix and until)
    type Case = (&'static str, bool, Option<(String, Option<&'static str>)>);
    let cases: Vec<Case> = vec![
        (
            "2026-11-21T11:15:00Z",
            false,
            Some((
                format!("{gate}complete since 2026-11-21T10:10:00Z, healthy for 55m more until 2026-11-21T12:10:00Z"),
                Some("2026-11-21T12:10:00Z"),
            )),
        ),
        (
            "2026-11-21T12:09:59Z",
            false,
            Some((
                format!("{gate}complete since 2026-11-21T10:10:00Z, healthy for 1s more until 2026-11-21T12:10:00Z"),
                Some("2026-11-21T12:10:00Z"),
            )),
        ),
        ("2026-11-21T12:10:00Z", true, None),
    ];
    for (now, go, blocker) in cases {
        let p = run(&desired, &windows, &recorded, now);
        let waiting = action(&p, &all[0]);
        assert_eq!(waiting.status == Status::Ready, go, "{now}: {:?}", waiting.blocked_by);
        let got = waiting
            .blocked_by
            .iter()
            .find(|b| b.reason.starts_with(gate))
            .map(|b| (b.reason.to_string(), b.until.map(|t| t.to_string())));
        let want = blocker.map(|(r, u)| (r, u.map(str::to_string)));
        assert_eq!(got, want, "{now}");
    }
    // The canary rolled back since: the gate closes, with nothing to wait for but the canary.
    recorded.targets.get_mut("t00").unwrap().status = TargetStatus::RolledBack;
    let p = run(&desired, &windows, &recorded, "2026-11-22T10:00:00Z");
    let b = action(&p, &all[0])
        .blocked_by
        .iter()
        .find(|b| b.reason.starts_with(gate))
        .expect("still gated")
        .clone();
    assert_eq!(&*b.reason, format!("{gate}0 of its 1 targets run 2.0.0"));
    assert_eq!(b.until, None);
}

fn all_at_1(desired: &Desired) -> RecordedState {
    RecordedState {
        targets: desired
            .targets
            .keys()
            .map(|t| (t.clone(), converged("billing", "1.0.0")))
            .collect(),
        ..RecordedState::default()
    }
}

/// Marks `targets` as upgraded in `wave`, finished at `finished`.
fn finish(recorded: &mut RecordedState, targets: &[String], wave: &str, finished: &str) {
    let key = ("billing".to_string(), Version::new(2, 0, 0));
    let record = recorded.rollouts.entry(key).or_insert_with(|| RolloutRecord {
        component: "billing".into(),
        version: Version::new(2, 0, 0),
        started: "2026-11-21T10:00:00Z".into(),
        waves: Vec::new(),
        targets: BTreeMap::new(),
        failures: 0,
        halted: None,
    });
    for t in targets {
        record.targets.insert(
            t.clone(),
            RolloutTarget {
                wave: wave.into(),
                status: RolloutTargetStatus::Succeeded,
                started: "2026-11-21T10:00:00Z".into(),
                finished: Some(finished.into()),
            },
        );
        recorded.targets.insert(t.clone(), converged("billing", "2.0.0"));
    }
}

fn ready(plan: &Plan) -> Vec<&str> {
    plan.actions
        .iter()
        .filter(|a| a.status == Status::Ready)
        .map(|a| a.target.as_str())
        .collect()
}

#[test]
fn waves_gate_every_stage_of_a_rollout() {
    let (desired, windows) = staged();
    let mut recorded = all_at_1(&desired);

    // Stage 1: nothing started: only the canary may go.
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    assert_eq!(ready(&p), vec!["t00"]);
    let rollout = &p.rollouts[0];
    let sizes: Vec<(&str, usize)> = rollout
        .waves
        .iter()
        .map(|w| (w.name.as_str(), w.targets.len()))
        .collect();
    assert_eq!(sizes, vec![("canary", 1), ("half", 4), ("all", 5)]);
    let half = rollout.waves[1].targets.clone();
    let all = rollout.waves[2].targets.clone();
    let waiting = action(&p, &half[0]);
    assert_eq!(waiting.wave.as_deref(), Some("half"));
    assert_eq!(kinds(waiting), vec![BlockerKind::Wave]);
    assert_eq!(
        &*waiting.blocked_by[0].reason,
        "in wave half: waits for wave canary to finish (0 of 1 targets done)"
    );

    // Stage 2: canary done at 10:10, soaking until 10:40.
    finish(&mut recorded, &["t00".into()], "canary", "2026-11-21T10:10:00Z");
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:39:59Z");
    assert!(ready(&p).is_empty(), "{:?}", ready(&p));
    let b = &action(&p, &half[0]).blocked_by[0];
    assert_eq!(
        &*b.reason,
        "in wave half: waits for wave canary: soak ends at 2026-11-21T10:40:00Z"
    );
    assert_eq!(b.until.map(|t| t.to_string()).as_deref(), Some("2026-11-21T10:40:00Z"));
    assert_eq!(p.rollouts[0].waves[0].status, WaveStatus::Soaking);

    // Stage 3: soak over: the half wave is ready, the rest waits for it.
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:40:00Z");
    let mut expected: Vec<&str> = half.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ready(&p), expected);
    assert_eq!(
        action(&p, &all[0]).blocked_by[0].reason.as_ref(),
        "in wave all: waits for wave half to finish (0 of 4 targets done)"
    );

    // Stage 4: half done at 11:00; the recorded completion time (11:05) wins.
    finish(&mut recorded, &half, "half", "2026-11-21T11:00:00Z");
    recorded.rollouts.values_mut().for_each(|r| {
        r.waves.push(WaveRecord {
            name: "half".into(),
            started: None,
            completed: Some("2026-11-21T11:05:00Z".into()),
            analysis: None,
        })
    });
    let p = run(&desired, &windows, &recorded, "2026-11-21T11:10:00Z");
    assert!(ready(&p).is_empty());
    assert_eq!(
        action(&p, &all[0]).blocked_by[0]
            .until
            .map(|t| t.to_string())
            .as_deref(),
        Some("2026-11-21T11:35:00Z")
    );

    // Stage 5: everything left goes.
    let p = run(&desired, &windows, &recorded, "2026-11-21T11:35:00Z");
    assert_eq!(ready(&p).len(), 5);
    assert!(
        p.rollouts[0].waves[..2]
            .iter()
            .all(|w| w.status == WaveStatus::Complete)
    );
}

#[test]
fn halted_rollout_blocks_every_waiting_target() {
    let (desired, windows) = staged();
    let mut recorded = all_at_1(&desired);
    finish(&mut recorded, &["t00".into()], "canary", "2026-11-21T10:10:00Z");
    for r in recorded.rollouts.values_mut() {
        r.failures = 1;
        r.halted = Some(Halt {
            at: "2026-11-21T10:10:00Z".into(),
            target: "t00".into(),
            reason: "health check http failed".into(),
            specs: Default::default(),
        });
    }
    let p = run(&desired, &windows, &recorded, "2026-11-21T12:00:00Z");
    let waiting: Vec<&Action> = p.actions.iter().filter(|a| a.target != "t00").collect();
    assert_eq!(waiting.len(), 9);
    for a in waiting {
        assert_eq!(a.status, Status::Blocked);
        let halted = a.blocked_by.iter().find(|b| b.kind == BlockerKind::Halted).unwrap();
        assert!(
            halted.reason.contains("after t00 failed: health check http failed"),
            "{}",
            halted.reason
        );
    }
    assert!(p.rollouts[0].halted.is_some());
}

/// Shared infrastructure first (issue #16): tenant services that depend on the one shared Kafka
/// wait for it whatever their tenant (and without a tenant label), while a tenant's own Kafka
/// that the selector does not match holds nothing.
/// Issue #16: policies selected only by label, so a `part:` label had to be invented to give a
/// frontend its own policy. `components` narrows a policy to components; the selector still
/// applies, and a misspelt component is a violation at its line.
#[test]
fn a_policy_can_select_by_component_as_well_as_by_label() {
    let yaml = format!(
        "{HEADER}kind: Component\nmetadata: {{ name: web }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: web-1.0.0 }}\nspec: {{ component: web, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Component\nmetadata: {{ name: api }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: api-1.0.0 }}\nspec: {{ component: api, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Policy\nmetadata: {{ name: prod }}\nspec: {{ selector: {{ env: prod }} }}\n---\n\
         {HEADER}kind: Policy\nmetadata: {{ name: prod-frontend }}\nspec: {{ selector: {{ env: prod }}, components: [web], priority: 10 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-web, labels: {{ env: prod }} }}\nspec: {{ component: web, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-api, labels: {{ env: prod }} }}\nspec: {{ component: api, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: dev-web, labels: {{ env: dev }} }}\nspec: {{ component: web, version: 1.0.0 }}\n"
    );
    let (desired, windows) = load(&yaml);
    let p = run(&desired, &windows, &RecordedState::default(), "2026-11-21T10:00:00Z");
    assert_eq!(action(&p, "acme-web").policy.as_deref(), Some("prod-frontend"));
    assert_eq!(action(&p, "acme-api").policy.as_deref(), Some("prod"));
    assert_eq!(action(&p, "dev-web").policy, None, "the selector still applies");

    let file = RawFile {
        path: "policies/p.yaml".into(),
        content: RawContent::Bytes(
            format!("{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec:\n  components: [wbe]\n").into_bytes(),
        ),
    };
    let (manifests, _) = read_manifests(None, &[file]);
    let (_, diags) = validate(manifests);
    let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|d| d.starts_with("policies/p.yaml:5:16:") && d.contains("unknown component `wbe`")),
        "{text:#?}"
    );
}

#[test]
fn dependencies_on_shared_targets_hold_every_tenant() {
    let yaml = format!(
        "{HEADER}kind: Component\nmetadata: {{ name: kafka }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: kafka-3.0.0 }}\nspec: {{ component: kafka, version: 3.0.0 }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: kafka-3.1.0 }}\nspec: {{ component: kafka, version: 3.1.0 }}\n---\n\
         {HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ dependsOn: [{{ component: kafka, selector: {{ scope: shared }} }}], steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: kafka-shared, labels: {{ scope: shared }} }}\nspec: {{ component: kafka, version: 3.1.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-kafka, labels: {{ tenant: acme, scope: tenant }} }}\nspec: {{ component: kafka, version: 3.1.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-billing, labels: {{ tenant: acme }} }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: edge-billing }}\nspec: {{ component: billing, version: 2.0.0 }}\n"
    );
    let (desired, windows) = load(&yaml);
    let mut recorded = RecordedState::default();
    for name in ["kafka-shared", "acme-kafka"] {
        recorded.targets.insert(name.into(), converged("kafka", "3.0.0"));
    }
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    for dependent in ["acme-billing", "edge-billing"] {
        let a = action(&p, dependent);
        assert_eq!(a.status, Status::Blocked, "{dependent}");
        assert_eq!(
            kinds(a),
            vec![BlockerKind::Dependency],
            "{dependent}: only the shared kafka holds it"
        );
        assert_eq!(
            &*a.blocked_by[0].reason,
            "waits for kafka-shared (kafka 3.0.0 → 3.1.0) to finish first: component `billing` dependsOn `kafka` (shared: scope=shared)"
        );
    }
    // The shared Kafka converged; the tenant's own Kafka, still pending, matches no selector.
    recorded
        .targets
        .insert("kafka-shared".into(), converged("kafka", "3.1.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    assert_eq!(action(&p, "acme-kafka").status, Status::Ready);
    assert_eq!(action(&p, "acme-billing").status, Status::Ready);
    assert_eq!(action(&p, "edge-billing").status, Status::Ready);
}

#[test]
fn dependencies_wait_for_the_same_tenant_only() {
    let yaml = format!(
        "{HEADER}kind: Component\nmetadata: {{ name: ledger }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: ledger-1.0.0 }}\nspec: {{ component: ledger, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: ledger-1.1.0 }}\nspec: {{ component: ledger, version: 1.1.0 }}\n---\n\
         {HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ dependsOn: [ledger], steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: billing-2.0.0 }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-ledger, labels: {{ tenant: acme }} }}\nspec: {{ component: ledger, version: 1.1.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: globex-ledger, labels: {{ tenant: globex }} }}\nspec: {{ component: ledger, version: 1.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-billing, labels: {{ tenant: acme }} }}\nspec: {{ component: billing, version: 2.0.0 }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: globex-billing, labels: {{ tenant: globex }} }}\nspec: {{ component: billing, version: 2.0.0 }}\n"
    );
    let (desired, windows) = load(&yaml);
    let mut recorded = RecordedState::default();
    recorded
        .targets
        .insert("acme-ledger".into(), converged("ledger", "1.0.0"));
    recorded
        .targets
        .insert("globex-ledger".into(), converged("ledger", "1.0.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    let acme = action(&p, "acme-billing");
    assert_eq!(acme.status, Status::Blocked);
    assert_eq!(kinds(acme), vec![BlockerKind::Dependency]);
    assert_eq!(
        &*acme.blocked_by[0].reason,
        "waits for acme-ledger (ledger 1.0.0 → 1.1.0) to finish first: component `billing` dependsOn `ledger` (tenant acme)"
    );
    assert_eq!(
        action(&p, "globex-billing").status,
        Status::Ready,
        "globex-ledger is converged"
    );
    assert_eq!(action(&p, "acme-ledger").status, Status::Ready);
    // Once acme-ledger converged, acme-billing goes.
    recorded
        .targets
        .insert("acme-ledger".into(), converged("ledger", "1.1.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    assert_eq!(action(&p, "acme-billing").status, Status::Ready);
}

const WEEKEND: &str = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: eu-weekend }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  allow: [{ days: [sat], start: \"02:00\", end: \"06:00\" }]\n";
const XMAS: &str = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: xmas }\nspec:\n  timezone: Europe/Berlin\n  deny: [{ dates: [2026-12-24] }]\n";

#[test]
fn closed_window_blocks_with_exact_opening_and_only_governed_targets() {
    let (desired, windows) = load(&format!(
        "{}{}{}{WEEKEND}",
        base(""),
        target("eu-1", "2.0.0", "region: eu"),
        target("us-1", "2.0.0", "region: us")
    ));
    // Friday 2026-11-20 10:00 UTC.
    let p = run(&desired, &windows, &RecordedState::default(), "2026-11-20T10:00:00Z");
    let eu = action(&p, "eu-1");
    assert_eq!(kinds(eu), vec![BlockerKind::Window]);
    assert_eq!(
        eu.blocked_by[0]
            .opens_at
            .as_ref()
            .map(crate::policy::window::rfc3339)
            .as_deref(),
        Some("2026-11-21T02:00:00+01:00")
    );
    assert_eq!(&*eu.blocked_by[0].reason, "outside the allow window of \"eu-weekend\"");
    assert_eq!(action(&p, "us-1").status, Status::Ready);
    // Inside the window.
    let p = run(&desired, &windows, &RecordedState::default(), "2026-11-21T01:30:00Z");
    assert_eq!(action(&p, "eu-1").status, Status::Ready);
}

#[test]
fn patch_rule_without_windows_still_respects_freezes() {
    let policy = format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: urgent }}\nspec: {{ updates: {{ patch: {{ windows: false }} }} }}\n---\n{HEADER}kind: Release\nmetadata: {{ name: billing-2.0.1 }}\nspec: {{ component: billing, version: 2.0.1 }}\n"
    );
    let (desired, windows) = load(&format!(
        "{}{}{WEEKEND}{XMAS}",
        base(&policy),
        target("eu-1", "2.0.1", "region: eu")
    ));
    let mut recorded = RecordedState::default();
    recorded.targets.insert("eu-1".into(), converged("billing", "2.0.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
    assert_eq!(
        action(&p, "eu-1").status,
        Status::Ready,
        "allow window ignored for patches"
    );
    let p = run(&desired, &windows, &recorded, "2026-12-24T10:00:00Z");
    let a = action(&p, "eu-1");
    assert_eq!(kinds(a), vec![BlockerKind::Window]);
    assert_eq!(
        a.blocked_by[0]
            .opens_at
            .as_ref()
            .map(crate::policy::window::rfc3339)
            .as_deref(),
        Some("2026-12-25T00:00:00+01:00")
    );
}

#[test]
fn downgrade_window_rules() {
    let cases = [
        // (rollback rules, now, expected blocker kinds)
        ("", "2026-11-20T10:00:00Z", vec![]), // allow windows skipped
        ("", "2026-12-24T10:00:00Z", vec![BlockerKind::Window]), // freezes hold
        (
            "rollback: { respectDenyWindows: false }",
            "2026-12-24T10:00:00Z",
            vec![],
        ),
        (
            "rollback: { respectWindows: true }",
            "2026-11-20T10:00:00Z",
            vec![BlockerKind::Window],
        ),
    ];
    for (rules, now, expected) in cases {
        let policy = format!("---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec: {{ {rules} }}\n");
        let (desired, windows) = load(&format!(
            "{}{}{WEEKEND}{XMAS}",
            base(&policy),
            target("eu-1", "1.0.0", "region: eu")
        ));
        let mut recorded = RecordedState::default();
        let mut record = converged("billing", "2.0.0");
        record.rollback_points = vec![Version::new(1, 0, 0)];
        recorded.targets.insert("eu-1".into(), record);
        let p = run(&desired, &windows, &recorded, now);
        let a = action(&p, "eu-1");
        assert_eq!(a.action, ActionKind::Downgrade);
        assert_eq!(kinds(a), expected, "{rules} at {now}");
        assert_eq!(a.wave, None, "downgrades skip waves");
    }
}

/// Issue #18, attack 6: a never-deployed lower version reached every target at once, with no
/// approval, because any lower version was treated as a revert.
#[test]
fn downgrade_exemption_covers_only_rollback_points() {
    let policy = format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec:\n  updates:\n    major: {{ approvals: 1, windows: false }}\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ region: eu }} }}\n"
    );
    let (desired, windows) = load(&format!(
        "{}{}{}",
        base(&policy),
        target("eu-1", "1.0.0", "region: eu"),
        target("us-1", "1.0.0", "region: us")
    ));
    for (points, exempt) in [(vec![Version::new(1, 0, 0)], true), (vec![], false)] {
        let mut recorded = RecordedState::default();
        for name in ["eu-1", "us-1"] {
            let mut record = converged("billing", "2.0.0");
            record.rollback_points = points.clone();
            recorded.targets.insert(name.into(), record);
        }
        let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
        let (eu, us) = (action(&p, "eu-1"), action(&p, "us-1"));
        assert_eq!(eu.action, ActionKind::Downgrade);
        if exempt {
            assert_eq!((eu.status, us.status), (Status::Ready, Status::Ready));
            assert_eq!((eu.update_type, eu.wave.as_deref()), (None, None));
        } else {
            assert_eq!(eu.update_type, Some(UpdateType::Major));
            assert_eq!(kinds(eu), vec![BlockerKind::Approval], "{eu:?}");
            assert!(kinds(us).contains(&BlockerKind::Wave), "{us:?}");
            assert!(
                eu.warnings.iter().any(|w| w.contains("1.0.0 never ran on this target")),
                "{eu:?}"
            );
        }
    }
}

#[test]
fn every_blocker_is_listed_with_release_age_until() {
    let policy = format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: slow }}\nspec:\n  suspend: true\n  updates:\n    major: {{ approvals: 1, minReleaseAge: 7d }}\n"
    );
    let yaml = base(&policy).replace(
        "spec: { component: billing, version: 2.0.0 }",
        "spec: { component: billing, version: 2.0.0, released: 2026-11-18 }",
    );
    let (desired, windows) = load(&format!("{yaml}{}{WEEKEND}", target("eu-1", "2.0.0", "region: eu")));
    let mut recorded = RecordedState::default();
    recorded.targets.insert("eu-1".into(), converged("billing", "1.0.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
    let a = action(&p, "eu-1");
    assert_eq!(
        kinds(a),
        vec![
            BlockerKind::Suspended,
            BlockerKind::ReleaseAge,
            BlockerKind::Window,
            BlockerKind::Approval
        ]
    );
    let age = &a.blocked_by[1];
    assert_eq!(
        age.until.map(|t| t.to_string()).as_deref(),
        Some("2026-11-25T00:00:00Z")
    );
    assert_eq!(a.approvals.as_ref().map(|s| s.missing), Some(1));
}

#[test]
fn window_that_never_opens_is_a_violation() {
    let never = "---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: never }\nspec:\n  timezone: UTC\n  allow: [{ days: [sat], start: \"02:00\", end: \"06:00\" }]\n  deny: [{ days: [sat], start: \"00:00\", end: \"24:00\" }]\n";
    let (desired, windows) = load(&format!("{}{}{never}", base(""), target("t", "2.0.0", "a: b")));
    let p = run(&desired, &windows, &RecordedState::default(), "2026-11-20T10:00:00Z");
    let a = action(&p, "t");
    assert_eq!(a.status, Status::Violation);
    assert!(
        a.violations[0].contains("never open within 400 days"),
        "{:?}",
        a.violations
    );
}

/// Issue #16, emergency releases: a 1.0.1 hotfix released today, during a freeze, to a target
/// on 1.0.0. Which rule governs it, and so what holds it, per policy:
/// `(updates of the policy, urgency of 1.0.1, status, blocker kinds)`.
#[test]
fn an_emergency_release_is_governed_by_updates_emergency_and_passes_a_freeze_only_on_override() {
    let cases = [
        // No emergency rule: governed as its update type (a patch), so the freeze holds.
        ("{}", "emergency", Status::Blocked, vec![BlockerKind::Window]),
        // ... and every requirement of that type holds too: the safe default is no exemption.
        (
            "{ patch: { approvals: 1, minReleaseAge: 7d } }",
            "emergency",
            Status::Blocked,
            vec![BlockerKind::ReleaseAge, BlockerKind::Window, BlockerKind::Approval],
        ),
        (
            "{ emergency: { freezes: hold } }",
            "emergency",
            Status::Blocked,
            vec![BlockerKind::Window],
        ),
        (
            "{ emergency: { freezes: override } }",
            "emergency",
            Status::Ready,
            vec![],
        ),
        // The emergency rule replaces the patch rule whole: its own age and approvals.
        (
            "{ patch: { minReleaseAge: 7d }, emergency: { freezes: override, approvals: 1 } }",
            "emergency",
            Status::Blocked,
            vec![BlockerKind::Approval],
        ),
        (
            "{ emergency: { freezes: override, minReleaseAge: 2d } }",
            "emergency",
            Status::Blocked,
            vec![BlockerKind::ReleaseAge],
        ),
        // The rule is only for releases marked emergency.
        (
            "{ emergency: { freezes: override } }",
            "normal",
            Status::Blocked,
            vec![BlockerKind::Window],
        ),
    ];
    for (updates, urgency, status, kinds) in cases {
        let reason = if urgency == "emergency" {
            ", reason: \"CVE-2026-0001 in the parser\""
        } else {
            ""
        };
        let (desired, windows) = load(&format!(
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: billing }}\nspec: {{ steps: {{ deploy: [d] }} }}\n\
             ---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: billing-1.0.0 }}\nspec: {{ component: billing, version: 1.0.0 }}\n\
             ---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: billing-1.0.1 }}\nspec: {{ component: billing, version: 1.0.1, released: 2026-11-20, urgency: {urgency}{reason} }}\n\
             ---\napiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: acme }}\nspec: {{ component: billing, version: 1.0.1 }}\n\
             ---\napiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: prod }}\nspec: {{ updates: {updates} }}\n\
             ---\napiVersion: gantry.dev/v1\nkind: Window\nmetadata: {{ name: freeze }}\nspec: {{ timezone: UTC, deny: [{{ dates: [2026-11-20] }}] }}\n"
        ));
        let mut recorded = RecordedState::default();
        recorded.targets.insert("acme".into(), converged("billing", "1.0.0"));
        let plan = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
        let a = action(&plan, "acme");
        let got: Vec<BlockerKind> = a.blocked_by.iter().map(|b| b.kind).collect();
        assert_eq!(
            (a.status, &got),
            (status, &kinds),
            "{updates} {urgency}: {:#?}",
            a.blocked_by
        );
        if urgency == "emergency" {
            assert_eq!(a.urgency, Some(crate::manifest::Urgency::Emergency));
            assert_eq!(a.reason.as_deref(), Some("CVE-2026-0001 in the parser"));
        } else {
            assert_eq!((a.urgency, a.reason.as_deref()), (None, None));
        }
    }
}

/// Issue #16, break-glass rollbacks: a revert to a rollback point under a policy with
/// `rollback.approvals: 2` is held until two distinct listed approvers approved it; an address
/// named twice (any case) counts once and one not listed does not count. Without the rule a
/// revert needs none. `(rollback rule, trailer approvers, status, have)`.
#[test]
fn a_revert_needs_the_policys_rollback_approvals_from_distinct_listed_approvers() {
    let two = "rollback: { approvals: 2, approvers: [alice@example.com, bob@example.com] }";
    let cases: Vec<(&str, Vec<&str>, Status, Vec<&str>)> = vec![
        ("", vec![], Status::Ready, vec![]),
        (two, vec![], Status::Blocked, vec![]),
        (
            two,
            vec!["alice@example.com", "ALICE@example.com"],
            Status::Blocked,
            vec!["alice@example.com"],
        ),
        (
            two,
            vec!["alice@example.com", "mallory@example.com"],
            Status::Blocked,
            vec!["alice@example.com"],
        ),
        (
            two,
            vec!["alice@example.com", "Bob@Example.com"],
            Status::Ready,
            vec!["alice@example.com", "bob@example.com"],
        ),
        (
            "rollback: { approvals: 1 }",
            vec!["anyone@example.com"],
            Status::Ready,
            vec!["anyone@example.com"],
        ),
    ];
    for (rule, approvers, status, have) in cases {
        let policy = format!("---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec: {{ {rule} }}\n");
        let (desired, windows) = load(&format!("{}{}", base(&policy), target("eu-1", "1.0.0", "region: eu")));
        let mut recorded = RecordedState::default();
        let mut record = converged("billing", "2.0.0");
        record.rollback_points = vec![Version::new(1, 0, 0)];
        recorded.targets.insert("eu-1".into(), record);
        let mut evidence = Evidence::default();
        evidence
            .commit_approvers
            .insert("eu-1".into(), approvers.iter().map(|a| a.to_lowercase()).collect());
        let p = plan(&PlanInput {
            desired: &desired,
            windows: &windows,
            recorded: &recorded,
            evidence: &evidence,
            now: "2026-11-20T10:00:00Z".parse().unwrap(),
        });
        let a = action(&p, "eu-1");
        assert_eq!((a.action, a.update_type), (ActionKind::Downgrade, None), "a revert");
        assert_eq!(a.status, status, "{rule} {approvers:?}: {:#?}", a.blocked_by);
        let got: Vec<&str> = a
            .approvals
            .iter()
            .flat_map(|s| s.have.iter().map(String::as_str))
            .collect();
        assert_eq!(got, have, "{rule} {approvers:?}");
        if status == Status::Blocked {
            assert_eq!(kinds(a), vec![BlockerKind::Approval], "{rule}");
            assert!(
                a.blocked_by[0].reason.contains("of 2 approvals"),
                "{}",
                a.blocked_by[0].reason
            );
        }
    }
}

/// `system` 1.0.0, 2.0.0 and `dashboard` 1.0.0 (with `d1_requires`), 2.0.0 (requires
/// `system >=2.0` within the tenant), 3.0.0 (requires `system >=2.0` within the `site` label),
/// and the given targets as (name, component, version, labels).
fn requires_fleet(d1_requires: &str, targets: &[(&str, &str, &str, &str)]) -> Desired {
    let mut yaml = String::new();
    for c in ["system", "dashboard"] {
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Component\nmetadata: {{ name: {c} }}\nspec: {{ steps: {{ deploy: [d] }} }}\n"
        ));
    }
    for (name, spec) in [
        ("system-1.0.0", "component: system, version: 1.0.0"),
        ("system-2.0.0", "component: system, version: 2.0.0"),
        (
            "dashboard-1.0.0",
            &format!("component: dashboard, version: 1.0.0{d1_requires}"),
        ),
        (
            "dashboard-2.0.0",
            "component: dashboard, version: 2.0.0, requires: { system: \">=2.0\" }",
        ),
        (
            "dashboard-3.0.0",
            "component: dashboard, version: 3.0.0, requires: { system: { version: \">=2.0\", scope: site } }",
        ),
    ] {
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Release\nmetadata: {{ name: {name} }}\nspec: {{ {spec} }}\n"
        ));
    }
    for (name, component, version, labels) in targets {
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: {component}, version: \"{version}\" }}\n"
        ));
    }
    load(&yaml).0
}

/// `Release.spec.requires` (issue #16: "dashboard 2026.301.1 needs system ≥ 2.0" was deployed
/// next to system 1.x): the required upgrade goes first, a rollback of the required component
/// waits for its running dependents, and what the desired state can never satisfy is a
/// violation. Each row: targets, recorded (target, component, version, status), then the
/// expected status and the text its reason (blocker or violation) contains, per target.
#[test]
fn requirements_order_block_and_refuse() {
    type Row<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str, &'a str, &'a str)>,
        Vec<(&'a str, &'a str, &'a str, TargetStatus)>,
        Vec<(&'a str, Status, &'a str)>,
    );
    use TargetStatus::{Converged, Failed};
    let acme = "tenant: acme";
    let rows: Vec<Row> = vec![
        (
            "the required upgrade goes first",
            "",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "1.0.0", Converged),
                ("acme-dash", "dashboard", "1.0.0", Converged),
            ],
            vec![
                ("acme-system", Status::Ready, ""),
                (
                    "acme-dash",
                    Status::Blocked,
                    "waits for acme-system (system 1.0.0 → 2.0.0) to finish first: dashboard 2.0.0 requires system >=2.0 (tenant=acme)",
                ),
            ],
        ),
        (
            "a recorded accepted version releases the dependent",
            "",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "2.0.0", Converged),
                ("acme-dash", "dashboard", "1.0.0", Converged),
            ],
            vec![("acme-system", Status::Noop, ""), ("acme-dash", Status::Ready, "")],
        ),
        (
            "a failed required target is no base, even at an accepted version",
            "",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "2.0.0", Failed),
                ("acme-dash", "dashboard", "1.0.0", Converged),
            ],
            vec![(
                "acme-dash",
                Status::Blocked,
                "waits for acme-system (system 2.0.0: last attempt failed) to finish first",
            )],
        ),
        (
            "the required component's desired version does not satisfy it",
            "",
            vec![
                ("acme-system", "system", "1.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![],
            vec![(
                "acme-dash",
                Status::Violation,
                "dashboard 2.0.0 requires system >=2.0 (tenant=acme), but acme-system is to run system 1.0.0; change one of the desired versions",
            )],
        ),
        (
            "a rollback of the required component waits for the dependent to move back first",
            "",
            vec![
                ("acme-system", "system", "1.0.0", acme),
                ("acme-dash", "dashboard", "1.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "2.0.0", Converged),
                ("acme-dash", "dashboard", "2.0.0", Converged),
            ],
            vec![
                ("acme-dash", Status::Ready, ""),
                (
                    "acme-system",
                    Status::Blocked,
                    "waits for acme-dash to move first: it runs dashboard 2.0.0, which requires system >=2.0 (tenant=acme), and system 2.0.0 → 1.0.0 would break it",
                ),
            ],
        ),
        (
            "a rollback that would break a dependent staying put: blocked, and the dependent is a violation",
            "",
            vec![
                ("acme-system", "system", "1.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "2.0.0", Converged),
                ("acme-dash", "dashboard", "2.0.0", Converged),
            ],
            vec![
                ("acme-dash", Status::Violation, "but acme-system is to run system 1.0.0"),
                ("acme-system", Status::Blocked, "waits for acme-dash to move first"),
            ],
        ),
        (
            "the required component is not deployed to that tenant",
            "",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("globex-dash", "dashboard", "2.0.0", "tenant: globex"),
            ],
            vec![],
            vec![(
                "globex-dash",
                Status::Violation,
                "dashboard 2.0.0 requires system >=2.0, and no target of `system` has tenant=globex; add one or drop the requirement",
            )],
        ),
        (
            "a dependent without the scope label",
            "",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("edge-dash", "dashboard", "2.0.0", ""),
            ],
            vec![],
            vec![(
                "edge-dash",
                Status::Violation,
                "dashboard 2.0.0 requires system >=2.0 on the targets sharing its `tenant` label, and target `edge-dash` has no `tenant` label",
            )],
        ),
        (
            "a scope label other than tenant: the site's system, of another tenant, goes first",
            "",
            vec![
                ("site-system", "system", "2.0.0", "site: s1, tenant: infra"),
                ("acme-dash", "dashboard", "3.0.0", "site: s1, tenant: acme"),
            ],
            vec![("site-system", "system", "1.0.0", Converged)],
            vec![(
                "acme-dash",
                Status::Blocked,
                "waits for site-system (system 1.0.0 → 2.0.0) to finish first: dashboard 3.0.0 requires system >=2.0 (site=s1)",
            )],
        ),
        (
            "moves that would each break the other: no order, both violations",
            ", requires: { system: \"<2\" }",
            vec![
                ("acme-system", "system", "2.0.0", acme),
                ("acme-dash", "dashboard", "2.0.0", acme),
            ],
            vec![
                ("acme-system", "system", "1.0.0", Converged),
                ("acme-dash", "dashboard", "1.0.0", Converged),
            ],
            vec![
                (
                    "acme-dash",
                    Status::Violation,
                    "no upgrade order satisfies the requirements between acme-dash, acme-system",
                ),
                (
                    "acme-system",
                    Status::Violation,
                    "no upgrade order satisfies the requirements between acme-dash, acme-system",
                ),
            ],
        ),
    ];
    for (case, d1_requires, targets, records, expect) in rows {
        let desired = requires_fleet(d1_requires, &targets);
        let mut recorded = RecordedState::default();
        for (name, component, version, status) in records {
            let mut record = converged(component, version);
            record.status = status;
            recorded.targets.insert(name.into(), record);
        }
        let p = run(&desired, &[], &recorded, "2026-11-21T10:00:00Z");
        for (target, status, reason) in expect {
            let a = action(&p, target);
            assert_eq!(a.status, status, "{case}: {target}: {a:?}");
            let reasons: Vec<&str> = a
                .blocked_by
                .iter()
                .map(|b| &*b.reason)
                .chain(a.violations.iter().map(String::as_str))
                .collect();
            if reason.is_empty() {
                assert!(reasons.is_empty(), "{case}: {target}: {reasons:?}");
            } else {
                assert!(
                    reasons.iter().any(|r| r.contains(reason)),
                    "{case}: {target}: {reasons:#?}"
                );
            }
        }
    }
}

/// `agent` with `versioning: calver`: releases in every form, one `breaking: true`.
fn calver_fleet(targets: &str) -> Desired {
    let mut yaml = format!(
        "{HEADER}kind: Component\nmetadata: {{ name: agent }}\nspec: {{ versioning: calver, steps: {{ deploy: [d] }} }}\n"
    );
    for (version, extra) in [
        ("2026-01-10-001", ""),
        ("2026-01-10-002", ""),
        ("2026-02-03-001", ", breaking: true, upgradeFrom: \">=2026-01-10-002\""),
        ("2026.03.01", ""),
        ("2026-03-02-001", ""),
    ] {
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Release\nmetadata: {{ name: agent-{} }}\nspec: {{ component: agent, version: \"{version}\"{extra} }}\n",
            version.replace('.', "-")
        ));
    }
    yaml.push_str(&format!(
        "---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec: {{ deny: [\">=2026-03-02, <2026-03-03\"] }}\n"
    ));
    yaml.push_str(targets);
    load(&yaml).0
}

/// Calendar versions (issue #16: `2026-02-03-001` was refused as not semver): ordered by
/// (year, month, day, sequence) whatever the form, resolved by date requirements, denied by a
/// date range, with `upgradeFrom` stops, and classified for `updates.{patch,minor,major}`:
/// the same date is a patch, another date a minor, crossing a `breaking: true` release a major.
/// Each row: recorded version, desired version → action, to, stops, update type.
#[test]
fn calver_versions_order_resolve_and_classify() {
    type Row<'a> = (
        Option<&'a str>,
        &'a str,
        ActionKind,
        &'a str,
        Vec<&'a str>,
        Option<UpdateType>,
    );
    let rows: Vec<Row> = vec![
        (
            Some("2026-01-10-001"),
            "2026-01-10-002",
            ActionKind::Upgrade,
            "2026-01-10-002",
            vec!["2026-01-10-002"],
            Some(UpdateType::Patch),
        ),
        (
            Some("2026-02-03-001"),
            "2026.03.01",
            ActionKind::Upgrade,
            "2026.03.01",
            vec!["2026.03.01"],
            Some(UpdateType::Minor),
        ),
        // The breaking 2026-02-03-001 is reached only from 2026-01-10-002 (`upgradeFrom`).
        (
            Some("2026-01-10-001"),
            "2026-02-03-001",
            ActionKind::Upgrade,
            "2026-02-03-001",
            vec!["2026-01-10-002", "2026-02-03-001"],
            Some(UpdateType::Major),
        ),
        // Crossing the breaking release on the way is major too; a requirement takes the newest
        // date it allows that the policy does not deny (2026-03-02-001 is denied).
        (
            Some("2026-01-10-001"),
            ">=2026-01-10-002",
            ActionKind::Upgrade,
            "2026.03.01",
            vec!["2026.03.01"],
            Some(UpdateType::Major),
        ),
        (
            Some("2026-02-03-001"),
            ">=2026-01-01, <2026-03-01",
            ActionKind::Noop,
            "2026-02-03-001",
            vec![],
            None,
        ),
        (
            None,
            "<2026-02-01",
            ActionKind::Install,
            "2026-01-10-002",
            vec!["2026-01-10-002"],
            Some(UpdateType::Major),
        ),
        (
            Some("2026.03.01"),
            "2026-01-10-002",
            ActionKind::Downgrade,
            "2026-01-10-002",
            vec!["2026-01-10-002"],
            Some(UpdateType::Minor),
        ),
    ];
    for (current, wanted, kind, to, stops, update) in rows {
        let desired = calver_fleet(&format!(
            "---\n{HEADER}kind: Target\nmetadata: {{ name: a1 }}\nspec: {{ component: agent, version: \"{wanted}\" }}\n"
        ));
        let mut recorded = RecordedState::default();
        if let Some(current) = current {
            recorded.targets.insert("a1".into(), converged("agent", current));
        }
        let p = run(&desired, &[], &recorded, "2026-11-21T10:00:00Z");
        let a = action(&p, "a1");
        let case = format!("{current:?} → {wanted}");
        assert!(a.violations.is_empty(), "{case}: {:?}", a.violations);
        assert_eq!(a.action, kind, "{case}");
        assert_eq!(a.to.as_ref().map(ToString::to_string).as_deref(), Some(to), "{case}");
        let shown: Vec<String> = a.stops.iter().map(ToString::to_string).collect();
        assert_eq!(shown, stops, "{case}");
        assert_eq!(a.update_type, update, "{case}");
        // JSON shows versions exactly as written.
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["to"], to, "{case}");
    }
    // A pinned denied date and a date no release has are violations.
    for (wanted, why) in [
        (
            "2026-03-02-001",
            "is denied by policy `p` (deny: \">=2026-03-02, <2026-03-03\")",
        ),
        ("2026-03-04", "no Release of `agent` has version 2026-03-04"),
        (">=2027-01-01", "no release of `agent` satisfies >=2027-01-01"),
    ] {
        let yaml_target = format!(
            "---\n{HEADER}kind: Target\nmetadata: {{ name: a1 }}\nspec: {{ component: agent, version: \"{wanted}\" }}\n"
        );
        let file = RawFile {
            path: "all.yaml".into(),
            content: RawContent::Bytes(
                format!(
                    "{HEADER}kind: Component\nmetadata: {{ name: agent }}\nspec: {{ versioning: calver, steps: {{ deploy: [d] }} }}\n---\n{HEADER}kind: Release\nmetadata: {{ name: r1 }}\nspec: {{ component: agent, version: 2026-03-02-001 }}\n---\n{HEADER}kind: Policy\nmetadata: {{ name: p }}\nspec: {{ deny: [\">=2026-03-02, <2026-03-03\"] }}\n{yaml_target}"
                )
                .into_bytes(),
            ),
        };
        let (manifests, _) = read_manifests(None, &[file]);
        let (desired, diags) = validate(manifests);
        let p = run(&desired, &[], &RecordedState::default(), "2026-11-21T10:00:00Z");
        let found = diags.iter().any(|d| d.message.contains(why))
            || p.actions.iter().any(|a| a.violations.iter().any(|v| v.contains(why)));
        assert!(found, "{wanted}: {diags:?} {:?}", p.actions);
    }
}

/// `requires` on a calver component takes date comparisons.
#[test]
fn requirements_on_calver_components_compare_dates() {
    let desired = calver_fleet(&format!(
        "---\n{HEADER}kind: Component\nmetadata: {{ name: ui }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
         {HEADER}kind: Release\nmetadata: {{ name: ui-2.0.0 }}\nspec: {{ component: ui, version: 2.0.0, requires: {{ agent: \">=2026-02-01\" }} }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-agent, labels: {{ tenant: acme }} }}\nspec: {{ component: agent, version: \"2026.03.01\" }}\n---\n\
         {HEADER}kind: Target\nmetadata: {{ name: acme-ui, labels: {{ tenant: acme }} }}\nspec: {{ component: ui, version: 2.0.0 }}\n"
    ));
    let mut recorded = RecordedState::default();
    recorded
        .targets
        .insert("acme-agent".into(), converged("agent", "2026-01-10-002"));
    let p = run(&desired, &[], &recorded, "2026-11-21T10:00:00Z");
    assert_eq!(
        action(&p, "acme-ui").blocked_by[0].reason.as_ref(),
        "waits for acme-agent (agent 2026-01-10-002 → 2026.03.01) to finish first: ui 2.0.0 requires agent >=2026-02-01 (tenant=acme)"
    );
    recorded
        .targets
        .insert("acme-agent".into(), converged("agent", "2026-02-03-001"));
    let p = run(&desired, &[], &recorded, "2026-11-21T10:00:00Z");
    assert_eq!(action(&p, "acme-ui").status, Status::Ready);
}

/// Issue #17: every action crossing a release shares one note of it (a copy per action was a
/// fifth of a 10,000-target plan's peak memory); the note is still the release's.
#[test]
fn actions_crossing_a_release_share_its_note() {
    let (desired, windows) = staged();
    let plan = run(&desired, &windows, &RecordedState::default(), "2026-11-21T10:00:00Z");
    let notes: Vec<&std::sync::Arc<ReleaseNote>> = plan.actions.iter().map(|a| &a.releases[0]).collect();
    assert_eq!(notes.len(), 10);
    assert!(notes.iter().all(|n| std::sync::Arc::ptr_eq(n, notes[0])));
    assert_eq!(notes[0].version, Version::parse("2.0.0").unwrap());
}

/// Issue #17: the planner finds each desired target's record by walking both sorted maps once
/// (`fleet::Fleet`), and the targets no longer desired the same way. Records before, between and
/// after the desired names, one desired target whose record says `removed`, and lookups by an
/// index that is not the target's own, all give what a search by name gives.
#[test]
fn the_fleet_index_finds_what_a_search_by_name_finds() {
    let mut yaml = base("");
    for name in ["t02", "t04", "t06", "t08"] {
        yaml.push_str(&target(name, "2.0.0", "ring: \"1\""));
    }
    let (desired, windows) = load(&yaml);
    let mut recorded = RecordedState::default();
    for name in ["t01", "t04", "t05", "t08", "t09"] {
        recorded.targets.insert(name.into(), converged("billing", "1.0.0"));
    }
    recorded.targets.get_mut("t04").unwrap().status = TargetStatus::Removed;
    let input = PlanInput {
        desired: &desired,
        windows: &windows,
        recorded: &recorded,
        evidence: &Evidence::default(),
        now: "2026-11-21T10:00:00Z".parse().unwrap(),
    };
    let fleet = fleet::Fleet::of(&input);
    let names: Vec<&str> = fleet.targets().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["t02", "t04", "t06", "t08"]);
    for (i, name) in names.iter().enumerate() {
        let by_name = recorded.targets.get(*name);
        assert_eq!(
            fleet.records()[i].map(std::ptr::from_ref),
            by_name.map(std::ptr::from_ref),
            "{name}"
        );
        assert_eq!(
            fleet.record(i, name).map(std::ptr::from_ref),
            by_name.map(std::ptr::from_ref),
            "{name}"
        );
        assert!(std::ptr::eq(fleet.target(i, name).unwrap(), &desired.targets[*name]));
    }
    // An index past the planned targets (where removals are appended): found by name, a
    // record of a target no longer desired (t05) as a desired target's.
    assert!(std::ptr::eq(fleet.record(99, "t05").unwrap(), &recorded.targets["t05"]));
    assert!(std::ptr::eq(fleet.target(4, "t08").unwrap(), &desired.targets["t08"]));
    assert!(fleet.target(99, "t05").is_none(), "t05 is recorded, not desired");
    // An index that is not the named target's is the caller's mistake, caught in a debug build.
    if cfg!(debug_assertions) {
        for wrong in [
            std::panic::catch_unwind(|| fleet.target(0, "t08").map(|_| ())),
            std::panic::catch_unwind(|| fleet.record(1, "t05").map(|_| ())),
        ] {
            assert!(wrong.is_err(), "a misplaced index is not taken silently");
        }
    }
    let gone: Vec<&str> = fleet.recorded_only().map(|(name, _)| name.as_str()).collect();
    assert_eq!(gone, ["t01", "t05", "t09"]);

    let p = plan(&input);
    let planned: Vec<(&str, ActionKind)> = p.actions.iter().map(|a| (a.target.as_str(), a.action)).collect();
    assert_eq!(
        planned,
        [
            ("t01", ActionKind::Remove),
            ("t02", ActionKind::Install),
            // Its record says removed: installed anew.
            ("t04", ActionKind::Install),
            ("t05", ActionKind::Remove),
            ("t06", ActionKind::Install),
            ("t08", ActionKind::Upgrade),
            ("t09", ActionKind::Remove),
        ]
    );
}

/// Issue #17: dependencies index pending targets only for the components some component
/// depends on, each for the kind of dependency it is named by. A component named by a
/// same-tenant dependency and another named by a shared one, plus a pending component nobody
/// depends on in the same tenant: the dependent waits for exactly the first two, in order.
#[test]
fn dependencies_index_each_depended_on_component_for_its_kind_of_dependency() {
    let component = |name: &str, depends: &str| {
        format!(
            "{HEADER}kind: Component\nmetadata: {{ name: {name} }}\nspec: {{ {depends}steps: {{ deploy: [d] }} }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: {name}-1.0.0 }}\nspec: {{ component: {name}, version: 1.0.0 }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: {name}-1.1.0 }}\nspec: {{ component: {name}, version: 1.1.0 }}\n---\n"
        )
    };
    let target = |name: &str, component: &str, labels: &str| {
        format!(
            "{HEADER}kind: Target\nmetadata: {{ name: {name}, labels: {{ {labels} }} }}\nspec: {{ component: {component}, version: 1.1.0 }}\n---\n"
        )
    };
    let mut yaml = component("ledger", "")
        + &component("kafka", "")
        + &component("auth", "")
        + &component(
            "billing",
            "dependsOn: [ledger, { component: kafka, selector: { scope: shared } }], ",
        );
    yaml += &target("acme-ledger", "ledger", "tenant: acme");
    yaml += &target("acme-auth", "auth", "tenant: acme");
    yaml += &target("kafka-shared", "kafka", "tenant: acme, scope: shared");
    yaml += &target("globex-ledger", "ledger", "tenant: globex");
    yaml += &target("acme-billing", "billing", "tenant: acme");
    let (desired, windows) = load(yaml.trim_end_matches("---\n"));
    let mut recorded = RecordedState::default();
    for (name, component) in [
        ("acme-ledger", "ledger"),
        ("acme-auth", "auth"),
        ("kafka-shared", "kafka"),
        ("globex-ledger", "ledger"),
        ("acme-billing", "billing"),
    ] {
        recorded.targets.insert(name.into(), converged(component, "1.0.0"));
    }
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    let reasons: Vec<&str> = action(&p, "acme-billing")
        .blocked_by
        .iter()
        .filter(|b| b.kind == BlockerKind::Dependency)
        .map(|b| &*b.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "waits for acme-ledger (ledger 1.0.0 → 1.1.0) to finish first: component `billing` dependsOn `ledger` (tenant acme)",
            "waits for kafka-shared (kafka 1.0.0 → 1.1.0) to finish first: component `billing` dependsOn `kafka` (shared: scope=shared)",
        ]
    );
}

/// Issue #17: release notes are cached per component's releases, by position. Two components
/// with the same versions, only one of them breaking at 2.0.0: each action gets its own
/// component's notes, shared with the other actions crossing the same release.
#[test]
fn release_notes_are_shared_within_a_component_only() {
    let component = |name: &str, breaking: bool| {
        format!(
            "{HEADER}kind: Component\nmetadata: {{ name: {name} }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: {name}-1.0.0 }}\nspec: {{ component: {name}, version: 1.0.0 }}\n---\n\
             {HEADER}kind: Release\nmetadata: {{ name: {name}-2.0.0 }}\nspec: {{ component: {name}, version: 2.0.0, breaking: {breaking} }}\n---\n"
        )
    };
    let target = |name: &str, component: &str| {
        format!(
            "{HEADER}kind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: {component}, version: 2.0.0 }}\n---\n"
        )
    };
    let yaml = component("billing", false)
        + &component("ledger", true)
        + &target("b-install", "billing")
        + &target("b-upgrade", "billing")
        + &target("l-install", "ledger")
        + &target("l-upgrade", "ledger");
    let (desired, windows) = load(yaml.trim_end_matches("---\n"));
    let mut recorded = RecordedState::default();
    recorded
        .targets
        .insert("b-upgrade".into(), converged("billing", "1.0.0"));
    recorded
        .targets
        .insert("l-upgrade".into(), converged("ledger", "1.0.0"));
    let p = run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z");
    let note = |target: &str| {
        let a = action(&p, target);
        assert_eq!(a.releases.len(), 1, "{target}");
        &a.releases[0]
    };
    assert!(std::sync::Arc::ptr_eq(note("b-install"), note("b-upgrade")));
    assert!(std::sync::Arc::ptr_eq(note("l-install"), note("l-upgrade")));
    assert!(!std::sync::Arc::ptr_eq(note("b-install"), note("l-install")));
    assert!(!note("b-upgrade").breaking);
    assert!(note("l-upgrade").breaking);
    assert!(!action(&p, "b-upgrade").breaking);
    assert!(action(&p, "l-upgrade").breaking);
}

/// Issue #17: an install or upgrade path (stops, migrations, notes) is made once and shared by
/// every target that would plan it alike; targets whose channels or governing deny list make
/// another path do not share it. Every action equals the one the target gets planned alone.
#[test]
fn paths_are_shared_only_by_targets_that_plan_them_alike() {
    let release = |version: &str, extra: &str| {
        format!(
            "{HEADER}kind: Release\nmetadata: {{ name: billing-{version} }}\nspec: {{ component: billing, version: {version}{extra} }}\n---\n"
        )
    };
    let head = format!(
        "{HEADER}kind: Component\nmetadata: {{ name: billing }}\nspec: {{ steps: {{ deploy: [d] }} }}\n---\n"
    ) + &release("1.0.0", "")
        + &release("1.5.0", ", migrations: [{ id: m15, up: [u] }]")
        + &release("1.2.0-beta.1", ", migrations: [{ id: mbeta, up: [u] }]")
        + &release("2.0.0", ", upgradeFrom: \">=1.5.0\", migrations: [{ id: m2, up: [u] }]")
        + &format!(
            "{HEADER}kind: Policy\nmetadata: {{ name: no15 }}\nspec: {{ selector: {{ deny: \"yes\" }}, deny: [\">=1.5.0, <1.5.1\"] }}\n---\n"
        )
        + &format!(
            "{HEADER}kind: Policy\nmetadata: {{ name: no3 }}\nspec: {{ selector: {{ deny: \"3\" }}, deny: [\">=3.0.0\"] }}\n---\n"
        );
    let target = |name: &str, beta: bool, deny: &str| {
        format!(
            "{HEADER}kind: Target\nmetadata: {{ name: {name}, labels: {{ deny: \"{deny}\" }} }}\nspec: {{ component: billing, version: 2.0.0{} }}\n---\n",
            if beta { ", channels: [beta]" } else { "" }
        )
    };
    // (name, beta channel, deny label: `yes` under no15, `3` under no3, recorded at 1.0.0)
    let fleet = [
        ("s1", false, "no", true),
        ("s2", false, "no", true),
        ("n1", false, "3", true),
        ("b1", true, "no", true),
        ("b2", true, "no", true),
        ("d1", false, "yes", true),
        ("e1", true, "yes", true),
        ("i1", false, "no", false),
        ("i2", true, "no", false),
        ("i3", false, "yes", false),
    ];
    let plan_of = |members: &[(&str, bool, &str, bool)]| {
        let yaml = members.iter().fold(head.clone(), |yaml, (name, beta, deny, _)| {
            yaml + &target(name, *beta, deny)
        });
        let (desired, windows) = load(yaml.trim_end_matches("---\n"));
        let mut recorded = RecordedState::default();
        for (name, _, _, at_1) in members {
            if *at_1 {
                recorded.targets.insert((*name).into(), converged("billing", "1.0.0"));
            }
        }
        run(&desired, &windows, &recorded, "2026-11-21T10:00:00Z")
    };
    let p = plan_of(&fleet);
    for member in &fleet {
        let alone = plan_of(std::slice::from_ref(member));
        assert_eq!(action(&p, member.0), action(&alone, member.0), "{}", member.0);
    }
    let stops = |t: &str| action(&p, t).stops.iter().map(Version::to_string).collect::<Vec<_>>();
    let migrations = |t: &str| {
        action(&p, t)
            .migrations
            .iter()
            .map(|m| m.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(stops("s1"), ["1.5.0", "2.0.0"]);
    assert_eq!(migrations("s1"), ["m15", "m2"]);
    assert_eq!(stops("n1"), stops("s1"));
    assert_eq!(migrations("n1"), migrations("s1"));
    // The beta channel crosses its prerelease too: its migration runs before 1.5.0's.
    assert_eq!(stops("b1"), ["1.5.0", "2.0.0"]);
    assert_eq!(migrations("b1"), ["mbeta", "m15", "m2"]);
    // Denying 1.5.0 leaves no way to 2.0.0 (it accepts only >=1.5.0), on either channel.
    for denied in ["d1", "e1"] {
        assert!(stops(denied).is_empty(), "{denied}");
        assert!(
            action(&p, denied).violations[0].contains("no upgrade path from 1.0.0"),
            "{denied}"
        );
        assert_eq!(action(&p, denied).status, Status::Violation);
    }
    // An install runs every migration up to the release; the channel decides which, and no
    // deny list shapes it.
    assert_eq!(migrations("i1"), ["m15", "m2"]);
    assert_eq!(migrations("i2"), ["mbeta", "m15", "m2"]);
    assert_eq!(migrations("i3"), migrations("i1"));
    let shared = |a: &str, b: &str| std::sync::Arc::ptr_eq(&action(&p, a).migrations, &action(&p, b).migrations);
    assert!(shared("s1", "s2"));
    assert!(shared("b1", "b2"));
    assert!(!shared("s1", "b1"));
    assert!(!shared("s1", "n1"), "another policy: its own path, even when alike");
    assert!(shared("i1", "i3"), "an install's path is no policy's");
    assert!(!shared("i1", "s1"));
}

/// Issue #17: each approval rule's eligible addresses are made once per plan, keyed by the
/// rule's list, and so is the text of its actions nobody approved yet. Several policies with
/// their own lists (upgrade rules, a rollback rule, one that lets anyone approve) in one plan:
/// every action is counted and worded against its own list only, exactly as when its target
/// is planned alone.
#[test]
fn each_rule_counts_only_its_own_approvers_in_a_fleet_of_policies() {
    let policy = |name: &str, spec: &str| {
        format!(
            "---\n{HEADER}kind: Policy\nmetadata: {{ name: {name} }}\nspec: {{ selector: {{ team: {name} }}, {spec} }}\n"
        )
    };
    let policies = policy(
        "a",
        "updates: { major: { approvals: 1, approvers: [Alice@Example.com] } }",
    ) + &policy(
        "b",
        "updates: { major: { approvals: 2, approvers: [bob@example.com, carol@example.com] } }",
    ) + &policy("c", "updates: { major: { approvals: 1 } }")
        + &policy("r", "rollback: { approvals: 1, approvers: [dave@example.com] }");
    /// (target, team, recorded version, trailer approvers, eligible, have, status)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
        Status,
    );
    let cases: [Case; 8] = [
        // Nobody approved: the texts of a rule's unapproved actions are worded once per rule.
        ("a-0", "a", "1.0.0", &[], &["alice@example.com"], &[], Status::Blocked),
        (
            "b-0",
            "b",
            "1.0.0",
            &[],
            &["bob@example.com", "carol@example.com"],
            &[],
            Status::Blocked,
        ),
        (
            "a-1",
            "a",
            "1.0.0",
            &["alice@example.com"],
            &["alice@example.com"],
            &["alice@example.com"],
            Status::Ready,
        ),
        (
            "a-2",
            "a",
            "1.0.0",
            &["bob@example.com"],
            &["alice@example.com"],
            &[],
            Status::Blocked,
        ),
        (
            "b-1",
            "b",
            "1.0.0",
            &["alice@example.com", "bob@example.com"],
            &["bob@example.com", "carol@example.com"],
            &["bob@example.com"],
            Status::Blocked,
        ),
        (
            "b-2",
            "b",
            "1.0.0",
            &["carol@example.com", "bob@example.com"],
            &["bob@example.com", "carol@example.com"],
            &["bob@example.com", "carol@example.com"],
            Status::Ready,
        ),
        (
            "c-1",
            "c",
            "1.0.0",
            &["mallory@example.com"],
            &[],
            &["mallory@example.com"],
            Status::Ready,
        ),
        (
            "r-1",
            "r",
            "3.0.0",
            &["alice@example.com"],
            &["dave@example.com"],
            &[],
            Status::Blocked,
        ),
    ];
    let plan_of = |members: &[Case]| {
        let mut yaml = base(
            &(policies.clone()
                + &format!(
                    "---\n{HEADER}kind: Release\nmetadata: {{ name: billing-3.0.0 }}\nspec: {{ component: billing, version: 3.0.0 }}\n"
                )),
        );
        let mut recorded = RecordedState::default();
        let mut evidence = Evidence::default();
        for (name, team, at, trailers, ..) in members {
            yaml.push_str(&target(name, "2.0.0", &format!("team: {team}")));
            let mut record = converged("billing", at);
            record.rollback_points = vec![Version::new(2, 0, 0)];
            recorded.targets.insert((*name).into(), record);
            evidence
                .commit_approvers
                .insert((*name).into(), trailers.iter().map(|a| (*a).to_string()).collect());
        }
        let (desired, windows) = load(&yaml);
        plan(&PlanInput {
            desired: &desired,
            windows: &windows,
            recorded: &recorded,
            evidence: &evidence,
            now: "2026-11-20T10:00:00Z".parse().unwrap(),
        })
    };
    let p = plan_of(&cases);
    for case in &cases {
        let (name, _, _, _, eligible, have, status) = *case;
        let a = action(&p, name);
        let approvals = a.approvals.as_ref().expect("an approval gate");
        assert_eq!(*approvals.eligible, *eligible, "{name}");
        assert_eq!(approvals.have, have, "{name}");
        assert_eq!(a.status, status, "{name}: {:#?}", a.blocked_by);
        assert_eq!(
            a,
            action(&plan_of(std::slice::from_ref(case)), name),
            "{name} planned alone"
        );
    }
}

/// `name`'s config diff, one line per key.
fn config_diff_lines(p: &Plan, name: &str) -> Vec<String> {
    action(p, name)
        .config_diff
        .iter()
        .map(|c| format!("{}: {:?} -> {:?}", c.key, c.from, c.to))
        .collect()
}

/// Issue #17: a recorded config equal to the desired one is not compared key by key; the diff
/// is still exactly what changed otherwise: a recorded config that differs, one edited on the
/// state branch without its hash (the hash says equal, the diff says what differs), and a
/// record that kept only the hash (the diff then shows every key, as before).
#[test]
fn config_diff_is_skipped_only_for_the_recorded_config_itself() {
    let mut yaml = base("");
    for name in ["same", "changed", "edited", "hash-only"] {
        yaml.push_str(&format!(
            "---\n{HEADER}kind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: billing, version: \"2.0.0\", config: {{ size: 2, zone: a }} }}\n"
        ));
    }
    let (desired, windows) = load(&yaml);
    let config = |pairs: serde_json::Value| pairs.as_object().cloned().unwrap();
    let desired_config = config(serde_json::json!({ "size": 2, "zone": "a" }));
    let mut recorded = RecordedState::default();
    let record = |config: Option<serde_json::Map<String, serde_json::Value>>,
                  hash: &serde_json::Map<String, serde_json::Value>| TargetRecord {
        config_hash: Some(config_hash(hash)),
        config: config.map(Into::into),
        ..converged("billing", "2.0.0")
    };
    recorded
        .targets
        .insert("same".into(), record(Some(desired_config.clone()), &desired_config));
    let old = config(serde_json::json!({ "size": 1, "zone": "a" }));
    recorded
        .targets
        .insert("changed".into(), record(Some(old.clone()), &old));
    recorded
        .targets
        .insert("hash-only".into(), record(None, &desired_config));
    // Edited on the state branch without its hash: the hash says the desired config.
    recorded
        .targets
        .insert("edited".into(), record(Some(old.clone()), &desired_config));
    let p = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
    let diff = |name: &str| config_diff_lines(&p, name);
    assert_eq!(action(&p, "same").action, ActionKind::Noop);
    assert!(diff("same").is_empty());
    assert_eq!(action(&p, "changed").action, ActionKind::Config);
    assert_eq!(diff("changed"), ["size: Some(Number(1)) -> Some(Number(2))"]);
    assert_eq!(
        action(&p, "edited").action,
        ActionKind::Noop,
        "the hash decides the action"
    );
    assert_eq!(diff("edited"), diff("changed"), "the diff shows what the record holds");
    assert_eq!(action(&p, "hash-only").action, ActionKind::Noop);
    assert_eq!(
        diff("hash-only"),
        ["size: None -> Some(Number(2))", "zone: None -> Some(String(\"a\"))"]
    );

    // A daemon plans the same records again while the state branch does not move: the configs
    // found equal are then compared by their hashes, and every diff is the same.
    let again = run(&desired, &windows, &recorded, "2026-11-20T10:00:00Z");
    assert_eq!(format!("{:?}", again.actions), format!("{:?}", p.actions));
    // The same records against a commit that changed every target's config: a record found
    // equal to the old config is not taken as equal to the new one.
    let (edited, windows) = load(&yaml.replace("size: 2", "size: 3"));
    let p = run(&edited, &windows, &recorded, "2026-11-20T10:00:00Z");
    let diff = |name: &str| config_diff_lines(&p, name);
    assert_eq!(action(&p, "same").action, ActionKind::Config);
    assert_eq!(diff("same"), ["size: Some(Number(2)) -> Some(Number(3))"]);
    assert_eq!(diff("changed"), ["size: Some(Number(1)) -> Some(Number(3))"]);
}

/// Issue #17: a recorded config keeps the hash of the values it was found equal to, and answers
/// by it from then on; without such a match it compares by value, and a new config has no hash.
#[test]
fn a_recorded_config_answers_by_hash_only_after_an_equal_comparison() {
    let map = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let two = map(serde_json::json!({ "size": 2 }));
    let three = map(serde_json::json!({ "size": 3 }));
    let (two_hash, three_hash) = (config_hash(&two), config_hash(&three));
    // A caller's wrong hash (three's values with two's hash) shows how it answered: by value
    // (false) or by a kept hash (true).
    let recorded = RecordedConfig::from(two.clone());
    assert!(!recorded.known_equal(&three, &three_hash), "unequal by value");
    assert!(!recorded.known_equal(&three, &two_hash), "no hash kept yet: by value");
    assert!(recorded.known_equal(&two, &two_hash));
    assert!(
        recorded.known_equal(&three, &two_hash),
        "by the hash kept from the equal comparison"
    );
    assert!(!recorded.known_equal(&three, &three_hash));
    assert!(recorded.known_equal(&two, &two_hash));
    // A copy keeps the hash with the values; a config made from the values has none.
    let copy = recorded.clone();
    assert!(copy.known_equal(&three, &two_hash), "the copy's kept hash");
    let fresh = RecordedConfig::from(recorded.clone().into_values());
    assert!(!fresh.known_equal(&three, &two_hash), "no hash kept: by value");
    // Equality and the YAML ignore the kept hash.
    assert_eq!(fresh, recorded);
    assert_eq!(
        serde_json::to_string(&recorded).unwrap(),
        serde_json::to_string(&two).unwrap()
    );
}
