//! Rollouts that protect (issue #11), end to end against the real binary: plugin targets side by
//! side up to `maxParallel`, prechecks that hold an action, health analysis through every wave's
//! soak (an HTTP endpoint served here on 127.0.0.1), and stages across policies. Time moves with
//! `--now`, never with sleeps.

mod common;

use std::time::Instant;

use common::Repo;

const T0: &str = "2026-11-21T10:00:00Z";

#[allow(dead_code)]
fn at(minutes: i64) -> String {
    let t0: jiff::Timestamp = T0.parse().unwrap();
    (t0 + jiff::SignedDuration::from_mins(minutes)).to_string()
}

fn policy(name: &str, body: &str) -> String {
    format!("apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: {name} }}\nspec:\n{body}")
}

fn target_with_vars(name: &str, component: &str, version: &str, labels: &str, vars: &str) -> String {
    format!(
        "{}  vars: {{ {vars} }}\n",
        common::target(name, component, version, labels)
    )
}

/// Regression (issue #11): 5 plugin targets with a 1 s deploy and `maxParallel: 5` took 5.3 s,
/// one target at a time. Each running step now gets a plugin process of its own.
#[test]
fn plugin_targets_deploy_side_by_side_up_to_max_parallel() {
    let repo = Repo::new();
    let plugin = std::fs::read_to_string(common::project_path("examples/plugins/gantry-executor-demo.py")).unwrap();
    repo.file("plugins/demo.py", &plugin);
    let state = repo.path().join("demo-state.json");
    repo.file(
        "gantry.toml",
        &format!(
            "[executors.demo]\ntype = \"plugin\"\ncommand = [\"plugins/demo.py\", \"--state\", \"{}\"]\n",
            state.display()
        ),
    );
    repo.file(
        "components/agent.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: agent }\nspec:\n  executor: demo\n  steps:\n    deploy: [\"deploy\", \"{{ target.name }}\"]\n",
    );
    repo.file("releases/agent.yaml", &common::release("agent", "1.0.0", ""));
    repo.file(
        "policies/fleet.yaml",
        &policy("fleet", "  rollout:\n    maxParallel: 5\n"),
    );
    for i in 0..5 {
        repo.file(
            &format!("targets/agent-{i}.yaml"),
            &target_with_vars(&format!("agent-{i}"), "agent", "1.0.0", "env: prod", "demo_delay: 1"),
        );
    }
    repo.commit_all("five plugin targets");
    let started = Instant::now();
    repo.gantry(&["apply", "--now", T0]).expect(0);
    let took = started.elapsed();
    eprintln!("5 plugin targets, 1 s deploys, maxParallel 5: apply took {took:?}");
    assert!(took.as_secs_f64() < 3.0, "deploys ran one after another: {took:?}");
    // Every copy of the plugin wrote to the shared state file without losing another's write.
    let deployed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    for i in 0..5 {
        assert_eq!(deployed[format!("agent-{i}")]["version"], "1.0.0", "{deployed}");
    }
}
