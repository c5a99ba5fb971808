//! Fuzz target: small arbitrary desired states (components, releases, targets, policies,
//! windows, approvals) and recorded states → `plan::plan` → `render::render_plan` in text,
//! markdown and JSON.
//!
//! Manifests are generated as JSON documents (JSON is YAML) and go through the real loader and
//! validator, so the planner sees only what a commit could give it. Planning and rendering must
//! not panic, and the JSON rendering must be JSON.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use gantry::manifest::{self, RawContent, RawFile};
use gantry::plan::{self, Evidence, PlanInput};
use gantry::policy::window::WindowSchedule;
use gantry::render::{self, Format, PlanContext};
use gantry::state::{AppliedMigration, AttemptRecord, Outcome, RecordedState, TargetRecord, TargetStatus};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

const COMPONENTS: &[&str] = &["billing", "ledger", "agent"];
const TARGETS: &[&str] = &["acme", "zen", "umbrella", "initech", "hooli", "globex"];
const PEOPLE: &[&str] = &["alice@example.com", "bob@example.com", "eve@example.com"];
const REQUIREMENTS: &[&str] = &[
    "^1",
    ">=1.2.0",
    "~0.1",
    "*",
    "^2.0.0-0",
    ">=1.0.0, <2.0.0",
    "=1.1.0",
    "^0",
];
const LABELS: &[(&str, &str)] = &[
    ("env", "prod"),
    ("env", "dev"),
    ("ring", "0"),
    ("ring", "1"),
    ("tenant", "acme"),
];

#[derive(Arbitrary, Debug, Clone, Copy)]
struct V(u8, u8, u8, bool);

impl V {
    fn version(self) -> semver::Version {
        let mut v = semver::Version::new(u64::from(self.0 % 4), u64::from(self.1 % 4), u64::from(self.2 % 3));
        if self.3 {
            v.pre = semver::Prerelease::new("beta.1").unwrap_or(semver::Prerelease::EMPTY);
        }
        v
    }
}

#[derive(Arbitrary, Debug)]
enum Wanted {
    Pin(V),
    Requirement(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Migration {
    pre: bool,
    down: bool,
}

#[derive(Arbitrary, Debug)]
struct Release {
    component: u8,
    version: V,
    upgrade_from: Option<u8>,
    breaking: bool,
    yanked: bool,
    migrations: Vec<Migration>,
    age_days: Option<u16>,
}

#[derive(Arbitrary, Debug)]
struct Target {
    component: u8,
    wanted: Wanted,
    labels: Vec<u8>,
    config: Option<u8>,
    suspend: bool,
    depends: bool,
}

#[derive(Arbitrary, Debug)]
struct Wave {
    percent: Option<u8>,
    ring: Option<u8>,
    soak_minutes: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Policy {
    selector: Option<u8>,
    priority: u8,
    approvals: [u8; 3],
    windows: [bool; 3],
    waves: Vec<Wave>,
    max_parallel: u8,
    max_failures: u8,
    deny: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Window {
    selector: Option<u8>,
    start: u8,
    end: u8,
    freeze_from_day: Option<u16>,
}

#[derive(Arbitrary, Debug)]
struct Record {
    target: u8,
    component: u8,
    version: Option<V>,
    status: u8,
    config: Option<u8>,
    migrations: Vec<(V, bool)>,
    outcome: Option<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    restore_step: bool,
    releases: Vec<Release>,
    targets: Vec<Target>,
    policies: Vec<Policy>,
    windows: Vec<Window>,
    approvals: Vec<(u8, V, u8)>,
    commit_approvers: Vec<(u8, u8)>,
    records: Vec<Record>,
    /// Minutes after 2026-01-01T00:00Z.
    now_minutes: u32,
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    list[usize::from(i) % list.len()]
}

fn doc(kind: &str, name: &str, labels: Value, spec: Value) -> Value {
    json!({ "apiVersion": "gantry.dev/v1", "kind": kind, "metadata": { "name": name, "labels": labels }, "spec": spec })
}

fn selector(i: Option<u8>) -> Value {
    i.map_or(Value::Null, |i| {
        let (k, v) = pick(LABELS, i);
        json!({ k: v })
    })
}

fn manifests(input: &Input) -> Vec<Value> {
    let mut docs = Vec::new();
    for c in COMPONENTS {
        let mut steps = json!({
            "deploy": ["scripts/deploy.sh", "{{ target.name }}", "{{ version }}"],
            "health": ["scripts/health.sh", "{{ target.name }}"],
            "reload": ["scripts/reload.sh", "{{ target.name }}"],
        });
        if input.restore_step {
            steps["snapshot"] = json!(["scripts/snap.sh", "{{ attempt }}"]);
            steps["restore"] = json!(["scripts/restore.sh", "{{ attempt }}"]);
        }
        docs.push(doc(
            "Component",
            c,
            json!({}),
            json!({ "executor": "local", "steps": steps }),
        ));
    }
    for (i, r) in input.releases.iter().take(12).enumerate() {
        let c = pick(COMPONENTS, r.component);
        let v = r.version.version();
        let migrations: Vec<Value> = r
            .migrations
            .iter()
            .take(3)
            .enumerate()
            .map(|(j, m)| {
                let mut m_json = json!({ "id": format!("m{j}"), "up": ["m/up.sh", "{{ target.name }}"],
                    "phase": if m.pre { "pre" } else { "post" } });
                if m.down {
                    m_json["down"] = json!(["m/down.sh"]);
                }
                m_json
            })
            .collect();
        let mut spec = json!({ "component": c, "version": v.to_string(), "breaking": r.breaking,
            "yanked": r.yanked, "migrations": migrations });
        if let Some(u) = r.upgrade_from {
            spec["upgradeFrom"] = json!(pick(REQUIREMENTS, u));
        }
        if let Some(age) = r.age_days {
            let day = jiff::civil::date(2026, 1, 1)
                .checked_sub(jiff::Span::new().days(i64::from(age % 400)))
                .unwrap_or(jiff::civil::date(2026, 1, 1));
            spec["released"] = json!(day.to_string());
        }
        docs.push(doc("Release", &format!("{c}-{v}-{i}"), json!({}), spec));
    }
    for (i, t) in input.targets.iter().take(TARGETS.len()).enumerate() {
        let c = pick(COMPONENTS, t.component);
        let version = match &t.wanted {
            Wanted::Pin(v) => v.version().to_string(),
            Wanted::Requirement(r) => pick(REQUIREMENTS, *r).to_string(),
            Wanted::Raw(s) => s.chars().take(40).collect(),
        };
        let labels: BTreeMap<&str, &str> = t.labels.iter().take(3).map(|l| pick(LABELS, *l)).collect();
        let mut spec = json!({ "component": c, "version": version, "suspend": t.suspend,
            "channels": ["stable", "beta"] });
        if let Some(cfg) = t.config {
            spec["config"] = json!({ "timeout_s": cfg, "mode": format!("m{}", cfg % 3) });
        }
        if t.depends {
            // dependsOn is on components; a target here only varies labels used by it.
            spec["vars"] = json!({ "host": format!("h{i}.internal") });
        }
        docs.push(doc("Target", &format!("{}-{c}", TARGETS[i]), json!(labels), spec));
    }
    for (i, p) in input.policies.iter().take(3).enumerate() {
        let rule = |n: usize| {
            json!({ "approvals": p.approvals[n] % 3, "windows": p.windows[n],
                "approvers": PEOPLE, "minReleaseAge": format!("{}d", p.approvals[n] % 9) })
        };
        let waves: Vec<Value> = p
            .waves
            .iter()
            .take(4)
            .enumerate()
            .map(|(j, w)| {
                let mut wave = json!({ "name": format!("wave{j}") });
                if let Some(pct) = w.percent {
                    wave["percent"] = json!(1 + pct % 100);
                } else if let Some(ring) = w.ring {
                    wave["selector"] = json!({ "ring": (ring % 2).to_string() });
                } else {
                    wave["percent"] = json!(100);
                }
                if let Some(s) = w.soak_minutes {
                    wave["soak"] = json!(format!("{s}m"));
                }
                wave
            })
            .collect();
        let mut spec = json!({ "priority": p.priority % 4,
            "updates": { "patch": rule(0), "minor": rule(1), "major": rule(2) },
            "rollout": { "maxParallel": 1 + p.max_parallel % 4, "maxFailures": p.max_failures % 3 } });
        if !waves.is_empty() {
            spec["rollout"]["waves"] = json!(waves);
        }
        if p.selector.is_some() {
            spec["selector"] = selector(p.selector);
        }
        if let Some(d) = p.deny {
            spec["deny"] = json!([pick(REQUIREMENTS, d)]);
        }
        docs.push(doc("Policy", &format!("p{i}"), json!({}), spec));
    }
    for (i, w) in input.windows.iter().take(2).enumerate() {
        let mut spec = json!({ "timezone": "Europe/Berlin",
            "allow": [{ "start": format!("{:02}:00", w.start % 24), "end": format!("{:02}:30", w.end % 24) }] });
        if w.selector.is_some() {
            spec["selector"] = selector(w.selector);
        }
        if let Some(day) = w.freeze_from_day {
            let from = jiff::civil::date(2026, 1, 1)
                .checked_add(jiff::Span::new().days(i64::from(day % 60)))
                .unwrap_or(jiff::civil::date(2026, 1, 1));
            spec["deny"] = json!([{ "dates": [from.to_string()] }]);
        }
        docs.push(doc("Window", &format!("w{i}"), json!({}), spec));
    }
    for (i, (c, v, who)) in input.approvals.iter().take(3).enumerate() {
        docs.push(doc(
            "Approval",
            &format!("a{i}"),
            json!({}),
            json!({ "component": pick(COMPONENTS, *c), "version": v.version().to_string(),
                "approvedBy": [pick(PEOPLE, *who)] }),
        ));
    }
    docs
}

fn recorded(input: &Input) -> RecordedState {
    const STATUSES: [TargetStatus; 5] = [
        TargetStatus::Converged,
        TargetStatus::InProgress,
        TargetStatus::Failed,
        TargetStatus::RolledBack,
        TargetStatus::Removed,
    ];
    let mut state = RecordedState::default();
    for r in input.records.iter().take(8) {
        let c = pick(COMPONENTS, r.component);
        let name = format!("{}-{c}", pick(TARGETS, r.target));
        let config = r.config.map(|cfg| {
            let mut m = serde_json::Map::new();
            m.insert("timeout_s".into(), json!(cfg));
            m
        });
        let applied_migrations = r
            .migrations
            .iter()
            .take(4)
            .enumerate()
            .map(|(j, (v, down))| AppliedMigration {
                release: v.version(),
                id: format!("m{j}"),
                phase: manifest::Phase::Pre,
                down: down.then(|| vec!["m/down.sh".to_string()]),
                attempt: "a-1".into(),
            })
            .collect();
        let last_attempt = r.outcome.map(|o| AttemptRecord {
            id: format!("{name}-20260101T000000Z"),
            desired_commit: "0".repeat(40),
            from: None,
            to: r.version.map_or(semver::Version::new(1, 0, 0), V::version),
            action: "upgrade".into(),
            started: "2026-01-01T00:00:00Z".into(),
            finished: Some("2026-01-01T00:05:00Z".into()),
            outcome: Some([Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack][usize::from(o % 3)]),
            message: "step failed".into(),
            config_hash: config.as_ref().map(manifest::validate::config_hash),
            output_tail: String::new(),
            spec_hash: None,
            approvers: Vec::new(),
            emergency: None,
        });
        state.targets.insert(
            name,
            TargetRecord {
                component: c.to_string(),
                version: r.version.map(V::version),
                config_hash: config.as_ref().map(manifest::validate::config_hash),
                config,
                applied_migrations,
                status: STATUSES[usize::from(r.status) % STATUSES.len()],
                last_attempt,
                rollback_points: Vec::new(),
                observed_version: None,
            },
        );
    }
    state
}

fuzz_target!(|input: Input| {
    let files: Vec<RawFile> = manifests(&input)
        .iter()
        .enumerate()
        .map(|(i, d)| RawFile {
            path: format!("m/{i}.yaml"),
            content: RawContent::Bytes(d.to_string().into_bytes()),
        })
        .collect();
    let config = RawFile {
        path: "gantry.toml".into(),
        content: RawContent::Bytes(b"[executors.local]\ntype = \"shell\"\n".to_vec()),
    };
    let (manifests, mut diagnostics) = manifest::read_manifests(Some(&config), &files);
    let (desired, semantic) = manifest::validate(manifests);
    diagnostics.extend(semantic);
    let windows: Vec<WindowSchedule> = desired
        .windows
        .iter()
        .filter_map(|w| WindowSchedule::compile(&w.name, &w.spec).ok())
        .collect();
    let recorded = recorded(&input);
    let mut evidence = Evidence::default();
    for (t, who) in input.commit_approvers.iter().take(6) {
        let name = format!("{}-{}", pick(TARGETS, *t), pick(COMPONENTS, *t / 8));
        evidence
            .commit_approvers
            .entry(name)
            .or_insert_with(BTreeSet::new)
            .insert(pick(PEOPLE, *who).to_string());
    }
    let now = Timestamp::from_second(1_767_225_600 + i64::from(input.now_minutes % (2 * 365 * 1440)) * 60)
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let mut plan = plan::plan(&PlanInput {
        desired: &desired,
        windows: &windows,
        recorded: &recorded,
        evidence: &evidence,
        now,
    });
    plan::attach_diagnostics(&mut plan, &diagnostics);
    let context = PlanContext::default();
    for format in [Format::Text, Format::Markdown] {
        if let Err(e) = render::render_plan(&plan, format, &context, None) {
            panic!("built-in {format:?} template failed: {e}");
        }
    }
    match render::render_plan(&plan, Format::Json, &context, None) {
        Ok(text) => {
            if let Err(e) = serde_json::from_str::<Value>(&text) {
                panic!("JSON plan is not JSON: {e}");
            }
        }
        Err(e) => panic!("JSON plan failed: {e}"),
    }
});
