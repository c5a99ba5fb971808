//! The adoption aids: the CI templates in `examples/ci/` (valid YAML with the expected jobs and
//! steps, whose gantry commands work as written against a real repository), and the generated
//! shell completions and man page.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Repo, Run, project_path};
use serde_json::Value;

const NOW: &str = "2026-11-21T10:00:00Z";

fn read(relative: &str) -> String {
    std::fs::read_to_string(project_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn parse(relative: &str) -> Value {
    serde_saphyr::from_str::<Value>(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"))
}

/// The shell lines of a template that run gantry, in order.
fn gantry_lines(relative: &str) -> Vec<String> {
    read(relative)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("gantry "))
        .map(String::from)
        .collect()
}

/// The demo repository with `acme-billing` pinned at `base_version` (the base commit) and then
/// at `head_version` (the head commit, checked out); returns the repository and the base id.
fn fixture(base_version: &str, head_version: &str) -> (Repo, String) {
    let repo = Repo::from_dir("examples/demo");
    let acme = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    assert!(
        acme.contains("  version: 2.0.0\n"),
        "the demo's acme-billing changed shape"
    );
    let pin = |v: &str| acme.replacen("  version: 2.0.0\n", &format!("  version: {v}\n"), 1);
    repo.file("targets/acme.yaml", &pin(base_version));
    let base = repo.commit_all("base");
    repo.file("targets/acme.yaml", &pin(head_version));
    repo.commit_all("bump acme-billing");
    (repo, base)
}

/// Runs one template line with `sh`, in the repository, with the built gantry first on PATH.
fn run_line(repo: &Repo, line: &str, env: &[(&str, &str)]) -> Run {
    let bin = Path::new(env!("CARGO_BIN_EXE_gantry"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("sh")
        .args(["-c", line])
        .current_dir(repo.path())
        .env("PATH", path)
        .env("GANTRY_NOW", NOW)
        .envs(env.iter().copied())
        .output()
        .expect("run sh");
    Run { output }
}

fn step_runs(steps: &[Value]) -> String {
    steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn github_actions_template_has_the_expected_shape() {
    let doc = parse("examples/ci/github-actions.yml");
    assert!(
        doc["on"].get("pull_request").is_some(),
        "on: pull_request missing: {doc}"
    );
    assert_eq!(doc["permissions"]["pull-requests"], "write");
    let steps = doc["jobs"]["plan"]["steps"].as_array().expect("jobs.plan.steps");
    let checkout = steps
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("actions/checkout@")))
        .expect("a checkout step");
    assert_eq!(checkout["with"]["fetch-depth"], 0);
    let runs = step_runs(steps);
    assert!(
        runs.contains("gh pr comment \"$PR\" --body-file plan.md --edit-last"),
        "{runs}"
    );
    // The check fails on violations, and only after the comment is posted.
    let comment = steps
        .iter()
        .position(|s| s["name"] == "Comment the plan on the pull request");
    let fail = steps
        .iter()
        .position(|s| s["if"].as_str().is_some_and(|c| c.contains("'2'")));
    assert!(comment.is_some() && fail.is_some() && comment < fail, "{steps:?}");
    assert!(steps[fail.unwrap()]["run"].as_str().unwrap().contains("exit 2"));
}

#[test]
fn gitlab_template_has_the_expected_shape() {
    let doc = parse("examples/ci/gitlab-ci.yml");
    let job = &doc["gantry-plan"];
    assert_eq!(job["rules"][0]["if"], "$CI_PIPELINE_SOURCE == \"merge_request_event\"");
    assert_eq!(job["variables"]["GIT_DEPTH"], "0");
    let script = job["script"]
        .as_array()
        .expect("script")
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect::<String>();
    assert!(
        script.contains("$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"),
        "{script}"
    );
    assert!(script.contains("exit \"$plan\""), "{script}");
}

#[test]
fn github_actions_commands_run_against_a_repository() {
    let lines = gantry_lines("examples/ci/github-actions.yml");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "gantry validate --rev HEAD");
    // Actions substitutes `${{ github.base_ref }}` (the base branch's name) before the shell
    // runs; the checkout has the base branch as a remote-tracking ref.
    let substitute = |line: &str| line.replace("${{ github.base_ref }}", "main");
    let (repo, base) = fixture("1.3.0", "2.0.0");
    repo.git
        .reference(
            "refs/remotes/origin/main",
            git2::Oid::from_str(&base).unwrap(),
            true,
            "test",
        )
        .unwrap();

    run_line(&repo, &substitute(&lines[0]), &[]).expect(0);
    run_line(&repo, &substitute(&lines[1]), &[]).expect(0);
    let plan = std::fs::read_to_string(repo.path().join("plan.md")).unwrap();
    assert!(plan.starts_with("## gantry plan"), "{plan}");
    assert!(plan.contains("`acme-billing`"), "{plan}");
    // The comment has the roll-up by tenant; the uploaded file is the whole plan.
    assert!(plan.contains("### By `tenant`"), "{plan}");
    let full = std::fs::read_to_string(repo.path().join("plan-full.md")).unwrap();
    assert!(
        full.contains("| `acme-billing` |") && full.contains("### Changed manifests"),
        "{full}"
    );

    // A head that pins an unknown release: both commands exit 2, and the plan is still written.
    let (bad, base) = fixture("1.3.0", "9.9.9");
    bad.git
        .reference(
            "refs/remotes/origin/main",
            git2::Oid::from_str(&base).unwrap(),
            true,
            "test",
        )
        .unwrap();
    run_line(&bad, &substitute(&lines[0]), &[]).expect(2);
    run_line(&bad, &substitute(&lines[1]), &[]).expect(2);
    let plan = std::fs::read_to_string(bad.path().join("plan.md")).unwrap();
    assert!(plan.contains("Violations") && plan.contains("9.9.9"), "{plan}");
}

#[test]
fn gitlab_commands_run_against_a_repository() {
    let lines = gantry_lines("examples/ci/gitlab-ci.yml");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], "gantry validate --rev HEAD");
    assert!(lines[1].contains("$CI_MERGE_REQUEST_DIFF_BASE_SHA"), "{}", lines[1]);

    let (repo, base) = fixture("1.3.0", "2.0.0");
    let env = [("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.as_str())];
    run_line(&repo, &lines[0], &env).expect(0);
    run_line(&repo, &lines[1], &env).expect(0);
    let plan = std::fs::read_to_string(repo.path().join("plan.md")).unwrap();
    assert!(plan.starts_with("## gantry plan"), "{plan}");
    assert!(plan.contains(&format!("**base** `{}`", &base[..12])), "{plan}");
    assert!(
        repo.path().join("plan-full.md").exists(),
        "the job's artifact plan-full.md"
    );

    let (bad, base) = fixture("1.3.0", "9.9.9");
    let env = [("CI_MERGE_REQUEST_DIFF_BASE_SHA", base.as_str())];
    run_line(&bad, &lines[0], &env).expect(2);
    run_line(&bad, &lines[1], &env).expect(2);
    let plan = std::fs::read_to_string(bad.path().join("plan.md")).unwrap();
    assert!(plan.contains("Violations") && plan.contains("9.9.9"), "{plan}");
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let gantry = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_gantry")).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let bash = gantry(&["completions", "bash"]);
    assert!(bash.contains("apply") && bash.contains("--dry-run"), "{bash}");
    assert!(bash.contains("init") && bash.contains("completions"), "{bash}");
    for shell in ["zsh", "fish"] {
        let script = gantry(&["completions", shell]);
        assert!(script.contains("dry-run"), "{shell}: {script}");
    }
    let man = gantry(&["man"]);
    assert!(man.contains(".TH gantry"), "{man}");
    assert!(man.contains("apply"), "{man}");
}
