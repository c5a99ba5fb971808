//! A cache of manifest files already read, keyed by git blob id (issue #17): the daemon
//! re-reads a commit on every pass, and after a one-file change only that file needs parsing,
//! schema checking and typed deserialization again.
//!
//! # Guarantees
//! - **Same result as reading**: [`read_cached`] returns exactly what
//!   [`read_manifests`](super::read_manifests) returns for the same files (a test compares
//!   them on a generated fleet with hits, misses and broken files). This holds because reading
//!   a file depends on nothing but its path, its bytes, its git mode and whether `gantry.toml`
//!   lists manifest `paths` ([`read_one`]), and [`FileKey`] is exactly those, with the bytes
//!   named by their blob id (git's content hash).
//! - **Nothing is skipped**: the cache stands in for the reading of single files only.
//!   `gantry.toml` is read every time; cross-file validation (`manifest::validate`), policy
//!   checks, template rendering and `[trust]` signature checks run on the whole commit every
//!   time, after this. A cached file is the same bytes, so it cannot let an invalid or
//!   untrusted commit through.
//! - **In memory, per process, daemon only**: no file, so nothing on disk can be stale or
//!   forged. The process's cache exists once [`enable`] is called (the daemon does); a CLI run
//!   reads a commit once or twice, would gain nothing and pay the cache's copy of every
//!   manifest in memory, so without it files are read in chunks as before (no per-file parts).
//! - **Bounded**: entries not used by the last two reads (a read that failed counts: the files
//!   it found are marked used by it) are dropped once the cache holds more than twice the files
//!   of the last read (plus [`SLACK`]).

use foldhash::HashMap;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use git2::Oid;

use super::diagnostic::Diagnostic;
use super::load::{Manifests, RawFile, read_manifests, read_one};
use super::parallel;

/// Extra entries kept beyond twice the last read's files before old ones are dropped.
pub const SLACK: usize = 1024;

/// Below this many files per thread, one thread looks them up and assembles their manifests:
/// a lookup takes well under a microsecond, a thread tens of them.
const MIN_FILES_PER_LOOKUP_THREAD: usize = 1024;

/// What reading a file depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey<'p> {
    /// Path inside the repository (diagnostics name it; `.toml` files are TOML).
    pub path: &'p str,
    /// The blob id of the file's content.
    pub blob: Oid,
    /// The git file mode (a symbolic link is not read).
    pub mode: i32,
}

/// One file as read: its share of the manifests (default configuration) and its diagnostics.
#[derive(Debug)]
struct FileRead {
    manifests: Manifests,
    diagnostics: Vec<Diagnostic>,
}

/// Files already read, by blob id (issue #17: a lookup hashes 20 bytes and copies no path),
/// then by path, mode and whether `gantry.toml` restricts `paths`.
#[derive(Debug, Default)]
pub struct ParseCache {
    entries: HashMap<Oid, Vec<Kept>>,
    /// How many [`Kept`] files `entries` holds.
    len: usize,
    generation: u64,
    /// Files read and parsed by the last [`read_cached`] (not found in the cache).
    last_misses: usize,
}

/// One file read: the rest of its [`FileKey`], its read, and the last read that used it.
#[derive(Debug)]
struct Kept {
    path: String,
    mode: i32,
    restricted: bool,
    read: Arc<FileRead>,
    /// The last read that used it (set by lookups running side by side: [`ParseCache::find`]).
    used: AtomicU64,
}

impl Kept {
    fn is(&self, key: &FileKey, restricted: bool) -> bool {
        self.mode == key.mode && self.restricted == restricted && self.path == key.path
    }
}

impl ParseCache {
    /// How many files the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every file (benchmarks measure a cold read with it).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.len = 0;
    }

    /// The read of `key`, marked used by the read numbered `generation`.
    fn find(&self, key: &FileKey, restricted: bool, generation: u64) -> Option<Arc<FileRead>> {
        let kept = self.entries.get(&key.blob)?.iter().find(|k| k.is(key, restricted))?;
        kept.used.store(generation, Ordering::Relaxed);
        Some(Arc::clone(&kept.read))
    }

    /// Keeps `read` as the read of `key` (replacing one kept meanwhile by another read).
    fn keep(&mut self, key: &FileKey, restricted: bool, read: Arc<FileRead>, generation: u64) {
        let same_blob = self.entries.entry(key.blob).or_default();
        match same_blob.iter_mut().find(|k| k.is(key, restricted)) {
            Some(kept) => {
                kept.read = read;
                *kept.used.get_mut() = generation;
            }
            None => {
                same_blob.push(Kept {
                    path: key.path.to_string(),
                    mode: key.mode,
                    restricted,
                    read,
                    used: AtomicU64::new(generation),
                });
                self.len += 1;
            }
        }
    }

    /// Drops the files no read since `oldest` used.
    fn drop_unused_before(&mut self, oldest: u64) {
        let mut len = 0;
        self.entries.retain(|_, same_blob| {
            same_blob.retain_mut(|k| *k.used.get_mut() >= oldest);
            len += same_blob.len();
            !same_blob.is_empty()
        });
        self.len = len;
    }

    /// How many files the last read had to parse.
    pub fn last_misses(&self) -> usize {
        self.last_misses
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns the process's cache on (the daemon, whose passes re-read the same files).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The process's cache, once [`enable`]d (the daemon's passes share it).
pub fn global() -> Option<&'static Mutex<ParseCache>> {
    static CACHE: OnceLock<Mutex<ParseCache>> = OnceLock::new();
    ENABLED
        .load(Ordering::Relaxed)
        .then(|| CACHE.get_or_init(Mutex::default))
}

/// Reads `gantry.toml` and the files of `entries` like [`read_manifests`] does, taking every
/// file whose [`FileKey`] `key_of` gives from `cache` (none: no cache) and loading only the
/// others, which are then kept in it: chunk 0 of
/// them by `first` on this thread, the other chunks by `other` on threads of their own (as
/// [`parallel::read_chunked`] does).
///
/// # Errors
/// The first loading error, in chunk order; the cache then holds the same files as before
/// (those this read found count as used by it).
pub fn read_cached<'a, T: Clone + Sync, E: Send>(
    cache: Option<&Mutex<ParseCache>>,
    config: Option<&RawFile>,
    entries: &[T],
    key_of: impl Fn(&T) -> FileKey<'_>,
    first: impl FnOnce(&[T]) -> Result<Cow<'a, [RawFile]>, E>,
    other: impl Fn(&[T]) -> Result<Cow<'a, [RawFile]>, E> + Sync,
) -> Result<(Manifests, Vec<Diagnostic>), E> {
    let Some(cache) = cache else {
        // No cache: whole chunks read as one (no per-file results to keep).
        let chunks = parallel::split_even(entries, parallel::threads_for(entries.len()));
        return parallel::read_chunked(config, chunks.len(), || first(chunks[0]), |i| other(chunks[i]));
    };
    let (mut out, mut diagnostics) = read_manifests(config, &[]);
    let restricted = out.config.paths.is_some();
    let keys: Vec<FileKey> = entries.iter().map(&key_of).collect();
    // Looked up, and assembled below, on several cores for a large repository (issue #17: the
    // two were a third of loading a 10,000-file commit whose files were all read before).
    let threads = parallel::threads_for_items(entries.len(), MIN_FILES_PER_LOOKUP_THREAD);
    let (mut found, generation): (Vec<Option<Arc<FileRead>>>, u64) = {
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.generation += 1;
        let generation = cache.generation;
        let cache = &*cache;
        let found = parallel::map_chunks(&keys, threads, |keys| {
            keys.iter()
                .map(|k| cache.find(k, restricted, generation))
                .collect::<Vec<_>>()
        });
        (found.into_iter().flatten().collect(), generation)
    };
    let missing: Vec<usize> = (0..entries.len()).filter(|&i| found[i].is_none()).collect();
    let to_load: Vec<T> = missing.iter().map(|&i| entries[i].clone()).collect();
    let chunks = parallel::split_even(&to_load, parallel::threads_for(to_load.len()));
    let read = |files: Cow<'a, [RawFile]>| -> Vec<Arc<FileRead>> {
        files
            .iter()
            .map(|file| {
                let (manifests, diagnostics) = read_one(file, restricted);
                Arc::new(FileRead { manifests, diagnostics })
            })
            .collect()
    };
    let fresh: Vec<Arc<FileRead>> = if chunks.len() <= 1 {
        if to_load.is_empty() {
            Vec::new()
        } else {
            read(first(&to_load)?)
        }
    } else {
        let results: Vec<Result<Vec<Arc<FileRead>>, E>> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunks[1..]
                .iter()
                .map(|chunk| {
                    let (other, read) = (&other, &read);
                    std::thread::Builder::new()
                        .stack_size(super::parallel::PARSER_STACK_BYTES)
                        .spawn_scoped(scope, move || other(chunk).map(read))
                        .expect("a parser thread")
                })
                .collect();
            let first = first(chunks[0]).map(read);
            std::iter::once(first)
                .chain(handles.into_iter().map(|h| match h.join() {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                }))
                .collect()
        });
        let mut fresh = Vec::with_capacity(to_load.len());
        for result in results {
            fresh.extend(result?);
        }
        fresh
    };
    for (&i, read) in missing.iter().zip(fresh) {
        found[i] = Some(read);
    }
    let parts = parallel::map_chunks(&found, threads, |found| {
        let mut part = (Manifests::default(), Vec::new());
        for (k, read) in found.iter().enumerate() {
            fetch_ahead(found, k);
            if let Some(read) = read {
                append(&mut part.0, &mut part.1, read);
            }
        }
        part
    });
    for (manifests, more) in parts {
        parallel::merge(&mut out, manifests);
        diagnostics.extend(more);
    }
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    for &i in &missing {
        if let Some(read) = &found[i] {
            cache.keep(&keys[i], restricted, Arc::clone(read), generation);
        }
    }
    cache.last_misses = missing.len();
    if cache.len() > 2 * entries.len() + SLACK {
        // Kept: what this read or the one before it used.
        cache.drop_unused_before(generation.saturating_sub(1));
    }
    Ok((out, diagnostics))
}

/// Asks for the reads a few files after `k` in `found`, and the reference counts of the
/// targets a read nearer holds, to be brought into the cache (issue #17): the reads and the
/// targets they share lie scattered over the heap, and copying each file's share began with the
/// processor waiting for its read, then for each target's reference count (see
/// [`crate::prefetch`]).
fn fetch_ahead(found: &[Option<Arc<FileRead>>], k: usize) {
    if let Some(Some(read)) = found.get(k + crate::prefetch::AHEAD) {
        crate::prefetch::fetch(Arc::as_ptr(read));
    }
    if let Some(Some(read)) = found.get(k + crate::prefetch::POINTED_AHEAD) {
        for target in &read.manifests.targets {
            crate::prefetch::fetch_counts(target);
        }
    }
}

/// Appends one file's share to the result (cloned: the cache keeps its copy): every kind of
/// manifest [`Manifests`] holds (the destructuring names each field, so a kind added to it
/// cannot be left out here unnoticed).
fn append(out: &mut Manifests, diagnostics: &mut Vec<Diagnostic>, read: &FileRead) {
    let Manifests {
        config: _,
        config_origin: _,
        components,
        releases,
        targets,
        policies,
        windows,
        approvals,
        fleets,
    } = &read.manifests;
    out.components.extend(components.iter().cloned());
    out.releases.extend(releases.iter().cloned());
    out.targets.extend(targets.iter().cloned());
    out.policies.extend(policies.iter().cloned());
    out.windows.extend(windows.iter().cloned());
    out.approvals.extend(approvals.iter().cloned());
    out.fleets.extend(fleets.iter().cloned());
    diagnostics.extend(read.diagnostics.iter().cloned());
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::manifest::RawContent;

    #[derive(Clone)]
    struct Entry {
        path: String,
        bytes: Vec<u8>,
    }

    fn key(e: &Entry) -> FileKey<'_> {
        FileKey {
            path: &e.path,
            blob: Oid::hash_object(git2::ObjectType::Blob, &e.bytes).unwrap(),
            mode: 0o100644,
        }
    }

    fn raw(entries: &[Entry]) -> Vec<RawFile> {
        entries
            .iter()
            .map(|e| RawFile {
                path: e.path.clone(),
                content: RawContent::Bytes(e.bytes.clone()),
            })
            .collect()
    }

    /// Reads through `cache`, counting the files actually loaded.
    fn cached(cache: &Mutex<ParseCache>, config: &RawFile, entries: &[Entry]) -> (String, usize) {
        let loaded = std::sync::atomic::AtomicUsize::new(0);
        let load = |files: &[Entry]| {
            loaded.fetch_add(files.len(), std::sync::atomic::Ordering::Relaxed);
            Ok::<_, Infallible>(Cow::Owned(raw(files)))
        };
        let Ok(result) = read_cached(Some(cache), Some(config), entries, key, load, load);
        (format!("{result:?}"), loaded.into_inner())
    }

    fn fleet(n: usize, version: &str) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let text = match i % 7 {
                    0 if i % 2 == 0 => "a: [\n".to_string(),
                    // Every kind a file can hold comes back from the cache (a Fleet was dropped).
                    0 => format!("apiVersion: gantry.dev/v1\nkind: Fleet\nmetadata: {{ name: f{i} }}\nspec: {{ tenants: [a], components: [c], defaults: {{ version: {version} }} }}\n"),
                    1 => format!("apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i} }}\nspec: {{ component: c }}\n"),
                    2 => format!("apiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: r{i} }}\nspec: {{ component: c, version: 1.0.{i} }}\n"),
                    3 => "name: someone else's file\n".to_string(),
                    _ => format!(
                        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i} }}\nspec: {{ component: c, version: {version} }}\n---\napiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: p{i} }}\nspec: {{ priority: {i} }}\n"
                    ),
                };
                let ext = if i % 13 == 0 { "toml" } else { "yaml" };
                Entry {
                    path: format!("m/{i:03}.{ext}"),
                    bytes: text.into_bytes(),
                }
            })
            .collect()
    }

    /// `files` with file `i`'s `version: 1.0.0` made `9.9.9`.
    fn with_version_bumped(files: &[Entry], i: usize) -> Vec<Entry> {
        let mut changed = files.to_vec();
        changed[i].bytes = String::from_utf8(changed[i].bytes.clone())
            .unwrap()
            .replace("version: 1.0.0", "version: 9.9.9")
            .into_bytes();
        changed
    }

    fn config(text: &str) -> RawFile {
        RawFile {
            path: "gantry.toml".into(),
            content: RawContent::Bytes(text.as_bytes().to_vec()),
        }
    }

    /// Issue #17: reading through the parse cache gives exactly what reading every file gives
    /// (manifests, diagnostics and their order), empty, full, after one file changed, broke and
    /// was restored; only the changed file is read again, and a `paths` setting in gantry.toml (which changes how
    /// every file is read) never reuses a file read without it.
    #[test]
    fn cached_reads_equal_fresh_reads_and_reread_only_what_changed() {
        let cache = Mutex::new(ParseCache::default());
        let open = config("bogus = 1\n");
        let files = fleet(300, "1.0.0");
        let fresh = format!("{:?}", read_manifests(Some(&open), &raw(&files)));
        assert!(fresh.contains("Invalid"), "the fleet has broken files");

        let Ok(uncached) = read_cached(
            None,
            Some(&open),
            &files,
            key,
            |f| Ok::<_, Infallible>(Cow::Owned(raw(f))),
            |f| Ok(Cow::Owned(raw(f))),
        );
        assert_eq!(format!("{uncached:?}"), fresh);

        let (first, loaded) = cached(&cache, &open, &files);
        assert_eq!(first, fresh);
        assert_eq!(loaded, 300);
        let (again, loaded) = cached(&cache, &open, &files);
        assert_eq!(again, fresh);
        assert_eq!(loaded, 0);

        let changed = with_version_bumped(&files, 4);
        let (after, loaded) = cached(&cache, &open, &changed);
        assert_eq!(after, format!("{:?}", read_manifests(Some(&open), &raw(&changed))));
        assert!(after.contains("9.9.9"));
        assert_eq!(loaded, 1);

        // A file broken in place, then restored: the broken read is reported, and the restored
        // blob (read before) comes from the cache as what it was.
        let mut broken = changed.clone();
        broken[4].bytes = b"apiVersion: gantry.dev/v1\nkind: Target\nmetadata: [\n".to_vec();
        let (after, loaded) = cached(&cache, &open, &broken);
        assert_eq!(after, format!("{:?}", read_manifests(Some(&open), &raw(&broken))));
        assert!(
            after.contains("m/004.yaml") && after.contains("invalid YAML"),
            "{after}"
        );
        assert_eq!(loaded, 1);
        let (after, loaded) = cached(&cache, &open, &changed);
        assert_eq!(after, format!("{:?}", read_manifests(Some(&open), &raw(&changed))));
        assert_eq!(loaded, 0);

        let restricted = config("paths = [\"m\"]\n");
        let (paths, loaded) = cached(&cache, &restricted, &files);
        assert_eq!(paths, format!("{:?}", read_manifests(Some(&restricted), &raw(&files))));
        assert_ne!(paths, fresh, "paths changes how someone else's file is read");
        assert_eq!(loaded, 300);
    }

    /// A read large enough to be looked up and assembled on several threads gives what reading
    /// every file gives, marks every file it found used by it, and reads again only what changed
    /// (in the last chunk here).
    #[test]
    fn a_read_split_over_threads_equals_a_fresh_read() {
        let cache = Mutex::new(ParseCache::default());
        let open = config("");
        let files = fleet(2 * MIN_FILES_PER_LOOKUP_THREAD + 300, "1.0.0");
        let fresh = format!("{:?}", read_manifests(Some(&open), &raw(&files)));
        assert_eq!(cached(&cache, &open, &files), (fresh.clone(), files.len()));
        assert_eq!(cached(&cache, &open, &files), (fresh, 0));
        {
            let cache = cache.lock().unwrap();
            let generation = cache.generation;
            assert!(
                cache
                    .entries
                    .values()
                    .flatten()
                    .all(|k| k.used.load(Ordering::Relaxed) == generation),
                "every file found is marked used by the read that found it"
            );
        }
        let last = (0..files.len())
            .rev()
            .find(|&i| String::from_utf8_lossy(&files[i].bytes).contains("version: 1.0.0"))
            .unwrap();
        let changed = with_version_bumped(&files, last);
        let (after, loaded) = cached(&cache, &open, &changed);
        assert_eq!(after, format!("{:?}", read_manifests(Some(&open), &raw(&changed))));
        assert!(after.contains("9.9.9"));
        assert_eq!(loaded, 1);
    }

    /// The cache holds about two reads' worth of files: entries no read of the last two used
    /// are dropped once it outgrows that.
    #[test]
    fn old_entries_are_dropped() {
        let cache = Mutex::new(ParseCache::default());
        let open = config("");
        for round in 0..6 {
            let files = fleet(700, &format!("1.0.{round}"));
            cached(&cache, &open, &files);
            let len = cache.lock().unwrap().len();
            assert!(len <= 2 * 700 + SLACK, "round {round}: {len} entries");
        }
    }

    /// Files kept by blob id: the same content at two paths is two files (each named by its
    /// own path in what it reads to), one of them edited leaves the other found; a read that
    /// fails loading its misses adds and drops nothing, and the next read still finds them.
    #[test]
    fn same_content_at_two_paths_and_a_failed_read() {
        let cache = Mutex::new(ParseCache::default());
        let open = config("");
        let text = b"apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: [\n".to_vec();
        let files = vec![
            Entry {
                path: "a.yaml".into(),
                bytes: text.clone(),
            },
            Entry {
                path: "b.yaml".into(),
                bytes: text.clone(),
            },
        ];
        let (first, loaded) = cached(&cache, &open, &files);
        assert_eq!(loaded, 2, "same blob, two paths: two files");
        assert!(first.contains("a.yaml") && first.contains("b.yaml"), "{first}");
        assert_eq!(first, format!("{:?}", read_manifests(Some(&open), &raw(&files))));
        assert_eq!(cache.lock().unwrap().len(), 2);

        let mut edited = files.clone();
        edited[0].bytes =
            b"apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: t }\nspec: { component: c }\n".to_vec();
        let failing = |_: &[Entry]| Err::<Cow<'_, [RawFile]>, &str>("disk on fire");
        let result = read_cached(Some(&cache), Some(&open), &edited, key, failing, failing);
        assert_eq!(result.err(), Some("disk on fire"));
        assert_eq!(cache.lock().unwrap().len(), 2, "nothing added or dropped");

        let (after, loaded) = cached(&cache, &open, &edited);
        assert_eq!(loaded, 1, "only the edited file is read");
        assert_eq!(after, format!("{:?}", read_manifests(Some(&open), &raw(&edited))));
        let (again, loaded) = cached(&cache, &open, &files);
        assert_eq!(
            (again, loaded),
            (first, 0),
            "both files of the first read are still kept"
        );
    }
}
