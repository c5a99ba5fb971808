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
    // The whole pass (git, checkout, five plugin starts) depends on the machine's load; the
    // deploys' own window below is what maxParallel decides, so that is what is asserted.
    // Every copy of the plugin wrote to the shared state file without losing another's write.
    let deployed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    for i in 0..5 {
        assert_eq!(deployed[format!("agent-{i}")]["version"], "1.0.0", "{deployed}");
    }
    // All five deploys were in flight at once: the last started before the first finished.
    let times = |field: &str| -> Vec<f64> {
        (0..5)
            .map(|i| deployed[format!("agent-{i}")]["last_deploy"][field].as_f64().unwrap())
            .collect()
    };
    let (started, finished) = (times("started"), times("finished"));
    let last_start = started.iter().copied().fold(f64::MIN, f64::max);
    let first_end = finished.iter().copied().fold(f64::MAX, f64::min);
    let span = finished.iter().copied().fold(f64::MIN, f64::max) - started.iter().copied().fold(f64::MAX, f64::min);
    eprintln!("the five deploys spanned {span:.2} s");
    assert!(last_start < first_end, "a deploy waited for another: {deployed}");
    assert!(span < 3.0, "the deploys took {span:.2} s in all");
}

/// `maxParallel` is a bound per governing policy, and policies run side by side: two policies
/// (limits 2 and 1) over nine targets reach their limits together and never pass them. (The
/// attempts waiting for a slot are queued per policy since issue #17.)
#[test]
fn each_policy_runs_up_to_its_own_max_parallel_and_never_more() {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file(
            "components/app.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: app }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.labels.pool }}\", \"{{ target.name }}\"]\n",
        )
        .file("releases/app.yaml", &common::release("app", "1.0.0", ""))
        // Each deploy is in flight for a while, so the limits are what keeps them apart.
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\necho \"start $1 $2\" >> \"$GANTRY_REPO/runs.log\"\nsleep 0.3\necho \"end $1 $2\" >> \"$GANTRY_REPO/runs.log\"\n",
        )
        .file(".gitignore", "runs.log\n")
        .file(
            "policies/wide.yaml",
            &policy("wide", "  selector: { pool: wide }\n  rollout: { maxParallel: 2 }\n"),
        )
        .file(
            "policies/narrow.yaml",
            &policy("narrow", "  selector: { pool: narrow }\n  rollout: { maxParallel: 1 }\n"),
        );
    for (i, pool) in ["wide"; 6].into_iter().chain(["narrow"; 3]).enumerate() {
        repo.file(
            &format!("targets/t{i}.yaml"),
            &common::target(&format!("t{i}"), "app", "1.0.0", &format!("pool: {pool}")),
        );
    }
    repo.commit_all("two pools");
    repo.gantry(&["apply", "--now", T0]).expect(0);
    let log = std::fs::read_to_string(repo.path().join("runs.log")).unwrap();
    let (mut now, mut most) = (
        std::collections::BTreeMap::<&str, i32>::new(),
        std::collections::BTreeMap::<&str, i32>::new(),
    );
    let mut most_at_once = 0;
    for line in log.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let running = now.entry(fields[1]).or_default();
        *running += if fields[0] == "start" { 1 } else { -1 };
        let running = *running;
        let most = most.entry(fields[1]).or_default();
        *most = (*most).max(running);
        most_at_once = most_at_once.max(now.values().sum::<i32>());
    }
    assert_eq!(log.lines().filter(|l| l.starts_with("end ")).count(), 9, "{log}");
    assert_eq!(most.get("wide"), Some(&2), "{log}");
    assert_eq!(most.get("narrow"), Some(&1), "{log}");
    assert_eq!(most_at_once, 3, "the two policies did not run side by side:\n{log}");
    // From the start: one policy at its limit does not hold the other's first attempt back.
    let first: Vec<&str> = log.lines().take(3).collect();
    assert!(
        first.iter().all(|l| l.starts_with("start ")) && first.iter().any(|l| l.starts_with("start narrow")),
        "{log}"
    );
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
        "pending",
        "no failure, no rollback recorded: still at its recorded version, its upgrade due"
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

/// An HTTP endpoint on 127.0.0.1 reporting a settable error rate for version 1.1.0 (1 % for any
/// other): `200 error_rate 0.01` while it is at most 5 %, `500 error_rate 0.09` above. Serves
/// until the test ends.
struct ErrorRate {
    url: String,
    permille: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// The error rate of the canary's (`api-0`) peers on any other version (1 % unless set).
    peers: std::sync::Arc<std::sync::atomic::AtomicU32>,
    requests: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl ErrorRate {
    fn serve(permille: u32) -> ErrorRate {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let rate = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(permille));
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let peers = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(10));
        let (r, n, p) = (rate.clone(), requests.clone(), peers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                n.fetch_add(1, Ordering::SeqCst);
                // Only the new version serves errors: the version rolled back to is healthy.
                let permille = if request.contains("version=1.1.0") {
                    r.load(Ordering::SeqCst)
                } else if !request.contains("target=api-0&") {
                    p.load(Ordering::SeqCst)
                } else {
                    10
                };
                let status = if permille > 50 { 500 } else { 200 };
                let body = format!("error_rate {}", f64::from(permille) / 1000.0);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ErrorRate {
            url,
            permille: rate,
            peers,
            requests,
        }
    }

    fn set(&self, permille: u32) {
        self.permille.store(permille, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the error rate the canary's peers serve on any version but 1.1.0 (the canary
    /// harming the targets beside it).
    fn set_peers(&self, permille: u32) {
        self.peers.store(permille, std::sync::atomic::Ordering::SeqCst);
    }

    fn requests(&self) -> u32 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// 10 targets of `api` at 1.0.0; waves canary (ring 0, soak 30 m) → all, an HTTP check every
/// minute through every soak, 3 failed rounds in a row fail a target, no failure tolerated.
fn analysed_fleet(url: &str) -> Repo {
    analysed_fleet_with(url, "")
}

/// [`analysed_fleet`] with more lines under the policy's `health`.
fn analysed_fleet_with(url: &str, health: &str) -> Repo {
    let repo = Repo::new();
    repo.file("components/api.yaml", &common::component("api", ""));
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploys.log\"\n",
    );
    repo.file(
        "releases/api.yaml",
        &format!(
            "{}---\n{}",
            common::release("api", "1.0.0", ""),
            common::release("api", "1.1.0", "")
        ),
    );
    // The fleet is installed first, without waves, then the policy arrives with the bump.
    for i in 0..10 {
        let ring = if i == 0 { "0" } else { "1" };
        repo.file(
            &format!("targets/api-{i}.yaml"),
            &common::target(&format!("api-{i}"), "api", "1.0.0", &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all("fleet at 1.0.0");
    repo.gantry(&["apply", "--now", &at(-60)]).expect(0);
    std::fs::remove_file(repo.path().join("deploys.log")).unwrap();
    repo.file(
        "policies/staged.yaml",
        &policy(
            "staged",
            &format!(
                "  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }}, soak: 30m }}\n      - {{ name: all, percent: 100 }}\n    maxParallel: 5\n    maxFailures: 0\n  health:\n    checks:\n      - {{ name: errors, type: http, url: \"{url}/errors?target={{{{ target.name }}}}&version={{{{ version }}}}\", expect: 200 }}\n    interval: 1m\n    failureThreshold: 3\n{health}"
            ),
        ),
    );
    let names: Vec<String> = (0..10).map(|i| format!("api-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    bump(&repo, &names, "1.0.0", "1.1.0");
    repo
}

fn state_file(repo: &Repo, path: &str) -> String {
    let shown = std::process::Command::new("git")
        .current_dir(repo.path())
        .args(["show", &format!("gantry/state:{path}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&shown.stdout).into_owned()
}

/// `plan --format json`, checked against `schemas/plan.schema.json`.
fn plan_json(repo: &Repo, now: &str) -> serde_json::Value {
    use gantry::manifest::schema::{SchemaKind, validate};
    let out = repo
        .gantry(&["plan", "--now", now, "--format", "json"])
        .expect(0)
        .stdout();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let violations: Vec<String> = validate(SchemaKind::Plan, &json)
        .iter()
        .map(|v| format!("{}: {}", v.pointer, v.message))
        .collect();
    assert!(violations.is_empty(), "{violations:#?}\n{json}");
    json
}

/// Regression (issue #11): a canary whose error rate climbed to 9 % during its 30-minute soak
/// was promoted anyway (`apply --now T+31m` upgraded the other 9). The checks now run through
/// the soak: three failed rounds roll the canary back, halt the rollout, and nobody else is
/// touched; the plan shows the analysis as it goes.
#[test]
fn a_canary_whose_error_rate_rises_during_its_soak_is_rolled_back_and_the_rest_never_touched() {
    let server = ErrorRate::serve(10);
    let repo = analysed_fleet(&server.url);

    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\n", "only the canary goes");

    // Five minutes in, healthy: rounds run, the wave keeps soaking, the plan says so.
    let before = server.requests();
    repo.gantry(&["apply", "--now", &at(5)]).expect(0);
    assert_eq!(
        server.requests() - before,
        3,
        "5 rounds due, 3 (the threshold) run back to back"
    );
    let plan = plan_json(&repo, &at(5));
    let canary = &plan["rollouts"][0]["waves"][0];
    assert_eq!(canary["status"], "soaking", "{canary}");
    assert_eq!(canary["analysis"]["status"], "running", "{canary}");
    assert_eq!(canary["analysis"]["rounds"], 3, "{canary}");
    assert_eq!(canary["analysis"]["rounds_left"], 25, "{canary}");
    assert_eq!(canary["analysis"]["next_round"], at(6), "{canary}");
    assert!(
        canary["analysis"]["targets"]["api-0"]["last"]["errors"]
            .as_str()
            .unwrap()
            .contains("status 200"),
        "{canary}"
    );

    let text = repo.gantry(&["status", "--now", &at(5)]).expect(0).stdout();
    assert!(
        text.contains("rollout api 1.1.0 wave canary (soaking): analysis running: 3 rounds run, 25 left"),
        "{text}"
    );
    // The error rate climbs to 9 %: one failed round is not enough to act on...
    server.set(90);
    repo.gantry(&["apply", "--now", &at(6)]).expect(0);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\n");
    let waiting = plan_json(&repo, &at(6));
    let blocker = waiting["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "api-5")
        .unwrap()["blocked_by"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        blocker.contains("waits for wave canary: soak ends at")
            && blocker.contains("analysis running: 4 rounds run, 24 left; api-0 errors failing 1×")
            && blocker.contains("status 500, expected 200"),
        "{blocker}"
    );
    // ...the third failed round in a row is: the canary is rolled back, the rollout halts.
    let run = repo.gantry(&["apply", "--now", &at(8)]).expect(2);
    assert!(
        run.stderr()
            .contains("analysis failed in wave canary: check `errors` failed 3 rounds in a row"),
        "{}",
        run.stderr()
    );
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\napi-0 1.0.0\n");

    // Long after the soak, nobody else was touched.
    repo.gantry(&["apply", "--now", &at(31)]).expect(0);
    repo.gantry(&["apply", "--now", &at(600)]).expect(0);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\napi-0 1.0.0\n");
    let s = status(&repo, &at(600));
    let canary_row = row(&s, "api-0");
    assert_eq!(canary_row["current"], "1.0.0");
    assert_eq!(canary_row["status"], "rolled_back");
    assert!(
        canary_row["last_message"]
            .as_str()
            .unwrap()
            .starts_with("analysis failed in wave canary: check `errors` failed 3 rounds in a row: GET "),
        "{canary_row}"
    );
    for i in 1..10 {
        let r = row(&s, &format!("api-{i}"));
        assert_eq!(r["current"], "1.0.0", "{r}");
        assert!(r["blockers"].to_string().contains("halted"), "{r}");
    }
    // The rollout record has the analysis; the outcome commit says it in its trailers.
    let rollout = state_file(&repo, "rollouts/api@1.1.0.yaml");
    assert!(
        rollout.contains("analysis:") && rollout.contains("status: failed") && rollout.contains("rounds: 6"),
        "{rollout}"
    );
    assert!(rollout.contains("halted:"), "{rollout}");
    let messages = std::process::Command::new("git")
        .current_dir(repo.path())
        .args(["log", "--format=%B", "gantry/state"])
        .output()
        .unwrap();
    let messages = String::from_utf8_lossy(&messages.stdout);
    assert!(
        messages.contains("Gantry-Outcome: rolled_back")
            && messages.contains("Gantry-Message: analysis failed in wave canary"),
        "{messages}"
    );
}

/// The exact jump of the report: the first pass after the canary is at T+31m. The rounds due
/// run before anything is promoted, and a failing canary is rolled back instead.
#[test]
fn a_pass_after_the_soak_runs_the_analysis_before_promoting() {
    let server = ErrorRate::serve(10);
    let repo = analysed_fleet(&server.url);
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    server.set(90);
    repo.gantry(&["apply", "--now", &at(31)]).expect(2);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\napi-0 1.0.0\n");

    // Healthy, the same jump promotes (after one more round at the soak's end passes).
    let server = ErrorRate::serve(10);
    let repo = analysed_fleet(&server.url);
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    repo.gantry(&["apply", "--now", &at(29)]).expect(0);
    assert_eq!(log(&repo, "deploys.log").lines().count(), 1, "still soaking at 29 min");
    repo.gantry(&["apply", "--now", &at(31)]).expect(0);
    assert_eq!(log(&repo, "deploys.log").lines().count(), 10);
    let rollout = state_file(&repo, "rollouts/api@1.1.0.yaml");
    assert!(rollout.contains("status: passed"), "{rollout}");
}

fn blockers_of(plan: &serde_json::Value, target: &str) -> Vec<serde_json::Value> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == target)
        .unwrap_or_else(|| panic!("no {target}"))["blocked_by"]
        .as_array()
        .unwrap()
        .clone()
}

/// Regression (issue #11): dev, staging and production governed by three policies rolled out at
/// once (the production canary started alongside dev). With `after`, dev → staging (after dev
/// 1 h healthy) → production (after staging 48 h healthy) is one declared pipeline; the plan
/// shows each waiting stage with the instant it opens.
#[test]
fn a_three_stage_pipeline_promotes_across_policies_only_after_each_soak() {
    let repo = Repo::new();
    repo.file("components/api.yaml", &common::component("api", ""));
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploys.log\"\n",
    );
    repo.file(
        "releases/api.yaml",
        &format!(
            "{}---\n{}",
            common::release("api", "1.0.0", ""),
            common::release("api", "1.1.0", "")
        ),
    );
    let targets = [
        ("api-dev", "dev"),
        ("api-stg-1", "staging"),
        ("api-stg-2", "staging"),
        ("api-prod-1", "prod"),
        ("api-prod-2", "prod"),
        ("api-prod-3", "prod"),
    ];
    for (name, env) in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &common::target(name, "api", "1.0.0", &format!("env: {env}")),
        );
    }
    repo.commit_all("fleet at 1.0.0");
    repo.gantry(&["apply", "--now", &at(-600)]).expect(0);
    std::fs::remove_file(repo.path().join("deploys.log")).unwrap();
    repo.file("policies/dev.yaml", &policy("dev", "  selector: { env: dev }\n"));
    repo.file(
        "policies/staging.yaml",
        &policy(
            "staging",
            "  selector: { env: staging }\n  after: { policy: dev, soak: 1h }\n  rollout: { maxParallel: 2 }\n",
        ),
    );
    repo.file(
        "policies/production.yaml",
        &policy(
            "production",
            "  selector: { env: prod }\n  after: { policy: staging, soak: 48h }\n  rollout: { maxParallel: 3 }\n",
        ),
    );
    let names: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
    bump(&repo, &names, "1.0.0", "1.1.0");
    let deployed = |repo: &Repo| -> Vec<String> { log(repo, "deploys.log").lines().map(str::to_string).collect() };

    // Stage 1: only dev.
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(deployed(&repo), ["api-dev 1.1.0"]);
    let plan = plan_json(&repo, &at(0));
    let staging = blockers_of(&plan, "api-stg-1");
    assert_eq!(staging.len(), 1, "{staging:?}");
    assert_eq!(staging[0]["kind"], "wave");
    assert_eq!(staging[0]["until"], at(60), "the instant the stage opens: {staging:?}");
    assert!(
        staging[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("waits for stage `dev` (policy `staging` comes after it): api 1.1.0 complete there since"),
        "{staging:?}"
    );
    let production = blockers_of(&plan, "api-prod-1");
    assert_eq!(
        production[0]["reason"],
        "waits for stage `staging` (policy `production` comes after it): 0 of its 2 api targets run 1.1.0"
    );
    assert!(production[0]["until"].is_null(), "no instant until staging ran");

    // A minute before dev's hour is over, nothing new; after it, staging goes.
    repo.gantry(&["apply", "--now", &at(59)]).expect(0);
    assert_eq!(deployed(&repo).len(), 1);
    repo.gantry(&["apply", "--now", &at(60)]).expect(0);
    let mut now = deployed(&repo);
    now.sort();
    assert_eq!(now, ["api-dev 1.1.0", "api-stg-1 1.1.0", "api-stg-2 1.1.0"]);

    // Production opens 48 h after staging completed, not a minute before.
    let opens = 60 + 48 * 60;
    let plan = plan_json(&repo, &at(61));
    assert_eq!(blockers_of(&plan, "api-prod-2")[0]["until"], at(opens));
    repo.gantry(&["apply", "--now", &at(opens - 1)]).expect(0);
    assert_eq!(deployed(&repo).len(), 3);
    repo.gantry(&["apply", "--now", &at(opens)]).expect(0);
    assert_eq!(deployed(&repo).len(), 6, "{:?}", deployed(&repo));
    assert!(deployed(&repo)[3..].iter().all(|d| d.starts_with("api-prod-")));
}

/// `after` must name a policy, and stages may not wait for each other in a circle.
#[test]
fn after_naming_an_unknown_policy_or_a_cycle_is_a_violation() {
    let repo = precheck_repo();
    repo.file(
        "policies/a.yaml",
        &policy("a", "  selector: { env: a }\n  after: { policy: b, soak: 1h }\n"),
    );
    repo.file(
        "policies/b.yaml",
        &policy("b", "  selector: { env: b }\n  after: { policy: a }\n"),
    );
    repo.file(
        "policies/c.yaml",
        &policy("c", "  selector: { env: c }\n  after: { policy: qa }\n"),
    );
    repo.commit_all("bad stages");
    let run = repo.gantry(&["validate"]).expect(2);
    let out = format!("{}{}", run.stdout(), run.stderr());
    // Each policy of the cycle is reported, with every file in it.
    assert!(
        out.contains("promotion cycle: a (policies/a.yaml) → b (policies/b.yaml) → a"),
        "{out}"
    );
    assert!(
        out.contains("promotion cycle: b (policies/b.yaml) → a (policies/a.yaml) → b"),
        "{out}"
    );
    assert!(out.contains("after.policy names unknown policy `qa`"), "{out}");
}

/// Regression (issue #11): 13 of 20 customers had their backend and frontend in different
/// stages. With `groupBy: tenant`, the backend and frontend rollouts put the same tenants in each
/// of the 5 / 25 / 75 / 100 % stages, so a customer's pair moves together.
#[test]
fn group_by_keeps_each_tenants_backend_and_frontend_in_the_same_stage() {
    let repo = Repo::new();
    for component in ["backend", "frontend"] {
        repo.file(
            &format!("components/{component}.yaml"),
            &common::component(component, ""),
        );
        repo.file(
            &format!("releases/{component}.yaml"),
            &format!(
                "{}---\n{}",
                common::release(component, "1.0.0", ""),
                common::release(component, "1.1.0", "")
            ),
        );
    }
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploys.log\"\n",
    );
    let mut names = Vec::new();
    for t in 0..20 {
        for component in ["backend", "frontend"] {
            let name = format!("customer{t:02}-{component}");
            repo.file(
                &format!("targets/{name}.yaml"),
                &common::target(&name, component, "1.0.0", &format!("tenant: customer{t:02}")),
            );
            names.push(name);
        }
    }
    repo.commit_all("40 targets at 1.0.0");
    repo.gantry(&["apply", "--now", &at(-600)]).expect(0);
    std::fs::remove_file(repo.path().join("deploys.log")).unwrap();
    repo.file(
        "policies/customers.yaml",
        &policy(
            "customers",
            "  rollout:\n    groupBy: tenant\n    waves:\n      - { name: p5, percent: 5, soak: 10m }\n      - { name: p25, percent: 25, soak: 10m }\n      - { name: p75, percent: 75, soak: 10m }\n      - { name: p100, percent: 100 }\n    maxParallel: 20\n",
        ),
    );
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    bump(&repo, &refs, "1.0.0", "1.1.0");
    // The tenants whose backend, and whose frontend, run 1.1.0.
    let upgraded = |role: &str| -> std::collections::BTreeSet<String> {
        log(&repo, "deploys.log")
            .lines()
            .filter_map(|l| l.strip_suffix(&format!("-{role} 1.1.0")).map(str::to_string))
            .collect()
    };
    for (minute, tenants) in [(0, 1), (11, 5), (22, 15), (33, 20)] {
        repo.gantry(&["apply", "--now", &at(minute)]).expect(0);
        let (backends, frontends) = (upgraded("backend"), upgraded("frontend"));
        assert_eq!(backends.len(), tenants, "at {minute} min: {backends:?}");
        assert_eq!(backends, frontends, "at {minute} min every pair moves together");
    }
}

/// Traffic steps through the demo plugin: the canary is deployed beside the old version, gets
/// 5 % then 25 % of traffic, each held 5 min under health checks (on the `--now` clock: no real
/// waiting); its checks fail at 25 %, so traffic goes back to 0 % first, then it is rolled back.
#[test]
fn a_traffic_canary_failing_at_25_percent_ends_at_weight_0_and_rolled_back() {
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
        "components/web.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  executor: demo\n  steps:\n    deploy: [\"deploy\"]\n    health: [\"health\"]\n    shift: [\"shift\", \"{{ target.name }}\", \"{{ weight }}\"]\n",
    );
    repo.file(
        "releases/web.yaml",
        &format!(
            "{}---\n{}",
            common::release("web", "1.0.0", ""),
            common::release("web", "1.1.0", "")
        ),
    );
    repo.file(
        "targets/web-a.yaml",
        &target_with_vars("web-a", "web", "1.0.0", "env: prod", "demo_fail_weight: 25"),
    );
    repo.commit_all("web at 1.0.0");
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    repo.file(
        "policies/traffic.yaml",
        &policy(
            "traffic",
            "  traffic: { steps: [5, 25, 50, 100], analysis: 5m }\n  health: { interval: 1m, failureThreshold: 2 }\n",
        ),
    );
    bump(&repo, &["web-a"], "1.0.0", "1.1.0");
    let started = Instant::now();
    let run = repo.gantry(&["apply", "--now", &at(10)]).expect(2);
    assert!(
        started.elapsed().as_secs() < 30,
        "holds ran on the real clock: {:?}",
        started.elapsed()
    );
    let demo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let web = &demo["web-a"];
    assert_eq!(web["shifts"], serde_json::json!([5, 25, 0]), "{web}");
    assert_eq!(web["weight"], 0, "{web}");
    assert_eq!(web["version"], "1.0.0", "{web}");
    // The step log (the plugin's stderr) shows the order: back to 0 %, then the old version.
    let logs = repo.path().join(".git/gantry/logs");
    let text = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default())
        .find(|text| text.contains("demo: shift web-a"))
        .expect("the upgrade attempt's log");
    let back = text
        .find("demo: shift web-a 1.1.0 shift web-a 0")
        .unwrap_or_else(|| panic!("{text}"));
    let redeploy = text
        .rfind("demo: deploy web-a 1.0.0")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(back < redeploy, "traffic went back before the redeploy:\n{text}");
    let s = status(&repo, &at(10));
    let row = row(&s, "web-a");
    assert_eq!(row["status"], "rolled_back", "{row}");
    assert!(
        row["last_message"]
            .as_str()
            .unwrap()
            .contains("errors at 25% of traffic (demo_fail_weight)"),
        "{row}\n{}",
        run.stderr()
    );
}

/// `{{ weight }}` exists only for `shift` steps; elsewhere it is caught by `validate`, not by a
/// failing deploy.
#[test]
fn weight_outside_a_shift_step_is_invalid() {
    let repo = precheck_repo();
    repo.file(
        "components/api.yaml",
        &common::component("api", "    shift: [\"scripts/shift.sh\", \"{{ weight }}\"]\n    health: [\"scripts/health.sh\", \"{{ weight }}\"]\n"),
    );
    repo.commit_all("weight in health");
    let run = repo.gantry(&["validate"]).expect(1);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        out.contains("template uses `weight`, which only a `shift` step defines"),
        "{out}"
    );
    assert_eq!(out.matches("which only a `shift` step defines").count(), 1, "{out}");
}

/// A fleet of `api` at 1.0.0 (`(name, labels)`), whose deploy of 1.1.0 fails on a target while
/// `fail-<target>` exists; `policies` are added with the bump to 1.1.0. `deploys.log` lists the
/// deploys of 1.1.0 only.
fn staged_fleet(targets: &[(&str, &str)], policies: &[(&str, String)]) -> Repo {
    let repo = Repo::new();
    repo.file("components/api.yaml", &common::component("api", ""));
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\nif [ \"$2\" = 1.1.0 ]; then\n  [ -f \"$GANTRY_REPO/fail-$1\" ] && { echo \"$1 cannot start 1.1.0\"; exit 1; }\n  echo \"$1 $2\" >> \"$GANTRY_REPO/deploys.log\"\nfi\nexit 0\n",
    );
    repo.file(
        "releases/api.yaml",
        &format!(
            "{}---\n{}",
            common::release("api", "1.0.0", ""),
            common::release("api", "1.1.0", "")
        ),
    );
    for (name, labels) in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &common::target(name, "api", "1.0.0", labels),
        );
    }
    repo.commit_all("fleet at 1.0.0");
    repo.gantry(&["apply", "--now", &at(-600)]).expect(0);
    for (path, text) in policies {
        repo.file(path, text);
    }
    let names: Vec<&str> = targets.iter().map(|(n, _)| *n).collect();
    bump(&repo, &names, "1.0.0", "1.1.0");
    repo
}

fn deploys(repo: &Repo) -> Vec<String> {
    let mut lines: Vec<String> = log(repo, "deploys.log").lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Issue #11 ("a Policy (or wave) can require another rollout stage to be complete and healthy
/// for a duration first"): production's canary goes with staging, but its `all` wave waits for
/// staging to have been complete 48 h; the plan shows the exact instant it opens.
#[test]
fn a_wave_after_another_policy_waits_for_that_stage_and_its_soak_to_the_second() {
    let repo = staged_fleet(
        &[
            ("api-stg", "env: staging"),
            ("api-prod-1", "env: prod, ring: \"0\""),
            ("api-prod-2", "env: prod, ring: \"1\""),
        ],
        &[
            (
                "policies/staging.yaml",
                policy("staging", "  selector: { env: staging }\n"),
            ),
            (
                "policies/production.yaml",
                policy(
                    "production",
                    "  selector: { env: prod }\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" } }\n      - { name: all, percent: 100, after: { policy: staging, soak: 48h } }\n    maxParallel: 3\n",
                ),
            ),
        ],
    );
    // The canary wave has no `after`: it goes with staging.
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(deploys(&repo), ["api-prod-1 1.1.0", "api-stg 1.1.0"]);
    let opens = 48 * 60;
    let plan = plan_json(&repo, &at(1));
    let blockers = blockers_of(&plan, "api-prod-2");
    assert_eq!(blockers.len(), 1, "{blockers:?}");
    assert_eq!(blockers[0]["kind"], "wave");
    assert_eq!(
        blockers[0]["until"],
        at(opens),
        "the instant the wave opens: {blockers:?}"
    );
    let reason = blockers[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "in wave all: waits for stage `staging` (wave `all` of policy `production` comes after it): api 1.1.0 complete there since {}, healthy for ",
            at(0)
        )) && reason.ends_with(&format!("more until {}", at(opens))),
        "{reason}"
    );
    // Not a minute early; at the instant, the wave goes.
    repo.gantry(&["apply", "--now", &at(opens - 1)]).expect(0);
    assert_eq!(deploys(&repo).len(), 2, "{:?}", deploys(&repo));
    repo.gantry(&["apply", "--now", &at(opens)]).expect(0);
    assert_eq!(
        deploys(&repo),
        ["api-prod-1 1.1.0", "api-prod-2 1.1.0", "api-stg 1.1.0"]
    );
}

/// A wave may wait for an earlier wave of its own rollout for longer than that wave's soak: the
/// 25 % wave follows the canary after its 10 min soak, the rest only once the canary has been
/// healthy for 24 h.
#[test]
fn a_wave_after_an_earlier_wave_waits_for_its_own_soak_from_that_waves_completion() {
    let targets = [
        ("api-1", "env: prod, ring: \"0\""),
        ("api-2", "env: prod, ring: \"1\""),
        ("api-3", "env: prod, ring: \"1\""),
        ("api-4", "env: prod, ring: \"1\""),
    ];
    let repo = staged_fleet(
        &targets,
        &[(
            "policies/production.yaml",
            policy(
                "production",
                "  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 10m }\n      - { name: early, percent: 50 }\n      - { name: all, percent: 100, after: { wave: canary, soak: 24h } }\n    maxParallel: 4\n",
            ),
        )],
    );
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(deploys(&repo), ["api-1 1.1.0"]);
    repo.gantry(&["apply", "--now", &at(10)]).expect(0);
    assert_eq!(deploys(&repo).len(), 2, "the early wave after the canary's soak");
    let opens = 24 * 60;
    let plan = plan_json(&repo, &at(11));
    let waiting: Vec<&serde_json::Value> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["wave"] == "all")
        .collect();
    assert_eq!(waiting.len(), 2, "{plan}");
    for action in waiting {
        let blockers = action["blocked_by"].as_array().unwrap();
        assert_eq!(blockers.len(), 1, "{blockers:?}");
        assert_eq!(blockers[0]["until"], at(opens), "{blockers:?}");
        assert!(
            blockers[0]["reason"].as_str().unwrap().starts_with(&format!(
                "in wave all: waits for wave `canary` (after: {{ wave: canary }}): complete since {}",
                at(0)
            )),
            "{blockers:?}"
        );
    }
    repo.gantry(&["apply", "--now", &at(opens - 1)]).expect(0);
    assert_eq!(deploys(&repo).len(), 2);
    repo.gantry(&["apply", "--now", &at(opens)]).expect(0);
    assert_eq!(deploys(&repo).len(), 4, "{:?}", deploys(&repo));
}

/// A stage that failed (a target rolled back) never opens a wave's `after`, however long one
/// waits, even when `maxFailures` lets the rollout go on: "complete and healthy" is every target
/// converged on the version. (A halted stage has a failed target too; production would then
/// also show the rollout's `halted` blocker.)
#[test]
fn a_failed_stage_keeps_a_waves_after_closed_even_when_its_rollout_goes_on() {
    let repo = staged_fleet(
        &[
            ("api-stg-1", "env: staging"),
            ("api-stg-2", "env: staging"),
            ("api-prod-1", "env: prod"),
        ],
        &[
            (
                "policies/staging.yaml",
                policy(
                    "staging",
                    "  selector: { env: staging }\n  rollout: { maxParallel: 2, maxFailures: 1 }\n",
                ),
            ),
            (
                "policies/production.yaml",
                policy(
                    "production",
                    "  selector: { env: prod }\n  rollout:\n    waves:\n      - { name: all, percent: 100, after: { policy: staging, soak: 1h } }\n    maxFailures: 1\n",
                ),
            ),
        ],
    );
    std::fs::write(repo.path().join("fail-api-stg-2"), "").unwrap();
    repo.gantry(&["apply", "--now", &at(0)]).expect(2);
    assert_eq!(deploys(&repo), ["api-stg-1 1.1.0"]);
    assert_eq!(row(&status(&repo, &at(1)), "api-stg-2")["status"], "rolled_back");
    // Long after the soak, production still waits, and says why.
    repo.gantry(&["apply", "--now", &at(10 * 24 * 60)]).expect(0);
    assert_eq!(deploys(&repo), ["api-stg-1 1.1.0"]);
    let plan = plan_json(&repo, &at(10 * 24 * 60));
    assert!(plan["rollouts"][0]["halted"].is_null(), "not halted: {plan}");
    let blockers = blockers_of(&plan, "api-prod-1");
    assert_eq!(blockers.len(), 1, "only the stage holds it: {blockers:?}");
    assert_eq!(
        blockers[0]["reason"],
        "in wave all: waits for stage `staging` (wave `all` of policy `production` comes after it): 1 of its 2 api targets run 1.1.0"
    );
    assert!(
        blockers[0]["until"].is_null(),
        "no instant while the stage failed: {blockers:?}"
    );
}

/// A wave's `after` is checked like a policy's, with file and line: unknown policy or wave
/// names, a bad duration, a wave waiting for itself or a later wave, and policies waiting for
/// each other in a circle through a wave (each named with its file).
#[test]
fn a_waves_after_with_unknown_names_bad_durations_or_a_cycle_is_reported_with_file_and_line() {
    let repo = precheck_repo();
    repo.file(
        "policies/a.yaml",
        &policy(
            "a",
            "  selector: { env: a }\n  rollout:\n    waves:\n      - { name: one, percent: 50, after: { wave: two } }\n      - { name: two, percent: 100, after: { policy: b, soak: 2d } }\n",
        ),
    );
    repo.file(
        "policies/b.yaml",
        &policy(
            "b",
            "  selector: { env: b }\n  rollout:\n    waves:\n      - { name: all, percent: 100, after: { policy: a } }\n",
        ),
    );
    repo.file(
        "policies/c.yaml",
        &policy(
            "c",
            "  selector: { env: c }\n  rollout:\n    waves:\n      - { name: x, percent: 50, after: { policy: qa } }\n      - { name: y, percent: 100, after: { wave: nope } }\n",
        ),
    );
    repo.file(
        "policies/d.yaml",
        &policy(
            "d",
            "  selector: { env: d }\n  rollout:\n    waves:\n      - { name: all, percent: 100, after: { policy: a, soak: 2 days } }\n",
        ),
    );
    repo.commit_all("bad wave stages");
    let run = repo.gantry(&["validate"]).expect(1);
    let out = format!("{}{}", run.stdout(), run.stderr());
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
            .to_string()
    };
    assert!(
        line("policies/a.yaml:8:").contains("wave `one` cannot wait for wave `two`, which comes after it or is itself"),
        "{out}"
    );
    assert!(
        line("policies/a.yaml:9:").contains("promotion cycle: a (policies/a.yaml) → b (policies/b.yaml) → a"),
        "{out}"
    );
    assert!(
        line("policies/b.yaml:8:").contains("promotion cycle: b (policies/b.yaml) → a (policies/a.yaml) → b"),
        "{out}"
    );
    assert!(
        line("policies/c.yaml:8:").contains("after.policy names unknown policy `qa`"),
        "{out}"
    );
    assert!(
        line("policies/c.yaml:9:").contains("after.wave names no earlier wave `nope` of policy `c` (earlier waves: x)"),
        "{out}"
    );
    assert!(
        line("policies/d.yaml:8:").contains("spec.rollout.waves[0].after.soak: \"2 days\" is not a valid duration"),
        "{out}"
    );
}

/// Issue #11 ("… on every target of a wave (and optionally on the canary's peers)"): with
/// `health.peers: true` the checks also run through the canary's soak on the rollout's other
/// targets, at the version they run. When the canary harms them (their error rate climbs while
/// its own stays at 1 %), the wave fails: the canary is rolled back, the rollout halts, and the
/// peers themselves are not touched.
#[test]
fn a_peer_failing_during_the_canary_soak_fails_the_wave_and_rolls_the_canary_back() {
    let server = ErrorRate::serve(10);
    let repo = analysed_fleet_with(&server.url, "    peers: true\n");
    repo.gantry(&["apply", "--now", &at(0)]).expect(0);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\n", "only the canary goes");

    // Healthy: the canary and its 9 peers are checked each round.
    let before = server.requests();
    repo.gantry(&["apply", "--now", &at(5)]).expect(0);
    assert_eq!(
        server.requests() - before,
        3 * 10,
        "3 rounds on the canary and on each peer"
    );
    let plan = plan_json(&repo, &at(5));
    let analysis = &plan["rollouts"][0]["waves"][0]["analysis"];
    let peers = analysis["peers"].as_object().expect("peers in the plan");
    assert_eq!(peers.len(), 9, "{analysis}");
    assert_eq!(peers["api-3"]["status"], "running", "{analysis}");
    assert!(
        analysis["targets"].get("api-3").is_none(),
        "a peer is not a target of the wave"
    );

    // The canary harms the old version's targets: one failed round is not enough to act on...
    server.set_peers(90);
    repo.gantry(&["apply", "--now", &at(6)]).expect(0);
    assert_eq!(log(&repo, "deploys.log"), "api-0 1.1.0\n");
    let blocker = blockers_of(&plan_json(&repo, &at(6)), "api-5")[0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(blocker.contains("peer api-1 errors failing 1×"), "{blocker}");
    // ...the third in a row is: the wave fails on its peers' health.
    let run = repo.gantry(&["apply", "--now", &at(8)]).expect(2);
    assert!(
        run.stderr()
            .contains("analysis failed in wave canary: peer `api-1` (1.0.0): check `errors` failed 3 rounds in a row"),
        "{}",
        run.stderr()
    );
    assert_eq!(
        log(&repo, "deploys.log"),
        "api-0 1.1.0\napi-0 1.0.0\n",
        "peers untouched"
    );
    let s = status(&repo, &at(9));
    assert_eq!(row(&s, "api-0")["status"], "rolled_back");
    for i in 1..10 {
        let r = row(&s, &format!("api-{i}"));
        assert_eq!(r["current"], "1.0.0", "{r}");
        assert!(r["blockers"].to_string().contains("halted"), "{r}");
    }
    let rollout = state_file(&repo, "rollouts/api@1.1.0.yaml");
    assert!(rollout.contains("peers:") && rollout.contains("api-1:"), "{rollout}");
}
