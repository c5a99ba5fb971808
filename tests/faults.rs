//! Fault injection: the real binary against real temporary repositories whose steps hang, crash,
//! or speak a broken plugin protocol, and whose state branch is missing, corrupted, moved by
//! someone else or cannot be written. Each case asserts the message a person would read and that
//! the recorded state tells the truth.

mod common;

use common::{Repo, Run, component, release, target};

const CONFIG: &str = "[executors.local]\ntype = \"shell\"\n";

/// A policy with a short step timeout for every target.
const POLICY: &str = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: fast }\nspec:\n  stepTimeout: 1s\n  autoRollback: true\n";

/// A repository with `billing` 1.0.0 and 2.0.0, target `acme` at `version`, and `deploy.sh`.
fn fleet(deploy: &str, version: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", CONFIG)
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &format!(
                "{}---\n{}",
                release("billing", "1.0.0", ""),
                release("billing", "2.0.0", "")
            ),
        )
        .file("policies/fast.yaml", POLICY)
        .file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"))
        .file("scripts/deploy.sh", deploy);
    repo.commit_all("fleet");
    repo
}

/// Bumps `acme` to `version` (and optionally replaces `deploy.sh`) in a new commit.
fn bump(repo: &Repo, version: &str, deploy: Option<&str>) {
    repo.file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"));
    if let Some(script) = deploy {
        repo.file("scripts/deploy.sh", script);
    }
    repo.commit_all(&format!("acme to {version}"));
}

/// A file on the state branch, if the branch and the file exist.
fn state_file(repo: &Repo, path: &str) -> Option<String> {
    let git = git2::Repository::open(repo.path()).unwrap();
    let reference = git.find_reference("refs/heads/gantry/state").ok()?;
    let tree = reference.peel_to_commit().ok()?.tree().ok()?;
    let entry = tree.get_path(std::path::Path::new(path)).ok()?;
    let blob = git.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

fn state_tip(repo: &Repo) -> Option<git2::Oid> {
    let git = git2::Repository::open(repo.path()).unwrap();
    git.refname_to_id("refs/heads/gantry/state").ok()
}

/// Attempt journals (`*.jsonl`; a finished one may stay as an empty `.spare-*` for reuse).
fn journal_files(repo: &Repo) -> usize {
    std::fs::read_dir(repo.path().join(".git/gantry/journal"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .count()
        })
        .unwrap_or(0)
}

fn apply(repo: &Repo) -> Run {
    repo.gantry(&["apply"])
}

/// `deploy.sh` that logs every run to `$GANTRY_REPO/runs.log`, then does `then` for 2.0.0.
fn deploy_script(then: &str) -> String {
    format!(
        "#!/bin/sh\necho \"$GANTRY_STEP $2\" >> \"$GANTRY_REPO/runs.log\"\nif [ \"$2\" = 2.0.0 ]; then\n{then}\nfi\necho deployed $2\n"
    )
}

fn runs(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("runs.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pid_running(pid: i32) -> bool {
    // A killed child may stay a zombie until reaped; a zombie runs nothing.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

#[test]
fn state_branch_missing_is_created_by_the_first_run() {
    let repo = fleet(&deploy_script("true"), "1.0.0");
    assert_eq!(state_tip(&repo), None);
    apply(&repo).expect(0);
    let record = state_file(&repo, "targets/acme.yaml").expect("record written");
    assert!(record.contains("status: converged"), "{record}");
    assert!(record.contains("version: \"1.0.0\""), "{record}");
}

#[test]
fn hanging_step_times_out_kills_its_process_group_and_rolls_back() {
    let hang = "sleep 300 &\necho $! > \"$GANTRY_REPO/child.pid\"\nwait";
    let repo = fleet(&deploy_script(hang), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    let started = std::time::Instant::now();
    let run = apply(&repo).expect(2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the timeout did not stop the step"
    );
    let child: i32 = std::fs::read_to_string(repo.path().join("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pid_running(child) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!pid_running(child), "the step's child {child} outlived the timeout");
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("status: rolled_back"), "{record}");
    assert!(record.contains("version: \"1.0.0\""), "{record}");
    assert!(record.contains("timed out"), "{record}");
    assert!(run.stderr().contains("timed out"), "{}", run.stderr());
    // The timed-out deploy may have half-applied 2.0.0, so the rollback redeploys 1.0.0.
    assert_eq!(runs(&repo), ["deploy 1.0.0", "deploy 2.0.0", "deploy 1.0.0"]);
}

#[test]
fn crashing_step_fails_naming_the_signal() {
    let repo = fleet(&deploy_script("kill -SEGV $$"), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    let run = apply(&repo).expect(2);
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("SIGSEGV"), "{record}");
    assert!(record.contains("status: rolled_back"), "{record}");
    let history = repo.gantry(&["history"]).expect(0);
    assert!(history.stdout().contains("SIGSEGV"), "{}", history.stdout());
    assert!(run.stderr().contains("SIGSEGV"), "{}", run.stderr());
}

#[test]
fn aborting_step_fails_naming_the_signal() {
    let repo = fleet(&deploy_script("kill -ABRT $$"), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    apply(&repo).expect(2);
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("SIGABRT"), "{record}");
}

/// A plugin that answers `hello` and deploys 1.0.0, then misbehaves on 2.0.0 as `fault` says.
fn plugin_fleet(fault: &str) -> Repo {
    let plugin = format!(
        r#"#!/usr/bin/env python3
import json, sys
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "hello":
        print(json.dumps({{"id": req["id"], "ok": True, "ops": ["deploy"]}}), flush=True)
        continue
    if req["op"] == "deploy" and req.get("version") == "2.0.0":
        fault = "{fault}"
        if fault == "garbage":
            print("this is not json {{", flush=True)
            continue
        if fault == "exit":
            sys.exit(3)
        if fault == "wrong-id":
            print(json.dumps({{"id": req["id"] + 100, "ok": True}}), flush=True)
            continue
    print(json.dumps({{"id": req["id"], "ok": True, "message": "deployed"}}), flush=True)
"#
    );
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "[executors.p]\ntype = \"plugin\"\ncommand = [\"plugins/bad.py\"]\n",
    )
    .file(
        "components/billing.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  executor: p\n  steps:\n    deploy: [\"deploy\", \"{{ version }}\"]\n",
    )
    .file(
        "releases/billing.yaml",
        &format!("{}---\n{}", release("billing", "1.0.0", ""), release("billing", "2.0.0", "")),
    )
    // Python's start-up on a loaded machine can take over a second; the timeout is not under
    // test here, the protocol faults are.
    .file("policies/fast.yaml", &POLICY.replace("stepTimeout: 1s", "stepTimeout: 20s"))
    .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
    .file("plugins/bad.py", &plugin);
    repo.commit_all("plugin fleet");
    repo
}

fn plugin_case(fault: &str, expected: &[&str]) {
    let repo = plugin_fleet(fault);
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    apply(&repo).expect(2);
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(
        record.contains("status: rolled_back") || record.contains("status: failed"),
        "{record}"
    );
    let history = repo.gantry(&["history"]).expect(0).stdout();
    for needle in expected {
        assert!(record.contains(needle), "{fault}: state lacks {needle:?}:\n{record}");
        assert!(
            history.contains(needle),
            "{fault}: history lacks {needle:?}:\n{history}"
        );
    }
}

#[test]
fn plugin_printing_garbage_fails_the_attempt_clearly() {
    plugin_case("garbage", &["malformed answer to deploy", "this is not json"]);
}

#[test]
fn plugin_exiting_mid_request_fails_the_attempt_clearly() {
    plugin_case("exit", &["exited with status 3"]);
}

#[test]
fn plugin_answering_the_wrong_id_fails_the_attempt_clearly() {
    plugin_case("wrong-id", &["answered id"]);
}

/// Adds a commit on the state branch holding `path` with `content` (a hand edit).
fn hand_edit_state(repo: &Repo, path: &str, content: &str) {
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_reference("refs/heads/gantry/state")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let blob = git.blob(content.as_bytes()).unwrap();
    let mut builder = git2::build::TreeUpdateBuilder::new();
    builder.upsert(path, blob, git2::FileMode::Blob);
    let tree = builder.create_updated(&git, &tip.tree().unwrap()).unwrap();
    let tree = git.find_tree(tree).unwrap();
    let sig = git2::Signature::now("Mallory", "mallory@example.com").unwrap();
    git.commit(Some("refs/heads/gantry/state"), &sig, &sig, "hand edit", &tree, &[&tip])
        .unwrap();
}

#[test]
fn corrupted_state_record_is_refused_naming_branch_path_and_line() {
    let repo = fleet(&deploy_script("true"), "1.0.0");
    apply(&repo).expect(0);
    hand_edit_state(&repo, "targets/x.yaml", "component: billing\nstatus: [unclosed\n");
    bump(&repo, "2.0.0", None);
    let run = apply(&repo).expect(1);
    let err = run.stderr();
    assert!(err.contains("gantry/state:targets/x.yaml:"), "{err}");
    assert!(err.contains("fix or revert that commit"), "{err}");
    // Nothing ran: the 2.0.0 deploy never started.
    assert_eq!(runs(&repo), ["deploy 1.0.0"]);
}

#[test]
fn state_record_with_an_unknown_field_is_refused_naming_the_line() {
    let repo = fleet(&deploy_script("true"), "1.0.0");
    apply(&repo).expect(0);
    let mut record = state_file(&repo, "targets/acme.yaml").unwrap();
    record.push_str("colour: blue\n");
    let line = record.lines().count();
    hand_edit_state(&repo, "targets/acme.yaml", &record);
    bump(&repo, "2.0.0", None);
    let err = apply(&repo).expect(1).stderr();
    assert!(
        err.contains(&format!("gantry/state:targets/acme.yaml:{line}:")),
        "{err}"
    );
    assert!(err.contains("colour"), "{err}");
    assert_eq!(runs(&repo), ["deploy 1.0.0"]);
}

#[test]
fn state_branch_moved_during_a_pass_is_reported_and_the_outcome_recorded_next_time() {
    // The 2.0.0 deploy itself commits to the state branch with the git CLI, once: someone else
    // moved it between plan and record.
    let mover = "if [ ! -e \"$GANTRY_REPO/moved\" ]; then\n  touch \"$GANTRY_REPO/moved\"\n  cd \"$GANTRY_REPO\"\n  \
                 tree=$(git rev-parse gantry/state^{tree})\n  c=$(git -c user.name=X -c user.email=x@example.com \
                 commit-tree \"$tree\" -p gantry/state -m 'someone else')\n  git update-ref refs/heads/gantry/state \"$c\"\nfi";
    let repo = fleet(&deploy_script(mover), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    let err = apply(&repo).expect(4).stderr();
    assert!(err.contains("state branch gantry/state moved"), "{err}");
    assert!(err.contains("kept in the journal"), "{err}");
    assert_eq!(journal_files(&repo), 1, "the journal must keep the unrecorded outcome");
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(
        record.contains("version: \"1.0.0\""),
        "state must not claim 2.0.0 yet: {record}"
    );

    apply(&repo).expect(0);
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("version: \"2.0.0\""), "{record}");
    assert!(record.contains("status: converged"), "{record}");
    // The 2.0.0 deploy ran once: recording it the second time ran no step again.
    assert_eq!(runs(&repo), ["deploy 1.0.0", "deploy 2.0.0"]);
    assert_eq!(journal_files(&repo), 0);
}

#[test]
fn disk_full_while_recording_keeps_the_outcome_and_says_so() {
    let repo = fleet(&deploy_script("true"), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    let tip = state_tip(&repo);
    let output = assert_cmd::Command::cargo_bin("gantry")
        .unwrap()
        .arg("--repo")
        .arg(repo.path())
        .arg("apply")
        .env("GANTRY_FAULT_STATE_WRITE", "fail")
        .output()
        .unwrap();
    let run = Run { output }.expect(4); // exit 4: could not record (issue #12; was 1)
    let err = run.stderr();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("state branch gantry/state"), "{err}");
    assert!(err.contains("will be recorded by the next `gantry apply`"), "{err}");
    // The state branch did not move and does not claim anything that was not recorded.
    assert_eq!(state_tip(&repo), tip);
    assert!(
        state_file(&repo, "targets/acme.yaml")
            .unwrap()
            .contains("version: \"1.0.0\"")
    );
    assert_eq!(journal_files(&repo), 1);

    apply(&repo).expect(0);
    assert!(
        state_file(&repo, "targets/acme.yaml")
            .unwrap()
            .contains("version: \"2.0.0\"")
    );
    assert_eq!(runs(&repo), ["deploy 1.0.0", "deploy 2.0.0"]);
}

#[test]
fn unreachable_repository_names_the_path() {
    let output = assert_cmd::Command::cargo_bin("gantry")
        .unwrap()
        .args(["--repo", "/nonexistent/gantry-repo", "apply"])
        .output()
        .unwrap();
    let run = Run { output }.expect(1);
    assert!(run.stderr().contains("/nonexistent/gantry-repo"), "{}", run.stderr());
    assert!(run.stderr().contains("not a git repository"), "{}", run.stderr());
}

// ------------------------------------------------------------------------------------------
// Issue #10: recorded state never lies. A simulated target kept in files under
// `$GANTRY_REPO/sim/<target>/`: `version`, `migrations` (applied, in order), `rows` (data the
// migrations wrote). Its steps really change them; `fail-<what>` files make a step fail, and an
// irreversible `up` that fails leaves a partial row behind first. A `down` of a migration that
// is not there fails, like SQL on a dropped table ("no such table").

const SIM: &str = r#"#!/bin/sh
set -eu
what=$1; t=$2; shift 2
root="$GANTRY_REPO/sim/$t"
mkdir -p "$root"; touch "$root/migrations" "$root/rows"
echo "$what $*" >> "$GANTRY_REPO/sim/steps.log"
fail() { echo "$what $* fails on purpose" >&2; exit 3; }
case "$what" in
  deploy) [ -f "$GANTRY_REPO/sim/fail-deploy-$1" ] && fail "$@"; echo "$1" > "$root/version" ;;
  health) [ -f "$GANTRY_REPO/sim/fail-health" ] && fail "$@"; true ;;
  remove) rm -f "$root/version" ;;
  observe) cat "$root/version" ;;
  snapshot) rm -rf "$root/snap-$1"; mkdir -p "$root/snap-$1"; cp "$root/migrations" "$root/rows" "$root/snap-$1/" ;;
  restore) [ -f "$GANTRY_REPO/sim/fail-restore" ] && fail "$@"; [ -d "$root/snap-$1" ] || fail "no snapshot $1"
           cp "$root/snap-$1/migrations" "$root/snap-$1/rows" "$root/" ;;
  up) if [ -f "$GANTRY_REPO/sim/fail-up-$2" ]; then
        [ "${3:-}" = irreversible ] && echo "partial $1/$2" >> "$root/rows"
        fail "$@"
      fi
      grep -qx "$1/$2" "$root/migrations" || { echo "$1/$2" >> "$root/migrations"; echo "$1/$2" >> "$root/rows"; } ;;
  down) grep -qx "$1/$2" "$root/migrations" || fail "no such table: $2"
        grep -vx "$1/$2" "$root/migrations" > "$root/m.tmp" || true; mv "$root/m.tmp" "$root/migrations"
        grep -vx "$1/$2" "$root/rows" > "$root/r.tmp" || true; mv "$root/r.tmp" "$root/rows" ;;
esac
"#;

const NOW: &str = "2026-11-21T10:00:00Z";

fn sim_component(name: &str, extra: &str) -> String {
    let step = |what: &str, arg: &str| format!("[\"scripts/sim.sh\", \"{what}\", \"{{{{ target.name }}}}\"{arg}]");
    format!(
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: {name} }}\nspec:\n{extra}  steps:\n    deploy: {}\n    health: {}\n    snapshot: {}\n    restore: {}\n",
        step("deploy", ", \"{{ version }}\""),
        step("health", ", \"{{ version }}\""),
        step("snapshot", ", \"{{ attempt }}\""),
        step("restore", ", \"{{ attempt }}\""),
    )
}

fn sim_migration(id: &str, reversible: bool) -> String {
    let up = format!(
        "[\"scripts/sim.sh\", \"up\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\", \"{id}\"{}]",
        if reversible { "" } else { ", \"irreversible\"" }
    );
    let down = format!("[\"scripts/sim.sh\", \"down\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\", \"{id}\"]");
    if reversible {
        format!("    - {{ id: {id}, up: {up}, down: {down} }}\n")
    } else {
        format!("    - {{ id: {id}, up: {up} }}\n")
    }
}

/// `app` 1.0.0, 1.1.0 (m11, reversible), 2.0.0 (m20, irreversible); target `acme` at `version`.
fn sim_fleet(version: &str, policy: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file("components/app.yaml", &sim_component("app", ""))
        .file(
            "releases/app.yaml",
            &[
                release("app", "1.0.0", ""),
                release(
                    "app",
                    "1.1.0",
                    &format!("  migrations:\n{}", sim_migration("m11", true)),
                ),
                release(
                    "app",
                    "2.0.0",
                    &format!("  migrations:\n{}", sim_migration("m20", false)),
                ),
            ]
            .join("---\n"),
        )
        .file("policies/p.yaml", policy)
        .file(
            "targets/acme.yaml",
            &target("acme", "app", version, "env: prod, tenant: acme"),
        )
        .file("scripts/sim.sh", SIM);
    std::fs::create_dir_all(repo.path().join("sim")).unwrap();
    repo.file(".gitignore", "sim/\n");
    repo.commit_all("fleet");
    repo
}

const SIM_POLICY: &str =
    "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  autoRollback: true\n";

fn pin(repo: &Repo, version: &str) {
    repo.file(
        "targets/acme.yaml",
        &target("acme", "app", version, "env: prod, tenant: acme"),
    );
    repo.commit_all(&format!("acme to {version}"));
}

fn sim_lines(repo: &Repo, target: &str, file: &str) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("sim").join(target).join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn sim_version(repo: &Repo, target: &str) -> Option<String> {
    std::fs::read_to_string(repo.path().join("sim").join(target).join("version"))
        .ok()
        .map(|v| v.trim().to_string())
}

fn sim_steps(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("sim/steps.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn record_of(repo: &Repo, target: &str) -> gantry::state::TargetRecord {
    let text = state_file(repo, &format!("targets/{target}.yaml")).expect("a target record");
    serde_saphyr::from_str(&text).expect("a valid target record")
}

/// The recorded version and migrations are the simulated target's.
fn assert_truth(repo: &Repo, target: &str) {
    let record = record_of(repo, target);
    let migrations: Vec<String> = record
        .applied_migrations
        .iter()
        .map(|m| format!("{}/{}", m.release, m.id))
        .collect();
    assert_eq!(
        (record.version.as_ref().map(ToString::to_string), migrations),
        (sim_version(repo, target), sim_lines(repo, target, "migrations")),
        "recorded ({:?}: {}) vs the target's files",
        record.status,
        record.last_attempt.as_ref().map(|a| a.message.as_str()).unwrap_or("")
    );
}

fn apply_at(repo: &Repo, now: &str) -> Run {
    repo.gantry(&["apply", "--now", now])
}

/// Issue #10 bug 1: a downgrade that restores a snapshot also ran the `down` of an older
/// migration the restore had already undone ("no such table").
#[test]
fn downgrade_restore_covers_every_migration_applied_after_its_snapshot() {
    let repo = sim_fleet("1.0.0", SIM_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "2.0.0");
    apply_at(&repo, NOW).expect(0);
    assert_eq!(sim_lines(&repo, "acme", "migrations"), ["1.1.0/m11", "2.0.0/m20"]);
    pin(&repo, "1.0.0");
    std::fs::remove_file(repo.path().join("sim/steps.log")).unwrap();
    let run = apply_at(&repo, NOW).expect(0);
    let steps = sim_steps(&repo);
    assert!(steps.iter().any(|s| s.starts_with("restore ")), "{steps:?}");
    assert!(
        !steps.iter().any(|s| s.starts_with("down ")),
        "a down ran after the restore: {steps:?}\n{}",
        run.stderr()
    );
    assert_eq!(record_of(&repo, "acme").status, gantry::state::TargetStatus::Converged);
    assert_truth(&repo, "acme");
    assert!(sim_lines(&repo, "acme", "rows").is_empty());
}

/// Issue #10 bug 2: a failed downgrade recorded the version it was going to. Here the deploy of
/// the downgrade fails after the restore, with autoRollback off: the record must say 2.0.0 with
/// no migrations (the restore removed them), which is where the target is.
#[test]
fn failed_downgrade_records_where_the_target_really_is() {
    let policy = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  autoRollback: false\n";
    let repo = sim_fleet("1.0.0", policy);
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "2.0.0");
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "1.0.0");
    std::fs::write(repo.path().join("sim/fail-deploy-1.0.0"), "").unwrap();
    apply_at(&repo, NOW).expect(2);
    let record = record_of(&repo, "acme");
    assert_eq!(record.status, gantry::state::TargetStatus::Failed);
    assert_eq!(
        record.version.as_ref().map(ToString::to_string).as_deref(),
        Some("2.0.0")
    );
    assert_truth(&repo, "acme");
    let message = &record.last_attempt.as_ref().unwrap().message;
    assert!(
        message.contains("the target runs 2.0.0, no migrations applied"),
        "{message}"
    );
}

/// Issue #10 bug 3: an irreversible `up` that failed after partial writes was not restored.
#[test]
fn failed_irreversible_migration_restores_the_snapshot() {
    let repo = sim_fleet("1.0.0", SIM_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "2.0.0");
    std::fs::write(repo.path().join("sim/fail-up-m20"), "").unwrap();
    apply_at(&repo, NOW).expect(2);
    let steps = sim_steps(&repo);
    assert!(steps.iter().any(|s| s.starts_with("restore ")), "{steps:?}");
    assert_eq!(
        sim_lines(&repo, "acme", "rows"),
        Vec::<String>::new(),
        "partial writes remain"
    );
    let record = record_of(&repo, "acme");
    assert_eq!(record.status, gantry::state::TargetStatus::RolledBack);
    assert_truth(&repo, "acme");
}

/// Issue #10 bug 4: a failed install was recorded as installed and a dependent deployed on it.
/// Without a `remove` step the install cannot be undone: the record says `failed` (with the
/// version that really runs) and the dependent waits.
#[test]
fn failed_install_is_never_converged_and_holds_its_dependents() {
    let repo = sim_fleet("1.0.0", SIM_POLICY);
    repo.file("components/web.yaml", &sim_component("web", "  dependsOn: [app]\n"))
        .file("releases/web.yaml", &release("web", "1.0.0", ""))
        .file(
            "targets/acme-web.yaml",
            &target("acme-web", "web", "1.0.0", "env: prod, tenant: acme"),
        );
    repo.commit_all("web depends on app");
    std::fs::write(repo.path().join("sim/fail-health"), "").unwrap();
    let run = apply_at(&repo, NOW).expect(2);
    let record = record_of(&repo, "acme");
    assert_eq!(record.status, gantry::state::TargetStatus::Failed, "{}", run.stderr());
    assert_truth(&repo, "acme");
    assert!(!run.stderr().contains("rolled back to nothing"), "{}", run.stderr());
    // The dependent never ran, even once the health check passes again: acme is still failed.
    std::fs::remove_file(repo.path().join("sim/fail-health")).unwrap();
    apply_at(&repo, NOW);
    assert_eq!(
        sim_version(&repo, "acme-web"),
        None,
        "web was deployed on a failed install"
    );
    let status = repo.gantry(&["status", "--now", NOW]);
    assert!(
        !status
            .stdout()
            .lines()
            .any(|l| l.starts_with("acme ") && l.contains("converged")),
        "{}",
        status.stdout()
    );
}

/// Issue #10 bug 5: after a halt only a different version unblocked. Pinning the old version and
/// the new one again keeps it held; `gantry retry` commits the change that re-arms it.
#[test]
fn retry_rearms_a_halted_target_and_says_how() {
    let repo = sim_fleet("1.0.0", SIM_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "1.1.0");
    std::fs::write(repo.path().join("sim/fail-deploy-1.1.0"), "").unwrap();
    apply_at(&repo, NOW).expect(2);
    std::fs::remove_file(repo.path().join("sim/fail-deploy-1.1.0")).unwrap();
    pin(&repo, "1.0.0");
    pin(&repo, "1.1.0");
    let plan = repo.gantry(&["plan", "--now", NOW]);
    assert!(plan.stdout().contains("gantry retry acme"), "{}", plan.stdout());
    apply_at(&repo, NOW);
    assert_eq!(
        record_of(&repo, "acme").version.unwrap().to_string(),
        "1.0.0",
        "held target ran"
    );
    repo.gantry(&["retry", "acme", "--reason", "two\nlines"]).expect(1);
    let retry = repo
        .gantry(&["retry", "acme", "--reason", "disk replaced on the host"])
        .expect(0);
    assert!(retry.stdout().contains("acme: spec.retry 1"), "{}", retry.stdout());
    assert!(
        std::fs::read_to_string(repo.path().join("targets/acme.yaml")).is_ok(),
        "the work tree file is still there"
    );
    apply_at(&repo, NOW).expect(0);
    let record = record_of(&repo, "acme");
    assert_eq!(record.version.unwrap().to_string(), "1.1.0");
    assert_truth(&repo, "acme");
    // Issue #15: the retried attempt's history names who asked for the retry and why.
    let history: serde_json::Value =
        serde_json::from_str(&repo.gantry(&["history", "acme", "--format", "json"]).expect(0).stdout()).unwrap();
    assert_eq!(history[0]["reason"], "disk replaced on the host", "{}", history[0]);
    assert!(
        history[0]["operator"].as_str().is_some_and(|o| o.contains('<')),
        "{}",
        history[0]
    );
    repo.gantry(&["retry", "nobody"]).expect(1);
}

/// A step script for crash tests: logs `start`/`end` with its pid; `kill-once` makes it kill
/// gantry (its parent) with SIGKILL mid-step; `hang-once` makes it start a background child in
/// its group and sleep, to be killed from outside; `fail-<version>` makes it fail. Any start
/// while a process of an earlier run of the step still runs is logged as `overlap`.
const CRASH_STEP: &str = r#"#!/bin/sh
r="$GANTRY_REPO"
for f in "$r/bg.pid" "$r/main.pid"; do
  if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$(cat "$f")/stat")" != Z ]; then
    echo "overlap $(cat "$f")" >> "$r/run.log"
  fi
done
echo "start $1 $2 $$" >> "$r/run.log"
if [ -f "$r/kill-once" ]; then rm "$r/kill-once"; kill -9 "$PPID"; sleep 5; fi
if [ -f "$r/hang-once" ]; then
  rm "$r/hang-once"
  sleep 300 &
  echo $! > "$r/bg.pid"
  echo $$ > "$r/main.tmp"; mv "$r/main.tmp" "$r/main.pid"
  sleep 300
fi
[ -f "$r/fail-$2" ] && exit 3
echo "end $1 $2 $$" >> "$r/run.log"
"#;

fn crash_fleet(targets: &[(&str, &str)], policy: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file(
            "components/app.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: app }\nspec:\n  steps:\n    deploy: [\"scripts/step.sh\", \"{{ target.name }}\", \"{{ version }}\"]\n",
        )
        .file(
            "releases/app.yaml",
            &format!("{}---\n{}", release("app", "1.0.0", ""), release("app", "2.0.0", "")),
        )
        .file("policies/p.yaml", policy)
        .file("scripts/step.sh", CRASH_STEP)
        .file(".gitignore", "*.log\n*.pid\n*-once\nfail-*\n");
    for (name, ring) in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "app", "1.0.0", &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all("fleet");
    repo
}

fn pin_all(repo: &Repo, targets: &[(&str, &str)], version: &str) {
    for (name, ring) in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "app", version, &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all(&format!("all to {version}"));
}

fn run_log(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("run.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

const CANARY_POLICY: &str = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 1h }\n      - { name: rest, percent: 100 }\n    maxParallel: 1\n    maxFailures: 0\n";

const RING: [(&str, &str); 3] = [("c0", "0"), ("r1", "1"), ("r2", "1")];

/// Issue #10 bug 6: killed during the canary's attempt, the resumed pass upgraded the next wave
/// at once and the canary never appeared in the rollout record.
#[test]
fn resumed_canary_belongs_to_its_rollout_and_the_soak_holds() {
    let repo = crash_fleet(&RING, CANARY_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin_all(&repo, &RING, "2.0.0");
    std::fs::write(repo.path().join("kill-once"), "").unwrap();
    let killed = apply_at(&repo, NOW);
    assert_ne!(killed.code(), 0, "gantry was not killed: {}", killed.stderr());
    // Resumed: the canary finishes; the rest waits for the soak, however often we ask.
    apply_at(&repo, NOW).expect(0);
    apply_at(&repo, "2026-11-21T10:30:00Z").expect(0);
    let rollout = state_file(&repo, "rollouts/app@2.0.0.yaml").expect("the rollout record");
    assert!(
        rollout.contains("c0:"),
        "resumed canary missing from the rollout:\n{rollout}"
    );
    let upgraded: Vec<String> = run_log(&repo)
        .into_iter()
        .filter(|l| l.starts_with("end r") && l.contains(" 2.0.0 "))
        .collect();
    assert!(
        upgraded.is_empty(),
        "the next wave did not wait for the soak: {upgraded:?}"
    );
    apply_at(&repo, "2026-11-21T11:01:00Z").expect(0);
    assert_eq!(
        run_log(&repo)
            .iter()
            .filter(|l| l.starts_with("end r") && l.contains(" 2.0.0 "))
            .count(),
        2
    );
}

/// Issue #10 bug 6: with `maxFailures: 0`, every crash during a failing attempt let one more
/// target run the bad release. Killed twice, the failure still halts the rollout.
#[test]
fn halt_holds_across_crashes() {
    let targets = [("r0", "1"), ("r1", "1"), ("r2", "1")];
    let repo = crash_fleet(&targets, CANARY_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin_all(&repo, &targets, "2.0.0");
    std::fs::write(repo.path().join("fail-2.0.0"), "").unwrap();
    std::fs::write(repo.path().join("kill-once"), "").unwrap();
    assert_ne!(apply_at(&repo, NOW).code(), 0);
    // Killed again in the resumed attempt, which then fails and halts the rollout.
    std::fs::write(repo.path().join("kill-once"), "").unwrap();
    assert_ne!(apply_at(&repo, NOW).code(), 0);
    apply_at(&repo, NOW);
    apply_at(&repo, NOW);
    let tried: std::collections::BTreeSet<String> = run_log(&repo)
        .iter()
        .filter(|l| l.starts_with("start ") && l.contains(" 2.0.0 "))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(
        tried.len(),
        1,
        "more than one target ran the bad release: {:?}",
        run_log(&repo)
    );
    let rollout = state_file(&repo, "rollouts/app@2.0.0.yaml").expect("the rollout record");
    assert!(rollout.contains("halted:"), "{rollout}");
}

/// Issue #10 bug 7: after kill -9 of `apply` the running step survived and the next `apply`
/// ran the same step alongside it. Now the step dies with gantry (its own process at once,
/// what it started in its group when the attempt resumes), and the resumed step starts only
/// once nothing of the interrupted one runs.
#[test]
fn no_step_process_outlives_a_killed_reconciler_or_overlaps_its_resumption() {
    let targets = [("solo", "1")];
    let repo = crash_fleet(&targets, SIM_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin_all(&repo, &targets, "2.0.0");
    std::fs::write(repo.path().join("hang-once"), "").unwrap();
    let mut gantry = std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .args(["--repo", repo.path().to_str().unwrap(), "apply", "--now", NOW])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let main_pid = repo.path().join("main.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !main_pid.exists() {
        assert!(std::time::Instant::now() < deadline, "the step never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let read_pid = |f: &str| -> i32 {
        std::fs::read_to_string(repo.path().join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (step, background) = (read_pid("main.pid"), read_pid("bg.pid"));
    gantry.kill().unwrap(); // SIGKILL
    gantry.wait().unwrap();
    // The step's own process dies with gantry.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pid_running(step) {
        assert!(
            std::time::Instant::now() < deadline,
            "step {step} outlived the killed reconciler"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The resumed attempt first ends what is left of the step's group, then runs the step again.
    apply_at(&repo, NOW).expect(0);
    assert!(
        !pid_running(background),
        "background process {background} of the interrupted step survived the resume"
    );
    let log = run_log(&repo);
    assert!(
        !log.iter().any(|l| l.starts_with("overlap")),
        "the resumed step overlapped the interrupted one: {log:?}"
    );
    assert!(log.iter().any(|l| l.starts_with("end solo 2.0.0")), "{log:?}");
}

/// A component whose steps are the simulator's, with `observe` and extra text in `deploy`.
fn observed_fleet(policy: &str, deploy_extra: &str) -> Repo {
    let repo = sim_fleet("1.0.0", policy);
    repo.file(
        "components/app.yaml",
        &format!(
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: app }}\nspec:\n  steps:\n    deploy: [\"scripts/sim.sh\", \"deploy\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\"{deploy_extra}]\n    observe: [\"scripts/sim.sh\", \"observe\", \"{{{{ target.name }}}}\"]\n"
        ),
    );
    repo.commit_all("app with observe");
    repo
}

/// Issue #10 bug 8: `observe` never ran, so a hand-changed running version went unnoticed.
/// `status --observe` records the drift (with what was seen); `onDrift: report` changes nothing;
/// `onDrift: reconcile` redeploys the recorded version.
#[test]
fn observe_records_drift_and_on_drift_reconcile_redeploys() {
    let repo = observed_fleet(SIM_POLICY, "");
    apply_at(&repo, NOW).expect(0);
    std::fs::write(repo.path().join("sim/acme/version"), "9.9.9\n").unwrap();
    let status = repo.gantry(&["status", "--observe", "--now", NOW]).expect(0);
    assert!(status.stdout().contains("drifted"), "{}", status.stdout());
    let record = record_of(&repo, "acme");
    assert_eq!(record.status, gantry::state::TargetStatus::Drifted);
    assert_eq!(record.observed_version.as_deref(), Some("9.9.9"));
    // report: nothing runs.
    apply_at(&repo, NOW).expect(0);
    assert_eq!(sim_version(&repo, "acme").as_deref(), Some("9.9.9"));
    // reconcile: the recorded version is deployed again.
    repo.file("policies/p.yaml", &format!("{SIM_POLICY}  onDrift: reconcile\n"));
    repo.commit_all("onDrift: reconcile");
    apply_at(&repo, NOW).expect(0);
    assert_eq!(sim_version(&repo, "acme").as_deref(), Some("1.0.0"));
    repo.gantry(&["status", "--observe", "--now", NOW]).expect(0);
    assert_eq!(record_of(&repo, "acme").status, gantry::state::TargetStatus::Converged);
}

/// Issue #10 item 9: `{{ from }}` validated but failed on an install.
#[test]
fn from_is_defined_on_an_install() {
    let repo = observed_fleet(SIM_POLICY, ", \"from={{ from }}\"");
    repo.gantry(&["validate"]).expect(0);
    apply_at(&repo, NOW).expect(0);
    assert_eq!(sim_version(&repo, "acme").as_deref(), Some("1.0.0"));
}

/// SPEC §5: `from` and `release` are defined in every step's templates, precheck and observe
/// included. (A review during issue #17 found both missing there: `{{ from }}` in a precheck
/// validated, then held every install; `{{ release }}` in a precheck or observe never rendered.)
#[test]
fn precheck_and_observe_templates_see_from_and_release() {
    let repo = sim_fleet("1.0.0", SIM_POLICY);
    repo.file(
        "components/app.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: app }\nspec:\n  steps:\n    \
         deploy: [\"scripts/sim.sh\", \"deploy\", \"{{ target.name }}\", \"{{ version }}\"]\n    \
         precheck: [\"scripts/sim.sh\", \"health\", \"{{ target.name }}\", \"from={{ from }}\", \"{{ release }}\"]\n    \
         observe: [\"scripts/sim.sh\", \"observe\", \"{{ target.name }}\", \"{{ release }}\"]\n",
    );
    repo.commit_all("precheck and observe name from and release");
    repo.gantry(&["validate"]).expect(0);
    apply_at(&repo, NOW).expect(0);
    pin(&repo, "1.1.0");
    apply_at(&repo, NOW).expect(0);
    assert_eq!(sim_version(&repo, "acme").as_deref(), Some("1.1.0"));
    repo.gantry(&["status", "--observe", "--now", NOW]).expect(0);
    let steps = sim_steps(&repo);
    for step in [
        "health from= app-1.0.0",
        "health from=1.0.0 app-1.1.0",
        "observe app-1.1.0",
    ] {
        assert!(steps.iter().any(|s| s == step), "no `{step}` in {steps:?}");
    }
    let record = record_of(&repo, "acme");
    assert_eq!(record.status, gantry::state::TargetStatus::Converged);
    assert_eq!(record.observed_version.as_deref(), Some("1.1.0"));
}

/// `precheck` and `observe` never see an artifact (they run before or outside any attempt's
/// version), so `{{ artifact.path }}` there is refused by the template check, at the file and
/// step, before anything runs. (The check used to give every template a stand-in artifact, so
/// such a precheck validated and then held every target on every pass.) The same text in
/// `deploy`, which has one, is not refused: the check renders it apart.
#[test]
fn artifact_in_a_precheck_or_observe_template_is_refused_before_anything_runs() {
    for step in ["precheck", "observe"] {
        let repo = sim_fleet("1.0.0", SIM_POLICY);
        repo.file(
            "components/app.yaml",
            &format!(
                "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: app }}\nspec:\n  steps:\n    \
                 deploy: [\"scripts/sim.sh\", \"deploy\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\", \"{{{{ artifact.path }}}}\"]\n    \
                 {step}: [\"scripts/sim.sh\", \"health\", \"{{{{ target.name }}}}\", \"{{{{ artifact.path }}}}\"]\n"
            ),
        );
        repo.commit_all(&format!("{step} names an artifact"));
        let out = repo.gantry(&["validate"]).expect(1);
        assert!(
            out.stderr().contains("1 problem")
                && out.stderr().contains("components/app.yaml:7:")
                && out.stderr().contains("`artifact` is undefined at `artifact.path`"),
            "{step}: {}",
            out.stderr()
        );
        apply_at(&repo, NOW).expect(1);
        assert!(sim_steps(&repo).is_empty(), "{step}: {:?}", sim_steps(&repo));
    }
}

/// Issue #10 item 9: under `--now` the health soak ran on the real clock (here: one hour).
#[test]
fn health_soak_runs_on_the_now_clock() {
    let policy = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  health:\n    checks:\n      - { name: smoke, type: command, argv: [\"scripts/sim.sh\", \"health\", \"{{ target.name }}\", \"x\"] }\n    interval: 10s\n    soak: 1h\n";
    let repo = sim_fleet("1.0.0", policy);
    let started = std::time::Instant::now();
    apply_at(&repo, NOW).expect(0);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "the soak took {:?}",
        started.elapsed()
    );
    let healths = sim_steps(&repo).iter().filter(|s| s.starts_with("health ")).count();
    assert!(
        healths >= 360,
        "a 1h soak at 10s intervals runs 361 rounds, ran {healths}"
    );
}

/// Issue #10 item 9: status said `converged` while the desired version differed, and after a
/// crash named the finished install instead of the interrupted upgrade.
#[test]
fn status_names_the_interrupted_upgrade_and_never_says_converged_while_pending() {
    let targets = [("solo", "1")];
    let repo = crash_fleet(&targets, SIM_POLICY);
    apply_at(&repo, NOW).expect(0);
    pin_all(&repo, &targets, "2.0.0");
    let status = repo.gantry(&["status", "--now", NOW]).expect(0);
    let row = status
        .stdout()
        .lines()
        .find(|l| l.starts_with("solo"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("pending") && !row.contains("converged"),
        "{}",
        status.stdout()
    );
    std::fs::write(repo.path().join("kill-once"), "").unwrap();
    assert_ne!(apply_at(&repo, NOW).code(), 0);
    let status = repo.gantry(&["status", "--format", "json", "--now", NOW]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let row = &json["targets"][0];
    assert_eq!(row["status"], "in_progress", "{row}");
    let text = row.to_string();
    assert!(text.contains("upgrade 1.0.0 → 2.0.0 interrupted"), "{text}");
}

/// Issue #17 (group commit of journal syncs): gantry killed (-9) after an attempt's step
/// completed and its completion was written, but before the batch sync that covers it. The
/// recorded state must not claim the upgrade (nothing was committed), and the next run must
/// resume from the journal: the written completion counts (a killed process loses no written
/// data), so the deploy does not run again and the outcome is recorded once.
#[test]
fn killed_between_the_journal_batch_write_and_its_sync_resumes_without_rerunning_the_step() {
    use std::os::unix::process::ExitStatusExt;
    let repo = fleet(&deploy_script("true"), "1.0.0");
    apply(&repo).expect(0);
    bump(&repo, "2.0.0", None);
    let before = state_tip(&repo);

    let output = assert_cmd::Command::cargo_bin("gantry")
        .unwrap()
        .arg("--repo")
        .arg(repo.path())
        .arg("apply")
        .env("GANTRY_FAULT_JOURNAL_SYNC", "kill")
        .output()
        .unwrap();
    assert_eq!(output.status.signal(), Some(9), "{output:?}");
    assert_eq!(
        runs(&repo),
        ["deploy 1.0.0", "deploy 2.0.0"],
        "the deploy ran before the kill"
    );
    assert_eq!(
        state_tip(&repo),
        before,
        "nothing recorded before the completion is synced"
    );
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("version: \"1.0.0\""), "{record}");
    assert_eq!(journal_files(&repo), 1, "the attempt's journal is left to resume");
    let journal = std::fs::read_dir(repo.path().join(".git/gantry/journal"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(journal.contains(r#""type":"step_completed""#), "{journal}");

    apply(&repo).expect(0);
    assert_eq!(
        runs(&repo),
        ["deploy 1.0.0", "deploy 2.0.0"],
        "the completed deploy ran again on resume"
    );
    let record = state_file(&repo, "targets/acme.yaml").unwrap();
    assert!(record.contains("status: converged"), "{record}");
    assert!(record.contains("version: \"2.0.0\""), "{record}");
    assert_eq!(journal_files(&repo), 0);
}
