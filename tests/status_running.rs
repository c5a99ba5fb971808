//! `gantry status` while an upgrade runs (issue #15): the attempt in flight, from its journal,
//! is shown in progress with its current step, not an older finished attempt that "did not
//! finish". The step blocks on a fifo the test controls, so nothing depends on timing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Repo, bumped_fleet, release, target};

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_apply(repo: &Repo) -> std::process::Child {
    let child = Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .arg("--repo")
        .arg(repo.path())
        .arg("apply")
        .env("GANTRY_REPO_DIR", repo.path())
        .env_remove("GANTRY_NOW")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&repo.path().join("started"));
    child
}

/// Issue #15: while an upgrade ran, status called it an attempt that "did not finish" (and the
/// next apply would resume it). It is now shown running, with the step it is in.
#[test]
fn status_names_the_running_attempt_and_its_step() {
    let repo = bumped_fleet();
    let fifo = repo.path().join("release.fifo");
    let apply = start_apply(&repo);

    let json: serde_json::Value =
        serde_json::from_str(&repo.gantry(&["status", "--format", "json"]).expect(0).stdout()).unwrap();
    let row = &json["targets"][0];
    let text = repo.gantry(&["status"]).expect(0).stdout();
    // Let the step finish before asserting, so a failure does not leave the apply hanging.
    std::fs::write(&fifo, "go\n").unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    assert_eq!(row["status"], "in_progress", "{row}");
    assert_eq!(row["attempt"]["state"], "running", "{row}");
    assert_eq!(row["attempt"]["to"], "1.1.0", "{row}");
    assert!(
        row["attempt"]["step"].as_str().is_some_and(|s| s.contains("deploy")),
        "{row}"
    );
    let message = row["last_message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("did not finish") && !message.contains("interrupted"),
        "{row}"
    );
    assert!(message.contains("1.0.0 → 1.1.0"), "names the attempt in flight: {row}");
    assert!(message.contains("running step"), "names its current step: {row}");
    let blockers = row["blockers"].to_string();
    assert!(!blockers.contains("did not finish"), "{row}");
    assert!(
        !text.contains("did not finish") && text.contains("running step"),
        "{text}"
    );

    // Once it finished, status says so.
    let after: serde_json::Value =
        serde_json::from_str(&repo.gantry(&["status", "--format", "json"]).expect(0).stdout()).unwrap();
    assert_eq!(after["targets"][0]["status"], "converged", "{after}");
}

/// The other side: a reconciler killed mid-step (kill -9) leaves its journal and no live lock
/// holder; status says the attempt was interrupted and what the next apply does, and the next
/// apply finishes it.
#[test]
fn status_says_interrupted_after_the_reconciler_was_killed() {
    let repo = bumped_fleet();
    let mut apply = start_apply(&repo);
    apply.kill().unwrap(); // SIGKILL
    apply.wait().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&repo.gantry(&["status", "--format", "json"]).expect(0).stdout()).unwrap();
    let row = &json["targets"][0];
    assert_eq!(row["status"], "in_progress", "{row}");
    assert_eq!(row["attempt"]["state"], "interrupted", "{row}");
    let message = row["last_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("interrupted during step") && message.contains("next apply resumes"),
        "{row}"
    );
    assert!(!message.contains("running step"), "{row}");

    // The resumed step runs again; let it through.
    std::fs::remove_file(repo.path().join("started")).unwrap();
    let resumed = start_apply(&repo);
    std::fs::write(repo.path().join("release.fifo"), "go\n").unwrap();
    let out = resumed.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after: serde_json::Value =
        serde_json::from_str(&repo.gantry(&["status", "--format", "json"]).expect(0).stdout()).unwrap();
    assert_eq!(after["targets"][0]["attempt"], serde_json::Value::Null, "{after}");
    assert_eq!(after["targets"][0]["current"], "1.1.0", "{after}");
}

/// `/api/status` is served by the daemon that holds the lock and runs the attempt: it shows
/// the attempt running too.
#[test]
fn api_status_names_the_running_attempt() {
    let repo = bumped_fleet();
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .env("GANTRY_REPO_DIR", repo.path())
        .env_remove("GANTRY_NOW");
    let (mut child, addr, _stderr) = common::spawn_daemon(command);
    wait_for_file(&repo.path().join("started"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let body = agent
        .get(format!("http://{addr}/api/status"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    std::fs::write(repo.path().join("release.fifo"), "go\n").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &json["targets"][0];
    assert_eq!(row["attempt"]["state"], "running", "{row}");
    assert!(
        row["last_message"].as_str().is_some_and(|m| m.contains("running step")),
        "{row}"
    );
}

/// The daemon's cached status (fixed `--now`, so only its inputs invalidate it) follows the
/// running attempt from one step to the next: a step started is appended to the journal, which
/// changes no directory time, so the cache served the first step after the second had begun.
#[test]
fn api_status_follows_the_running_attempt_from_step_to_step_with_a_fixed_clock() {
    let repo = Repo::new();
    for fifo in ["deploy.fifo", "health.fifo"] {
        nix::unistd::mkfifo(&repo.path().join(fifo), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
    let wait = |step: &str| {
        format!(
            "[ \"$1\" = 1.1.0 ] || exit 0\ntouch \"$GANTRY_REPO_DIR/{step}.started\"\nread line < \"$GANTRY_REPO_DIR/{step}.fifo\"\nexit 0\n"
        )
    };
    repo.file(
        "components/billing.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ version }}\"]\n    health: [\"scripts/health.sh\", \"{{ version }}\"]\n",
    )
    .file("scripts/deploy.sh", &format!("#!/bin/sh\n{}", wait("deploy")))
    .file("scripts/health.sh", &format!("#!/bin/sh\n{}", wait("health")))
    .file("releases/billing-1.0.0.yaml", &release("billing", "1.0.0", ""))
    .file("releases/billing-1.1.0.yaml", &release("billing", "1.1.0", ""))
    .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
    .file(".gitignore", "*.fifo\n*.started\n");
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.1.0", "env: prod"));
    repo.commit_all("bump");

    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["--now", "2026-11-21T10:00:00Z", "daemon", "--listen", "127.0.0.1:0"])
        .env("GANTRY_REPO_DIR", repo.path())
        .env_remove("GANTRY_NOW");
    let (mut child, addr, _stderr) = common::spawn_daemon(command);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let step = || -> String {
        let body = agent
            .get(format!("http://{addr}/api/status"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["targets"][0]["attempt"]["step"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_for_file(&repo.path().join("deploy.started"));
    let first = step();
    std::fs::write(repo.path().join("deploy.fifo"), "go\n").unwrap();
    wait_for_file(&repo.path().join("health.started"));
    let second = step();
    std::fs::write(repo.path().join("health.fifo"), "go\n").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("deploy"), "{first}");
    assert!(second.contains("health"), "the cache served the step before: {second}");
}
