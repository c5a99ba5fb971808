//! Metric analysis for canaries against the real thing: Debian's Prometheus and Pushgateway,
//! started here on free 127.0.0.1 ports with a 1 s scrape interval.
//!
//! A pushed error rate above the check's `max` rolls the canary back and halts the rollout (no
//! other target is upgraded); one below lets the rollout proceed past the canary.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Repo;

const NOW: &str = "2026-11-21T10:00:00Z";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Prometheus scraping a Pushgateway every second; returns both servers and their URLs.
struct Metrics {
    _pushgateway: Server,
    _prometheus: Server,
    _data: tempfile::TempDir,
    push_url: String,
    prometheus_url: String,
}

impl Metrics {
    fn start() -> Option<Metrics> {
        if !available("prometheus") || !available("prometheus-pushgateway") {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install prometheus and prometheus-pushgateway (.ci/run does)"
            );
            eprintln!("skipping: prometheus or prometheus-pushgateway is not installed");
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        let push_port = free_port();
        let prom_port = free_port();
        let pushgateway = Server(
            Command::new("prometheus-pushgateway")
                .arg(format!("--web.listen-address=127.0.0.1:{push_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let config = data.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: pushgateway\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{push_port}\"]\n"
            ),
        )
        .unwrap();
        let prometheus = Server(
            Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.path().join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        Some(Metrics {
            _pushgateway: pushgateway,
            _prometheus: prometheus,
            _data: data,
            push_url: format!("http://127.0.0.1:{push_port}/metrics/job/canary"),
            prometheus_url: format!("http://127.0.0.1:{prom_port}"),
        })
    }

    /// Pushes `error_rate` and waits until Prometheus answers the query with that value.
    fn set_error_rate(&self, value: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let pushed = ureq::put(&self.push_url).send(format!("# TYPE error_rate gauge\nerror_rate {value}\n"));
            if pushed.is_ok() {
                let url = format!("{}/api/v1/query?query=error_rate", self.prometheus_url);
                if let Ok(mut response) = ureq::get(&url).call()
                    && let Ok(body) = response.body_mut().read_to_string()
                    && body.contains(&format!("\"{value}\""))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never reported error_rate {value}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Three targets; the canary wave (ring 0) soaks under a Prometheus check before the rest.
fn canary_repo(prometheus_url: &str) -> Repo {
    let repo = Repo::new();
    repo.file(
        "components/web.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.name }}\", \"{{ version }}\"]\n",
    );
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"deploy $1 $2\" >> \"$GANTRY_REPO/steps.log\"\n",
    );
    repo.file(
        "releases/web.yaml",
        "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: web-1.0.0 }\nspec: { component: web, version: 1.0.0 }\n---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: web-1.1.0 }\nspec: { component: web, version: 1.1.0 }\n",
    );
    repo.file(
        "policies/canary.yaml",
        &format!(
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: canary }}\nspec:\n  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }} }}\n      - {{ name: all, percent: 100 }}\n    maxParallel: 1\n  health:\n    checks:\n      - {{ name: errors, type: prometheus, url: \"{prometheus_url}\", query: \"error_rate\", max: 0.05 }}\n    interval: 1s\n    soak: 2s\n    failureThreshold: 2\n"
        ),
    );
    for (name, ring) in [("web-a", "0"), ("web-b", "1"), ("web-c", "1")] {
        repo.file(
            &format!("targets/{name}.yaml"),
            &common::target(name, "web", "1.0.0", &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all("fleet at 1.0.0");
    repo
}

fn bump_all(repo: &Repo, version: &str) {
    for name in ["web-a", "web-b", "web-c"] {
        let path = repo.path().join(format!("targets/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("version: \"1.0.0\"", &format!("version: \"{version}\"")),
        )
        .unwrap();
    }
    repo.commit_all(&format!("web {version}"));
}

fn steps(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("steps.log")).unwrap_or_default()
}

#[test]
fn error_rate_above_max_rolls_the_canary_back_and_halts_the_rollout() {
    let Some(metrics) = Metrics::start() else { return };
    metrics.set_error_rate(0.01);
    let repo = canary_repo(&metrics.prometheus_url);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    std::fs::remove_file(repo.path().join("steps.log")).unwrap();

    metrics.set_error_rate(0.2);
    bump_all(&repo, "1.1.0");
    let run = repo.gantry(&["apply", "--now", NOW]).expect(2);
    // The canary deployed 1.1.0, failed its metric check, and was put back on 1.0.0.
    assert_eq!(
        steps(&repo),
        "deploy web-a 1.1.0\ndeploy web-a 1.0.0\n",
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains("error_rate"), "{}", run.stderr());
    let status = repo.gantry(&["status", "--now", NOW, "--format", "json"]).expect(0);
    let status: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    for row in status["targets"].as_array().unwrap() {
        assert_eq!(row["current"], "1.0.0", "nothing was upgraded: {row}");
        let kinds: Vec<&str> = row["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|b| b["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"halted"), "every target shows the halt: {row}");
    }
}

#[test]
fn error_rate_below_max_lets_the_rollout_proceed() {
    let Some(metrics) = Metrics::start() else { return };
    metrics.set_error_rate(0.01);
    let repo = canary_repo(&metrics.prometheus_url);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    std::fs::remove_file(repo.path().join("steps.log")).unwrap();
    bump_all(&repo, "1.1.0");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let log = steps(&repo);
    assert!(log.starts_with("deploy web-a 1.1.0\n"), "the canary goes first:\n{log}");
    assert!(
        log.contains("deploy web-b 1.1.0") && log.contains("deploy web-c 1.1.0"),
        "{log}"
    );
}
