//! Where a resumed attempt finds the processes of the step a killed gantry left running
//! (issue #10, bug 7), written without creating a file per step (issue #17).
//!
//! One file, `.git/gantry/running-steps` (next to the log directory), holds a fixed-size record
//! per step now running: `<attempt> <process group> <leader start time>`, padded with spaces
//! to [`RECORD_BYTES`] and ending in a newline; a blank record is a free slot. Marking a step
//! running and clearing it are one `pwrite` each into a slot of the file, which is created once:
//! a file created and deleted per step cost more than the step on a file system that scans
//! recently deleted inodes on every create (ext4 without a journal).
//!
//! # Guarantees
//! - A record is written after the step's process group exists and before the step is waited
//!   for, and cleared only after the whole group was killed, so a gantry killed in between
//!   leaves the record behind for the resumed attempt ([`take_left_behind`]).
//! - Records left by an earlier process are read when this process first opens the file and
//!   their slots are not reused until the resumed attempt has reaped them. A record whose group
//!   is gone (no member runs, or its leader's pid now names another process) is cleared then.
//! - Like the per-step marker file before it, the file is not synced: it only needs to outlive
//!   gantry's process, and a power cut ends the step's processes too.
//!
//! One gantry holds the reconciler lock of a repository at a time; within the process, a mutex
//! guards each file's slots.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The size of one record: an attempt id (at most 200 bytes), a pid and a start time fit.
pub(crate) const RECORD_BYTES: usize = 320;

/// The file name, in the log directory.
pub(crate) const FILE_NAME: &str = "running-steps";

/// A step this process marked running; [`RunningStep::clear`] once its group is killed.
#[derive(Debug)]
pub(crate) struct RunningStep {
    dir: PathBuf,
    slot: usize,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub attempt: String,
    pub group: i32,
    /// The leader's start time (clock ticks since boot); 0 when unknown.
    pub start: u64,
}

#[derive(Debug)]
enum Slot {
    Free,
    /// A step of this process.
    Ours,
    /// A step an earlier process left running, until its attempt resumes and reaps it.
    LeftBehind(Record),
}

#[derive(Debug)]
struct Table {
    dir: PathBuf,
    file: File,
    slots: Vec<Slot>,
}

static TABLES: Mutex<Vec<Table>> = Mutex::new(Vec::new());

fn tables() -> MutexGuard<'static, Vec<Table>> {
    // Each update leaves the table whole; a panic elsewhere cannot leave it half-changed.
    TABLES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The table of `dir`, opened (and its left-behind records read) on first use.
fn table<'t>(tables: &'t mut Vec<Table>, dir: &Path) -> io::Result<&'t mut Table> {
    if let Some(i) = tables.iter().position(|t| t.dir == dir) {
        return Ok(&mut tables[i]);
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(FILE_NAME))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let mut table = Table {
        dir: dir.to_path_buf(),
        file,
        slots: Vec::new(),
    };
    for (slot, chunk) in bytes.chunks(RECORD_BYTES).enumerate() {
        let record = parse(chunk);
        let alive = record.as_ref().is_some_and(group_may_live);
        table.slots.push(match record {
            Some(record) if alive => Slot::LeftBehind(record),
            Some(_) => {
                table.write(slot, None)?;
                Slot::Free
            }
            None => Slot::Free,
        });
    }
    tables.push(table);
    Ok(tables.last_mut().expect("just pushed"))
}

/// [`table`], or `None` when its directory does not exist: no step ever ran there, so none
/// was left running.
fn existing_table<'t>(tables: &'t mut Vec<Table>, dir: &Path) -> io::Result<Option<&'t mut Table>> {
    match table(tables, dir) {
        Ok(table) => Ok(Some(table)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Table {
    fn write(&self, slot: usize, record: Option<&Record>) -> io::Result<()> {
        let mut bytes = vec![b' '; RECORD_BYTES];
        bytes[RECORD_BYTES - 1] = b'\n';
        if let Some(r) = record {
            let text = format!("{} {} {}", r.attempt, r.group, r.start);
            if text.len() >= RECORD_BYTES {
                return Err(io::Error::other(format!(
                    "attempt id {:?} is too long for a running-step record",
                    r.attempt
                )));
            }
            bytes[..text.len()].copy_from_slice(text.as_bytes());
        }
        self.file.write_all_at(&bytes, (slot * RECORD_BYTES) as u64)
    }
}

fn parse(chunk: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(chunk).ok()?;
    let mut fields = text.split_whitespace();
    let attempt = fields.next()?.to_owned();
    let group = fields.next()?.parse().ok()?;
    let start = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Some(Record { attempt, group, start })
}

/// Whether what `record` names may still run: its group has a member and its leader's pid does
/// not name a later process (a group id stays reserved while any member lives).
fn group_may_live(record: &Record) -> bool {
    if record.group <= 1 {
        return false;
    }
    if super::shell::leader_pid_reused(record.group, record.start) {
        return false;
    }
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(record.group), None).is_ok()
}

/// Marks the step of `attempt` running as process group `group`. `None` when it cannot be
/// written (the step still runs; only a resumed attempt could not find it): logged.
pub(crate) fn mark(log_dir: &Path, attempt: &str, group: i32, start: u64) -> Option<RunningStep> {
    let record = Record {
        attempt: attempt.to_owned(),
        group,
        start,
    };
    let mut tables = tables();
    let marked = table(&mut tables, log_dir).and_then(|table| {
        let slot = match table.slots.iter().position(|s| matches!(s, Slot::Free)) {
            Some(slot) => slot,
            None => {
                table.slots.push(Slot::Free);
                table.slots.len() - 1
            }
        };
        table.write(slot, Some(&record))?;
        table.slots[slot] = Slot::Ours;
        Ok(slot)
    });
    match marked {
        Ok(slot) => Some(RunningStep {
            dir: log_dir.to_path_buf(),
            slot,
        }),
        Err(e) => {
            tracing::warn!(dir = %log_dir.display(), "cannot mark the running step: {e}");
            None
        }
    }
}

impl RunningStep {
    /// The step's group is killed: blank its record and free the slot.
    pub(crate) fn clear(self) {
        let mut tables = tables();
        if let Some(table) = tables.iter_mut().find(|t| t.dir == self.dir) {
            match table.write(self.slot, None) {
                Ok(()) => table.slots[self.slot] = Slot::Free,
                // Left marked: a later resume finds a group that is gone and frees it.
                Err(e) => tracing::warn!(dir = %self.dir.display(), "cannot clear a running-step record: {e}"),
            }
        }
    }
}

/// The record an earlier process left for `attempt`, if any. Its slot stays reserved until
/// [`forget_left_behind`].
///
/// # Errors
/// The file cannot be opened or read.
pub(crate) fn take_left_behind(log_dir: &Path, attempt: &str) -> io::Result<Option<Record>> {
    let mut tables = tables();
    let Some(table) = existing_table(&mut tables, log_dir)? else {
        return Ok(None);
    };
    Ok(table.slots.iter().find_map(|s| match s {
        Slot::LeftBehind(r) if r.attempt == attempt => Some(r.clone()),
        _ => None,
    }))
}

/// Nothing of `attempt`'s left-behind step runs any more: blank its record.
///
/// # Errors
/// The record cannot be written.
pub(crate) fn forget_left_behind(log_dir: &Path, attempt: &str) -> io::Result<()> {
    let mut tables = tables();
    let Some(table) = existing_table(&mut tables, log_dir)? else {
        return Ok(());
    };
    for slot in 0..table.slots.len() {
        if matches!(&table.slots[slot], Slot::LeftBehind(r) if r.attempt == attempt) {
            table.write(slot, None)?;
            table.slots[slot] = Slot::Free;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path) -> Vec<Option<Record>> {
        std::fs::read(dir.join(FILE_NAME))
            .unwrap()
            .chunks(RECORD_BYTES)
            .map(parse)
            .collect()
    }

    #[test]
    fn marks_reuse_slots_and_clear_blanks_them() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let a = mark(dir.path(), "a", me, 1).unwrap();
        let b = mark(dir.path(), "b", me, 2).unwrap();
        assert_eq!(records(dir.path()).len(), 2);
        a.clear();
        assert_eq!(records(dir.path())[0], None);
        let c = mark(dir.path(), "c", me, 3).unwrap();
        assert_eq!(
            records(dir.path()).len(),
            2,
            "a freed slot is reused: the file does not grow"
        );
        assert_eq!(records(dir.path())[0].as_ref().unwrap().attempt, "c");
        b.clear();
        c.clear();
        assert!(records(dir.path()).iter().all(Option::is_none));
    }

    /// A resumed attempt whose step never started has no log directory yet: nothing to reap,
    /// and no error (found by the fault-model test: "attempt … not resumed: No such file").
    #[test]
    fn without_a_log_directory_nothing_was_left_running() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("logs");
        assert_eq!(take_left_behind(&missing, "a").unwrap(), None);
        forget_left_behind(&missing, "a").unwrap();
        crate::executor::shell::reap_interrupted_step(&missing.join("logs/a.log"), std::time::Duration::from_secs(1))
            .unwrap();
        assert!(!missing.exists(), "nothing is created");
    }

    #[test]
    fn an_attempt_id_too_long_for_a_record_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        assert!(mark(dir.path(), &"x".repeat(RECORD_BYTES), 12345, 1).is_none());
        assert!(records(dir.path()).is_empty());
    }

    /// What a killed gantry leaves: the record of a live step (a `sleep` in its own group) and of
    /// one whose group is gone. The next process keeps the first for its attempt, frees the
    /// second, never hands the first's slot to a new step, and reaping kills the group.
    #[test]
    fn records_left_by_an_earlier_process_are_kept_until_reaped() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = sleeper.id() as i32;
        let start = crate::executor::shell::tests::start_time_of(group);
        let mut left = Vec::new();
        for record in [
            "dead-attempt 999999 12".to_owned(),
            format!("live-attempt {group} {start}"),
        ] {
            let mut bytes = vec![b' '; RECORD_BYTES];
            bytes[RECORD_BYTES - 1] = b'\n';
            bytes[..record.len()].copy_from_slice(record.as_bytes());
            left.extend(bytes);
        }
        std::fs::write(dir.path().join(FILE_NAME), left).unwrap();

        assert_eq!(take_left_behind(dir.path(), "dead-attempt").unwrap(), None);
        let live = take_left_behind(dir.path(), "live-attempt").unwrap().unwrap();
        assert_eq!((live.group, live.start), (group, start));
        assert_eq!(records(dir.path())[0], None, "the gone group's record is cleared");
        let new = mark(dir.path(), "new-attempt", std::process::id() as i32, 1).unwrap();
        assert_eq!(new.slot, 0, "the freed slot is reused");
        assert_eq!(records(dir.path())[1].as_ref().unwrap().attempt, "live-attempt", "kept");

        let log = dir.path().join("logs/live-attempt.log");
        crate::executor::shell::reap_interrupted_step(&log, std::time::Duration::from_secs(5)).unwrap();
        let status = sleeper.wait().unwrap();
        assert!(!status.success(), "the left-behind step was killed: {status:?}");
        assert_eq!(records(dir.path())[1], None, "its record is cleared once reaped");
        assert_eq!(take_left_behind(dir.path(), "live-attempt").unwrap(), None);
        new.clear();
    }
}
