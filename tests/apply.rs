//! `gantry apply` end to end: real repositories, real shell scripts, real state branch.

mod common;

use std::process::Command;

use common::Repo;
use gantry::state::{Outcome, TargetRecord, TargetStatus};

const NOW: &str = "2026-11-21T10:00:00Z";

/// The `steps` fixture: billing 1.0.0 … 2.0.0 where 1.0.0 → 2.0.0 stops at 1.2.0 and 1.3.0.
fn steps_repo() -> Repo {
    Repo::from_dir("fixtures/good/steps")
}

fn set_version(repo: &Repo, version: &str) {
    let text = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("version:"))
        .unwrap()
        .to_string();
    repo.file(
        "targets/acme.yaml",
        &text.replace(&line, &format!("  version: {version}")),
    );
}

fn steps_log(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("steps.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn clear_log(repo: &Repo) {
    let _ = std::fs::remove_file(repo.path().join("steps.log"));
}

fn state_file(repo: &Repo, path: &str) -> String {
    let out = Command::new("git")
        .current_dir(repo.path())
        .args(["show", &format!("gantry/state:{path}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The recorded state of acme-billing, parsed with gantry's own record type.
fn record(repo: &Repo) -> TargetRecord {
    serde_saphyr::from_str(&state_file(repo, "targets/acme-billing.yaml")).expect("a valid target record")
}

fn version(v: &str) -> Option<gantry::manifest::Version> {
    Some(gantry::manifest::Version::parse(v).unwrap())
}

/// Installs 1.0.0 and commits the bump to 2.0.0; the steps log starts empty.
fn installed_then_bumped() -> Repo {
    let repo = steps_repo();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(
        steps_log(&repo),
        ["deploy 1.0.0 acme-billing", "health 1.0.0 acme-billing"]
    );
    clear_log(&repo);
    set_version(&repo, "2.0.0");
    repo.commit_all("Upgrade billing to 2.0.0");
    repo
}

const UPGRADE_STEPS: [&str; 10] = [
    "up m1",
    "up m2",
    "deploy 1.2.0 acme-billing",
    "health 1.2.0 acme-billing",
    "deploy 1.3.0 acme-billing",
    "health 1.3.0 acme-billing",
    "up m3",
    "up m4",
    "deploy 2.0.0 acme-billing",
    "health 2.0.0 acme-billing",
];

#[test]
fn plan_from_recorded_state_shows_stops_and_migrations_in_order() {
    let repo = installed_then_bumped();
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let action = &plan["actions"][0];
    assert_eq!(action["action"], "upgrade");
    assert_eq!(action["from"], "1.0.0");
    assert_eq!(action["stops"], serde_json::json!(["1.2.0", "1.3.0", "2.0.0"]));
    let migrations: Vec<String> = action["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {} {} {}",
                m["id"].as_str().unwrap(),
                m["phase"].as_str().unwrap(),
                m["direction"].as_str().unwrap(),
                m["stop"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        migrations,
        [
            "m1 pre up 1.2.0",
            "m2 pre up 1.2.0",
            "m3 post up 1.3.0",
            "m4 pre up 2.0.0"
        ]
    );
    insta::assert_snapshot!(
        "upgrade_plan_text",
        repo.gantry(&["plan", "--now", NOW]).expect(0).stdout()
    );
}

#[test]
fn multi_hop_upgrade_runs_stops_migrations_and_health_in_order() {
    let repo = installed_then_bumped();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps_log(&repo), UPGRADE_STEPS);
    let record = record(&repo);
    assert_eq!(record.version, version("2.0.0"));
    assert_eq!(record.status, TargetStatus::Converged);
    assert_eq!(record.rollback_points, [gantry::manifest::Version::new(1, 0, 0)]);
    let applied: Vec<&str> = record.applied_migrations.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(applied, ["m1", "m2", "m3", "m4"]);
    let history = repo.gantry(&["history", "--format", "json"]).expect(0);
    let entries: serde_json::Value = serde_json::from_str(&history.stdout()).unwrap();
    assert_eq!(entries[0]["outcome"], "succeeded");
    assert_eq!(entries[0]["from"], "1.0.0");
    assert_eq!(entries[0]["to"], "2.0.0");
    // A second pass has nothing to do.
    clear_log(&repo);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert!(steps_log(&repo).is_empty());
}

#[test]
fn git_revert_of_a_bump_downgrades_with_downs_newest_first() {
    let repo = installed_then_bumped();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    clear_log(&repo);
    let revert = Command::new("git")
        .current_dir(repo.path())
        .args([
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "revert",
            "--no-edit",
            "HEAD",
        ])
        .output()
        .unwrap();
    assert!(revert.status.success(), "{}", String::from_utf8_lossy(&revert.stderr));
    let plan = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    assert!(plan.stdout().contains("\"action\": \"downgrade\""), "{}", plan.stdout());
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(
        steps_log(&repo),
        [
            "down m4",
            "down m3",
            "down m2",
            "down m1",
            "deploy 1.0.0 acme-billing",
            "health 1.0.0 acme-billing"
        ]
    );
    let record = record(&repo);
    assert_eq!(record.version, version("1.0.0"));
    assert!(record.applied_migrations.is_empty(), "{record:?}");
}

#[test]
fn failed_health_check_rolls_back_and_the_state_says_so() {
    let repo = installed_then_bumped();
    repo.file("fail-health-2.0.0", "");
    let run = repo.gantry(&["apply", "--now", NOW]).expect(2);
    let mut expected: Vec<&str> = UPGRADE_STEPS[..9].to_vec();
    expected.extend([
        "down m4",
        "down m3",
        "down m2",
        "down m1",
        "deploy 1.0.0 acme-billing",
        "health 1.0.0 acme-billing",
    ]);
    assert_eq!(steps_log(&repo), expected, "{}", run.stderr());
    let record = record(&repo);
    assert_eq!(record.status, TargetStatus::RolledBack);
    assert_eq!(record.version, version("1.0.0"));
    assert!(
        record.applied_migrations.is_empty(),
        "every migration of the attempt was undone"
    );
    let last = record.last_attempt.unwrap();
    assert_eq!(last.outcome, Some(Outcome::RolledBack));
    assert!(last.message.contains("step 10-health-2.0.0 failed"), "{}", last.message);
    // The rollout halts: the next pass does not try 2.0.0 again.
    clear_log(&repo);
    let status = repo.gantry(&["status", "--now", NOW, "--format", "json"]).expect(0);
    assert!(status.stdout().contains("\"kind\": \"halted\""), "{}", status.stdout());
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert!(steps_log(&repo).is_empty());
}

#[test]
fn kill_9_at_every_step_boundary_then_apply_never_reruns_a_completed_step() {
    for boundary in 1..=UPGRADE_STEPS.len() {
        let repo = installed_then_bumped();
        // The `boundary`-th step kills gantry as it starts: steps before it completed.
        repo.file("kill-at", &boundary.to_string());
        let killed = repo.gantry(&["apply", "--now", NOW]);
        assert_ne!(killed.code(), 0, "boundary {boundary}: the pass must have been killed");
        assert_eq!(
            steps_log(&repo),
            UPGRADE_STEPS[..boundary - 1],
            "boundary {boundary}: before the crash"
        );
        let status = repo.gantry(&["status", "--now", NOW, "--format", "json"]).expect(0);
        assert!(
            status.stdout().contains("\"status\": \"in_progress\""),
            "boundary {boundary}: {}",
            status.stdout()
        );
        let resumed = repo.gantry(&["apply", "--now", NOW]).expect(0);
        assert!(
            resumed.stderr().contains("1 resumed after an interruption"),
            "boundary {boundary}: {}",
            resumed.stderr()
        );
        assert_eq!(
            steps_log(&repo),
            UPGRADE_STEPS,
            "boundary {boundary}: every step exactly once, in order"
        );
        let record = record(&repo);
        assert_eq!(
            (record.version, record.status),
            (version("2.0.0"), TargetStatus::Converged),
            "boundary {boundary}"
        );
    }
}

#[test]
fn on_interrupt_rollback_rolls_the_interrupted_attempt_back() {
    let repo = steps_repo();
    repo.file(
        "policies/default.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: default }\nspec:\n  onInterrupt: rollback\n",
    );
    repo.commit_all("rollback on interrupt");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    clear_log(&repo);
    set_version(&repo, "2.0.0");
    repo.commit_all("bump");
    repo.file("kill-at", "4"); // dies as health 1.2.0 starts: m1, m2, deploy 1.2.0 done
    assert_ne!(repo.gantry(&["apply", "--now", NOW]).code(), 0);
    repo.gantry(&["apply", "--now", NOW]).expect(2);
    assert_eq!(
        steps_log(&repo),
        [
            "up m1",
            "up m2",
            "deploy 1.2.0 acme-billing",
            "down m2",
            "down m1",
            "deploy 1.0.0 acme-billing",
            "health 1.0.0 acme-billing"
        ]
    );
    assert_eq!(record(&repo).status, TargetStatus::RolledBack);
}

#[test]
fn a_second_reconciler_exits_3_naming_the_holder() {
    let repo = steps_repo();
    repo.file(
        "scripts/slow.sh",
        "#!/bin/sh\ntouch \"$GANTRY_REPO/started\"\nsleep 3\n",
    );
    let component = std::fs::read_to_string(repo.path().join("components/billing.yaml")).unwrap();
    repo.file(
        "components/billing.yaml",
        &component.replace("deploy: [\"scripts/step.sh\"", "deploy: [\"scripts/slow.sh\""),
    );
    repo.commit_all("slow deploy");
    let mut first = Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .args(["--repo", repo.path().to_str().unwrap(), "apply", "--now", NOW])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = repo.path().join("started");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first apply never started its step"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = repo.gantry(&["apply", "--now", NOW]).expect(3);
    assert!(
        second
            .stderr()
            .contains(&format!("another gantry (pid {}, since ", first.id())),
        "{}",
        second.stderr()
    );
    assert!(first.wait().unwrap().success());
    // The lock is free again.
    repo.gantry(&["apply", "--now", NOW]).expect(0);
}

#[test]
fn artifact_checksum_mismatch_runs_nothing() {
    let repo = steps_repo();
    repo.file("artifacts/billing-1.0.0.tar", "the real artifact\n");
    let releases = std::fs::read_to_string(repo.path().join("releases/billing.yaml")).unwrap();
    repo.file(
        "releases/billing.yaml",
        &releases.replace(
            "spec: { component: billing, version: 1.0.0 }",
            &format!("spec:\n  component: billing\n  version: 1.0.0\n  artifacts:\n    - {{ path: artifacts/billing-1.0.0.tar, sha256: \"{}\" }}", "ab".repeat(32)),
        ),
    );
    repo.commit_all("artifact with a wrong digest");
    let run = repo.gantry(&["apply", "--now", NOW]).expect(2);
    assert!(steps_log(&repo).is_empty(), "nothing may run: {:?}", steps_log(&repo));
    assert!(
        run.stderr()
            .contains("artifact artifacts/billing-1.0.0.tar of billing 1.0.0: sha256 is"),
        "{}",
        run.stderr()
    );
    let record = record(&repo);
    assert_eq!((record.status, record.version), (TargetStatus::Failed, None));
}

#[test]
fn hostile_manifest_values_reach_the_script_as_one_literal_argument() {
    let repo = steps_repo();
    repo.file(
        "scripts/args.sh",
        "#!/bin/sh\nprintf '%s\\n' \"$#\" \"$@\" > \"$GANTRY_REPO/args.txt\"\n",
    );
    let component = std::fs::read_to_string(repo.path().join("components/billing.yaml")).unwrap();
    repo.file(
        "components/billing.yaml",
        &component.replace(
            "deploy: [\"scripts/step.sh\", \"deploy\", \"{{ version }}\", \"{{ target.name }}\"]",
            "deploy: [\"scripts/args.sh\", \"{{ target.vars.note }}\"]",
        ),
    );
    let target = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    repo.file(
        "targets/acme.yaml",
        &format!("{target}  vars: {{ note: \"x; touch PWNED; $(touch PWNED2) `touch PWNED3`\" }}\n"),
    );
    repo.commit_all("hostile var");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let args = std::fs::read_to_string(repo.path().join("args.txt")).unwrap();
    assert_eq!(args, "1\nx; touch PWNED; $(touch PWNED2) `touch PWNED3`\n");
    for name in ["PWNED", "PWNED2", "PWNED3"] {
        let found = walk(repo.path())
            .into_iter()
            .any(|p| p.file_name().is_some_and(|n| n == name));
        assert!(!found, "{name} was created: a value reached a shell");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn plugin_executor_deploys_through_the_json_lines_protocol() {
    let repo = steps_repo();
    let plugin = std::fs::read_to_string(common::project_path("examples/plugins/gantry-executor-demo.py")).unwrap();
    repo.file("plugins/demo.py", &plugin);
    repo.file(
        "gantry.toml",
        "[executors.demo]\ntype = \"plugin\"\ncommand = [\"plugins/demo.py\"]\n",
    );
    let component = std::fs::read_to_string(repo.path().join("components/billing.yaml")).unwrap();
    repo.file(
        "components/billing.yaml",
        &component.replace("spec:\n", "spec:\n  executor: demo\n"),
    );
    repo.commit_all("plugin executor");
    let run = repo.gantry(&["apply", "--now", NOW, "--format", "json"]).expect(0);
    assert!(run.stdout().contains("\"outcome\":\"succeeded\""), "{}", run.stdout());
    // The plugin, not the script, did the work.
    assert!(steps_log(&repo).is_empty());
}

#[test]
fn rollback_commits_the_previous_version_for_review() {
    let repo = installed_then_bumped();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let run = repo
        .gantry(&["rollback", "acme-billing", "--branch", "rollback-acme"])
        .expect(0);
    assert!(
        run.stdout()
            .contains("on new branch rollback-acme: pin acme-billing to 1.0.0"),
        "{}",
        run.stdout()
    );
    let shown = Command::new("git")
        .current_dir(repo.path())
        .args(["show", "rollback-acme:targets/acme.yaml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("  version: 1.0.0"));
    let plan = repo
        .gantry(&["plan", "--now", NOW, "--head", "rollback-acme", "--format", "json"])
        .expect(0);
    assert!(plan.stdout().contains("\"action\": \"downgrade\""), "{}", plan.stdout());
    // A version that is neither a rollback point nor a release is refused.
    let bad = repo.gantry(&["rollback", "acme-billing", "--to", "9.9.9"]).expect(1);
    assert!(
        bad.stderr().contains("9.9.9 is neither a recorded rollback point"),
        "{}",
        bad.stderr()
    );
}

#[test]
fn dry_run_runs_and_records_nothing() {
    let repo = steps_repo();
    let run = repo.gantry(&["apply", "--now", NOW, "--dry-run"]).expect(0);
    assert!(
        run.stdout().contains("acme-billing: install (none) → 1.0.0"),
        "{}",
        run.stdout()
    );
    assert!(steps_log(&repo).is_empty());
    assert!(repo.git.find_reference("refs/heads/gantry/state").is_err());
}

/// Issue #15: `gantry rollback` committed as the git-config user, ignoring GIT_AUTHOR_* and
/// GIT_COMMITTER_*, took no `--reason`, and `history` said nothing of who asked or why. The
/// rollback commit now names its operator and reason in trailers, and the history of the
/// downgrade it causes shows them with the desired commit's author and committer.
#[test]
fn rollback_honours_git_identity_variables_and_history_shows_operator_and_reason() {
    let repo = installed_then_bumped();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let run = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--repo")
        .arg(repo.path())
        .args([
            "rollback",
            "acme-billing",
            "--reason",
            "p99 latency doubled after 2.0.0",
        ])
        .env("GIT_AUTHOR_NAME", "Oona Operator")
        .env("GIT_AUTHOR_EMAIL", "oona@example.com")
        .env("GIT_AUTHOR_DATE", "@1790000000 +0100")
        .env("GIT_COMMITTER_NAME", "Cy Committer")
        .env("GIT_COMMITTER_EMAIL", "cy@example.com")
        .env("GIT_COMMITTER_DATE", "2026-11-21T10:05:00Z")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let head = repo
        .git
        .find_branch("main", git2::BranchType::Local)
        .unwrap()
        .get()
        .peel_to_commit()
        .unwrap();
    assert_eq!(head.author().name().unwrap(), ("Oona Operator"));
    assert_eq!(head.author().email().unwrap(), ("oona@example.com"));
    assert_eq!(
        (head.author().when().seconds(), head.author().when().offset_minutes()),
        (1_790_000_000, 60)
    );
    assert_eq!(head.committer().name().unwrap(), ("Cy Committer"));
    assert_eq!(head.committer().when().seconds(), 1_795_255_500);
    let message = head.message().unwrap();
    assert!(
        message.ends_with(
            "\n\nGantry-Operator: Oona Operator <oona@example.com>\nGantry-Reason: p99 latency doubled after 2.0.0\n"
        ),
        "{message}"
    );

    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let json = repo
        .gantry(&["history", "acme-billing", "--format", "json"])
        .expect(0)
        .stdout();
    let history: serde_json::Value = serde_json::from_str(&json).unwrap();
    let newest = &history[0];
    assert_eq!(newest["from"], "2.0.0", "{newest}");
    assert_eq!(newest["to"], "1.0.0");
    assert_eq!(newest["desired_commit"], head.id().to_string());
    assert_eq!(newest["author"], "Oona Operator <oona@example.com>");
    assert_eq!(newest["committer"], "Cy Committer <cy@example.com>");
    assert_eq!(newest["operator"], "Oona Operator <oona@example.com>");
    assert_eq!(newest["reason"], "p99 latency doubled after 2.0.0");
    // The upgrade before it was not a rollback: no operator, no reason, but its author.
    assert_eq!(history[1]["reason"], serde_json::Value::Null, "{}", history[1]);
    assert_eq!(history[1]["author"], "Test <test@example.com>");
    let csv = repo
        .gantry(&["history", "acme-billing", "--format", "csv"])
        .expect(0)
        .stdout();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .contains(",author,committer,operator,reason,"),
        "{csv}"
    );
    assert!(
        csv.contains(",Oona Operator <oona@example.com>,p99 latency doubled after 2.0.0"),
        "{csv}"
    );
    let text = repo.gantry(&["history", "acme-billing"]).expect(0).stdout();
    assert!(
        text.contains(" · by Oona Operator <oona@example.com> · reason: p99 latency doubled after 2.0.0"),
        "{text}"
    );

    // A reason must be one line: it becomes a trailer.
    let bad = repo
        .gantry(&["rollback", "acme-billing", "--reason", "two\nlines"])
        .expect(1);
    assert!(
        bad.stderr().contains("--reason must be one non-empty line"),
        "{}",
        bad.stderr()
    );
    let bad_date = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--repo")
        .arg(repo.path())
        .args(["rollback", "acme-billing", "--to", "2.0.0"])
        .env("GIT_AUTHOR_DATE", "next tuesday")
        .output()
        .unwrap();
    assert!(!bad_date.status.success());
    assert!(
        String::from_utf8_lossy(&bad_date.stderr).contains("GIT_AUTHOR_DATE=`next tuesday`"),
        "{}",
        String::from_utf8_lossy(&bad_date.stderr)
    );
}

/// `{{ commit }}` and `GANTRY_COMMIT` name the desired commit a step applies (issue #16), so a
/// deploy can label what it ships with the revision that asked for it; `validate` accepts the
/// variable (it is one of the template variables of every step). `{{ release }}` is defined on
/// every step with a version, and maps render as JSON.
#[test]
fn steps_see_the_desired_commit_as_a_template_variable_and_in_their_environment() {
    let repo = steps_repo();
    let component = std::fs::read_to_string(repo.path().join("components/billing.yaml")).unwrap();
    repo.file(
        "components/billing.yaml",
        &component.replace(
            r#"deploy: ["scripts/step.sh", "deploy", "{{ version }}", "{{ target.name }}"]"#,
            // The rendered values are positional arguments (no template text reaches the shell).
            r#"deploy: ["sh", "-c", "printf '%s\n' \"$@\" \"env=$GANTRY_COMMIT\" >> \"$GANTRY_REPO/commit.log\"", "sh", "commit={{ commit }}", "release={{ release }}", "labels={{ target.labels }}"]"#,
        ),
    );
    let head = repo.commit_all("deploys log their commit");
    repo.gantry(&["validate"]).expect(0);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let log = std::fs::read_to_string(repo.path().join("commit.log")).unwrap();
    // `release` is defined on a deploy too (it named nothing but migrations' releases, so a deploy
    // template using it failed at apply), and a map renders as JSON.
    assert_eq!(
        log,
        format!("commit={head}\nrelease=billing-1.0.0\nlabels={{\"env\":\"prod\",\"tenant\":\"acme\"}}\nenv={head}\n")
    );
}

/// Regression (issue #16): the rollback commit left the checked-out branch's work tree and index
/// with the old file, so the next `git commit -a` silently undid the rollback. With a clean
/// checkout the file is updated in both; with a modified one the rollback is refused, nothing is
/// committed, and `--branch` still works.
#[test]
fn rollback_updates_a_clean_checkout_and_refuses_a_modified_one() {
    let repo = installed_then_bumped();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let git_status = |repo: &Repo| {
        let out = Command::new("git")
            .current_dir(repo.path())
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(git_status(&repo), "", "the test starts from a clean checkout");

    // A modified target file: refused, naming it; the branch does not move.
    let tip = repo.git.refname_to_id("refs/heads/main").unwrap();
    let text = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    std::fs::write(repo.path().join("targets/acme.yaml"), format!("{text}# my edit\n")).unwrap();
    let refused = repo.gantry(&["rollback", "acme-billing"]).expect(1);
    assert!(
        refused
            .stderr()
            .contains("targets/acme.yaml has changes in the checked-out work tree or index"),
        "{}",
        refused.stderr()
    );
    assert_eq!(repo.git.refname_to_id("refs/heads/main").unwrap(), tip);
    repo.gantry(&["rollback", "acme-billing", "--branch", "rollback-acme"])
        .expect(0);
    std::fs::write(repo.path().join("targets/acme.yaml"), &text).unwrap();

    // Clean: committed, and the work tree and index follow.
    let run = repo.gantry(&["rollback", "acme-billing"]).expect(0);
    assert!(
        run.stderr()
            .contains("targets/acme.yaml was updated in the work tree and the index"),
        "{}",
        run.stderr()
    );
    assert_eq!(git_status(&repo), "", "the checkout matches the rollback commit");
    let file = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    assert!(file.contains("version: 1.0.0"), "{file}");
    // The next commit of everything keeps the rollback.
    repo.file("notes.txt", "unrelated\n");
    repo.commit_all("unrelated change");
    let plan = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    assert!(plan.stdout().contains("\"action\": \"downgrade\""), "{}", plan.stdout());
}

/// Issue #16: rolling back an environment took one command per target. `--selector` pins every
/// matching target in one commit (one change to review and to revert); a target among them with
/// nothing to roll back to refuses the whole commit, naming it.
#[test]
fn rollback_by_selector_pins_every_matching_target_in_one_commit() {
    let repo = steps_repo();
    let acme = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    let zen = acme
        .replace("acme-billing", "zen-billing")
        .replace("tenant: acme", "tenant: zen");
    repo.file("targets/zen.yaml", &zen);
    repo.commit_all("zen");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    for file in ["targets/acme.yaml", "targets/zen.yaml"] {
        let text = std::fs::read_to_string(repo.path().join(file)).unwrap();
        repo.file(file, &text.replace("version: 1.0.0", "version: 2.0.0"));
    }
    repo.commit_all("Upgrade billing to 2.0.0");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let before = repo.git.refname_to_id("refs/heads/main").unwrap();

    let run = repo
        .gantry(&["rollback", "--selector", "env=prod", "--reason", "bad release"])
        .expect(0);
    let out = run.stdout();
    assert!(out.contains("pin acme-billing to 1.0.0 (targets/acme.yaml)"), "{out}");
    assert!(out.contains("pin zen-billing to 1.0.0 (targets/zen.yaml)"), "{out}");
    let commit = repo
        .git
        .find_commit(repo.git.refname_to_id("refs/heads/main").unwrap())
        .unwrap();
    assert_eq!(commit.parent_id(0).unwrap(), before, "one commit");
    assert!(
        commit
            .message()
            .unwrap()
            .starts_with("Roll back 2 targets (env=prod)\n\n- acme-billing to 1.0.0\n- zen-billing to 1.0.0\n"),
        "{}",
        commit.message().unwrap()
    );
    let plan = repo
        .gantry(&["plan", "--now", NOW, "--format", "json"])
        .expect(0)
        .stdout();
    assert_eq!(plan.matches("\"action\": \"downgrade\"").count(), 2, "{plan}");

    // A target with no rollback point among the selected ones: nothing is committed.
    let tip = repo.git.refname_to_id("refs/heads/main").unwrap();
    let fresh = acme
        .replace("acme-billing", "new-billing")
        .replace("tenant: acme", "tenant: new");
    repo.file("targets/new.yaml", &fresh);
    repo.commit_all("new target");
    let tip_with_new = repo.git.refname_to_id("refs/heads/main").unwrap();
    assert_ne!(tip, tip_with_new);
    let refused = repo.gantry(&["rollback", "--selector", "env=prod"]).expect(1);
    assert!(
        refused
            .stderr()
            .contains("no rollback point is recorded for `new-billing`"),
        "{}",
        refused.stderr()
    );
    assert_eq!(repo.git.refname_to_id("refs/heads/main").unwrap(), tip_with_new);
    let nothing = repo.gantry(&["rollback", "--selector", "env=nowhere"]).expect(1);
    assert!(
        nothing.stderr().contains("no target matches --selector env=nowhere"),
        "{}",
        nothing.stderr()
    );
}
