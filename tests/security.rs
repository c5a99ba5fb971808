//! Security: signed desired state with `[trust]`, redaction of `[secrets]`, and steps that try to
//! leave the checkout. Real binary, real repositories; commits are signed with real SSH keys by
//! the git CLI (`gpg.format = ssh`).

mod common;

use std::path::{Path, PathBuf};

use common::{Repo, component, keypair, release, target};

/// `git add -A && git commit` with the CLI, signed with `key` when given.
fn git_commit(repo: &Repo, message: &str, key: Option<&Path>) {
    let git = |args: &[&str]| {
        common::git_cli(repo, args);
    };
    git(&["add", "-A"]);
    match key {
        Some(key) => {
            let signing = format!("user.signingkey={}", key.display());
            git(&["-c", &signing, "commit", "-q", "-S", "-m", message]);
        }
        None => git(&["commit", "-q", "-m", message]),
    }
}

const TRUSTED_CONFIG: &str =
    "[executors.local]\ntype = \"shell\"\n\n[trust]\nallowed_signers = \"trust/allowed_signers\"\n";

const DEPLOY: &str = "#!/bin/sh\necho \"deploy $2\" >> \"$GANTRY_REPO/runs.log\"\n";

/// A fleet whose allowed signers list `alice`'s key.
fn trusted_fleet(keys: &Path) -> (Repo, PathBuf, PathBuf) {
    let (alice, alice_pub) = keypair(keys, "alice");
    let (mallory, _) = keypair(keys, "mallory");
    let repo = Repo::new();
    repo.file("gantry.toml", TRUSTED_CONFIG)
        .file(
            "trust/allowed_signers",
            &format!("alice@example.com namespaces=\"git\" {alice_pub}\n"),
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
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
        .file("scripts/deploy.sh", DEPLOY);
    (repo, alice, mallory)
}

fn runs(repo: &Repo) -> String {
    std::fs::read_to_string(repo.path().join("runs.log")).unwrap_or_default()
}

#[test]
fn head_signed_by_an_allowed_signer_is_applied() {
    let keys = tempfile::tempdir().unwrap();
    let (repo, alice, _) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", Some(&alice));
    repo.gantry(&["apply"]).expect(0);
    assert_eq!(runs(&repo), "deploy 1.0.0\n");
}

#[test]
fn unsigned_head_is_refused_and_nothing_runs() {
    let keys = tempfile::tempdir().unwrap();
    let (repo, _, _) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", None);
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains("is not signed by an allowed signer (it has no signature); nothing was applied"),
        "{err}"
    );
    assert_eq!(runs(&repo), "");
    // `plan` (CI) warns but still renders.
    let plan = repo.gantry(&["plan"]).expect(0);
    assert!(plan.stderr().contains("warning: commit "), "{}", plan.stderr());
    assert!(plan.stderr().contains("it has no signature"), "{}", plan.stderr());
}

#[test]
fn head_signed_by_an_unknown_key_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (repo, _, mallory) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", Some(&mallory));
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains("is not signed by an allowed signer (it is signed by key SHA256:"),
        "{err}"
    );
    assert!(
        err.contains("which is not listed in trust/allowed_signers at "),
        "{err}"
    );
    assert_eq!(runs(&repo), "");
}

#[test]
fn a_pushed_commit_cannot_add_its_own_key() {
    // Regression guard for the trust anchor: the signers come from the last reconciled commit,
    // not from the commit being checked.
    let keys = tempfile::tempdir().unwrap();
    let (repo, alice, mallory) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", Some(&alice));
    repo.gantry(&["apply"]).expect(0);
    let mallory_pub = std::fs::read_to_string(mallory.with_extension("pub")).unwrap();
    let signers = std::fs::read_to_string(repo.path().join("trust/allowed_signers")).unwrap();
    repo.file(
        "trust/allowed_signers",
        &format!("{signers}mallory@example.com {}\n", mallory_pub.trim()),
    )
    .file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    git_commit(&repo, "add me and upgrade", Some(&mallory));
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(
        err.contains("which is not listed in trust/allowed_signers at "),
        "{err}"
    );
    assert_eq!(runs(&repo), "deploy 1.0.0\n");
}

#[test]
fn removing_trust_in_an_unsigned_commit_does_not_switch_verification_off() {
    let keys = tempfile::tempdir().unwrap();
    let (repo, alice, _) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", Some(&alice));
    repo.gantry(&["apply"]).expect(0);
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file("targets/acme.yaml", &target("acme", "billing", "2.0.0", "env: prod"));
    git_commit(&repo, "no more trust", None);
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(err.contains("it has no signature"), "{err}");
    assert_eq!(runs(&repo), "deploy 1.0.0\n");
}

#[test]
fn pinned_allowed_signers_on_the_reconciler_win() {
    let keys = tempfile::tempdir().unwrap();
    let (repo, alice, mallory) = trusted_fleet(keys.path());
    git_commit(&repo, "fleet", Some(&alice));
    // The operator pins mallory (only) on this host: alice's commit no longer counts.
    let mallory_pub = std::fs::read_to_string(mallory.with_extension("pub")).unwrap();
    std::fs::create_dir_all(repo.path().join(".git/gantry")).unwrap();
    std::fs::write(
        repo.path().join(".git/gantry/allowed_signers"),
        format!("mallory@example.com {}", mallory_pub.trim()),
    )
    .unwrap();
    let err = repo.gantry(&["apply"]).expect(1).stderr();
    assert!(err.contains("not listed in .git/gantry/allowed_signers"), "{err}");
}

const SECRET: &str = "s3cr3t-v4lue-42";

#[test]
fn secret_vars_are_redacted_in_state_history_logs_and_output() {
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "[executors.local]\ntype = \"shell\"\n\n[secrets]\nvars = [\"token\"]\npatterns = [\"*password*\"]\n",
    )
    .file(
        "components/billing.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.vars.token }}\", \"{{ target.vars.db_password }}\"]\n",
    )
    .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
    // A program named after the secret does not exist: the step's message names it.
    .file(
        "components/ledger.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: ledger }\nspec:\n  steps:\n    deploy: [\"scripts/{{ target.vars.token }}.sh\"]\n",
    )
    .file("releases/ledger.yaml", &release("ledger", "1.0.0", ""))
    .file(
        "targets/zen.yaml",
        &format!("{}  vars: {{ token: \"{SECRET}\" }}\n", target("zen", "ledger", "1.0.0", "env: prod")),
    )
    .file(
        "targets/acme.yaml",
        &format!(
            "{}  vars: {{ token: \"{SECRET}\", db_password: hunter22, host: visible.example }}\n",
            target("acme", "billing", "1.0.0", "env: prod")
        ),
    )
    .file(
        "scripts/deploy.sh",
        "#!/bin/sh\necho \"token=$1 password=$2 host=visible.example\"\necho \"failing with $1\" >&2\nexit 1\n",
    );
    repo.commit_all("fleet");
    let run = repo.gantry(&["apply"]).expect(2);
    let printed = format!("{}{}", run.stdout(), run.stderr());
    assert!(!printed.contains(SECRET) && !printed.contains("hunter22"), "{printed}");
    assert!(printed.contains("exited with status 1"), "{printed}");

    let history = repo.gantry(&["history", "--format", "json"]).expect(0).stdout();
    assert!(!history.contains(SECRET), "{history}");
    assert!(history.contains("scripts/***.sh"), "{history}");

    // Everything gantry wrote: the state branch's objects and the step logs.
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git
        .find_reference("refs/heads/gantry/state")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let record = tip
        .tree()
        .unwrap()
        .get_path(Path::new("targets/acme.yaml"))
        .unwrap()
        .to_object(&git)
        .unwrap()
        .peel_to_blob()
        .unwrap();
    let record = String::from_utf8_lossy(record.content()).into_owned();
    assert!(
        record.contains("token=*** password=*** host=visible.example"),
        "{record}"
    );
    assert!(!record.contains(SECRET), "{record}");
    assert!(!tip.message().unwrap().contains(SECRET));
    let mut logs = 0;
    for log in std::fs::read_dir(repo.path().join(".git/gantry/logs")).unwrap() {
        let path = log.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(SECRET) && !text.contains("hunter22"), "{text}");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("-acme-") {
            assert!(text.contains("token=*** password=***"), "{text}");
        } else {
            assert!(text.contains("scripts/***.sh"), "{text}");
        }
        logs += 1;
    }
    assert_eq!(logs, 2);
}

/// A resumed attempt runs from its own commit, so its steps print that commit's secrets: they
/// are redacted even when the head has changed them. (A pass builds its redactor once, from the
/// head: issue #17. A resumed attempt from another commit must get its own.)
#[test]
fn a_resumed_attempt_redacts_the_secrets_of_its_own_commit() {
    const ROTATED: &str = "r0tated-t0ken-77";
    let repo = Repo::new();
    let acme = |token: &str| {
        format!(
            "{}  vars: {{ token: \"{token}\" }}\n",
            target("acme", "app", "1.0.0", "env: prod")
        )
    };
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n\n[secrets]\nvars = [\"token\"]\n")
        .file(
            "components/app.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: app }\nspec:\n  steps:\n    deploy: [\"scripts/step.sh\", \"{{ target.vars.token }}\"]\n",
        )
        .file("releases/app.yaml", &release("app", "1.0.0", ""))
        .file("targets/acme.yaml", &acme(SECRET))
        .file(
            "scripts/step.sh",
            "#!/bin/sh\nr=\"$GANTRY_REPO\"\nif [ -f \"$r/kill-once\" ]; then rm \"$r/kill-once\"; kill -9 \"$PPID\"; sleep 5; fi\necho \"token=$1\"\n",
        )
        .file(".gitignore", "*-once\n");
    repo.commit_all("fleet");
    std::fs::write(repo.path().join("kill-once"), "").unwrap();
    let killed = repo.gantry(&["apply"]);
    assert_eq!(
        killed.output.status.code(),
        None,
        "gantry was not killed: {}",
        killed.stderr()
    );

    // The head rotates the token; the interrupted attempt resumes from the commit it began at.
    repo.file("targets/acme.yaml", &acme(ROTATED));
    repo.commit_all("rotate the token");
    let resumed = repo.gantry(&["apply"]);
    let printed = format!("{}{}", resumed.stdout(), resumed.stderr());
    assert!(!printed.contains(SECRET), "{printed}");
    let mut resumed_log = false;
    for log in std::fs::read_dir(repo.path().join(".git/gantry/logs")).unwrap() {
        let text = std::fs::read_to_string(log.unwrap().path()).unwrap();
        assert!(!text.contains(SECRET) && !text.contains(ROTATED), "{text}");
        resumed_log |= text.contains("token=***");
    }
    assert!(resumed_log, "no log of the resumed step");
    let history = repo.gantry(&["history", "--format", "json"]).expect(0).stdout();
    assert!(!history.contains(SECRET), "{history}");
}

#[test]
fn symlink_in_the_repository_pointing_outside_is_refused_as_a_program() {
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("ran");
    let evil = outside.path().join("evil.sh");
    std::fs::write(&evil, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let repo = Repo::new();
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file("components/billing.yaml", &component("billing", ""))
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    std::fs::create_dir_all(repo.path().join("scripts")).unwrap();
    std::os::unix::fs::symlink(&evil, repo.path().join("scripts/deploy.sh")).unwrap();
    repo.commit_all("symlinked deploy");
    let run = repo.gantry(&["apply"]).expect(2);
    assert!(!marker.exists(), "the program outside the checkout ran");
    let history = repo.gantry(&["history"]).expect(0).stdout();
    assert!(history.contains("escapes the checkout"), "{history}\n{}", run.stderr());
}

/// A trusted fleet at 1.0.0 (reconciled), then a minor bump needing alice's approval, committed
/// with an `Approved-by: alice` trailer and signed with `signer`.
fn approval_case(signer_is_alice: bool) -> Repo {
    let keys = tempfile::tempdir().unwrap();
    let (alice, alice_pub) = keypair(keys.path(), "alice");
    let (bob, bob_pub) = keypair(keys.path(), "bob");
    let repo = Repo::new();
    repo.file("gantry.toml", TRUSTED_CONFIG)
        .file(
            "trust/allowed_signers",
            &format!("alice@example.com {alice_pub}\nbob@example.com {bob_pub}\n"),
        )
        .file("components/billing.yaml", &component("billing", ""))
        .file(
            "releases/billing.yaml",
            &format!("{}---\n{}", release("billing", "1.0.0", ""), release("billing", "1.1.0", "")),
        )
        .file(
            "policies/prod.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: prod }\nspec:\n  updates:\n    minor: { approvals: 1, approvers: [alice@example.com], windows: false }\n",
        )
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
        .file("scripts/deploy.sh", DEPLOY);
    git_commit(&repo, "fleet", Some(&alice));
    repo.gantry(&["apply"]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.1.0", "env: prod"));
    let key = if signer_is_alice { &alice } else { &bob };
    git_commit(
        &repo,
        "acme to 1.1.0\n\nApproved-by: Alice <alice@example.com>",
        Some(key),
    );
    repo.gantry(&["apply"]).expect(0);
    repo
}

#[test]
fn approval_trailer_counts_when_signed_by_the_approvers_key() {
    let repo = approval_case(true);
    assert_eq!(runs(&repo), "deploy 1.0.0\ndeploy 1.1.0\n");
}

#[test]
fn approval_trailer_does_not_count_when_signed_by_someone_else() {
    // bob may push (his key is allowed), but cannot approve in alice's name.
    let repo = approval_case(false);
    assert_eq!(runs(&repo), "deploy 1.0.0\n");
    let plan = repo.gantry(&["plan", "--format", "json"]).stdout();
    assert!(plan.contains("\"approval\""), "{plan}");
    assert!(plan.contains("alice@example.com"), "{plan}");
}

/// Issue #15: a failed step said only "exited with status 1" in `history`. The failing step's
/// output tail is now in `history --format json` and `--format csv` verbatim (every line, in
/// order, never cut at `…`), with the attempt's update type and duration, and a secret the step
/// printed stays redacted there.
#[test]
fn history_keeps_the_failing_steps_output_tail_verbatim_and_redacted() {
    let repo = Repo::new();
    repo.file("gantry.toml", "[secrets]\nvars = [\"token\"]\n")
        .file(
            "components/billing.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.vars.token }}\", \"{{ version }}\"]\n",
        )
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("releases/billing-2.yaml", &release("billing", "1.1.0", ""))
        .file(
            "targets/acme.yaml",
            &format!("{}  vars: {{ token: \"{SECRET}\" }}\n", target("acme", "billing", "1.0.0", "env: prod")),
        )
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\n[ \"$2\" = 1.0.0 ] && exit 0\nprintf 'first, \"quoted\" line\\n  indented: %s\\n' \"$1\"\n\
             echo \"$(printf 'w%.0s' $(seq 1 300))\"\necho 'last line' >&2\nexit 1\n",
        );
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    let text = std::fs::read_to_string(repo.path().join("targets/acme.yaml")).unwrap();
    repo.file("targets/acme.yaml", &text.replace("\"1.0.0\"", "\"1.1.0\""));
    repo.commit_all("bump");
    repo.gantry(&["apply"]).expect(2);

    let json = repo.gantry(&["history", "acme", "--format", "json"]).expect(0).stdout();
    assert!(!json.contains(SECRET), "{json}");
    let history: serde_json::Value = serde_json::from_str(&json).unwrap();
    let failed = &history[0];
    let long = "w".repeat(300);
    let want_tail = format!("first, \"quoted\" line\n  indented: ***\n{long}\nlast line");
    let tail = failed["output_tail"].as_str().expect("output_tail");
    assert_eq!(tail.trim_end(), want_tail, "{failed}");
    assert_eq!(failed["update_type"], "minor", "{failed}");
    assert_eq!(failed["action"], "upgrade", "{failed}");
    assert!(failed["duration_ms"].as_i64().is_some_and(|d| d >= 0), "{failed}");
    assert_eq!(failed["approvers"], serde_json::json!([]), "{failed}");
    assert_eq!(history[1]["update_type"], "major", "an install: {}", history[1]);
    assert_eq!(history[1]["output_tail"].as_str().map(str::trim), Some(""));

    let csv = repo.gantry(&["history", "acme", "--format", "csv"]).expect(0).stdout();
    assert!(!csv.contains(SECRET), "{csv}");
    let quoted = want_tail.replace('"', "\"\"");
    assert!(csv.contains(&quoted), "CSV keeps the tail whole and quoted:\n{csv}");
    assert!(!csv.contains('…'), "{csv}");
}
