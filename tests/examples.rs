//! The example repositories under `examples/` (issue #16, "What it must show"), run end to end:
//! each is copied into a fresh git repository, validated, planned and applied with `--now` (no
//! test sleeps: soaks and windows are crossed by moving `--now`), its end state checked through
//! `gantry status --format json` and the files its scripts wrote, and then one realistic change
//! is made and its outcome checked.
//!
//! Each example's first convergence is a story of its own (asserted step by step) run once per
//! test binary; the tests of a change start from a copy of that converged repository.

mod common;

use std::sync::OnceLock;

use common::{Repo, copy_tree};
use serde_json::Value;

/// Runs gantry, asserting its exit code, and returns stdout.
fn run(repo: &Repo, args: &[&str], code: i32) -> String {
    repo.gantry(args).expect(code).stdout()
}

/// `gantry plan --now NOW --format json`.
fn plan(repo: &Repo, now: &str) -> Value {
    let out = run(repo, &["--now", now, "plan", "--format", "json"], 0);
    serde_json::from_str(&out).expect("plan JSON")
}

/// The plan's action for `target`.
fn action<'a>(plan: &'a Value, target: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .find(|a| a["target"] == target)
        .unwrap_or_else(|| panic!("no action for {target} in {plan:#}"))
}

/// The kinds of the blockers of `target`'s action.
fn blocker_kinds(plan: &Value, target: &str) -> Vec<String> {
    action(plan, target)["blocked_by"]
        .as_array()
        .expect("blocked_by")
        .iter()
        .map(|b| b["kind"].as_str().expect("kind").to_string())
        .collect()
}

/// `gantry status --now NOW --format json`: per target, (current version, status).
fn status(repo: &Repo, now: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let out = run(repo, &["--now", now, "status", "--format", "json"], 0);
    let json: Value = serde_json::from_str(&out).expect("status JSON");
    json["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            (
                t["target"].as_str().expect("target").to_string(),
                (
                    t["current"].as_str().unwrap_or("").to_string(),
                    t["status"].as_str().expect("status").to_string(),
                ),
            )
        })
        .collect()
}

/// Asserts the (current, status) of each named target.
fn assert_status(repo: &Repo, now: &str, expected: &[(&str, &str, &str)]) {
    let all = status(repo, now);
    for (target, current, state) in expected {
        assert_eq!(
            all.get(*target).map(|(c, s)| (c.as_str(), s.as_str())),
            Some((*current, *state)),
            "{target} in {all:#?}"
        );
    }
}

/// Replaces `from` by `to` in a work tree file, asserting `from` is there.
fn edit(repo: &Repo, path: &str, from: &str, to: &str) {
    let text = std::fs::read_to_string(repo.path().join(path)).expect("read");
    assert!(text.contains(from), "{path} does not contain {from:?}");
    repo.file(path, &text.replace(from, to));
}

/// A JSON file the example's scripts wrote in the repository.
fn written(repo: &Repo, path: &str) -> Value {
    let text = std::fs::read_to_string(repo.path().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A converged example, built once by `story`, copied (work tree, `.git` with the state branch
/// and gantry's own files) into a new temporary repository for each test.
fn copy_of(template: &'static OnceLock<tempfile::TempDir>, story: fn() -> Repo) -> Repo {
    let source = template.get_or_init(|| story().dir);
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(source.path(), dir.path());
    let git = git2::Repository::open(dir.path()).expect("open copy");
    Repo { dir, git }
}

// ---------------------------------------------------------------------------------------------
// examples/agents: canary, traffic steps, hot config with a configSchema.

const AGENTS_T0: &str = "2026-10-20T10:00:00Z";

/// The agents' event log (`deploy V`, `shift W`, `reload`) of one instance.
fn agent_events(repo: &Repo, instance: &str) -> Vec<String> {
    let state = written(repo, &format!("fleet/{instance}.json"));
    state["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e.as_str().expect("event").to_string())
        .collect()
}

/// The agents example from a fresh copy to a converged fleet: validate, plan (canaries ready,
/// the rest held by the canary wave), apply (canaries, with traffic steps), an apply inside the
/// canary's 30 min soak that starts nothing, and one after it that installs the rest.
fn agents_story() -> Repo {
    let repo = Repo::from_dir("examples/agents");
    let said = run(&repo, &["validate"], 0);
    assert!(
        said.contains("2 components, 4 releases, 6 targets, 1 policies"),
        "{said}"
    );

    let plan = plan(&repo, AGENTS_T0);
    for canary in ["orchestrator-0", "memory-0"] {
        let a = action(&plan, canary);
        assert_eq!(
            (a["action"].as_str(), a["status"].as_str()),
            (Some("install"), Some("ready")),
            "{a:#}"
        );
        assert_eq!(a["wave"], "canary");
    }
    for rest in ["orchestrator-1", "orchestrator-2", "orchestrator-3", "memory-1"] {
        assert_eq!(action(&plan, rest)["wave"], "all");
        assert_eq!(blocker_kinds(&plan, rest), ["wave"], "{rest}");
    }

    run(&repo, &["--now", AGENTS_T0, "apply"], 0);
    assert_eq!(
        agent_events(&repo, "orchestrator-0"),
        ["deploy 1.2.5", "shift 10", "shift 50", "shift 100"],
        "the canary took the traffic in the policy's steps"
    );
    assert!(!repo.path().join("fleet/orchestrator-1.json").exists());

    // Inside the canary's soak nothing else starts.
    run(&repo, &["--now", "2026-10-20T10:29:00Z", "apply"], 0);
    assert!(
        !repo.path().join("fleet/orchestrator-1.json").exists(),
        "started before the soak ended"
    );
    assert_status(&repo, "2026-10-20T10:29:00Z", &[("orchestrator-1", "", "new")]);

    run(&repo, &["--now", "2026-10-20T10:31:00Z", "apply"], 0);
    assert_status(
        &repo,
        "2026-10-20T10:31:00Z",
        &[
            ("orchestrator-0", "1.2.5", "converged"),
            ("orchestrator-1", "1.2.5", "converged"),
            ("orchestrator-2", "1.2.5", "converged"),
            ("orchestrator-3", "1.2.5", "converged"),
            ("memory-0", "0.4.2", "converged"),
            ("memory-1", "0.4.2", "converged"),
        ],
    );
    let memory = written(&repo, "fleet/memory-1.json");
    assert_eq!(memory["candidate"], "0.4.2");
    assert_eq!(memory["weight"], 100);
    assert_eq!(
        memory["config"]["max_context_gb"], 10,
        "deployed with its config: {memory:#}"
    );
    repo
}

static AGENTS: OnceLock<tempfile::TempDir> = OnceLock::new();

#[test]
fn agents_example_converges_canary_first_with_traffic_steps() {
    let repo = copy_of(&AGENTS, agents_story);
    for instance in ["orchestrator-0", "orchestrator-3", "memory-0", "memory-1"] {
        assert_eq!(
            agent_events(&repo, instance),
            [
                format!(
                    "deploy {}",
                    if instance.starts_with("memory") {
                        "0.4.2"
                    } else {
                        "1.2.5"
                    }
                ),
                "shift 10".into(),
                "shift 50".into(),
                "shift 100".into(),
            ]
        );
    }
    let history = run(&repo, &["history", "--format", "json"], 0);
    assert_eq!(history.matches("\"succeeded\"").count(), 6, "{history}");
}

/// The domain's hot patch: lowering the memory agent's context limit is a `reload` on each
/// instance, no deploy; a value the configSchema refuses never reaches the fleet.
#[test]
fn agents_example_config_only_change_reloads_without_redeploying() {
    let repo = copy_of(&AGENTS, agents_story);
    let before = agent_events(&repo, "memory-0");

    edit(
        &repo,
        "targets/memory.yaml",
        "max_context_gb: 10",
        "max_context_gb: \"5GB\"",
    );
    repo.commit_all("memory: context limit 5GB");
    let refused = repo.gantry(&["validate"]).expect(1);
    assert!(
        refused.stderr().contains(
            "targets/memory.yaml:10:29: spec.config.max_context_gb: expected an integer, found \"5GB\" (the configSchema of component `memory`)"
        ),
        "{}",
        refused.stderr()
    );
    let apply = repo.gantry(&["--now", "2026-10-21T09:00:00Z", "apply"]).expect(1);
    assert!(
        apply.stderr().contains("is not valid; nothing was applied"),
        "{}",
        apply.stderr()
    );
    assert_eq!(
        agent_events(&repo, "memory-0"),
        before,
        "an invalid config reached the fleet"
    );

    edit(
        &repo,
        "targets/memory.yaml",
        "max_context_gb: \"5GB\"",
        "max_context_gb: 5",
    );
    repo.commit_all("memory: context limit 5 GB");
    let plan = plan(&repo, "2026-10-21T09:00:00Z");
    for instance in ["memory-0", "memory-1"] {
        let a = action(&plan, instance);
        assert_eq!(
            (a["action"].as_str(), a["status"].as_str()),
            (Some("config"), Some("ready")),
            "{a:#}"
        );
        assert_eq!(
            a["config_diff"],
            serde_json::json!([{"key": "max_context_gb", "from": 10, "to": 5}])
        );
    }
    assert_eq!(action(&plan, "orchestrator-0")["action"], "noop");

    run(&repo, &["--now", "2026-10-21T09:00:00Z", "apply"], 0);
    for instance in ["memory-0", "memory-1"] {
        let events = agent_events(&repo, instance);
        assert_eq!(
            events.last().map(String::as_str),
            Some("reload"),
            "{instance}: {events:?}"
        );
        assert_eq!(
            events.iter().filter(|e| e.starts_with("deploy")).count(),
            1,
            "redeployed: {events:?}"
        );
        assert_eq!(
            written(&repo, &format!("fleet/{instance}.json"))["config"]["max_context_gb"],
            5
        );
    }
    assert_status(
        &repo,
        "2026-10-21T09:00:00Z",
        &[("memory-0", "0.4.2", "converged"), ("memory-1", "0.4.2", "converged")],
    );
}

/// A build whose error rate crosses the policy's 5 % at the 50 % traffic step: the canary
/// shifts back to 0 %, is redeployed on the old version, and the rollout halts before any
/// other instance is touched. The good memory build goes on: canary, then the rest after the
/// soak.
#[test]
fn agents_example_canary_failing_its_error_rate_rolls_back_and_halts_the_rollout() {
    let repo = copy_of(&AGENTS, agents_story);
    edit(&repo, "targets/orchestrator.yaml", "version: 1.2.5", "version: 1.3.0");
    edit(&repo, "targets/memory.yaml", "version: 0.4.2", "version: 0.4.3");
    let rates = std::fs::read_to_string(repo.path().join("simulate/error-rates")).unwrap();
    repo.file("simulate/error-rates", &format!("{rates}orchestrator 1.3.0 0.12\n"));
    repo.commit_all("orchestrator 1.3.0, memory 0.4.3");

    let apply = repo.gantry(&["--now", "2026-10-21T10:00:00Z", "apply"]).expect(2);
    assert!(
        apply
            .stderr()
            .contains("orchestrator-0: error rate 6.25% (limit 5.00%)"),
        "{}",
        apply.stderr()
    );
    assert_eq!(
        agent_events(&repo, "orchestrator-0")[4..],
        ["deploy 1.3.0", "shift 10", "shift 50", "shift 0", "deploy 1.2.5"],
        "traffic went back to the old version before it was redeployed"
    );
    let canary = written(&repo, "fleet/orchestrator-0.json");
    assert_eq!(
        (canary["live"].as_str(), canary["weight"].as_i64()),
        (Some("1.2.5"), Some(0))
    );
    assert_eq!(
        agent_events(&repo, "orchestrator-1").len(),
        4,
        "a non-canary was touched"
    );
    assert_eq!(
        agent_events(&repo, "memory-0").last().map(String::as_str),
        Some("shift 100")
    );
    assert_status(
        &repo,
        "2026-10-21T10:00:00Z",
        &[
            ("orchestrator-0", "1.2.5", "rolled_back"),
            ("orchestrator-1", "1.2.5", "pending"),
            ("memory-0", "0.4.3", "converged"),
            ("memory-1", "0.4.2", "pending"),
        ],
    );

    // After the canary soak the good build reaches the rest; the halted one does not.
    run(&repo, &["--now", "2026-10-21T10:31:00Z", "apply"], 0);
    let plan = plan(&repo, "2026-10-21T10:31:00Z");
    assert!(blocker_kinds(&plan, "orchestrator-2").contains(&"halted".to_string()));
    assert_status(
        &repo,
        "2026-10-21T10:31:00Z",
        &[
            ("memory-1", "0.4.3", "converged"),
            ("orchestrator-2", "1.2.5", "pending"),
        ],
    );
    assert_eq!(agent_events(&repo, "orchestrator-2").len(), 4);
}
