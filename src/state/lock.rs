//! The reconciler lock: one gantry reconciles a repository at a time (SPEC §7, exit code 3).
//!
//! # Layout
//! `<git dir>/gantry/lock`, locked with an exclusive OS file lock (`flock` on Linux and the
//! BSDs, `LockFileEx` on Windows) for as long as the [`ReconcilerLock`] lives. While locked it
//! says who holds it:
//! ```text
//! pid: 1234
//! since: 2026-11-21T10:00:00Z
//! ```
//! The file itself is never removed: deleting a lock file while others may have it open lets two
//! processes lock two different files. It is emptied when the holder lets go.
//!
//! # Guarantees
//! - At most one [`ReconcilerLock`] per repository exists at a time, across processes and within
//!   one (each acquisition opens the file anew, and OS file locks belong to the open file).
//! - The OS releases the lock when the holder exits, however it exits (even `kill -9`), so a
//!   lock left by a dead process never blocks: there is no stale-lock detection to get wrong.
//! - Processes gantry starts do not inherit the lock: Rust opens files close-on-exec.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

/// Why the reconciler lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (or another handle in this one) holds the lock. The CLI exits with 3.
    /// `pid` and `since` are what the holder wrote; they are absent if it has not written yet.
    #[error("another gantry{} holds the lock on {}", holder(*.pid, .since.as_deref()), .path.display())]
    Held {
        pid: Option<u32>,
        since: Option<String>,
        path: PathBuf,
    },

    /// The lock file could not be created, opened, locked or written.
    #[error("{action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn holder(pid: Option<u32>, since: Option<&str>) -> String {
    match (pid, since) {
        (Some(pid), Some(since)) => format!(" (pid {pid}, since {since})"),
        (Some(pid), None) => format!(" (pid {pid})"),
        (None, Some(since)) => format!(" (since {since})"),
        (None, None) => String::new(),
    }
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct ReconcilerLock {
    file: File,
    path: PathBuf,
}

impl ReconcilerLock {
    /// The lock file of a repository: `<git dir>/gantry/lock`.
    pub fn path_in(git_dir: &Path) -> PathBuf {
        git_dir.join("gantry").join("lock")
    }

    /// Takes the repository's reconciler lock without waiting, and writes this process's id and
    /// the current time into the lock file.
    ///
    /// # Errors
    /// [`LockError::Held`] when someone else holds it, naming their pid and since when;
    /// [`LockError::Io`] when the file cannot be created, locked or written.
    pub fn acquire(git_dir: &Path) -> Result<ReconcilerLock, LockError> {
        let path = Self::path_in(git_dir);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| LockError::Io {
                action: "creating the directory of",
                path: path.clone(),
                source,
            })?;
        }
        // Not truncated on open: until the lock is ours, the contents are the holder's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LockError::Io {
                action: "opening",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let (pid, since) = read_holder(&mut file);
                return Err(LockError::Held { pid, since, path });
            }
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Io {
                    action: "locking",
                    path,
                    source,
                });
            }
        }
        let holder = format!("pid: {}\nsince: {}\n", std::process::id(), jiff::Timestamp::now());
        file.set_len(0)
            .and_then(|()| file.write_all(holder.as_bytes()))
            .map_err(|source| LockError::Io {
                action: "writing the holder into",
                path: path.clone(),
                source,
            })?;
        Ok(ReconcilerLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid of the reconciler holding the repository's lock, when the lock file names one
    /// that is alive: a reconciler is running, so an attempt its journal shows unfinished is
    /// in flight, not interrupted (`gantry status`, issue #15).
    ///
    /// # Guarantees
    /// Never takes the lock, not even briefly, so it cannot make a reconciler starting at the
    /// same moment fail with "another gantry holds the lock". A holder killed with `kill -9`
    /// leaves its pid in the file; that process is gone, so it is not reported (unless the pid
    /// was reused by then, the one case this reports a holder that is not gantry).
    pub fn live_holder(git_dir: &Path) -> Option<u32> {
        let mut file = File::open(Self::path_in(git_dir)).ok()?;
        let (pid, _) = read_holder(&mut file);
        let pid = pid?;
        let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).ok()?), None) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
        alive.then_some(pid)
    }

    /// Removes the git lock files (`<git dir>/<ref>.lock`) of `refs`, refs only gantry writes
    /// and only while holding this lock (the state branch and its remote-tracking ref). Holding
    /// the lock, no gantry can be writing them, so such a file was left by a gantry killed
    /// during the write (`kill -9` while the ref was being fsynced). libgit2, like git, never
    /// removes one, so every later state commit failed with "failed to lock file" until someone
    /// deleted it by hand: a restarted daemon, or a standby taking over (issue #14), made no
    /// progress at all. Returns the files removed.
    ///
    /// # Errors
    /// The file exists but cannot be removed.
    pub fn clear_stale_ref_locks(&self, git_dir: &Path, refs: &[String]) -> io::Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        for name in refs {
            // Only well-formed names below refs/: never a path that leaves the git directory.
            if !name.starts_with("refs/")
                || name
                    .split('/')
                    .any(|part| part.is_empty() || part == "." || part == "..")
            {
                continue;
            }
            let path = git_dir.join(format!("{name}.lock"));
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

impl Drop for ReconcilerLock {
    fn drop(&mut self) {
        // Still holding the lock, so no one else can be writing; the lock itself goes with the
        // file handle. Failing to empty the file only leaves stale text in an unlocked file.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!(path = %self.path.display(), error = %e, "could not empty the lock file");
        }
    }
}

/// What the holder wrote: `pid: N` and `since: T` lines, each optional.
fn read_holder(file: &mut File) -> (Option<u32>, Option<String>) {
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return (None, None);
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    (
        field("pid").and_then(|p| p.parse().ok()),
        field("since").map(str::to_string),
    )
}

#[cfg(test)]
mod tests {
    /// Regression (issue #14, a kill test stalled with "failed to lock file
    /// refs/heads/gantry/state.lock" on every pass): a ref lock left by a killed gantry is
    /// removed by the next lock holder; other refs' locks and odd names are left alone.
    #[test]
    fn stale_state_ref_locks_are_removed_by_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let heads = dir.path().join("refs/heads/gantry");
        fs::create_dir_all(&heads).unwrap();
        fs::write(heads.join("state.lock"), "").unwrap();
        fs::write(dir.path().join("refs/heads/main.lock"), "").unwrap();
        let lock = ReconcilerLock::acquire(dir.path()).unwrap();
        let refs = [
            "refs/heads/gantry/state".to_string(),
            "refs/remotes/origin/gantry/state".to_string(),
            "refs/heads/../../outside".to_string(),
        ];
        let removed = lock.clear_stale_ref_locks(dir.path(), &refs).unwrap();
        assert_eq!(removed, [heads.join("state.lock")]);
        assert!(!heads.join("state.lock").exists());
        assert!(dir.path().join("refs/heads/main.lock").exists(), "not gantry's ref");
    }

    use super::*;

    #[test]
    fn a_held_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = ReconcilerLock::acquire(dir.path()).unwrap();
        assert_eq!(lock.path(), dir.path().join("gantry/lock"));
        let contents = fs::read_to_string(lock.path()).unwrap();
        assert!(
            contents.starts_with(&format!("pid: {}\nsince: ", std::process::id())),
            "{contents}"
        );

        let err = ReconcilerLock::acquire(dir.path()).unwrap_err();
        let LockError::Held { pid, since, path } = &err else {
            panic!("expected Held, got {err:?}")
        };
        assert_eq!(*pid, Some(std::process::id()));
        assert!(
            since.as_deref().is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok()),
            "{since:?}"
        );
        assert_eq!(path, lock.path());
        assert_eq!(
            err.to_string(),
            format!(
                "another gantry (pid {}, since {}) holds the lock on {}",
                std::process::id(),
                since.as_deref().unwrap(),
                lock.path().display()
            )
        );

        assert_eq!(ReconcilerLock::live_holder(dir.path()), Some(std::process::id()));
        drop(lock);
        assert_eq!(fs::read_to_string(dir.path().join("gantry/lock")).unwrap(), "");
        assert_eq!(
            ReconcilerLock::live_holder(dir.path()),
            None,
            "an emptied lock file names no one"
        );
        // Another test forking a child at this moment shares our descriptor until the child's
        // exec closes it (the lock is on the open file description), so allow a moment.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match ReconcilerLock::acquire(dir.path()) {
                Ok(again) => break drop(again),
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("the released lock cannot be taken again: {e}"),
            }
        }
    }

    #[test]
    fn a_holder_that_has_not_written_yet_is_still_reported() {
        assert_eq!(holder(None, None), "");
        let err = LockError::Held {
            pid: None,
            since: None,
            path: PathBuf::from("/r/.git/gantry/lock"),
        };
        assert_eq!(err.to_string(), "another gantry holds the lock on /r/.git/gantry/lock");
    }

    const CHILD_ENV: &str = "GANTRY_TEST_LOCK_CHILD_GIT_DIR";
    const CHILD_READY: &str = "gantry-test-lock-child: locked";

    /// Not a test of its own: the child process of `a_killed_holder_does_not_block`, which runs
    /// it with `--ignored`. It takes the lock, says so, and waits to be killed.
    #[test]
    #[ignore = "child process of a_killed_holder_does_not_block"]
    fn lock_holder_child() {
        let git_dir = std::env::var_os(CHILD_ENV).expect("run by a_killed_holder_does_not_block");
        let _lock = ReconcilerLock::acquire(Path::new(&git_dir)).unwrap();
        println!("{CHILD_READY}");
        io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(120));
        panic!("the parent test should have killed this process");
    }

    #[cfg(unix)]
    #[test]
    fn a_killed_holder_does_not_block() {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};

        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "state::lock::tests::lock_holder_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // libtest may print "test … ... " on the same line before the output.
        while !line.trim_end().ends_with(CHILD_READY) {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "child exited before taking the lock"
            );
        }

        let err = ReconcilerLock::acquire(dir.path()).unwrap_err();
        assert!(
            matches!(err, LockError::Held { pid: Some(pid), .. } if pid == child.id()),
            "{err:?}"
        );

        assert_eq!(ReconcilerLock::live_holder(dir.path()), Some(child.id()));
        child.kill().unwrap(); // SIGKILL: no destructor runs, the file keeps the child's pid.
        let status = child.wait().unwrap();
        assert!(!status.success());
        // The pid is still written, but its process is gone: no reconciler runs.
        assert_eq!(ReconcilerLock::live_holder(dir.path()), None);
        assert!(
            fs::read_to_string(ReconcilerLock::path_in(dir.path()))
                .unwrap()
                .contains(&format!("pid: {}", child.id()))
        );

        let lock = ReconcilerLock::acquire(dir.path()).unwrap();
        let contents = fs::read_to_string(lock.path()).unwrap();
        assert!(
            contents.starts_with(&format!("pid: {}\n", std::process::id())),
            "{contents}"
        );
    }
}
