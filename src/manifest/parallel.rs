//! [`read_manifests`](super::read_manifests) over several threads, for large repositories, and
//! the helpers other per-item passes over thousands of manifests share ([`cores`],
//! [`map_chunks`]: the parse cache's lookups, validation's target checks, the planner's
//! record join).
//!
//! Reading a file (parse, schema check, typed deserialization) depends on nothing but the file
//! and `gantry.toml`, so the files are split into contiguous chunks, each chunk is loaded and
//! read on its own thread, and the results are concatenated in chunk order: the manifests and
//! diagnostics come out exactly as a sequential read of all files gives them.

use std::borrow::Cow;

use super::diagnostic::Diagnostic;
use super::load::{Manifests, RawContent, RawFile, read_manifests};

/// Below this many files per thread one thread reads them: spawning costs more than it saves.
const MIN_FILES_PER_THREAD: usize = 64;

/// At most this many threads: beyond it the allocator and memory bandwidth limit the gain.
const MAX_THREADS: usize = 4;

/// The cores this process may run on, read once: the standard library reads the cgroup's files
/// on every call (issue #17: a daemon pass asked five times, about 0.2 ms).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// How many threads a pass over `items` items should be split into when each thread needs at
/// least `min_per_thread` of them to be worth its start: at most the cores, and [`MAX_THREADS`].
pub fn threads_for_items(items: usize, min_per_thread: usize) -> usize {
    cores().min(MAX_THREADS).min(items / min_per_thread.max(1)).max(1)
}

/// How many threads to read `files` files with (1 for small repositories).
pub fn threads_for(files: usize) -> usize {
    cores().min(MAX_THREADS).min(files / MIN_FILES_PER_THREAD).max(1)
}

/// Like [`read_manifests`], on up to [`threads_for`] threads; the result is identical.
pub fn read_manifests_parallel(config: Option<&RawFile>, files: &[RawFile]) -> (Manifests, Vec<Diagnostic>) {
    let chunks = split_by_size(files, threads_for(files.len()));
    let load = |i: usize| Ok::<_, std::convert::Infallible>(Cow::Borrowed(chunks[i]));
    match read_chunked(config, chunks.len(), || load(0), load) {
        Ok(result) => result,
        Err(never) => match never {},
    }
}

/// The stack of a thread that parses or checks manifests: the main thread's 8 MiB, not a
/// spawned thread's 2 MiB default. The YAML reference parser recurses per nesting level up to
/// its limit of 64, which a 2 MiB stack may not hold in a debug build (found by the line
/// reader's review, issue #17), and so do a config's schema check and hash: the limit's clear
/// error, never a crash, on any thread.
pub(crate) const PARSER_STACK_BYTES: usize = 8 << 20;

/// Reads `chunks` chunks of files: chunk 0 loaded by `first` on this thread, each other chunk
/// `i` loaded by `other(i)` on a thread of its own (so loading, e.g. reading blobs from git,
/// runs in parallel too, and each chunk's bytes are freed as soon as it is read). The result is
/// that of [`read_manifests`] over the chunks' files in chunk order.
///
/// # Errors
/// The first loading error, in chunk order.
pub fn read_chunked<'a, E: Send>(
    config: Option<&RawFile>,
    chunks: usize,
    first: impl FnOnce() -> Result<Cow<'a, [RawFile]>, E>,
    other: impl Fn(usize) -> Result<Cow<'a, [RawFile]>, E> + Sync,
) -> Result<(Manifests, Vec<Diagnostic>), E> {
    let read = |files: Cow<'a, [RawFile]>| read_manifests(config, &files);
    if chunks <= 1 {
        return first().map(read);
    }
    let results: Vec<Result<(Manifests, Vec<Diagnostic>), E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..chunks)
            .map(|i| {
                let other = &other;
                std::thread::Builder::new()
                    .stack_size(PARSER_STACK_BYTES)
                    .spawn_scoped(scope, move || other(i).map(read))
                    .expect("a parser thread")
            })
            .collect();
        let first = first().map(read);
        std::iter::once(first)
            .chain(handles.into_iter().map(|h| match h.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }))
            .collect()
    });
    // Every chunk reads gantry.toml again (it decides how files are read); its diagnostics come
    // first in each chunk's list and are kept from the first chunk only.
    let config_diagnostics = read_manifests(config, &[]).1.len();
    let mut results = results.into_iter();
    let (mut out, mut diagnostics) = results.next().unwrap_or_else(|| Ok(Default::default()))?;
    for result in results {
        let (more, mut more_diagnostics) = result?;
        merge(&mut out, more);
        diagnostics.extend(more_diagnostics.drain(config_diagnostics.min(more_diagnostics.len())..));
    }
    Ok((out, diagnostics))
}

/// `work` of each of `n` contiguous chunks of `items` ([`split_even`]), the first on this thread
/// and each other on a thread of its own, in chunk order: what one call on all of `items` would
/// give, split, whenever `work` handles each item on its own.
pub fn map_chunks<T: Sync, R: Send>(items: &[T], n: usize, work: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let chunks = split_even(items, n).into_iter().map(|chunk| (chunk, ())).collect();
    map_chunks_with(chunks, |chunk, ()| work(chunk))
}

/// `work` of each chunk with what it alone is given (its share of a memo), the first on this
/// thread and each other on a thread of its own (with the stack of a parser thread:
/// [`PARSER_STACK_BYTES`]), in chunk order.
pub fn map_chunks_with<T: Sync, S: Send, R: Send>(
    mut chunks: Vec<(&[T], S)>,
    work: impl Fn(&[T], S) -> R + Sync,
) -> Vec<R> {
    if chunks.len() <= 1 {
        return chunks.into_iter().map(|(chunk, state)| work(chunk, state)).collect();
    }
    let rest = chunks.split_off(1);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = rest
            .into_iter()
            .map(|(chunk, state)| {
                std::thread::Builder::new()
                    .stack_size(PARSER_STACK_BYTES)
                    .spawn_scoped(scope, move || work(chunk, state))
                    .expect("a worker thread")
            })
            .collect();
        chunks
            .into_iter()
            .map(|(chunk, state)| work(chunk, state))
            .chain(handles.into_iter().map(|h| match h.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }))
            .collect()
    })
}

/// Splits `items` into `n` contiguous chunks of about equal length (fewer when there are fewer
/// items), in order.
pub fn split_even<T>(items: &[T], n: usize) -> Vec<&[T]> {
    let n = n.clamp(1, items.len().max(1));
    (0..n)
        .map(|i| &items[items.len() * i / n..items.len() * (i + 1) / n])
        .collect()
}

/// Appends `more`'s manifests to `out`'s (the configuration is `out`'s).
pub(super) fn merge(out: &mut Manifests, more: Manifests) {
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
    } = more;
    out.components.extend(components);
    out.releases.extend(releases);
    out.targets.extend(targets);
    out.policies.extend(policies);
    out.windows.extend(windows);
    out.approvals.extend(approvals);
    out.fleets.extend(fleets);
}

/// Splits `files` into `n` contiguous, non-empty chunks of about equal byte size (one chunk when
/// `n` is 1 or there are fewer files than `n`).
fn split_by_size(files: &[RawFile], n: usize) -> Vec<&[RawFile]> {
    if n <= 1 || files.len() < n {
        return vec![files];
    }
    let size = |f: &RawFile| match &f.content {
        RawContent::Bytes(b) => b.len() + 64,
        _ => 64,
    };
    let total: usize = files.iter().map(size).sum();
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    let mut acc = 0;
    for (i, file) in files.iter().enumerate() {
        acc += size(file);
        let wanted = total * (chunks.len() + 1) / n;
        let left = files.len() - (i + 1);
        let chunks_after = n - chunks.len() - 1;
        if chunks.len() + 1 < n && (acc >= wanted || left == chunks_after) && left >= chunks_after {
            chunks.push(&files[start..=i]);
            start = i + 1;
        }
    }
    chunks.push(&files[start..]);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: String) -> RawFile {
        RawFile {
            path: path.to_string(),
            content: RawContent::Bytes(text.into_bytes()),
        }
    }

    #[test]
    fn chunks_cover_every_file_in_order() {
        for count in [2, 3, 7, 100, 257] {
            let files: Vec<RawFile> = (0..count).map(|i| file(&format!("f{i}"), "x".repeat(i % 13))).collect();
            for n in 2..=4.min(count) {
                let chunks = split_by_size(&files, n);
                assert_eq!(chunks.len(), n);
                assert!(chunks.iter().all(|c| !c.is_empty()));
                let paths: Vec<&str> = chunks.iter().flat_map(|c| c.iter().map(|f| f.path.as_str())).collect();
                let expected: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
                assert_eq!(paths, expected);
            }
        }
    }

    /// A manifest nested up to the parser's limit, and one past it, read on a parser thread:
    /// a value, then the limit's error, and never a stack overflow.
    #[test]
    fn deep_nesting_is_read_or_refused_on_a_parser_thread_never_overflowing() {
        let deep = |levels: usize| {
            let mut text = String::from(
                "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: deep }\nspec:\n  component: c\n  version: 1.0.0\n  config:\n",
            );
            for i in 0..levels {
                text.push_str(&" ".repeat(4 + i));
                text.push_str(&format!("k{i}:\n"));
            }
            text.push_str(&" ".repeat(4 + levels));
            text.push_str("v: 1\n");
            text
        };
        for (levels, refused) in [(58, false), (70, true)] {
            let files: Vec<RawFile> = (0..40)
                .map(|i| {
                    file(
                        &format!("m/{i:02}.yaml"),
                        if i == 39 { deep(levels) } else { "a: 1\n".to_string() },
                    )
                })
                .collect();
            let (_, diagnostics) = read_chunked::<()>(
                None,
                2,
                || Ok(Cow::Borrowed(&files[..20])),
                |_| Ok(Cow::Borrowed(&files[20..])),
            )
            .unwrap();
            let nested = diagnostics
                .iter()
                .any(|d| d.to_string().contains("nested more than 64 levels"));
            assert_eq!(nested, refused, "{levels} levels: {diagnostics:?}");
        }
    }

    #[test]
    fn even_chunks() {
        let items: Vec<u32> = (0..10).collect();
        let lens: Vec<usize> = split_even(&items, 3).iter().map(|c| c.len()).collect();
        assert_eq!(lens, vec![3, 3, 4]);
        assert_eq!(split_even(&items[..1], 4).len(), 1);
        assert_eq!(split_even::<u32>(&[], 2), vec![&[] as &[u32]]);
    }

    #[test]
    fn same_result_as_a_sequential_read() {
        let config = file("gantry.toml", "poll_interval = \"never\"\nbogus = 1\n".to_string());
        let mut files = Vec::new();
        for i in 0..300 {
            let text = match i % 5 {
                0 => format!(
                    "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i} }}\nspec: {{ component: c, version: 1.0.0 }}\n"
                ),
                1 => format!(
                    "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i} }}\nspec: {{ component: c }}\n"
                ),
                2 => format!(
                    "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: r{i} }}\nspec: {{ component: c, version: 1.0.{i} }}\n"
                ),
                3 => "a: [\n".to_string(),
                _ => format!(
                    "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: p{i} }}\nspec: {{ priority: {i} }}\n"
                ),
            };
            files.push(file(&format!("m/{i:03}.yaml"), text));
        }
        let (seq, seq_diags) = read_manifests(Some(&config), &files);
        let chunks = split_by_size(&files, 3);
        let load = |i: usize| Ok::<_, ()>(Cow::Borrowed(chunks[i]));
        let (par, par_diags) = read_chunked(Some(&config), 3, || load(0), load).unwrap();
        assert_eq!(seq_diags, par_diags);
        assert!(!seq_diags.is_empty());
        let names = |m: &Manifests| {
            (
                m.targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                m.releases.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
                m.policies.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            )
        };
        assert_eq!(names(&seq), names(&par));
        assert_eq!(format!("{:?}", seq.config), format!("{:?}", par.config));
    }
}
