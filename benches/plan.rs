//! The planner in process (issue #17), on a repository bench/gen_repo.py generates (TARGETS
//! targets, default 10,000; RELEASES releases, default 100), through the code path `gantry plan`
//! and the daemon's passes share (`ops::plan::plan`: load the commit, read the state branch,
//! count approvals, plan, render JSON):
//!
//! - floor: listing the manifest tree and reading every blob with git2, nothing else;
//! - cold: the parse cache empty (what one `gantry plan` process does);
//! - warm: the same commit again in the same process (the daemon's pass without a change);
//! - one-file change: a new commit that edits one target's file, after the parent was planned
//!   (the daemon after a commit: only that file is parsed again);
//! - the first plan of each commit, which also runs the strict template check (cached by
//!   commit, so the figures above do not include it);
//! - daemon re-plan after a one-file change: what a daemon pass does before its first step for
//!   a new commit that edits one target file (load and validate the commit, template check
//!   included, with the state branch read alongside on another thread as the pass does;
//!   approvals evidence; plan; no JSON; the plan freed after the clock stops, as a pass frees
//!   it only after the ready steps ran), with the parent's
//!   pass done just before in the same process; each run a new child commit, so nothing of the
//!   child is cached by commit. Printed with its stages.
//!
//! `ONLY=daemon` prints the floor and the daemon re-plan alone (for a profiler).
//!
//! Each figure is the median of RUNS (default 5) runs, printed with its ratio to the floor.
//! Run with `cargo bench --bench plan` (needs python3 and git, as the bench scripts do).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use gantry::manifest::parse_cache;

// The allocator the `gantry` binary (and so the daemon) runs with, so the figures are its.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use gantry::ops::plan::{PlanReport, plan};
use gantry::render::{self, Format};
use gantry::source::WatchedRepo;

fn main() {
    let targets: usize = env_or("TARGETS", 10_000);
    let releases: usize = env_or("RELEASES", 100);
    let runs: usize = env_or("RUNS", 5);
    // RUST_LOG=gantry=debug: the stages' tracing spans on stderr, as the daemon logs them.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_writer(std::io::stderr)
            .init();
    }
    // What the daemon does at start: its passes share the process's parse cache.
    parse_cache::enable();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let repo_dir = dir.path().join("repo");
    generate(&repo_dir, targets, releases);
    let now: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().expect("a timestamp");
    let repo = WatchedRepo::open(&repo_dir).expect("the generated repository");
    let head = repo.repo.revparse_single("main").expect("main").id();
    let child = one_file_change(&repo.repo, head);
    let (head, child) = (head.to_string(), child.to_string());
    // ONLY=daemon: the daemon re-plan alone (for a profiler; its ratio is to this run's floor).
    let only_daemon = std::env::var("ONLY").is_ok_and(|v| v == "daemon");

    let floor = median(runs, || {
        let entries = repo
            .manifest_entries(head.parse().expect("an id"), None)
            .expect("the tree");
        let files = repo.read_entries(&entries).expect("the blobs");
        std::hint::black_box(files);
    });
    let bench = Bench {
        repo,
        head,
        now,
        runs,
        floor,
    };
    println!(
        "planner bench: {targets} targets, {releases} releases, {runs} runs; load average {}",
        load_average()
    );
    println!("floor: list the tree and read every blob    {floor:8.1} ms");
    if !only_daemon {
        plan_modes(&bench, &child);
    }
    daemon_replans(&bench);
}

/// What every figure shares: the repository, its head, the instant planned at, runs, floor.
struct Bench {
    repo: WatchedRepo,
    head: String,
    now: jiff::Timestamp,
    runs: usize,
    floor: f64,
}

/// The `gantry plan` figures: cold, warm, one-file change, and each commit's first plan.
fn plan_modes(bench: &Bench, child: &str) {
    let Bench {
        repo,
        head,
        now,
        runs,
        floor,
    } = bench;
    let (now, runs, floor) = (*now, *runs, *floor);
    // The first plan of a commit also runs the strict template check (every step template
    // against every target), which is cached by commit, not by file: timed once per commit.
    let start = Instant::now();
    plan_json(repo, head, now);
    let first_head = start.elapsed().as_secs_f64() * 1000.0;
    clear_cache();
    plan_json(repo, head, now);
    let start = Instant::now();
    plan_json(repo, child, now);
    let first_child = start.elapsed().as_secs_f64() * 1000.0;
    let mut bytes = 0;
    let cold = median(runs, || {
        clear_cache();
        bytes = plan_json(repo, head, now);
    });
    plan_json(repo, head, now);
    let warm = median(runs, || {
        plan_json(repo, head, now);
    });
    let mut misses = 0;
    let changed = median(runs, || {
        // The parent planned with an empty cache, then the child timed: only its changed
        // file is parsed again.
        clear_cache();
        plan_json(repo, head, now);
        let start = Instant::now();
        plan_json(repo, child, now);
        misses = parse_cache::global()
            .expect("enabled")
            .lock()
            .expect("the cache")
            .last_misses();
        start.elapsed().as_secs_f64() * 1000.0
    });
    println!("plan JSON: {bytes} bytes");
    for (label, ms) in [
        ("plan, cold (empty parse cache)", cold),
        ("plan, warm (same commit again)", warm),
        ("plan, one-file change (daemon)", changed),
        ("first plan of head (template check)", first_head),
        ("first plan of the child (template check)", first_child),
    ] {
        println!("{label:<42} {ms:8.1} ms  {:6.2}x floor", ms / floor);
    }
    println!("files parsed after the one-file change: {misses}");
}

/// The daemon's planning after a commit, by stage (see the module's list).
fn daemon_replans(bench: &Bench) {
    let Bench {
        repo,
        head,
        now,
        runs,
        floor,
    } = bench;
    let (now, runs, floor) = (*now, *runs, *floor);
    // A fresh child each run (caches keyed by commit miss).
    // The daemon's other caches (`server::run` enables them), on from here on: the state
    // branch's records by blob id and the template check's answers per target.
    gantry::state::branch::enable_process_cache();
    gantry::reconcile::load::enable_template_memo();
    // And the cache files written by a background thread, as the daemon writes them.
    gantry::source::cache_writer::write_in_background();
    gantry::source::tree_listing::enable();
    let head_oid: git2::Oid = head.parse().expect("an id");
    // A daemon has run passes before this commit: one untimed round fills the caches a daemon
    // keeps between passes (the template check's answers above all).
    warm_up(repo, head_oid, now);
    let mut stages: Vec<[f64; 3]> = Vec::new();
    for run in 0..runs.max(1) {
        let child = edit_one_target(&repo.repo, head_oid, &format!("# edited by the bench, run {run}\n"));
        daemon_replan(repo, head_oid, now);
        stages.push(daemon_replan(repo, child, now));
        // A run's cache writes overlap its own planning (as in the daemon), not the next run.
        gantry::source::cache_writer::flush();
    }
    stages.sort_by(|a, b| a.iter().sum::<f64>().total_cmp(&b.iter().sum::<f64>()));
    let [load, evidence, planned] = stages[stages.len() / 2];
    let total = load + evidence + planned;
    println!(
        "{:<42} {total:8.1} ms  {:6.2}x floor  (aim <= 50 ms)",
        "daemon re-plan, one-file change",
        total / floor
    );
    println!(
        "  load+validate+template check (state branch read alongside) {load:.1} ms, evidence {evidence:.1} ms, plan {planned:.1} ms"
    );
}

/// One untimed round of [`daemon_replans`] (a name of its own, for a profiler to skip).
#[inline(never)]
fn warm_up(repo: &WatchedRepo, head: git2::Oid, now: jiff::Timestamp) {
    let child = edit_one_target(&repo.repo, head, "# edited by the bench, warm-up\n");
    daemon_replan(repo, head, now);
    daemon_replan(repo, child, now);
}

/// The planning a daemon pass does for `commit` (`reconcile::apply`'s fetch and plan stages),
/// timed by stage: load (with validation and the template check, and the state branch read
/// alongside), evidence, plan.
fn daemon_replan(repo: &WatchedRepo, commit: git2::Oid, now: jiff::Timestamp) -> [f64; 3] {
    // A pass opens the repository afresh (`server::run_pass`): nothing of libgit2's object
    // cache carries over from the last pass.
    let repo = &WatchedRepo::open(repo.repo.path()).expect("the repository");
    let t0 = Instant::now();
    let (loaded, recorded) = gantry::reconcile::load::load_with_recorded(repo, commit).expect("the commit");
    let recorded = recorded.expect("the state branch");
    assert!(loaded.is_valid(), "{:?}", loaded.diagnostics);
    let t1 = Instant::now();
    let anchor = gantry::reconcile::apply::anchor_of(repo, &recorded).expect("the anchor");
    let evidence = gantry::reconcile::load::evidence(repo, &loaded, &anchor).expect("evidence");
    let t2 = Instant::now();
    let plan = gantry::plan::plan(&loaded.plan_input(&recorded, &evidence, now));
    let t3 = Instant::now();
    // Dropped after the clock stops: a pass keeps its plan while the ready actions' steps run
    // (`reconcile::apply`'s plan → execute loop), so freeing it never delays the first step.
    drop(std::hint::black_box(plan));
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    [ms(t0, t1), ms(t1, t2), ms(t2, t3)]
}

/// Plans `rev` and renders the JSON `gantry plan --format json` prints; returns its size.
fn plan_json(repo: &WatchedRepo, rev: &str, now: jiff::Timestamp) -> usize {
    match plan(repo, None, Some(rev), Format::Json, now).expect("a plan") {
        PlanReport::Planned(planned) => {
            let mut out = Vec::new();
            render::write_plan_json(&planned.plan, &mut out).expect("JSON");
            out.len()
        }
        PlanReport::Unreadable { diagnostics, .. } => panic!("unreadable: {diagnostics:?}"),
    }
}

fn clear_cache() {
    parse_cache::global()
        .expect("enabled")
        .lock()
        .expect("the cache")
        .clear();
}

/// Median wall time in ms of `runs` calls of `f` (which may return its own timing).
fn median<R: Timed>(runs: usize, mut f: impl FnMut() -> R) -> f64 {
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            let r = f();
            r.ms(start.elapsed().as_secs_f64() * 1000.0)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

trait Timed {
    fn ms(self, elapsed: f64) -> f64;
}
impl Timed for () {
    fn ms(self, elapsed: f64) -> f64 {
        elapsed
    }
}
impl Timed for f64 {
    fn ms(self, _: f64) -> f64 {
        self
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// bench/gen_repo.py piped into `git fast-import` (the bench scripts' repository).
fn generate(dir: &Path, targets: usize, releases: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("git")
        .args(["init", "--quiet", "--initial-branch=main"])
        .arg(dir)
        .status()
        .expect("git");
    assert!(status.success());
    let gen_out = Command::new("python3")
        .arg(root.join("bench/gen_repo.py"))
        .args(["--targets", &targets.to_string(), "--releases", &releases.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3")
        .stdout
        .expect("its output");
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(gen_out)
        .status()
        .expect("git fast-import");
    assert!(status.success());
}

/// A child of `parent` whose only change is one target file (a comment added: it is read and
/// parsed again, and plans the same).
fn one_file_change(git: &git2::Repository, parent: git2::Oid) -> git2::Oid {
    edit_one_target(git, parent, "# edited by the bench\n")
}

/// A child of `parent` with `comment` added to its first target file.
fn edit_one_target(git: &git2::Repository, parent: git2::Oid, comment: &str) -> git2::Oid {
    let parent = git.find_commit(parent).expect("main");
    let mut index = git2::Index::new().expect("an index");
    index.read_tree(&parent.tree().expect("its tree")).expect("the tree");
    let entry = index
        .iter()
        .find(|e| e.path.starts_with(b"targets/"))
        .expect("a target file");
    let blob = git.find_blob(entry.id).expect("a blob");
    let mut edited = blob.content().to_vec();
    edited.extend_from_slice(comment.as_bytes());
    let changed = git2::IndexEntry {
        id: git.blob(&edited).expect("a blob"),
        file_size: u32::try_from(edited.len()).expect("a small file"),
        path: entry.path.clone(),
        ..entry
    };
    index.add(&changed).expect("the edit");
    let tree = git
        .find_tree(index.write_tree_to(git).expect("a tree"))
        .expect("the tree");
    let sig =
        git2::Signature::new("bench", "bench@example.com", &git2::Time::new(1_780_000_000, 0)).expect("a signature");
    git.commit(None, &sig, &sig, "bench: one-file change", &tree, &[&parent])
        .expect("a commit")
}
