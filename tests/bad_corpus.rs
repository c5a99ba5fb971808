//! The bad-input corpus (`fixtures/bad/`): every malformed or hostile repository is rejected
//! with the exact messages its `expected` file lists, in bounded time and memory, without a
//! panic and without running anything.
//!
//! A case is a directory holding a repository's files and `expected`: a first line
//! `exit: 1` or `exit: 2`, optionally `pending: <why>` (the case waits for work on another
//! branch: its safety is still checked, its lines are not, and it fails once it passes so the
//! marker gets removed), then lines that must appear verbatim on stderr of `gantry validate`.
//! `<path>.gen` files (JSON: head, repeat, times, tail) are expanded into `<path>` here, so
//! multi-megabyte inputs are never committed.
//!
//! Most cases run in-process through the library (`ops::validate`, `ops::plan`, the same
//! functions the commands call, with the same stderr lines), which takes a fraction of the time of
//! two process starts per case. The hostile ones whose point is a memory or time bound (YAML alias
//! bombs, inputs over the size limits, runaway templates) run through the real binary under
//! `ulimit -v`, and a few ordinary cases run both ways to keep the two paths saying the same.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Repo, project_path};
use gantry::manifest::diagnostic::printable;
use gantry::ops::{self, OpsError};
use gantry::render::{self, Format};
use gantry::source::WatchedRepo;

/// Wall-clock bound for one gantry run; a hang is a failure, not a stuck test.
const TIME_LIMIT: Duration = Duration::from_secs(20);
/// Virtual memory bound (KiB) for one gantry run, so a blow-up fails instead of swapping.
const MEMORY_LIMIT_KIB: u64 = 2_000_000;
const NOW: &str = "2026-11-21T10:00:00Z";

/// Cases that run through the binary under the memory bound: their point is a bound that an
/// in-process run could not enforce (a blow-up would take the test process down).
const THROUGH_THE_BINARY: &[&str] = &[
    "alias-billion-laughs",
    "alias-many-anchors",
    "alias-nested-map-bomb",
    "alias-quadratic-blowup",
    "alias-self-reference",
    "deep-flow-sequence-unclosed-100000",
    "huge-document-count",
    "huge-file-over-limit",
    "huge-single-line",
    "template-argv-huge-repeat",
    "template-argv-loop-forever",
    "template-argv-recursive-macro",
];

/// Ordinary cases that run both ways, and must print the same lines and exit the same.
const BOTH_WAYS: &[&str] = &[
    "config-branch-reflog-syntax",
    "config-syntax-bare-word",
    "duration-poll-interval-bare-number",
    "many-problems-one-run",
    "template-argv-unknown-variable",
    "yaml-undefined-alias",
];

/// How a case is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runner {
    Binary,
    InProcess,
}

struct Expected {
    exit: i32,
    pending: Option<String>,
    lines: Vec<String>,
}

fn read_expected(dir: &Path) -> Result<Expected, String> {
    let text = std::fs::read_to_string(dir.join("expected")).map_err(|e| format!("cannot read `expected`: {e}"))?;
    let mut lines = text.lines();
    let exit = match lines.next().and_then(|l| l.strip_prefix("exit: ")) {
        Some("1") => 1,
        Some("2") => 2,
        other => {
            return Err(format!(
                "first line of `expected` must be `exit: 1` or `exit: 2`, not {other:?}"
            ));
        }
    };
    let mut pending = None;
    let mut wanted = Vec::new();
    for line in lines {
        match line.strip_prefix("pending: ") {
            Some(why) => pending = Some(why.to_string()),
            None if line.is_empty() => {}
            None => wanted.push(line.to_string()),
        }
    }
    if wanted.is_empty() {
        return Err("`expected` lists no stderr line".into());
    }
    Ok(Expected {
        exit,
        pending,
        lines: wanted,
    })
}

#[derive(serde::Deserialize)]
struct Generated {
    head: String,
    repeat: String,
    times: usize,
    tail: String,
}

/// Copies a case into `to`: symlinks stay symlinks, modes are kept, `.gen` files are expanded.
/// Returns the repository-relative paths of the files written.
fn copy_case(from: &Path, to: &Path, relative: &str, files: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(from).expect("read case dir").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if relative.is_empty() && name == "expected" {
            continue;
        }
        let rel = if relative.is_empty() {
            name.clone()
        } else {
            format!("{relative}/{name}")
        };
        let source = entry.path();
        let target = to.join(&name);
        let kind = entry.file_type().expect("file type");
        if kind.is_symlink() {
            let link = std::fs::read_link(&source).expect("read link");
            std::os::unix::fs::symlink(link, &target).expect("symlink");
            files.push(rel);
        } else if kind.is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_case(&source, &target, &rel, files);
        } else if let Some(stem) = name.strip_suffix(".gen") {
            let spec: Generated =
                serde_json::from_str(&std::fs::read_to_string(&source).expect("read .gen")).expect(".gen is JSON");
            let mut content = String::with_capacity(spec.head.len() + spec.repeat.len() * spec.times + spec.tail.len());
            content.push_str(&spec.head);
            for _ in 0..spec.times {
                content.push_str(&spec.repeat);
            }
            content.push_str(&spec.tail);
            std::fs::write(to.join(stem), content).expect("write generated");
            files.push(rel.strip_suffix(".gen").unwrap_or(&rel).to_string());
        } else {
            std::fs::copy(&source, &target).expect("copy");
            files.push(rel);
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    timed_out: bool,
}

/// Runs gantry under the time and memory bounds, from `cwd`, with the marker path set.
fn run_bounded(repo: &Path, cwd: &Path, marker: &Path, args: &[&str]) -> Outcome {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("gantry"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .current_dir(cwd)
        .env("GANTRY_CORPUS_MARKER", marker)
        .env_remove("GANTRY_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    // Drain stderr on a thread so a chatty run cannot block on a full pipe.
    let mut pipe = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIME_LIMIT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = String::from_utf8_lossy(&reader.join().expect("stderr reader")).into_owned();
    Outcome {
        code: status.code(),
        stderr,
        timed_out,
    }
}

/// Runs `validate` or `plan` through the library as the command would, with the lines the command
/// writes to stderr. A panic is reported as exit 101, as the binary's would be.
fn run_in_process(repo: &Path, command: &str) -> Outcome {
    let start = Instant::now();
    let result = std::panic::catch_unwind(|| -> (i32, String) {
        let watched = match WatchedRepo::open(repo) {
            Ok(w) => w,
            Err(e) => {
                let message = format!("error: {e}\n");
                return (OpsError::from(e).exit() as i32, message);
            }
        };
        let mut stderr = String::new();
        let code = if command == "validate" {
            match ops::validate::validate(&watched, None) {
                Ok(report) => {
                    for d in &report.diagnostics {
                        stderr.push_str(&format!("{d}\n"));
                    }
                    if report.exit() != ops::Exit::Ok {
                        stderr.push_str(&format!("{}\n", report.verdict()));
                    }
                    report.exit() as i32
                }
                Err(e) => {
                    stderr.push_str(&format!("error: {e}\n"));
                    e.exit() as i32
                }
            }
        } else {
            let now = NOW.parse().expect("NOW is RFC 3339");
            match ops::plan::plan(&watched, None, None, Format::Text, now) {
                Ok(ops::plan::PlanReport::Unreadable { diagnostics, .. }) => {
                    for d in &diagnostics {
                        stderr.push_str(&format!("{d}\n"));
                    }
                    ops::Exit::Invalid as i32
                }
                Ok(report @ ops::plan::PlanReport::Planned(_)) => {
                    let exit = report.exit() as i32;
                    let ops::plan::PlanReport::Planned(p) = report else {
                        unreachable!()
                    };
                    match render::render_plan(&p.plan, Format::Text, &p.context, p.template.as_deref()) {
                        Ok(_) => exit,
                        Err(e) => {
                            let e = OpsError::from(e);
                            stderr.push_str(&format!("error: {e}\n"));
                            e.exit() as i32
                        }
                    }
                }
                Err(e) => {
                    stderr.push_str(&format!("error: {e}\n"));
                    e.exit() as i32
                }
            }
        };
        (code, stderr)
    });
    let (code, stderr) = result.unwrap_or_else(|_| (101, "the library panicked".into()));
    Outcome {
        code: Some(code),
        stderr,
        timed_out: start.elapsed() > TIME_LIMIT,
    }
}

/// Checks one case; returns its problems (empty when it passes).
fn check_case(dir: &Path) -> Vec<String> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
    if THROUGH_THE_BINARY.contains(&name.as_str()) {
        return check_case_with(dir, Runner::Binary).0;
    }
    let (mut problems, in_process) = check_case_with(dir, Runner::InProcess);
    if BOTH_WAYS.contains(&name.as_str()) {
        let (binary_problems, binary) = check_case_with(dir, Runner::Binary);
        problems.extend(binary_problems);
        if in_process != binary {
            problems.push(format!(
                "the library and the binary disagree:\n  in-process {in_process:?}\n  binary     {binary:?}"
            ));
        }
    }
    problems
}

/// What a run showed: the exit codes of `validate` and `plan`, and `validate`'s stderr lines.
type Seen = (Option<i32>, Option<i32>, Vec<String>);

/// Checks one case with one runner; returns its problems and what it saw.
fn check_case_with(dir: &Path, runner: Runner) -> (Vec<String>, Seen) {
    let mut problems = Vec::new();
    let expected = match read_expected(dir) {
        Ok(e) => e,
        Err(e) => return (vec![e], (None, None, Vec::new())),
    };
    let started = Instant::now();
    let repo = Repo::new();
    let mut files = Vec::new();
    copy_case(dir, repo.path(), "", &mut files);
    repo.commit_all("corpus case");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let marker = scratch.path().join("EXECUTED");

    let run = |args: &[&str]| match runner {
        Runner::Binary => run_bounded(repo.path(), scratch.path(), &marker, args),
        Runner::InProcess => run_in_process(repo.path(), args[0]),
    };
    let validate = run(&["validate"]);
    let mut line_problems = Vec::new();
    if validate.timed_out {
        problems.push(format!("validate took longer than {TIME_LIMIT:?}"));
    }
    match validate.code {
        None => problems.push("validate was killed by a signal (memory limit?)".into()),
        Some(101) => problems.push("validate panicked (exit 101)".into()),
        Some(code) if code != expected.exit => {
            line_problems.push(format!("validate exited {code}, expected {}", expected.exit))
        }
        Some(_) => {}
    }
    if validate.stderr.contains("panicked") {
        problems.push("stderr mentions a panic".into());
    }
    for line in &expected.lines {
        if !validate.stderr.lines().any(|l| l == line) {
            line_problems.push(format!("missing line: {line}"));
        }
    }
    for line in validate.stderr.lines() {
        let summary = line.contains(" is not valid: ") || line.ends_with(" problem") || line.ends_with(" problems");
        let names_file = files.iter().any(|f| line.starts_with(&format!("{}:", printable(f))));
        if !summary && !names_file && !expected.lines.iter().any(|l| l == line) {
            line_problems.push(format!("line names no file of the case: {line}"));
        }
    }

    let plan = run(&["plan", "--now", NOW]);
    if plan.timed_out {
        problems.push(format!("plan took longer than {TIME_LIMIT:?}"));
    }
    match plan.code {
        Some(1 | 2) => {}
        Some(101) => problems.push(format!("plan panicked (exit 101)\n{}", plan.stderr)),
        // A pending case may still plan cleanly until the work it waits for lands.
        Some(code) => line_problems.push(format!("plan exited {code}, expected 1 or 2\n{}", plan.stderr)),
        None => problems.push("plan was killed by a signal (memory limit?)".into()),
    }
    if plan.stderr.contains("panicked") {
        problems.push("plan stderr mentions a panic".into());
    }
    for place in [&marker, &scratch.path().join("EXECUTED"), &repo.path().join("EXECUTED")] {
        if place.exists() {
            problems.push(format!("something was executed: {} exists", place.display()));
        }
    }

    match &expected.pending {
        Some(_) if line_problems.is_empty() => {
            problems.push("passes although marked `pending:`; remove the pending line from `expected`".into())
        }
        Some(why) => eprintln!("pending {} ({why}): {}", dir.display(), line_problems.join("; ")),
        None => problems.extend(line_problems),
    }
    if std::env::var_os("GANTRY_CORPUS_TIMING").is_some() {
        eprintln!("{:>6} ms {} ({runner:?})", started.elapsed().as_millis(), dir.display());
    }
    if !problems.is_empty() {
        problems.insert(0, format!("({runner:?})"));
        problems.push(format!("--- stderr of validate\n{}", validate.stderr.trim_end()));
    }
    let lines = validate.stderr.lines().map(str::to_string).collect();
    (problems, (validate.code, plan.code, lines))
}

fn case_dirs() -> Vec<PathBuf> {
    let root = project_path("fixtures/bad");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures/bad")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_bad_case_is_rejected_safely_with_its_messages() {
    let dirs = case_dirs();
    for name in THROUGH_THE_BINARY.iter().chain(BOTH_WAYS) {
        assert!(
            dirs.iter().any(|d| d.ends_with(name)),
            "{name} is listed but is not a case in fixtures/bad"
        );
    }
    assert!(
        dirs.len() >= 300,
        "the corpus has {} cases, expected at least 300",
        dirs.len()
    );
    let queue = Mutex::new(dirs.iter());
    let failures = Mutex::new(Vec::new());
    // Much of a case is process start-up and git writes, not CPU: more workers than cores pay off.
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 3)
        .clamp(4, 8);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            // The stack of the binary's main thread (8 MiB), where the commands run: in-process
            // cases parse deeply nested documents as the command would.
            let worker = std::thread::Builder::new().stack_size(8 << 20);
            let spawned = worker.spawn_scoped(scope, || {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some(dir) = next else { break };
                    let problems = check_case(dir);
                    if !problems.is_empty() {
                        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                        failures.lock().expect("failures").push((name, problems));
                    }
                }
            });
            spawned.expect("spawn a corpus worker");
        }
    });
    let mut failures = failures.into_inner().expect("failures");
    failures.sort();
    let report: Vec<String> = failures
        .iter()
        .map(|(name, problems)| format!("== {name}\n{}", problems.join("\n")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        report.join("\n")
    );
}

/// A byte-order mark before an otherwise valid manifest is not an error.
#[test]
fn bom_before_a_valid_manifest_loads() {
    let repo = Repo::from_dir("fixtures/good/multihop");
    let path = repo.path().join("targets/acme.yaml");
    let text = std::fs::read_to_string(&path).expect("read target");
    std::fs::write(&path, format!("\u{feff}{text}")).expect("write");
    repo.commit_all("BOM");
    let run = repo.gantry(&["validate"]).expect(0);
    assert!(run.stdout().contains("is valid: 1 components"), "{}", run.stdout());
}

/// CRLF line endings in a valid manifest are not an error.
#[test]
fn crlf_manifest_loads() {
    let repo = Repo::from_dir("fixtures/good/multihop");
    let path = repo.path().join("targets/acme.yaml");
    let text = std::fs::read_to_string(&path).expect("read target");
    std::fs::write(&path, text.replace('\n', "\r\n")).expect("write");
    repo.commit_all("CRLF");
    repo.gantry(&["validate"]).expect(0);
}

/// A Release written in TOML with an unquoted date (`released = 2026-02-03`) loads, and its
/// date counts: regression for the TOML datetime bug (toml's private datetime map failed the
/// located-node visitor with "expected a spanned value").
#[test]
fn toml_release_with_unquoted_date_loads() {
    let repo = Repo::from_dir("fixtures/good/multihop");
    repo.file(
        "releases/billing-9.0.0.toml",
        "apiVersion = \"gantry.dev/v1\"\nkind = \"Release\"\n\n[metadata]\nname = \"billing-9.0.0\"\n\n[spec]\ncomponent = \"billing\"\nversion = \"9.0.0\"\nreleased = 2026-02-03\nupgradeFrom = \">=1.0.0\"\n",
    );
    repo.commit_all("TOML release");
    let run = repo.gantry(&["validate", "--format", "json"]).expect(0);
    let out: serde_json::Value = serde_json::from_str(&run.stdout()).expect("json");
    assert_eq!(out["valid"], true, "{out}");

    // The same date, impossible, is reported at its line in the TOML file.
    repo.file(
        "releases/billing-9.0.0.toml",
        "apiVersion = \"gantry.dev/v1\"\nkind = \"Release\"\n\n[metadata]\nname = \"billing-9.0.0\"\n\n[spec]\ncomponent = \"billing\"\nversion = \"9.0.0\"\nreleased = 2026-02-30\n",
    );
    repo.commit_all("impossible date");
    let run = repo.gantry(&["validate"]).expect(1);
    assert!(
        run.stderr().contains("releases/billing-9.0.0.toml:10:12: "),
        "{}",
        run.stderr()
    );
}
