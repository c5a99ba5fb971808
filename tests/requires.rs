//! `Release.spec.requires` (issue #16: "dashboard 2.0 needs system ≥ 2.0" was deployed next to
//! system 1.x): the real binary against a real temporary repository whose deploy step appends to
//! a log. The required upgrade is deployed before its dependent; a revert of both moves the
//! dependent back before the required component; a desired state that can never satisfy a
//! requirement is a violation for `validate`, `plan` and `apply` (exit 2), with nothing deployed.

mod common;

use common::{Repo, component, release, target};

/// `scripts/deploy.sh TARGET VERSION`: logs `TARGET VERSION`.
const DEPLOY: &str = "#!/bin/sh\necho \"$1 $2\" >> \"$GANTRY_REPO/deploy.log\"\n";

fn deploy_log(repo: &Repo) -> Vec<String> {
    std::fs::read_to_string(repo.path().join("deploy.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `system` and `dashboard` 1.0.0 and 2.0.0, dashboard 2.0.0 requiring system >=2.0 in its
/// tenant; both of tenant acme installed at 1.0.0, the log cleared.
fn installed() -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "")
        .file("components/system.yaml", &component("system", ""))
        .file("components/dashboard.yaml", &component("dashboard", ""))
        .file(
            "releases/all.yaml",
            &[
                release("system", "1.0.0", ""),
                release("system", "2.0.0", ""),
                release("dashboard", "1.0.0", ""),
                release("dashboard", "2.0.0", "  requires: { system: \">=2.0\" }\n"),
            ]
            .join("---\n"),
        )
        .file("scripts/deploy.sh", DEPLOY)
        .file(
            "targets/acme-system.yaml",
            &target("acme-system", "system", "1.0.0", "tenant: acme"),
        )
        .file(
            "targets/acme-dash.yaml",
            &target("acme-dash", "dashboard", "1.0.0", "tenant: acme"),
        )
        .file(".gitignore", "*.log\n");
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    std::fs::remove_file(repo.path().join("deploy.log")).unwrap();
    repo
}

fn set_versions(repo: &Repo, system: &str, dashboard: &str, message: &str) {
    repo.file(
        "targets/acme-system.yaml",
        &target("acme-system", "system", system, "tenant: acme"),
    )
    .file(
        "targets/acme-dash.yaml",
        &target("acme-dash", "dashboard", dashboard, "tenant: acme"),
    );
    repo.commit_all(message);
}

/// Applies until nothing is left to do (at most three passes), returning the deploy log.
fn apply_to_the_end(repo: &Repo) -> Vec<String> {
    for _ in 0..3 {
        repo.gantry(&["apply"]).expect(0);
        let plan = repo.gantry(&["plan", "--format", "json"]).expect(0).stdout();
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        if plan["summary"]["ready"] == 0 && plan["summary"]["blocked"] == 0 {
            return deploy_log(repo);
        }
    }
    panic!("still not converged after three applies: {:?}", deploy_log(repo));
}

#[test]
fn the_required_upgrade_is_deployed_before_its_dependent_and_reverted_after_it() {
    let repo = installed();
    set_versions(&repo, "2.0.0", "2.0.0", "both to 2.0.0");
    let plan = repo.gantry(&["plan", "--format", "json"]).expect(0).stdout();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let dash = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "acme-dash")
        .unwrap();
    assert_eq!(dash["status"], "blocked", "{dash}");
    assert_eq!(
        dash["blocked_by"][0]["reason"],
        "waits for acme-system (system 1.0.0 → 2.0.0) to finish first: dashboard 2.0.0 requires system >=2.0 (tenant=acme)"
    );
    assert_eq!(dash["blocked_by"][0]["kind"], "dependency");
    assert_eq!(
        apply_to_the_end(&repo),
        ["acme-system 2.0.0", "acme-dash 2.0.0"],
        "system first"
    );

    // A revert of both: system's downgrade would break the running dashboard 2.0.0, so the
    // dashboard moves back first.
    std::fs::remove_file(repo.path().join("deploy.log")).unwrap();
    set_versions(&repo, "1.0.0", "1.0.0", "revert both");
    let plan = repo.gantry(&["plan"]).expect(0).stdout();
    assert!(
        plan.contains("waits for acme-dash to move first: it runs dashboard 2.0.0, which requires system >=2.0 (tenant=acme), and system 2.0.0 → 1.0.0 would break it"),
        "{plan}"
    );
    assert_eq!(
        apply_to_the_end(&repo),
        ["acme-dash 1.0.0", "acme-system 1.0.0"],
        "dashboard first"
    );
}

/// A requirement the desired state can never satisfy (system pinned below it): `validate`,
/// `plan` and `apply` exit 2 naming it, and `apply` deploys nothing of the dependent.
#[test]
fn a_requirement_the_desired_state_cannot_meet_is_a_violation_everywhere() {
    let repo = installed();
    set_versions(&repo, "1.0.0", "2.0.0", "dashboard alone to 2.0.0");
    let message = "target `acme-dash`: dashboard 2.0.0 requires system >=2.0 (tenant=acme), but acme-system is to run system 1.0.0; change one of the desired versions";
    let validate = repo.gantry(&["validate"]).expect(2);
    assert!(
        validate
            .stderr()
            .contains(&format!("targets/acme-dash.yaml:8:12: {message}")),
        "{}",
        validate.stderr()
    );
    let plan = repo.gantry(&["plan"]).expect(2);
    assert!(
        plan.stdout().contains("but acme-system is to run system 1.0.0"),
        "{}",
        plan.stdout()
    );
    repo.gantry(&["apply"]).expect(2);
    assert!(deploy_log(&repo).is_empty(), "{:?}", deploy_log(&repo));
}
