//! Reading and writing the state branch: records as YAML files in commits made without a work tree.
//!
//! The state branch holds `targets/<target>.yaml` and `rollouts/<component>@<version>.yaml`
//! (SPEC §4). [`read_recorded`] parses the branch tip into a [`RecordedState`]; a
//! [`StateWriter`] turns a [`Batch`] of record changes and finished attempts into one commit.
//! Both work on the object database only: the working tree, the index and `HEAD` are never read
//! or written, so gantry can record state in a repository someone is working in.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::record::{Outcome, RecordedState, RolloutRecord, TargetRecord};
use super::{StateError, valid_record_name};

/// The directory of target records on the state branch.
pub const TARGETS_DIR: &str = "targets";
/// The directory of rollout records on the state branch.
pub const ROLLOUTS_DIR: &str = "rollouts";

const RECORD_EXT: &str = ".yaml";
const BLOB_MODE: i32 = 0o100_644;
const TREE_MODE: i32 = 0o040_000;
/// Commits writing at least this many records store them in one pack instead of loose objects.
const PACK_THRESHOLD: usize = 32;

/// The full reference name of a state branch (`gantry/state` → `refs/heads/gantry/state`).
///
/// A name that already starts with `refs/` is taken as it is.
///
/// # Errors
/// [`StateError::InvalidBranchName`] when git would not accept the name.
pub fn branch_ref(state_branch: &str) -> Result<String, StateError> {
    let full = if state_branch.starts_with("refs/") {
        state_branch.to_string()
    } else {
        format!("refs/heads/{state_branch}")
    };
    if git2::Reference::is_valid_name(&full) {
        Ok(full)
    } else {
        Err(StateError::InvalidBranchName {
            name: state_branch.to_string(),
        })
    }
}

/// The commit the state branch points at, or `None` when it does not exist yet.
///
/// # Errors
/// [`StateError::InvalidBranchName`], or [`StateError::Git`] when the reference cannot be read.
pub fn state_tip(repo: &Repository, state_branch: &str) -> Result<Option<Oid>, StateError> {
    let refname = branch_ref(state_branch)?;
    match repo.find_reference(&refname) {
        Ok(reference) => {
            let commit = reference
                .peel_to_commit()
                .map_err(|e| git_error(state_branch, "resolving the state branch to a commit", e))?;
            Ok(Some(commit.id()))
        }
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(git_error(state_branch, "reading the state branch reference", e)),
    }
}

/// Reads the recorded state from the tip of `state_branch`.
///
/// A branch that does not exist yet is an empty state (`commit: None`). Files in `targets/` and
/// `rollouts/` that do not end in `.yaml`, and anything else in the tree, are ignored. Records
/// are parsed on all available cores; see [`read_recorded_cached`] to parse only what changed
/// since the previous read.
///
/// # Errors
/// - [`StateError::Parse`] naming the branch, the path, the line and column, when a record is
///   not valid YAML, has an unknown or missing field or a value of the wrong type;
/// - [`StateError::Layout`] when `targets`/`rollouts` is not a directory, a record is not UTF-8,
///   or a rollout's file name does not match its component and version;
/// - [`StateError::Git`] when the repository cannot be read.
pub fn read_recorded(repo: &Repository, state_branch: &str) -> Result<RecordedState, StateError> {
    let _stage = tracing::debug_span!("state.read_recorded").entered();
    read_recorded_cached(repo, state_branch, &mut RecordCache::default())
}

/// Parsed records from the previous read, by blob id. Git stores an unchanged record as the same
/// blob, so a daemon that keeps one cache across reconciles parses only the records that changed.
/// The cache holds the records of the last read only.
#[derive(Debug, Default)]
pub struct RecordCache {
    targets: HashMap<Oid, TargetRecord>,
    rollouts: HashMap<Oid, RolloutRecord>,
}

/// [`read_recorded`], reusing and then replacing the records in `cache`.
///
/// # Errors
/// As [`read_recorded`]. After an error the cache is empty.
pub fn read_recorded_cached(
    repo: &Repository,
    state_branch: &str,
    cache: &mut RecordCache,
) -> Result<RecordedState, StateError> {
    let previous = std::mem::take(cache);
    let Some(tip) = state_tip(repo, state_branch)? else {
        return Ok(RecordedState::default());
    };
    let commit = repo
        .find_commit(tip)
        .map_err(|e| git_error(state_branch, "reading the state branch tip", e))?;
    let tree = commit
        .tree()
        .map_err(|e| git_error(state_branch, "reading the state branch tree", e))?;
    let reader = RecordReader {
        repo,
        branch: state_branch,
        commit: tip,
    };

    let targets = reader.read_dir(&tree, TARGETS_DIR, previous.targets)?;
    let rollouts = reader.read_dir(&tree, ROLLOUTS_DIR, previous.rollouts)?;

    let mut state = RecordedState {
        commit: Some(tip.to_string()),
        ..RecordedState::default()
    };
    for (name, blob, record) in targets {
        state.targets.insert(name, record.clone());
        cache.targets.insert(blob, record);
    }
    for (name, blob, record) in rollouts {
        let path = format!("{ROLLOUTS_DIR}/{name}{RECORD_EXT}");
        let expected = RolloutRecord::path(&record.component, &record.version);
        if expected != path {
            *cache = RecordCache::default();
            return Err(reader.layout(
                &path,
                format!(
                    "holds the rollout of {}@{}, whose record belongs in {expected}",
                    record.component, record.version
                ),
            ));
        }
        state
            .rollouts
            .insert((record.component.clone(), record.version.clone()), record.clone());
        cache.rollouts.insert(blob, record);
    }
    Ok(state)
}

/// Records below this many are parsed on the calling thread: a thread costs more than that.
const RECORDS_PER_THREAD: usize = 256;

/// Reads records out of one commit of the state branch, with errors that point into it.
struct RecordReader<'r> {
    repo: &'r Repository,
    branch: &'r str,
    commit: Oid,
}

impl RecordReader<'_> {
    /// `(name without .yaml, blob, record)` for every record in directory `dir` of `tree`, in
    /// name order, taken from `cached` when its blob was parsed before.
    fn read_dir<T>(
        &self,
        tree: &Tree<'_>,
        dir: &str,
        mut cached: HashMap<Oid, T>,
    ) -> Result<Vec<(String, Oid, T)>, StateError>
    where
        T: DeserializeOwned + Serialize + Clone + Send,
    {
        let Some(entry) = tree.get_name(dir) else {
            return Ok(Vec::new());
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(self.layout(dir, "is not a directory".to_string()));
        }
        let subtree = self
            .repo
            .find_tree(entry.id())
            .map_err(|e| git_error(self.branch, format!("reading {dir}/"), e))?;

        // Blobs are read here (a repository handle is not shared between threads); parsing,
        // which is most of the time, is spread over threads below.
        let mut records: Vec<(String, Oid, Option<T>)> = Vec::with_capacity(subtree.len());
        let mut to_parse: Vec<(usize, String, String)> = Vec::new();
        let blobs = tracing::debug_span!("state.read_blobs").entered();
        for entry in subtree.iter() {
            let Some(name) = entry.name().ok().and_then(|n| n.strip_suffix(RECORD_EXT)) else {
                continue;
            };
            if entry.kind() != Some(ObjectType::Blob) {
                continue;
            }
            if let Some(record) = cached.get(&entry.id()) {
                records.push((name.to_string(), entry.id(), Some(record.clone())));
                continue;
            }
            let path = format!("{dir}/{name}{RECORD_EXT}");
            let blob = self
                .repo
                .find_blob(entry.id())
                .map_err(|e| git_error(self.branch, format!("reading {path}"), e))?;
            let text = std::str::from_utf8(blob.content())
                .map_err(|e| self.layout(&path, format!("is not UTF-8 text ({e})")))?;
            to_parse.push((records.len(), path, text.to_string()));
            records.push((name.to_string(), entry.id(), None));
        }
        cached.clear();
        drop(blobs);
        let _parse = tracing::debug_span!("state.parse_records").entered();
        for (index, record) in self.parse_all::<T>(&to_parse)? {
            records[index].2 = Some(record);
        }
        Ok(records
            .into_iter()
            .map(|(name, blob, record)| {
                (
                    name,
                    blob,
                    record.expect("invariant: every record was taken from the cache or parsed"),
                )
            })
            .collect())
    }

    /// Parses `(index, path, text)` triples, on several threads when there are many. The error
    /// reported is the one of the first failing path in tree order, whatever thread found it.
    fn parse_all<T: DeserializeOwned + Serialize + Send>(
        &self,
        texts: &[(usize, String, String)],
    ) -> Result<Vec<(usize, T)>, StateError> {
        let (branch, commit) = (self.branch, self.commit);
        let parse_chunk = move |chunk: &[(usize, String, String)]| {
            chunk
                .iter()
                .map(|(index, path, text)| parse_record(branch, commit, path, text).map(|r| (*index, r)))
                .collect::<Result<Vec<_>, StateError>>()
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(texts.len() / RECORDS_PER_THREAD);
        if threads <= 1 {
            return parse_chunk(texts);
        }
        let chunk_len = texts.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = texts
                .chunks(chunk_len)
                .map(|chunk| scope.spawn(move || parse_chunk(chunk)))
                .collect();
            let mut parsed = Vec::with_capacity(texts.len());
            for worker in workers {
                match worker.join() {
                    Ok(chunk) => parsed.extend(chunk?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok(parsed)
        })
    }

    fn layout(&self, path: &str, message: String) -> StateError {
        StateError::Layout {
            branch: self.branch.to_string(),
            commit: self.commit,
            path: path.to_string(),
            message,
        }
    }
}

fn parse_record<T: DeserializeOwned + Serialize>(
    branch: &str,
    commit: Oid,
    path: &str,
    text: &str,
) -> Result<T, StateError> {
    if let Some(record) = fast_record(text) {
        return Ok(record);
    }
    serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        StateError::Parse {
            branch: branch.to_string(),
            commit,
            path: path.to_string(),
            line,
            column,
            message: yaml_message(&e),
        }
    })
}

/// A record read through the fast YAML reader (parser events → [`Node`] → JSON → `T`), about
/// ten times cheaper than serde-saphyr's typed deserialization. `None` sends the caller to
/// serde-saphyr, the reference, for anything unusual and for every error.
///
/// serde-saphyr and `serde_json::Value` may still disagree on how lenient a type is (a struct
/// from a sequence, an enum from a one-key map), so the result is kept only when it serializes
/// back to exactly the JSON read: the text was in the canonical form gantry writes, where both
/// readers agree.
///
/// [`Node`]: crate::manifest::document::Node
fn fast_record<T: DeserializeOwned + Serialize>(text: &str) -> Option<T> {
    use crate::manifest::document::{FastYaml, fast_yaml_single};
    static OPTIONS: std::sync::OnceLock<FastYaml> = std::sync::OnceLock::new();
    let node = fast_yaml_single(text, OPTIONS.get_or_init(FastYaml::defaults))?;
    let json = node.to_json();
    let record: T = T::deserialize(&json).ok()?;
    (serde_json::to_value(&record).ok()? == json).then_some(record)
}

/// serde-saphyr's message without the position (which [`StateError::Parse`] prints itself) and
/// without its source snippet.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = match text.find(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines().next().unwrap_or("invalid YAML").trim().to_string()
}

/// One finished target attempt, as recorded in a state commit's message and trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub target: String,
    pub component: String,
    /// The version the attempt started from; `None` for an install.
    pub from: Option<semver::Version>,
    pub to: semver::Version,
    pub outcome: Outcome,
    /// The desired-branch commit the attempt reconciled.
    pub desired_commit: String,
    /// The attempt id.
    pub attempt: String,
    /// Why it ended this way (one line is kept; may be empty).
    pub message: String,
}

impl FinishedAttempt {
    /// The finished attempt recorded in a target's `last_attempt`, if it has finished.
    pub fn from_record(target: &str, record: &TargetRecord) -> Option<FinishedAttempt> {
        let attempt = record.last_attempt.as_ref()?;
        Some(FinishedAttempt {
            target: target.to_string(),
            component: record.component.clone(),
            from: attempt.from.clone(),
            to: attempt.to.clone(),
            outcome: attempt.outcome?,
            desired_commit: attempt.desired_commit.clone(),
            attempt: attempt.id.clone(),
            message: attempt.message.clone(),
        })
    }

    /// The one-line summary: `billing 1.2.0 → 2.0.0 on acme: succeeded`; an install reads
    /// `billing (none) → 2.0.0 on acme: succeeded`.
    pub fn summary(&self) -> String {
        let from = self
            .from
            .as_ref()
            .map_or_else(|| "(none)".to_string(), ToString::to_string);
        format!(
            "{} {from} → {} on {}: {}",
            self.component,
            self.to,
            self.target,
            self.outcome.as_str()
        )
    }
}

/// The changes one state commit makes: record upserts and deletions, and the attempts whose
/// outcomes it records. Later changes to the same record replace earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// `None` deletes the record.
    targets: BTreeMap<String, Option<TargetRecord>>,
    rollouts: BTreeMap<(String, semver::Version), Option<RolloutRecord>>,
    outcomes: Vec<FinishedAttempt>,
    progress_summary: Option<String>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Writes `targets/<name>.yaml`.
    pub fn upsert_target(&mut self, name: impl Into<String>, record: TargetRecord) -> &mut Self {
        self.targets.insert(name.into(), Some(record));
        self
    }

    /// Deletes `targets/<name>.yaml` (nothing happens if it does not exist).
    pub fn delete_target(&mut self, name: impl Into<String>) -> &mut Self {
        self.targets.insert(name.into(), None);
        self
    }

    /// Writes `rollouts/<component>@<version>.yaml`.
    pub fn upsert_rollout(&mut self, record: RolloutRecord) -> &mut Self {
        self.rollouts
            .insert((record.component.clone(), record.version.clone()), Some(record));
        self
    }

    /// Deletes `rollouts/<component>@<version>.yaml` (nothing happens if it does not exist).
    pub fn delete_rollout(&mut self, component: impl Into<String>, version: semver::Version) -> &mut Self {
        self.rollouts.insert((component.into(), version), None);
        self
    }

    /// Records a finished attempt in the commit message; outcomes keep the order they are added in.
    pub fn outcome(&mut self, finished: FinishedAttempt) -> &mut Self {
        self.outcomes.push(finished);
        self
    }

    /// The first line of a commit that records no outcome (default `gantry: record progress`),
    /// e.g. `gantry: billing@2.0.0 wave canary completed`. Ignored when the batch has outcomes.
    pub fn progress_summary(&mut self, line: impl Into<String>) -> &mut Self {
        self.progress_summary = Some(line.into());
        self
    }

    /// No record changes and no outcomes.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.rollouts.is_empty() && self.outcomes.is_empty()
    }
}

/// Who state commits are by.
///
/// Always `gantry <gantry@localhost>` unless the caller says otherwise: the repository's
/// `user.name`/`user.email` belong to whoever works in the clone, and attributing automated
/// commits to them would falsify the audit trail. A daemon that wants its host in the trail
/// passes its own identity (e.g. `gantry <gantry@deploy-1.example.com>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Identity {
        Identity {
            name: "gantry".to_string(),
            email: "gantry@localhost".to_string(),
        }
    }
}

/// Writes commits on the state branch, each on top of the previous one.
///
/// The writer remembers the tip it expects the branch to be at: the tip when it was opened, or
/// the commit a [`RecordedState`] was read from, then each commit it makes. A branch moved by
/// anyone else in between is reported as [`StateError::Moved`] and never overwritten.
pub struct StateWriter<'r> {
    repo: &'r Repository,
    branch: String,
    refname: String,
    tip: Option<Oid>,
    identity: Identity,
}

impl<'r> StateWriter<'r> {
    /// A writer on top of the branch's current tip (or its first commit, if it does not exist).
    ///
    /// # Errors
    /// [`StateError::InvalidBranchName`], or [`StateError::Git`] when the tip cannot be read.
    pub fn open(repo: &'r Repository, state_branch: &str) -> Result<StateWriter<'r>, StateError> {
        let tip = state_tip(repo, state_branch)?;
        Self::at(repo, state_branch, tip)
    }

    /// A writer on top of the commit `recorded` was read from, so that state planned from
    /// `recorded` is never written over changes made since.
    ///
    /// # Errors
    /// [`StateError::InvalidBranchName`], or [`StateError::Git`] when `recorded.commit` is not a
    /// commit id.
    pub fn on_top_of(
        repo: &'r Repository,
        state_branch: &str,
        recorded: &RecordedState,
    ) -> Result<StateWriter<'r>, StateError> {
        let tip = recorded
            .commit
            .as_deref()
            .map(Oid::from_str)
            .transpose()
            .map_err(|e| git_error(state_branch, "parsing the recorded commit id", e))?;
        Self::at(repo, state_branch, tip)
    }

    /// A writer that expects the branch at `tip` (`None`: expects it not to exist).
    ///
    /// # Errors
    /// [`StateError::InvalidBranchName`].
    pub fn at(repo: &'r Repository, state_branch: &str, tip: Option<Oid>) -> Result<StateWriter<'r>, StateError> {
        Ok(StateWriter {
            repo,
            branch: state_branch.to_string(),
            refname: branch_ref(state_branch)?,
            tip,
            identity: Identity::default(),
        })
    }

    /// Commits are by `identity` instead of `gantry <gantry@localhost>`.
    pub fn with_identity(mut self, identity: Identity) -> StateWriter<'r> {
        self.identity = identity;
        self
    }

    /// The commit the writer expects the branch at: the last one it wrote, or where it started.
    pub fn tip(&self) -> Option<Oid> {
        self.tip
    }

    /// Makes one commit on the state branch with every change and outcome of `batch`, dated `now`.
    ///
    /// Returns the new commit, or `None` when there was nothing to record (no outcomes and no
    /// change to any file), in which case no commit is made.
    ///
    /// # Guarantees
    /// - The commit's parent is the expected tip ([`StateWriter::tip`]); the first commit of a
    ///   branch is an orphan root. The branch is moved with a compare-and-swap, so a commit
    ///   is either on the branch exactly on top of the expected tip, or not on it at all.
    /// - Only the `targets/` and `rollouts/` directories that change are rewritten; untouched
    ///   records keep their blobs, and other files in the tree are kept as they are. The cost is
    ///   one blob per changed record plus one rewrite of each changed directory's listing.
    /// - The working tree, the index and `HEAD` are not read or written.
    ///
    /// Objects and the reference are written with libgit2's defaults, which do not fsync: a
    /// commit survives a killed process, not necessarily a power loss before the OS flushes it.
    /// `core.fsyncObjectFiles = true` in the repository's config makes libgit2 sync loose objects
    /// and the reference; the pack of a large batch is synced only under libgit2's global
    /// `GIT_OPT_ENABLE_FSYNC_GITDIR`, which git2 0.21 does not expose.
    ///
    /// # Errors
    /// - [`StateError::Moved`] when the branch is not at the expected tip any more (someone else
    ///   wrote, pushed or reset it); nothing is recorded, the caller should re-read and re-plan;
    /// - [`StateError::InvalidName`] for a target, component or attempt id that cannot be a
    ///   file name or trailer value;
    /// - [`StateError::Serialize`] or [`StateError::Git`] when writing fails.
    pub fn commit(&mut self, batch: &Batch, now: jiff::Timestamp) -> Result<Option<Oid>, StateError> {
        validate_batch(batch)?;
        self.injected_fault()?;
        let Some((commit, message)) = self.write_objects(batch, now)? else {
            return Ok(None);
        };
        self.move_branch(commit, &message)?;
        self.tip = Some(commit);
        Ok(Some(commit))
    }

    /// Fault injection for tests of the real binary: in debug builds only,
    /// `GANTRY_FAULT_STATE_WRITE=fail` makes every state write fail as a full disk would.
    #[cfg(debug_assertions)]
    fn injected_fault(&self) -> Result<(), StateError> {
        if std::env::var_os("GANTRY_FAULT_STATE_WRITE").is_some_and(|v| v == "fail") {
            return Err(StateError::Io {
                branch: self.branch.clone(),
                action: "writing the state commit",
                source: std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device (injected by GANTRY_FAULT_STATE_WRITE=fail)",
                ),
            });
        }
        Ok(())
    }

    #[cfg(not(debug_assertions))]
    fn injected_fault(&self) -> Result<(), StateError> {
        Ok(())
    }

    /// Writes the blobs, trees and commit of `batch`, without moving the branch. Returns the
    /// commit and its message, or `None` when there is nothing to record.
    fn write_objects(&self, batch: &Batch, now: jiff::Timestamp) -> Result<Option<(Oid, String)>, StateError> {
        let parent = match self.tip {
            Some(oid) => Some(
                self.repo
                    .find_commit(oid)
                    .map_err(|e| self.git_error(format!("reading the expected tip {oid}"), e))?,
            ),
            None => None,
        };
        let base = match &parent {
            Some(commit) => Some(commit.tree().map_err(|e| self.git_error("reading the tip's tree", e))?),
            None => None,
        };

        // Serialize first, so that all blobs are stored in one go.
        let mut changes: Vec<(&str, String, Option<String>)> = Vec::new();
        for (name, record) in &batch.targets {
            let file = format!("{name}{RECORD_EXT}");
            let yaml = record
                .as_ref()
                .map(|r| to_yaml(&format!("{TARGETS_DIR}/{file}"), r))
                .transpose()?;
            changes.push((TARGETS_DIR, file, yaml));
        }
        for ((component, version), record) in &batch.rollouts {
            let file = format!("{component}@{version}{RECORD_EXT}");
            let yaml = record
                .as_ref()
                .map(|r| to_yaml(&format!("{ROLLOUTS_DIR}/{file}"), r))
                .transpose()?;
            changes.push((ROLLOUTS_DIR, file, yaml));
        }
        let mut blobs = self
            .write_blobs(changes.iter().filter_map(|(_, _, yaml)| yaml.as_deref()))?
            .into_iter();

        let mut root = self
            .repo
            .treebuilder(base.as_ref())
            .map_err(|e| self.git_error("starting the root tree", e))?;
        for dir in [TARGETS_DIR, ROLLOUTS_DIR] {
            let dir_changes: Vec<(&str, Option<Oid>)> = changes
                .iter()
                .filter(|(d, _, _)| *d == dir)
                .map(|(_, file, yaml)| (file.as_str(), yaml.as_ref().and_then(|_| blobs.next())))
                .collect();
            if !dir_changes.is_empty() {
                self.rewrite_dir(&mut root, base.as_ref(), dir, &dir_changes)?;
            }
        }
        let tree_id = root.write().map_err(|e| self.git_error("writing the root tree", e))?;

        let unchanged = match &base {
            Some(tree) => tree.id() == tree_id,
            None => root.is_empty(),
        };
        if unchanged && batch.outcomes.is_empty() {
            return Ok(None);
        }

        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(|e| self.git_error("reading the new tree", e))?;
        let message = commit_message(batch);
        let time = git2::Time::new(now.as_second(), 0);
        let signature = Signature::new(&self.identity.name, &self.identity.email, &time)
            .map_err(|e| self.git_error("making the commit signature", e))?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let commit = self
            .repo
            .commit(None, &signature, &signature, &message, &tree, &parents)
            .map_err(|e| self.git_error("writing the state commit", e))?;
        Ok(Some((commit, message)))
    }

    /// Stores `blobs`, returning their ids in the same order.
    ///
    /// A few are written as loose objects. Many go into one pack: a loose object costs a file
    /// each, and libgit2 first looks every new object up on disk, rescanning the pack directory
    /// when it is not there, which for thousands of records costs more than everything else.
    /// The blobs are built in an object database in memory and reach the repository as one pack
    /// and its index. Small batches stay loose because each pack is one more file that lookups
    /// search until the repository is repacked.
    fn write_blobs<'b>(&self, blobs: impl Iterator<Item = &'b str>) -> Result<Vec<Oid>, StateError> {
        let blobs: Vec<&str> = blobs.collect();
        if blobs.len() < PACK_THRESHOLD {
            return blobs
                .iter()
                .map(|text| self.repo.blob(text.as_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|e| self.git_error("writing a record", e));
        }
        let memory_error = |e| self.git_error("creating an in-memory object database", e);
        let memory = git2::Odb::new().map_err(memory_error)?;
        memory.add_new_mempack_backend(1).map_err(memory_error)?;
        let memory = Repository::from_odb(memory).map_err(memory_error)?;
        let mut pack = memory.packbuilder().map_err(|e| self.git_error("starting a pack", e))?;
        let mut ids = Vec::with_capacity(blobs.len());
        for text in blobs {
            let id = memory
                .blob(text.as_bytes())
                .map_err(|e| self.git_error("writing a record", e))?;
            pack.insert_object(id, None)
                .map_err(|e| self.git_error("adding a record to the pack", e))?;
            ids.push(id);
        }
        let mut bytes = git2::Buf::new();
        pack.write_buf(&mut bytes)
            .map_err(|e| self.git_error("packing the records", e))?;

        let odb = self
            .repo
            .odb()
            .map_err(|e| self.git_error("opening the object database", e))?;
        let mut writer = odb
            .packwriter()
            .map_err(|e| self.git_error("starting to write a pack", e))?;
        writer.write_all(&bytes).map_err(|source| StateError::Io {
            branch: self.branch.clone(),
            action: "writing the pack of records",
            source,
        })?;
        writer
            .commit()
            .map_err(|e| self.git_error("indexing the pack of records", e))?;
        Ok(ids)
    }

    /// Applies `changes` (file name → new blob, or `None` to delete) to directory `dir` of
    /// `base`, starting from its existing entries so that untouched records are reused as they are.
    fn rewrite_dir(
        &self,
        root: &mut git2::TreeBuilder<'_>,
        base: Option<&Tree<'_>>,
        dir: &str,
        changes: &[(&str, Option<Oid>)],
    ) -> Result<(), StateError> {
        let existing = match base.and_then(|tree| tree.get_name(dir)) {
            Some(entry) if entry.kind() == Some(ObjectType::Tree) => Some(
                self.repo
                    .find_tree(entry.id())
                    .map_err(|e| self.git_error(format!("reading {dir}/"), e))?,
            ),
            // A hand-made file where the directory belongs is replaced by the directory.
            _ => None,
        };
        let mut builder = self
            .repo
            .treebuilder(existing.as_ref())
            .map_err(|e| self.git_error(format!("starting {dir}/"), e))?;
        for &(file, blob) in changes {
            match blob {
                Some(blob) => {
                    builder
                        .insert(file, blob, BLOB_MODE)
                        .map_err(|e| self.git_error(format!("adding {dir}/{file}"), e))?;
                }
                None => {
                    let present = builder
                        .get(file)
                        .map_err(|e| self.git_error(format!("looking up {dir}/{file}"), e))?
                        .is_some();
                    if present {
                        builder
                            .remove(file)
                            .map_err(|e| self.git_error(format!("removing {dir}/{file}"), e))?;
                    }
                }
            }
        }
        if builder.is_empty() {
            // Git has no empty directories: the last record gone, the directory goes too.
            if root
                .get(dir)
                .map_err(|e| self.git_error(format!("looking up {dir}/"), e))?
                .is_some()
            {
                root.remove(dir)
                    .map_err(|e| self.git_error(format!("removing {dir}/"), e))?;
            }
        } else {
            let id = builder
                .write()
                .map_err(|e| self.git_error(format!("writing {dir}/"), e))?;
            root.insert(dir, id, TREE_MODE)
                .map_err(|e| self.git_error(format!("adding {dir}/"), e))?;
        }
        Ok(())
    }

    /// Points the branch at `commit` if, and only if, it still points at the expected tip.
    fn move_branch(&self, commit: Oid, message: &str) -> Result<(), StateError> {
        let summary = message.lines().next().unwrap_or_default();
        let log = format!("gantry: {summary}");
        let result = match self.tip {
            Some(expected) => self
                .repo
                .reference_matching(&self.refname, commit, true, expected, &log),
            None => self.repo.reference(&self.refname, commit, false, &log),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), ErrorCode::Modified | ErrorCode::Exists | ErrorCode::NotFound) => {
                Err(StateError::Moved {
                    branch: self.branch.clone(),
                    expected: self.tip,
                    found: state_tip(self.repo, &self.branch)?,
                })
            }
            Err(e) => Err(self.git_error("moving the state branch", e)),
        }
    }

    fn git_error(&self, action: impl Into<String>, source: git2::Error) -> StateError {
        git_error(&self.branch, action, source)
    }
}

fn validate_batch(batch: &Batch) -> Result<(), StateError> {
    for name in batch.targets.keys() {
        check_name("target", name)?;
    }
    for (component, _) in batch.rollouts.keys() {
        check_name("component", component)?;
    }
    for outcome in &batch.outcomes {
        check_name("target", &outcome.target)?;
        check_name("component", &outcome.component)?;
        check_name("attempt id", &outcome.attempt)?;
        if outcome.desired_commit.is_empty() || !outcome.desired_commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StateError::InvalidName {
                kind: "desired commit",
                name: outcome.desired_commit.clone(),
                reason: "expected a hexadecimal commit id",
            });
        }
    }
    Ok(())
}

fn check_name(kind: &'static str, name: &str) -> Result<(), StateError> {
    valid_record_name(name).map_err(|reason| StateError::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    })
}

/// YAML text of a record: fields in declaration order, ending in a newline.
fn to_yaml<T: Serialize>(path: &str, value: &T) -> Result<String, StateError> {
    let mut text = serde_saphyr::to_string(value).map_err(|source| StateError::Serialize {
        path: path.to_string(),
        source,
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Trailer keys, in the order each outcome's block lists them. `Gantry-Target` opens a block.
pub(crate) mod trailer {
    pub const TARGET: &str = "Gantry-Target";
    pub const COMPONENT: &str = "Gantry-Component";
    pub const FROM: &str = "Gantry-From";
    pub const TO: &str = "Gantry-To";
    pub const OUTCOME: &str = "Gantry-Outcome";
    pub const DESIRED_COMMIT: &str = "Gantry-Desired-Commit";
    pub const ATTEMPT: &str = "Gantry-Attempt";
    pub const MESSAGE: &str = "Gantry-Message";
    /// Clustered (`--etcd`): the leadership the outcome was reached under (`shard/member@rev`).
    pub const FENCE: &str = "Gantry-Fence";
    /// The value of `Gantry-From` for an install.
    pub const NO_VERSION: &str = "none";
}

/// The commit message of a batch (format documented in the `state` module).
pub(crate) fn commit_message(batch: &Batch) -> String {
    let mut text = String::new();
    match batch.outcomes.as_slice() {
        [] => {
            let summary = batch.progress_summary.as_deref().map(one_line);
            text.push_str(summary.as_deref().unwrap_or("gantry: record progress"));
            text.push('\n');
            return text;
        }
        [only] => {
            text.push_str(&only.summary());
            text.push('\n');
        }
        several => {
            let counts = [Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack]
                .into_iter()
                .filter_map(|kind| {
                    let n = several.iter().filter(|o| o.outcome == kind).count();
                    (n > 0).then(|| format!("{n} {}", kind.as_str()))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(text, "gantry: {} outcomes ({counts})", several.len());
            text.push('\n');
            for outcome in several {
                text.push_str(&outcome.summary());
                text.push('\n');
            }
        }
    }
    text.push('\n');
    for o in &batch.outcomes {
        let from = o
            .from
            .as_ref()
            .map_or_else(|| trailer::NO_VERSION.to_string(), ToString::to_string);
        let _ = writeln!(text, "{}: {}", trailer::TARGET, o.target);
        let _ = writeln!(text, "{}: {}", trailer::COMPONENT, o.component);
        let _ = writeln!(text, "{}: {from}", trailer::FROM);
        let _ = writeln!(text, "{}: {}", trailer::TO, o.to);
        let _ = writeln!(text, "{}: {}", trailer::OUTCOME, o.outcome.as_str());
        let _ = writeln!(text, "{}: {}", trailer::DESIRED_COMMIT, o.desired_commit);
        let _ = writeln!(text, "{}: {}", trailer::ATTEMPT, o.attempt);
        let reason = one_line(&o.message);
        if !reason.is_empty() {
            let _ = writeln!(text, "{}: {reason}", trailer::MESSAGE);
        }
        if let Some(fence) = super::fence::trailer() {
            let _ = writeln!(text, "{}: {fence}", trailer::FENCE);
        }
    }
    text
}

/// The text on one line: control characters (newlines included) become spaces, runs of
/// whitespace collapse, and at most 200 characters are kept, so it fits a summary or a trailer.
fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut out = String::new();
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

pub(crate) fn git_error(branch: &str, action: impl Into<String>, source: git2::Error) -> StateError {
    StateError::Git {
        branch: branch.to_string(),
        action: action.into(),
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::process::Command;

    use git2::{Oid, Repository};
    use semver::Version;

    use super::*;
    use crate::manifest::Phase;
    use crate::state::record::{
        AppliedMigration, AttemptRecord, Halt, RolloutTarget, RolloutTargetStatus, TargetStatus, WaveRecord,
    };

    pub(crate) const BRANCH: &str = "gantry/state";

    pub(crate) fn now() -> jiff::Timestamp {
        "2026-02-03T10:00:00Z".parse().unwrap()
    }

    pub(crate) fn temp_repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        (dir, repo)
    }

    pub(crate) fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    pub(crate) fn target(component: &str, version: &str) -> TargetRecord {
        TargetRecord {
            component: component.to_string(),
            version: Some(v(version)),
            config_hash: None,
            config: None,
            applied_migrations: Vec::new(),
            status: TargetStatus::Converged,
            last_attempt: None,
            rollback_points: Vec::new(),
            observed_version: None,
        }
    }

    pub(crate) fn finished(target: &str, from: Option<&str>, to: &str, outcome: Outcome) -> FinishedAttempt {
        FinishedAttempt {
            target: target.to_string(),
            component: "billing".to_string(),
            from: from.map(v),
            to: v(to),
            outcome,
            desired_commit: "4f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4".to_string(),
            attempt: format!("{target}-20260203T100000Z"),
            message: String::new(),
        }
    }

    /// A target record with every field set, including values YAML could misread (a numeric
    /// attempt id, a colon in a message, a multi-line output tail).
    fn full_target() -> TargetRecord {
        TargetRecord {
            component: "billing".to_string(),
            version: Some(v("2.0.0")),
            config_hash: Some("0123abcd".to_string()),
            config: None,
            applied_migrations: vec![AppliedMigration {
                release: v("2.0.0"),
                id: "split-namespaces".to_string(),
                phase: Phase::Pre,
                down: Some(vec!["migrations/billing/2.0.0/down.sh".to_string(), "acme".to_string()]),
                attempt: "12345".to_string(),
            }],
            status: TargetStatus::Converged,
            last_attempt: Some(AttemptRecord {
                id: "12345".to_string(),
                desired_commit: "4f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4".to_string(),
                from: Some(v("1.2.0")),
                to: v("2.0.0"),
                action: "upgrade".to_string(),
                started: "2026-02-03T10:00:00Z".to_string(),
                finished: Some("2026-02-03T10:05:00Z".to_string()),
                outcome: Some(Outcome::Succeeded),
                message: "health: ok after 3 tries".to_string(),
                config_hash: None,
                output_tail: "line one\nline: two\n".to_string(),
                spec_hash: None,
            }),
            rollback_points: vec![v("1.2.0"), v("1.1.0")],
            observed_version: Some("2.0.0".to_string()),
        }
    }

    fn rollout() -> RolloutRecord {
        RolloutRecord {
            component: "billing".to_string(),
            version: v("2.0.0-rc.1+build.5"),
            started: "2026-02-03T10:00:00Z".to_string(),
            waves: vec![WaveRecord {
                name: "canary".to_string(),
                started: Some("2026-02-03T10:00:00Z".to_string()),
                completed: None,
                analysis: None,
            }],
            targets: BTreeMap::from([(
                "acme".to_string(),
                RolloutTarget {
                    wave: "canary".to_string(),
                    status: RolloutTargetStatus::InProgress,
                    started: "2026-02-03T10:00:00Z".to_string(),
                    finished: None,
                },
            )]),
            failures: 1,
            halted: Some(Halt {
                at: "2026-02-03T10:01:00Z".to_string(),
                target: "zen".to_string(),
                reason: "failed".into(),
                specs: Default::default(),
            }),
        }
    }

    /// The fast record reader gives what serde-saphyr gives: records gantry writes take the fast
    /// path; hand-edited oddities either take it with the same result or fall back, and errors
    /// keep their exact position and message.
    #[test]
    fn fast_record_reader_agrees_with_serde_saphyr() {
        let mut with_config = full_target();
        with_config.config = Some(
            serde_json::json!({"replicas": 3, "ratio": 0.5, "on": true, "name": "x", "none": null,
                "list": [1, "two", {"three": 3}], "neg": -7, "big": 18446744073709551615u64})
            .as_object()
            .unwrap()
            .clone(),
        );
        for record in [target("billing", "1.2.3"), full_target(), with_config] {
            let text = to_yaml("targets/t.yaml", &record).unwrap();
            let fast: TargetRecord = fast_record(&text).unwrap_or_else(|| panic!("fell back on:\n{text}"));
            assert_eq!(fast, record, "{text}");
            assert_eq!(fast, serde_saphyr::from_str::<TargetRecord>(&text).unwrap());
        }
        let text = to_yaml("rollouts/r.yaml", &rollout()).unwrap();
        assert_eq!(fast_record::<RolloutRecord>(&text), Some(rollout()), "{text}");

        let odd = [
            // Lenient in serde_json, refused by serde-saphyr: a struct from a sequence, an enum
            // from a one-key map.
            "component: a\nstatus: converged\nlast_attempt: [i, c, null, 1.0.0, upgrade, s, null, null, '', null, '']\n",
            "component: a\nstatus: {converged: null}\n",
            // YAML 1.1 words, numbers and nulls where strings are expected.
            "component: yes\nstatus: converged\n",
            "component: 123\nstatus: converged\n",
            "component: ~\nstatus: converged\n",
            "component: a\nstatus: converged\nconfig: {a: yes, b: off, c: 0x10, d: 1e3, e: .inf, f: 1e400}\n",
            "component: a\nstatus: converged\nconfig: {1: a}\n",
            "component: a\nversion: 1.2\nstatus: converged\n",
            "component: a\nversion: ~\nstatus: converged\nrollback_points: ~\n",
            // Syntax, duplicates, unknown fields, several documents.
            "component: a\nstatus: converged\ncomponent: b\n",
            "component: a\nstatus: converged\nextra: 1\n",
            "component: [a\n",
            "component: a\nstatus: converged\n---\n",
            "---\ncomponent: a\nstatus: converged\n...\n",
            "",
            "~\n",
            "component: &a x\nstatus: converged\nobserved_version: *a\n",
        ];
        let commit = Oid::ZERO_SHA1;
        for text in odd {
            let got = parse_record::<TargetRecord>(BRANCH, commit, "targets/t.yaml", text);
            let want = serde_saphyr::from_str::<TargetRecord>(text);
            match (got, want) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (
                    Err(StateError::Parse {
                        line, column, message, ..
                    }),
                    Err(e),
                ) => {
                    let loc = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                    assert_eq!((line, column, message), (loc.0, loc.1, yaml_message(&e)), "{text:?}");
                }
                (a, b) => panic!("{text:?}: {a:?} vs {b:?}"),
            }
        }
    }

    fn blob_text(repo: &Repository, commit: Oid, path: &str) -> String {
        let tree = repo.find_commit(commit).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).unwrap();
        String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap()
    }

    /// Commits `files` (path → text) on the state branch on top of its tip, as a hand edit would.
    pub(crate) fn hand_commit(repo: &Repository, files: &[(&str, &str)], message: &str) -> Oid {
        let tip = state_tip(repo, BRANCH).unwrap();
        let parent = tip.map(|t| repo.find_commit(t).unwrap());
        let base = parent.as_ref().map(|c| c.tree().unwrap());
        let mut root = repo.treebuilder(base.as_ref()).unwrap();
        for (path, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            match path.split_once('/') {
                Some((dir, file)) => {
                    let existing = root.get(dir).unwrap().map(|e| repo.find_tree(e.id()).unwrap());
                    let mut sub = repo.treebuilder(existing.as_ref()).unwrap();
                    sub.insert(file, blob, BLOB_MODE).unwrap();
                    let id = sub.write().unwrap();
                    root.insert(dir, id, TREE_MODE).unwrap();
                }
                None => {
                    root.insert(*path, blob, BLOB_MODE).unwrap();
                }
            }
        }
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let sig = Signature::now("someone", "someone@example.com").unwrap();
        let parents: Vec<_> = parent.iter().collect();
        let commit = repo.commit(None, &sig, &sig, message, &tree, &parents).unwrap();
        repo.reference(&branch_ref(BRANCH).unwrap(), commit, true, "hand edit")
            .unwrap();
        commit
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn missing_branch_reads_as_empty_state() {
        let (_dir, repo) = temp_repo();
        assert_eq!(read_recorded(&repo, BRANCH).unwrap(), RecordedState::default());
    }

    #[test]
    fn records_round_trip() {
        let (_dir, repo) = temp_repo();
        let mut batch = Batch::new();
        batch
            .upsert_target("acme", full_target())
            .upsert_target("zen", target("billing", "1.2.0"));
        batch.upsert_rollout(rollout());
        let commit = StateWriter::open(&repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap();

        let state = read_recorded(&repo, BRANCH).unwrap();
        assert_eq!(state.commit, Some(commit.to_string()));
        assert_eq!(state.targets["acme"], full_target());
        assert_eq!(state.targets["zen"], target("billing", "1.2.0"));
        assert_eq!(state.rollouts.len(), 1);
        assert_eq!(
            state.rollouts[&("billing".to_string(), v("2.0.0-rc.1+build.5"))],
            rollout()
        );
        assert!(blob_text(&repo, commit, "rollouts/billing@2.0.0-rc.1+build.5.yaml").ends_with('\n'));
    }

    #[test]
    fn a_cached_read_parses_only_changed_records() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        batch
            .upsert_target("acme", target("billing", "1.2.0"))
            .upsert_target("zen", target("billing", "1.3.0"));
        batch.upsert_rollout(rollout());
        writer.commit(&batch, now()).unwrap();
        let mut cache = RecordCache::default();
        assert_eq!(
            read_recorded_cached(&repo, BRANCH, &mut cache).unwrap(),
            read_recorded(&repo, BRANCH).unwrap()
        );
        assert_eq!((cache.targets.len(), cache.rollouts.len()), (2, 1));

        // Tamper with the cached copy of acme's blob: a cached read must return it unparsed.
        let acme_blob = *cache
            .targets
            .iter()
            .find(|(_, r)| r.version == Some(v("1.2.0")))
            .unwrap()
            .0;
        cache.targets.get_mut(&acme_blob).unwrap().observed_version = Some("from the cache".into());
        let mut batch = Batch::new();
        batch.upsert_target("zen", target("billing", "2.0.0"));
        writer.commit(&batch, now()).unwrap();

        let state = read_recorded_cached(&repo, BRANCH, &mut cache).unwrap();
        assert_eq!(
            state.targets["acme"].observed_version.as_deref(),
            Some("from the cache")
        );
        assert_eq!(state.targets["zen"], target("billing", "2.0.0"));
        // Only the records of the last read are kept.
        assert_eq!(cache.targets.len(), 2);
        assert!(cache.targets.values().all(|r| r.version != Some(v("1.3.0"))));
    }

    #[test]
    fn record_yaml_keeps_field_order_and_ends_in_newline() {
        let (_dir, repo) = temp_repo();
        let mut batch = Batch::new();
        batch.upsert_target("acme", full_target());
        let commit = StateWriter::open(&repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap();
        let text = blob_text(&repo, commit, "targets/acme.yaml");
        assert!(text.ends_with("observed_version: \"2.0.0\"\n"), "{text:?}");
        insta::assert_snapshot!("target_record_yaml", text);
    }

    #[test]
    fn first_commit_is_an_orphan_and_the_next_builds_on_it() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let first = writer.commit(&batch, now()).unwrap().unwrap();
        assert_eq!(repo.find_commit(first).unwrap().parent_count(), 0);

        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "2.0.0"));
        batch.outcome(finished("acme", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
        let second = writer.commit(&batch, now()).unwrap().unwrap();
        let second_commit = repo.find_commit(second).unwrap();
        assert_eq!(second_commit.parent_ids().collect::<Vec<_>>(), vec![first]);
        assert_eq!(state_tip(&repo, BRANCH).unwrap(), Some(second));
        assert_eq!(writer.tip(), Some(second));
    }

    #[test]
    fn commits_are_by_gantry_at_the_given_time() {
        let (dir, repo) = temp_repo();
        // A configured user must not be credited with gantry's commits.
        git(dir.path(), &["config", "user.name", "Alice"]);
        git(dir.path(), &["config", "user.email", "alice@example.com"]);
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let commit = StateWriter::open(&repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap();
        let commit = repo.find_commit(commit).unwrap();
        for sig in [commit.author(), commit.committer()] {
            assert_eq!(sig.name(), Ok("gantry"));
            assert_eq!(sig.email(), Ok("gantry@localhost"));
            assert_eq!(sig.when().seconds(), now().as_second());
        }

        let identity = Identity {
            name: "gantry".into(),
            email: "gantry@deploy-1.example.com".into(),
        };
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap().with_identity(identity);
        batch.upsert_target("zen", target("billing", "1.2.0"));
        let next = writer.commit(&batch, now()).unwrap().unwrap();
        assert_eq!(
            repo.find_commit(next).unwrap().author().email(),
            Ok("gantry@deploy-1.example.com")
        );
    }

    #[test]
    fn writing_never_touches_work_tree_index_or_head() {
        let (dir, repo) = temp_repo();
        let root = dir.path();
        git(root, &["config", "user.name", "t"]);
        git(root, &["config", "user.email", "t@example.com"]);
        git(root, &["checkout", "-q", "-b", "main"]);
        std::fs::write(root.join("committed.txt"), "one\n").unwrap();
        std::fs::write(root.join("staged.txt"), "staged\n").unwrap();
        git(root, &["add", "committed.txt"]);
        git(root, &["commit", "-q", "-m", "initial"]);
        git(root, &["add", "staged.txt"]);
        std::fs::write(root.join("committed.txt"), "changed, not committed\n").unwrap();
        std::fs::write(root.join("untracked.txt"), "untracked\n").unwrap();
        // A work-tree file with a record's name, to show records are not written there.
        std::fs::create_dir(root.join("targets")).unwrap();
        std::fs::write(root.join("targets/acme.yaml"), "mine\n").unwrap();

        let before = (
            git(root, &["status", "--porcelain=v1", "-uall"]),
            git(root, &["symbolic-ref", "HEAD"]),
            git(root, &["rev-parse", "HEAD"]),
            std::fs::read(root.join(".git/index")).unwrap(),
        );
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        for version in ["1.2.0", "2.0.0"] {
            let mut batch = Batch::new();
            batch.upsert_target("acme", target("billing", version));
            batch.outcome(finished("acme", None, version, Outcome::Succeeded));
            writer.commit(&batch, now()).unwrap().unwrap();
        }
        let after = (
            git(root, &["status", "--porcelain=v1", "-uall"]),
            git(root, &["symbolic-ref", "HEAD"]),
            git(root, &["rev-parse", "HEAD"]),
            std::fs::read(root.join(".git/index")).unwrap(),
        );
        assert_eq!(before, after);
        assert_eq!(after.1, "refs/heads/main\n");
        assert_eq!(
            std::fs::read_to_string(root.join("targets/acme.yaml")).unwrap(),
            "mine\n"
        );
        assert_eq!(git(root, &["rev-list", "--count", BRANCH]), "2\n");
        assert!(git(root, &["show", &format!("{BRANCH}:targets/acme.yaml")]).contains("version: \"2.0.0\""));
    }

    #[test]
    fn changing_one_of_a_thousand_targets_reuses_the_other_blobs() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        for i in 0..1000 {
            batch.upsert_target(format!("t{i:04}"), target("billing", "1.2.0"));
        }
        batch.upsert_rollout(rollout());
        let first = writer.commit(&batch, now()).unwrap().unwrap();
        let mut batch = Batch::new();
        batch.upsert_target("t0500", target("billing", "2.0.0"));
        let second = writer.commit(&batch, now()).unwrap().unwrap();

        let entries = |commit: Oid, dir: &str| -> BTreeMap<String, Oid> {
            let tree = repo.find_commit(commit).unwrap().tree().unwrap();
            let sub = repo.find_tree(tree.get_name(dir).unwrap().id()).unwrap();
            sub.iter().map(|e| (e.name().unwrap().to_string(), e.id())).collect()
        };
        let (before, after) = (entries(first, TARGETS_DIR), entries(second, TARGETS_DIR));
        assert_eq!(after.len(), 1000);
        let changed: Vec<_> = after
            .iter()
            .filter(|(name, oid)| before[*name] != **oid)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(changed, ["t0500.yaml"]);
        let dir_id = |commit: Oid, dir: &str| {
            repo.find_commit(commit)
                .unwrap()
                .tree()
                .unwrap()
                .get_name(dir)
                .unwrap()
                .id()
        };
        assert_eq!(dir_id(first, ROLLOUTS_DIR), dir_id(second, ROLLOUTS_DIR));
        assert_ne!(dir_id(first, TARGETS_DIR), dir_id(second, TARGETS_DIR));
    }

    /// Regression: a first version built large commits in an in-memory repository and wrote
    /// them without their parent (libgit2 silently drops parents owned by another repository).
    #[test]
    fn a_large_batch_packs_its_records_and_keeps_its_parent() {
        let (dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut first = Batch::new();
        first.upsert_target("acme", target("billing", "1.2.0"));
        let first = writer.commit(&first, now()).unwrap().unwrap();

        let mut batch = Batch::new();
        for i in 0..PACK_THRESHOLD {
            batch.upsert_target(format!("t{i:04}"), target("billing", &format!("1.{i}.0")));
            batch.outcome(finished(
                &format!("t{i:04}"),
                Some("1.0.0"),
                &format!("1.{i}.0"),
                Outcome::Succeeded,
            ));
        }
        let packs_before = git(dir.path(), &["count-objects", "-v"]);
        let second = writer.commit(&batch, now()).unwrap().unwrap();
        let packs_after = git(dir.path(), &["count-objects", "-v"]);

        assert_eq!(
            repo.find_commit(second).unwrap().parent_ids().collect::<Vec<_>>(),
            [first]
        );
        assert!(packs_before.contains("packs: 0\n"), "{packs_before}");
        assert!(packs_after.contains("packs: 1\n"), "{packs_after}");
        // The new records only; the trees and the commit are loose.
        assert!(
            packs_after.contains(&format!("in-pack: {PACK_THRESHOLD}\n")),
            "{packs_after}"
        );
        git(dir.path(), &["fsck", "--strict", "--no-dangling"]);
        let state = read_recorded(&repo, BRANCH).unwrap();
        assert_eq!(state.targets.len(), PACK_THRESHOLD + 1);
        assert_eq!(state.targets["t0031"], target("billing", "1.31.0"));
        assert_eq!(
            crate::state::read_history(&repo, BRANCH, None).unwrap().len(),
            PACK_THRESHOLD
        );
    }

    #[test]
    fn files_gantry_does_not_know_are_kept() {
        let (_dir, repo) = temp_repo();
        hand_commit(
            &repo,
            &[("README.md", "state branch\n"), ("targets/notes.txt", "hi\n")],
            "add readme",
        );
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let commit = StateWriter::open(&repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap();
        assert_eq!(blob_text(&repo, commit, "README.md"), "state branch\n");
        assert_eq!(blob_text(&repo, commit, "targets/notes.txt"), "hi\n");
        assert_eq!(read_recorded(&repo, BRANCH).unwrap().targets.len(), 1);
    }

    #[test]
    fn deleting_records_removes_files_and_empty_directories() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        batch
            .upsert_target("acme", target("billing", "1.2.0"))
            .upsert_target("zen", target("billing", "1.2.0"));
        batch.upsert_rollout(rollout());
        writer.commit(&batch, now()).unwrap().unwrap();

        let mut batch = Batch::new();
        batch.delete_target("acme").delete_target("never-existed");
        batch.delete_rollout("billing", v("2.0.0-rc.1+build.5"));
        let commit = writer.commit(&batch, now()).unwrap().unwrap();
        let state = read_recorded(&repo, BRANCH).unwrap();
        assert_eq!(state.targets.keys().collect::<Vec<_>>(), ["zen"]);
        assert!(state.rollouts.is_empty());
        assert!(
            repo.find_commit(commit)
                .unwrap()
                .tree()
                .unwrap()
                .get_name(ROLLOUTS_DIR)
                .is_none()
        );

        let mut batch = Batch::new();
        batch.delete_target("zen");
        let commit = writer.commit(&batch, now()).unwrap().unwrap();
        assert!(repo.find_commit(commit).unwrap().tree().unwrap().is_empty());
    }

    #[test]
    fn nothing_to_record_makes_no_commit() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        assert_eq!(writer.commit(&Batch::new(), now()).unwrap(), None);
        let mut deletes_only = Batch::new();
        deletes_only.delete_target("acme");
        assert_eq!(writer.commit(&deletes_only, now()).unwrap(), None);
        assert_eq!(state_tip(&repo, BRANCH).unwrap(), None);

        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let first = writer.commit(&batch, now()).unwrap().unwrap();
        // Writing the same record again changes nothing.
        assert_eq!(writer.commit(&batch, now()).unwrap(), None);
        // An outcome is always recorded, even with no file change.
        let mut outcome_only = Batch::new();
        outcome_only.outcome(finished("acme", Some("1.2.0"), "1.2.0", Outcome::Failed));
        let second = writer.commit(&outcome_only, now()).unwrap().unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn a_branch_moved_by_someone_else_is_not_overwritten() {
        let (_dir, repo) = temp_repo();
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let first = StateWriter::open(&repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap();

        let mut ours = StateWriter::open(&repo, BRANCH).unwrap();
        let theirs = hand_commit(
            &repo,
            &[("targets/zen.yaml", "component: billing\nstatus: converged\n")],
            "theirs",
        );
        batch.upsert_target("acme", target("billing", "2.0.0"));
        match ours.commit(&batch, now()) {
            Err(StateError::Moved {
                branch,
                expected,
                found,
            }) => {
                assert_eq!((branch.as_str(), expected, found), (BRANCH, Some(first), Some(theirs)));
            }
            other => panic!("expected Moved, got {other:?}"),
        }
        assert_eq!(state_tip(&repo, BRANCH).unwrap(), Some(theirs));
        assert_eq!(ours.tip(), Some(first));

        // A writer on top of state read before the move is refused too.
        let stale = RecordedState {
            commit: Some(first.to_string()),
            ..RecordedState::default()
        };
        let err = StateWriter::on_top_of(&repo, BRANCH, &stale)
            .unwrap()
            .commit(&batch, now())
            .unwrap_err();
        assert!(err.to_string().starts_with(&format!(
            "state branch gantry/state moved: expected it at {first}, found it at {theirs}"
        )));
    }

    #[test]
    fn a_branch_deleted_by_someone_else_is_not_recreated() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        let first = writer.commit(&batch, now()).unwrap().unwrap();
        repo.find_reference(&branch_ref(BRANCH).unwrap())
            .unwrap()
            .delete()
            .unwrap();
        batch.upsert_target("acme", target("billing", "2.0.0"));
        match writer.commit(&batch, now()) {
            Err(StateError::Moved { expected, found, .. }) => assert_eq!((expected, found), (Some(first), None)),
            other => panic!("expected Moved, got {other:?}"),
        }
        assert_eq!(state_tip(&repo, BRANCH).unwrap(), None);
    }

    #[test]
    fn a_branch_created_by_someone_else_is_not_overwritten() {
        let (_dir, repo) = temp_repo();
        let mut ours = StateWriter::open(&repo, BRANCH).unwrap();
        let theirs = hand_commit(&repo, &[("README.md", "x\n")], "theirs");
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        match ours.commit(&batch, now()) {
            Err(StateError::Moved {
                expected: None,
                found: Some(found),
                ..
            }) => assert_eq!(found, theirs),
            other => panic!("expected Moved, got {other:?}"),
        }
    }

    #[test]
    fn hand_edited_records_are_errors_naming_path_line_and_column() {
        let cases = [
            (
                "targets/acme.yaml",
                "component: billing\nstatus: converged\nbogus: 1\n",
                ":3:1: unknown field `bogus`",
            ),
            (
                "targets/acme.yaml",
                "component: billing\nstatus: [converged\n",
                "targets/acme.yaml:2:9:",
            ),
            (
                "targets/acme.yaml",
                "component: \"billing\nstatus: converged\n",
                "targets/acme.yaml:2:1: invalid indentation",
            ),
            (
                "targets/acme.yaml",
                "component: billing\n\tstatus: converged\n",
                "targets/acme.yaml:1:12: while scanning a plain scalar, found a tab",
            ),
            ("targets/acme.yaml", "{{{{\n", "targets/acme.yaml:1:"),
            (
                "targets/acme.yaml",
                "component: billing\nstatus: sleeping\n",
                ":2:9: unknown variant `sleeping`",
            ),
            (
                "targets/acme.yaml",
                "component: billing\nversion: 2.0\nstatus: converged\n",
                "targets/acme.yaml:2:",
            ),
            (
                "rollouts/billing@2.0.0.yaml",
                "component: billing\nversion: 2.0.0\nstarted: x\nwaves: 3\n",
                ":4:8:",
            ),
        ];
        for (path, text, expected) in cases {
            let (_dir, repo) = temp_repo();
            let commit = hand_commit(&repo, &[(path, text)], "hand edit");
            let err = read_recorded(&repo, BRANCH).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, StateError::Parse { .. }), "{path} {text:?}: {message}");
            assert!(message.starts_with(&format!("gantry/state:{path}:")), "{message}");
            assert!(message.contains(expected), "{text:?}: {message} lacks {expected:?}");
            assert!(message.contains(&commit.to_string()), "{message}");
            assert!(
                message.ends_with("edited by hand: fix or revert that commit"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_rollout_in_the_wrong_file_is_an_error() {
        let (_dir, repo) = temp_repo();
        hand_commit(
            &repo,
            &[(
                "rollouts/billing@1.0.0.yaml",
                "component: billing\nversion: 2.0.0\nstarted: x\n",
            )],
            "x",
        );
        let err = read_recorded(&repo, BRANCH).unwrap_err();
        assert!(matches!(err, StateError::Layout { .. }), "{err}");
        assert!(err.to_string().contains("rollouts/billing@1.0.0.yaml: holds the rollout of billing@2.0.0, whose record belongs in rollouts/billing@2.0.0.yaml"), "{err}");
    }

    #[test]
    fn names_that_cannot_be_file_names_are_refused() {
        let (_dir, repo) = temp_repo();
        for name in ["", "../escape", "a/b", ".hidden", "sp ace"] {
            let mut batch = Batch::new();
            batch.upsert_target(name, target("billing", "1.2.0"));
            let err = StateWriter::open(&repo, BRANCH)
                .unwrap()
                .commit(&batch, now())
                .unwrap_err();
            assert!(
                matches!(err, StateError::InvalidName { kind: "target", .. }),
                "{name:?}: {err}"
            );
        }
        let mut batch = Batch::new();
        let mut bad = finished("acme", None, "1.0.0", Outcome::Succeeded);
        bad.desired_commit = "HEAD\nGantry-Outcome: succeeded".to_string();
        batch.outcome(bad);
        assert!(StateWriter::open(&repo, BRANCH).unwrap().commit(&batch, now()).is_err());
        assert_eq!(state_tip(&repo, BRANCH).unwrap(), None);
        assert!(matches!(
            branch_ref("bad..name"),
            Err(StateError::InvalidBranchName { .. })
        ));
    }

    #[test]
    fn commit_messages() {
        let single = {
            let mut batch = Batch::new();
            batch.outcome(finished("acme", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
            commit_message(&batch)
        };
        insta::assert_snapshot!("message_single_outcome", single);

        let install = {
            let mut batch = Batch::new();
            let mut outcome = finished("acme", None, "2.0.0", Outcome::Failed);
            outcome.message = "deploy failed:\n  exit status 3\n".to_string();
            batch.outcome(outcome);
            commit_message(&batch)
        };
        insta::assert_snapshot!("message_install_with_reason", install);

        let several = {
            let mut batch = Batch::new();
            batch.outcome(finished("acme", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
            batch.outcome(finished("zen", Some("1.2.0"), "2.0.0", Outcome::RolledBack));
            batch.outcome(finished("umbrella", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
            commit_message(&batch)
        };
        insta::assert_snapshot!("message_several_outcomes", several);

        let mut progress = Batch::new();
        progress.upsert_rollout(rollout());
        assert_eq!(commit_message(&progress), "gantry: record progress\n");
        progress.progress_summary("gantry: billing@2.0.0 wave canary\ncompleted");
        assert_eq!(
            commit_message(&progress),
            "gantry: billing@2.0.0 wave canary completed\n"
        );
    }

    #[test]
    fn git_reads_the_trailers_gantry_writes() {
        let mut batch = Batch::new();
        batch.outcome(finished("acme", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
        let mut second = finished("zen", None, "2.0.0", Outcome::RolledBack);
        second.message = "health check http failed".to_string();
        batch.outcome(second);
        let message = commit_message(&batch);
        let mut child = Command::new("git")
            .args(["interpret-trailers", "--parse"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
        let parsed = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let trailer_block = message.split("\n\n").last().unwrap();
        assert_eq!(parsed, trailer_block);
        assert_eq!(parsed.lines().filter(|l| l.starts_with("Gantry-Target: ")).count(), 2);
    }
}
