//! Quiesce around an attempt (issue #16): the real binary against a real temporary repository
//! whose steps append to a log. An upgrade runs `quiesce` first and `resume` last; a failing
//! deploy, a failing `quiesce` and a reconciler killed mid-deploy all end with `resume` after
//! the rollback; a rollback that fails does not resume and the record says the workflows stay
//! stopped; `quiesce` and `resume` are declared together or validation names the line.

mod common;

use common::{Repo, release, target};

/// `scripts/step.sh KIND ARG`: logs `KIND ARG`; fails when `fail-KIND-ARG` exists; kills
/// gantry (its parent) with SIGKILL when `kill-KIND-ARG` exists (once).
const STEP: &str = r#"#!/bin/sh
r="$GANTRY_REPO"
echo "$1 $2" >> "$r/run.log"
if [ -f "$r/kill-$1-$2" ]; then rm "$r/kill-$1-$2"; kill -9 "$PPID"; sleep 5; fi
[ -f "$r/fail-$1-$2" ] && exit 3
exit 0
"#;

const COMPONENT: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: app }\nspec:\n  steps:\n    deploy: [\"scripts/step.sh\", \"deploy\", \"{{ version }}\"]\n    quiesce: [\"scripts/step.sh\", \"quiesce\", \"{{ version }}\"]\n    resume: [\"scripts/step.sh\", \"resume\", \"{{ version }}\"]\n";

/// The policy, with `onInterrupt: ON_INTERRUPT`.
const POLICY: &str = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  autoRollback: true\n  onInterrupt: ON_INTERRUPT\n";

/// `app` 1.0.0 and 2.0.0 (with a reversible `pre` migration `m1`); `acme` installed at 1.0.0,
/// the log cleared; `onInterrupt: rollback`.
fn installed() -> Repo {
    installed_with("rollback")
}

/// `app` 1.0.0 and 2.0.0 (with a reversible `pre` migration `m1`), the step script, and
/// `acme` at 1.0.0 under `policy`, committed (not applied).
fn fleet(policy: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file("components/app.yaml", COMPONENT)
        .file(
            "releases/app.yaml",
            &format!(
                "{}---\n{}",
                release("app", "1.0.0", ""),
                release(
                    "app",
                    "2.0.0",
                    "  migrations:\n    - { id: m1, up: [scripts/step.sh, up, m1], down: [scripts/step.sh, down, m1] }\n"
                )
            ),
        )
        .file("policies/p.yaml", policy)
        .file("scripts/step.sh", STEP)
        .file("targets/acme.yaml", &target("acme", "app", "1.0.0", "env: prod"))
        .file(".gitignore", "*.log\nkill-*\nfail-*\n");
    repo.commit_all("fleet");
    repo
}

fn installed_with(on_interrupt: &str) -> Repo {
    let repo = fleet(&POLICY.replace("ON_INTERRUPT", on_interrupt));
    repo.gantry(&["apply"]).expect(0);
    // An install quiesces too (there is no version yet: `{{ version }}` is empty).
    assert_eq!(run_log(&repo), ["quiesce", "deploy 1.0.0", "resume 1.0.0"]);
    std::fs::remove_file(repo.path().join("run.log")).unwrap();
    repo.file("targets/acme.yaml", &target("acme", "app", "2.0.0", "env: prod"));
    repo.commit_all("acme to 2.0.0");
    repo
}

fn touch(repo: &Repo, name: &str) {
    std::fs::write(repo.path().join(name), "").unwrap();
}

fn run_log(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("run.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// `targets/acme.yaml` on the state branch.
fn record(repo: &Repo) -> String {
    let git = git2::Repository::open(repo.path()).unwrap();
    let tree = git
        .find_reference("refs/heads/gantry/state")
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .tree()
        .unwrap();
    let entry = tree.get_path(std::path::Path::new("targets/acme.yaml")).unwrap();
    String::from_utf8_lossy(git.find_blob(entry.id()).unwrap().content()).into_owned()
}

#[test]
fn an_upgrade_quiesces_first_and_resumes_last() {
    let repo = installed();
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        run_log(&repo),
        ["quiesce 1.0.0", "up m1", "deploy 2.0.0", "resume 2.0.0"]
    );
    assert!(record(&repo).contains("succeeded"), "{}", record(&repo));
}

/// The bug in issue #16: resume did not run after a rollback.
#[test]
fn a_failing_deploy_rolls_back_then_resumes() {
    let repo = installed();
    touch(&repo, "fail-deploy-2.0.0");
    let run = repo.gantry(&["apply"]).expect(2);
    assert_eq!(
        run_log(&repo),
        [
            "quiesce 1.0.0",
            "up m1",
            "deploy 2.0.0",
            "down m1",
            "deploy 1.0.0",
            "resume 1.0.0"
        ],
        "{}",
        run.stderr()
    );
    let record = record(&repo);
    assert!(record.contains("rolled_back"), "{record}");
    assert!(!record.contains("quiesced"), "{record}");
}

/// A failing `quiesce` may have stopped part of the workflows: nothing else runs, and the
/// rollback is `resume` alone.
#[test]
fn a_failing_quiesce_is_rolled_back_by_resume_alone() {
    let repo = installed();
    touch(&repo, "fail-quiesce-1.0.0");
    repo.gantry(&["apply"]).expect(2);
    assert_eq!(run_log(&repo), ["quiesce 1.0.0", "resume 1.0.0"]);
    let record = record(&repo);
    assert!(
        record.contains("rolled_back") && record.contains("version: \"1.0.0\""),
        "{record}"
    );
}

/// A rollback that fails leaves the target in no known state: `resume` does not run, and the
/// record says the workflows stay stopped.
#[test]
fn a_failed_rollback_does_not_resume_and_the_record_says_so() {
    let repo = installed();
    touch(&repo, "fail-deploy-2.0.0");
    touch(&repo, "fail-deploy-1.0.0");
    repo.gantry(&["apply"]).expect(2);
    assert_eq!(
        run_log(&repo),
        ["quiesce 1.0.0", "up m1", "deploy 2.0.0", "down m1", "deploy 1.0.0"]
    );
    let record = record(&repo);
    assert!(record.contains("failed"), "{record}");
    assert!(
        record.contains("quiesced: `resume` did not run to completion, so its workflows stay stopped"),
        "{record}"
    );
}

/// With `autoRollback: false` nothing is undone, `resume` included (the operator inspects a
/// target whose workflows are still stopped), and the record says so.
#[test]
fn without_auto_rollback_a_failure_leaves_the_workflows_stopped_and_says_so() {
    let repo = installed();
    repo.file(
        "policies/p.yaml",
        &POLICY
            .replace("ON_INTERRUPT", "rollback")
            .replace("autoRollback: true", "autoRollback: false"),
    );
    repo.commit_all("no auto rollback");
    touch(&repo, "fail-deploy-2.0.0");
    repo.gantry(&["apply"]).expect(2);
    assert_eq!(run_log(&repo), ["quiesce 1.0.0", "up m1", "deploy 2.0.0"]);
    let record = record(&repo);
    assert!(
        record.contains("(autoRollback is off)")
            && record.contains("quiesced: `resume` did not run to completion, so its workflows stay stopped"),
        "{record}"
    );
}

/// kill -9 of the reconciler during the deploy, `onInterrupt: rollback`: the next pass replays
/// the journal (quiesce completed), rolls back and still ends with `resume`.
#[test]
fn a_reconciler_killed_mid_deploy_rolls_back_and_resumes_on_the_next_pass() {
    let repo = installed();
    touch(&repo, "kill-deploy-2.0.0");
    let killed = repo.gantry(&["apply"]);
    assert_ne!(killed.code(), 0, "gantry was not killed: {}", killed.stderr());
    assert_eq!(run_log(&repo), ["quiesce 1.0.0", "up m1", "deploy 2.0.0"]);
    repo.gantry(&["apply"]);
    assert_eq!(
        run_log(&repo),
        [
            "quiesce 1.0.0",
            "up m1",
            "deploy 2.0.0",
            "down m1",
            "deploy 1.0.0",
            "resume 1.0.0"
        ]
    );
    assert!(record(&repo).contains("rolled_back"), "{}", record(&repo));
}

/// kill -9 during the deploy, `onInterrupt: resume`: the next pass runs the deploy again and
/// the rest of the program, `resume` last (the journal knows `quiesce` already ran: it does not
/// run twice).
#[test]
fn a_reconciler_killed_mid_deploy_resumes_the_attempt_and_then_the_workflows() {
    let repo = installed_with("resume");
    touch(&repo, "kill-deploy-2.0.0");
    let killed = repo.gantry(&["apply"]);
    assert_ne!(killed.code(), 0, "gantry was not killed: {}", killed.stderr());
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        run_log(&repo),
        ["quiesce 1.0.0", "up m1", "deploy 2.0.0", "deploy 2.0.0", "resume 2.0.0"]
    );
    assert!(record(&repo).contains("succeeded"), "{}", record(&repo));
}

/// One without the other is a violation naming the file and line of the step it has.
#[test]
fn quiesce_and_resume_are_declared_together() {
    for (kept, missing) in [("quiesce", "resume"), ("resume", "quiesce")] {
        let repo = installed();
        let component: String = COMPONENT
            .lines()
            .filter(|l| !l.trim_start().starts_with(&format!("{missing}:")))
            .map(|l| format!("{l}\n"))
            .collect();
        repo.file("components/app.yaml", &component);
        repo.commit_all(&format!("no {missing}"));
        let run = repo.gantry(&["validate"]).expect(2);
        let out = format!("{}{}", run.stdout(), run.stderr());
        let line = component
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{kept}:")))
            .unwrap()
            + 1;
        assert!(
            out.contains(&format!("components/app.yaml:{line}")),
            "{kept} at {line}: {out}"
        );
        assert!(
            out.contains(&format!("has a `{kept}` step and no `{missing}` step")),
            "{out}"
        );
    }
}

/// A wave analysis failing during the soak rolls back an upgrade that completed (and resumed
/// the workflows): the rollback stops them again first and starts them last (issue #16,
/// "quiesce around every attempt"; it ran without `quiesce` before).
#[test]
fn an_analysis_rollback_after_the_soak_began_quiesces_first_and_resumes_last() {
    let at = |minutes: i64| {
        jiff::Timestamp::from_second(1_795_000_000 + minutes * 60)
            .unwrap()
            .to_string()
    };
    let repo = fleet(
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  autoRollback: true\n  rollout:\n    waves:\n      - { name: canary, selector: { env: prod }, soak: 10m }\n  health:\n    checks:\n      - { name: probe, type: command, argv: [\"scripts/step.sh\", \"probe\", \"{{ version }}\"] }\n    interval: 1m\n    failureThreshold: 1\n",
    );
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "app", "2.0.0", "env: prod"));
    repo.commit_all("acme to 2.0.0");
    std::fs::remove_file(repo.path().join("run.log")).unwrap();
    repo.gantry(&["apply", "--now", &at(60)]).expect(0);
    let changes =
        |repo: &Repo| -> Vec<String> { run_log(repo).into_iter().filter(|l| !l.starts_with("probe")).collect() };
    assert_eq!(
        changes(&repo),
        ["quiesce 1.0.0", "up m1", "deploy 2.0.0", "resume 2.0.0"]
    );

    // Two minutes into the 10-minute soak the probe of 2.0.0 fails: the completed upgrade is
    // undone (and 1.0.0's health passes).
    touch(&repo, "fail-probe-2.0.0");
    std::fs::remove_file(repo.path().join("run.log")).unwrap();
    repo.gantry(&["apply", "--now", &at(62)]).expect(2);
    assert_eq!(
        changes(&repo),
        ["quiesce 2.0.0", "down m1", "deploy 1.0.0", "resume 1.0.0"],
        "stopped first, started last"
    );
    let record = record(&repo);
    assert!(
        record.contains("status: rolled_back") && record.contains("version: \"1.0.0\""),
        "{record}"
    );
}
