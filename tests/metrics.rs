//! `/metrics` of a real daemon after a real pass (issue #15): attempts by component, update
//! type, outcome and channel, the attempt-duration histogram and rollout progress gauges.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, component, release, target};

fn get(url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut response = agent.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response.body_mut().read_to_string().unwrap_or_default()
}

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_attempts_by_update_type_outcome_and_channel_and_show_rollout_progress() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("components/ledger.yaml", &component("ledger", ""))
        // ledger's deploy fails: an install rolled back, on the beta channel.
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\ncase \"$2\" in 2.0.0-beta.1) echo 'ledger refused' >&2; exit 1;; esac\nexit 0\n",
        )
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("releases/ledger.yaml", &release("ledger", "2.0.0-beta.1", ""))
        .file(
            "policies/staged.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  selector: { component: billing }\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 1h }\n      - { name: all, percent: 100 }\n",
        )
        .file("targets/a.yaml", &target("a", "billing", "1.0.0", "component: billing, ring: \"0\""))
        .file("targets/b.yaml", &target("b", "billing", "1.0.0", "component: billing, ring: \"1\""))
        .file("targets/c.yaml", &target("c", "billing", "1.0.0", "component: billing, ring: \"1\""))
        .file(
            "targets/zen.yaml",
            &format!(
                "{}  channels: [beta]\n",
                target("zen", "ledger", "2.0.0-beta.1", "component: ledger")
            ),
        );
    repo.commit_all("fleet");
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .env_remove("GANTRY_NOW");
    let (mut child, addr, stderr) = common::spawn_daemon(command);
    let url = format!("http://{addr}/metrics");
    let start = Instant::now();
    let text = loop {
        let text = get(&url);
        if sample(&text, "gantry_reconcile_passes_total").is_some_and(|n| n >= 1.0) {
            break text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no pass finished:\n{text}\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let attempts = |labels: &str| sample(&text, &format!("gantry_attempts_total{{{labels}}}"));
    assert_eq!(
        attempts("component=\"billing\",update_type=\"major\",outcome=\"succeeded\",channel=\"stable\""),
        Some(1.0),
        "the canary's install, and only it (the soak holds the rest):\n{text}"
    );
    assert_eq!(
        attempts("component=\"ledger\",update_type=\"major\",outcome=\"rolled_back\",channel=\"beta\""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gantry_attempt_duration_seconds_count{component=\"billing\",update_type=\"major\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gantry_attempt_duration_seconds_bucket{component=\"billing\",update_type=\"major\",le=\"+Inf\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "gantry_rollout_targets{component=\"billing\",policy=\"staged\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "gantry_rollout_targets_done{component=\"billing\",policy=\"staged\"}"
        ),
        Some(1.0),
        "{text}"
    );
    for name in ["target=", "\"a\"", "version="] {
        assert!(
            !text.contains(name),
            "no per-target or per-version label ({name}):\n{text}"
        );
    }
}
