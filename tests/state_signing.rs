//! Issue #18: signed state commits (`--state-signing-key`). Every commit gantry writes on the
//! state branch (outcomes, rollbacks, claims, commits published to the remote) is SSH-signed
//! exactly as `git commit -S` with `gpg.format = ssh` would sign it, so the git CLI verifies it;
//! every read of the branch verifies the commits this host has not verified yet. Forged state
//! pushed by someone without the key (unsigned, signed by another key, a signed commit amended
//! afterwards, a branch reset to drop an outcome) is refused with a message naming the commit.
//! Real binary, real repositories, real ssh-keygen keys, the real git CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, Run, component, git_cli, keypair, release, target};

const STATE: &str = "gantry/state";

/// Deploys append to `runs.log`; a deploy of version V fails while `fail-V` exists.
const DEPLOY: &str = "#!/bin/sh\n[ -e \"$GANTRY_REPO/fail-$2\" ] && { echo \"deploy $2 broken\"; exit 1; }\n\
                      echo \"deploy $2\" >> \"$GANTRY_REPO/runs.log\"\n";

/// One target `acme` at `version` with releases 1.0.0, 2.0.0 and 2.1.0.
fn fleet(version: &str, config: &str) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", &format!("{config}[executors.local]\ntype = \"shell\"\n"))
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &["1.0.0", "2.0.0", "2.1.0"]
                .map(|v| release("billing", v, ""))
                .join("---\n"),
        )
        .file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"))
        .file("scripts/deploy.sh", DEPLOY)
        .file(".gitignore", "runs.log\nfail-*\n");
    repo.commit_all("fleet");
    repo
}

fn bump(repo: &Repo, version: &str) {
    repo.file("targets/acme.yaml", &target("acme", "billing", version, "env: prod"));
    repo.commit_all(&format!("billing {version}"));
}

/// gantry with the state signing key.
fn signed(repo: &Repo, key: &Path, args: &[&str]) -> Run {
    let key = key.display().to_string();
    let mut all = vec!["--state-signing-key", key.as_str()];
    all.extend(args);
    repo.gantry(&all)
}

/// `gantry --state-signing-key KEY daemon` on 127.0.0.1 (see `common::spawn_daemon`).
fn signed_daemon(repo: &Repo, key: &Path) -> (std::process::Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .arg("--state-signing-key")
        .arg(key)
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .env_remove("GANTRY_NOW");
    common::spawn_daemon(command)
}

fn runs(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("runs.log")).unwrap_or_default()
}

fn git(repo: &Repo, args: &[&str]) -> String {
    git_cli(repo, args)
}

fn state_tip(repo: &Repo) -> String {
    git(repo, &["rev-parse", STATE])
}

/// Points the state branch at `commit`, as a push by someone with write access would.
fn set_state(repo: &Repo, commit: &str) {
    git(repo, &["update-ref", &format!("refs/heads/{STATE}"), commit]);
}

/// Every commit of `rev` verified by the git CLI against an allowed signers file listing only
/// `public`: `git verify-commit` for each, and `git log --show-signature` saying so for each.
fn git_verifies_every_commit(repo: &Repo, rev: &str, public: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed_signers");
    std::fs::write(&allowed, format!("reconciler@example.com {public}\n")).unwrap();
    let setting = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let commits = git(repo, &["rev-list", rev]);
    let commits: Vec<&str> = commits.lines().collect();
    for commit in &commits {
        git(repo, &["-c", &setting, "verify-commit", commit]);
    }
    let log = Command::new("git")
        .current_dir(repo.path())
        .args(["-c", &setting, "log", "--show-signature", "--format=%H", rev])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&log.stdout).into_owned() + &String::from_utf8_lossy(&log.stderr);
    let good = text
        .matches("Good \"git\" signature for reconciler@example.com with ED25519 key")
        .count();
    assert_eq!(good, commits.len(), "{text}");
    commits.len()
}

/// The legitimate path with a key: an install, an upgrade whose deploy fails and is rolled
/// back, `gantry retry`, a daemon pass, and claims and outcomes published to a remote. Every
/// state commit, local and on the remote, verifies with the git CLI; commands run without the
/// key (`status`, `history`) still read the branch, verified against the host's pinned list.
#[test]
fn every_state_commit_is_signed_and_git_verifies_it() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "reconciler");
    let remote = tempfile::tempdir().unwrap();
    git2::Repository::init_bare(remote.path()).unwrap();
    let repo = fleet("1.0.0", "remote = \"origin\"\n");
    git(&repo, &["remote", "add", "origin", remote.path().to_str().unwrap()]);
    git(&repo, &["push", "-q", "origin", "main"]);

    signed(&repo, &key, &["apply"]).expect(0);
    std::fs::write(repo.path().join("fail-2.0.0"), "").unwrap();
    bump(&repo, "2.0.0");
    let run = signed(&repo, &key, &["apply"]).expect(2);
    let out = run.stdout() + &run.stderr();
    assert!(out.contains("rolled_back"), "{out}");
    std::fs::remove_file(repo.path().join("fail-2.0.0")).unwrap();
    signed(&repo, &key, &["retry", "acme"]).expect(0);
    signed(&repo, &key, &["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 1.0.0\ndeploy 2.0.0\n");

    // A daemon pass.
    bump(&repo, "2.1.0");
    let (mut daemon, _addr, stderr) = signed_daemon(&repo, &key);
    let started = Instant::now();
    while !git(&repo, &["log", "--format=%s", STATE]).contains("billing 2.0.0 → 2.1.0 on acme: succeeded") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no daemon pass: {}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the pass publish what it recorded before stopping the daemon.
    while git(&repo, &["rev-parse", STATE]) != git(&repo, &["rev-parse", &format!("origin/{STATE}")]) {
        assert!(started.elapsed() < Duration::from_secs(30), "not published");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();

    let subjects = git(&repo, &["log", "--format=%s", STATE]);
    assert!(
        subjects.contains("billing (none) → 1.0.0 on acme: succeeded"),
        "{subjects}"
    );
    assert!(
        subjects.contains("billing 1.0.0 → 2.0.0 on acme: rolled_back"),
        "{subjects}"
    );
    assert!(subjects.contains("claim acme for agent"), "{subjects}");
    assert!(subjects.contains("release acme for agent"), "{subjects}");
    let local = git_verifies_every_commit(&repo, STATE, &public);
    let published = git_verifies_every_commit(&repo, &format!("origin/{STATE}"), &public);
    assert!(local >= 8 && published == local, "{local} local, {published} published");

    // Without the key: still verified (the host pinned the key's public half), still readable.
    let pinned = std::fs::read_to_string(repo.path().join(".git/gantry/state_signers")).unwrap();
    assert!(pinned.contains(public.split_whitespace().nth(1).unwrap()), "{pinned}");
    repo.gantry(&["status"]).expect(0);
    let history = repo.gantry(&["history"]).expect(0).stdout();
    assert!(history.contains("rolled_back"), "{history}");
}

/// A fleet applied once with the key; returns (repo, key dir, key, the signed state tip).
fn applied_once() -> (Repo, tempfile::TempDir, PathBuf, String) {
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = keypair(keys.path(), "reconciler");
    let repo = fleet("1.0.0", "");
    signed(&repo, &key, &["apply"]).expect(0);
    let tip = state_tip(&repo);
    (repo, keys, key, tip)
}

/// A commit on top of the state tip, with its tree, made by the git CLI and made the tip;
/// signed (`commit-tree -S`, gpg.format=ssh) with `key` when given.
fn forge_on_tip(repo: &Repo, key: Option<&Path>) -> String {
    let tip = state_tip(repo);
    let tree = git(repo, &["rev-parse", &format!("{tip}^{{tree}}")]);
    let signing = key.map(|k| format!("user.signingkey={}", k.display()));
    let mut args = Vec::new();
    if let Some(signing) = &signing {
        args.extend(["-c", signing.as_str()]);
    }
    args.push("commit-tree");
    if signing.is_some() {
        args.push("-S");
    }
    args.extend(["-p", &tip, "-m", "billing 1.0.0 → 2.0.0 on acme: succeeded", &tree]);
    let forged = git(repo, &args);
    set_state(repo, &forged);
    forged
}

/// Forged state pushed by someone without the key is refused by every reader, naming the commit
/// and the last trusted one; nothing runs. Putting the branch back makes it readable again.
#[test]
fn forged_state_commits_are_refused_naming_the_commit() {
    let (repo, keys, key, good) = applied_once();

    // Unsigned.
    let forged = forge_on_tip(&repo, None);
    for args in [&["status"][..], &["history"], &["plan"]] {
        let err = repo.gantry(args).expect(1).stderr();
        assert!(
            err.contains(&format!(
                "state branch {STATE}: state commit {forged} is not trusted: it has no signature; nothing was read"
            )),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(&format!(
                "reset the branch to the commit before it, {good} (git update-ref refs/heads/{STATE} {good}"
            )),
            "{err}"
        );
    }
    bump(&repo, "2.0.0");
    signed(&repo, &key, &["apply"]).expect(1);
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "nothing ran on forged state");
    set_state(&repo, &good);
    repo.gantry(&["status"]).expect(0);

    // Signed, but by a key that is not the reconciler's.
    let (mallory, _) = keypair(keys.path(), "mallory");
    let forged = forge_on_tip(&repo, Some(&mallory));
    assert!(git(&repo, &["cat-file", "commit", &forged]).contains("-----BEGIN SSH SIGNATURE-----"));
    let err = signed(&repo, &key, &["apply"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "state commit {forged} is not trusted: it is signed by key SHA256:"
        )),
        "{err}"
    );
    assert!(
        err.contains("which is not listed in .git/gantry/state_signers"),
        "{err}"
    );
    assert_eq!(runs(&repo), "deploy 1.0.0\n");
    set_state(&repo, &good);

    // The reconciler's own signed commit, amended afterwards (its signature kept).
    let raw = git(&repo, &["cat-file", "commit", &good]);
    assert!(raw.contains("-----BEGIN SSH SIGNATURE-----"), "{raw}");
    let amended_text = raw.replace(": succeeded", ": failed") + "\n";
    assert_ne!(amended_text.trim_end(), raw);
    let amended = {
        let mut child = Command::new("git")
            .current_dir(repo.path())
            .args(["hash-object", "-t", "commit", "-w", "--stdin"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(amended_text.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    set_state(&repo, &amended);
    // This host verified the original: the branch no longer contains it.
    let err = repo.gantry(&["status"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "state branch {STATE} was rewritten: its tip {amended} does not contain {good}"
        )),
        "{err}"
    );
    // A host reading the branch for the first time (a fresh clone) checks the signature itself.
    std::fs::remove_file(repo.path().join(".git/gantry/state-verified")).unwrap();
    let err = repo.gantry(&["status"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "state commit {amended} is not trusted: the signature by key SHA256:"
        )),
        "{err}"
    );
    assert!(err.contains("does not match the commit"), "{err}");
    set_state(&repo, &good);
    repo.gantry(&["status"]).expect(0);
}

/// A state branch reset to drop an outcome is detected: the host remembers the last state
/// commit it verified, and the upgrade it recorded is not run again.
#[test]
fn a_state_branch_rewritten_to_drop_an_outcome_is_detected() {
    let (repo, _keys, key, first) = applied_once();
    bump(&repo, "2.0.0");
    signed(&repo, &key, &["apply"]).expect(0);
    let second = state_tip(&repo);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
    set_state(&repo, &first);
    let err = signed(&repo, &key, &["apply"]).expect(1).stderr();
    assert!(
        err.contains(&format!(
            "state branch {STATE} was rewritten: its tip {first} does not contain {second}, the last state \
             commit verified on this host (.git/gantry/state-verified), so recorded outcomes may have been dropped"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("git update-ref refs/heads/{STATE} {second}")),
        "{err}"
    );
    assert_eq!(
        runs(&repo),
        "deploy 1.0.0\ndeploy 2.0.0\n",
        "the recorded upgrade is not run again"
    );
    set_state(&repo, &second);
    signed(&repo, &key, &["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 2.0.0\n");
}

/// A key that is missing, not a key, or passphrase-protected stops the command before anything
/// runs (flag and environment variable alike): no step, no state branch.
#[test]
fn an_unusable_state_signing_key_is_an_error_before_anything_runs() {
    let repo = fleet("1.0.0", "");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a key\n").unwrap();
    let locked = dir.path().join("locked");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "passphrase", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(status.success());
    for (path, why) in [
        (&missing, "No such file or directory (os error 2)"),
        (&junk, "not an OpenSSH private key"),
        (&locked, "it is passphrase-protected"),
    ] {
        let err = signed(&repo, path, &["apply"]).expect(1).stderr();
        assert!(
            err.starts_with(&format!(
                "error: --state-signing-key: signing key {}: {why}",
                path.display()
            )),
            "{err}"
        );
        assert!(err.trim_end().ends_with("nothing ran"), "{err}");
    }
    let output = assert_cmd::Command::cargo_bin("gantry")
        .unwrap()
        .arg("--repo")
        .arg(repo.path())
        .arg("apply")
        .env("GANTRY_STATE_SIGNING_KEY", &missing)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--state-signing-key: signing key"));
    assert_eq!(runs(&repo), "", "no step ran");
    assert!(repo.git.find_reference(&format!("refs/heads/{STATE}")).is_err());
}

/// `GET path` on the daemon at `addr`; the response body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// The daemon refuses forged state like `apply` does: its pass fails with the message naming
/// the commit (shown as `last_error`), and nothing runs.
#[test]
fn the_daemon_refuses_forged_state() {
    let (repo, _keys, key, _good) = applied_once();
    let forged = forge_on_tip(&repo, None);
    bump(&repo, "2.0.0");
    let (mut daemon, addr, _stderr) = signed_daemon(&repo, &key);
    let started = Instant::now();
    let error = loop {
        let body = http_get(&addr, "/api/daemon");
        let state: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(e) = state["last_error"].as_str() {
            break e.to_string();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no pass error: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(
        error.contains(&format!("state commit {forged} is not trusted: it has no signature")),
        "{error}"
    );
    assert_eq!(runs(&repo), "deploy 1.0.0\n", "nothing ran on forged state");
}
