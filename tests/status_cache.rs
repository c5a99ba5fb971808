//! The history walk cache (`.git/gantry/cache/walk`, issue #12 item 8): `gantry status` gives
//! the same answer with the cache as without it after every change that must change the answer
//! (a new commit, a rewritten desired branch that adds an approval, a rewritten state branch),
//! and a corrupt or forged cache file is ignored and rebuilt.

mod common;

use common::{Repo, component, release, target};
use serde_json::Value;

const NOW: &str = "2026-11-20T10:00:00Z";

const POLICY: &str = "apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: prod }
spec:
  selector: { env: prod }
  updates:
    major: { approvals: 1, approvers: [alice@example.com] }
";

fn cache_file(repo: &Repo) -> std::path::PathBuf {
    repo.path().join(".git/gantry/cache/walk")
}

/// `status --format json` as it is (cache present when a previous run wrote it).
fn status(repo: &Repo) -> Value {
    let run = repo.gantry(&["--now", NOW, "status", "--format", "json"]).expect(0);
    serde_json::from_str(&run.stdout()).expect("status is JSON")
}

/// The row of `acme-billing`, after checking the cached answer equals a cold one.
fn acme(repo: &Repo) -> Value {
    let warm = status(repo);
    assert!(cache_file(repo).exists(), "status with approval rules writes the cache");
    let saved = std::fs::read(cache_file(repo)).expect("cache");
    std::fs::remove_file(cache_file(repo)).expect("rm cache");
    let cold = status(repo);
    assert_eq!(warm, cold, "the cache changed the answer");
    // Put back what the warm run had (the cold run wrote its own, equal in content).
    std::fs::write(cache_file(repo), saved).expect("restore cache");
    warm["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|r| r["target"] == "acme-billing"))
        .cloned()
        .unwrap_or_else(|| panic!("no acme-billing row in {warm:#}"))
}

fn blocker_kinds(row: &Value) -> Vec<String> {
    row["blockers"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|x| x["kind"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn repo() -> Repo {
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "desired_branch = \"main\"\n\n[executors.local]\ntype = \"shell\"\n",
    )
    .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
    .file("components/billing.yaml", &component("billing", ""))
    .file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "2.0.0", "")
        ),
    )
    .file("policies/prod.yaml", POLICY)
    .file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "1.0.0", "env: prod"),
    );
    repo.commit_all("Add billing\n\nApproved-by: Alice <alice@example.com>\n");
    repo
}

fn bump(repo: &Repo, message: &str) -> String {
    repo.file(
        "targets/acme.yaml",
        &target("acme-billing", "billing", "2.0.0", "env: prod"),
    );
    repo.commit_all(message)
}

/// Regression for the cache of issue #12 item 8: every change that must change `status`
/// changes it with the cache in place, and the cached answer always equals a cold one.
#[test]
fn status_cache_follows_new_commits_rewritten_branches_and_new_approvals() {
    let repo = repo();
    repo.gantry(&["--now", NOW, "apply"]).expect(0);
    let c0 = repo.git.head().unwrap().peel_to_commit().unwrap().id();
    let row = acme(&repo);
    assert_eq!(
        (row["status"].as_str(), row["next_action"].as_str()),
        (Some("converged"), Some("noop"))
    );

    // A new commit: the major bump without an approval is blocked.
    bump(&repo, "Bump acme-billing to 2.0.0");
    let row = acme(&repo);
    assert_eq!(row["plan_status"], "blocked", "{row:#}");
    assert_eq!(blocker_kinds(&row), vec!["approval"]);

    // A later commit touching manifests but not the version: still blocked (the walk from the
    // new head stops at the cached bump commit and must carry its answer over).
    repo.file(
        "targets/zen.yaml",
        &target("zen-billing", "billing", "1.0.0", "env: dev"),
    );
    repo.commit_all("Add zen");
    assert_eq!(acme(&repo)["plan_status"], "blocked");

    // The desired branch rewritten: the same bump, now with Alice's approval. The cache must
    // not answer for the old commits.
    let c0_commit = repo.git.find_commit(c0).unwrap();
    repo.git
        .reset(c0_commit.as_object(), git2::ResetType::Hard, None)
        .unwrap();
    bump(
        &repo,
        "Bump acme-billing to 2.0.0\n\nApproved-by: Alice <alice@example.com>\n",
    );
    let row = acme(&repo);
    assert_eq!(row["plan_status"], "ready", "{row:#}");
    assert!(blocker_kinds(&row).is_empty(), "{row:#}");

    // The state branch rewritten (back to nothing recorded): the target is new again.
    repo.git
        .find_reference("refs/heads/gantry/state")
        .unwrap()
        .delete()
        .unwrap();
    let row = acme(&repo);
    assert_eq!(row["status"], "new", "{row:#}");
    assert_eq!(row["next_action"], "install", "{row:#}");
}

/// A cache file that is torn, garbage, or well-formed but naming a commit the repository does
/// not have, is ignored: status answers as without it, and rewrites a good file.
#[test]
fn a_corrupt_or_forged_cache_file_is_ignored_and_rebuilt() {
    use sha2::Digest;
    let repo = repo();
    bump(&repo, "Bump acme-billing to 2.0.0");
    let want = status(&repo);
    let good = std::fs::read_to_string(cache_file(&repo)).expect("cache written");
    assert!(good.starts_with("gantry-walk-cache v1 "), "{good}");
    let head = repo.git.head().unwrap().peel_to_commit().unwrap().id().to_string();
    // A well-formed file (its digest matches) claiming the version was settled at a commit
    // that does not exist, in a root commit with Alice's approval: must not be believed.
    let body = serde_json::json!({"entries": [{"kind": "target_versions", "head": head,
        "settled": {"acme-billing": ["2.0.0", "f".repeat(40)]}}]})
    .to_string();
    let digest: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let forged = format!("gantry-walk-cache v1 {digest}\n{body}");
    let torn = &good[..good.len() / 2];
    for bad in [
        forged.as_str(),
        torn,
        "",
        "\u{0}\u{1}garbage",
        "gantry-walk-cache v1 00\n{}",
    ] {
        std::fs::write(cache_file(&repo), bad).expect("write bad cache");
        assert_eq!(status(&repo), want, "with cache file {bad:?}");
        let rebuilt = std::fs::read_to_string(cache_file(&repo)).expect("cache rebuilt");
        assert!(
            rebuilt.starts_with("gantry-walk-cache v1 ") && rebuilt != bad,
            "not rebuilt after {bad:?}: {rebuilt}"
        );
    }
    let row = want["targets"][0].clone();
    assert_eq!(row["plan_status"], "blocked", "{row:#}");
}

/// The template check cache (`.git/gantry/cache/templates`, keyed by commit): a commit with an
/// undefined template variable fails the same way from the cache, a fix passes, going back to
/// the broken content in a new commit fails again, and a corrupt cache file changes nothing.
#[test]
fn template_check_cache_follows_commits_and_ignores_a_corrupt_file() {
    let repo = Repo::new();
    let with_vars = |vars: &str| {
        format!(
            "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: acme }}\nspec:\n  component: web\n  version: \"1.0.0\"\n{vars}"
        )
    };
    repo.file(
        "components/web.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.vars.host }}\"]\n",
    )
    .file("releases/web.yaml", &release("web", "1.0.0", ""))
    .file("targets/acme.yaml", &with_vars(""));
    repo.commit_all("broken: no host");
    let broken = |repo: &Repo| {
        let run = repo.gantry(&["validate"]).expect(1);
        let text = run.stdout() + &run.stderr();
        assert!(text.contains("`target.vars.host` is undefined"), "{text}");
        // The diagnostic line (the summary after it names the commit).
        text.lines().next().unwrap_or("").to_string()
    };
    let first = broken(&repo);
    let cache = repo.path().join(".git/gantry/cache/templates");
    assert!(cache.exists(), "the check was cached");
    assert_eq!(broken(&repo), first, "the same diagnostics from the cache");
    repo.file("targets/acme.yaml", &with_vars("  vars: { host: acme.internal }\n"));
    repo.commit_all("fixed");
    repo.gantry(&["validate"]).expect(0);
    repo.file("targets/acme.yaml", &with_vars(""));
    repo.commit_all("broken again (the first tree)");
    assert_eq!(broken(&repo), first);
    std::fs::write(&cache, "gantry-template-cache v1 00\n{\"entries\":[]}").expect("corrupt");
    assert_eq!(broken(&repo), first);
}
