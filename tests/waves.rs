//! Staged rollouts end to end: 10 targets, waves canary (selector) → 50% → 100% with 30 min
//! soaks, advanced with `--now` through every stage of real `apply` passes; and a failing canary
//! halting the rollout with nothing else upgraded.

mod common;

use std::collections::BTreeSet;

use common::Repo;

const T0: &str = "2026-11-21T10:00:00Z";

fn fleet() -> Repo {
    let repo = Repo::new();
    repo.file(
        "components/api.yaml",
        &common::component(
            "api",
            "    health: [\"scripts/health.sh\", \"{{ target.name }}\", \"{{ version }}\"]\n",
        ),
    );
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploys.log\"\n",
    );
    repo.file(
        "scripts/health.sh",
        "#!/bin/sh\ntest ! -f \"$GANTRY_REPO/unhealthy-$1-$2\"\n",
    );
    repo.file(
        "releases/api.yaml",
        &format!(
            "{}---\n{}",
            common::release("api", "1.0.0", ""),
            common::release("api", "1.1.0", "")
        ),
    );
    repo.file(
        "policies/staged.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 30m }\n      - { name: half, percent: 50, soak: 30m }\n      - { name: all, percent: 100 }\n    maxParallel: 3\n",
    );
    for i in 0..10 {
        let ring = if i == 0 { "0" } else { "1" };
        repo.file(
            &format!("targets/api-{i}.yaml"),
            &common::target(&format!("api-{i}"), "api", "1.0.0", &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all("fleet at 1.0.0");
    repo
}

fn bump(repo: &Repo) {
    for i in 0..10 {
        let path = repo.path().join(format!("targets/api-{i}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("version: \"1.0.0\"", "version: \"1.1.0\"")).unwrap();
    }
    repo.commit_all("api 1.1.0");
}

/// Targets deployed to 1.1.0 so far.
fn upgraded(repo: &Repo) -> BTreeSet<String> {
    std::fs::read_to_string(repo.path().join("deploys.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_suffix(" 1.1.0").map(str::to_string))
        .collect()
}

fn at(minutes: i64) -> String {
    let t0: jiff::Timestamp = T0.parse().unwrap();
    (t0 + jiff::SignedDuration::from_mins(minutes)).to_string()
}

#[test]
fn waves_advance_through_every_stage_with_their_soaks() {
    let repo = fleet();
    repo.gantry(&["apply", "--now", &at(-60)]).expect(0);
    bump(&repo);

    // Stage 1: only the canary (ring 0) goes.
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(upgraded(&repo), BTreeSet::from(["api-0".to_string()]));
    let plan = repo
        .gantry(&["plan", "--now", &at(0), "--format", "json"])
        .expect(0)
        .stdout();
    assert!(
        plan.contains("\"kind\": \"wave\""),
        "the others wait for the canary's soak:\n{plan}"
    );

    // The canary soaks for 30 minutes: a minute before its end, nothing new starts.
    repo.gantry(&["apply", "--now", &at(29)]).expect(0);
    assert_eq!(upgraded(&repo).len(), 1);

    // Stage 2: after the soak, the 50% wave brings the rollout to ceil(50% of 10) = 5 targets.
    repo.gantry(&["apply", "--now", &at(31)]).expect(0);
    let half = upgraded(&repo);
    assert_eq!(half.len(), 5, "{half:?}");
    assert!(half.contains("api-0"));

    // That wave soaks too.
    repo.gantry(&["apply", "--now", &at(60)]).expect(0);
    assert_eq!(upgraded(&repo).len(), 5);

    // Stage 3: everyone.
    repo.gantry(&["apply", "--now", &at(62)]).expect(0);
    assert_eq!(upgraded(&repo).len(), 10);
    let status = repo
        .gantry(&["status", "--now", &at(62), "--format", "json"])
        .expect(0)
        .stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["current"] == "1.1.0" && t["status"] == "converged")
    );
    // The rollout's record on the state branch has every wave with its completion time.
    let shown = std::process::Command::new("git")
        .current_dir(repo.path())
        .args(["show", "gantry/state:rollouts/api@1.1.0.yaml"])
        .output()
        .unwrap();
    let rollout = String::from_utf8_lossy(&shown.stdout);
    for wave in ["canary", "half", "all"] {
        assert!(rollout.contains(&format!("name: {wave}")), "{rollout}");
    }
    assert_eq!(rollout.matches("completed:").count(), 3, "{rollout}");
}

#[test]
fn a_failing_canary_halts_the_rollout_and_nothing_else_is_upgraded() {
    let repo = fleet();
    repo.gantry(&["apply", "--now", &at(-60)]).expect(0);
    repo.file("unhealthy-api-0-1.1.0", "");
    bump(&repo);
    repo.gantry(&["apply", "--now", &at(0)]).expect(2);
    assert_eq!(
        upgraded(&repo),
        BTreeSet::from(["api-0".to_string()]),
        "only the canary was tried"
    );
    // Long after any soak, the rollout stays halted: nothing else goes.
    repo.gantry(&["apply", "--now", &at(600)]).expect(0);
    assert_eq!(upgraded(&repo).len(), 1);
    let plan = repo
        .gantry(&["plan", "--now", &at(600), "--format", "json"])
        .expect(0)
        .stdout();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    for action in plan["actions"].as_array().unwrap() {
        let kinds: Vec<&str> = action["blocked_by"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"halted"), "{action}");
    }
}

/// A failure halts its rollout before anything else of the same wave starts, though the rest of
/// the wave is already queued in the same pass (`maxParallel: 1`, `maxFailures: 0`, one wave).
#[test]
fn a_failure_halts_its_rollout_before_the_rest_of_its_wave_starts() {
    let repo = fleet();
    repo.file(
        "policies/staged.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  rollout:\n    maxParallel: 1\n    maxFailures: 0\n",
    );
    repo.commit_all("one wave, one at a time");
    repo.gantry(&["apply", "--now", &at(-60)]).expect(0);
    // Whichever target goes first fails its health check.
    for i in 0..10 {
        repo.file(&format!("unhealthy-api-{i}-1.1.0"), "");
    }
    bump(&repo);
    repo.gantry(&["apply", "--now", &at(0)]).expect(2);
    assert_eq!(
        upgraded(&repo).len(),
        1,
        "more than one target ran 1.1.0: {:?}",
        upgraded(&repo)
    );
    let git = git2::Repository::open(repo.path()).unwrap();
    let tree = git.revparse_single("gantry/state").unwrap().peel_to_tree().unwrap();
    let blob = tree
        .get_path(std::path::Path::new("rollouts/api@1.1.0.yaml"))
        .unwrap()
        .to_object(&git)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    let rollout = String::from_utf8_lossy(blob.content());
    assert!(rollout.contains("halted:"), "{rollout}");
}
