//! `gantry init`: the bundled example is a working repository whose next `apply` is a real
//! multi-hop upgrade with migrations, canary wave first.

mod common;

use std::path::Path;

use assert_cmd::Command;
use common::Run;
use serde_json::Value;

/// A fixed clock outside the example's year-end freeze, so these tests pass on any date.
const NOW: &str = "2026-11-21T10:00:00Z";

/// Runs gantry with a fixed clock and a git identity-free environment (HOME is a temp dir, so
/// the machine's git config does not leak into commits).
fn gantry(home: &Path, args: &[&str]) -> Run {
    let output = Command::cargo_bin("gantry")
        .expect("binary")
        .args(["--now", NOW])
        .args(args)
        .env_remove("GANTRY_NOW")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run gantry");
    Run { output }
}

/// `gantry init` into a fresh directory: (temp root, demo path).
fn init_demo() -> (tempfile::TempDir, std::path::PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let demo = root.path().join("demo");
    let run = gantry(root.path(), &["init", demo.to_str().expect("utf-8 path")]).expect(0);
    assert!(run.stdout().contains("gantry --repo"), "{}", run.stdout());
    (root, demo)
}

fn on(root: &Path, demo: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--repo", demo.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    gantry(root, &all)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", run.stdout()))
}

#[test]
fn init_makes_two_commits_on_main_and_records_the_initial_fleet() {
    let (root, demo) = init_demo();
    let git = git2::Repository::open(&demo).expect("a git repository");
    let head = git.head().expect("HEAD");
    assert_eq!(head.shorthand().unwrap(), "main");
    let upgrade = head.peel_to_commit().expect("commit");
    assert_eq!(
        upgrade.summary().unwrap().unwrap(),
        "Upgrade billing to 2.0.0, storefront to 1.1.0"
    );
    let initial = upgrade.parent(0).expect("a parent");
    assert_eq!(
        initial.summary().unwrap().unwrap(),
        "Initial fleet: billing, ledger and storefront 1.0.0"
    );
    assert_eq!(initial.parent_count(), 0);
    // No identity in the environment: init's own.
    assert_eq!(upgrade.author().name().unwrap(), "gantry init");
    assert_eq!(upgrade.author().email().unwrap(), "gantry@localhost");
    // The work tree is committed, scripts keep their executable bit, and what the scripts
    // deployed is ignored.
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).include_ignored(false);
    let statuses = git.statuses(Some(&mut options)).expect("status");
    assert_eq!(statuses.len(), 0, "work tree not clean");
    let entry = upgrade
        .tree()
        .unwrap()
        .get_path(Path::new("scripts/deploy.sh"))
        .unwrap();
    assert_eq!(entry.filemode(), 0o100755);
    // The example plugin is written as a file (it is a symlink in the gantry project).
    let plugin = upgrade
        .tree()
        .unwrap()
        .get_path(Path::new("plugins/gantry-executor-demo.py"))
        .unwrap();
    assert_eq!(plugin.filemode(), 0o100755);
    assert!(demo.join("deployed/acme-billing/version").exists());
    assert!(demo.join("schemas/target.schema.json").exists());

    // The state branch says 1.0.0 everywhere.
    let status = json(&on(root.path(), &demo, &["status", "--format", "json"]).expect(0));
    let targets = status["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 9);
    for t in targets {
        assert_eq!(t["current"], "1.0.0", "{t}");
    }
}

#[test]
fn init_repository_validates() {
    let (root, demo) = init_demo();
    on(root.path(), &demo, &["validate"]).expect(0);
}

#[test]
fn plan_after_init_is_a_multi_hop_upgrade_with_migrations_in_order() {
    let (root, demo) = init_demo();
    let plan = json(&on(root.path(), &demo, &["plan", "--format", "json"]).expect(0));
    let actions = plan["actions"].as_array().expect("actions");
    for name in ["acme-billing", "globex-billing", "initech-billing"] {
        let action = actions.iter().find(|a| a["target"] == name).expect(name);
        assert_eq!(action["action"], "upgrade");
        assert_eq!(action["from"], "1.0.0");
        assert_eq!(action["to"], "2.0.0");
        assert_eq!(
            action["stops"],
            serde_json::json!(["1.2.0", "1.3.0", "2.0.0"]),
            "{name}"
        );
        let migrations: Vec<(&str, &str, &str)> = action["migrations"]
            .as_array()
            .expect("migrations")
            .iter()
            .map(|m| {
                (
                    m["release"].as_str().unwrap(),
                    m["id"].as_str().unwrap(),
                    m["phase"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            migrations,
            [
                ("1.1.0", "add-invoice-index", "pre"),
                ("1.2.0", "currency-column", "pre"),
                ("1.3.0", "backfill-currency", "post"),
                ("2.0.0", "split-namespaces", "pre"),
            ],
            "{name}"
        );
    }
    let acme = actions.iter().find(|a| a["target"] == "acme-billing").unwrap();
    assert_eq!(acme["wave"], "canary");
    let ledger = actions.iter().find(|a| a["target"] == "acme-ledger").unwrap();
    assert_eq!((&ledger["from"], &ledger["to"]), (&"1.0.0".into(), &"1.1.0".into()));
}

#[test]
fn apply_after_init_converges_every_target_canary_first() {
    let (root, demo) = init_demo();
    let run = on(root.path(), &demo, &["apply", "--format", "json"]).expect(0);
    let events: Vec<Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let position = |event: &str, target: &str| {
        events
            .iter()
            .position(|e| e["event"] == event && e["target"] == target)
            .unwrap_or_else(|| panic!("no {event} for {target}"))
    };
    // Canary wave (acme) finishes before the rest of billing starts.
    let canary_done = position("attempt_finished", "acme-billing");
    assert!(canary_done < position("attempt_started", "globex-billing"));
    assert!(canary_done < position("attempt_started", "initech-billing"));
    // The stops are deployed in turn.
    let deploys: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_started" && e["target"] == "acme-billing" && e["kind"] == "deploy")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(deploys, ["04-deploy-1.2.0", "06-deploy-1.3.0", "10-deploy-2.0.0"]);

    let status = json(&on(root.path(), &demo, &["status", "--format", "json"]).expect(0));
    let targets = status["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 9);
    for t in targets {
        let name = t["target"].as_str().unwrap();
        let want = if t["component"] == "billing" { "2.0.0" } else { "1.1.0" };
        assert_eq!(t["current"], want, "{t}");
        assert_eq!(t["desired"], want, "{t}");
        assert_eq!(t["status"], "converged", "{t}");
        assert_eq!(t["next_action"], "noop", "{t}");
        if t["component"] != "storefront" {
            let deployed = std::fs::read_to_string(demo.join("deployed").join(name).join("version")).unwrap();
            assert_eq!(deployed.trim(), want, "{name}");
        }
    }
    let migrations = std::fs::read_to_string(demo.join("deployed/globex-billing/migrations")).unwrap();
    assert_eq!(
        migrations.lines().collect::<Vec<_>>(),
        [
            "add-invoice-index",
            "currency-column",
            "backfill-currency",
            "split-namespaces"
        ]
    );
}

/// The storefront targets of the demo, canary (ring 0) first.
const STOREFRONTS: [&str; 3] = ["acme-storefront", "globex-storefront", "initech-storefront"];

/// The JSON lines of `apply --format json`.
fn events(run: &Run) -> Vec<Value> {
    run.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// The steps `target`'s attempts started, in order.
fn steps_of(events: &[Value], target: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "step_started" && e["target"] == target)
        .map(|e| e["step"].as_str().expect("step name").to_owned())
        .collect()
}

/// How `target`'s step `step` finished: (ok, message).
fn finished(events: &[Value], target: &str, step: &str) -> (bool, String) {
    let e = events
        .iter()
        .find(|e| e["event"] == "step_finished" && e["target"] == target && e["step"] == step)
        .unwrap_or_else(|| panic!("{target}: no step_finished for {step}"));
    (e["ok"].as_bool().unwrap(), e["message"].as_str().unwrap().to_owned())
}

/// What the example plugin recorded per storefront target: version, current weight, and every
/// weight it was asked to shift to (`deployed/storefront.json` in the demo).
fn storefronts(demo: &Path) -> Value {
    let path = demo.join("deployed/storefront.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("the plugin's record is JSON")
}

/// Issue #11 ("the example plugin and the demo show it"): the demo's storefront, run by the
/// example plugin, reaches its new version through the policy's traffic steps, canary first,
/// each weight held under health checks for `traffic.analysis`.
#[test]
fn apply_after_init_moves_storefront_traffic_25_50_100_through_the_example_plugin() {
    let (root, demo) = init_demo();
    // init's own pass installed 1.0.0 through the same steps.
    let installed = storefronts(&demo);
    for name in STOREFRONTS {
        assert_eq!(installed[name]["version"], "1.0.0", "{installed}");
        assert_eq!(
            installed[name]["shifts"],
            serde_json::json!([25, 50, 100]),
            "{installed}"
        );
    }

    let run = on(root.path(), &demo, &["apply", "--format", "json"]).expect(0);
    let events = events(&run);
    for name in STOREFRONTS {
        assert_eq!(
            steps_of(&events, name),
            [
                "01-deploy-1.1.0",
                "02-health-1.1.0",
                "03-shift-25",
                "04-health-1.1.0-at-25",
                "05-shift-50",
                "06-health-1.1.0-at-50",
                "07-shift-100",
                "08-health-1.1.0-at-100",
            ],
            "{name}"
        );
        // Each weight is held: checks every 1 s for 1 s is two rounds (no hold would be one).
        for step in [
            "04-health-1.1.0-at-25",
            "06-health-1.1.0-at-50",
            "08-health-1.1.0-at-100",
        ] {
            assert_eq!(
                finished(&events, name, step),
                (true, "healthy (2 rounds)".to_owned()),
                "{name}"
            );
        }
        let (ok, message) = finished(&events, name, "05-shift-50");
        assert!(ok && message == format!("{name}: 50% of traffic to 1.1.0"), "{message}");
    }
    let position = |event: &str, target: &str| {
        events
            .iter()
            .position(|e| e["event"] == event && e["target"] == target)
            .unwrap_or_else(|| panic!("no {event} for {target}"))
    };
    let canary_done = position("attempt_finished", "acme-storefront");
    assert!(canary_done < position("attempt_started", "globex-storefront"));
    assert!(canary_done < position("attempt_started", "initech-storefront"));

    let record = storefronts(&demo);
    for name in STOREFRONTS {
        let t = &record[name];
        assert_eq!(t["version"], "1.1.0", "{t}");
        assert_eq!(t["weight"], 100, "{t}");
        assert_eq!(t["shifts"], serde_json::json!([25, 50, 100, 25, 50, 100]), "{t}");
    }
}

/// Runs one shell line of the README, as written, from the directory holding `demo/` (with a
/// git identity in the environment for its commit).
fn readme_line(root: &Path, prefix: &str) {
    let readme = std::fs::read_to_string(common::project_path("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("README.md has no line starting with {prefix:?}"));
    let output = std::process::Command::new("sh")
        .args(["-c", line])
        .current_dir(root)
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Demo User")
        .env("GIT_AUTHOR_EMAIL", "demo@example.com")
        .env("GIT_COMMITTER_NAME", "Demo User")
        .env("GIT_COMMITTER_EMAIL", "demo@example.com")
        .output()
        .expect("run sh");
    assert!(output.status.success(), "{line}: {output:?}");
}

/// Issue #11 (a traffic canary failing at a weight ends at weight 0 and rolled back), on the
/// demo through the README's walk-through run as written: the canary's health fails at 50 %,
/// traffic goes back to 0 % before the redeploy of 1.1.0, and the other storefronts are never
/// touched.
#[test]
fn readme_traffic_walkthrough_ends_the_failing_canary_at_weight_0_and_rolled_back() {
    let (root, demo) = init_demo();
    on(root.path(), &demo, &["apply"]).expect(0);
    readme_line(root.path(), "sed -i.bak ");
    readme_line(root.path(), "rm demo/targets/*.bak && git -C demo commit");
    let git = git2::Repository::open(&demo).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.summary().unwrap(), Some("storefront 1.2.0"));

    let run = on(root.path(), &demo, &["apply", "--format", "json"]).expect(2);
    let events = events(&run);
    assert_eq!(
        steps_of(&events, "acme-storefront"),
        [
            "01-deploy-1.2.0",
            "02-health-1.2.0",
            "03-shift-25",
            "04-health-1.2.0-at-25",
            "05-shift-50",
            "06-health-1.2.0-at-50",
            "rb-01-shift-0",
            "rb-02-deploy-1.1.0",
            "rb-03-health-1.1.0",
        ]
    );
    let (ok, message) = finished(&events, "acme-storefront", "06-health-1.2.0-at-50");
    assert!(
        !ok && message.contains("errors at 50% of traffic (demo_fail_weight)"),
        "{message}"
    );
    for name in ["globex-storefront", "initech-storefront"] {
        assert_eq!(steps_of(&events, name), Vec::<String>::new(), "{name} was touched");
    }

    let record = storefronts(&demo);
    let acme = &record["acme-storefront"];
    assert_eq!(acme["version"], "1.1.0", "{acme}");
    assert_eq!(acme["weight"], 0, "{acme}");
    assert_eq!(
        acme["shifts"],
        serde_json::json!([25, 50, 100, 25, 50, 100, 25, 50, 0]),
        "{acme}"
    );
    for name in ["globex-storefront", "initech-storefront"] {
        let t = &record[name];
        assert_eq!((&t["version"], &t["weight"]), (&"1.1.0".into(), &100.into()), "{t}");
    }

    let status = json(&on(root.path(), &demo, &["status", "--format", "json"]).expect(0));
    let row = |name: &str| {
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    let acme = row("acme-storefront");
    assert_eq!(
        (&acme["current"], &acme["desired"]),
        (&"1.1.0".into(), &"1.2.0".into()),
        "{acme}"
    );
    assert_eq!(acme["status"], "rolled_back", "{acme}");
    for name in ["globex-storefront", "initech-storefront"] {
        let t = row(name);
        assert_eq!(t["current"], "1.1.0", "{t}");
        assert!(t["blockers"].to_string().contains("halted"), "{t}");
    }
}

#[test]
fn init_into_a_non_empty_directory_fails_and_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let run = gantry(root.path(), &["init", dir.to_str().unwrap()]).expect(1);
    assert!(
        run.stderr()
            .contains("is not empty: gantry init writes a new example repository"),
        "{}",
        run.stderr()
    );
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
}

#[test]
fn init_into_a_repository_with_commits_fails() {
    let repo = common::Repo::new();
    repo.file("a.txt", "a");
    repo.commit_all("first");
    std::fs::remove_file(repo.path().join("a.txt")).unwrap();
    let run = gantry(repo.path(), &["init", repo.path().to_str().unwrap()]).expect(1);
    // Only `.git` is left, but the repository has history: refuse.
    assert!(
        run.stderr().contains("is a git repository with commits"),
        "{}",
        run.stderr()
    );
}

#[test]
fn init_into_an_empty_git_repository_uses_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("empty");
    git2::Repository::init(&dir).unwrap(); // HEAD may point at master
    gantry(root.path(), &["init", dir.to_str().unwrap()]).expect(0);
    let git = git2::Repository::open(&dir).unwrap();
    assert_eq!(git.head().unwrap().shorthand().unwrap(), "main");
    assert!(git.find_branch("gantry/state", git2::BranchType::Local).is_ok());
}

#[test]
fn init_uses_the_git_identity_when_there_is_one() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join(".gitconfig"),
        "[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n",
    )
    .unwrap();
    let demo = root.path().join("demo");
    gantry(root.path(), &["init", demo.to_str().unwrap()]).expect(0);
    let git = git2::Repository::open(&demo).unwrap();
    let head = git.head().unwrap().peel_to_commit().unwrap();
    assert_eq!(head.author().email().unwrap(), "ada@example.com");
    assert_eq!(head.committer().name().unwrap(), "Ada Lovelace");
}
