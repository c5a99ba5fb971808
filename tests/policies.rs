//! Policy gates end to end: approvals from trailers and Approval manifests, windows, waves,
//! driven through `gantry plan --format json` against real temporary repositories.

mod common;

use common::{Repo, component, release, target};
use serde_json::Value;

const NOW: &str = "2026-11-20T10:00:00Z"; // a Friday

fn plan_json(repo: &Repo, now: &str) -> Value {
    let run = repo.gantry(&["plan", "--now", now, "--format", "json"]).expect(0);
    serde_json::from_str(&run.stdout()).expect("plan is JSON")
}

fn action<'a>(plan: &'a Value, target: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["target"] == target))
        .unwrap_or_else(|| panic!("no action for {target} in {plan:#}"))
}

fn kinds(action: &Value) -> Vec<String> {
    action["blocked_by"]
        .as_array()
        .map(|b| b.iter().map(|x| x["kind"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

const TWO_APPROVERS: &str = "apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: prod }
spec:
  selector: { env: prod }
  updates:
    major: { approvals: 2, approvers: [alice@example.com, Bob@Example.com] }
";

/// billing 1.0.0 and 2.0.0, and the `prod` policy asking two approvals of a major update; no
/// target yet.
fn billing_under_two_approvers() -> Repo {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "2.0.0", "")
        ),
    );
    repo.file("policies/prod.yaml", TWO_APPROVERS);
    repo
}

fn approvals_repo() -> Repo {
    let repo = billing_under_two_approvers();
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "1.0.0", "env: prod"),
    );
    repo.commit_all("Add billing\n\nApproved-by: Alice <alice@example.com>\nApproved-by: Bob <bob@example.com>\n");
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "2.0.0", "env: prod"),
    );
    repo.commit_all(
        "Bump acme-billing to 2.0.0\n\nApproved-by: Alice Smith <ALICE@example.com>\nApproved-by: Mallory <mallory@example.com>\n",
    );
    // An unrelated later commit must not hide the bump commit's trailers.
    repo.file("README.md", "docs\n");
    repo.commit_all("Docs");
    repo
}

#[test]
fn major_bump_with_one_trailer_approval_is_blocked_and_unknown_approvers_are_ignored() {
    let repo = approvals_repo();
    let plan = plan_json(&repo, NOW);
    let a = action(&plan, "acme-billing");
    assert_eq!(a["status"], "blocked", "{a:#}");
    assert_eq!(kinds(a), vec!["approval"]);
    assert_eq!(
        a["blocked_by"][0]["reason"],
        "have 1 of 2 approvals (alice@example.com); still needed: 1 more from bob@example.com"
    );
    assert_eq!(
        a["approvals"],
        serde_json::json!({
            "required": 2,
            "have": ["alice@example.com"],
            "missing": 1,
            "eligible": ["alice@example.com", "bob@example.com"],
        })
    );
}

/// Issue #17: the approvals walk answers by place in the list of targets a policy asks
/// approvals of, and the evidence pairs names with answers. Each target here was bumped by a
/// commit with other trailers, and a target no policy asks approvals of sits between them in
/// name order: each action shows exactly its own commit's approvers.
#[test]
fn each_target_gets_the_approvers_of_its_own_version_commit() {
    let repo = billing_under_two_approvers();
    let prod = ["a-billing", "b-billing", "c-billing", "d-billing"];
    for name in prod {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "billing", "1.0.0", "env: prod"),
        );
    }
    repo.file("targets/b2.yaml", &target("b2-billing", "billing", "1.0.0", "env: dev"));
    repo.commit_all("Add billing");
    let alice = "Approved-by: Alice <alice@example.com>\n";
    let bob = "Approved-by: Bob <bob@example.com>\n";
    for (name, trailers) in [
        ("a-billing", alice.to_string()),
        ("b-billing", format!("{alice}{bob}")),
        ("c-billing", String::new()),
        ("d-billing", bob.to_string()),
    ] {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "billing", "2.0.0", "env: prod"),
        );
        repo.commit_all(&format!("Bump {name} to 2.0.0\n\n{trailers}"));
    }
    repo.file("targets/b2.yaml", &target("b2-billing", "billing", "2.0.0", "env: dev"));
    repo.commit_all(&format!("Bump b2-billing to 2.0.0\n\n{alice}"));
    let plan = plan_json(&repo, NOW);
    let have = |name: &str| action(&plan, name)["approvals"]["have"].clone();
    assert_eq!(have("a-billing"), serde_json::json!(["alice@example.com"]));
    assert_eq!(
        have("b-billing"),
        serde_json::json!(["alice@example.com", "bob@example.com"])
    );
    assert_eq!(have("c-billing"), serde_json::json!([]));
    assert_eq!(have("d-billing"), serde_json::json!(["bob@example.com"]));
    assert_eq!(action(&plan, "b-billing")["status"], "ready");
    for name in ["a-billing", "c-billing", "d-billing"] {
        assert_eq!(kinds(action(&plan, name)), vec!["approval"], "{name}");
    }
    assert_eq!(
        action(&plan, "b2-billing")["status"],
        "ready",
        "no policy asks approvals of it"
    );
}

#[test]
fn approval_manifest_from_the_second_approver_unblocks() {
    let repo = approvals_repo();
    // An ineligible approver in a manifest changes nothing.
    repo.file(
        "approvals/billing-2.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: billing-2.0.0-prod }\nspec: { component: billing, version: 2.0.0, selector: { env: prod }, approvedBy: [carol@example.com] }\n",
    );
    repo.commit_all("Carol approves");
    let plan = plan_json(&repo, NOW);
    assert_eq!(action(&plan, "acme-billing")["approvals"]["missing"], 1);

    repo.file(
        "approvals/billing-2.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: billing-2.0.0-prod }\nspec: { component: billing, version: 2.0.0, selector: { env: prod }, approvedBy: [carol@example.com, bob@example.com] }\n",
    );
    repo.commit_all("Bob approves");
    let plan = plan_json(&repo, NOW);
    let a = action(&plan, "acme-billing");
    assert_eq!(a["status"], "ready", "{a:#}");
    assert_eq!(
        a["approvals"]["have"],
        serde_json::json!(["alice@example.com", "bob@example.com"])
    );
    assert_eq!(a["approvals"]["missing"], 0);
}

/// Issue #15: `history` did not say who approved what ran. The approvals that counted for an
/// attempt (a trailer's and a manifest's, not an ineligible approver's) are recorded with it
/// and shown by `history --format json` and `csv`.
#[test]
fn history_names_the_approvers_that_counted_for_an_attempt() {
    let repo = approvals_repo();
    repo.file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n");
    repo.file(
        "approvals/billing-2.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: billing-2.0.0-prod }\nspec: { component: billing, version: 2.0.0, selector: { env: prod }, approvedBy: [carol@example.com, bob@example.com] }\n",
    );
    repo.commit_all("Bob approves");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let history: Value =
        serde_json::from_str(&repo.gantry(&["history", "--format", "json"]).expect(0).stdout()).unwrap();
    assert_eq!(history[0]["to"], "2.0.0", "{history:#}");
    assert_eq!(
        history[0]["approvers"],
        serde_json::json!(["alice@example.com", "bob@example.com"]),
        "{history:#}"
    );
    assert_eq!(history[0]["update_type"], "major");
    let csv = repo.gantry(&["history", "--format", "csv"]).expect(0).stdout();
    assert!(csv.contains(",alice@example.com;bob@example.com,"), "{csv}");
}

#[test]
fn approval_for_another_version_or_selector_does_not_count() {
    let repo = approvals_repo();
    repo.file(
        "approvals/other.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: old }\nspec: { component: billing, version: 1.0.0, approvedBy: [bob@example.com] }\n---\napiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: staging }\nspec: { component: billing, version: 2.0.0, selector: { env: staging }, approvedBy: [bob@example.com] }\n",
    );
    repo.commit_all("Approvals that do not apply");
    let plan = plan_json(&repo, NOW);
    assert_eq!(action(&plan, "acme-billing")["status"], "blocked");
}

#[test]
fn closed_window_reports_the_exact_opening_instant() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file("releases/billing.yaml", &release("billing", "1.0.0", ""));
    repo.file(
        "targets/eu.yaml",
        &target("eu-billing", "billing", "1.0.0", "region: eu"),
    );
    repo.file(
        "targets/us.yaml",
        &target("us-billing", "billing", "1.0.0", "region: us"),
    );
    repo.file(
        "windows/eu.yaml",
        "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: eu-weekend-nights }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  allow:\n    - { days: [sat, sun], start: \"02:00\", end: \"06:00\" }\n",
    );
    repo.commit_all("Windows");
    let plan = plan_json(&repo, NOW);
    let eu = action(&plan, "eu-billing");
    assert_eq!(eu["status"], "blocked");
    assert_eq!(kinds(eu), vec!["window"]);
    assert_eq!(eu["blocked_by"][0]["opens_at"], "2026-11-21T02:00:00+01:00");
    assert_eq!(
        eu["blocked_by"][0]["reason"],
        "outside the allow window of \"eu-weekend-nights\""
    );
    assert_eq!(action(&plan, "us-billing")["status"], "ready");
    // Inside the window, the same target is ready.
    let plan = plan_json(&repo, "2026-11-22T04:00:00+01:00");
    assert_eq!(action(&plan, "eu-billing")["status"], "ready");
}

#[test]
fn invalid_window_is_reported_at_its_line() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file("releases/billing.yaml", &release("billing", "1.0.0", ""));
    repo.file("targets/t.yaml", &target("t", "billing", "1.0.0", "a: b"));
    repo.file(
        "windows/bad.yaml",
        "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: bad }\nspec:\n  timezone: Mars/Olympus\n  allow:\n    - { start: \"02:00\", end: \"06:00\" }\n",
    );
    repo.commit_all("Bad window");
    let run = repo.gantry(&["plan", "--now", NOW]).expect(1);
    assert!(run.stderr().contains("windows/bad.yaml:5:"), "{}", run.stderr());
    assert!(run.stderr().contains("Mars/Olympus"), "{}", run.stderr());
}

fn staged_repo() -> Repo {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file("releases/billing.yaml", &release("billing", "1.0.0", ""));
    repo.file(
        "policies/staged.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 30m }\n      - { name: half, percent: 50, soak: 30m }\n      - { name: all, percent: 100 }\n",
    );
    for i in 0..10 {
        let ring = if i == 0 { "0" } else { "1" };
        repo.file(
            &format!("targets/t{i:02}.yaml"),
            &target(
                &format!("tenant{i:02}-billing"),
                "billing",
                "1.0.0",
                &format!("ring: \"{ring}\""),
            ),
        );
    }
    repo.commit_all("Ten targets in three waves");
    repo
}

#[test]
fn staged_rollout_lists_waves_in_json_and_only_the_canary_is_ready() {
    let repo = staged_repo();
    let plan = plan_json(&repo, NOW);
    assert_eq!(plan["summary"]["ready"], 1);
    assert_eq!(action(&plan, "tenant00-billing")["status"], "ready");
    assert_eq!(action(&plan, "tenant00-billing")["wave"], "canary");
    let rollout = &plan["rollouts"][0];
    assert_eq!(rollout["component"], "billing");
    assert_eq!(rollout["version"], "1.0.0");
    assert_eq!(rollout["policy"], "staged");
    let sizes: Vec<(String, usize)> = rollout["waves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["targets"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(sizes, vec![("canary".into(), 1), ("half".into(), 4), ("all".into(), 5)]);
    assert!(
        rollout["waves"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["status"] == "pending")
    );
}

#[test]
fn staged_rollout_markdown_snapshot() {
    let repo = staged_repo();
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "markdown"]).expect(0);
    insta::assert_snapshot!("staged_rollout_markdown", run.stdout());
}

/// Regression (issue #16): a pin its policy denies passed `validate` (exit 0) while `plan`
/// exited 2. A pin that can never be deployed (denied, yanked, no such release) is a violation
/// for both, at the target's `spec.version`; a requirement that merely skips a denied version
/// is fine.
#[test]
fn validate_refuses_a_pin_that_can_never_be_deployed_like_plan_does() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "1.1.0", "  yanked: true\n"),
            release("billing", "2.0.0", "")
        ),
    );
    repo.file(
        "policies/prod.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: prod }\nspec:\n  selector: { env: prod }\n  deny: [\"2.0.0\"]\n",
    );
    repo.file("targets/ok.yaml", &target("ok-billing", "billing", ">=1", "env: prod"));
    repo.commit_all("fleet");
    repo.gantry(&["validate"]).expect(0);
    for (pin, why) in [
        (
            "2.0.0",
            "billing 2.0.0 is denied by policy `prod` (deny: \"2.0.0\"); pin another version",
        ),
        (
            "1.1.0",
            "billing 1.1.0 is yanked; pin another version (newest available: 1.0.0)",
        ),
        ("3.0.0", "no Release of `billing` has version 3.0.0"),
    ] {
        // The missing release is the target check's diagnostic (said once, without the prefix).
        let line = |why: &str| {
            if pin == "3.0.0" {
                format!("targets/acme.yaml:8:12: {why}")
            } else {
                format!("targets/acme.yaml:8:12: target `acme-billing`: {why}")
            }
        };
        repo.file(
            "targets/acme.yaml",
            &target("acme-billing", "billing", pin, "env: prod"),
        );
        repo.commit_all(&format!("pin {pin}"));
        let validate = repo.gantry(&["validate"]).expect(2);
        let stderr = validate.stderr();
        assert!(stderr.contains(&line(why)), "{stderr}");
        assert_eq!(stderr.matches(why).count(), 1, "said once: {stderr}");
        repo.gantry(&["plan", "--now", NOW]).expect(2);
    }
}
