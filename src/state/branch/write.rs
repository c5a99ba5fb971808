//! Writing the state branch: a [`Batch`] of record changes and finished attempts becomes one
//! commit on top of the previous tip, made in the object database only.

use std::collections::BTreeMap;
use std::io::Write as _;

use git2::{ErrorCode, ObjectType, Oid, Repository, Signature, Tree};
use serde::Serialize;

use crate::state::record::{Outcome, RecordedState, RolloutRecord, TargetRecord};
use crate::state::{StateError, valid_record_name};

use super::message::commit_message;
use super::{
    BLOB_MODE, PACK_THRESHOLD, RECORD_EXT, ROLLOUTS_DIR, TARGETS_DIR, TREE_MODE, branch_ref, git_error, state_tip,
};

/// One finished target attempt, as recorded in a state commit's message and trailers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub target: String,
    pub component: String,
    /// The version the attempt started from; `None` for an install.
    pub from: Option<crate::manifest::Version>,
    pub to: crate::manifest::Version,
    pub outcome: Outcome,
    /// The desired-branch commit the attempt reconciled.
    pub desired_commit: String,
    /// The attempt id.
    pub attempt: String,
    /// Why it ended this way (one line is kept; may be empty).
    pub message: String,
    /// The reason of the emergency release it moved to (issue #16): trailers
    /// `Gantry-Urgency: emergency` and `Gantry-Reason`.
    pub emergency: Option<String>,
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
            emergency: attempt.emergency.clone(),
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
    pub(super) targets: BTreeMap<String, Option<TargetRecord>>,
    pub(super) rollouts: BTreeMap<(String, crate::manifest::Version), Option<RolloutRecord>>,
    pub(super) outcomes: Vec<FinishedAttempt>,
    pub(super) progress_summary: Option<String>,
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
    pub fn delete_rollout(&mut self, component: impl Into<String>, version: crate::manifest::Version) -> &mut Self {
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
    /// Objects and the reference are fsynced when the process enabled libgit2's
    /// `GIT_OPT_ENABLE_FSYNC_GITDIR` ([`super::durability::enable_fsync`], done by the gantry
    /// binary's `main`): then a commit this returns survives a power cut, and the journal entry
    /// it records may be removed. Without it (library use), only a killed process is survived.
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
        // The commit is recorded whatever happens to the pin: failing here would make the
        // caller believe the outcome was lost. A pin left behind only re-verifies more later.
        if let Err(e) = crate::state::signing::wrote(self.repo, &self.branch, self.tip, commit) {
            tracing::warn!(branch = %self.branch, "state commit {commit} not pinned as verified: {e}");
        }
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
        // Signed with the reconciler's key when one is configured (issue #18).
        let commit = crate::state::signing::commit(self.repo, &signature, &signature, &message, &tree, &parents)
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
        // Named by its trailing checksum, as libgit2's indexer names a pack; listed for
        // housekeeping to fold, so these packs do not pile up.
        let trailer = bytes.len().checked_sub(20).map(|at| &bytes[at..]);
        let name = trailer.map(|sum| format!("pack-{}", crate::hex::encode(sum)));
        match name {
            Some(name)
                if self
                    .repo
                    .path()
                    .join("objects/pack")
                    .join(format!("{name}.idx"))
                    .exists() =>
            {
                if let Err(e) = crate::state::housekeeping::keep_as_ours(self.repo.path(), &name) {
                    tracing::warn!("the pack of records {name} is not listed for housekeeping: {e}");
                }
            }
            _ => tracing::warn!("the pack of records just written was not found; housekeeping will not fold it"),
        }
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

pub(super) fn validate_batch(batch: &Batch) -> Result<(), StateError> {
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

pub(super) fn check_name(kind: &'static str, name: &str) -> Result<(), StateError> {
    valid_record_name(name).map_err(|reason| StateError::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    })
}

/// YAML text of a record: fields in declaration order, ending in a newline.
pub(super) fn to_yaml<T: Serialize>(path: &str, value: &T) -> Result<String, StateError> {
    let mut text = serde_saphyr::to_string(value).map_err(|source| StateError::Serialize {
        path: path.to_string(),
        source,
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
