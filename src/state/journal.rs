//! The attempt journal: an fsynced, append-only record of each step, so a killed reconciler resumes
//! where it stopped instead of re-running completed steps (SPEC §4).
//!
//! # Layout
//! One file per attempt, `<git dir>/gantry/journal/<attempt-id>.jsonl`, JSON lines:
//! ```text
//! {"type":"attempt","version":1,"attempt":"…","target":"acme","component":"billing","from":"1.2.0",
//!  "to":"2.0.0","desired_commit":"…","action":"upgrade","started":"2026-02-03T10:00:00Z","plan":…}
//! {"type":"step_started","step_id":"s1","kind":"snapshot","at":"2026-02-03T10:00:01Z"}
//! {"type":"step_completed","step_id":"s1","ok":true,"at":"2026-02-03T10:00:09Z"}
//! ```
//! The first line is the attempt header; every later line is a [`JournalEntry`]. One file per
//! attempt keeps attempts independent: finishing one is deleting its file, and a torn write can
//! only damage the attempt that was being written.
//!
//! # Expected flow
//! 1. [`Journal::create`] with the attempt header (and the planned steps) before the first step.
//! 2. Before each step, [`Journal::append`] a [`JournalEntry::StepStarted`]; after it, a
//!    [`JournalEntry::StepCompleted`]. Do not start the step before `append` returns.
//! 3. Once the attempt's outcome is committed to the state branch, [`Journal::finish`].
//! 4. On start-up (holding the [`ReconcilerLock`](super::ReconcilerLock)),
//!    [`Journal::load_unfinished`] returns every attempt whose journal was left behind; skip its
//!    completed steps, resume or roll back the interrupted one ([`JournaledAttempt::resume`]).
//!
//! # Guarantees
//! - When `create` or `append` returns `Ok`, the line is on disk (`fsync`ed, and the new file's
//!   directory entry too), so it survives the process being killed and, on a file system that
//!   honours `fsync`, a power loss.
//! - A step recorded completed was completed (the caller appends `StepCompleted` only after the
//!   step returned). A step recorded started but not completed may or may not have run, in part
//!   or in full: steps must be idempotent, or the attempt rolled back.
//! - A line cut short by a crash (a torn write) is always the last line; loading ignores it and
//!   resuming cuts it off, so it can never corrupt what is appended next.
//!
//! The journal assumes one writer: the process holding the reconciler lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::valid_record_name;

/// The journal format version written in each header.
pub const JOURNAL_VERSION: u32 = 1;

const EXTENSION: &str = "jsonl";

/// What an attempt is, written as the first line of its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptHeader {
    /// The attempt id; also the journal's file name.
    pub attempt: String,
    pub target: String,
    pub component: String,
    /// `None` for an install.
    pub from: Option<crate::manifest::Version>,
    pub to: crate::manifest::Version,
    pub desired_commit: String,
    /// `install`, `upgrade`, `downgrade`, `config`, `remove`.
    pub action: String,
    pub started: jiff::Timestamp,
    /// The planned steps, opaque here, so the reconciler can resume exactly the plan it started.
    pub plan: serde_json::Value,
    /// The rollout wave the attempt belongs to, so a resumed attempt counts in its rollout
    /// (soak, halt, `maxFailures`) like one that was not interrupted (issue #10, bug 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// The hash of the target's spec at the desired commit (see `AttemptRecord::spec_hash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// The approvers whose approvals counted for this attempt's release (issue #15: history
    /// names them). Absent in journals written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// The reason of the emergency release the attempt moves to (issue #16); absent for a
    /// normal release and in journals written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

/// A step the reconciler is about to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStarted {
    /// Unique within the attempt (e.g. the index in the plan, or `migrate:2.0.0:split-namespaces`).
    pub step_id: String,
    /// `deploy`, `migrate`, `health`, `snapshot`, `restore`, `reload`, …
    pub kind: String,
    pub at: jiff::Timestamp,
    /// Anything else the reconciler wants back on resume.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// A step that finished, successfully or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCompleted {
    pub step_id: String,
    pub ok: bool,
    pub at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// E.g. the step's output tail, an observed version, a snapshot id.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// One line of a journal after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JournalEntry {
    StepStarted(StepStarted),
    StepCompleted(StepCompleted),
}

/// The header line: the header's fields plus a type tag and the format version.
#[derive(Serialize, Deserialize)]
struct HeaderLine {
    #[serde(rename = "type")]
    kind: HeaderTag,
    version: u32,
    #[serde(flatten)]
    header: AttemptHeader,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum HeaderTag {
    Attempt,
}

/// Why a journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Clustered: the fenced copy in etcd was refused or could not be written (this member no
    /// longer leads its shard, or etcd has no quorum), so the step does not start.
    #[error("{}: not stored in etcd: {reason}", .path.display())]
    Fenced { path: PathBuf, reason: String },

    /// Reading or writing a journal file or its directory failed.
    #[error("{action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The attempt id cannot be a file name.
    #[error("attempt id {id:?} cannot name a journal: {reason}")]
    InvalidAttemptId { id: String, reason: &'static str },

    /// A journal for this attempt id exists already; attempt ids must be unique.
    #[error("a journal already exists at {}; attempt ids must be unique", .path.display())]
    Exists { path: PathBuf },

    /// An entry could not be turned into JSON.
    #[error("serializing a journal entry for {}", .path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A complete line before the last one does not parse: not a torn write, but damage.
    #[error(
        "{}:{line}: {message}; the journal is written only by gantry and this is not an \
         interrupted write: check what the attempt did, then remove the file",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// The journal was written by a gantry with a newer format.
    #[error("{} has journal format {version}; this gantry reads format {JOURNAL_VERSION}", .path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },

    /// An earlier append failed part-way, so the file may end in a torn line; nothing more may
    /// be appended through this handle (reload and resume it to continue).
    #[error("an earlier write to {} failed; reload the journal to continue", .path.display())]
    Poisoned { path: PathBuf },
}

/// The open journal of one attempt, appending.
#[derive(Debug)]
pub struct Journal {
    /// Shared with [`GroupSync`] while a sync covering this journal's last line is pending.
    file: Arc<File>,
    path: PathBuf,
    poisoned: bool,
    /// Whether the directory entry of this journal is known to be on disk.
    entry_synced: bool,
    /// Whether `create` made the journal directory (its own entry must be synced too).
    created_dir: bool,
}

impl Journal {
    /// The journal directory of a repository: `<git dir>/gantry/journal`.
    pub fn dir(git_dir: &Path) -> PathBuf {
        git_dir.join("gantry").join("journal")
    }

    /// Starts the journal of a new attempt, `<dir>/<attempt>.jsonl`, with `header` as its first
    /// line. `dir` is created if needed.
    ///
    /// # Guarantees
    /// On `Ok`, the header is written (it survives a killed process). It is synced to disk with
    /// the first completed step: until a step completes there is nothing an attempt could
    /// re-run wrongly, so losing the header to a power cut only makes the interrupted first
    /// step run again, which steps must tolerate anyway. Syncing every line costs an fsync
    /// (milliseconds on real disks) per line, which dominated short attempts.
    ///
    /// # Errors
    /// [`JournalError::InvalidAttemptId`], [`JournalError::Exists`] when the attempt already has a
    /// journal, [`JournalError::Io`] when the file cannot be written and synced.
    pub fn create(dir: &Path, header: &AttemptHeader) -> Result<Journal, JournalError> {
        valid_record_name(&header.attempt).map_err(|reason| JournalError::InvalidAttemptId {
            id: header.attempt.clone(),
            reason,
        })?;
        let created_dir = !dir.is_dir();
        fs::create_dir_all(dir).map_err(io_error("creating journal directory", dir))?;
        let path = dir.join(format!("{}.{EXTENSION}", header.attempt));
        let file = match spares::reuse(dir, &path) {
            Some(reused) => reused?,
            None => OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        JournalError::Exists { path: path.clone() }
                    } else {
                        JournalError::Io {
                            action: "creating journal",
                            path: path.clone(),
                            source: e,
                        }
                    }
                })?,
        };
        let mut journal = Journal {
            file: Arc::new(file),
            path,
            poisoned: false,
            entry_synced: false,
            created_dir,
        };
        let line = HeaderLine {
            kind: HeaderTag::Attempt,
            version: JOURNAL_VERSION,
            header: header.clone(),
        };
        journal.write_line(&line, Durability::Written)?;
        Ok(journal)
    }

    /// Appends one entry. A [`JournalEntry::StepCompleted`] is synced to disk (with the
    /// journal's directory entry, the first time) before this returns; a `StepStarted` is only
    /// written, and reaches the disk with the next sync.
    ///
    /// # Guarantees
    /// On `Ok`, a completed step is durable: a restarted reconciler never re-runs it. A lost
    /// `StepStarted` (power cut) leaves that step looking not started, and the step that was
    /// interrupted is re-run either way. On `Err`, the entry may or may not be on disk, possibly
    /// torn; the handle refuses further appends ([`JournalError::Poisoned`]).
    ///
    /// # Errors
    /// [`JournalError::Io`] when writing or syncing fails, [`JournalError::Poisoned`] after an
    /// earlier failure.
    pub fn append(&mut self, entry: &JournalEntry) -> Result<(), JournalError> {
        match entry {
            JournalEntry::StepStarted(_) => self.write_line(entry, Durability::Written),
            JournalEntry::StepCompleted(_) => self.write_line(entry, Durability::Synced),
        }
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the journal once the attempt's outcome is committed to the state branch.
    ///
    /// The removal is synced to disk. libgit2 does not sync the commit unless told to (see
    /// [`StateWriter::commit`](super::StateWriter::commit)), so after a power loss the journal
    /// can be gone while the outcome commit is too; a killed process cannot cause that.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the file cannot be removed.
    pub fn finish(self) -> Result<(), JournalError> {
        if spares::keep(&self.path) {
            journal_gone(&self.path)
        } else {
            remove_journal(&self.path)
        }
    }

    /// Every journal left in `dir` by attempts that did not finish, oldest attempt first.
    ///
    /// A torn last line is ignored. A journal whose header never reached the disk belongs to an
    /// attempt that never started a step (steps start after `create` returns); it is removed.
    ///
    /// # Errors
    /// [`JournalError::Corrupt`] when a line other than the last does not parse,
    /// [`JournalError::UnsupportedVersion`], [`JournalError::Io`] when a file cannot be read.
    pub fn load_unfinished(dir: &Path) -> Result<Vec<JournaledAttempt>, JournalError> {
        Self::unfinished(dir, true)
    }

    /// [`Journal::load_unfinished`] for a reader that does not hold the reconciler lock
    /// (`status`, the daemon's status page): it changes nothing. A journal without a header may
    /// be one a running reconciler is creating right now, so it is skipped, not removed; a
    /// journal that disappears between listing and reading belongs to an attempt that just
    /// finished, and is skipped too (it made `/api/status` answer 500 mid-pass).
    ///
    /// # Errors
    /// As [`Journal::load_unfinished`].
    pub fn read_unfinished(dir: &Path) -> Result<Vec<JournaledAttempt>, JournalError> {
        Self::unfinished(dir, false)
    }

    fn unfinished(dir: &Path, tidy: bool) -> Result<Vec<JournaledAttempt>, JournalError> {
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(JournalError::Io {
                    action: "listing journals in",
                    path: dir.to_path_buf(),
                    source: e,
                });
            }
        };
        let mut attempts = Vec::new();
        for entry in listing {
            let path = entry.map_err(io_error("listing journals in", dir))?.path();
            if tidy && spares::is_spare(&path) {
                spares::adopt(&path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != EXTENSION) {
                continue;
            }
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                // Removed since the listing: its attempt finished.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("reading journal", &path)(e)),
            };
            match parse_journal(&path, &bytes)? {
                Some(attempt) => attempts.push(attempt),
                None if !tidy => {}
                None => {
                    tracing::warn!(path = %path.display(), "removing a journal whose header was never written (or names another attempt)");
                    remove_journal(&path)?;
                }
            }
        }
        attempts.sort_by(|a, b| (a.header.started, &a.header.attempt).cmp(&(b.header.started, &b.header.attempt)));
        Ok(attempts)
    }

    fn write_line<T: Serialize>(&mut self, value: &T, durability: Durability) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut line = serde_json::to_vec(value).map_err(|source| JournalError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        // Poisoned until proven written: a failure part-way may leave a torn line behind.
        self.poisoned = true;
        (&*self.file)
            .write_all(&line)
            .map_err(io_error("appending to journal", &self.path))?;
        if durability == Durability::Synced {
            // The directory entry of a new journal (and of a new journal directory) is made
            // durable with the first synced line.
            let mut dirs = Vec::new();
            if !self.entry_synced
                && let Some(dir) = self.path.parent()
            {
                dirs.push(dir.to_path_buf());
                if self.created_dir
                    && let Some(parent) = dir.parent()
                {
                    dirs.push(parent.to_path_buf());
                }
            }
            match GROUP.sync(&self.file, &self.path, dirs) {
                Ok(()) => self.entry_synced = true,
                // The line is written; only its directory entry's durability is in doubt.
                Err(
                    e @ JournalError::Io {
                        action: DIR_SYNC_ACTION,
                        ..
                    },
                ) => {
                    self.poisoned = false;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        self.poisoned = false;
        // Clustered (`--etcd`): the fenced copy in etcd, before the caller starts its step.
        super::fence::journal_written(&self.path).map_err(|reason| JournalError::Fenced {
            path: self.path.clone(),
            reason,
        })
    }
}

const DIR_SYNC_ACTION: &str = "syncing journal directory";

/// Every journal of this process shares one group commit: attempts running side by side have
/// their completions synced together.
static GROUP: GroupSync = GroupSync::new();

/// Group commit of journal syncs (issue #17): a caller that needs its line on disk joins the
/// batch now collecting; the first caller to find no sync running syncs the whole batch (each
/// file's data, then each directory once) for everyone in it, while the next batch collects.
/// Alone, a caller syncs at once, as before; under load, one directory sync and one journal
/// commit of the file system cover every attempt that finished meanwhile, instead of two
/// syncs each.
///
/// # Guarantees
/// `sync` returns `Ok` only once a sync of the caller's file (and directories) that started
/// after its line was written has succeeded: exactly what a `sync_data` of its own gave. A
/// failure is reported to the callers whose file or directory failed, and only to them.
struct GroupSync {
    state: Mutex<GroupState>,
    synced: Condvar,
}

struct GroupState {
    /// The batch now collecting.
    collecting: u64,
    /// Every batch before this one is synced.
    done_before: u64,
    /// Whether a caller is syncing a batch right now.
    syncing: bool,
    /// The collecting batch's files (caller's ticket, file, its path) and directories.
    files: Vec<(u64, Arc<File>, PathBuf)>,
    dirs: Vec<(u64, PathBuf)>,
    next_ticket: u64,
    /// Failures of synced batches not yet collected by their callers, by ticket.
    failed: Vec<(u64, JournalError)>,
}

impl GroupSync {
    const fn new() -> GroupSync {
        GroupSync {
            state: Mutex::new(GroupState {
                collecting: 0,
                done_before: 0,
                syncing: false,
                files: Vec::new(),
                dirs: Vec::new(),
                next_ticket: 0,
                failed: Vec::new(),
            }),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // The state stays consistent whatever panics (it is only ever updated whole).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns once `file`'s data (written before the call) and `dirs` are on disk.
    fn sync(&self, file: &Arc<File>, path: &Path, dirs: Vec<PathBuf>) -> Result<(), JournalError> {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        let batch = state.collecting;
        state.files.push((ticket, Arc::clone(file), path.to_path_buf()));
        state.dirs.extend(dirs.into_iter().map(|d| (ticket, d)));
        loop {
            if state.done_before > batch {
                return match state.failed.iter().position(|(t, _)| *t == ticket) {
                    Some(i) => Err(state.failed.swap_remove(i).1),
                    None => Ok(()),
                };
            }
            if !state.syncing {
                // Lead: sync the collecting batch (it holds this caller's file) for everyone.
                state.syncing = true;
                let synced = state.collecting;
                state.collecting += 1;
                let files = std::mem::take(&mut state.files);
                let dirs = std::mem::take(&mut state.dirs);
                drop(state);
                let failed = sync_batch(files, dirs);
                state = self.lock();
                state.failed.extend(failed);
                state.done_before = synced + 1;
                state.syncing = false;
                self.synced.notify_all();
                continue;
            }
            state = self.synced.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Syncs a batch's files, then its directories (each once); returns the failures by ticket.
fn sync_batch(files: Vec<(u64, Arc<File>, PathBuf)>, dirs: Vec<(u64, PathBuf)>) -> Vec<(u64, JournalError)> {
    fault_before_sync();
    let mut failed = Vec::new();
    for (ticket, file, path) in files {
        if let Err(e) = file.sync_data() {
            failed.push((ticket, io_error("syncing journal", &path)(e)));
        }
    }
    let mut unique: Vec<&PathBuf> = dirs.iter().map(|(_, d)| d).collect();
    unique.sort();
    unique.dedup();
    for dir in unique {
        if let Err(e) = sync_dir(dir) {
            let message = e.to_string();
            for (ticket, _) in dirs.iter().filter(|(_, d)| d == dir) {
                if failed.iter().all(|(t, _)| t != ticket) {
                    failed.push((
                        *ticket,
                        JournalError::Io {
                            action: DIR_SYNC_ACTION,
                            path: dir.clone(),
                            source: io::Error::other(message.clone()),
                        },
                    ));
                }
            }
        }
    }
    failed
}

/// `GANTRY_FAULT_JOURNAL_SYNC=kill`: the process kills itself with `SIGKILL` just before it
/// syncs a batch of journal lines, after they were written (the point a crash test needs:
/// `tests/faults.rs`). Read once.
fn fault_before_sync() {
    static KILL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *KILL.get_or_init(|| std::env::var_os("GANTRY_FAULT_JOURNAL_SYNC").is_some_and(|v| v == "kill")) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// How far a journal line must get before `write_line` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// In the file (survives a killed process).
    Written,
    /// On disk (survives a power cut).
    Synced,
}

/// A journal left behind by an attempt that did not finish.
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledAttempt {
    pub header: AttemptHeader,
    /// The complete entries, in the order they were written.
    pub entries: Vec<JournalEntry>,
    pub path: PathBuf,
    /// Whether the file ended in a torn line (ignored here, cut off by [`Self::resume`]).
    pub torn_tail: bool,
    /// Bytes up to the end of the last complete line.
    valid_len: u64,
}

impl JournaledAttempt {
    /// How step `step_id` completed, if it did.
    pub fn completion(&self, step_id: &str) -> Option<&StepCompleted> {
        self.entries.iter().rev().find_map(|entry| match entry {
            JournalEntry::StepCompleted(done) if done.step_id == step_id => Some(done),
            _ => None,
        })
    }

    /// The step that was started and not recorded completed: it may or may not have run.
    pub fn interrupted(&self) -> Option<&StepStarted> {
        self.entries.iter().rev().find_map(|entry| match entry {
            JournalEntry::StepStarted(started) if self.completion(&started.step_id).is_none() => Some(started),
            _ => None,
        })
    }

    /// Opens the journal to append to it again, first cutting off a torn last line.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the file cannot be opened, truncated or synced.
    pub fn resume(&self) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io_error("opening journal", &self.path))?;
        let len = file
            .metadata()
            .map_err(io_error("reading journal size of", &self.path))?
            .len();
        if len != self.valid_len {
            file.set_len(self.valid_len)
                .map_err(io_error("cutting the torn line off", &self.path))?;
            file.sync_data().map_err(io_error("syncing journal", &self.path))?;
        }
        Ok(Journal {
            file: Arc::new(file),
            path: self.path.clone(),
            poisoned: false,
            entry_synced: false,
            created_dir: false,
        })
    }

    /// Removes the journal once the attempt's outcome is committed to the state branch.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the file cannot be removed.
    pub fn remove(self) -> Result<(), JournalError> {
        remove_journal(&self.path)
    }
}

/// Parses a journal file; `None` when not even its header is complete.
fn parse_journal(path: &Path, bytes: &[u8]) -> Result<Option<JournaledAttempt>, JournalError> {
    // Complete lines end in '\n'; whatever follows the last one is a torn write.
    let mut lines = Vec::new();
    let mut start = 0;
    while let Some(offset) = bytes[start..].iter().position(|&b| b == b'\n') {
        lines.push((&bytes[start..start + offset], start + offset + 1));
        start += offset + 1;
    }
    let mut torn_tail = start < bytes.len();

    let mut header = None;
    let mut entries = Vec::new();
    let mut valid_len = 0;
    for (index, (line, end)) in lines.iter().enumerate() {
        let parsed = if index == 0 {
            // Check the version before the fields, which a newer format may have changed.
            if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(line)
                && let Some(version) = fields.get("version").and_then(serde_json::Value::as_u64)
                && version != u64::from(JOURNAL_VERSION)
            {
                let version = u32::try_from(version).unwrap_or(u32::MAX);
                return Err(JournalError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    version,
                });
            }
            serde_json::from_slice::<HeaderLine>(line).map(|h| header = Some(h))
        } else {
            serde_json::from_slice::<JournalEntry>(line).map(|e| entries.push(e))
        };
        match parsed {
            Ok(()) => valid_len = *end,
            // A complete but unparsable last line is a torn write too (a crash can leave a
            // file extended with zeros); anything unparsable before it is damage.
            Err(_) if index + 1 == lines.len() && !torn_tail => torn_tail = true,
            Err(e) => {
                return Err(JournalError::Corrupt {
                    path: path.to_path_buf(),
                    line: index + 1,
                    message: e.to_string(),
                });
            }
        }
    }
    let Some(HeaderLine { header, .. }) = header else {
        return Ok(None);
    };
    // A reused journal file (see `spares`) whose new header never reached the disk before a
    // power cut may still hold the attempt it held before: not this file's attempt.
    if path.file_stem().is_some_and(|stem| *stem != *header.attempt) {
        return Ok(None);
    }
    Ok(Some(JournaledAttempt {
        header,
        entries,
        path: path.to_path_buf(),
        torn_tail,
        valid_len: valid_len as u64,
    }))
}

/// Removes a journal. Not synced: a journal that reappears after a power cut belongs to an
/// attempt whose outcome the state branch already holds, and recovery recognises that by the
/// attempt id instead of running anything.
fn remove_journal(path: &Path) -> Result<(), JournalError> {
    fs::remove_file(path).map_err(io_error("removing journal", path))?;
    journal_gone(path)
}

/// Clustered: the journal at `path` is gone locally (removed or kept as a spare), so its copy in
/// etcd goes too.
fn journal_gone(path: &Path) -> Result<(), JournalError> {
    super::fence::journal_removed(path).map_err(|reason| JournalError::Fenced {
        path: path.to_path_buf(),
        reason,
    })
}

/// Journals of finished attempts kept, emptied, for the next attempts to reuse (issue #17).
///
/// Creating a file per attempt and deleting it once its outcome is committed cost more than a
/// short step: on ext4 without a journal every create scans past the inodes deleted in the last
/// ~30 s, so with a file created and deleted per attempt each create got slower as the pass went
/// on. A finished journal is renamed to `.spare-<pid>-<n>` instead (at most [`MAX`] per
/// process), and the next attempt takes one: emptied, then renamed to `<attempt>.jsonl` with
/// `RENAME_NOREPLACE`, so an existing journal is never replaced.
///
/// # Guarantees
/// - A spare's name has no `.jsonl` extension: recovery never reads one as an attempt.
/// - A spare is emptied before it gets an attempt's name, so after a killed process the new
///   journal holds nothing of the old attempt. After a power cut (where the rename may reach the
///   disk and the emptying not) a journal whose header names another attempt than its file is
///   treated like one whose header never reached the disk: the new attempt had not synced a
///   completed step yet (that sync writes the file as it is).
/// - Spares left by an earlier process are taken over by the next recovery (or removed past
///   [`MAX`]).
mod spares {
    use std::fs::{self, File, OpenOptions};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, MutexGuard};

    use super::{JournalError, io_error};

    /// Spares kept per journal directory: enough for the attempts of a state commit batch.
    pub(super) const MAX: usize = 64;

    const PREFIX: &str = ".spare-";

    /// The spares of each journal directory this process used.
    static POOLS: Mutex<Vec<(PathBuf, Vec<PathBuf>)>> = Mutex::new(Vec::new());

    /// The spares of `dir`.
    fn with_pool<T>(dir: &Path, f: impl FnOnce(&mut Vec<PathBuf>) -> T) -> T {
        let mut pools: MutexGuard<'_, _> = POOLS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let i = match pools.iter().position(|(d, _)| d == dir) {
            Some(i) => i,
            None => {
                pools.push((dir.to_path_buf(), Vec::new()));
                pools.len() - 1
            }
        };
        f(&mut pools[i].1)
    }

    pub(super) fn is_spare(path: &Path) -> bool {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(PREFIX))
    }

    /// Keeps the finished journal at `path` as a spare. False when the pool is full or the
    /// rename failed: the caller removes it.
    pub(super) fn keep(path: &Path) -> bool {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let Some(dir) = path.parent() else {
            return false;
        };
        with_pool(dir, |pool| {
            if pool.len() >= MAX {
                return false;
            }
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let spare = dir.join(format!("{PREFIX}{}-{n}", std::process::id()));
            if fs::rename(path, &spare).is_err() {
                return false;
            }
            pool.push(spare);
            true
        })
    }

    /// A spare found by recovery: kept if there is room, else removed.
    pub(super) fn adopt(path: &Path) {
        let Some(dir) = path.parent() else {
            return;
        };
        with_pool(dir, |pool| {
            if pool.iter().any(|p| p == path) {
                return;
            }
            if pool.len() < MAX {
                pool.push(path.to_path_buf());
            } else {
                let _ = fs::remove_file(path);
            }
        });
    }

    /// A spare of `dir`, emptied and renamed to `path`, open for appending. `None` when there is
    /// none (or it vanished): the caller creates the file. `Some(Err)` when `path` exists.
    pub(super) fn reuse(dir: &Path, path: &Path) -> Option<Result<File, JournalError>> {
        loop {
            let spare = with_pool(dir, Vec::pop)?;
            let Ok(file) = OpenOptions::new().append(true).open(&spare) else {
                continue;
            };
            if file.metadata().is_ok_and(|m| m.len() != 0) && file.set_len(0).is_err() {
                let _ = fs::remove_file(&spare);
                continue;
            }
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &spare,
                nix::fcntl::AT_FDCWD,
                path,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => return Some(Ok(file)),
                Err(nix::errno::Errno::EEXIST) => {
                    with_pool(dir, |pool| pool.push(spare));
                    return Some(Err(JournalError::Exists {
                        path: path.to_path_buf(),
                    }));
                }
                Err(e) => {
                    let _ = fs::remove_file(&spare);
                    tracing::debug!(spare = %spare.display(), "cannot reuse a spare journal: {e}");
                    if e == nix::errno::Errno::ENOSPC {
                        return Some(Err(io_error("creating journal", path)(e.into())));
                    }
                }
            }
        }
    }
}

/// Makes a directory's entries (a created or removed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all())?;
    // Elsewhere a directory cannot be opened as a file; the file's own sync is what there is.
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { action, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_770_112_800 + seconds).unwrap()
    }

    fn header(attempt: &str) -> AttemptHeader {
        AttemptHeader {
            attempt: attempt.to_string(),
            target: "acme".to_string(),
            component: "billing".to_string(),
            from: Some("1.2.0".parse().unwrap()),
            to: "2.0.0".parse().unwrap(),
            desired_commit: "4f0c1d2e".to_string(),
            action: "upgrade".to_string(),
            started: at(0),
            plan: serde_json::json!([{"id": "s1", "kind": "snapshot"}, {"id": "s2", "kind": "deploy"}]),
            wave: None,
            spec_hash: None,
            approvers: Vec::new(),
            emergency: None,
        }
    }

    fn started(step: &str, seconds: i64) -> JournalEntry {
        JournalEntry::StepStarted(StepStarted {
            step_id: step.to_string(),
            kind: "deploy".to_string(),
            at: at(seconds),
            detail: serde_json::Value::Null,
        })
    }

    fn completed(step: &str, seconds: i64) -> JournalEntry {
        JournalEntry::StepCompleted(StepCompleted {
            step_id: step.to_string(),
            ok: true,
            at: at(seconds),
            message: String::new(),
            detail: serde_json::json!({"output_tail": "done"}),
        })
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn journal_round_trip_and_interrupted_step() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = Journal::dir(dir.path());
        assert!(Journal::load_unfinished(&jdir).unwrap().is_empty());
        let mut journal = Journal::create(&jdir, &header("a1")).unwrap();
        assert_eq!(journal.path(), jdir.join("a1.jsonl"));
        journal.append(&started("s1", 1)).unwrap();
        journal.append(&completed("s1", 2)).unwrap();
        journal.append(&started("s2", 3)).unwrap();

        let loaded = Journal::load_unfinished(&jdir).unwrap();
        assert_eq!(loaded.len(), 1);
        let attempt = &loaded[0];
        assert_eq!(attempt.header, header("a1"));
        assert_eq!(
            attempt.entries,
            [started("s1", 1), completed("s1", 2), started("s2", 3)]
        );
        assert!(!attempt.torn_tail);
        assert!(attempt.completion("s1").is_some_and(|c| c.ok));
        assert!(attempt.completion("s2").is_none());
        assert_eq!(attempt.interrupted().map(|s| s.step_id.as_str()), Some("s2"));

        let text = fs::read_to_string(journal.path()).unwrap();
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with(r#"{"type":"attempt","version":1,"attempt":"a1","#),
            "{first}"
        );
        assert_eq!(
            text.lines().nth(1).unwrap(),
            r#"{"type":"step_started","step_id":"s1","kind":"deploy","at":"2026-02-03T10:00:01Z"}"#
        );

        journal.finish().unwrap();
        assert!(Journal::load_unfinished(&jdir).unwrap().is_empty());
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Issue #17: a finished journal is kept as a spare (not a `.jsonl`, so never recovered) and
    /// the next attempt reuses its inode, holding nothing of the attempt before.
    #[test]
    fn a_finished_journal_is_reused_empty_by_the_next_attempt() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let jdir = Journal::dir(dir.path());
        let mut first = Journal::create(&jdir, &header("a1")).unwrap();
        first.append(&started("s1", 1)).unwrap();
        first.append(&completed("s1", 2)).unwrap();
        let inode = fs::metadata(first.path()).unwrap().ino();
        first.finish().unwrap();
        let names = listing(&jdir);
        assert!(names.len() == 1 && names[0].starts_with(".spare-"), "{names:?}");
        assert!(
            Journal::load_unfinished(&jdir).unwrap().is_empty(),
            "a spare is no attempt"
        );

        let second = Journal::create(&jdir, &header("a2")).unwrap();
        assert_eq!(
            fs::metadata(second.path()).unwrap().ino(),
            inode,
            "the same file, reused"
        );
        assert_eq!(listing(&jdir), ["a2.jsonl"]);
        let text = fs::read_to_string(second.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "only the new header: {text}");
        let loaded = Journal::load_unfinished(&jdir).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].header, header("a2"));
        assert!(loaded[0].entries.is_empty());
    }

    /// A spare never replaces a journal: creating an attempt that has one is refused, and the
    /// spare stays for the next attempt.
    #[test]
    fn reusing_a_spare_never_replaces_an_existing_journal() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = Journal::dir(dir.path());
        let kept = Journal::create(&jdir, &header("a1")).unwrap();
        Journal::create(&jdir, &header("b1")).unwrap().finish().unwrap();
        assert!(matches!(
            Journal::create(&jdir, &header("a1")),
            Err(JournalError::Exists { .. })
        ));
        assert_eq!(fs::read_to_string(kept.path()).unwrap().lines().count(), 1);
        assert_eq!(listing(&jdir).iter().filter(|n| n.starts_with(".spare-")).count(), 1);
        Journal::create(&jdir, &header("c1")).unwrap();
        assert!(
            !listing(&jdir).iter().any(|n| n.starts_with(".spare-")),
            "the spare was used"
        );
    }

    /// What a killed process or a power cut leaves: a spare that still holds an old attempt (its
    /// emptying never reached the disk) and a journal renamed from one whose new header never
    /// did. Recovery takes the spare over and empties it before use; the renamed journal names
    /// another attempt than its file and is dropped, not resumed as that other attempt.
    #[test]
    fn leftover_spares_are_adopted_emptied_and_never_read_as_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = Journal::dir(dir.path());
        let mut old = Journal::create(&jdir, &header("old")).unwrap();
        old.append(&started("s1", 1)).unwrap();
        old.append(&completed("s1", 2)).unwrap();
        let old_bytes = fs::read(old.path()).unwrap();
        drop(old);
        fs::write(jdir.join(".spare-1-0"), &old_bytes).unwrap();
        fs::rename(jdir.join("old.jsonl"), jdir.join("new.jsonl")).unwrap();

        let loaded = Journal::load_unfinished(&jdir).unwrap();
        assert!(loaded.is_empty(), "{loaded:?}");
        assert_eq!(listing(&jdir), [".spare-1-0"], "the misnamed journal is removed");
        let next = Journal::create(&jdir, &header("next")).unwrap();
        assert_eq!(listing(&jdir), ["next.jsonl"], "the adopted spare was used");
        let text = fs::read_to_string(next.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "nothing of the old attempt: {text}");
        assert!(text.contains(r#""attempt":"next""#), "{text}");
    }

    #[test]
    fn torn_last_line_is_ignored_and_cut_off_on_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &header("a1")).unwrap();
        journal.append(&started("s1", 1)).unwrap();
        let path = journal.path().to_path_buf();
        drop(journal);
        // kill -9 in the middle of writing the completion.
        append_raw(&path, br#"{"type":"step_completed","step_id":"s1","o"#);

        let loaded = Journal::load_unfinished(dir.path()).unwrap();
        assert_eq!(loaded[0].entries, [started("s1", 1)]);
        assert!(loaded[0].torn_tail);
        assert_eq!(loaded[0].interrupted().map(|s| s.step_id.as_str()), Some("s1"));

        let mut resumed = loaded[0].resume().unwrap();
        resumed.append(&completed("s1", 5)).unwrap();
        let reloaded = Journal::load_unfinished(dir.path()).unwrap();
        assert_eq!(reloaded[0].entries, [started("s1", 1), completed("s1", 5)]);
        assert!(!reloaded[0].torn_tail);
        assert_eq!(reloaded[0].interrupted(), None);
        reloaded.into_iter().next().unwrap().remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn unparsable_complete_last_line_counts_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path(), &header("a1")).unwrap();
        // A crash can leave the file extended with zeros instead of the data.
        append_raw(journal.path(), b"\0\0\0\0\n");
        let loaded = Journal::load_unfinished(dir.path()).unwrap();
        assert!(loaded[0].torn_tail);
        assert!(loaded[0].entries.is_empty());
    }

    #[test]
    fn damage_before_the_last_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), &header("a1")).unwrap();
        append_raw(journal.path(), b"garbage\n");
        journal.append(&started("s1", 1)).unwrap();
        let err = Journal::load_unfinished(dir.path()).unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");
        assert!(err.to_string().contains("a1.jsonl:2: expected value"), "{err}");
    }

    /// A reader without the lock (`status`) must not remove a journal a running reconciler is
    /// creating right now (its header not yet written): only the lock holder tidies.
    #[test]
    fn a_reader_without_the_lock_skips_a_headerless_journal_and_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a1.jsonl");
        fs::write(&path, br#"{"type":"attempt","vers"#).unwrap();
        assert!(Journal::read_unfinished(dir.path()).unwrap().is_empty());
        assert!(path.exists(), "left for the reconciler creating it");
        assert!(Journal::load_unfinished(dir.path()).unwrap().is_empty());
        assert!(!path.exists(), "the lock holder tidies it");
    }

    #[test]
    fn a_journal_without_a_complete_header_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a1.jsonl");
        fs::write(&path, br#"{"type":"attempt","vers"#).unwrap();
        fs::write(dir.path().join("notes.txt"), "not a journal").unwrap();
        assert!(Journal::load_unfinished(dir.path()).unwrap().is_empty());
        assert!(!path.exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn a_newer_journal_format_is_refused_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a1.jsonl");
        fs::write(&path, "{\"type\":\"attempt\",\"version\":2,\"new_field\":1}\n").unwrap();
        let err = Journal::load_unfinished(dir.path()).unwrap_err();
        assert!(
            matches!(err, JournalError::UnsupportedVersion { version: 2, .. }),
            "{err}"
        );
        assert!(path.exists());
    }

    #[test]
    fn attempt_ids_are_unique_file_names() {
        let dir = tempfile::tempdir().unwrap();
        Journal::create(dir.path(), &header("a1")).unwrap();
        let err = Journal::create(dir.path(), &header("a1")).unwrap_err();
        assert!(matches!(err, JournalError::Exists { .. }), "{err}");
        let err = Journal::create(dir.path(), &header("../a2")).unwrap_err();
        assert!(matches!(err, JournalError::InvalidAttemptId { .. }), "{err}");
    }

    #[test]
    fn attempts_load_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut late = header("b-late");
        late.started = at(100);
        Journal::create(dir.path(), &late).unwrap();
        Journal::create(dir.path(), &header("z-early")).unwrap();
        let ids: Vec<_> = Journal::load_unfinished(dir.path())
            .unwrap()
            .into_iter()
            .map(|a| a.header.attempt)
            .collect();
        assert_eq!(ids, ["z-early", "b-late"]);
    }

    /// Issue #17: completions of attempts running side by side share group-committed syncs.
    /// Every caller still gets `Ok` only with its own line written, and each journal reads back
    /// exactly its own entries (no line lost or crossed between journals in a batch).
    #[test]
    fn concurrent_completions_share_syncs_and_each_journal_keeps_its_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        let jdir = Journal::dir(dir.path());
        std::thread::scope(|scope| {
            for t in 0..16 {
                let jdir = &jdir;
                scope.spawn(move || {
                    let mut journal = Journal::create(jdir, &header(&format!("a{t:02}"))).unwrap();
                    for step in 0..5 {
                        let id = format!("s{step}");
                        journal.append(&started(&id, step)).unwrap();
                        journal.append(&completed(&id, step + 1)).unwrap();
                    }
                });
            }
        });
        let loaded = Journal::load_unfinished(&jdir).unwrap();
        assert_eq!(loaded.len(), 16);
        for attempt in &loaded {
            let want: Vec<JournalEntry> = (0..5)
                .flat_map(|step| {
                    let id = format!("s{step}");
                    [started(&id, step), completed(&id, step + 1)]
                })
                .collect();
            assert_eq!(attempt.entries, want, "{}", attempt.header.attempt);
            assert!(!attempt.torn_tail);
        }
    }
}
