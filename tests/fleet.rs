//! `kind: Fleet` end to end (issue #16): a matrix of tenants × components applied with the real
//! binary against a real repository; generated targets are planned, gated, applied and recorded
//! like written ones, and the commands that edit a target's file refuse them.

mod common;

use common::{Repo, release};
use serde_json::Value;

const NOW: &str = "2026-11-20T10:00:00Z";

const STEP: &str = "#!/bin/sh\nset -eu\necho \"$*\" >> \"$GANTRY_REPO/steps.log\"\n";

fn component(name: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: {name} }}\nspec:\n  steps:\n    deploy: [\"scripts/step.sh\", \"deploy\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\", \"{{{{ target.vars.region }}}}\"]\n"
    )
}

fn fleet(billing_version: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1
kind: Fleet
metadata: {{ name: erp }}
spec:
  tenants: [acme, globex]
  components: [billing, ledger]
  defaults:
    version: 1.0.0
    vars: {{ region: eu }}
  overrides:
    - {{ component: billing, version: {billing_version} }}
    - {{ tenant: globex, vars: {{ region: us }} }}
"
    )
}

/// Billing needs one approval from alice for a major update, for globex only.
const POLICY: &str = "apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: globex-billing }
spec:
  selector: { fleet: erp, tenant: globex }
  components: [billing]
  updates:
    major: { approvals: 1, approvers: [alice@example.com] }
";

fn fleet_repo() -> Repo {
    let repo = Repo::new();
    repo.file("scripts/step.sh", STEP);
    repo.file("components/billing.yaml", &component("billing"));
    repo.file("components/ledger.yaml", &component("ledger"));
    repo.file(
        "releases/all.yaml",
        &format!(
            "{}---\n{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "2.0.0", ""),
            release("ledger", "1.0.0", "")
        ),
    );
    repo.file("fleets/erp.yaml", &fleet("1.0.0"));
    repo.commit_all("Add the erp fleet");
    repo
}

fn steps_log(repo: &Repo) -> Vec<String> {
    let text = std::fs::read_to_string(repo.path().join("steps.log")).unwrap_or_default();
    let _ = std::fs::remove_file(repo.path().join("steps.log"));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn plan_json(repo: &Repo) -> Value {
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    serde_json::from_str(&run.stdout()).expect("plan is JSON")
}

fn action<'a>(plan: &'a Value, target: &str) -> &'a Value {
    plan["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["target"] == target))
        .unwrap_or_else(|| panic!("no action for {target} in {plan:#}"))
}

#[test]
fn a_fleet_is_applied_like_written_targets_and_its_targets_are_gated_by_policy() {
    let repo = fleet_repo();
    repo.gantry(&["validate"]).expect(0);
    let plan = plan_json(&repo);
    for name in ["acme-billing", "acme-ledger", "globex-billing", "globex-ledger"] {
        assert_eq!(action(&plan, name)["status"], "ready", "{name}: {plan:#}");
    }
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(
        steps_log(&repo),
        [
            "deploy acme-billing 1.0.0 eu",
            "deploy acme-ledger 1.0.0 eu",
            "deploy globex-billing 1.0.0 us",
            "deploy globex-ledger 1.0.0 us",
        ]
    );
    let status = repo
        .gantry(&["status", "--now", NOW, "--format", "json"])
        .expect(0)
        .stdout();
    for name in ["acme-billing", "acme-ledger", "globex-billing", "globex-ledger"] {
        assert!(status.contains(&format!("\"{name}\"")), "{name}: {status}");
    }

    // A bump of the component's override, without an approval: the policy that selects the
    // generated globex-billing by its `fleet` and `tenant` labels and component holds it.
    repo.file("policies/globex.yaml", POLICY);
    repo.file("fleets/erp.yaml", &fleet("2.0.0"));
    repo.commit_all("Bump billing to 2.0.0 for the erp fleet");
    let plan = plan_json(&repo);
    assert_eq!(action(&plan, "globex-billing")["status"], "blocked", "{plan:#}");
    assert_eq!(
        action(&plan, "globex-billing")["blocked_by"][0]["kind"],
        "approval",
        "{plan:#}"
    );
    assert_eq!(action(&plan, "acme-billing")["status"], "ready", "{plan:#}");

    // The same bump approved in its commit's trailer: the Fleet file's change is found as the
    // commit that set the generated target's version.
    repo.file("fleets/erp.yaml", &fleet("1.0.0"));
    repo.commit_all("Back to 1.0.0");
    repo.file("fleets/erp.yaml", &fleet("2.0.0"));
    repo.commit_all("Bump billing to 2.0.0 again\n\nApproved-by: Alice <alice@example.com>\n");
    let plan = plan_json(&repo);
    assert_eq!(action(&plan, "globex-billing")["status"], "ready", "{plan:#}");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    assert_eq!(
        steps_log(&repo),
        ["deploy acme-billing 2.0.0 eu", "deploy globex-billing 2.0.0 us"]
    );
}

#[test]
fn rollback_and_retry_refuse_a_generated_target_instead_of_editing_the_fleets_shared_line() {
    let repo = fleet_repo();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    let before = std::fs::read_to_string(repo.path().join("fleets/erp.yaml")).unwrap();
    for args in [
        ["rollback", "acme-billing", "--to", "1.0.0"],
        ["retry", "acme-billing", "--now", NOW],
    ] {
        let run = repo.gantry(&args);
        assert_ne!(run.code(), 0, "{args:?}: {}", run.stdout());
        assert!(
            run.stderr()
                .contains("Target `acme-billing` of Fleet `erp` (fleets/erp.yaml) is generated"),
            "{args:?}: {}",
            run.stderr()
        );
        let after = std::fs::read_to_string(repo.path().join("fleets/erp.yaml")).unwrap();
        assert_eq!(after, before, "{args:?} changed the fleet");
    }
}

#[test]
fn a_generated_name_that_a_written_target_has_fails_validate_naming_both_files() {
    let repo = fleet_repo();
    repo.file(
        "targets/acme-ledger.yaml",
        &(common::target("acme-ledger", "ledger", "1.0.0", "tenant: acme") + "  vars: { region: eu }\n"),
    );
    repo.commit_all("A hand-written acme-ledger");
    let run = repo.gantry(&["validate"]).expect(2);
    assert!(
        run.stderr().contains(
            "fleets/erp.yaml:5:13: Fleet `erp` generates Target `acme-ledger`, which is also written at targets/acme-ledger.yaml:4:9"
        ),
        "{}",
        run.stderr()
    );
    // Nothing runs from an invalid commit.
    assert_ne!(repo.gantry(&["apply", "--now", NOW]).code(), 0);
    assert!(steps_log(&repo).is_empty());
}
