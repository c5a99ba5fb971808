//! Break-glass rollback approvals end to end (issue #16): under a policy with
//! `rollback.approvals`, a person-initiated downgrade (`gantry rollback`) is held until enough
//! distinct listed approvers approved it, while the automatic rollback of a failed attempt is
//! never held.

mod common;

use common::{Repo, release, target};

const NOW: &str = "2026-11-20T10:00:00Z";

const COMPONENT: &str = "apiVersion: gantry.dev/v1
kind: Component
metadata: { name: billing }
spec:
  steps:
    deploy: [\"scripts/step.sh\", \"deploy\", \"{{ version }}\"]
    health: [\"scripts/step.sh\", \"health\", \"{{ version }}\"]
";

/// Logs each step; fails `health` for the version named in `fail-health`.
const STEP: &str = "#!/bin/sh
set -eu
echo \"$*\" >> \"$GANTRY_REPO/steps.log\"
if [ \"$1\" = health ] && [ \"$(cat \"$GANTRY_REPO/fail-health\" 2>/dev/null)\" = \"$2\" ]; then exit 1; fi
";

const POLICY: &str = "apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: prod }
spec:
  rollback: { approvals: 2, approvers: [alice@example.com, bob@example.com] }
";

fn approval(approved_by: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: {{ name: billing-1.0.0-rollback }}\nspec: {{ component: billing, version: 1.0.0, approvedBy: [{approved_by}] }}\n"
    )
}

/// acme installed at 1.0.0 and upgraded to 2.0.0 under the policy; the steps log starts empty.
fn upgraded() -> Repo {
    let repo = Repo::new();
    repo.file("scripts/step.sh", STEP);
    repo.file("components/billing.yaml", COMPONENT);
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "2.0.0", "")
        ),
    );
    repo.file("policies/prod.yaml", POLICY);
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    repo.commit_all("Install billing");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    repo.commit_all("Upgrade billing");
    repo
}

fn steps(repo: &Repo) -> String {
    let text = std::fs::read_to_string(repo.path().join("steps.log")).unwrap_or_default();
    let _ = std::fs::remove_file(repo.path().join("steps.log"));
    text
}

fn acme_action(repo: &Repo) -> serde_json::Value {
    let plan = repo
        .gantry(&["plan", "--now", NOW, "--format", "json"])
        .expect(0)
        .stdout();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    plan["actions"][0].clone()
}

#[test]
fn a_rollback_commit_waits_for_two_distinct_listed_approvers() {
    let repo = upgraded();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    steps(&repo);
    repo.gantry(&["rollback", "acme"]).expect(0);
    let action = acme_action(&repo);
    assert_eq!(
        (action["action"].as_str(), action["status"].as_str()),
        (Some("downgrade"), Some("blocked")),
        "{action:#}"
    );
    assert_eq!(action["blocked_by"][0]["kind"], "approval", "{action:#}");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "", "held without approvals");

    // The same approver twice (any case) and one not listed: still one of two.
    repo.file(
        "approvals/rollback.yaml",
        &approval("alice@example.com, ALICE@example.com, mallory@example.com"),
    );
    repo.commit_all("Approve the rollback (alice)");
    let action = acme_action(&repo);
    assert_eq!(action["status"], "blocked", "{action:#}");
    assert_eq!(
        action["approvals"]["have"],
        serde_json::json!(["alice@example.com"]),
        "{action:#}"
    );
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "");

    repo.file(
        "approvals/rollback.yaml",
        &approval("alice@example.com, bob@example.com"),
    );
    repo.commit_all("Approve the rollback (bob)");
    assert_eq!(acme_action(&repo)["status"], "ready");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "deploy 1.0.0\nhealth 1.0.0\n");
}

#[test]
fn the_automatic_rollback_of_a_failed_attempt_is_not_held_for_approvals() {
    let repo = upgraded();
    steps(&repo);
    repo.file("fail-health", "2.0.0");
    repo.gantry(&["apply", "--now", NOW]);
    let log = steps(&repo);
    assert!(log.starts_with("deploy 2.0.0\nhealth 2.0.0\n"), "{log}");
    assert!(
        log.contains("deploy 1.0.0"),
        "rolled back at once, without approvals: {log}"
    );
    let status = repo
        .gantry(&["status", "--now", NOW, "--format", "json"])
        .expect(0)
        .stdout();
    assert!(status.contains("rolled_back"), "{status}");
}

/// With `[trust]`, a rollback approval counts only when the approver signed it: a revert commit
/// signed by alice with an `Approved-by:` trailer naming the approver is held; the approver's
/// own signed Approval manifest releases it.
#[test]
fn a_forged_rollback_approval_does_not_count_under_trust() {
    let keys = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = common::keypair(keys.path(), "alice");
    let (approver, approver_pub) = common::keypair(keys.path(), "approver");
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "[executors.local]\ntype = \"shell\"\n\n[trust]\nallowed_signers = \"trust/allowed_signers\"\n",
    )
    .file(
        "trust/allowed_signers",
        &format!("alice@example.com {alice_pub}\napprover@example.com {approver_pub}\n"),
    )
    .file("scripts/step.sh", STEP)
    .file(".gitignore", "steps.log\n")
    .file("components/billing.yaml", COMPONENT)
    .file(
        "releases/billing.yaml",
        &format!("{}---\n{}", release("billing", "1.0.0", ""), release("billing", "2.0.0", "")),
    )
    .file(
        "policies/prod.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: prod }\nspec:\n  rollback: { approvals: 1, approvers: [approver@example.com] }\n",
    )
    .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    let signed = |message: &str, key: &std::path::Path| {
        common::git_cli(&repo, &["add", "-A"]);
        let signing = format!("user.signingkey={}", key.display());
        common::git_cli(&repo, &["-c", &signing, "commit", "-q", "-S", "-m", message]);
    };
    signed("install", &alice);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    signed("upgrade", &alice);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    steps(&repo);

    repo.file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    signed(
        "Revert \"upgrade\"\n\nApproved-by: Approver <approver@example.com>",
        &alice,
    );
    let action = acme_action(&repo);
    assert_eq!(
        (action["action"].as_str(), action["status"].as_str()),
        (Some("downgrade"), Some("blocked")),
        "{action:#}"
    );
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "", "alice's trailer naming the approver did not count");

    repo.file("approvals/rollback.yaml", &approval("approver@example.com"));
    signed("approve the rollback", &approver);
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(steps(&repo), "deploy 1.0.0\nhealth 1.0.0\n");
}
