//! Issue #18: trust and approvals that hold against an insider with push access. Each numbered
//! attack of the issue is a test here: the attacker's change is refused with a message saying
//! why, and the legitimate path (signed approvals, reverts, key rotation signed by an old key)
//! still works. Real binary, real repositories, real ssh-keygen ed25519 keys and real
//! SSH-signed commits made by the git CLI (`gpg.format = ssh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::{Repo, component, keypair, release, target};

/// Runs the git CLI in the repository; panics with its stderr when it fails.
fn git(repo: &Repo, args: &[&str]) -> String {
    common::git_cli(repo, args)
}

/// `git add -A && git commit`, signed with `key`; returns the new commit id.
fn signed_commit(repo: &Repo, message: &str, key: &Path) -> String {
    git(repo, &["add", "-A"]);
    let signing = format!("user.signingkey={}", key.display());
    git(repo, &["-c", &signing, "commit", "-q", "-S", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

/// `git verify-commit REV` against the repository's allowed signers succeeds (git's own
/// verification accepts gantry's in-process signature); returns what git said.
fn assert_git_verifies(repo: &Repo, rev: &str) -> String {
    let verified = Command::new("git")
        .current_dir(repo.path())
        .args([
            "-c",
            "gpg.ssh.allowedSignersFile=trust/allowed_signers",
            "verify-commit",
            rev,
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verified.stderr).into_owned();
    assert!(verified.status.success(), "{said}");
    said
}

const DEPLOY: &str = "#!/bin/sh\necho \"deploy $2\" >> \"$GANTRY_REPO/runs.log\"\n";

const TRUSTED_CONFIG: &str =
    "[executors.local]\ntype = \"shell\"\n\n[trust]\nallowed_signers = \"trust/allowed_signers\"\n";

/// Major and minor updates need one approval, from approver@example.com.
const GATED: &str = "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: gated }\nspec:\n  updates:\n    minor: { approvals: 1, approvers: [approver@example.com] }\n    major: { approvals: 1, approvers: [approver@example.com] }\n";

/// Keys of the people in these stories.
struct Keys {
    _dir: tempfile::TempDir,
    alice: PathBuf,
    alice_pub: String,
    approver: PathBuf,
    approver_pub: String,
    mallory: PathBuf,
    mallory_pub: String,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = keypair(dir.path(), "alice");
    let (approver, approver_pub) = keypair(dir.path(), "approver");
    let (mallory, mallory_pub) = keypair(dir.path(), "mallory");
    Keys {
        _dir: dir,
        alice,
        alice_pub,
        approver,
        approver_pub,
        mallory,
        mallory_pub,
    }
}

/// A fleet of one target `acme` at `version`, releases 1.0.0 and 2.0.0, signers alice and the
/// approver, and `policy` (may be empty).
fn fleet(keys: &Keys, version: &str, policy: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", TRUSTED_CONFIG)
        .file(
            "trust/allowed_signers",
            &format!(
                "alice@example.com {}\napprover@example.com {}\n",
                keys.alice_pub, keys.approver_pub
            ),
        )
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &format!(
                "{}---\n{}",
                release("billing", "1.0.0", ""),
                release("billing", "2.0.0", "")
            ),
        )
        .file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"))
        .file("scripts/deploy.sh", DEPLOY)
        .file(".gitignore", "runs.log\n");
    if !policy.is_empty() {
        repo.file("policies/gated.yaml", policy);
    }
    repo
}

fn runs(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("runs.log")).unwrap_or_default()
}

/// The first commit, signed by the approver with their trailer (an install follows the major
/// rule), applied.
fn install_approved(repo: &Repo, keys: &Keys) {
    signed_commit(
        repo,
        "fleet\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(repo), "deploy 1.0.0\n");
}

fn bump(repo: &Repo, version: &str) {
    repo.file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"));
}

/// Attack 1: renaming the state branch reset the anchor to the head's own signers list.
#[test]
fn renaming_the_state_branch_does_not_move_the_trust_anchor() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", "");
    let trusted = signed_commit(&repo, "fleet", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\n");

    repo.file(
        "gantry.toml",
        &format!("state_branch = \"gantry/state-m\"\n{TRUSTED_CONFIG}"),
    )
    .file(
        "trust/allowed_signers",
        &format!("mallory@example.com {}\n", keys.mallory_pub),
    );
    bump(&repo, "2.0.0");
    signed_commit(&repo, "new state branch, my key, upgrade", &keys.mallory);
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "which is not listed in trust/allowed_signers at {}",
            &trusted[..7]
        )),
        "{err}"
    );
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "nothing of the untrusted head ran");
    // Still anchored at the trusted commit.
    let status = repo.gantry(&["status", "--format", "json"]).expect(0).stdout();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["trust_anchor"]["commit"], trusted.as_str());
    assert_eq!(status["trust_anchor"]["state_branch"], "gantry/state");
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(
        status.contains(&format!("trust anchor {} (state branch gantry/state", &trusted[..12])),
        "{status}"
    );
}

/// Key rotation: a commit signed by a key allowed *before* it replaces the list; the new key
/// is trusted from the next commit on, and the old one no longer.
#[test]
fn key_rotation_signed_by_the_old_key_works() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", "");
    signed_commit(&repo, "fleet", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    // Rotation signed by alice: the list now holds only mallory's key (say, alice's new key).
    repo.file(
        "trust/allowed_signers",
        &format!("alice@example.com {}\n", keys.mallory_pub),
    );
    signed_commit(&repo, "rotate alice's key", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    bump(&repo, "2.0.0");
    signed_commit(&repo, "upgrade with the new key", &keys.mallory);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
    // The old key is out.
    repo.file("README", "x");
    signed_commit(&repo, "old key", &keys.alice);
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(err.contains("not listed in trust/allowed_signers at "), "{err}");
}

/// Attack 2: a force-pushed orphan history, signed by the attacker's key and listing it, was
/// trusted on first use once the old anchor commit was pruned (or the repository re-cloned).
#[test]
fn a_missing_anchor_commit_is_an_error_not_trust_on_first_use() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", "");
    let trusted = signed_commit(&repo, "fleet", &keys.alice);
    repo.gantry(&["apply"]).expect(0);

    git(&repo, &["checkout", "-q", "--orphan", "evil"]);
    repo.file(
        "trust/allowed_signers",
        &format!("mallory@example.com {}\n", keys.mallory_pub),
    );
    bump(&repo, "2.0.0");
    signed_commit(&repo, "orphan history", &keys.mallory);
    git(&repo, &["branch", "-f", "main", "evil"]);
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["branch", "-D", "evil"]);
    git(&repo, &["reflog", "expire", "--expire=now", "--all"]);
    git(&repo, &["gc", "-q", "--prune=now"]);
    assert!(
        repo.git.find_commit(git2::Oid::from_str(&trusted).unwrap()).is_err(),
        "pruned"
    );

    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "the trust anchor {trusted} (pinned in .git/gantry/trust-anchor) is not in this repository"
        )),
        "{err}"
    );
    assert!(err.contains("run once with --allow-rewind"), "{err}");
    // A re-clone has no pinned anchor, but the state branch still names the last reconciled
    // commit: same refusal, no fall back to the head's own list.
    std::fs::remove_file(repo.path().join(".git/gantry/trust-anchor")).unwrap();
    let err = repo.gantry(&["apply", "--allow-rewind"]).expect(1).stderr();
    assert!(
        err.contains(&format!("the trust anchor {trusted} (the newest desired commit recorded on the state branch) is not in this repository")),
        "{err}"
    );
    assert_eq!(runs(&repo), "deploy 1.0.0\n");

    // The operator's way out: check the new history by hand, pin its signers, allow the rewind.
    std::fs::write(
        repo.path().join(".git/gantry/allowed_signers"),
        format!("mallory@example.com {}\n", keys.mallory_pub),
    )
    .unwrap();
    repo.gantry(&["apply", "--allow-rewind"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// Attack 5: resetting `main` to an older, validly signed commit rolled the fleet back with no
/// new signature. Reverts (new commits) keep working; `--allow-rewind` is the explicit way.
#[test]
fn replaying_an_old_signed_head_is_refused_but_a_revert_works() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", "");
    let old = signed_commit(&repo, "fleet", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    bump(&repo, "2.0.0");
    let new = signed_commit(&repo, "upgrade", &keys.alice);
    repo.gantry(&["apply"]).expect(0);

    git(&repo, &["reset", "-q", "--hard", &old]);
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "the desired branch moved backwards: {old} does not descend from {new}, the last reconciled commit"
        )),
        "{err}"
    );
    assert!(err.contains("git revert"), "{err}");
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");

    // The legitimate way back: a revert is a new, signed commit.
    git(&repo, &["reset", "-q", "--hard", &new]);
    git(
        &repo,
        &[
            "-c",
            &format!("user.signingkey={}", keys.alice.display()),
            "revert",
            "--no-edit",
            "-S",
            "HEAD",
        ],
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\ndeploy 1.0.0\n");

    // A deliberate rewind, allowed on the host.
    git(&repo, &["reset", "-q", "--hard", &new]);
    repo.gantry(&["apply"]).expect(1);
    repo.gantry(&["apply", "--allow-rewind"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\ndeploy 1.0.0\ndeploy 2.0.0\n");
}

/// Attack 3: an allowed signer who is not the approver wrote `approvedBy: [approver]`.
#[test]
fn an_approval_manifest_counts_only_when_signed_by_the_approver() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", GATED);
    install_approved(&repo, &keys);

    bump(&repo, "2.0.0");
    repo.file(
        "approvals/acme-2.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: acme-2.0.0 }\nspec: { component: billing, version: 2.0.0, approvedBy: [approver@example.com] }\n",
    );
    let forged = signed_commit(&repo, "upgrade, approved (not really)", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "the forged approval did not count");
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(
        status.contains(&format!(
            "Approval `acme-2.0.0` names approver@example.com but commit {} that added it is signed by alice@example.com",
            &forged[..7]
        )),
        "{status}"
    );

    // The approver signs their own approval (the same manifest, re-added in their commit).
    repo.remove("approvals/acme-2.0.0.yaml");
    signed_commit(&repo, "drop forged approval", &keys.alice);
    repo.file(
        "approvals/acme-2.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: acme-2.0.0 }\nspec: { component: billing, version: 2.0.0, approvedBy: [approver@example.com] }\n",
    );
    signed_commit(&repo, "approve billing 2.0.0", &keys.approver);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// Attack 4: a signer listed their own key for the approver's address in the same commit as an
/// `Approved-by:` trailer naming the approver.
#[test]
fn a_remapped_key_cannot_forge_a_trailer_approval() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", GATED);
    install_approved(&repo, &keys);

    let signers = std::fs::read_to_string(repo.path().join("trust/allowed_signers")).unwrap();
    repo.file(
        "trust/allowed_signers",
        &format!("{signers}approver@example.com {}\n", keys.alice_pub),
    );
    bump(&repo, "2.0.0");
    signed_commit(
        &repo,
        "upgrade\n\nApproved-by: Approver <approver@example.com>",
        &keys.alice,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        runs(&repo),
        "deploy 1.0.0\n",
        "the remapped key's trailer did not count"
    );
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(
        status.contains("blocked by approval: have 0 of 1 approvals"),
        "{status}"
    );

    // The real approver's signed trailer counts (checked against the anchored list).
    repo.file("trust/allowed_signers", &signers);
    bump(&repo, "1.0.0");
    signed_commit(&repo, "back", &keys.alice);
    bump(&repo, "2.0.0");
    signed_commit(
        &repo,
        "upgrade\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// Attack 7: an approval of a requirement (`^1.0`) approved a release someone else added
/// afterwards; an approval names the exact release content it approved.
#[test]
fn an_approval_does_not_approve_releases_added_or_changed_later() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", GATED);
    install_approved(&repo, &keys);

    let releases = |extra: &str| {
        format!(
            "{}---\n{}---\n{}{extra}",
            release("billing", "1.0.0", ""),
            release("billing", "1.1.0", ""),
            release("billing", "2.0.0", "")
        )
    };
    repo.file("releases/billing.yaml", &releases(""));
    signed_commit(&repo, "release 1.1.0", &keys.alice);
    bump(&repo, "^1.0");
    signed_commit(
        &repo,
        "follow 1.x\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 1.1.0\n", "the approved release runs");

    repo.file(
        "releases/billing.yaml",
        &releases(&format!("---\n{}", release("billing", "1.2.0", ""))),
    );
    signed_commit(&repo, "release 1.2.0", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 1.1.0\n", "1.2.0 was never approved");
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(
        status.contains(
            "Approved-by approver@example.com not counted: billing 1.2.0 was added or changed since the commit that approved it"
        ),
        "{status}"
    );

    // An Approval of an exact release is voided by editing that release afterwards.
    bump(&repo, "2.0.0");
    signed_commit(&repo, "upgrade to 2.0.0", &keys.alice);
    let key = keys.approver.to_string_lossy().into_owned();
    repo.gantry(&["approve", "acme", "--key", &key]).expect(0);
    git(&repo, &["reset", "-q", "--hard"]);
    let edited = format!(
        "{}---\n{}---\n{}---\n{}",
        release("billing", "1.0.0", ""),
        release("billing", "1.1.0", ""),
        release("billing", "1.2.0", ""),
        release("billing", "2.0.0", "  deprecated: \"swapped after the approval\"\n")
    );
    repo.file("releases/billing.yaml", &edited);
    signed_commit(&repo, "edit 2.0.0", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        runs(&repo),
        "deploy 1.0.0\ndeploy 1.1.0\n",
        "the edited 2.0.0 was never approved"
    );
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(
        status.contains("Approval `billing-2-0-0-acme-approver-example-com` not counted: billing 2.0.0 was added or changed since it was approved"),
        "{status}"
    );
}

/// Attack 6: a never-deployed 1.9.0 below the running 2.0.0 skipped approvals as a "revert".
#[test]
fn a_downgrade_to_a_version_that_never_ran_needs_approval() {
    let keys = keys();
    let repo = fleet(&keys, "2.0.0", GATED);
    // Installing needs the approver (an install follows the major rule).
    signed_commit(
        &repo,
        "fleet\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 2.0.0\n");
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "1.9.0", ""),
            release("billing", "2.0.0", "")
        ),
    );
    bump(&repo, "1.9.0");
    signed_commit(&repo, "\"downgrade\" to 1.9.0", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        runs(&repo),
        "deploy 2.0.0\n",
        "1.9.0 never ran here: it needs the approval"
    );
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(status.contains("blocked by approval"), "{status}");
}

/// Attack 8: `*@ops.x,!intruder@ops.x` let the negated principal approve.
#[test]
fn a_negated_principal_cannot_approve() {
    let keys = keys();
    let policy = GATED.replace(
        "[approver@example.com]",
        "[approver@example.com, intruder@ops.example.com]",
    );
    let repo = fleet(&keys, "1.0.0", &policy);
    let signers = std::fs::read_to_string(repo.path().join("trust/allowed_signers")).unwrap();
    repo.file(
        "trust/allowed_signers",
        &format!(
            "{signers}*@ops.example.com,!intruder@ops.example.com {}\n",
            keys.mallory_pub
        ),
    );
    install_approved(&repo, &keys);
    bump(&repo, "2.0.0");
    signed_commit(
        &repo,
        "upgrade\n\nApproved-by: Intruder <intruder@ops.example.com>",
        &keys.mallory,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "the negated principal did not count");
    // Anyone else the pattern list allows does count.
    bump(&repo, "1.0.0");
    signed_commit(&repo, "back", &keys.mallory);
    repo.gantry(&["apply"]).expect(0);
    bump(&repo, "2.0.0");
    let policy = policy.replace("intruder@ops.example.com", "oncall@ops.example.com");
    repo.file("policies/gated.yaml", &policy);
    signed_commit(
        &repo,
        "upgrade\n\nApproved-by: On-call <oncall@ops.example.com>",
        &keys.mallory,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// A daemon on 127.0.0.1, killed when dropped.
struct Daemon {
    child: Child,
    addr: String,
}

impl Daemon {
    fn start(repo: &Repo, extra: &[&str]) -> Daemon {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
        command
            .arg("--repo")
            .arg(repo.path())
            .args(["daemon", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("GANTRY_NOW");
        let (child, addr, _stderr) = common::spawn_daemon(command);
        Daemon { child, addr }
    }

    /// Sends a request with a real HTTP client, with the given extra headers.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        let url = format!("http://{}{path}", self.addr);
        let result = if method == "POST" {
            let mut req = agent.post(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send("{}")
        } else {
            let mut req = agent.get(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let code = response.status().as_u16();
        (code, response.body_mut().read_to_string().unwrap_or_default())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Attack 11: `Host: attacker.example` got 200 on /api/status (DNS rebinding) and a cross-site
/// `POST /api/refresh` got 202 (CSRF).
#[test]
fn the_http_api_refuses_foreign_hosts_and_cross_site_writes() {
    let repo = Repo::new();
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file("components/billing.yaml", &component("billing", ""))
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
        .file("scripts/deploy.sh", DEPLOY);
    repo.commit_all("fleet");
    let daemon = Daemon::start(&repo, &["--allowed-host", "gantry.internal"]);
    let json = ("Content-Type", "application/json");

    let (code, body) = daemon.request("GET", "/api/status", &[("Host", "attacker.example")]);
    assert_eq!(code, 421, "{body}");
    assert!(
        body.contains("Host `attacker.example` is not this daemon's listen address"),
        "{body}"
    );
    let (code, _) = daemon.request("GET", "/api/status", &[]);
    assert_eq!(code, 200, "its own address");
    let (code, _) = daemon.request("GET", "/healthz", &[("Host", "gantry.internal")]);
    assert_eq!(code, 200, "an --allowed-host name");

    let (code, body) = daemon.request(
        "POST",
        "/api/refresh",
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("needs `Content-Type: application/json`"), "{body}");
    let (code, body) = daemon.request("POST", "/api/refresh", &[json, ("Origin", "https://attacker.example")]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Origin `https://attacker.example` is not this daemon"),
        "{body}"
    );
    let origin = format!("http://{}", daemon.addr);
    let (code, body) = daemon.request("POST", "/api/refresh", &[json, ("Origin", &origin)]);
    assert_eq!(code, 202, "same origin: {body}");
    let (code, body) = daemon.request("POST", "/api/refresh", &[json]);
    assert_eq!(code, 202, "no Origin (not a browser): {body}");
    // The Git webhook is reached under the daemon's public name and authenticated by its HMAC:
    // the guard leaves it to that check (no secret configured here, so it is refused by it).
    let (code, body) = daemon.request("POST", "/api/hooks/git", &[("Host", "gantry.example.org")]);
    assert_ne!(code, 421, "{body}");
    assert!(!body.contains("is not this daemon's listen address"), "{body}");
}

/// Attacks 10 and 12: `plan` printed old and new `vars` values in the manifest diff, and raw
/// terminal escapes from commit subjects.
#[test]
fn plans_mask_vars_and_strip_terminal_escapes() {
    let repo = Repo::new();
    let with_vars = |version: &str, token: &str| {
        format!(
            "{}  config: {{ replicas: 2 }}\n  vars:\n    token: {token}\n    region: eu-west\n",
            target("acme", "billing", version, "env: prod")
        )
    };
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &format!(
                "{}---\n{}",
                release("billing", "1.0.0", ""),
                release("billing", "2.0.0", "")
            ),
        )
        .file("targets/acme.yaml", &with_vars("1.0.0", "old-s3cr3t-value"))
        .file("scripts/deploy.sh", DEPLOY);
    let base = repo.commit_all("fleet");
    repo.file("targets/acme.yaml", &with_vars("2.0.0", "new-s3cr3t-value"));
    repo.commit_all("rotate \u{1b}]0;owned\u{7}token \u{1b}[2J\u{1b}[31mnow\u{1b}[0m");
    for format in ["text", "markdown", "json"] {
        let out = repo
            .gantry(&["plan", "--base", &base, "--format", format])
            .expect(0)
            .stdout();
        assert!(!out.contains("s3cr3t"), "{format} leaks a var value:\n{out}");
        assert!(!out.contains("eu-west"), "{format} leaks a var value:\n{out}");
        assert!(!out.contains('\u{1b}'), "{format} carries a terminal escape:\n{out}");
        if format != "json" {
            assert!(
                out.contains("token: *** (changed)"),
                "{format} shows the var changed:\n{out}"
            );
            assert!(
                out.contains("rotate token now"),
                "{format} keeps the subject's text:\n{out}"
            );
            assert!(out.contains("replicas: 2"), "{format} shows config:\n{out}");
        }
    }
}

/// Attack 9: a URL artifact was verified, then fetched again by the step over plain http, where
/// the server could answer differently. The step now gets the verified local file.
#[test]
fn steps_get_the_verified_artifact_file_not_the_url() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/billing-2.0.0.tar", listener.local_addr().unwrap());
    // The first answer is the real artifact; every later one is the attacker's.
    std::thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let body: &[u8] = if i == 0 { b"good artifact\n" } else { b"evil artifact\n" };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    let sha = common::sha256_hex(b"good artifact\n");
    let repo = common::url_artifact_fleet(&url, &sha, &["acme"]);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "good artifact\n");
    let cached = repo.path().join(".git/gantry/artifacts").join(&sha);
    assert_eq!(std::fs::read_to_string(&cached).unwrap(), "good artifact\n");
}

/// `gantry approve` (issue #18): writes the Approval and commits it SSH-signed in-process with
/// the approver's key; git itself verifies the signature, and the approval counts. Nobody can
/// use it to approve for someone else.
#[test]
fn gantry_approve_commits_a_signed_approval_that_counts() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", GATED);
    install_approved(&repo, &keys);
    bump(&repo, "2.0.0");
    signed_commit(&repo, "upgrade", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "waits for the approval");

    let key = |k: &Path| k.to_string_lossy().into_owned();
    let err = repo
        .gantry(&["approve", "acme", "--key", &key(&keys.mallory)])
        .expect(1)
        .stderr();
    assert!(
        err.contains("is not listed for any address in the allowed signers in force"),
        "{err}"
    );
    let err = repo
        .gantry(&[
            "approve",
            "acme",
            "--key",
            &key(&keys.alice),
            "--as",
            "approver@example.com",
        ])
        .expect(1)
        .stderr();
    assert!(err.contains("is not listed for approver@example.com"), "{err}");
    let err = repo
        .gantry(&["approve", "acme", "--key", &key(&keys.approver), "--version", "3.0.0"])
        .expect(1)
        .stderr();
    assert!(err.contains("there is no Release billing 3.0.0"), "{err}");

    let out = repo
        .gantry(&["approve", "acme", "--key", &key(&keys.approver)])
        .expect(0)
        .stdout();
    assert!(
        out.contains("on main: approver@example.com approves billing 2.0.0 for acme (approvals/billing-2-0-0-acme-approver-example-com.yaml"),
        "{out}"
    );
    // git's own verification accepts the in-process signature.
    let said = assert_git_verifies(&repo, "main");
    assert!(
        said.contains("Good \"git\" signature for approver@example.com"),
        "{said}"
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// Attack 5 against the daemon: a rewound desired branch is a daemon error, nothing runs; with
/// `--allow-rewind` the daemon reconciles it.
#[test]
fn the_daemon_refuses_a_rewound_desired_branch() {
    let repo = Repo::new();
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &format!(
                "{}---\n{}",
                release("billing", "1.0.0", ""),
                release("billing", "2.0.0", "")
            ),
        )
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
        .file("scripts/deploy.sh", DEPLOY)
        .file(".gitignore", "runs.log\n");
    let old = repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    bump(&repo, "2.0.0");
    repo.commit_all("upgrade");
    repo.gantry(&["apply"]).expect(0);
    repo.git
        .reference("refs/heads/main", git2::Oid::from_str(&old).unwrap(), true, "rewind")
        .unwrap();

    let daemon = Daemon::start(&repo, &[]);
    let started = std::time::Instant::now();
    let error = loop {
        let (code, body) = daemon.request("GET", "/api/daemon", &[]);
        assert_eq!(code, 200, "{body}");
        let state: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(e) = state["last_error"].as_str() {
            break e.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no pass error: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(error.contains("the desired branch moved backwards"), "{error}");
    drop(daemon);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");

    let daemon = Daemon::start(&repo, &["--allow-rewind"]);
    let started = std::time::Instant::now();
    while runs(&repo) != "deploy 1.0.0\ndeploy 2.0.0\ndeploy 1.0.0\n" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not reconciled: {}",
            runs(&repo)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(daemon);
}

/// A downgrade to a version that never ran follows the upgrade rules, waves included: once
/// approved it goes wave by wave, and each finished wave frees the next (its progress is
/// recorded like an upgrade's; regression guard for the attack 6 fix).
#[test]
fn an_approved_downgrade_to_a_new_version_goes_wave_by_wave() {
    let keys = keys();
    let waves = format!("{GATED}  rollout:\n    waves:\n      - {{ name: canary, selector: {{ ring: \"0\" }} }}\n");
    let repo = fleet(&keys, "2.0.0", &waves);
    repo.file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "ring: \"0\""))
        .file(
            "targets/bravo.yaml",
            &target("bravo", "billing", "2.0.0", "ring: \"1\""),
        );
    signed_commit(
        &repo,
        "fleet\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo).lines().count(), 2, "{}", runs(&repo));
    repo.file(
        "releases/billing.yaml",
        &format!(
            "{}---\n{}---\n{}",
            release("billing", "1.0.0", ""),
            release("billing", "1.9.0", ""),
            release("billing", "2.0.0", "")
        ),
    )
    .file("targets/acme.yaml", &target("acme", "billing", "1.9.0", "ring: \"0\""))
    .file(
        "targets/bravo.yaml",
        &target("bravo", "billing", "1.9.0", "ring: \"1\""),
    );
    signed_commit(
        &repo,
        "go to 1.9.0\n\nApproved-by: Approver <approver@example.com>",
        &keys.approver,
    );
    let plan = repo.gantry(&["plan", "--format", "json"]).expect(0).stdout();
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let bravo = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "bravo")
        .unwrap();
    assert_eq!(bravo["action"], "downgrade");
    assert_eq!(bravo["status"], "blocked", "waits for the canary wave: {bravo}");
    repo.gantry(&["apply"]).expect(0);
    let log = runs(&repo);
    assert_eq!(log.matches("deploy 1.9.0").count(), 2, "both waves ran:\n{log}");
}

/// Attack 12, other text outputs: a step message carrying terminal escapes (here the name of a
/// program that does not exist, taken from a manifest) reached `status` text raw (blockers and
/// the last attempt's message) and `apply` progress lines; `history` text, which now prints
/// whole messages and output tails (issue #15), strips them too.
#[test]
fn history_and_status_text_strip_terminal_escapes_from_step_output() {
    let repo = Repo::new();
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file(
            "components/billing.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  steps:\n    deploy: [\"scripts/\\e]0;owned\\a\\e[2J\\e[31mboom.sh\"]\n",
        )
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    repo.commit_all("fleet");
    let apply = repo.gantry(&["apply"]).expect(2).stderr();
    assert!(apply.contains("boom"), "{apply}");
    assert!(!apply.contains('\u{1b}'), "{apply:?}");
    let history = repo.gantry(&["history"]).expect(0).stdout();
    assert!(history.contains("boom"), "{history}");
    assert!(!history.contains('\u{1b}'), "{history:?}");
    let status = repo.gantry(&["status"]).expect(0).stdout();
    assert!(status.contains("boom"), "{status}");
    assert!(!status.contains('\u{1b}'), "{status:?}");
}

/// Issue #16: with `[trust]` on, `gantry rollback` wrote an unsigned commit, an untrusted head
/// that gantry would never reconcile (the whole fleet held). It signs with git's
/// `user.signingkey` now, as `git commit -S` would, and gantry reconciles the rollback; with no
/// usable key it refuses on the desired branch (nothing committed), and `--branch` for a pull
/// request still works unsigned (the merge is signed).
#[test]
fn rollback_in_a_trusted_repository_is_signed_with_gits_signing_key() {
    let keys = keys();
    let repo = fleet(&keys, "1.0.0", "");
    install_approved(&repo, &keys);
    bump(&repo, "2.0.0");
    signed_commit(&repo, "upgrade", &keys.alice);
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
    let tip = git(&repo, &["rev-parse", "HEAD"]);

    let refused = repo.gantry(&["rollback", "acme"]).expect(1).stderr();
    assert!(
        refused.contains(
            "the commit must be signed ([trust] is on: an unsigned head is never reconciled): no signing key"
        ),
        "{refused}"
    );
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), tip, "nothing committed");
    repo.gantry(&["rollback", "acme", "--branch", "rollback-acme"])
        .expect(0);

    git(&repo, &["config", "user.signingkey", &keys.alice.to_string_lossy()]);
    repo.gantry(&["rollback", "acme"]).expect(0);
    assert_git_verifies(&repo, "HEAD");
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(
        runs(&repo),
        "deploy 1.0.0\ndeploy 2.0.0\ndeploy 1.0.0\n",
        "the signed rollback is reconciled"
    );
}
