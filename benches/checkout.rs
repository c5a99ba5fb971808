//! Checkouts of desired commits (issue #17): what a pass pays before its first step for a
//! commit that changes one file of a large repository (FILES target files, default 10,000, and
//! a script), in process, through `WatchedRepo::checkout`:
//!
//! - floor: `lstat` of every path of a checkout, the least any check of one can cost;
//! - whole: the first checkout of the repository (every file created);
//! - moved: a new commit's checkout once KEEP old ones exist, built by moving the identical
//!   files out of the checkout it pushes out (what happens when that one has no inventory:
//!   its inventory is deleted before the run);
//! - carried over: the same, the pushed-out checkout patched into the new one (the default).
//!
//! Each of RUNS (default 5) rounds checks out one new commit each way; the figures are the
//! medians, with their ratio to the floor. Run with `cargo bench --bench checkout`.
//!
//! The machine's file system matters: on ext4 without a journal every file create scans past
//! the inodes deleted in the last minute (five while their inode table block is dirty), so
//! "whole" and "moved" slow down after deletions; a carry-over creates nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gantry::source::WatchedRepo;
use git2::{Oid, Repository, Signature, Time};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How many checkouts gantry keeps (`KEEP_CHECKOUTS`): one more pushes the oldest out.
const KEEP: usize = 5;

fn main() {
    let files: usize = env_or("FILES", 10_000);
    let runs: usize = env_or("RUNS", 5);
    // RUST_LOG=gantry=debug: the checkout's tracing spans on stderr, as the daemon logs them.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let git = Repository::init(dir.path()).expect("git init");
    let mut parent = None;
    let mut serial = 0;
    let mut commit = |git: &Repository, parent: &mut Option<Oid>, changed: usize| {
        serial += 1;
        let id = commit_fleet(git, *parent, files, changed, serial);
        *parent = Some(id);
        id
    };
    let first = commit(&git, &mut parent, 0);
    let repo = WatchedRepo::open(dir.path()).expect("the repository");
    let checkouts = repo.gantry_dir().join("checkouts");

    let started = Instant::now();
    let whole_dir = repo.checkout(first).expect("a checkout");
    let whole = started.elapsed();
    let floor = (0..runs).map(|_| lstat_all(&whole_dir)).collect::<Vec<_>>();
    // Fill the kept checkouts, so that every checkout from here on pushes one out.
    for i in 1..KEEP {
        repo.checkout(commit(&git, &mut parent, i)).expect("a checkout");
    }
    let (mut moved, mut carried) = (Vec::new(), Vec::new());
    for round in 0..runs {
        for inventories in [Inventories::Deleted, Inventories::Kept] {
            let next = commit(
                &git,
                &mut parent,
                KEEP + 2 * round + usize::from(inventories == Inventories::Kept),
            );
            if inventories == Inventories::Deleted {
                delete_oldest_inventory(&checkouts);
            }
            let started = Instant::now();
            let made = repo.checkout(next).expect("a checkout");
            let took = started.elapsed();
            assert_eq!(count_files(&made), files + 1, "a whole checkout");
            match inventories {
                Inventories::Deleted => moved.push(took),
                Inventories::Kept => carried.push(took),
            }
        }
    }
    let floor = median(floor);
    let row = |name: &str, took: Duration| {
        println!(
            "{name:<34} {:9.1} ms {:8.1}x",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() / floor.as_secs_f64()
        );
    };
    println!("checkout of {files} files + 1 script, one file changed per commit; medians of {runs} runs");
    row("floor (lstat of every path)", floor);
    row("whole (first checkout, one run)", whole);
    row("moved from the pushed-out checkout", median(moved));
    row("carried over (pushed-out patched)", median(carried));
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Inventories {
    Deleted,
    Kept,
}

/// A commit of `files` target files and a script; target number `changed` (modulo) differs
/// from its parent's, naming `serial`.
fn commit_fleet(git: &Repository, parent: Option<Oid>, files: usize, changed: usize, serial: usize) -> Oid {
    let mut targets = match parent {
        Some(p) => {
            let tree = git.find_commit(p).unwrap().tree().unwrap();
            let sub = tree.get_name("targets").unwrap().id();
            git.treebuilder(Some(&git.find_tree(sub).unwrap())).unwrap()
        }
        None => {
            let mut builder = git.treebuilder(None).unwrap();
            for i in 0..files {
                let text = format!("apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i:05} }}\n");
                builder
                    .insert(format!("t{i:05}.yaml"), git.blob(text.as_bytes()).unwrap(), 0o100644)
                    .unwrap();
            }
            builder
        }
    };
    if parent.is_some() {
        let i = changed % files;
        let text = format!("apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i:05} }}\n# {serial}\n");
        targets
            .insert(format!("t{i:05}.yaml"), git.blob(text.as_bytes()).unwrap(), 0o100644)
            .unwrap();
    }
    let mut scripts = git.treebuilder(None).unwrap();
    scripts
        .insert(
            "deploy.sh",
            git.blob(b"#!/bin/sh\necho deploy \"$@\"\n").unwrap(),
            0o100755,
        )
        .unwrap();
    let mut root = git.treebuilder(None).unwrap();
    root.insert("targets", targets.write().unwrap(), 0o040000).unwrap();
    root.insert("scripts", scripts.write().unwrap(), 0o040000).unwrap();
    let tree = git.find_tree(root.write().unwrap()).unwrap();
    let sig = Signature::new("bench", "bench@example.com", &Time::new(1_700_000_000, 0)).unwrap();
    let parents: Vec<git2::Commit<'_>> = parent.map(|p| git.find_commit(p).unwrap()).into_iter().collect();
    let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
    git.commit(None, &sig, &sig, &format!("change {serial}"), &tree, &parents)
        .unwrap()
}

fn lstat_all(dir: &Path) -> Duration {
    let paths = walk(dir);
    let started = Instant::now();
    for path in &paths {
        std::hint::black_box(std::fs::symlink_metadata(path).unwrap());
    }
    started.elapsed()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let children: Vec<PathBuf> = std::fs::read_dir(&out[i]).unwrap().map(|e| e.unwrap().path()).collect();
            out.extend(children);
        }
        i += 1;
    }
    out
}

fn count_files(dir: &Path) -> usize {
    walk(dir).iter().filter(|p| p.is_file()).count()
}

/// Deletes the inventory of the oldest checkout (the next one pushed out), so that it is
/// built by moving files; the others keep theirs for the carried-over runs.
fn delete_oldest_inventory(checkouts: &Path) {
    let oldest = std::fs::read_dir(checkouts)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .min_by_key(|e| e.metadata().unwrap().modified().unwrap())
        .expect("a checkout");
    let name = oldest.file_name().to_string_lossy().into_owned();
    std::fs::remove_file(checkouts.join(format!(".inventory-{name}"))).unwrap();
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
