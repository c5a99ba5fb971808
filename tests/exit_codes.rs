//! Exit codes that tell the truth (issue #12 item 4): a pass that could not start or could not
//! record exits 4 with the OS error; exit 3 means real lock contention only.
//!
//! A read-only `.git/gantry` and a full disk are made real: as root (CI) with a read-only bind
//! mount and a one-page tmpfs; otherwise with file modes, and the full-disk case is skipped
//! (loudly, and it fails under `CI=true`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Repo, release, target};

fn is_root() -> bool {
    // The effective uid is the second field of the `Uid:` line.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// A mount made for one test, undone (lazily, so a busy file cannot keep it) when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(args: &[&str], at: &Path) -> Mount {
        let status = Command::new("mount").args(args).arg(at).status().expect("run mount");
        assert!(status.success(), "mount {args:?} {} failed", at.display());
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fleet() -> Repo {
    let repo = Repo::new();
    repo.file(
        "components/web.yaml",
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ target.name }}\"]\n",
    )
    .file("releases/web.yaml", &release("web", "1.0.0", ""))
    .file("targets/a.yaml", &target("a", "web", "1.0.0", "env: prod"))
    .file(
        "scripts/deploy.sh",
        &format!("#!/bin/sh\ntouch \"{}/ran-$1\"\n", repo.path().display()),
    );
    repo.commit_all("fleet");
    repo
}

/// Regression (issue #12 item 4): a read-only `.git/gantry` exited 3 ("another gantry holds
/// the lock") with no OS error.
#[test]
fn read_only_gantry_dir_exits_4_with_the_os_error_not_3() {
    let repo = fleet();
    let dir = repo.path().join(".git/gantry");
    std::fs::create_dir_all(&dir).unwrap();
    let _mount;
    let expected_cause = if is_root() {
        // Root ignores file modes: only a read-only mount is read-only for it.
        _mount = Mount::new(&["--bind", "-o", "ro", dir.to_str().unwrap()], &dir);
        let _ = Command::new("mount").args(["-o", "remount,bind,ro"]).arg(&dir).status();
        "Read-only file system"
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        "Permission denied"
    };
    let run = repo.gantry(&["apply"]);
    let stderr = run.stderr();
    assert_eq!(run.code(), 4, "{stderr}");
    assert!(
        stderr.contains(".git/gantry/lock") && stderr.contains(expected_cause),
        "{stderr}"
    );
    assert!(!stderr.contains("another gantry"), "{stderr}");
    assert!(!repo.path().join("ran-a").exists());
}

/// Regression (issue #12 item 4): `apply` exited 0 ("0 attempts") after a full disk stopped it
/// from journaling an attempt. Now it exits 4 naming the journal and the OS error, nothing ran,
/// and once there is room again the next pass converges.
#[test]
fn full_disk_under_the_journal_exits_4_and_the_next_pass_converges() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root so that this test can mount a tmpfs"
        );
        eprintln!("SKIPPED full_disk_under_the_journal_exits_4_and_the_next_pass_converges: needs root for mount");
        return;
    }
    let repo = fleet();
    let journal = repo.path().join(".git/gantry/journal");
    std::fs::create_dir_all(&journal).unwrap();
    {
        let _full = Mount::new(&["-t", "tmpfs", "-o", "size=8k", "tmpfs"], &journal);
        // Fill it: the write stops at ENOSPC.
        let _ = std::fs::write(journal.join("filler"), vec![b'x'; 1 << 20]);
        let run = repo.gantry(&["apply"]);
        let stderr = run.stderr();
        assert_eq!(run.code(), 4, "{stderr}");
        assert!(
            stderr.contains("target a: the attempt could not start")
                && stderr.contains(".git/gantry/journal")
                && stderr.contains("No space left on device"),
            "{stderr}"
        );
        assert!(!repo.path().join("ran-a").exists(), "nothing may run without a journal");
    }
    let run = repo.gantry(&["apply"]).expect(0);
    assert!(run.stderr().contains("1 attempt (1 succeeded"), "{}", run.stderr());
    assert!(repo.path().join("ran-a").exists());
}

/// Issue #12 item 9: libgit2 did not fsync state commits, so a power cut right after a pass
/// could lose an outcome whose journal entry was already removed. Traced with strace: the
/// state commit's objects and its reference are fsynced before the journal file is unlinked.
#[test]
fn state_commit_is_fsynced_before_the_journal_is_removed() {
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(strace) = strace else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            ".ci/run installs strace for this test"
        );
        eprintln!("SKIPPED state_commit_is_fsynced_before_the_journal_is_removed: strace is not installed");
        return;
    };
    let repo = fleet();
    let trace = repo.path().join("strace.out");
    let status = Command::new(strace)
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=openat,fsync,fdatasync,unlink,unlinkat,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace)
        .arg(assert_cmd::cargo::cargo_bin("gantry"))
        .arg("--repo")
        .arg(repo.path())
        .arg("apply")
        .env_remove("GANTRY_NOW")
        .status()
        .expect("run strace");
    assert!(status.success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // The journal of the attempt is removed once its outcome is recorded (renamed to a spare
    // for the next attempt to reuse, issue #17, or unlinked).
    let journal_removed = lines
        .iter()
        .position(|l| {
            l.contains(".git/gantry/journal/")
                && ((l.contains("unlink") && l.contains(".jsonl\""))
                    || (l.contains("rename(") && l.contains(".jsonl\", ")))
        })
        .expect("the journal is removed after recording");
    // Before that: an object of the state commit and the state branch's reference were fsynced
    // (`-y` shows each descriptor's path).
    let synced = |what: &str| {
        lines[..journal_removed]
            .iter()
            .any(|l| (l.contains("fsync(") || l.contains("fdatasync(")) && l.contains(what))
    };
    assert!(
        synced(".git/objects/"),
        "no object fsynced before the journal went:\n{text}"
    );
    assert!(
        synced("refs/heads/gantry/state"),
        "the state reference was not fsynced before the journal went:\n{text}"
    );
}

/// Regression (found reviewing issue #9's leftovers): `status` ignored a journal directory it
/// could not read and reported the fleet from the state branch alone, so a target with an
/// attempt possibly in flight could read `converged`. Now it fails, naming the journal path.
#[test]
fn status_refuses_to_guess_when_the_journal_cannot_be_read() {
    let repo = fleet();
    repo.gantry(&["apply"]).expect(0);
    let journal = repo.path().join(".git/gantry/journal");
    let _ = std::fs::remove_dir_all(&journal);
    std::fs::write(&journal, "not a directory").expect("journal path as a file");
    let run = repo.gantry(&["status"]);
    assert_eq!(
        run.code(),
        4,
        "status must not report without the journal:\n{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("Not a directory (os error 20)"),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().contains(".git/gantry/journal"), "{}", run.stderr());
    assert!(!run.stdout().contains("converged"), "{}", run.stdout());
}
