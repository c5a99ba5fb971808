//! `gantry plan` and `gantry validate` against real temporary repositories.

mod common;

use common::{Repo, component, release, releases, target};

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

/// Issue #15: a release train for a 552-target fleet (6 tenants × 92 services) rendered a
/// 576,111-character markdown plan, and a pull request comment holds 65,536. The markdown
/// printed must fit `--max-bytes` (default 60,000), roll up by component and by tenant, and
/// name what it left out; `--full-output` holds the whole plan.
#[test]
fn release_train_of_552_targets_fits_a_pull_request_comment() {
    const TENANTS: usize = 6;
    const SERVICES: usize = 92;
    let repo = Repo::new();
    repo.file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n");
    repo.file(
        "policies/train.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: train }\nspec:\n  rollout:\n    waves:\n      - { name: canary, selector: { tenant: tenant-0 }, soak: 1h }\n      - { name: all, percent: 100 }\n",
    );
    let pin_all = |version: &str| {
        for s in 0..SERVICES {
            for t in 0..TENANTS {
                repo.file(
                    &format!("targets/tenant-{t}/svc-{s:02}.yaml"),
                    &target(
                        &format!("tenant-{t}-svc-{s:02}"),
                        &format!("svc-{s:02}"),
                        version,
                        &format!("tenant: tenant-{t}, env: prod"),
                    ),
                );
            }
        }
    };
    for s in 0..SERVICES {
        let name = format!("svc-{s:02}");
        repo.file(&format!("components/{name}.yaml"), &component(&name, ""));
        repo.file(&format!("releases/{name}.yaml"), &release(&name, "1.0.0", ""));
    }
    pin_all("1.0.0");
    repo.commit_all("fleet at 1.0.0");
    repo.gantry(&["apply", "--now", NOW]).expect(0);
    for s in 0..SERVICES {
        let name = format!("svc-{s:02}");
        let breaking = if s % 10 == 0 { "  breaking: true\n" } else { "" };
        repo.file(
            &format!("releases/{name}.yaml"),
            &[
                release(&name, "1.0.0", ""),
                release(
                    &name,
                    "2.0.0",
                    &format!(
                        "{breaking}  changelog:\n    added: [\"{name}: streaming exports\", \"{name}: audit log\"]\n    fixed: [\"{name}: rounding of invoice totals\"]\n"
                    ),
                ),
            ]
            .join("---\n"),
        );
    }
    let base = repo.commit_all("releases 2.0.0");
    pin_all("2.0.0");
    repo.commit_all("release train: every service to 2.0.0");

    let full_path = repo.path().join("plan-full.md");
    let run = repo
        .gantry(&[
            "plan",
            "--now",
            NOW,
            "--base",
            &base,
            "--format",
            "markdown",
            "--group-by",
            "tenant",
            "--full-output",
            full_path.to_str().unwrap(),
        ])
        .expect(0);
    let summary = run.stdout();
    let full = std::fs::read_to_string(&full_path).unwrap();
    eprintln!("full markdown: {} bytes; summary: {} bytes", full.len(), summary.len());

    assert!(
        full.len() > 65_536,
        "the full plan must need summarizing: {} bytes",
        full.len()
    );
    for t in 0..TENANTS {
        for s in 0..SERVICES {
            assert!(
                full.contains(&format!("`tenant-{t}-svc-{s:02}`")),
                "full plan lacks tenant-{t}-svc-{s:02}"
            );
        }
    }
    assert!(summary.len() <= 60_000, "summary is {} bytes", summary.len());
    assert!(summary.starts_with("## gantry plan"), "{summary}");
    assert!(
        summary.contains("✅ **92** ready · **460** blocked") || summary.contains("⏸️ **92** ready · **460** blocked"),
        "{summary}"
    );
    // Roll-ups: one row per component and one per tenant, with counts.
    assert!(summary.contains("### By component"), "{summary}");
    assert!(summary.contains("| `svc-91` | 6 |"), "{summary}");
    assert!(summary.contains("### By `tenant`"), "{summary}");
    for t in 0..TENANTS {
        assert!(summary.contains(&format!("| tenant-{t} | 92 |")), "{summary}");
    }
    // Release notes once per release, breaking ones marked.
    assert!(summary.contains("- **svc-10 2.0.0** ⚠️ **breaking**"), "{summary}");
    // What was left out is named, with where the full plan is.
    let closing = summary
        .lines()
        .find(|l| l.starts_with("**Left out:**"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(closing.contains("target rows ("), "{closing}");
    assert!(closing.contains("the diffs of 552 changed manifests"), "{closing}");
    assert!(closing.contains("the wave tables of"), "{closing}");
    assert!(closing.contains("plan-full.md"), "{closing}");
    let shown = summary.lines().filter(|l| l.starts_with("| `tenant-")).count();
    let left: usize = closing["**Left out:** ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        shown + left,
        TENANTS * SERVICES,
        "every target is shown or counted: {closing}"
    );

    // A tighter limit is honoured too, and the default applies without the flag.
    let tight = repo
        .gantry(&[
            "plan",
            "--now",
            NOW,
            "--base",
            &base,
            "--format",
            "markdown",
            "--max-bytes",
            "20000",
        ])
        .expect(0)
        .stdout();
    assert!(tight.len() <= 20_000, "{} bytes", tight.len());
    assert!(tight.contains("**Left out:**"), "{tight}");
    let default = repo
        .gantry(&["plan", "--now", NOW, "--base", &base, "--format", "markdown"])
        .expect(0)
        .stdout();
    assert!(default.len() <= 60_000, "{} bytes", default.len());
}

#[test]
fn max_bytes_and_group_by_need_markdown() {
    let repo = multihop();
    let run = repo.gantry(&["plan", "--now", NOW, "--max-bytes", "100"]).expect(1);
    assert!(run.stderr().contains("add --format markdown"), "{}", run.stderr());
}

/// A small plan prints unchanged; `--group-by` adds the roll-up by that label.
#[test]
fn small_markdown_plan_is_whole_and_group_by_adds_a_roll_up() {
    let repo = multihop();
    let plain = repo
        .gantry(&["plan", "--now", NOW, "--format", "markdown"])
        .expect(0)
        .stdout();
    assert!(plain.contains("| `acme-billing` |"), "{plain}");
    assert!(!plain.contains("Left out"), "{plain}");
    let grouped = repo
        .gantry(&["plan", "--now", NOW, "--format", "markdown", "--group-by", "tenant"])
        .expect(0)
        .stdout();
    insta::assert_snapshot!("grouped_by_tenant_markdown", grouped);
}

/// Issue #15: artifact checksums were checked only at apply, so a tampered artifact passed CI.
/// `validate` and `plan` now hash every `path` artifact from the commit and fail (exit 2)
/// naming the manifest's line, the artifact, and the expected and actual digests.
#[test]
fn tampered_artifact_fails_validate_and_plan_with_both_digests() {
    let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // sha256("hello")
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file("artifacts/billing-1.0.0.tar", "hello")
        .file(
            "releases/billing.yaml",
            &release(
                "billing",
                "1.0.0",
                &format!("  artifacts:\n    - path: artifacts/billing-1.0.0.tar\n      sha256: \"{good}\"\n"),
            ),
        )
        .file(
            "targets/acme.yaml",
            &target("acme-billing", "billing", "1.0.0", "tenant: acme"),
        );
    repo.commit_all("billing 1.0.0 with its artifact");
    repo.gantry(&["validate"]).expect(0);
    repo.gantry(&["plan", "--now", NOW]).expect(0);

    repo.file("artifacts/billing-1.0.0.tar", "hellO");
    repo.commit_all("tampered artifact");
    let run = repo.gantry(&["validate"]).expect(2);
    let err = run.stderr() + &run.stdout();
    assert!(
        err.contains("releases/billing.yaml:9:15: artifact artifacts/billing-1.0.0.tar of billing 1.0.0: sha256 is "),
        "{err}"
    );
    assert!(err.contains(&format!("the release declares {good}")), "{err}");
    let tampered_digest = {
        use sha2::Digest;
        sha2::Sha256::digest(b"hellO")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert!(err.contains(&format!("sha256 is {tampered_digest}")), "{err}");

    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(2);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let violation = &json["violations"][0];
    assert_eq!(violation["kind"], "artifact", "{json}");
    assert_eq!(violation["file"], "releases/billing.yaml");
    assert!(
        violation["message"].as_str().unwrap().contains(&tampered_digest),
        "{violation}"
    );
    let markdown = repo
        .gantry(&["plan", "--now", NOW, "--format", "markdown"])
        .expect(2)
        .stdout();
    assert!(
        markdown.contains("### ❌ Violations") && markdown.contains(good),
        "{markdown}"
    );
}

#[test]
fn missing_artifact_is_a_violation_at_review_time() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file(
            "releases/billing.yaml",
            &release(
                "billing",
                "1.0.0",
                &format!(
                    "  artifacts:\n    - {{ path: artifacts/missing.tar, sha256: \"{0}\" }}\n    - {{ url: \"http://127.0.0.1:9/unchecked.tar\", sha256: \"{0}\" }}\n",
                    "0".repeat(64)
                ),
            ),
        )
        .file("targets/acme.yaml", &target("acme-billing", "billing", "1.0.0", "tenant: acme"));
    repo.commit_all("artifacts that cannot be checked");
    let run = repo.gantry(&["validate"]).expect(2);
    let out = run.stderr() + &run.stdout();
    assert!(
        out.contains("artifact artifacts/missing.tar of billing 1.0.0 is not in commit"),
        "{out}"
    );
    // url artifacts are left to apply: CI needs no network.
    assert!(!out.contains("unchecked.tar"), "{out}");
}

/// Commits `files` as the whole tree of branch `branch` (a state branch written by hand).
fn state_branch(repo: &Repo, branch: &str, files: &[(&str, &str)]) {
    let git = git2::Repository::open(repo.path()).unwrap();
    let mut builder = git2::build::TreeUpdateBuilder::new();
    for (path, content) in files {
        builder.upsert(*path, git.blob(content.as_bytes()).unwrap(), git2::FileMode::Blob);
    }
    let empty = git.find_tree(git.treebuilder(None).unwrap().write().unwrap()).unwrap();
    let tree = git.find_tree(builder.create_updated(&git, &empty).unwrap()).unwrap();
    let sig = git2::Signature::now("gantry", "gantry@example.com").unwrap();
    git.commit(Some(&format!("refs/heads/{branch}")), &sig, &sig, "state", &tree, &[])
        .unwrap();
}

const BROKEN_RECORD: &str = "component: billing\nstatus: [unclosed\n";

/// `billing` 1.0.0 and 2.0.0, `acme` desired at 2.0.0, recorded at 1.0.0 on `gantry/elsewhere`
/// (which gantry.toml names) and a broken record on the default `gantry/state`.
fn recorded_elsewhere() -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "state_branch = \"gantry/elsewhere\"\n")
        .file("components/billing.yaml", &component("billing", ""))
        .file("releases/billing.yaml", &releases("billing", &["1.0.0", "2.0.0"]))
        .file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    repo.commit_all("fleet");
    state_branch(
        &repo,
        "gantry/elsewhere",
        &[(
            "targets/acme.yaml",
            "component: billing\nversion: 1.0.0\napplied_migrations: []\nstatus: converged\nrollback_points: []\n",
        )],
    );
    state_branch(&repo, "gantry/state", &[("targets/acme.yaml", BROKEN_RECORD)]);
    repo
}

/// Issue #17: `plan` reads the recorded state while the manifests load, from the branch
/// gantry.toml names (read ahead of the manifests); it must be that branch, never the default.
#[test]
fn plan_reads_recorded_state_from_the_state_branch_gantry_toml_names() {
    let repo = recorded_elsewhere();
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json"]).expect(0);
    let plan: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let action = &plan["actions"][0];
    assert_eq!(action["target"], "acme");
    assert_eq!(action["action"], "upgrade", "{action}");
    assert_eq!(action["from"], "1.0.0");
}

/// Issue #17: with the state read concurrently, errors still come in the order of reading one
/// after the other: unreadable manifests are reported (exit 1) before a broken state branch,
/// which is reported, naming its record, once the manifests read.
#[test]
fn unreadable_manifests_are_reported_before_a_broken_state_branch() {
    let repo = recorded_elsewhere();
    repo.file("gantry.toml", "");
    repo.file(
        "targets/acme.yaml",
        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: [unclosed\n",
    );
    repo.commit_all("broken manifest, default state branch");
    let err = repo.gantry(&["plan", "--now", NOW]).expect(1).stderr();
    assert!(err.contains("targets/acme.yaml:3:"), "{err}");
    assert!(!err.contains("gantry/state"), "{err}");

    repo.file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    repo.commit_all("fixed manifest");
    let run = repo.gantry(&["plan", "--now", NOW]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr().contains("gantry/state:targets/acme.yaml:"),
        "{}",
        run.stderr()
    );
}
