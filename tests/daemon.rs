//! `gantry daemon` end to end: the real binary on real temporary repositories, talking HTTP.
//! Nothing sleeps to assert: every wait polls with a deadline.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::wait_for;
use common::{Hooks, Repo, component, release, target};

/// A running daemon; killed when dropped.
struct Daemon {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(repo: &Repo, extra: &[&str]) -> Daemon {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
        command
            .arg("--repo")
            .arg(repo.path())
            .args(extra)
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .env_remove("GANTRY_NOW")
            .env("RUST_LOG", "info");
        let (child, addr, stderr) = common::spawn_daemon(command);
        Daemon { child, addr, stderr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> (u16, String) {
        http("GET", &self.url(path))
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (code, body) = self.get(path);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body}"))
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    fn passes(&self) -> u64 {
        self.json("/api/daemon")["passes"].as_u64().unwrap_or(0)
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit code.
    fn terminate(mut self) -> (i32, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        let status = wait_for("the daemon to exit", || self.child.try_wait().expect("wait"));
        // Let the reader thread drain the last lines.
        std::thread::sleep(Duration::from_millis(50));
        (status.code().unwrap_or(-1), self.logs())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP/1.1 client (ureq, which gantry already uses) returning status and body.
fn http(method: &str, url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let response = match method {
        // State-changing requests need JSON (server::guard, issue #18).
        "POST" => agent.post(url).content_type("application/json").send("{}"),
        _ => agent.get(url).call(),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let code = response.status().as_u16();
    (code, response.body_mut().read_to_string().unwrap_or_default())
}

/// One component `web` (a deploy script that records the version under `deployed/`, and
/// sleeps 2 s first when the target is named `slow`), releases 1.0.0 and 1.1.0, and targets.
fn fixture(targets: &[(&str, &str)], hook_port: Option<u16>) -> Repo {
    let repo = Repo::new();
    let mut toml = "desired_branch = \"main\"\n\n[executors.local]\ntype = \"shell\"\n".to_string();
    if let Some(port) = hook_port {
        toml.push_str(&format!(
            "\n[[notify]]\nurl = \"http://127.0.0.1:{port}/hook\"\nevents = [\"invalid_commit\", \"converged\", \"rollout_started\"]\n"
        ));
    }
    repo.file("gantry.toml", &toml)
        .file(".gitignore", "deployed/\n")
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\nset -eu\nmkdir -p \"$GANTRY_REPO/deployed\"\n\
             if [ \"$1\" = slow ]; then touch \"$GANTRY_REPO/deployed/slow.started\"; sleep 2; fi\n\
             printf '%s\\n' \"$2\" > \"$GANTRY_REPO/deployed/$1\"\n\
             echo \"$1 $2\" >> \"$GANTRY_REPO/deployed/runs.log\"\n",
        )
        .file("components/web.yaml", &component("web", ""))
        .file(
            "releases/web.yaml",
            &format!("{}\n---\n{}", release("web", "1.0.0", ""), release("web", "1.1.0", "")),
        );
    for (name, version) in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "web", version, "env: test"),
        );
    }
    repo.commit_all("initial");
    repo
}

fn deployed(repo: &Repo, target: &str) -> Option<String> {
    std::fs::read_to_string(repo.path().join("deployed").join(target))
        .ok()
        .map(|s| s.trim().to_string())
}

fn state_tip(repo: &Repo) -> Option<git2::Oid> {
    repo.git.refname_to_id("refs/heads/gantry/state").ok()
}

#[test]
fn daemon_installs_on_start_and_applies_a_new_commit_without_restarting() {
    let repo = fixture(&[("alpha", "1.0.0")], None);
    let daemon = Daemon::start(&repo, &[]);
    assert_eq!(daemon.get("/healthz"), (200, "ok".to_string()));
    wait_for("alpha installed at 1.0.0", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.0.0")).then_some(())
    });
    let first_state = wait_for("the install recorded", || state_tip(&repo));

    repo.file("targets/alpha.yaml", &target("alpha", "web", "1.1.0", "env: test"));
    repo.commit_all("alpha to 1.1.0");
    wait_for("alpha upgraded to 1.1.0", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.1.0")).then_some(())
    });
    wait_for("the upgrade recorded", || {
        state_tip(&repo).filter(|tip| *tip != first_state)
    });
    let history = repo
        .gantry(&["history", "alpha", "--format", "json"])
        .expect(0)
        .stdout();
    assert!(history.contains("1.1.0"), "history lacks the upgrade: {history}");
    let logs = daemon.logs();
    assert!(
        logs.contains("target=alpha") && logs.contains("component=web") && logs.contains("attempt="),
        "step logs carry target, component and attempt fields:\n{logs}"
    );
    let latency = wait_for("the commit-to-first-step histogram", || {
        daemon
            .metric("gantry_commit_to_first_step_seconds_count")
            .filter(|n| *n >= 1.0)
    });
    assert!(latency >= 1.0);
}

#[test]
fn daemon_reports_an_invalid_commit_and_applies_nothing_of_it() {
    let hooks = Hooks::start();
    let repo = fixture(&[("alpha", "1.0.0")], Some(hooks.port));
    let daemon = Daemon::start(&repo, &[]);
    wait_for("alpha installed", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.0.0")).then_some(())
    });
    wait_for("a converged webhook", || hooks.event("converged"));
    let started = wait_for("a rollout_started webhook", || hooks.event("rollout_started"));
    assert_eq!(started["component"], "web");
    let passes = wait_for("the first pass counted", || Some(daemon.passes()).filter(|n| *n >= 1));
    let state_before = state_tip(&repo).expect("state branch");

    // Upgrade alpha and add a target of a component that does not exist: invalid as a whole.
    repo.file("targets/alpha.yaml", &target("alpha", "web", "1.1.0", "env: test"))
        .file("targets/ghost.yaml", &target("ghost", "nosuch", "1.0.0", "env: test"));
    let bad = repo.commit_all("upgrade alpha, add ghost");

    let invalid = wait_for("/api/daemon to show the invalid commit", || {
        let state = daemon.json("/api/daemon");
        (state["invalid_commit"]["commit"] == bad.as_str()).then_some(state)
    });
    let errors = invalid["invalid_commit"]["errors"].to_string();
    assert!(errors.contains("nosuch"), "errors name the unknown component: {errors}");
    assert!(invalid["passes"].as_u64().unwrap() > passes);
    let hook = wait_for("an invalid_commit webhook", || hooks.event("invalid_commit"));
    assert_eq!(hook["commit"], bad.as_str());
    assert!(hook["text"].as_str().unwrap().contains("not valid"), "{hook}");
    assert_eq!(daemon.json("/api/status")["valid"], false);
    assert_eq!(daemon.metric("gantry_desired_commit_valid"), Some(0.0));

    // Nothing of it ran or was recorded.
    assert_eq!(state_tip(&repo), Some(state_before));
    assert_eq!(deployed(&repo, "alpha").as_deref(), Some("1.0.0"));
    assert_eq!(
        daemon.get("/healthz"),
        (200, "ok".to_string()),
        "the daemon keeps running"
    );
}

/// SPEC §7: on SIGTERM no new step starts, the running step finishes and is recorded (in the
/// journal: the attempt's next step, the health check, has not started, so the attempt is left to
/// resume), and the daemon exits 0. The next start resumes it without re-running the deploy.
#[test]
fn sigterm_during_a_slow_step_lets_it_finish_records_it_and_exits_0() {
    let repo = fixture(&[("slow", "1.0.0")], None);
    // Two steps, so there is a next step that must not start after SIGTERM.
    repo.file(
        "components/web.yaml",
        &component("web", "    health: [\"/bin/true\"]\n"),
    );
    repo.commit_all("health step");
    let daemon = Daemon::start(&repo, &[]);
    wait_for("the slow step to start", || {
        repo.path().join("deployed/slow.started").exists().then_some(())
    });
    assert!(state_tip(&repo).is_none(), "nothing recorded before the step ends");
    let (code, logs) = daemon.terminate();
    assert_eq!(code, 0, "exit code; logs:\n{logs}");
    assert_eq!(deployed(&repo, "slow").as_deref(), Some("1.0.0"), "the step finished");
    assert!(logs.contains("step finished: 01-deploy-1.0.0"), "{logs}");
    assert!(
        !logs.contains("step 2/2 started"),
        "no new step started after SIGTERM:\n{logs}"
    );
    // The attempt's journal (with the deploy's completion) is kept for the next start.
    let journals = std::fs::read_dir(repo.path().join(".git/gantry/journal"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(journals, 1, "the stopped attempt's journal is kept");

    // The next start resumes the attempt after its completed deploy and records the outcome.
    let daemon = Daemon::start(&repo, &[]);
    wait_for("the resumed attempt recorded", || state_tip(&repo));
    let history = repo.gantry(&["history", "slow", "--format", "json"]).expect(0).stdout();
    assert!(
        history.contains("succeeded"),
        "the attempt is recorded: {history}\n{}",
        daemon.logs()
    );
    let runs = std::fs::read_to_string(repo.path().join("deployed/runs.log")).expect("runs.log");
    assert_eq!(runs, "slow 1.0.0\n", "the completed deploy step was not run again");
}

#[test]
fn a_second_daemon_on_the_same_repository_exits_3() {
    let repo = fixture(&[("alpha", "1.0.0")], None);
    let _daemon = Daemon::start(&repo, &[]);
    let second = repo.gantry(&["daemon", "--listen", "127.0.0.1:0"]);
    assert_eq!(second.code(), 3, "{}", second.stderr());
}

/// One parsed sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Checks Prometheus text format 0.0.4: `# HELP`/`# TYPE` lines, and samples
/// `name{label="value",…} number` whose names belong to a declared family.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut families: Vec<(String, String)> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type in {line}"
            );
            families.push((name.to_string(), kind.to_string()));
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line}");
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = &line[..name_end];
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').expect("labels close");
            for pair in inner[..close].split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').expect("label=value");
                assert!(
                    v.starts_with('"') && v.ends_with('"') && v.len() >= 2,
                    "quoted value in {line}"
                );
                labels.push((k.to_string(), v[1..v.len() - 1].to_string()));
            }
            rest = &inner[close + 1..];
        }
        let value = rest.trim();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let family = families
            .iter()
            .find(|(f, kind)| {
                name == f
                    || (kind == "histogram"
                        && [("_bucket"), ("_sum"), ("_count")]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(f.as_str())))
            })
            .unwrap_or_else(|| panic!("sample {name} has no # TYPE line before it"));
        if family.1 == "histogram" && name.ends_with("_bucket") {
            assert!(labels.iter().any(|(k, _)| k == "le"), "bucket without le: {line}");
        }
        samples.push((name.to_string(), labels, value));
    }
    samples
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let repo = fixture(&[("alpha", "1.0.0")], None);
    let daemon = Daemon::start(&repo, &[]);
    wait_for("a finished pass", || Some(daemon.passes()).filter(|n| *n >= 1));
    let (code, text) = daemon.get("/metrics");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&text);
    let value = |name: &str| samples.iter().find(|s| s.0 == name).map(|s| s.2);
    assert!(value("gantry_reconcile_passes_total").unwrap() >= 1.0, "{text}");
    assert_eq!(value("gantry_desired_commit_valid"), Some(1.0));
    assert!(
        samples.iter().any(|(n, l, v)| n == "gantry_actions_total"
            && l.contains(&("kind".into(), "install".into()))
            && l.contains(&("outcome".into(), "succeeded".into()))
            && *v == 1.0),
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, _)| n == "gantry_step_duration_seconds_count" && l.contains(&("kind".into(), "deploy".into()))),
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, l, v)| n == "gantry_targets" && l.contains(&("status".into(), "converged".into())) && *v == 1.0),
        "{text}"
    );
    for family in [
        "gantry_reconcile_passes_total counter",
        "gantry_actions_total counter",
        "gantry_rollbacks_total counter",
        "gantry_step_duration_seconds histogram",
        "gantry_commit_to_first_step_seconds histogram",
        "gantry_targets gauge",
        "gantry_last_valid_desired_commit_info gauge",
        "gantry_desired_commit_valid gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {family}\n")), "missing # TYPE {family}");
    }
}

#[test]
fn api_status_equals_gantry_status_json_at_the_same_now() {
    let now = "2026-11-21T10:00:00Z";
    let repo = fixture(&[("alpha", "1.0.0"), ("beta", "1.1.0")], None);
    let daemon = Daemon::start(&repo, &["--now", now]);
    wait_for("both installed", || {
        (deployed(&repo, "alpha").is_some() && deployed(&repo, "beta").is_some()).then_some(())
    });
    wait_for("the pass finished", || Some(daemon.passes()).filter(|n| *n >= 1));
    let served = daemon.json("/api/status");
    let printed = repo
        .gantry(&["--now", now, "status", "--format", "json"])
        .expect(0)
        .stdout();
    let printed: serde_json::Value = serde_json::from_str(&printed).expect("status json");
    assert_eq!(served, printed);
    assert_eq!(served["targets"].as_array().map(Vec::len), Some(2));
}

/// Headless Chromium on the status page: the rollouts table is in the DOM with rows, and the
/// screenshot is not blank where the tables are.
#[test]
fn status_page_renders_in_headless_chromium() {
    let Some(chromium) = common::chromium("status_page_renders_in_headless_chromium") else {
        return;
    };
    let repo = fixture(&[("alpha", "1.0.0"), ("beta", "1.0.0"), ("gamma", "1.1.0")], None);
    let daemon = Daemon::start(&repo, &[]);
    wait_for("a recorded rollout", || {
        let (_, html) = daemon.get("/");
        html.contains("completed").then_some(())
    });
    let (code, html) = daemon.get("/");
    assert_eq!(code, 200);
    assert!(!html.contains("<script"), "no JavaScript");

    let out = tempfile::tempdir().expect("tmp");
    let run = |extra: &[&str]| common::run_chromium(&chromium, &daemon.url("/"), extra);
    let dom = run(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let table = dom
        .split("<table id=\"rollouts\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no rollouts table in the DOM:\n{dom}"));
    let rows = table.matches("<tr>").count() - 1; // minus the header row
    assert!(rows >= 1, "rollouts table has rows: {table}");
    assert!(table.contains("web") && table.contains("completed"), "{table}");

    let shot = out.path().join("page.png");
    let screenshot = run(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&screenshot.stderr)
    );
    let (width, height, pixels) = decode_png(&shot);
    assert_eq!((width, height), (1280, 900));
    // The tables fill the top part of the page: count painted (non-white) pixels there.
    let painted = pixels
        .chunks(4)
        .take((width * 400) as usize)
        .filter(|p| p[0] < 240 || p[1] < 240 || p[2] < 240)
        .count();
    assert!(
        painted > 5_000,
        "only {painted} non-white pixels in the top 400 rows: is the page blank?"
    );
}

/// Decodes a PNG into RGBA8 pixels.
fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("open png"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    (info.width, info.height, rgba)
}

/// With `remote` set: the state branch is pushed after a pass, and `POST /api/refresh` fetches a
/// new desired commit from the remote (a bare repository over file://) and reconciles it.
#[test]
fn remote_desired_commits_are_fetched_on_refresh_and_state_is_pushed() {
    let bare_dir = tempfile::tempdir().expect("tmp");
    let bare = git2::Repository::init_bare(bare_dir.path()).expect("bare");
    let url = format!("file://{}", bare_dir.path().display());
    let repo = fixture(&[("alpha", "1.0.0")], None);
    let toml = std::fs::read_to_string(repo.path().join("gantry.toml")).expect("toml");
    repo.file(
        "gantry.toml",
        &format!("remote = \"origin\"\npoll_interval = \"1h\"\n{toml}"),
    );
    repo.commit_all("use the remote");
    repo.git.remote("origin", &url).expect("add remote");
    let push = |spec: &str| {
        repo.git
            .find_remote("origin")
            .expect("origin")
            .push(&[spec], None)
            .expect("push");
    };
    push("refs/heads/main:refs/heads/main");

    let daemon = Daemon::start(&repo, &[]);
    wait_for("alpha installed", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.0.0")).then_some(())
    });
    // The state tip is read again on every poll: a pass may add commits after the outcome
    // (claims taken and released), so the first tip seen need not be the one pushed last.
    let local_state = wait_for("the state branch pushed", || {
        let local = state_tip(&repo)?;
        bare.refname_to_id("refs/heads/gantry/state")
            .ok()
            .filter(|id| *id == local)
    });

    // Someone else's commit reaches the remote only; the local branch never had it.
    let head = repo.git.head().unwrap().peel_to_commit().unwrap();
    let mut index = git2::Index::new().unwrap();
    index.read_tree(&head.tree().unwrap()).unwrap();
    let blob = repo
        .git
        .blob(target("alpha", "web", "1.1.0", "env: test").as_bytes())
        .unwrap();
    let mut entry = index.get_path(Path::new("targets/alpha.yaml"), 0).unwrap();
    entry.id = blob;
    entry.file_size = target("alpha", "web", "1.1.0", "env: test").len() as u32;
    index.add(&entry).unwrap();
    let tree = repo.git.find_tree(index.write_tree_to(&repo.git).unwrap()).unwrap();
    let sig = git2::Signature::now("Other", "other@example.com").unwrap();
    let theirs = repo
        .git
        .commit(
            Some("refs/heads/elsewhere"),
            &sig,
            &sig,
            "alpha to 1.1.0",
            &tree,
            &[&head],
        )
        .unwrap();
    push("refs/heads/elsewhere:refs/heads/main");
    assert_eq!(repo.git.refname_to_id("refs/heads/main").unwrap(), head.id());

    let (code, _) = http("POST", &daemon.url("/api/refresh"));
    assert_eq!(code, 202);
    wait_for("alpha upgraded from the fetched commit", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.1.0")).then_some(())
    });
    assert_eq!(
        repo.git.refname_to_id("refs/heads/main").unwrap(),
        theirs,
        "fast-forwarded"
    );
    wait_for("the new state pushed", || {
        let local = state_tip(&repo)?;
        (local != local_state && bare.refname_to_id("refs/heads/gantry/state").ok() == Some(local)).then_some(())
    });
}

/// Regression (issue #12, "the daemon loses work"): a pass that cannot write its journal (here
/// `.git/gantry/journal` is a file, as good as a full disk for the daemon) used to leave the
/// daemon idle with `last_error` and `next_wake` null. Now `/api/daemon` shows the error and the
/// next retry, the pass is retried with backoff, and once the fault is gone the target converges
/// without a new commit or a restart. `poll_interval = "1h30m"` also guards the shared duration
/// grammar (issue #9: the daemon refused what `validate` accepted).
#[test]
fn a_pass_that_cannot_write_its_journal_is_retried_and_succeeds_once_fixed() {
    let repo = fixture(&[("alpha", "1.0.0")], None);
    repo.file(
        "gantry.toml",
        "desired_branch = \"main\"\npoll_interval = \"1h30m\"\n\n[executors.local]\ntype = \"shell\"\n",
    );
    repo.commit_all("poll every 1h30m");
    repo.gantry(&["validate"]).expect(0);
    let journal = repo.path().join(".git/gantry/journal");
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    std::fs::write(&journal, "not a directory").unwrap();

    let daemon = Daemon::start(&repo, &[]);
    let state = wait_for("/api/daemon to show the failed pass and its retry", || {
        let state = daemon.json("/api/daemon");
        (state["failures"].as_u64() >= Some(1) && state["last_error"].is_string()).then_some(state)
    });
    assert!(state["next_retry"].is_string(), "{state}");
    assert!(state["next_wake"].is_string(), "{state}");
    assert_eq!(
        deployed(&repo, "alpha"),
        None,
        "nothing ran while the journal was unwritable"
    );

    std::fs::remove_file(&journal).unwrap();
    wait_for("alpha installed by a retry", || {
        (deployed(&repo, "alpha").as_deref() == Some("1.0.0")).then_some(())
    });
    let state = wait_for("the error cleared", || {
        let state = daemon.json("/api/daemon");
        state["last_error"].is_null().then_some(state)
    });
    assert_eq!(state["failures"], 0, "{state}");
    assert!(state["next_retry"].is_null(), "{state}");
    let status = repo.gantry(&["status", "--format", "json"]).expect(0).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["targets"][0]["status"], "converged", "{status}");
    let (code, _) = daemon.terminate();
    assert_eq!(code, 0);
}

/// Two identical repositories, each notifying its own receiver of every event: the deploy step
/// fails for version 1.1.0, so an install is all success and an upgrade to 1.1.0 fails.
fn notifying_fixture(hook_port: u16) -> Repo {
    let repo = fixture(&[("alpha", "1.0.0"), ("beta", "1.0.0")], None);
    repo.file(
        "gantry.toml",
        &format!(
            "desired_branch = \"main\"\n\n[executors.local]\ntype = \"shell\"\n\n[[notify]]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\n"
        ),
    )
    .file(
        "scripts/deploy.sh",
        "#!/bin/sh\nset -eu\nif [ \"$2\" = 1.1.0 ]; then echo \"1.1.0 is broken\" >&2; exit 1; fi\n\
         mkdir -p \"$GANTRY_REPO/deployed\"\nprintf '%s\\n' \"$2\" > \"$GANTRY_REPO/deployed/$1\"\n",
    );
    repo.commit_all("notify every event; 1.1.0 fails to deploy");
    repo
}

/// The events a receiver got, without what differs between two runs (attempt ids, times).
fn comparable(hooks: &Hooks) -> Vec<serde_json::Value> {
    let mut events: Vec<serde_json::Value> = hooks
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| {
            let mut b = b.clone();
            if let Some(map) = b.as_object_mut() {
                map.remove("attempt");
                map.remove("completed");
                // The two repositories' commits differ (each names its own receiver's port).
                if let Some(serde_json::Value::String(commit)) = map.remove("commit")
                    && let Some(serde_json::Value::String(text)) = map.get_mut("text")
                {
                    *text = text.replace(&commit[..12], "<commit>");
                }
            }
            // Attempt ids end in a random part (`20261121T100000Z-alpha-1a2b3c`).
            let mut text = b.to_string();
            let mut from = 0;
            while let Some(at) = text[from..].find("Z-alpha-").map(|i| from + i + "Z-alpha-".len()) {
                text.replace_range(at..(at + 6).min(text.len()), "<rand>");
                from = at;
            }
            serde_json::from_str(&text).expect("still JSON")
        })
        .collect();
    events.sort_by_key(ToString::to_string);
    events
}

/// Regression for issue #12 item 9 (`apply` sent no webhooks): `gantry apply` sends exactly the
/// notifications a daemon pass sends for the same commits, success (`rollout_started`,
/// `converged`) and failure (`rollout_started`, `failed`, `rollback`) alike.
#[test]
fn apply_sends_the_same_notifications_as_a_daemon_pass() {
    let now = "2026-11-21T10:00:00Z";
    let (daemon_hooks, apply_hooks) = (Hooks::start(), Hooks::start());
    let by_daemon = notifying_fixture(daemon_hooks.port);
    let by_apply = notifying_fixture(apply_hooks.port);
    let daemon = Daemon::start(&by_daemon, &["--now", now]);

    // Pass 1: both targets installed; apply's receiver has everything when apply exits (it
    // waits for its deliveries), the daemon's gets the same in its own time.
    by_apply.gantry(&["--now", now, "apply"]).expect(0);
    let want = comparable(&apply_hooks);
    let names: Vec<&str> = want.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(
        names.contains(&"rollout_started") && names.contains(&"converged"),
        "{want:#?}"
    );
    wait_for("the daemon's notifications of the install", || {
        (comparable(&daemon_hooks).len() >= want.len()).then_some(())
    });
    assert_eq!(comparable(&daemon_hooks), want);

    // Pass 2: alpha to 1.1.0, whose deploy fails.
    for repo in [&by_daemon, &by_apply] {
        repo.file("targets/alpha.yaml", &target("alpha", "web", "1.1.0", "env: test"));
        repo.commit_all("alpha to 1.1.0");
    }
    by_apply.gantry(&["--now", now, "apply"]).expect(2);
    let want = comparable(&apply_hooks);
    let failed = want
        .iter()
        .find(|e| e["event"] == "failed")
        .unwrap_or_else(|| panic!("no failed event: {want:#?}"));
    assert_eq!(failed["target"], "alpha");
    wait_for("the daemon's notifications of the failed upgrade", || {
        (comparable(&daemon_hooks).len() >= want.len()).then_some(())
    });
    assert_eq!(comparable(&daemon_hooks), want);
    drop(daemon);
}

/// A webhook that is down never fails `apply`: the pass succeeds (exit 0), and stderr says
/// which notifications were not delivered.
#[test]
fn apply_with_a_webhook_down_succeeds_and_says_so_on_stderr() {
    // A port nobody listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let repo = notifying_fixture(port);
    let run = repo.gantry(&["--now", "2026-11-21T10:00:00Z", "apply"]).expect(0);
    let stderr = run.stderr();
    assert!(
        stderr.contains("warning: notification not delivered: http://127.0.0.1:")
            && stderr.contains("converged: not delivered after 3 tries"),
        "{stderr}"
    );
    assert_eq!(deployed(&repo, "alpha").as_deref(), Some("1.0.0"));
}

/// The DOM headless Chromium builds from `url`.
fn dump_dom(chromium: &Path, url: &str) -> String {
    String::from_utf8_lossy(&common::run_chromium(chromium, url, &["--dump-dom"]).stdout).into_owned()
}

/// The text of each cell of each body row of the table `id` in `dom`.
fn table_rows(dom: &str, id: &str) -> Vec<Vec<String>> {
    let Some(table) = dom
        .split(&format!("<table id=\"{id}\">"))
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
    else {
        return Vec::new();
    };
    let body = table.split("<tbody>").nth(1).unwrap_or("");
    body.split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let cell = cell.split_once('>').map_or("", |(_, c)| c);
                    let cell = cell.split("</td>").next().unwrap_or("");
                    // Strip the markup inside the cell (links, spans).
                    let mut text = String::new();
                    let mut in_tag = false;
                    for c in cell.chars() {
                        match c {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            c if !in_tag => text.push(c),
                            _ => {}
                        }
                    }
                    text.trim().to_string()
                })
                .collect()
        })
        .collect()
}

/// 552 targets (`web` and `db`; every 12th is `env=dev`, the rest `env=prod`, which a window
/// freezes): a daemon pass installs the dev targets, and the deploy of `db` fails.
fn fleet_552() -> Repo {
    let repo = fixture(&[], None);
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\nset -eu\ncase \"$1\" in db-*) echo \"db is broken\" >&2; exit 1;; esac\n",
    )
    .file("components/db.yaml", &component("db", ""))
    .file("releases/db.yaml", &release("db", "1.0.0", ""))
    .file(
        "windows/freeze.yaml",
        "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: prod-freeze }\nspec:\n  selector: { env: prod }\n  timezone: UTC\n  deny:\n    - { start: \"00:00\", end: \"23:59\" }\n",
    );
    for i in 0..552 {
        let (name, component) = if i < 400 {
            (format!("web-{i:03}"), "web")
        } else {
            (format!("db-{i:03}"), "db")
        };
        let env = if i % 12 == 0 { "dev" } else { "prod" };
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(&name, component, "1.0.0", &format!("env: {env}, tier: t{}", i % 3)),
        );
    }
    repo.commit_all("552 targets");
    repo
}

/// Issue #12 item 8: the page summarises a 552-target fleet by component and label value (the
/// numbers `/api/status` gives), shows one page of 50 rows that filters and paging choose, is
/// far smaller than the 507 KB table it was, and answers 304 to a matching `If-None-Match`.
#[test]
fn status_page_summarises_552_targets_and_filters_and_pages_in_headless_chromium() {
    let Some(chromium) = common::chromium("status_page_summarises_552_targets…") else {
        return;
    };
    let repo = fleet_552();
    let daemon = Daemon::start(&repo, &["--now", "2026-11-21T10:00:00Z"]);
    wait_for("the first pass", || Some(daemon.passes()).filter(|n| *n >= 1));
    let status = daemon.json("/api/status");
    let rows = status["targets"].as_array().expect("targets").clone();
    assert_eq!(rows.len(), 552);
    let count = |f: &dyn Fn(&serde_json::Value) -> bool| rows.iter().filter(|r| f(r)).count().to_string();

    let (code, html) = daemon.get("/");
    assert_eq!(code, 200);
    eprintln!("page bytes for 552 targets: {}", html.len());
    assert!(html.len() < 64 * 1024, "the page is {} bytes", html.len());

    let dom = dump_dom(&chromium, &daemon.url("/"));
    // Header: Component, Targets, then one column per status, in the order shown.
    let header: Vec<String> = dom
        .split("<table id=\"summary-components\">")
        .nth(1)
        .and_then(|t| t.split("</thead>").next())
        .unwrap_or("")
        .split("<th>")
        .skip(3)
        .map(|h| h.split("</th>").next().unwrap_or("").to_string())
        .collect();
    assert!(header.contains(&"converged".to_string()), "{header:?}");
    let components = table_rows(&dom, "summary-components");
    assert_eq!(components.len(), 2, "{components:?}");
    for row in &components {
        let component = row[0].clone();
        assert_eq!(row[1], count(&|r| r["component"] == component.as_str()), "{row:?}");
        for (state, cell) in header.iter().zip(&row[2..]) {
            let want = count(&|r| r["component"] == component.as_str() && r["status"] == state.as_str());
            assert_eq!(*cell, want, "{component} {state}: {row:?}");
        }
    }
    let labels = table_rows(&dom, "summary-labels");
    let dev = labels
        .iter()
        .find(|r| r[0] == "env=dev")
        .unwrap_or_else(|| panic!("no env=dev row: {labels:?}"));
    assert_eq!(dev[1], "46");
    let converged_col = 2 + header.iter().position(|h| h == "converged").expect("converged column");
    assert_eq!(dev[converged_col], "34", "the 34 dev web targets converged: {dev:?}");
    // The targets table: the first page of 50.
    let first = table_rows(&dom, "targets");
    let names: Vec<String> = rows
        .iter()
        .take(50)
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), names);

    // Filter by component and page: rows 51–100 of db's.
    let dom = dump_dom(&chromium, &daemon.url("/?component=db&page=2"));
    let db: Vec<String> = rows
        .iter()
        .filter(|r| r["component"] == "db")
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    let page2: Vec<String> = table_rows(&dom, "targets").into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(page2, db[50..100].to_vec());
    assert!(dom.contains("rows 51–100 of 152 · page 2 of 4"), "{dom}");

    // Filter by label and state: the failed dev db targets, all on one page.
    let dom = dump_dom(&chromium, &daemon.url("/?selector=env%3Ddev&state=rolled_back"));
    let failed: Vec<String> = table_rows(&dom, "targets").into_iter().map(|r| r[0].clone()).collect();
    let want: Vec<String> = rows
        .iter()
        .filter(|r| r["labels"]["env"] == "dev" && r["status"] == "rolled_back")
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect();
    assert!(!want.is_empty(), "some dev db targets rolled back");
    assert_eq!(failed, want);

    // Conditional GET: the same page again is 304 with no body.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let first = agent.get(&daemon.url("/")).call().expect("GET /");
    let etag = first.headers().get("etag").expect("ETag").to_str().unwrap().to_string();
    let mut again = agent
        .get(&daemon.url("/"))
        .header("If-None-Match", &etag)
        .call()
        .expect("conditional GET");
    assert_eq!(again.status().as_u16(), 304);
    assert!(again.body_mut().read_to_string().unwrap_or_default().is_empty());
    assert_eq!(daemon.get("/?page=0").0, 400);
}

/// Loose objects under `.git/objects` (files `xx/yyyy…`).
fn loose_count(repo: &Repo) -> usize {
    std::fs::read_dir(repo.path().join(".git/objects"))
        .expect("objects")
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
        .sum()
}

/// Issue #12 item 9 (nothing packed or pruned the state branch's objects): the daemon's
/// housekeeping packs them, `/api/daemon` says what it did, the loose object count goes down,
/// and the repository stays valid for git (`git fsck --full`) and for gantry (history, status).
#[test]
fn daemon_housekeeping_packs_state_objects_and_the_repository_stays_valid() {
    let repo = fixture(&[("alpha", "1.0.0"), ("beta", "1.0.0"), ("gamma", "1.1.0")], None);
    // Outcome commits first, as loose objects: a pass of `apply`.
    repo.gantry(&["--now", "2026-11-21T10:00:00Z", "apply"]).expect(0);
    let before = loose_count(&repo);
    let daemon = Daemon::start(&repo, &["--now", "2026-11-21T10:00:00Z"]);
    let done = wait_for("a housekeeping pass", || {
        let d = daemon.json("/api/daemon");
        (!d["housekeeping"].is_null()).then(|| d["housekeeping"].clone())
    });
    eprintln!(
        "housekeeping: {done}; loose objects before the daemon: {before}, now {}",
        loose_count(&repo)
    );
    assert!(done["error"].is_null(), "{done}");
    assert!(done["packed"].as_u64().unwrap_or(0) > 0, "{done}");
    assert_eq!(done["removed_packed"], done["packed"], "{done}");
    assert!(loose_count(&repo) < before, "{done}");
    assert!(done["pack"].as_str().is_some_and(|p| p.starts_with("pack-")), "{done}");
    let fsck = common::git_cli(&repo, &["fsck", "--full", "--no-progress"]);
    assert!(!fsck.contains("missing") && !fsck.contains("error"), "{fsck}");
    drop(daemon);
    let history = repo.gantry(&["history", "--format", "json"]).expect(0).stdout();
    assert!(history.contains("alpha") && history.contains("gamma"), "{history}");
    repo.gantry(&["--now", "2026-11-21T10:00:00Z", "status"]).expect(0);
}

/// `n` packs as a pass of large batches leaves them (each one listed in `.git/gantry/packs`),
/// each holding the state branch's objects and one blob of its own; returns those blobs.
fn seed_listed_packs(repo: &Repo, n: usize) -> Vec<String> {
    let state = common::git_cli(repo, &["rev-list", "--objects", "gantry/state"]);
    let mut names = std::fs::read_to_string(repo.path().join(".git/gantry/packs")).unwrap_or_default();
    let mut blobs = Vec::new();
    let before = pack_indexes(repo);
    for i in 0..n {
        let blob_file = repo.path().join(format!(".git/seed-{before}-{i}"));
        std::fs::write(&blob_file, format!("records of batch {before}-{i}\n")).expect("seed blob");
        let blob = common::git_cli(repo, &["hash-object", "-w", blob_file.to_str().expect("utf-8")]);
        let ids: String = state
            .lines()
            .filter_map(|l| l.split(' ').next())
            .chain([blob.as_str()])
            .map(|id| format!("{id}\n"))
            .collect();
        let mut child = std::process::Command::new("git")
            .current_dir(repo.path())
            .args(["pack-objects", "-q", ".git/objects/pack/pack"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git pack-objects");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), ids.as_bytes()).expect("ids");
        let out = child.wait_with_output().expect("git pack-objects");
        assert!(out.status.success());
        names.push_str(&format!("pack-{}\n", String::from_utf8_lossy(&out.stdout).trim()));
        blobs.push(blob);
    }
    std::fs::write(repo.path().join(".git/gantry/packs"), names).expect("packs list");
    assert_eq!(pack_indexes(repo), before + n);
    blobs
}

/// Lists, as one of gantry's packs, an index whose pack is gone and which does not read as an
/// index (git skips it; a fold cannot read it); returns its name.
fn list_stray_index(repo: &Repo) -> String {
    let stray = format!("pack-{}", "e".repeat(40));
    std::fs::write(
        repo.path().join(format!(".git/objects/pack/{stray}.idx")),
        b"not an index",
    )
    .expect("stray");
    let mut listed = std::fs::read_to_string(repo.path().join(".git/gantry/packs")).expect("packs list");
    listed.push_str(&format!("{stray}\n"));
    std::fs::write(repo.path().join(".git/gantry/packs"), listed).expect("packs list");
    stray
}

/// The `.idx` files under `.git/objects/pack`.
fn pack_indexes(repo: &Repo) -> usize {
    std::fs::read_dir(repo.path().join(".git/objects/pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
                .count()
        })
        .unwrap_or(0)
}

/// Issue #17: a 10,000-target `apply` wrote 64 packs of records and left them, so every later
/// object lookup (`status`, `plan`) searched each one until a daemon's housekeeping ran. A pass
/// that leaves 8 of gantry's packs now folds them into one before it lets go of the lock; no
/// object is lost, and `gantry` and `git fsck` read the repository after.
#[test]
fn apply_folds_the_packs_its_pass_leaves() {
    let now = "2026-11-21T10:00:00Z";
    let repo = fixture(&[("alpha", "1.0.0"), ("beta", "1.0.0")], None);
    repo.gantry(&["--now", now, "apply"]).expect(0);
    let blobs = seed_listed_packs(&repo, 7);
    // Below the count that folds: the pass leaves the packs as they are.
    repo.file("targets/alpha.yaml", &target("alpha", "web", "1.1.0", "env: test"));
    repo.commit_all("alpha to 1.1.0");
    repo.gantry(&["--now", now, "apply"]).expect(0);
    assert_eq!(pack_indexes(&repo), 7);

    let blobs = [blobs, seed_listed_packs(&repo, 1)].concat();
    repo.file("targets/beta.yaml", &target("beta", "web", "1.1.0", "env: test"));
    repo.commit_all("beta to 1.1.0");
    let run = repo.gantry(&["--now", now, "apply"]).expect(0);
    assert!(!run.stderr().contains("WARN"), "{}", run.stderr());
    assert_eq!(pack_indexes(&repo), 1, "one pack after the fold");
    let listed = std::fs::read_to_string(repo.path().join(".git/gantry/packs")).expect("packs list");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    for blob in &blobs {
        common::git_cli(&repo, &["cat-file", "-e", blob]);
    }
    let fsck = common::git_cli(&repo, &["fsck", "--full", "--no-progress"]);
    assert!(!fsck.contains("missing") && !fsck.contains("error"), "{fsck}");
    let status = repo
        .gantry(&["--now", now, "status", "--format", "json"])
        .expect(0)
        .stdout();
    assert!(status.contains("\"1.1.0\""), "{status}");
    assert_eq!(
        repo.gantry(&["history", "--format", "json"])
            .expect(0)
            .stdout()
            .matches("1.1.0")
            .count(),
        2
    );
}

/// The fold's failure path: one of the 8 listed packs is a stray index whose pack is gone (an
/// interrupted `git gc`, a hand-deleted file), which git skips and the fold cannot read. The
/// pass's records are committed before the fold: `apply` warns, naming the file, still exits 0,
/// and nothing is lost or deleted.
#[test]
fn a_fold_that_fails_is_a_warning_and_the_pass_stands() {
    let now = "2026-11-21T10:00:00Z";
    let repo = fixture(&[("alpha", "1.0.0")], None);
    repo.gantry(&["--now", now, "apply"]).expect(0);
    let blobs = seed_listed_packs(&repo, 7);
    let stray = list_stray_index(&repo);

    repo.file("targets/alpha.yaml", &target("alpha", "web", "1.1.0", "env: test"));
    repo.commit_all("alpha to 1.1.0");
    let run = repo.gantry(&["--now", now, "apply"]).expect(0);
    assert!(
        run.stderr().contains(&format!(
            "{stray}.idx does not read as a pack index; no object was deleted"
        )),
        "{}",
        run.stderr()
    );
    assert_eq!(pack_indexes(&repo), 8, "nothing folded, nothing deleted");
    for blob in &blobs {
        common::git_cli(&repo, &["cat-file", "-e", blob]);
    }
    let status = repo
        .gantry(&["--now", now, "status", "--format", "json"])
        .expect(0)
        .stdout();
    assert!(status.contains("\"1.1.0\""), "{status}");
}

/// One target applied, then a daemon whose `[housekeeping] interval` is a day, after its first
/// housekeeping pass; returns the repository, the daemon and that pass's `last`.
fn daemon_housekeeping_daily() -> (Repo, Daemon, serde_json::Value) {
    let repo = fixture(&[("alpha", "1.0.0")], None);
    let mut toml = std::fs::read_to_string(repo.path().join("gantry.toml")).expect("gantry.toml");
    toml.push_str("\n[housekeeping]\ninterval = \"1d\"\n");
    repo.file("gantry.toml", &toml);
    repo.commit_all("housekeeping once a day");
    repo.gantry(&["--now", "2026-11-21T10:00:00Z", "apply"]).expect(0);
    let daemon = Daemon::start(&repo, &["--now", "2026-11-21T10:00:00Z"]);
    let first = wait_for("the first housekeeping pass", || {
        let d = daemon.json("/api/daemon");
        (!d["housekeeping"].is_null()).then(|| d["housekeeping"]["last"].clone())
    });
    (repo, daemon, first)
}

/// Issue #17: the daemon folds at once after a pass that leaves 8 of gantry's packs, not only
/// when `[housekeeping] interval` (here a day) comes round.
#[test]
fn the_daemon_folds_packs_without_waiting_for_its_interval() {
    let (repo, daemon, first) = daemon_housekeeping_daily();
    // The first pass's own pack, and as many more as make 8.
    let blobs = seed_listed_packs(&repo, 8 - pack_indexes(&repo));
    let (code, _) = http("POST", &daemon.url("/api/refresh"));
    assert_eq!(code, 202);
    let done = wait_for("a fold", || {
        let d = daemon.json("/api/daemon");
        (d["housekeeping"]["last"] != first).then(|| d["housekeeping"].clone())
    });
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(done["packs_folded"], 8, "{done}");
    assert_eq!(pack_indexes(&repo), 1, "{done}");
    for blob in &blobs {
        common::git_cli(&repo, &["cat-file", "-e", blob]);
    }
}

/// A fold that cannot succeed (one of the listed packs is a stray index whose pack is gone) is
/// tried once, not after every pass: once it failed, the daemon waits for its interval again.
#[test]
fn the_daemon_does_not_retry_a_failing_fold_after_every_pass() {
    let (repo, daemon, first) = daemon_housekeeping_daily();
    seed_listed_packs(&repo, 7 - pack_indexes(&repo));
    list_stray_index(&repo);

    let passes = |daemon: &Daemon| daemon.json("/api/daemon")["passes"].as_u64().unwrap_or(0);
    let before = passes(&daemon);
    assert_eq!(http("POST", &daemon.url("/api/refresh")).0, 202);
    let failed = wait_for("a fold that fails", || {
        let d = daemon.json("/api/daemon");
        (d["housekeeping"]["last"] != first).then(|| d["housekeeping"].clone())
    });
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not read as a pack index")),
        "{failed}"
    );
    wait_for("that pass counted", || (passes(&daemon) > before).then_some(()));
    let counted = passes(&daemon);
    assert_eq!(http("POST", &daemon.url("/api/refresh")).0, 202);
    wait_for("another pass", || (passes(&daemon) > counted).then_some(()));
    assert_eq!(
        daemon.json("/api/daemon")["housekeeping"],
        failed,
        "the failing fold ran again"
    );
}

/// Issue #15: no "update available" for targets pinned below the newest release. `apply` (and
/// the daemon, through the same function) announces it once per target and version, across
/// processes: a second apply says nothing new, a newer release is announced again.
#[test]
fn update_available_is_announced_once_per_pinned_target_and_version() {
    let now = "2026-11-21T10:00:00Z";
    let hooks = Hooks::start();
    let repo = notifying_fixture(hooks.port);
    let updates = |hooks: &Hooks| -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = hooks
            .bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["event"] == "update_available")
            .map(|b| {
                (
                    b["target"].as_str().unwrap_or("").to_string(),
                    b["available"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        seen.sort();
        seen
    };
    repo.gantry(&["--now", now, "apply"]).expect(0);
    let first = vec![
        ("alpha".to_string(), "1.1.0".to_string()),
        ("beta".to_string(), "1.1.0".to_string()),
    ];
    assert_eq!(updates(&hooks), first);
    let text = hooks.event("update_available").unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.starts_with("web 1.1.0 is available for "), "{text}");

    repo.gantry(&["--now", now, "apply"]).expect(0);
    assert_eq!(updates(&hooks), first, "nothing new: not announced again");

    repo.file(
        "releases/web.yaml",
        &format!(
            "{}\n---\n{}\n---\n{}",
            release("web", "1.0.0", ""),
            release("web", "1.1.0", ""),
            release("web", "1.2.0", "")
        ),
    );
    repo.commit_all("web 1.2.0");
    repo.gantry(&["--now", now, "apply"]).expect(0);
    let mut want = first;
    want.extend([
        ("alpha".to_string(), "1.2.0".to_string()),
        ("beta".to_string(), "1.2.0".to_string()),
    ]);
    want.sort();
    assert_eq!(updates(&hooks), want);
}
