//! A cache of the approvals history walk (`source::history`): for a head commit, the commit that
//! settled each name's value. It depends only on commit ids (history below a commit never
//! changes), so it is kept in memory for the life of the process (the daemon) and in
//! `.git/gantry/cache/walk`, and a walk from a new head stops at the first commit the cache
//! knows (issue #12 item 8: `status` with 10,000 commits of history took 2–4 s).
//!
//! # Guarantees
//! - **Keys are commit ids**: an entry says "from head H, name N with value V was settled at
//!   commit S". A new commit, a new approval or a rewritten branch is a new head, so it never
//!   finds a stale entry; it reuses entries of older commits only below the point where its own
//!   walk proved the name unchanged (see `history::settling_commits`).
//! - **Only walks worth not repeating are stored**: a first walk, a long one, one that met a
//!   wrong entry under its own head, and a short one walked for the same head a second time; a
//!   short walk from a descendant of a stored head is otherwise repeated by the next walk
//!   (`history::WalkWork`), which costs less than storing every name again.
//! - **Never trusted over the repository**: an entry whose settling commit is not in the object
//!   database is ignored, and the walk goes on as without a cache.
//! - **Corruption is a miss**: the file carries a SHA-256 of its body; a file that is torn,
//!   edited, of another format version or unreadable is ignored (and replaced by the next
//!   write), never an error.
//! - **Concurrent readers and writers**: a write goes to a temporary file in the same
//!   directory and is renamed over the old one, so a reader sees one whole version or the
//!   other; two writers race only about which of two valid files stays.
//! - **Bounded**: at most [`MAX_HEADS`] heads per kind of walk (the most recent), and the file
//!   is not written when its body would exceed [`MAX_FILE_BYTES`].

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use git2::Oid;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Heads kept per kind of walk: the daemon's last few desired commits (and `status --rev`).
pub const MAX_HEADS: usize = 8;
/// Unstored walks remembered per process (see [`WalkCache::walked_unstored_before`]).
pub const MAX_UNSTORED: usize = 16;
/// The cache file is not written past this size (a fleet of ~50,000 names at 8 heads).
pub const MAX_FILE_BYTES: usize = 32 << 20;
/// No cache file is read past this size (the state cache's bound, the largest of them, and its
/// header).
pub(crate) const MAX_CACHE_FILE_BYTES: usize = 65 << 20;
/// The first line of the file, before the digest of the body.
const MAGIC: &str = "gantry-walk-cache v1";

/// What one head's walk settled: name → (its value at the head, the settling commit), in name
/// order, each name once.
///
/// A sorted list, not a hash map (issue #17): a walk looks up every wanted name, 10,000 of them
/// in name order, and a hash map sent each lookup to another place in memory (three waits on
/// memory per name: the slot, the name, the value), while a list read in order is read ahead by
/// the processor. Looked up with a [`SettledCursor`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    by_name: Vec<(String, (String, Oid))>,
}

impl Settled {
    /// Nothing settled.
    pub fn new() -> Settled {
        Settled::default()
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every name with its value and settling commit, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &(String, Oid))> {
        self.by_name.iter().map(|(name, settled)| (name, settled))
    }

    /// What `name` settled at, if known (by bisection; many names in order: [`Self::cursor`]).
    pub fn get(&self, name: &str) -> Option<&(String, Oid)> {
        let at = self.by_name.partition_point(|(n, _)| n.as_str() < name);
        self.by_name
            .get(at)
            .filter(|(n, _)| n == name)
            .map(|(_, settled)| settled)
    }

    /// A lookup that steps forward through the names while they are asked for in order.
    pub fn cursor(&self) -> SettledCursor<'_> {
        SettledCursor { settled: self, next: 0 }
    }

    /// Adds every name of `older` this one does not have (its own entries are newer).
    fn keep_missing(&mut self, older: Settled) {
        let mut cursor = 0;
        let mut missing = Vec::new();
        for (name, value) in older.by_name {
            while self.by_name.get(cursor).is_some_and(|(n, _)| *n < name) {
                cursor += 1;
            }
            if self.by_name.get(cursor).is_none_or(|(n, _)| *n != name) {
                missing.push((name, value));
            }
        }
        if !missing.is_empty() {
            self.by_name.append(&mut missing);
            self.by_name.sort_by(|(a, _), (b, _)| a.cmp(b));
        }
    }
}

/// Built from any order; of two entries of one name the last wins, as inserting into a map.
impl FromIterator<(String, (String, Oid))> for Settled {
    fn from_iter<I: IntoIterator<Item = (String, (String, Oid))>>(entries: I) -> Settled {
        let mut by_name: Vec<(String, (String, Oid))> = entries.into_iter().collect();
        // Stable: entries of one name stay in the order given.
        if !by_name.is_sorted_by(|(a, _), (b, _)| a < b) {
            by_name.sort_by(|(a, _), (b, _)| a.cmp(b));
            let mut kept: Vec<(String, (String, Oid))> = Vec::with_capacity(by_name.len());
            for entry in by_name {
                match kept.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => kept.push(entry),
                }
            }
            by_name = kept;
        }
        Settled { by_name }
    }
}

/// Lookups in a [`Settled`]: a name after the last one asked for is found by stepping forward
/// from it; any other by bisection.
pub struct SettledCursor<'a> {
    settled: &'a Settled,
    /// Where the names after the last one asked for begin.
    next: usize,
}

impl<'a> SettledCursor<'a> {
    /// Asks for the name and value `ahead` entries past the cursor to be brought into the cache,
    /// for a lookup a few names on when the names asked for are about those held (see
    /// [`crate::prefetch`]; otherwise the hint is wasted).
    pub fn fetch_ahead(&self, ahead: usize) {
        if let Some((name, (value, _))) = self.settled.by_name.get(self.next + ahead) {
            crate::prefetch::fetch_bytes(name.as_ptr(), name.len());
            crate::prefetch::fetch_bytes(value.as_ptr(), value.len());
        }
    }

    /// What `name` settled at, if known.
    pub fn find(&mut self, name: &str) -> Option<&'a (String, Oid)> {
        let names = &self.settled.by_name;
        let after_last = self.next == 0 || names[self.next - 1].0.as_str() < name;
        let at = if after_last {
            let ahead = &names[self.next..];
            self.next
                + ahead
                    .iter()
                    .position(|(n, _)| n.as_str() >= name)
                    .unwrap_or(ahead.len())
        } else {
            names.partition_point(|(n, _)| n.as_str() < name)
        };
        match names.get(at) {
            Some((n, settled)) if n == name => {
                self.next = at + 1;
                Some(settled)
            }
            _ => {
                self.next = at;
                None
            }
        }
    }
}

/// The entries of one repository, most recent head last. Shared (`Arc`): every walk loads the
/// process's copy and a store snapshots it for the file, and a 10,000-target fleet has 10,000
/// names per entry (issue #17: copying them was a third of a daemon re-plan's evidence).
#[derive(Debug, Default, Clone)]
pub struct WalkCache {
    entries: Vec<Arc<Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: String,
    head: Oid,
    settled: Settled,
}

/// The file's body (JSON), as read (written by `write_file` from borrowed entries).
#[derive(Deserialize)]
struct FileBody {
    entries: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct FileEntry {
    kind: String,
    head: String,
    /// name → [value, settling commit]
    settled: BTreeMap<String, (String, String)>,
}

/// Every repository's cache in this process, by git directory.
fn memory() -> &'static Mutex<HashMap<PathBuf, WalkCache>> {
    static MEMORY: OnceLock<Mutex<HashMap<PathBuf, WalkCache>>> = OnceLock::new();
    MEMORY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cache file of the repository whose git directory is `git_dir`.
pub fn file_path(git_dir: &Path) -> PathBuf {
    git_dir.join("gantry").join("cache").join("walk")
}

impl WalkCache {
    /// The cache of the repository at `git_dir`: this process's copy, or the file's (an empty
    /// cache when there is none or it is unusable).
    pub fn load(git_dir: &Path) -> WalkCache {
        if let Some(cache) = lock(memory()).get(git_dir) {
            return cache.clone();
        }
        let cache = read_file(&file_path(git_dir)).unwrap_or_default();
        lock(memory()).insert(git_dir.to_path_buf(), cache.clone());
        cache
    }

    /// What the walk of kind `kind` from `head` settled, if known.
    pub fn get(&self, kind: &str, head: Oid) -> Option<&Settled> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.kind == kind && e.head == head)
            .map(|e| &e.settled)
    }

    /// Whether an entry of the walk of kind `kind` exists.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.entries.iter().any(|e| e.kind == kind)
    }

    /// Whether any entry exists at all (a walk without one need not look at every commit).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds what a walk from `head` settled (merged with what was known of that head), keeps
    /// the [`MAX_HEADS`] most recent heads of `kind`, and saves: in this process, and in the
    /// file (best effort: a cache that cannot be written only costs time, so the failure is
    /// logged, never returned).
    pub fn store(git_dir: &Path, kind: &str, head: Oid, settled: Settled) {
        let mut all = lock(memory());
        let cache = all
            .entry(git_dir.to_path_buf())
            .or_insert_with(|| read_file(&file_path(git_dir)).unwrap_or_default());
        let mut merged = settled;
        if let Some(at) = cache.entries.iter().position(|e| e.kind == kind && e.head == head) {
            let old = Arc::unwrap_or_clone(cache.entries.remove(at));
            merged.keep_missing(old.settled);
        }
        cache.entries.push(Arc::new(Entry {
            kind: kind.to_string(),
            head,
            settled: merged,
        }));
        let of_kind = cache.entries.iter().filter(|e| e.kind == kind).count();
        let mut excess = of_kind.saturating_sub(MAX_HEADS);
        cache.entries.retain(|e| {
            let old = excess > 0 && e.kind == kind;
            if old {
                excess -= 1;
            }
            !old
        });
        let snapshot = cache.clone();
        drop(all);
        let path = file_path(git_dir);
        super::cache_writer::save(path.clone(), move || {
            if let Err(e) = write_file(&path, &snapshot) {
                tracing::debug!("history walk cache not saved ({e}); the next walk reads history again");
            }
        });
    }

    /// Whether a walk of kind `kind` from `head` in `git_dir` ran before in this process without
    /// storing its result; notes that this one did. Remembers the last [`MAX_UNSTORED`] such
    /// walks (a short walk is not stored, but one repeated for the same head is: the daemon's
    /// passes at an unchanged head would otherwise repeat it on every pass).
    pub fn walked_unstored_before(git_dir: &Path, kind: &str, head: Oid) -> bool {
        static UNSTORED: OnceLock<Mutex<std::collections::VecDeque<(PathBuf, String, Oid)>>> = OnceLock::new();
        let mut walks = lock(UNSTORED.get_or_init(Default::default));
        if walks.iter().any(|(g, k, h)| *h == head && k == kind && g == git_dir) {
            return true;
        }
        if walks.len() == MAX_UNSTORED {
            walks.pop_front();
        }
        walks.push_back((git_dir.to_path_buf(), kind.to_string(), head));
        false
    }

    /// Forgets this process's copy of `git_dir`'s cache (tests: the next load reads the file).
    pub fn forget(git_dir: &Path) {
        lock(memory()).remove(git_dir);
    }
}

/// Reads the cache file; `None` when it is absent, torn, forged or of another version.
fn read_file(path: &Path) -> Option<WalkCache> {
    let body = read_digested(path, MAGIC)?;
    let body: FileBody = serde_json::from_str(&body).ok()?;
    let mut entries = Vec::with_capacity(body.entries.len());
    for e in body.entries {
        // In name order already (a sorted map): taken as it comes.
        let mut by_name = Vec::with_capacity(e.settled.len());
        for (name, (value, commit)) in e.settled {
            by_name.push((name, (value, Oid::from_str(&commit).ok()?)));
        }
        let settled = Settled { by_name };
        entries.push(Arc::new(Entry {
            kind: e.kind,
            head: Oid::from_str(&e.head).ok()?,
            settled,
        }));
    }
    Some(WalkCache { entries })
}

/// Writes the cache file: a temporary file renamed over the old one.
fn write_file(path: &Path, cache: &WalkCache) -> std::io::Result<()> {
    // Borrowed, not copied into a `FileBody`: the names are written in their order.
    struct SettledOut<'a>(&'a Settled);
    impl Serialize for SettledOut<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().map(|(name, (value, at))| (name, (value, at.to_string()))))
        }
    }
    #[derive(Serialize)]
    struct EntryOut<'a> {
        kind: &'a str,
        head: String,
        settled: SettledOut<'a>,
    }
    #[derive(Serialize)]
    struct BodyOut<'a> {
        entries: Vec<EntryOut<'a>>,
    }
    let body = BodyOut {
        entries: cache
            .entries
            .iter()
            .map(|e| EntryOut {
                kind: &e.kind,
                head: e.head.to_string(),
                settled: SettledOut(&e.settled),
            })
            .collect(),
    };
    let body = serde_json::to_string(&body).map_err(std::io::Error::other)?;
    if body.len() > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{} bytes is over the cache's {MAX_FILE_BYTES}-byte bound",
            body.len()
        )));
    }
    write_digested(path, MAGIC, &body)
}

/// The running binary, for the keys of caches whose content depends on gantry's code (the
/// template check, the parsed recorded state): its version and the size and modification time
/// of its executable, so a rebuilt or upgraded gantry misses.
pub(crate) fn binary_identity() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let file = std::env::current_exe()
            .and_then(std::fs::metadata)
            .map(|m| {
                let modified = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{}:{modified}", m.len())
            })
            .unwrap_or_else(|_| "unknown".to_string());
        format!("{}:{file}", env!("CARGO_PKG_VERSION"))
    })
}

/// The body of a cache file written by [`write_digested`] with `magic`; `None` when it is
/// absent, torn, edited (the digest does not match) or of another format.
pub(crate) fn read_digested(path: &Path, magic: &str) -> Option<String> {
    use std::io::Read;
    // A regular file within the largest cache's bound, read no further than that: a cache path
    // replaced by a huge file, a FIFO or a link to `/dev/zero` is a miss, not a hang or an
    // out-of-memory (review of issue #17).
    // Looked at before it is opened: opening a FIFO blocks until something writes to it.
    let limit = MAX_CACHE_FILE_BYTES as u64;
    let regular = |meta: &std::fs::Metadata| meta.is_file() && meta.len() <= limit;
    if !std::fs::metadata(path).is_ok_and(|meta| regular(&meta)) {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !regular(&meta) {
        return None;
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).ok()?);
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    if bytes.len() as u64 > limit {
        return None;
    }
    let text = String::from_utf8(bytes).ok()?;
    let (header, body) = text.split_once('\n')?;
    let digest = header.strip_prefix(magic)?.strip_prefix(' ')?;
    if crate::hex::encode(&Sha256::digest(body.as_bytes())) != digest {
        tracing::debug!(path = %path.display(), "cache file does not match its digest; ignored");
        return None;
    }
    Some(body.to_string())
}

/// Writes a cache file: `magic`, the SHA-256 of `body`, then `body`, into a temporary file of
/// the same directory renamed over `path` (readers see one whole version or the other).
pub(crate) fn write_digested(path: &Path, magic: &str, body: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    write!(
        tmp.1,
        "{magic} {}\n{body}",
        crate::hex::encode(&Sha256::digest(body.as_bytes()))
    )?;
    tmp.1.flush()?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp.0);
    })?;
    remove_stale_temporaries(dir);
    Ok(())
}

/// Temporary files older than this were left by a writer that died before its rename.
const STALE: std::time::Duration = std::time::Duration::from_secs(600);

/// Deletes the temporary files killed writers left in `dir` (best effort), so they cannot pile up.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(".tmp.")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A new file `.tmp.<pid>.<n>` in `dir` (no `tempfile` crate in the product).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".tmp.{}.{n}", std::process::id()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> Oid {
        Oid::from_bytes(&[n; 20]).unwrap()
    }

    /// A `Settled` answers as a map of its names would: built from entries in any order (the
    /// last of a name wins), looked up in order, out of order, and for names it lacks, and
    /// merged with older entries (its own win).
    #[test]
    fn settled_answers_as_a_map_of_its_names() {
        let mut seed: u64 = 0x5eed;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for round in 0..200 {
            let size = next(40) as usize;
            let entries: Vec<(String, (String, Oid))> = (0..size)
                .map(|i| {
                    (
                        format!("t{:02}", next(30)),
                        (format!("{round}.{i}"), oid(next(200) as u8)),
                    )
                })
                .collect();
            let mut model: BTreeMap<String, (String, Oid)> = BTreeMap::new();
            for (name, value) in entries.clone() {
                model.insert(name, value);
            }
            let settled: Settled = entries.into_iter().collect();
            let listed: Vec<_> = settled.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            assert_eq!(listed, model.clone().into_iter().collect::<Vec<_>>(), "round {round}");
            // Asked in order (every other name, some missing), then at random.
            let mut cursor = settled.cursor();
            for k in (0..32).step_by(1 + round % 3) {
                let name = format!("t{k:02}");
                assert_eq!(cursor.find(&name), model.get(&name), "round {round}, {name} in order");
            }
            let mut cursor = settled.cursor();
            for _ in 0..40 {
                let name = format!("t{:02}", next(34));
                assert_eq!(cursor.find(&name), model.get(&name), "round {round}, {name} at random");
                assert_eq!(settled.get(&name), model.get(&name));
            }
            // Merged with an older list: names it lacks are added, its own are kept.
            let older: Settled = (0..next(20))
                .map(|i| (format!("t{:02}", next(34)), ("old".to_string(), oid(i as u8))))
                .collect();
            let mut expected = model.clone();
            for (name, value) in older.iter() {
                expected.entry(name.clone()).or_insert_with(|| value.clone());
            }
            let mut merged = settled.clone();
            merged.keep_missing(older);
            let listed: Vec<_> = merged.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            assert_eq!(
                listed,
                expected.into_iter().collect::<Vec<_>>(),
                "round {round}, merged"
            );
        }
    }

    #[test]
    fn round_trips_keeps_the_newest_heads_and_ignores_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let git_dir = dir.path();
        for n in 0..(MAX_HEADS as u8 + 3) {
            let settled: Settled = [("a".to_string(), ("1.0.0".to_string(), oid(100 + n)))]
                .into_iter()
                .collect();
            WalkCache::store(git_dir, "targets", oid(n), settled);
        }
        // A temporary file a killed writer left long ago is removed by the next write.
        let stale = file_path(git_dir).with_file_name(".tmp.1.0");
        std::fs::write(&stale, "half").unwrap();
        let file = std::fs::File::options().write(true).open(&stale).unwrap();
        file.set_modified(std::time::SystemTime::now() - 2 * STALE).unwrap();
        WalkCache::store(git_dir, "releases", oid(1), Settled::new());
        assert!(!stale.exists(), "stale temporary file removed");
        WalkCache::forget(git_dir);
        let cache = WalkCache::load(git_dir);
        assert!(cache.get("targets", oid(0)).is_none(), "the oldest heads are dropped");
        let last = MAX_HEADS as u8 + 2;
        assert_eq!(
            cache.get("targets", oid(last)).unwrap().get("a"),
            Some(&("1.0.0".to_string(), oid(100 + last)))
        );
        assert!(cache.get("releases", oid(1)).is_some(), "kinds are bounded separately");
        assert!(cache.get("approvals", oid(last)).is_none());

        // One flipped byte in the body: the digest no longer matches, the file is a miss.
        let path = file_path(git_dir);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        WalkCache::forget(git_dir);
        assert!(WalkCache::load(git_dir).is_empty());
        for garbage in [
            &b""[..],
            b"\xff\xfe",
            b"gantry-walk-cache v1 00\n{}",
            b"gantry-walk-cache v9 x\n{}",
        ] {
            std::fs::write(&path, garbage).unwrap();
            WalkCache::forget(git_dir);
            assert!(WalkCache::load(git_dir).is_empty(), "{garbage:?}");
        }
    }
}
