//! Emergency releases end to end (issue #16): a hotfix during a freeze starts only where a
//! policy's `updates.emergency` overrides freezes, the plan says why, and the outcome commit and
//! `gantry history` record the urgency and reason.

mod common;

use common::{Repo, component, git_cli, release, target};

/// Friday 2026-11-20, inside the freeze.
const NOW: &str = "2026-11-20T10:00:00Z";

const FREEZE: &str = "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: freeze }\nspec: { timezone: UTC, deny: [{ dates: [2026-11-20] }] }\n";

fn policy(emergency: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: prod }}\nspec:\n  updates: {{ {emergency} }}\n"
    )
}

/// billing 1.0.0 installed on acme, then a bump to the emergency 1.0.1 under `policy`.
fn hotfix_repo(emergency_rule: &str) -> Repo {
    let repo = Repo::new();
    repo.file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"$*\" >> \"$GANTRY_REPO/steps.log\"\n",
    );
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}",
            release("billing", "1.0.0", ""),
            release(
                "billing",
                "1.0.1",
                "  urgency: emergency\n  reason: \"CVE-2026-0001: parser overflow\"\n"
            )
        ),
    );
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    repo.commit_all("Install billing");
    repo.gantry(&["apply", "--now", "2026-11-19T10:00:00Z"]).expect(0);
    repo.file("windows/freeze.yaml", FREEZE);
    repo.file("policies/prod.yaml", &policy(emergency_rule));
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.0.1", "env: prod"));
    repo.commit_all("Hotfix billing");
    let _ = std::fs::remove_file(repo.path().join("steps.log"));
    repo
}

fn steps(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("steps.log")).unwrap_or_default()
}

#[test]
fn an_emergency_waits_out_a_freeze_unless_the_policy_overrides_it() {
    for rule in ["", "emergency: { freezes: hold }"] {
        let repo = hotfix_repo(rule);
        let plan = repo.gantry(&["plan", "--now", NOW]).expect(0).stdout();
        assert!(
            plan.contains("EMERGENCY: CVE-2026-0001: parser overflow"),
            "{rule}: {plan}"
        );
        assert!(plan.contains("[blocked]") && plan.contains("freeze"), "{rule}: {plan}");
        repo.gantry(&["apply", "--now", NOW]).expect(0);
        assert_eq!(steps(&repo), "", "{rule}: nothing may run during the freeze");
    }
}

#[test]
fn an_overriding_emergency_runs_in_the_freeze_and_is_recorded_in_trailers_and_history() {
    let repo = hotfix_repo("emergency: { freezes: override }");
    let plan = repo
        .gantry(&["plan", "--now", NOW, "--format", "json"])
        .expect(0)
        .stdout();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let action = &plan["actions"][0];
    assert_eq!(action["status"], "ready", "{plan:#}");
    assert_eq!(action["urgency"], "emergency", "{plan:#}");
    assert_eq!(action["reason"], "CVE-2026-0001: parser overflow", "{plan:#}");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "acme 1.0.1\n");
    let message = git_cli(&repo, &["log", "-1", "--format=%B", "gantry/state"]);
    assert!(
        message.contains("Gantry-Urgency: emergency\nGantry-Emergency-Reason: CVE-2026-0001: parser overflow"),
        "{message}"
    );
    let trailers = git_cli(
        &repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Gantry-Urgency,valueonly)",
            "gantry/state",
        ],
    );
    assert_eq!(trailers.trim(), "emergency", "git itself reads the trailer");
    let history = repo.gantry(&["history"]).expect(0).stdout();
    let lines: Vec<&str> = history.lines().filter(|l| l.contains("acme")).collect();
    assert!(
        lines[0].contains("1.0.0 → 1.0.1") && lines[0].contains("EMERGENCY: CVE-2026-0001: parser overflow"),
        "{history}"
    );
    assert!(
        !lines[1].contains("EMERGENCY"),
        "the install was no emergency: {history}"
    );
}
