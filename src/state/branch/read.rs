//! Reading the state branch: its tip parsed into a [`RecordedState`], records reused by blob id
//! across reads ([`RecordCache`]), the last read's whole state returned again while the tip is
//! unchanged ([`read_recorded_shared`]), and parsed on several threads for large fleets.

use foldhash::HashMap;
use std::sync::Arc;

use git2::{ObjectType, Oid, Repository, Tree};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::StateError;
use crate::state::record::{RecordedState, RolloutRecord, TargetRecord};

use super::{RECORD_EXT, ROLLOUTS_DIR, TARGETS_DIR, git_error, state_tip};

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
/// - [`StateError::Git`] when the repository cannot be read;
/// - [`StateError::UntrustedCommit`] / [`StateError::Rewritten`] when state signing is on and
///   the branch does not verify (`state::signing`).
pub fn read_recorded(repo: &Repository, state_branch: &str) -> Result<RecordedState, StateError> {
    read_recorded_shared(repo, state_branch).map(Arc::unwrap_or_clone)
}

/// [`read_recorded`], shared: with the process cache on (the daemon), a read at the tip the
/// previous read found returns that read's state itself, without walking the tree again (issue
/// #17: a daemon pass after a desired commit reads an unchanged state branch, and walking it and
/// copying 10,000 records again took about as long as loading the commit beside it, on the other
/// core). The caller changes its own copy only
/// (`Arc::make_mut`): the cache's is never written through. Exact, since a commit id is the hash
/// of its whole tree; the branch is still verified (state signing) on every read, and errors are
/// never cached.
///
/// # Errors
/// As [`read_recorded`].
pub fn read_recorded_shared(repo: &Repository, state_branch: &str) -> Result<Arc<RecordedState>, StateError> {
    let _stage = tracing::debug_span!("state.read_recorded").entered();
    let Some(shared) = PROCESS_CACHE.get() else {
        // One read, nothing kept for another (a command line run).
        return read_with(repo, state_branch, &mut RecordCache::keeping_nothing());
    };
    // Taken out for the read: a concurrent reader (an HTTP handler) reads without it rather
    // than wait, and whichever read ends last leaves its records for the next.
    let mut cache = std::mem::take(&mut *shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let read = read_with(repo, state_branch, &mut cache);
    if read.is_err() {
        cache = RecordCache::default();
    }
    *shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = cache;
    read
}

/// The process's [`RecordCache`] behind [`read_recorded`], once [`enable_process_cache`] ran.
static PROCESS_CACHE: std::sync::OnceLock<std::sync::Mutex<RecordCache>> = std::sync::OnceLock::new();

/// Makes [`read_recorded`] reuse the records of this process's previous read by blob id (the
/// daemon reads the state branch several times a pass; after a pass only the records it wrote
/// are new: issue #17). Exact, since a record's parse depends on its bytes only (a blob id is
/// their hash) and errors are never cached; bounded, since the cache holds the records of the
/// last read only (and that read's whole state, returned again while the tip is unchanged: see
/// [`read_recorded_shared`]). A CLI run reads the branch once or twice and does not enable it.
pub fn enable_process_cache() {
    PROCESS_CACHE.get_or_init(Default::default);
}

/// Parsed records from the previous read, by blob id. Git stores an unchanged record as the same
/// blob, so a daemon that keeps one cache across reconciles parses only the records that changed.
/// The cache holds the records of the last read only.
#[derive(Debug, Default)]
pub struct RecordCache {
    pub(super) targets: HashMap<Oid, TargetRecord>,
    pub(super) rollouts: HashMap<Oid, RolloutRecord>,
    /// The state the last read returned, and the tip it read it at.
    pub(super) last: Option<(Oid, Arc<RecordedState>)>,
    /// Set for a single read: nothing is copied in to be thrown away with the cache (issue
    /// #17: a cold `gantry plan` copied its 10,000 records once more for nothing).
    keep_nothing: bool,
}

impl RecordCache {
    /// A cache for one read that keeps nothing (every record parsed, none copied).
    pub(super) fn keeping_nothing() -> RecordCache {
        RecordCache {
            keep_nothing: true,
            ..RecordCache::default()
        }
    }
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
    let read = read_with(repo, state_branch, cache);
    if read.is_err() {
        *cache = RecordCache::default();
    }
    read.map(Arc::unwrap_or_clone)
}

/// [`read_recorded_cached`], leaving `cache` as it may be after an error.
pub(super) fn read_with(
    repo: &Repository,
    state_branch: &str,
    cache: &mut RecordCache,
) -> Result<Arc<RecordedState>, StateError> {
    // With state signing on, nothing is read from a branch that does not verify (issue #18),
    // even at a tip read before.
    crate::state::signing::verify_branch(repo, state_branch)?;
    let Some(tip) = state_tip(repo, state_branch)? else {
        *cache = RecordCache {
            keep_nothing: cache.keep_nothing,
            ..RecordCache::default()
        };
        return Ok(Arc::default());
    };
    if let Some((read_at, state)) = &cache.last
        && *read_at == tip
    {
        return Ok(Arc::clone(state));
    }
    // Dropped first: a read that fails leaves no state of another tip behind.
    cache.last = None;
    // A command line run: the previous run's state, if it read this same tip.
    let on_disk = cache.keep_nothing;
    if on_disk && let Some(state) = super::state_cache::load(repo.path(), tip) {
        return Ok(Arc::new(state));
    }
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

    let keep = !cache.keep_nothing;
    let targets = reader.read_dir(&tree, TARGETS_DIR, &mut cache.targets, keep)?;
    let rollouts = reader.read_dir(&tree, ROLLOUTS_DIR, &mut cache.rollouts, keep)?;

    let mut state = RecordedState {
        commit: Some(tip.to_string()),
        ..RecordedState::default()
    };
    // In name order already: collected in bulk rather than inserted one by one.
    state.targets = targets.into_iter().collect();
    for (name, record) in rollouts {
        let path = format!("{ROLLOUTS_DIR}/{name}{RECORD_EXT}");
        let expected = RolloutRecord::path(&record.component, &record.version);
        if expected != path {
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
            .insert((record.component.clone(), record.version.clone()), record);
    }
    if on_disk {
        super::state_cache::store(repo.path(), tip, &state);
    }
    let state = Arc::new(state);
    if keep {
        cache.last = Some((tip, Arc::clone(&state)));
    }
    Ok(state)
}

/// Records below this many are parsed on the calling thread: a thread costs more than that.
const RECORDS_PER_THREAD: usize = 256;

/// Reads records out of one commit of the state branch, with errors that point into it.
pub(super) struct RecordReader<'r> {
    repo: &'r Repository,
    branch: &'r str,
    commit: Oid,
}

impl RecordReader<'_> {
    /// `(name without .yaml, record)` for every record in directory `dir` of `tree`, in name
    /// order, cloned from `cached` when its blob was parsed before (one copy per record: the
    /// cache keeps its own). `cached` is left holding the records of this read only (none
    /// unless `keep`).
    fn read_dir<T>(
        &self,
        tree: &Tree<'_>,
        dir: &str,
        cached: &mut HashMap<Oid, T>,
        keep: bool,
    ) -> Result<Vec<(String, T)>, StateError>
    where
        T: DeserializeOwned + Serialize + Clone + Send,
    {
        let Some(entry) = tree.get_name(dir) else {
            cached.clear();
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
        drop(blobs);
        let _parse = tracing::debug_span!("state.parse_records").entered();
        for (index, record) in self.parse_all::<T>(&to_parse)? {
            if keep {
                cached.insert(records[index].1, record.clone());
            }
            records[index].2 = Some(record);
        }
        if keep {
            let read: foldhash::HashSet<Oid> = records.iter().map(|(_, blob, _)| *blob).collect();
            cached.retain(|blob, _| read.contains(blob));
        }
        Ok(records
            .into_iter()
            .map(|(name, _, record)| {
                (
                    name,
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
        let threads = crate::manifest::parallel::cores().min(texts.len() / RECORDS_PER_THREAD);
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

pub(super) fn parse_record<T: DeserializeOwned + Serialize>(
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
pub(super) fn fast_record<T: DeserializeOwned + Serialize>(text: &str) -> Option<T> {
    use crate::manifest::document::{FastYaml, fast_yaml_single};
    static OPTIONS: std::sync::OnceLock<FastYaml> = std::sync::OnceLock::new();
    let node = fast_yaml_single(text, OPTIONS.get_or_init(FastYaml::defaults))?;
    let json = node.to_json();
    let record: T = T::deserialize(&json).ok()?;
    (serde_json::to_value(&record).ok()? == json).then_some(record)
}

/// serde-saphyr's message without the position (which [`StateError::Parse`] prints itself) and
/// without its source snippet.
pub(super) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = match text.find(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines().next().unwrap_or("invalid YAML").trim().to_string()
}
