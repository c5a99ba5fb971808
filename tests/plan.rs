//! `gantry plan` and `gantry validate` against real temporary repositories.

mod common;

use common::{Repo, component, release, target};

const NOW: &str = "2026-11-21T10:00:00Z";

fn multihop() -> Repo {
    Repo::from_dir("fixtures/good/multihop")
}

#[test]
fn install_plan_text_snapshot() {
    let repo = multihop();
    let run = repo.gantry(&["plan", "--now", NOW]).expect(0);
    insta::assert_snapshot!("install_plan_text", run.stdout());
}

#[test]
fn plan_json_lists_stops_and_migrations_in_order() {
    let repo = multihop();
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let action = &plan["actions"][0];
    assert_eq!(action["target"], "acme-billing");
    assert_eq!(action["action"], "install");
    assert_eq!(action["to"], "1.0.0");
    assert_eq!(action["status"], "ready");
    assert_eq!(plan["now"], NOW);
    assert_eq!(plan["head"].as_str().unwrap().len(), 40);
}

#[test]
fn plan_with_base_shows_only_changed_actions_and_diffs() {
    let repo = multihop();
    let base = repo.commit_all("unchanged");
    repo.file(
        "targets/globex.yaml",
        &target("globex-billing", "billing", "1.2.0", "tenant: globex, env: prod"),
    );
    let head = repo.commit_all("Add globex");
    let run = repo
        .gantry(&[
            "plan", "--now", NOW, "--base", &base, "--head", &head, "--format", "markdown",
        ])
        .expect(0);
    let out = run.stdout();
    assert!(out.contains("`globex-billing`"), "{out}");
    assert!(
        !out.contains("`acme-billing`"),
        "unchanged target must not be shown:\n{out}"
    );
    assert!(
        out.contains("<details><summary><code>targets/globex.yaml</code></summary>"),
        "{out}"
    );
    assert!(out.contains("+  name: globex-billing"), "{out}");
    insta::assert_snapshot!("base_head_markdown", out);
}

#[test]
fn violations_exit_2_and_name_the_file() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file(
        "releases/billing.yaml",
        &release("billing", "1.0.0", "  yanked: true\n"),
    );
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "1.0.0", "env: prod"),
    );
    repo.commit_all("yanked pin");
    let run = repo.gantry(&["plan", "--now", NOW]).expect(2);
    assert!(
        run.stdout().contains("billing 1.0.0 is yanked; pin another version"),
        "{}",
        run.stdout()
    );
}

#[test]
fn unknown_release_pin_is_a_violation_with_location() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""));
    repo.file("releases/billing.yaml", &release("billing", "1.0.0", ""));
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "1.5.0", "env: prod"),
    );
    repo.commit_all("bad pin");
    let run = repo.gantry(&["validate"]).expect(2);
    assert!(
        run.stderr().contains("targets/acme.yaml:8:12: no Release of `billing` has version 1.5.0; add the Release manifest or pin a released version (1.0.0)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn parse_errors_exit_1_with_line_and_column() {
    let repo = Repo::new();
    repo.file(
        "targets/acme.yaml",
        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: acme\n",
    );
    repo.commit_all("broken");
    let run = repo.gantry(&["validate"]).expect(1);
    assert!(run.stderr().contains("targets/acme.yaml:"), "{}", run.stderr());
    assert!(run.stderr().contains("invalid YAML"), "{}", run.stderr());
}

#[test]
fn plan_reads_the_commit_not_the_work_tree() {
    let repo = multihop();
    // An uncommitted edit must not change the plan.
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "9.9.9", "env: prod"),
    );
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    assert!(run.stdout().contains("\"to\": \"1.0.0\""), "{}", run.stdout());
}

#[test]
fn repository_template_overrides_the_builtin() {
    let repo = multihop();
    repo.file(
        "templates/plan.text.j2",
        "custom: {% for a in actions %}{{ a.target }}={{ a.action }} {% endfor %}\n",
    );
    repo.commit_all("template");
    let run = repo.gantry(&["plan", "--now", NOW]).expect(0);
    assert_eq!(run.stdout(), "custom: acme-billing=install \n");
}

#[test]
fn bad_now_is_a_usage_error() {
    let repo = multihop();
    let run = repo.gantry(&["plan", "--now", "yesterday"]).expect(1);
    assert!(
        run.stderr().contains("--now `yesterday` is not an RFC 3339 time"),
        "{}",
        run.stderr()
    );
}

/// The JSON output must match `schemas/plan.schema.json` (SPEC §3), including rollouts, blockers
/// and violations: checked on plans with each of those.
#[test]
fn plan_json_matches_the_plan_schema() {
    use gantry::manifest::schema::{SchemaKind, validate};
    let check = |repo: &Repo, args: &[&str]| {
        let run = repo.gantry(args);
        let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let violations = validate(SchemaKind::Plan, &json);
        let listed: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.pointer, v.message))
            .collect();
        assert!(violations.is_empty(), "{args:?}: {listed:#?}");
        json
    };
    let repo = multihop();
    let base = repo.commit_all("base");
    check(&repo, &["plan", "--now", NOW, "--format", "json"]);
    repo.file(
        "targets/globex.yaml",
        &target("globex-billing", "billing", "9.9.9", "tenant: globex, env: prod"),
    );
    repo.file(
        "policies/staged.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  updates: { major: { approvals: 1, approvers: [alice@example.com] } }\n  rollout:\n    waves:\n      - { name: canary, selector: { tenant: acme }, soak: 30m }\n      - { name: all, percent: 100 }\n",
    );
    repo.commit_all("violation, approvals and waves");
    let json = check(&repo, &["plan", "--now", NOW, "--format", "json", "--base", &base]);
    assert!(!json["rollouts"].as_array().unwrap().is_empty(), "{json}");
    assert!(
        json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "violation"),
        "{json}"
    );
    assert!(
        json["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "blocked"),
        "{json}"
    );
}

/// A repository whose `acme-billing` is recorded at 1.0.0 and desired at 2.0.0, crossing 1.5.0
/// (a changelog) and 2.0.0 (breaking, deprecated, one migration without `down`, a changelog).
fn breaking_upgrade() -> Repo {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file("scripts/migrate.sh", "#!/bin/sh\nexit 0\n")
        .file(
            "releases/billing.yaml",
            &[
                release("billing", "1.0.0", ""),
                release(
                    "billing",
                    "1.5.0",
                    "  changelog: { fixed: [\"invoices round half-even\"] }\n",
                ),
                release(
                    "billing",
                    "2.0.0",
                    "  breaking: true\n  deprecated: \"use 2.1.x once released\"\n  migrations:\n    - { id: split-namespaces, up: [\"scripts/migrate.sh\", \"up\"] }\n    - { id: add-index, up: [\"scripts/migrate.sh\", \"up\"], down: [\"scripts/migrate.sh\", \"down\"] }\n  changelog:\n    added: [\"per-tenant namespaces\"]\n    removed: [\"the v1 | pipe API\"]\n    security: [\"CVE-2026-0001 fixed\"]\n",
                ),
            ]
            .join("---\n"),
        )
        .file("targets/acme.yaml", &target("acme-billing", "billing", "1.0.0", "tenant: acme"));
    repo.commit_all("billing 1.0.0 on acme");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "2.0.0", "tenant: acme"),
    );
    repo.commit_all("billing 2.0.0 on acme");
    repo
}

/// Issue #15: `breaking: true` was documented as shown in plans and appeared nowhere; the
/// changelog, deprecation and irreversible migrations were not shown either.
#[test]
fn plan_shows_changelog_breaking_deprecation_and_irreversible_migrations() {
    let repo = breaking_upgrade();
    let text = repo.gantry(&["plan", "--now", NOW]).expect(0).stdout();
    insta::assert_snapshot!("breaking_upgrade_text", text);
    let markdown = repo
        .gantry(&["plan", "--now", NOW, "--format", "markdown"])
        .expect(0)
        .stdout();
    insta::assert_snapshot!("breaking_upgrade_markdown", markdown);

    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let violations = gantry::manifest::schema::validate(gantry::manifest::schema::SchemaKind::Plan, &json);
    assert!(
        violations.is_empty(),
        "{:?}",
        violations.iter().map(|v| &v.message).collect::<Vec<_>>()
    );
    let action = &json["actions"][0];
    assert_eq!(action["breaking"], true);
    insta::assert_snapshot!(
        "breaking_upgrade_releases",
        serde_json::to_string_pretty(&action["releases"]).unwrap()
    );
}

/// A downgrade lists the releases it takes away but is not itself `breaking`; an install of a
/// breaking release is not breaking either (no caller of an older version exists).
#[test]
fn only_upgrades_are_breaking() {
    let repo = breaking_upgrade();
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "1.5.0", "tenant: acme"),
    );
    repo.file(
        "components/billing.yaml",
        &component("billing", "    restore: [\"scripts/migrate.sh\", \"restore\"]\n"),
    );
    repo.file(
        "targets/new.yaml",
        &target("new-billing", "billing", "2.0.0", "tenant: new"),
    );
    repo.commit_all("back to 1.5.0, and a new target");
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let acme = &json["actions"][0];
    assert_eq!(acme["action"], "downgrade", "{acme}");
    assert_eq!(acme["breaking"], false);
    assert_eq!(acme["releases"][0]["version"], "2.0.0");
    assert_eq!(acme["releases"][0]["irreversible"][0], "split-namespaces");
    let new = &json["actions"][1];
    assert_eq!(new["action"], "install", "{new}");
    assert_eq!(new["breaking"], false);
    assert_eq!(new["releases"][0]["breaking"], true);
}
