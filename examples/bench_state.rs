//! Benchmark of the state branch: recording 10,000 outcomes and reading 10,000 target records.
//!
//! Run with `cargo run --release --example bench_state`. Each scenario starts from a fresh
//! temporary repository; the figures are wall time on whatever machine runs it.

use std::time::{Duration, Instant};

use gantry::state::{
    AttemptRecord, Batch, FinishedAttempt, Outcome, RecordCache, StateWriter, TargetRecord, TargetStatus, read_history,
    read_recorded, read_recorded_cached,
};

const BRANCH: &str = "gantry/state";
const TARGETS: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now: jiff::Timestamp = "2026-02-03T10:00:00Z".parse()?;

    // 100 commits of 100 outcomes: how a busy fleet fills the branch.
    let dir = tempfile::tempdir()?;
    let repo = git2::Repository::init(dir.path())?;
    let mut writer = StateWriter::open(&repo, BRANCH)?;
    let started = Clock::start();
    for chunk in 0..100 {
        let mut batch = Batch::new();
        for i in chunk * 100..(chunk + 1) * 100 {
            add_outcome(&mut batch, i);
        }
        writer.commit(&batch, now)?;
    }
    report("record 10,000 outcomes as 100 commits of 100", started.elapsed());

    let started = Clock::start();
    let state = read_recorded(&repo, BRANCH)?;
    report("read 10,000 target records", started.elapsed());
    assert_eq!(state.targets.len(), TARGETS);

    let mut cache = RecordCache::default();
    read_recorded_cached(&repo, BRANCH, &mut cache)?;
    let started = Clock::start();
    let mut batch = Batch::new();
    add_outcome(&mut batch, 4_242);
    writer.commit(&batch, now)?;
    report("record 1 outcome on top of 10,000 targets", started.elapsed());

    let started = Clock::start();
    let state = read_recorded_cached(&repo, BRANCH, &mut cache)?;
    report("read 10,000 target records, 1 changed, cached", started.elapsed());
    assert_eq!(state.targets.len(), TARGETS);

    let started = Clock::start();
    let history = read_history(&repo, BRANCH, None)?;
    report("read the history of 10,001 outcomes", started.elapsed());
    assert_eq!(history.len(), TARGETS + 1);

    let started = Clock::start();
    let history = read_history(&repo, BRANCH, Some("t04242"))?;
    report("read one target's history among 10,001 outcomes", started.elapsed());
    assert_eq!(history.len(), 2);

    // Everything at once: 10,000 targets and 10,000 outcomes in one commit.
    let dir = tempfile::tempdir()?;
    let repo = git2::Repository::init(dir.path())?;
    let started = Clock::start();
    let mut batch = Batch::new();
    for i in 0..TARGETS {
        add_outcome(&mut batch, i);
    }
    StateWriter::open(&repo, BRANCH)?.commit(&batch, now)?;
    report("record 10,000 outcomes in 1 commit", started.elapsed());
    Ok(())
}

fn add_outcome(batch: &mut Batch, i: usize) {
    let name = format!("t{i:05}");
    let attempt = format!("{name}-20260203T100000Z");
    let from: gantry::manifest::Version = "1.2.0".parse().expect("valid semver");
    let to: gantry::manifest::Version = "2.0.0".parse().expect("valid semver");
    let record = TargetRecord {
        component: "billing".to_string(),
        version: Some(to.clone()),
        config_hash: Some(format!("{i:064x}")),
        config: None,
        applied_migrations: Vec::new(),
        status: TargetStatus::Converged,
        last_attempt: Some(AttemptRecord {
            id: attempt.clone(),
            desired_commit: "4f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4".to_string(),
            from: Some(from.clone()),
            to: to.clone(),
            action: "upgrade".to_string(),
            started: "2026-02-03T10:00:00Z".to_string(),
            finished: Some("2026-02-03T10:05:00Z".to_string()),
            outcome: Some(Outcome::Succeeded),
            message: String::new(),
            config_hash: None,
            output_tail: String::new(),
            spec_hash: None,
            approvers: Vec::new(),
            emergency: None,
        }),
        rollback_points: vec![from],
        observed_version: None,
    };
    let finished = FinishedAttempt::from_record(&name, &record).expect("the record has a finished attempt");
    batch.upsert_target(name, record).outcome(finished);
}

/// Wall time and, on Linux, this process's CPU time (user + system): on a shared machine the
/// CPU time says what the work costs when the wall time includes waiting for a core.
struct Clock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            wall: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn elapsed(&self) -> (Duration, Option<Duration>) {
        let cpu = match (self.cpu, process_cpu_time()) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        (self.wall.elapsed(), cpu)
    }
}

/// utime + stime from /proc/self/stat, in clock ticks of 10 ms (USER_HZ = 100 on Linux).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn report(what: &str, (wall, cpu): (Duration, Option<Duration>)) {
    let cpu = cpu.map_or_else(
        || "n/a".to_string(),
        |cpu| format!("{:.0} ms", cpu.as_secs_f64() * 1000.0),
    );
    println!("{what:<50} {:>8.1} ms wall {cpu:>9} cpu", wall.as_secs_f64() * 1000.0);
}
