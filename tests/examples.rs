//! The example repositories under `examples/` (issue #16, "What it must show"), run end to end:
//! each is copied into a fresh git repository, validated, planned and applied with `--now` (no
//! test sleeps: soaks and windows are crossed by moving `--now`), its end state checked through
//! `gantry status --format json` and the files its scripts wrote, and then one realistic change
//! is made and its outcome checked.
//!
//! Each example's first convergence is a story of its own (asserted step by step) run once per
//! test binary; the tests of a change start from a copy of that converged repository.

mod common;

use std::path::{Path, PathBuf};
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

/// `gantry status --now NOW --format json`.
fn status_json(repo: &Repo, now: &str) -> Value {
    let out = run(repo, &["--now", now, "status", "--format", "json"], 0);
    serde_json::from_str(&out).expect("status JSON")
}

/// `gantry status --now NOW --format json`: per target, (current version, status).
fn status(repo: &Repo, now: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let json = status_json(repo, now);
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
fn copy_of(template: &'static OnceLock<PathBuf>, name: &str, story: fn() -> Repo) -> Repo {
    let source = template.get_or_init(|| {
        let repo = story();
        // One directory per example and process under the target directory: a static is never
        // dropped, so a temporary directory would be left behind. Per process, because nextest
        // runs each test in a process of its own, and one replacing the directory while another
        // copied from it failed that one. Those of processes that are gone are removed here.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let prefix = format!("example-{name}-");
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = file_name.strip_prefix(&prefix)
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let path = root.join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("mkdir");
        copy_tree(repo.path(), &path);
        path
    });
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(source, dir.path());
    let git = git2::Repository::open(dir.path()).expect("open copy");
    Repo { dir, git }
}

/// Every manifest of the three examples (each YAML document with a gantry `apiVersion`) and each
/// `gantry.toml` passes the JSON Schema of its kind, the one its `$schema` modeline names: an
/// editor shows no false error in an example a user copies.
#[test]
fn example_manifests_pass_their_json_schemas() {
    use gantry::manifest::document::{parse_toml, parse_yaml};
    use gantry::manifest::schema::{SchemaKind, validate};

    fn files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut checked = 0;
    let mut failures = String::new();
    for example in ["agents", "installations", "erp"] {
        let mut paths = Vec::new();
        files(&common::project_path(&format!("examples/{example}")), &mut paths);
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("read");
            let documents = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml") => parse_yaml(&text)
                    .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()))
                    .iter()
                    .map(|d| d.to_json())
                    .filter(|json| json["apiVersion"] == "gantry.dev/v1")
                    .map(|json| {
                        let kind = json["kind"].as_str().and_then(SchemaKind::from_name);
                        (kind.unwrap_or_else(|| panic!("{}: unknown kind", path.display())), json)
                    })
                    .collect(),
                Some("toml") => {
                    let node = parse_toml(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                    vec![(SchemaKind::Config, node.to_json())]
                }
                _ => vec![],
            };
            for (kind, json) in documents {
                checked += 1;
                for violation in validate(kind, &json) {
                    failures.push_str(&format!("\n{}: {} | {violation}", path.display(), violation.pointer));
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} manifests found");
    assert!(failures.is_empty(), "schema violations:{failures}");
}

// ---------------------------------------------------------------------------------------------
// examples/agents: canary, traffic steps, hot config with a configSchema.

const AGENTS_T0: &str = "2026-10-20T10:00:00Z";

/// The agents' event log (`deploy V`, `shift W`, `reload`) of one instance.
fn agent_events(repo: &Repo, instance: &str) -> Vec<String> {
    let state = written(repo, &format!("instances/{instance}.json"));
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
    assert!(!repo.path().join("instances/orchestrator-1.json").exists());

    // Inside the canary's soak nothing else starts.
    run(&repo, &["--now", "2026-10-20T10:29:00Z", "apply"], 0);
    assert!(
        !repo.path().join("instances/orchestrator-1.json").exists(),
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
    let memory = written(&repo, "instances/memory-1.json");
    assert_eq!(memory["candidate"], "0.4.2");
    assert_eq!(memory["weight"], 100);
    assert_eq!(
        memory["config"]["max_context_gb"], 10,
        "deployed with its config: {memory:#}"
    );
    repo
}

static AGENTS: OnceLock<PathBuf> = OnceLock::new();

#[test]
fn agents_example_converges_canary_first_with_traffic_steps() {
    let repo = copy_of(&AGENTS, "agents", agents_story);
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
    let repo = copy_of(&AGENTS, "agents", agents_story);
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
            written(&repo, &format!("instances/{instance}.json"))["config"]["max_context_gb"],
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
    let repo = copy_of(&AGENTS, "agents", agents_story);
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
    let canary = written(&repo, "instances/orchestrator-0.json");
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

/// The domain's manual rollback: memory 0.4.3 went out (canary, then the rest after the soak);
/// the on-call engineer rolls both instances back with `gantry rollback`, which commits the pin
/// to 0.4.2 with their name and reason. The downgrade goes to both at once (no canary wave, no
/// traffic steps: 0.4.2 is a rollback point), and history says who asked and why.
#[test]
fn agents_example_manual_rollback_goes_back_at_once() {
    let repo = copy_of(&AGENTS, "agents", agents_story);
    edit(&repo, "targets/memory.yaml", "version: 0.4.2", "version: 0.4.3");
    repo.commit_all("memory 0.4.3");
    run(&repo, &["--now", "2026-10-21T10:00:00Z", "apply"], 0);
    run(&repo, &["--now", "2026-10-21T10:31:00Z", "apply"], 0);
    assert_status(
        &repo,
        "2026-10-21T10:31:00Z",
        &[("memory-0", "0.4.3", "converged"), ("memory-1", "0.4.3", "converged")],
    );

    let reason = "context crashes are back at 8 GB";
    let rollback = assert_cmd::Command::cargo_bin("gantry")
        .expect("binary")
        .arg("--repo")
        .arg(repo.path())
        .args(["rollback", "memory-0", "memory-1", "--reason", reason])
        .env_remove("GANTRY_NOW")
        .env("GIT_AUTHOR_NAME", "On Call")
        .env("GIT_AUTHOR_EMAIL", "oncall@agents.example")
        .env("GIT_COMMITTER_NAME", "On Call")
        .env("GIT_COMMITTER_EMAIL", "oncall@agents.example")
        .output()
        .expect("run gantry rollback");
    assert!(
        rollback.status.success(),
        "{}",
        String::from_utf8_lossy(&rollback.stderr)
    );
    let plan = plan(&repo, "2026-10-21T11:00:00Z");
    for instance in ["memory-0", "memory-1"] {
        let a = action(&plan, instance);
        assert_eq!(
            (a["action"].as_str(), a["status"].as_str(), a["to"].as_str()),
            (Some("downgrade"), Some("ready"), Some("0.4.2")),
            "{a:#}"
        );
    }
    run(&repo, &["--now", "2026-10-21T11:00:00Z", "apply"], 0);
    for instance in ["memory-0", "memory-1"] {
        let state = written(&repo, &format!("instances/{instance}.json"));
        assert_eq!(
            (
                state["live"].as_str(),
                state["candidate"].as_str(),
                state["weight"].as_i64()
            ),
            (Some("0.4.2"), None, Some(0)),
            "{state:#}"
        );
        assert_eq!(
            agent_events(&repo, instance).last().map(String::as_str),
            Some("deploy 0.4.2")
        );
    }
    assert_status(
        &repo,
        "2026-10-21T11:00:00Z",
        &[("memory-0", "0.4.2", "converged"), ("memory-1", "0.4.2", "converged")],
    );
    let history = run(&repo, &["history", "memory-1"], 0);
    assert!(
        history.contains(&format!(
            "memory 0.4.3 → 0.4.2  succeeded · by On Call <oncall@agents.example> · reason: {reason}"
        )),
        "{history}"
    );
}

// ---------------------------------------------------------------------------------------------
// examples/installations: channels, per-customer windows, signed releases.

const INSTALLATIONS_T0: &str = "2026-09-30T10:00:00Z";

/// The release manager's key, made once per test binary (the example's allowed signers are
/// replaced by it, as its README tells a user to do with their own key).
struct Signers {
    _dir: tempfile::TempDir,
    release_manager: PathBuf,
    release_manager_pub: String,
    intruder: PathBuf,
}

fn signers() -> &'static Signers {
    static SIGNERS: OnceLock<Signers> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (release_manager, release_manager_pub) = common::keypair(dir.path(), "release-manager");
        let (intruder, _) = common::keypair(dir.path(), "intruder");
        Signers {
            _dir: dir,
            release_manager,
            release_manager_pub,
            intruder,
        }
    })
}

/// `git add -A && git commit -S` (or `--amend`) with `key`, by the git CLI.
fn signed_commit(repo: &Repo, message: &str, key: &Path, amend: bool) {
    common::git_cli(repo, &["add", "-A"]);
    let signing = format!("user.signingkey={}", key.display());
    let mut args = vec!["-c", signing.as_str(), "commit", "-q", "-S", "-m", message];
    if amend {
        args.push("--amend");
    }
    common::git_cli(repo, &args);
}

/// The version an installation's scripts recorded.
fn installed(repo: &Repo, name: &str) -> String {
    std::fs::read_to_string(repo.path().join(format!("installations/{name}/version")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The rule pack an installation's engine loaded.
fn rule_pack(repo: &Repo, name: &str) -> String {
    std::fs::read_to_string(repo.path().join(format!("installations/{name}/rules")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn schema_migrations(repo: &Repo, name: &str) -> Vec<String> {
    std::fs::read_to_string(repo.path().join(format!("installations/{name}/schema_migrations")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Adds a stable diagnostics release VERSION (its bundle, and a Release with the bundle's
/// sha256 and `extra` spec lines) to the work tree, as the README says to publish one.
fn publish(repo: &Repo, version: &str, extra: &str) {
    let bundle =
        format!("{{\n  \"product\": \"diagnostics\",\n  \"version\": \"{version}\",\n  \"channel\": \"stable\"\n}}\n");
    repo.file(&format!("bundles/diagnostics-{version}.json"), &bundle);
    let releases = std::fs::read_to_string(repo.path().join("releases/diagnostics.yaml")).unwrap();
    repo.file(
        "releases/diagnostics.yaml",
        &format!(
            "{releases}---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: diagnostics-{version} }}\nspec:\n  component: diagnostics\n  version: {version}\n  upgradeFrom: \">=2.0.0\"\n  artifacts:\n    - {{ path: bundles/diagnostics-{version}.json, sha256: {} }}\n{extra}",
            common::sha256_hex(bundle.as_bytes())
        ),
    );
}

/// The installations example, signed by a generated release manager key, from a fresh copy to
/// every installation converged: QA first, then each customer in its own window once QA has
/// run the release for 48 hours; the beta channel gets the prerelease.
fn installations_story() -> Repo {
    let repo = Repo::new();
    copy_tree(&common::project_path("examples/installations"), repo.path());
    let shipped = std::fs::read_to_string(repo.path().join("trust/allowed_signers")).unwrap();
    assert!(
        shipped.lines().all(|l| l.trim().is_empty() || l.starts_with('#')),
        "the example must ship without a key: {shipped}"
    );
    repo.file(
        "trust/allowed_signers",
        &format!(
            "{shipped}release-manager@diagnostics.example namespaces=\"git\" {}\n",
            signers().release_manager_pub
        ),
    );
    signed_commit(&repo, "installations", &signers().release_manager, false);
    let said = run(&repo, &["validate"], 0);
    assert!(
        said.contains("2 components, 6 releases, 10 targets, 2 policies, 3 windows"),
        "{said}"
    );

    let plan0 = plan(&repo, INSTALLATIONS_T0);
    for (target, to, status, wave) in [
        ("qa-stable", "2.4.1", "ready", "qa"),
        ("qa-beta", "2.5.0-beta.1", "ready", "qa"),
        ("northwind", "2.4.1", "blocked", "customers"),
        ("contoso", "2.4.1", "blocked", "customers"),
        ("fabrikam", "2.5.0-beta.1", "blocked", "customers"),
    ] {
        let a = action(&plan0, target);
        assert_eq!(
            (
                a["action"].as_str(),
                a["to"].as_str(),
                a["status"].as_str(),
                a["wave"].as_str()
            ),
            (Some("install"), Some(to), Some(status), Some(wave)),
            "{a:#}"
        );
    }
    assert_eq!(blocker_kinds(&plan0, "northwind"), ["window", "wave"]);

    run(&repo, &["--now", INSTALLATIONS_T0, "apply"], 0);
    assert_eq!(installed(&repo, "qa-stable"), "2.4.1");
    assert_eq!(installed(&repo, "qa-beta"), "2.5.0-beta.1");
    assert_eq!(
        rule_pack(&repo, "qa-beta"),
        "2026-09-28-002",
        "the newest pack, by date and sequence"
    );
    assert_eq!(rule_pack(&repo, "northwind"), "", "loaded before its engine");
    assert_eq!(
        schema_migrations(&repo, "qa-beta"),
        ["diagnostics-ml-score", "remediation-rules-v2"]
    );
    assert_eq!(written(&repo, "installations/qa-beta/bundle.json")["channel"], "beta");
    assert_eq!(installed(&repo, "northwind"), "");

    // Saturday 01:00 UTC: 03:00 in Berlin (open), Friday 21:00 in New York, Saturday 10:00 in
    // Tokyo; QA has run both releases for more than 48 hours.
    let saturday = "2026-10-03T01:00:00Z";
    // (A plan cannot run the QA wave's last analysis round, which the apply does.)
    run(&repo, &["--now", saturday, "apply"], 0);
    assert_eq!(installed(&repo, "northwind"), "2.4.1");
    assert_eq!(installed(&repo, "contoso"), "", "installed outside its window");
    let plan1 = plan(&repo, saturday);
    for (target, opens) in [
        ("contoso", "2026-10-03T02:00:00-04:00"),
        ("fabrikam", "2026-10-04T02:00:00+09:00"),
    ] {
        let a = action(&plan1, target);
        assert_eq!(blocker_kinds(&plan1, target), ["window"], "{a:#}");
        assert_eq!(a["blocked_by"][0]["opens_at"], opens, "{a:#}");
    }

    run(&repo, &["--now", "2026-10-03T06:30:00Z", "apply"], 0);
    assert_eq!(installed(&repo, "contoso"), "2.4.1");
    assert_eq!(installed(&repo, "fabrikam"), "");
    run(&repo, &["--now", "2026-10-03T17:30:00Z", "apply"], 0);
    assert_status(
        &repo,
        "2026-10-03T17:30:00Z",
        &[
            ("qa-stable", "2.4.1", "converged"),
            ("qa-beta", "2.5.0-beta.1", "converged"),
            ("northwind", "2.4.1", "converged"),
            ("contoso", "2.4.1", "converged"),
            ("fabrikam", "2.5.0-beta.1", "converged"),
            ("northwind-rules", "2026-09-28-002", "converged"),
            ("fabrikam-rules", "2026-09-28-002", "converged"),
        ],
    );
    assert_eq!(
        schema_migrations(&repo, "fabrikam"),
        ["diagnostics-ml-score", "remediation-rules-v2"]
    );
    repo
}

static INSTALLATIONS: OnceLock<PathBuf> = OnceLock::new();

#[test]
fn installations_example_upgrades_qa_first_then_each_customer_in_its_window() {
    let repo = copy_of(&INSTALLATIONS, "installations", installations_story);
    let history = run(&repo, &["history", "--format", "json"], 0);
    assert_eq!(history.matches("\"succeeded\"").count(), 10, "{history}");
    assert_eq!(
        written(&repo, "installations/northwind/bundle.json")["version"],
        "2.4.1"
    );
}

/// Publishing 2.4.2 (a security fix): unsigned, or signed by a key not in the allowed signers,
/// nothing is applied; signed by the release manager, QA takes it at once and the customers on
/// the stable channel wait for the QA soak, while the beta customer stays on its prerelease.
#[test]
fn installations_example_refuses_an_unsigned_release_and_applies_the_signed_one() {
    let repo = copy_of(&INSTALLATIONS, "installations", installations_story);
    let monday = "2026-10-05T09:00:00Z";
    publish(
        &repo,
        "2.4.2",
        "  released: 2026-10-02\n  changelog:\n    security: [\"CVE-2026-1234 patched\"]\n",
    );
    repo.commit_all("diagnostics 2.4.2");
    let refused = repo.gantry(&["--now", monday, "apply"]).expect(1);
    assert!(
        refused
            .stderr()
            .contains("is not signed by an allowed signer (it has no signature); nothing was applied"),
        "{}",
        refused.stderr()
    );
    assert_eq!(installed(&repo, "qa-stable"), "2.4.1");

    signed_commit(&repo, "diagnostics 2.4.2", &signers().intruder, true);
    let refused = repo.gantry(&["--now", monday, "apply"]).expect(1);
    assert!(
        refused.stderr().contains("is not signed by an allowed signer"),
        "{}",
        refused.stderr()
    );
    assert_eq!(installed(&repo, "qa-stable"), "2.4.1");

    signed_commit(&repo, "diagnostics 2.4.2", &signers().release_manager, true);
    let plan = plan(&repo, monday);
    let qa = action(&plan, "qa-stable");
    assert_eq!(
        (qa["action"].as_str(), qa["to"].as_str(), qa["status"].as_str()),
        (Some("upgrade"), Some("2.4.2"), Some("ready"))
    );
    assert!(blocker_kinds(&plan, "northwind").contains(&"wave".to_string()));
    assert_eq!(
        action(&plan, "fabrikam")["action"],
        "noop",
        "the beta channel keeps 2.5.0-beta.1"
    );

    run(&repo, &["--now", monday, "apply"], 0);
    assert_eq!(installed(&repo, "qa-stable"), "2.4.2");
    assert_status(
        &repo,
        monday,
        &[
            ("qa-stable", "2.4.2", "converged"),
            ("northwind", "2.4.1", "pending"),
            ("fabrikam", "2.5.0-beta.1", "converged"),
        ],
    );
    assert!(
        repo.path().join("backups").read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("qa-stable-")),
        "no pre-update backup"
    );
}

/// A rule pack (a calver release, `2026-10-06-001`) published on a Tuesday: a new day is a
/// minor update, which the rule-packs policy lets go out at once, outside the customers'
/// weekend windows, to every installation of both channels; the engines are not touched.
#[test]
fn installations_example_a_dated_rule_pack_reaches_every_installation_at_once() {
    let repo = copy_of(&INSTALLATIONS, "installations", installations_story);
    let releases = std::fs::read_to_string(repo.path().join("releases/rules.yaml")).unwrap();
    repo.file(
        "releases/rules.yaml",
        &format!(
            "{releases}---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: rules-2026-10-06-001 }}\nspec: {{ component: rules, version: 2026-10-06-001, released: 2026-10-06 }}\n"
        ),
    );
    signed_commit(&repo, "rules 2026-10-06-001", &signers().release_manager, false);
    let tuesday = "2026-10-06T09:00:00Z";
    let plan = plan(&repo, tuesday);
    for name in ["qa-stable", "northwind", "contoso", "fabrikam"] {
        let a = action(&plan, &format!("{name}-rules"));
        assert_eq!(
            (
                a["action"].as_str(),
                a["from"].as_str(),
                a["to"].as_str(),
                a["status"].as_str(),
                a["update_type"].as_str()
            ),
            (
                Some("upgrade"),
                Some("2026-09-28-002"),
                Some("2026-10-06-001"),
                Some("ready"),
                Some("minor")
            ),
            "{a:#}"
        );
        assert_eq!(action(&plan, name)["action"], "noop");
    }
    run(&repo, &["--now", tuesday, "apply"], 0);
    for name in ["qa-stable", "qa-beta", "northwind", "contoso", "fabrikam"] {
        assert_eq!(rule_pack(&repo, name), "2026-10-06-001", "{name}");
    }
    assert_status(
        &repo,
        tuesday,
        &[
            ("contoso-rules", "2026-10-06-001", "converged"),
            ("contoso", "2.4.1", "converged"),
        ],
    );
}

/// An emergency release (a fix for an exploited hole, `urgency: emergency` with its reason):
/// QA takes it at once, and once QA has run it through the wave's soak the customers get it on
/// a Friday, outside their weekend windows, one of them (contoso) on a frozen holiday; the
/// state branch records the urgency and the reason.
#[test]
fn installations_example_emergency_release_passes_windows_and_freezes_after_qa() {
    let repo = copy_of(&INSTALLATIONS, "installations", installations_story);
    let reason = "CVE-2026-4242: remote code execution in the report renderer, exploited";
    publish(
        &repo,
        "2.4.3",
        &format!("  released: 2026-12-23\n  urgency: emergency\n  reason: \"{reason}\"\n"),
    );
    signed_commit(
        &repo,
        "diagnostics 2.4.3 (emergency)",
        &signers().release_manager,
        false,
    );

    let wednesday = "2026-12-23T09:00:00Z";
    let plan = plan(&repo, wednesday);
    let qa = action(&plan, "qa-stable");
    assert_eq!(
        (
            qa["to"].as_str(),
            qa["status"].as_str(),
            qa["urgency"].as_str(),
            qa["reason"].as_str()
        ),
        (Some("2.4.3"), Some("ready"), Some("emergency"), Some(reason)),
        "{qa:#}"
    );
    for customer in ["northwind", "contoso"] {
        assert_eq!(
            blocker_kinds(&plan, customer),
            ["wave"],
            "no window holds an emergency: {plan:#}"
        );
    }
    run(&repo, &["--now", wednesday, "apply"], 0);
    assert_eq!(installed(&repo, "qa-stable"), "2.4.3");
    assert_eq!(installed(&repo, "northwind"), "2.4.1", "before the QA soak");

    // Friday 25 December: 11:00 in Berlin, 05:00 in New York on contoso's frozen holiday.
    let christmas = "2026-12-25T10:00:00Z";
    run(&repo, &["--now", christmas, "apply"], 0);
    assert_eq!(installed(&repo, "northwind"), "2.4.3");
    assert_eq!(installed(&repo, "contoso"), "2.4.3");
    let history: Value = serde_json::from_str(&run(&repo, &["history", "contoso", "--format", "json"], 0)).unwrap();
    let last = history
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["to"] == "2.4.3"))
        .cloned();
    let last = last.unwrap_or_else(|| panic!("no 2.4.3 row in {history:#}"));
    assert_eq!(
        (last["urgency"].as_str(), last["emergency_reason"].as_str()),
        (Some("emergency"), Some(reason)),
        "{last:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// examples/erp: a Fleet of tenant services on a shared Kafka, tenants' windows, quiesce/resume.

const TENANTS: [&str; 3] = ["alpine-clinics", "harbor-logistics", "sakura-retail"];
const SERVICES: [&str; 3] = ["finance-ar", "sales-billing", "inventory"];

/// The lines a service's scripts logged (`deploy V`, `workflows stopped`, `migrate up ID`, …).
fn erp_log(repo: &Repo, target: &str) -> Vec<String> {
    std::fs::read_to_string(repo.path().join(format!("erp/{target}/log")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The ERP slice from a fresh copy to every service converged: Kafka first, then each tenant's
/// services (finance-ar before sales-billing) in that tenant's Sunday window.
fn erp_story() -> Repo {
    let repo = Repo::from_dir("examples/erp");
    let said = run(&repo, &["validate"], 0);
    assert!(
        said.contains("4 components, 7 releases, 10 targets, 2 policies, 3 windows"),
        "{said}"
    );
    let listed = status_json(&repo, "2026-10-04T00:30:00Z");
    let generated = listed["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "harbor-logistics-inventory");
    assert_eq!(
        generated.map(|t| &t["labels"]),
        Some(&serde_json::json!({"tenant": "harbor-logistics", "fleet": "erp", "env": "prod", "region": "us"})),
        "the Fleet generates <tenant>-<service> with its labels"
    );

    // Sunday 00:30 UTC: 02:30 in Zurich, Saturday 19:30 in Chicago, Sunday 09:30 in Tokyo.
    let zurich = "2026-10-04T00:30:00Z";
    let plan0 = plan(&repo, zurich);
    assert_eq!(action(&plan0, "kafka-main")["status"], "ready");
    let held = action(&plan0, "alpine-clinics-finance-ar");
    assert_eq!(blocker_kinds(&plan0, "alpine-clinics-finance-ar"), ["dependency"]);
    assert!(
        held["blocked_by"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("waits for kafka-main (kafka none → 3.7.1) to finish first: component `finance-ar` dependsOn `kafka` (shared: scope=shared)"),
        "{held:#}"
    );
    assert_eq!(
        blocker_kinds(&plan0, "alpine-clinics-sales-billing"),
        ["dependency", "dependency"]
    );
    for (tenant, opens) in [
        ("harbor-logistics", "2026-10-04T02:00:00-05:00"),
        ("sakura-retail", "2026-10-11T02:00:00+09:00"),
    ] {
        let a = action(&plan0, &format!("{tenant}-inventory"));
        assert_eq!(
            blocker_kinds(&plan0, &format!("{tenant}-inventory")),
            ["window", "dependency"],
            "{a:#}"
        );
        assert_eq!(a["blocked_by"][0]["opens_at"], opens);
    }

    run(&repo, &["--now", zurich, "apply"], 0);
    assert_eq!(erp_log(&repo, "kafka-main"), ["deploy 3.7.1"]);
    assert_eq!(
        erp_log(&repo, "alpine-clinics-finance-ar"),
        ["workflows stopped", "deploy 1.4.0", "workflows started"],
        "an install runs between quiesce and resume"
    );
    assert!(
        erp_log(&repo, "harbor-logistics-finance-ar").is_empty(),
        "outside its window"
    );
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.path().join("erp/alpine-clinics-finance-ar/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config,
        serde_json::json!({"currency": "CHF", "posting_batch_size": 500, "dunning": true})
    );

    run(&repo, &["--now", "2026-10-04T07:30:00Z", "apply"], 0); // 02:30 in Chicago
    assert_eq!(erp_log(&repo, "harbor-logistics-sales-billing").len(), 3);
    assert!(
        erp_log(&repo, "sakura-retail-finance-ar").is_empty(),
        "outside its window"
    );
    run(&repo, &["--now", "2026-10-10T17:30:00Z", "apply"], 0); // Sunday 02:30 in Tokyo
    let mut expected = vec![("kafka-main".to_string(), "3.7.1")];
    for tenant in TENANTS {
        for (service, version) in SERVICES.iter().zip(["1.4.0", "1.0.3", "4.2.0"]) {
            expected.push((format!("{tenant}-{service}"), version));
        }
    }
    let all = status(&repo, "2026-10-10T17:30:00Z");
    for (target, version) in &expected {
        assert_eq!(
            all.get(target),
            Some(&(version.to_string(), "converged".to_string())),
            "{target}"
        );
    }
    repo
}

static ERP: OnceLock<PathBuf> = OnceLock::new();

#[test]
fn erp_example_installs_shared_kafka_first_then_each_tenant_in_its_window() {
    let repo = copy_of(&ERP, "erp", erp_story);
    let history = run(&repo, &["history", "--format", "json"], 0);
    assert_eq!(history.matches("\"succeeded\"").count(), 10, "{history}");
    for tenant in TENANTS {
        assert_eq!(
            std::fs::read_to_string(repo.path().join(format!("erp/{tenant}-finance-ar/workflows"))).unwrap(),
            "running\n"
        );
    }
}

/// Kafka 3.8.0 and finance-ar 2.0.0 in one commit, on the next Sunday: Kafka goes first, then
/// alpine-clinics' finance-ar (workflows stopped, expand, deploy, contract, workflows started);
/// the other tenants wait for their windows. A config value the schema refuses never lands.
#[test]
fn erp_example_upgrades_shared_kafka_before_tenant_services_with_workflows_stopped() {
    let repo = copy_of(&ERP, "erp", erp_story);
    edit(&repo, "fleets/erp.yaml", "currency: CHF", "currency: chf");
    repo.commit_all("alpine-clinics: currency");
    let refused = repo.gantry(&["validate"]).expect(1);
    assert!(
        refused.stderr().contains(
            "fleets/erp.yaml:23:76: Target `alpine-clinics-finance-ar` of Fleet `erp`: spec.config.currency: \"chf\" does not match \"^[A-Z]{3}$\" (the configSchema of component `finance-ar`)"
        ),
        "{}",
        refused.stderr()
    );
    edit(&repo, "fleets/erp.yaml", "currency: chf", "currency: CHF");
    edit(&repo, "targets/kafka.yaml", "version: 3.7.1", "version: 3.8.0");
    // One line upgrades every tenant's finance-ar.
    edit(
        &repo,
        "fleets/erp.yaml",
        "{ component: finance-ar, version: 1.4.0,",
        "{ component: finance-ar, version: 2.0.0,",
    );
    repo.commit_all("kafka 3.8.0, finance-ar 2.0.0");

    let sunday = "2026-10-11T00:30:00Z"; // 02:30 in Zurich
    let plan = plan(&repo, sunday);
    assert_eq!(action(&plan, "kafka-main")["status"], "ready");
    assert_eq!(blocker_kinds(&plan, "alpine-clinics-finance-ar"), ["dependency"]);
    assert_eq!(
        blocker_kinds(&plan, "harbor-logistics-finance-ar"),
        ["window", "dependency"]
    );
    let migrations: Vec<&str> = action(&plan, "alpine-clinics-finance-ar")["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["phase"].as_str().unwrap())
        .collect();
    assert_eq!(migrations, ["pre", "post"]);

    run(&repo, &["--now", sunday, "apply"], 0);
    assert_eq!(erp_log(&repo, "kafka-main"), ["deploy 3.7.1", "deploy 3.8.0"]);
    assert_eq!(
        erp_log(&repo, "alpine-clinics-finance-ar")[3..],
        [
            "workflows stopped",
            "migrate up open-items-legal-entity-expand",
            "deploy 2.0.0",
            "migrate up open-items-legal-entity-contract",
            "workflows started",
        ]
    );
    assert_eq!(
        erp_log(&repo, "harbor-logistics-finance-ar").len(),
        3,
        "changed outside its window"
    );
    assert_status(
        &repo,
        sunday,
        &[
            ("kafka-main", "3.8.0", "converged"),
            ("alpine-clinics-finance-ar", "2.0.0", "converged"),
            ("harbor-logistics-finance-ar", "1.4.0", "pending"),
            ("sakura-retail-finance-ar", "1.4.0", "pending"),
        ],
    );
}

/// sales-billing 1.1.0 requires finance-ar 2.0.0 (its invoices carry a legal entity): pinned
/// for a tenant whose finance-ar stays on 1.4.0 it is a violation at the Fleet's line and
/// nothing is deployed; pinned together with finance-ar 2.0.0, finance-ar goes first and the
/// test invoice of sales-billing's health check is accepted.
#[test]
fn erp_example_requires_refuses_an_incompatible_pin_and_orders_the_compatible_one() {
    let repo = copy_of(&ERP, "erp", erp_story);
    edit(
        &repo,
        "fleets/erp.yaml",
        "config: { invoice_prefix: HL } }",
        "config: { invoice_prefix: HL }, version: 1.1.0 }",
    );
    repo.commit_all("harbor-logistics: sales-billing 1.1.0");
    let refused = repo.gantry(&["validate"]).expect(2);
    assert!(
        refused.stderr().contains(
            "fleets/erp.yaml:27:102: Target `harbor-logistics-sales-billing` of Fleet `erp`: target `harbor-logistics-sales-billing`: sales-billing 1.1.0 requires finance-ar >=2.0.0 (tenant=harbor-logistics), but harbor-logistics-finance-ar is to run finance-ar 1.4.0"
        ),
        "{}",
        refused.stderr()
    );
    let chicago = "2026-10-11T07:30:00Z"; // Sunday 02:30 in Chicago
    repo.gantry(&["--now", chicago, "apply"]).expect(2);
    assert_eq!(
        erp_log(&repo, "harbor-logistics-sales-billing").len(),
        3,
        "an incompatible version was deployed"
    );

    edit(
        &repo,
        "fleets/erp.yaml",
        "config: { currency: USD } }",
        "config: { currency: USD }, version: 2.0.0 }",
    );
    repo.commit_all("harbor-logistics: finance-ar 2.0.0 with sales-billing 1.1.0");
    run(&repo, &["validate"], 0);
    let plan = plan(&repo, chicago);
    let held = action(&plan, "harbor-logistics-sales-billing");
    let reasons: Vec<&str> = held["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("sales-billing 1.1.0 requires finance-ar >=2.0.0 (tenant=harbor-logistics)")),
        "{held:#}"
    );
    run(&repo, &["--now", chicago, "apply"], 0);
    assert_eq!(
        erp_log(&repo, "harbor-logistics-sales-billing")[3..],
        ["workflows stopped", "deploy 1.1.0", "workflows started"]
    );
    assert_status(
        &repo,
        chicago,
        &[
            ("harbor-logistics-finance-ar", "2.0.0", "converged"),
            ("harbor-logistics-sales-billing", "1.1.0", "converged"),
            ("alpine-clinics-sales-billing", "1.0.3", "converged"),
        ],
    );
}

/// finance-ar 2.0.0 for every tenant, whose contract migration fails on harbor-logistics' data:
/// in Chicago's window that upgrade is rolled back (the expand migration undone, 1.4.0 deployed
/// again), and the rollback ends by starting the workflows the upgrade had stopped (a failed
/// upgrade never leaves them stopped). The other tenants wait for their own windows.
#[test]
fn erp_example_failed_migration_rolls_back_and_resumes_the_workflows() {
    let repo = copy_of(&ERP, "erp", erp_story);
    edit(
        &repo,
        "fleets/erp.yaml",
        "{ component: finance-ar, version: 1.4.0,",
        "{ component: finance-ar, version: 2.0.0,",
    );
    let failing = std::fs::read_to_string(repo.path().join("simulate/failing-migrations")).unwrap();
    repo.file(
        "simulate/failing-migrations",
        &format!("{failing}harbor-logistics-finance-ar open-items-legal-entity-contract\n"),
    );
    repo.commit_all("finance-ar 2.0.0");
    let chicago = "2026-10-11T07:30:00Z"; // Sunday 02:30 in Chicago
    let apply = repo.gantry(&["--now", chicago, "apply"]).expect(2);
    assert!(
        apply
            .stderr()
            .contains("rolling back (step 06-migrate_up-open-items-legal-entity-contract failed"),
        "{}",
        apply.stderr()
    );
    assert_eq!(
        erp_log(&repo, "harbor-logistics-finance-ar")[3..],
        [
            "workflows stopped",
            "migrate up open-items-legal-entity-expand",
            "deploy 2.0.0",
            "migrate up open-items-legal-entity-contract failed",
            "migrate down open-items-legal-entity-expand",
            "deploy 1.4.0",
            "workflows started",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(repo.path().join("erp/harbor-logistics-finance-ar/workflows")).unwrap(),
        "running\n"
    );
    assert_status(
        &repo,
        chicago,
        &[
            ("harbor-logistics-finance-ar", "1.4.0", "rolled_back"),
            ("alpine-clinics-finance-ar", "1.4.0", "pending"),
        ],
    );
    assert_eq!(
        erp_log(&repo, "alpine-clinics-finance-ar").len(),
        3,
        "changed outside its window"
    );
}

/// Break-glass: once alpine-clinics runs finance-ar 2.0.0, putting 1.4.0 back (a revert of the
/// Fleet line) is held until two of the listed leads approve it (an Approval of finance-ar
/// 1.4.0 for that tenant, as `gantry approve` writes); one listed approver and one address not
/// listed are not enough. Approved, the downgrade undoes the contract and expand migrations,
/// newest first, between quiesce and resume.
#[test]
fn erp_example_break_glass_rollback_needs_two_approvers() {
    let repo = copy_of(&ERP, "erp", erp_story);
    let fleet_line = [
        "{ component: finance-ar, version: 1.4.0,",
        "{ component: finance-ar, version: 2.0.0,",
    ];
    edit(&repo, "fleets/erp.yaml", fleet_line[0], fleet_line[1]);
    repo.commit_all("finance-ar 2.0.0");
    let zurich = "2026-10-11T00:30:00Z"; // Sunday 02:30 in Zurich
    run(&repo, &["--now", zurich, "apply"], 0);
    assert_status(&repo, zurich, &[("alpine-clinics-finance-ar", "2.0.0", "converged")]);

    edit(&repo, "fleets/erp.yaml", fleet_line[1], fleet_line[0]);
    repo.commit_all("finance-ar back to 1.4.0");
    let approval = |by: &str| {
        format!(
            "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: {{ name: alpine-clinics-finance-ar-1.4.0 }}\nspec: {{ component: finance-ar, version: 1.4.0, selector: {{ tenant: alpine-clinics }}, approvedBy: [{by}] }}\n"
        )
    };
    repo.file(
        "approvals/alpine-clinics-finance-ar.yaml",
        &approval("ops-lead@erp.example, mallory@erp.example"),
    );
    repo.commit_all("approve the finance-ar rollback (ops lead)");
    let later = "2026-10-11T01:00:00Z";
    let plan = plan(&repo, later);
    let held = action(&plan, "alpine-clinics-finance-ar");
    assert_eq!(
        (held["action"].as_str(), held["status"].as_str()),
        (Some("downgrade"), Some("blocked")),
        "{held:#}"
    );
    assert_eq!(
        blocker_kinds(&plan, "alpine-clinics-finance-ar"),
        ["approval"],
        "{held:#}"
    );
    assert_eq!(
        held["approvals"]["have"],
        serde_json::json!(["ops-lead@erp.example"]),
        "{held:#}"
    );
    assert_eq!(action(&plan, "harbor-logistics-finance-ar")["action"], "noop");
    run(&repo, &["--now", later, "apply"], 0);
    assert_status(&repo, later, &[("alpine-clinics-finance-ar", "2.0.0", "pending")]);

    repo.file(
        "approvals/alpine-clinics-finance-ar.yaml",
        &approval("ops-lead@erp.example, cto@erp.example"),
    );
    repo.commit_all("approve the finance-ar rollback (CTO)");
    assert_eq!(plan_status(&repo, later, "alpine-clinics-finance-ar"), "ready");
    run(&repo, &["--now", later, "apply"], 0);
    assert_eq!(
        erp_log(&repo, "alpine-clinics-finance-ar")[8..],
        [
            "workflows stopped",
            "migrate down open-items-legal-entity-contract",
            "migrate down open-items-legal-entity-expand",
            "deploy 1.4.0",
            "workflows started",
        ]
    );
    assert_status(&repo, later, &[("alpine-clinics-finance-ar", "1.4.0", "converged")]);
}

/// The plan status of one target's action.
fn plan_status(repo: &Repo, now: &str, target: &str) -> String {
    action(&plan(repo, now), target)["status"]
        .as_str()
        .expect("status")
        .to_string()
}
