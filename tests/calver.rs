//! Calendar versions (issue #16: `2026-02-03-001` was refused as "not a valid semantic
//! version"): the real binary against a real temporary repository whose component has
//! `versioning: calver`. Versions reach the state branch, its commit messages and the plan's JSON
//! exactly as written; the update type follows the date rule (same date: patch, crossing a
//! `breaking: true` release: major) so `updates.major.approvals` holds a breaking date.

mod common;

use common::{Repo, release, target};

const COMPONENT: &str = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: agent }\nspec:\n  versioning: calver\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.name }}\", \"{{ version }}\"]\n";

const POLICY: &str = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  updates:\n    major: { approvals: 1, approvers: [alice@example.com] }\n";

/// `scripts/deploy.sh TARGET VERSION`: logs `TARGET VERSION`.
const DEPLOY: &str = "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploy.log\"\n";

/// A file of the state branch's tip, and the tip's message.
fn state(repo: &Repo, path: &str) -> (String, String) {
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_reference("refs/heads/gantry/state")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let entry = tip.tree().unwrap().get_path(std::path::Path::new(path)).unwrap();
    let text = String::from_utf8_lossy(git.find_blob(entry.id()).unwrap().content()).into_owned();
    (text, tip.message().unwrap_or("").to_string())
}

fn plan_action(repo: &Repo) -> serde_json::Value {
    let out = repo.gantry(&["plan", "--format", "json"]).stdout();
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    plan["actions"][0].clone()
}

#[test]
fn dates_are_recorded_as_written_and_classified_by_the_date_rule() {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file("components/agent.yaml", COMPONENT)
        .file(
            "releases/agent.yaml",
            &[
                release("agent", "2026-02-03-001", ""),
                release("agent", "2026-02-03-002", ""),
                release("agent", "2026.03.01", "  breaking: true\n"),
            ]
            .join("---\n"),
        )
        .file("policies/p.yaml", POLICY)
        .file("scripts/deploy.sh", DEPLOY)
        .file(
            "targets/acme.yaml",
            &target("acme", "agent", "2026-02-03-001", "env: prod"),
        )
        .file(".gitignore", "*.log\n");
    repo.commit_all("fleet");
    repo.gantry(&["validate"]).expect(0);
    // An install is major: it waits for alice like any install under this policy.
    let install = plan_action(&repo);
    assert_eq!(
        (&install["action"], &install["to"], &install["update_type"]),
        (&"install".into(), &"2026-02-03-001".into(), &"major".into())
    );
    repo.file(
        "approvals/a.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: a }\nspec: { component: agent, version: \"2026-02-03-001\", approvedBy: [alice@example.com] }\n",
    );
    repo.commit_all("alice approves the install");
    repo.gantry(&["apply"]).expect(0);
    let (record, message) = state(&repo, "targets/acme.yaml");
    assert!(record.contains("version: 2026-02-03-001\n"), "{record}");
    assert!(message.contains("Gantry-To: 2026-02-03-001"), "{message}");

    // The same date, a later sequence: a patch, no approval needed.
    repo.file(
        "targets/acme.yaml",
        &target("acme", "agent", "2026-02-03-002", "env: prod"),
    );
    repo.commit_all("agent to 2026-02-03-002");
    let patch = plan_action(&repo);
    assert_eq!(
        (&patch["from"], &patch["to"], &patch["update_type"], &patch["status"]),
        (
            &"2026-02-03-001".into(),
            &"2026-02-03-002".into(),
            &"patch".into(),
            &"ready".into()
        )
    );
    repo.gantry(&["apply"]).expect(0);
    let (record, message) = state(&repo, "targets/acme.yaml");
    assert!(record.contains("version: 2026-02-03-002\n"), "{record}");
    assert!(
        message.contains("agent 2026-02-03-001 → 2026-02-03-002 on acme: succeeded"),
        "{message}"
    );
    assert!(message.contains("Gantry-To: 2026-02-03-002"), "{message}");

    // A requirement of dates picks the breaking 2026.03.01: major, held for alice.
    repo.file(
        "targets/acme.yaml",
        &target("acme", "agent", ">=2026-02-03-002", "env: prod"),
    );
    repo.commit_all("agent to the newest date");
    let major = plan_action(&repo);
    assert_eq!(
        (
            &major["to"],
            &major["update_type"],
            &major["status"],
            &major["breaking"]
        ),
        (&"2026.03.01".into(), &"major".into(), &"blocked".into(), &true.into())
    );
    assert_eq!(major["blocked_by"][0]["kind"], "approval", "{major}");
    let log = std::fs::read_to_string(repo.path().join("deploy.log")).unwrap();
    assert_eq!(log, "acme 2026-02-03-001\nacme 2026-02-03-002\n");
}
