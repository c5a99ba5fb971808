//! Where the cache files (the history walk cache, `source::walk_cache`, and the template check
//! cache, `reconcile::template_cache`) are written: on the caller's thread by default (a CLI
//! process exits right after its one pass), or, once the daemon calls [`write_in_background`],
//! on one background thread, so a pass does not wait for a file that only saves time in a later
//! process (issue #17: serializing, digesting and writing the walk cache was over half of a
//! daemon re-plan's approvals evidence on 10,000 targets).
//!
//! # Guarantees
//! - **Whole files only**: every write is the caller's job, which writes a temporary file and
//!   renames it into place (`walk_cache::write_digested`) on whichever thread runs it.
//! - **Newest wins**: saves are coalesced by path. A save replaces a pending, not yet started,
//!   save of the same file; each job writes a snapshot of its whole in-memory cache, so the
//!   newer one holds everything the older would have written.
//! - **Best effort, like the caches themselves**: a save still pending when the process dies
//!   costs the next process one history walk or one template check, never a wrong answer (the
//!   file is either the old whole version or the new one).
//! - [`flush`] returns once every save requested before it has run (the daemon at shutdown).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

/// A save: serializes a snapshot and writes the file (errors are the job's to log).
type Job = Box<dyn FnOnce() + Send>;

static IN_BACKGROUND: AtomicBool = AtomicBool::new(false);

/// From now on, [`save`] hands its job to the background writer (the daemon, at start).
pub fn write_in_background() {
    IN_BACKGROUND.store(true, Ordering::SeqCst);
}

/// Writes the file at `path` with `job`: now, or on the background writer once
/// [`write_in_background`] was called (then a newer save of `path` supersedes this one if it
/// has not started yet).
pub fn save(path: PathBuf, job: impl FnOnce() + Send + 'static) {
    if IN_BACKGROUND.load(Ordering::SeqCst) {
        writer().save(path, Box::new(job));
    } else {
        job();
    }
}

/// Waits until every save requested so far has been written (or failed).
pub fn flush() {
    if let Some(writer) = WRITER.get() {
        writer.flush();
    }
}

static WRITER: OnceLock<Writer> = OnceLock::new();

fn writer() -> &'static Writer {
    WRITER.get_or_init(Writer::default)
}

/// The pending saves and the thread that runs them.
#[derive(Default)]
struct Writer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    /// By path: at most one pending save per file.
    pending: BTreeMap<PathBuf, Job>,
    /// The thread is running a batch taken from `pending`.
    busy: bool,
    started: bool,
}

impl Writer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&'static self, path: PathBuf, job: Job) {
        let mut queue = self.lock();
        if !queue.started {
            let spawned = std::thread::Builder::new()
                .name("cache-writer".into())
                .spawn(move || self.run());
            if spawned.is_err() {
                // No thread to be had: write now, as a CLI process does.
                drop(queue);
                job();
                return;
            }
            queue.started = true;
        }
        queue.pending.insert(path, job);
        self.changed.notify_all();
    }

    /// The writer thread: runs what is pending, batch after batch, for the life of the process.
    fn run(&self) {
        lowest_priority();
        loop {
            let batch = {
                let mut queue = self.lock();
                while queue.pending.is_empty() {
                    queue = self
                        .changed
                        .wait(queue)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                queue.busy = true;
                std::mem::take(&mut queue.pending)
            };
            for job in batch.into_values() {
                // A job that panics loses its own file only; the writer carries on.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    tracing::warn!("a cache file save panicked; the cache is rebuilt by a later pass");
                }
            }
            self.lock().busy = false;
            self.changed.notify_all();
        }
    }

    fn flush(&self) {
        let mut queue = self.lock();
        while queue.started && (queue.busy || !queue.pending.is_empty()) {
            queue = self
                .changed
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Puts the calling thread at the lowest scheduling priority (nice 19), so a cache write never
/// takes a core from a pass (issue #17: serializing the walk cache of a 10,000-target fleet
/// competed with the planner's two threads). Best effort: the write is the same either way.
fn lowest_priority() {
    // SAFETY: plain system calls on this thread's own id; no memory is passed.
    let failed = unsafe {
        let tid = nix::libc::gettid();
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid.unsigned_abs(), 19) != 0
    };
    if failed {
        tracing::debug!(
            "the cache writer runs at normal priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    fn leaked() -> &'static Writer {
        Box::leak(Box::default())
    }

    #[test]
    fn newer_save_of_a_file_supersedes_a_pending_one_and_flush_waits_for_all() {
        let writer = leaked();
        let ran = Arc::new(Mutex::new(Vec::new()));
        // Hold the writer thread inside a first job so the next saves stay pending.
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let log = Arc::clone(&ran);
        writer.save(
            "a".into(),
            Box::new(move || {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                log.lock().unwrap().push("a1");
            }),
        );
        entered.recv().unwrap();
        for (path, name) in [("a", "a2"), ("b", "b1"), ("a", "a3")] {
            let log = Arc::clone(&ran);
            writer.save(path.into(), Box::new(move || log.lock().unwrap().push(name)));
        }
        release.send(()).unwrap();
        writer.flush();
        let ran = ran.lock().unwrap().clone();
        // a2 was pending when a3 came: it never ran. The running a1 was not cut short.
        assert_eq!(ran, ["a1", "a3", "b1"]);
    }

    #[test]
    fn a_panicking_save_does_not_stop_the_writer() {
        let writer = leaked();
        writer.save("x".into(), Box::new(|| panic!("a hostile snapshot")));
        writer.flush();
        let (tx, rx) = mpsc::channel();
        writer.save("y".into(), Box::new(move || tx.send("written").unwrap()));
        writer.flush();
        assert_eq!(
            rx.try_recv(),
            Ok("written"),
            "flush returned only after the later save ran"
        );
    }

    #[test]
    fn the_writer_thread_runs_at_the_lowest_priority() {
        let writer = leaked();
        let (tx, rx) = mpsc::channel();
        writer.save(
            "p".into(),
            Box::new(move || {
                // SAFETY: reads this thread's own nice value.
                let nice =
                    unsafe { nix::libc::getpriority(nix::libc::PRIO_PROCESS, nix::libc::gettid().unsigned_abs()) };
                tx.send(nice).unwrap();
            }),
        );
        writer.flush();
        assert_eq!(rx.try_recv(), Ok(19));
    }

    #[test]
    fn flush_without_any_save_returns() {
        leaked().flush();
    }
}
