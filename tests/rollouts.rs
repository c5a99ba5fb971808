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

/// Two targets of `api` at 1.0.0 with a precheck that fails while `disk-full` exists.
fn precheck_repo() -> Repo {
    let repo = Repo::new();
    repo.file(
        "components/api.yaml",
        &common::component(
            "api",
            "    precheck: [\"scripts/precheck.sh\", \"{{ target.name }}\", \"{{ version }}\"]\n",
        ),
    );
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"deploy $1 $2\" >> \"$GANTRY_REPO/steps.log\"\n",
    );
    repo.file(
        "scripts/precheck.sh",
        "#!/bin/sh\necho \"precheck $1 $2\" >> \"$GANTRY_REPO/steps.log\"\nif [ -f \"$GANTRY_REPO/disk-full-$1\" ]; then\n  echo checking /var\n  echo \"only 2 GB free on /var, $2 needs 10 GB\"\n  exit 1\nfi\n",
    );
    repo.file(
        "releases/api.yaml",
        &format!(
            "{}---\n{}",
            common::release("api", "1.0.0", ""),
            common::release("api", "1.1.0", "")
        ),
    );
    for name in ["api-a", "api-b"] {
        repo.file(
            &format!("targets/{name}.yaml"),
            &common::target(name, "api", "1.0.0", "env: prod"),
        );
    }
    repo.commit_all("api at 1.0.0");
    repo
}

fn log(repo: &Repo, name: &str) -> String {
    std::fs::read_to_string(repo.path().join(name)).unwrap_or_default()
}

fn bump(repo: &Repo, targets: &[&str], from: &str, to: &str) {
    for name in targets {
        let path = repo.path().join(format!("targets/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace(&format!("version: \"{from}\""), &format!("version: \"{to}\"")),
        )
        .unwrap();
    }
    repo.commit_all(&format!("{} {to}", targets.join(", ")));
}

fn status(repo: &Repo, now: &str) -> serde_json::Value {
    let out = repo
        .gantry(&["status", "--now", now, "--format", "json"])
        .expect(0)
        .stdout();
    serde_json::from_str(&out).unwrap()
}

fn row<'a>(status: &'a serde_json::Value, target: &str) -> &'a serde_json::Value {
    status["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no {target} in {status}"))
}

/// A failing precheck holds the upgrade with the precheck's own words, changes nothing (no
/// deploy, no rollback, no outcome recorded), and the next pass tries again.
#[test]
fn a_failing_precheck_holds_the_action_with_its_message_and_the_next_pass_retries() {
    let repo = precheck_repo();
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    std::fs::remove_file(repo.path().join("steps.log")).unwrap();
    repo.file("disk-full-api-a", "");
    bump(&repo, &["api-a", "api-b"], "1.0.0", "1.1.0");

    let run = repo.gantry(&["apply", "--now", &at(1)]).expect(0);
    assert!(
        run.stderr().contains("held: api-a: precheck failed: ")
            && run
                .stderr()
                .contains("checking /var / only 2 GB free on /var, 1.1.0 needs 10 GB"),
        "{}",
        run.stderr()
    );
    let steps = log(&repo, "steps.log");
    assert!(
        !steps.contains("deploy api-a"),
        "nothing ran on the held target:\n{steps}"
    );
    assert!(
        steps.contains("deploy api-b 1.1.0"),
        "the other target went on:\n{steps}"
    );
    let s = status(&repo, &at(1));
    assert_eq!(row(&s, "api-a")["current"], "1.0.0");
    assert_eq!(
        row(&s, "api-a")["status"],
        "converged",
        "no failure, no rollback recorded"
    );
    assert_eq!(
        row(&s, "api-a")["plan_status"],
        "ready",
        "held, not halted: retried next pass"
    );

    // Still failing: held again, with JSON for machines.
    let run = repo.gantry(&["apply", "--now", &at(2), "--format", "json"]).expect(0);
    let last: serde_json::Value = serde_json::from_str(run.stdout().lines().last().unwrap()).unwrap();
    assert_eq!(last["held"][0]["target"], "api-a", "{last}");
    assert!(run.stdout().contains("\"event\":\"held\""), "{}", run.stdout());

    // The condition clears: the next pass upgrades it.
    std::fs::remove_file(repo.path().join("disk-full-api-a")).unwrap();
    repo.gantry(&["apply", "--now", &at(3)]).expect(0);
    assert!(log(&repo, "steps.log").contains("deploy api-a 1.1.0"));
    assert_eq!(row(&status(&repo, &at(3)), "api-a")["current"], "1.1.0");
}
