//! High availability on etcd (issue #14): a real 3-member etcd cluster on 127.0.0.1 random
//! ports (Debian's `etcd-server`, installed by `.ci/run`), gantry members of one shard on clones
//! of one bare remote, and a fleet whose steps append start/end marks to one shared log, so every
//! execution is counted and overlaps are visible.
//!
//! The remote is served by `git daemon` (a separate server process, as a real Git host is): with
//! a `file://` remote the killed leader itself wrote into the bare repository and could leave its
//! ref lock there, which no real server would (that stalled the kill test; see `GitServer`).
//!
//! Outside CI a missing `etcd` skips the tests loudly; in CI (CI=true) it fails them.
//! Knobs: GANTRY_TEST_KILLS, GANTRY_TEST_TTL (the kill test), GANTRY_TEST_SHARD_TARGETS,
//! GANTRY_TEST_LOG (the members' RUST_LOG), GANTRY_TEST_DUMP=DIR (each member's stderr is
//! written there when it is dropped, to read after a failure).

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Repo, component, release, target};

const NOW: &str = "2026-11-30T12:00:00Z";

fn wait_for<T>(what: &str, deadline: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_or_say(what, deadline, String::new, f)
}

/// [`wait_for`], saying `context()` (e.g. the members' last log lines) when it times out.
fn wait_or_say<T>(what: &str, deadline: Duration, context: impl Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `etcd` binary, or `None` (with a loud note) outside CI when it is missing.
fn etcd_binary() -> Option<PathBuf> {
    let found = ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd missing in CI: .ci/run installs etcd-server"
        );
        eprintln!("SKIPPED: etcd is not installed (run .ci/run, or apt-get install etcd-server)");
    }
    found
}

// ---------------------------------------------------------------------------------------------
// a real 3-member etcd cluster

struct EtcdMember {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// Three etcd members on loopback, killed (SIGKILL) on drop.
struct Etcd {
    binary: PathBuf,
    dir: tempfile::TempDir,
    members: Vec<EtcdMember>,
}

impl Etcd {
    fn start() -> Option<Etcd> {
        let binary = etcd_binary()?;
        let dir = tempfile::tempdir().expect("tmp");
        let members: Vec<EtcdMember> = (0..3)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut etcd = Etcd { binary, dir, members };
        for i in 0..3 {
            etcd.spawn(i);
        }
        etcd.wait_healthy();
        Some(etcd)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let cluster = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let client = format!("http://127.0.0.1:{}", m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).expect("log");
        let child = Command::new(&self.binary)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "gantry-test"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until a write through the gRPC gateway succeeds on some member (quorum).
    fn wait_healthy(&self) {
        wait_for("etcd quorum", Duration::from_secs(60), || {
            self.members
                .iter()
                .filter(|m| m.child.is_some())
                .any(|m| {
                    let (code, body) = http(
                        "POST",
                        &format!("127.0.0.1:{}", m.client),
                        "/v3/kv/put",
                        "{\"key\":\"aGVhbHRo\",\"value\":\"b2s=\"}",
                    );
                    code == 200 && body.contains("header")
                })
                .then_some(())
        });
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the remote: `git daemon` on a loopback port, killed on drop

/// `git daemon` serving `root` (push enabled) on a free loopback port. Pushes are written by its
/// own `git receive-pack` processes, so killing a gantry member mid-push cannot leave a lock in
/// the remote repository (with `file://`, libgit2 writes the bare repository in-process).
struct GitServer {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl GitServer {
    fn start() -> GitServer {
        let root = tempfile::tempdir().expect("tmp");
        let port = free_port();
        let child = Command::new("git")
            .args(["daemon", "--reuseaddr", "--export-all", "--enable=receive-pack"])
            .arg(format!("--base-path={}", root.path().display()))
            .args(["--listen=127.0.0.1", &format!("--port={port}")])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_for("git daemon", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        GitServer { child, port, root }
    }

    fn bare(&self) -> PathBuf {
        self.root.path().join("fleet.git")
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/fleet.git", self.port)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// the fleet: every step logs `start`/`end` marks with the member's pid to one shared log

/// A bare remote holding a fleet of `targets` targets; each deploy sleeps `step_s` seconds
/// between its marks in `log`.
fn seed(bare: &Path, log: &Path, targets: usize, step_s: &str) {
    seed_labelled(bare, log, targets, step_s, |_| "host: a".to_string(), &[]);
}

/// [`seed`] with each target's labels (`host: a`…) chosen by `labels(index)`.
fn seed_labelled(
    bare: &Path,
    log: &Path,
    targets: usize,
    step_s: &str,
    labels: impl Fn(usize) -> String,
    extra: &[(String, String)],
) {
    let repo = Repo::new();
    let script = format!(
        "#!/bin/sh\nset -eu\necho \"start $1 $2 $PPID $(date +%s.%N)\" >> {log}\nsleep {step_s}\n\
         echo \"end $1 $2 $PPID $(date +%s.%N)\" >> {log}\n",
        log = log.display()
    );
    repo.file(
        "gantry.toml",
        "desired_branch = \"main\"\nremote = \"origin\"\npoll_interval = \"1h\"\n\n[executors.local]\ntype = \"shell\"\n",
    )
    .file("scripts/deploy.sh", &script)
    .file("components/web.yaml", &component("web", ""))
    .file("releases/web.yaml", &release("web", "1.0.0", ""));
    for i in 0..targets {
        repo.file(
            &format!("targets/t{i:02}.yaml"),
            &target(&format!("t{i:02}"), "web", "1.0.0", &labels(i)),
        );
    }
    for (path, text) in extra {
        repo.file(path, text);
    }
    repo.commit_all("fleet");
    let bare_repo = git2::Repository::init_bare(bare).expect("bare");
    bare_repo.set_head("refs/heads/main").expect("HEAD");
    repo.git
        .remote_anonymous(bare.to_str().expect("utf-8"))
        .expect("remote")
        .push(&["refs/heads/main:refs/heads/main"], None)
        .expect("seed push");
}

fn gantry(args: &[&str]) -> common::Run {
    let output = assert_cmd::Command::cargo_bin("gantry")
        .expect("binary")
        .args(args)
        .env_remove("GANTRY_NOW")
        .env_remove("GANTRY_ETCD_ENDPOINTS")
        .output()
        .expect("run gantry");
    common::Run { output }
}

#[derive(Debug, Clone)]
struct Mark {
    start: bool,
    target: String,
    pid: u32,
    at: f64,
}

fn marks(log: &Path) -> Vec<Mark> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Mark {
                start: f.first()? == &"start",
                target: f.get(1)?.to_string(),
                pid: f.get(3)?.parse().ok()?,
                at: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// Whether member `pid` logged a step of `target` as finished between the unix times `from` and
/// `until` (one run's end and the next run's start): it does so only once the step's completion
/// is in etcd (the journal write, fenced, returned), so nobody runs that step again.
type Acked<'a> = &'a dyn Fn(u32, &str, f64, f64) -> bool;

/// The stderr of every member started, by pid (kept after the member is killed).
#[derive(Default)]
struct Stderrs(BTreeMap<u32, Arc<Mutex<String>>>);

impl Stderrs {
    fn add(&mut self, member: &Member) {
        self.0.insert(member.pid(), Arc::clone(&member.stderr));
    }

    fn acked(&self, pid: u32, target: &str, from: f64, until: f64) -> bool {
        let field = format!("target={target} ");
        self.0.get(&pid).is_some_and(|text| {
            text.lock().unwrap().lines().any(|l| {
                // Log lines start with their RFC 3339 time (UTC), the clock `date` reads too.
                let at = l
                    .split_whitespace()
                    .next()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .map(|t| t.as_nanosecond() as f64 / 1e9);
                l.contains("step finished") && l.contains(&field) && at.is_some_and(|at| from <= at && at < until)
            })
        })
    }
}

/// Per target, from the step log: no two runs overlapped (a run whose member was killed ends
/// when it was killed, `killed[pid]`: pdeathsig killed its step), every start ended or was
/// killed, and every finished run but the last was **not** acknowledged by its member. A step
/// that ended while its member died or lost its leadership before etcd had its completion is an
/// interrupted step (SPEC §4: run again, steps are idempotent); one whose completion etcd had
/// must never run again. Returns how many targets ran a step again.
fn check_no_overlap_and_no_rerun(log: &Path, killed: &BTreeMap<u32, f64>, acked: Acked) -> usize {
    let mut reruns = 0;
    let mut by_target: BTreeMap<String, Vec<Mark>> = BTreeMap::new();
    for m in marks(log) {
        by_target.entry(m.target.clone()).or_default().push(m);
    }
    for (target, marks) in &by_target {
        let mut open: Option<&Mark> = None;
        // Finished runs: (pid, end time, the next run's start time).
        let mut finished: Vec<(u32, f64, f64)> = Vec::new();
        for m in marks {
            if m.start {
                if let Some(o) = open {
                    // The previous start never ended: its member must have been killed before
                    // this start (pdeathsig killed its step), or the two overlap.
                    let died = killed.get(&o.pid).copied().unwrap_or(f64::MAX);
                    assert!(
                        died <= m.at,
                        "{target}: a step of pid {} was still running when pid {} started one",
                        o.pid,
                        m.pid
                    );
                }
                if let Some(last) = finished.last_mut() {
                    last.2 = last.2.min(m.at);
                }
                open = Some(m);
            } else {
                let o = open
                    .take()
                    .unwrap_or_else(|| panic!("{target}: an end without a start"));
                assert_eq!(o.pid, m.pid, "{target}: ended by another member");
                finished.push((m.pid, m.at, f64::MAX));
            }
        }
        if let Some(o) = open {
            assert!(
                killed.contains_key(&o.pid),
                "{target}: a step started by pid {} never ended and its member was not killed",
                o.pid
            );
        }
        assert!(!finished.is_empty(), "{target}: no run of its step finished");
        for &(pid, ended, next) in &finished[..finished.len() - 1] {
            assert!(
                !acked(pid, target, ended, next),
                "{target}: a finished step ran twice: pid {pid} had its completion in etcd \
                 (it logged `step finished` before the next run started), yet it ran again"
            );
        }
        reruns += usize::from(finished.len() > 1);
    }
    reruns
}

/// Per target: how many outcome commits on `clone`'s state branch name it; and whether every
/// outcome block carries a `Gantry-Fence:` trailer.
fn outcomes(clone: &Path) -> (BTreeMap<String, usize>, bool) {
    let repo = git2::Repository::open(clone).expect("open");
    let mut walk = repo.revwalk().expect("walk");
    walk.push_ref("refs/heads/gantry/state").expect("state branch");
    let mut counts = BTreeMap::new();
    let mut fenced = true;
    for oid in walk {
        let commit = repo.find_commit(oid.expect("oid")).expect("commit");
        let message = commit.message().unwrap_or_default();
        let targets = message.matches("Gantry-Target: ").count();
        if targets > 0 && message.matches("Gantry-Fence: ").count() != targets {
            fenced = false;
        }
        for line in message.lines() {
            if let Some(t) = line.strip_prefix("Gantry-Target: ") {
                *counts.entry(t.to_string()).or_insert(0) += 1;
            }
        }
    }
    (counts, fenced)
}

// ---------------------------------------------------------------------------------------------
// gantry members

struct Member {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Member {
    fn start(repo: &Path, endpoints: &str, extra: &[&str]) -> Member {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
        command
            .args(["--now", NOW, "--repo"])
            .arg(repo)
            .args(["daemon", "--listen", "127.0.0.1:0", "--etcd", endpoints])
            .args(extra)
            .env_remove("GANTRY_NOW")
            .env_remove("GANTRY_ETCD_ENDPOINTS")
            .env(
                "RUST_LOG",
                std::env::var("GANTRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let (child, addr, stderr) = common::spawn_daemon(command);
        Member { child, addr, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cluster(&self) -> Option<serde_json::Value> {
        let (code, body) = http("GET", &self.addr, "/api/daemon", "");
        if code != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(v["cluster"].clone())
    }

    fn is_leader(&self) -> bool {
        self.cluster().is_some_and(|c| c["role"] == "leader")
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Ok(dir) = std::env::var("GANTRY_TEST_DUMP") {
            let _ = std::fs::write(
                Path::new(&dir).join(format!("member-{}.log", self.child.id())),
                self.stderr.lock().unwrap().as_bytes(),
            );
        }
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(method: &str, addr: &str, path: &str, body: &str) -> (u16, String) {
    common::http_request(method, addr, path, &[("Content-Type", "application/json")], body)
}

/// Clones the remote at `url` into `work/<name>`.
fn clone(url: &str, work: &Path, name: &str) -> PathBuf {
    let dir = work.join(name);
    gantry(&["clone", url, dir.to_str().unwrap()]).expect(0);
    dir
}

/// Every target `t00`… of `names` recorded at 1.0.0, converged, on the remote's state branch
/// (what the members published, whichever led).
fn converged(bare: &Path, names: impl IntoIterator<Item = String>) -> bool {
    let Ok(repo) = git2::Repository::open_bare(bare) else {
        return false;
    };
    let Ok(tree) = repo
        .find_reference("refs/heads/gantry/state")
        .and_then(|r| r.peel_to_tree())
    else {
        return false;
    };
    names.into_iter().all(|name| {
        tree.get_path(Path::new(&format!("targets/{name}.yaml")))
            .ok()
            .and_then(|e| repo.find_blob(e.id()).ok())
            .is_some_and(|b| {
                let text = String::from_utf8_lossy(b.content());
                text.contains("\nversion: \"1.0.0\"") && text.contains("\nstatus: converged")
            })
    })
}

fn fleet(targets: usize) -> impl Iterator<Item = String> {
    (0..targets).map(|i| format!("t{i:02}"))
}

fn leader_of(members: &[Option<Member>]) -> Option<usize> {
    members.iter().position(|m| m.as_ref().is_some_and(Member::is_leader))
}

// ---------------------------------------------------------------------------------------------

/// A member whose --selector differs from the shard's recorded one refuses to start, saying why.
#[test]
fn member_with_other_selectors_than_the_shard_refuses_to_start() {
    let Some(etcd) = Etcd::start() else { return };
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    seed(&server.bare(), &work.path().join("steps.log"), 1, "0");
    let (a, b) = (
        clone(&server.url(), work.path(), "a"),
        clone(&server.url(), work.path(), "b"),
    );
    let first = Member::start(
        &a,
        &etcd.endpoints(),
        &["--shard", "s1", "--selector", "host=a", "--lease-ttl", "2s"],
    );
    wait_for("a leader", Duration::from_secs(20), || first.is_leader().then_some(()));
    let out = gantry(&[
        "--repo",
        b.to_str().unwrap(),
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--etcd",
        &etcd.endpoints(),
        "--shard",
        "s1",
        "--selector",
        "host=b",
    ]);
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr().contains(
            "shard \"s1\" reconciles selector `host=a` but this member has `host=b`: all members of a shard must have the same --selector"
        ),
        "{}",
        out.stderr()
    );
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|k| k.parse().ok()).unwrap_or(default)
}

/// The last lines a member logged, for failure messages.
fn tail(stderr: &Mutex<String>, lines: usize) -> String {
    let text = stderr.lock().unwrap();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One leader at a time; kill -9 of the leader mid-rollout, again and again (GANTRY_TEST_KILLS,
/// default 6 to keep this file near 75 s on a loaded 2-core machine; the figure uses
/// 20): a standby leads within 2 × TTL each time; the fleet converges; no step whose completion
/// etcd had ran again, and no two steps of one target overlapped. Prints the takeover times:
/// kill → a standby reports `leader`, and kill → the first step start after the kill.
///
/// Regression (issue #14, 1 of 3 runs green): rounds stalled with "the leader starts no step
/// within 30 s" because the killed leader's ref lock (`gantry/state.lock`) stayed in its clone,
/// or in the `file://` remote, and every later pass failed to lock it; because a pass whose
/// fenced journal write timed out counted as done, so nothing asked for another; and because a
/// member that had led before replayed its unpublished state commits onto the remote's tip and
/// failed on a claim deletion the remote already had ("file isn't in the tree").
#[test]
fn standby_takes_over_after_kill9_of_the_leader_without_rerunning_or_overlapping() {
    let kills = usize::try_from(env_number("GANTRY_TEST_KILLS", 6)).unwrap();
    kill_the_leader_again_and_again(kills, env_number("GANTRY_TEST_TTL", 2));
}

/// The takeover figure at the default `--lease-ttl` (10 s), for the record: not a timed
/// assertion beyond the 2 × TTL bound. `cargo test --test cluster -- --ignored takeover_figure
/// --nocapture` (GANTRY_TEST_KILLS, default 5; about 15 s a kill).
#[test]
#[ignore = "a measurement (about 75 s): run with --ignored --nocapture"]
fn takeover_figure_at_the_default_lease_ttl() {
    let kills = usize::try_from(env_number("GANTRY_TEST_KILLS", 5)).unwrap();
    kill_the_leader_again_and_again(kills, 10);
}

/// `kills` rounds of: wait for the leader's step, kill -9 the leader, time the takeover, bring
/// the member back as a standby; then the fleet converges and the step log is checked.
fn kill_the_leader_again_and_again(kills: usize, ttl_s: u64) {
    let Some(etcd) = Etcd::start() else { return };
    let ttl = Duration::from_secs(ttl_s);
    // Enough targets that the fleet is not done before the last round: a round lets the leader
    // run a few steps (while the killed member restarts, more under load).
    let targets = 6 * kills + 6;
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    seed(&server.bare(), &log, targets, "0.4");
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| clone(&server.url(), work.path(), &format!("m{i}")))
        .collect();
    let endpoints = etcd.endpoints();
    let ttl_arg = format!("{ttl_s}s");
    let args = ["--lease-ttl", ttl_arg.as_str()];
    let mut stderrs = Stderrs::default();
    let mut members: Vec<Option<Member>> = dirs
        .iter()
        .map(|d| {
            let m = Member::start(d, &endpoints, &args);
            stderrs.add(&m);
            Some(m)
        })
        .collect();
    let mut killed: BTreeMap<u32, f64> = BTreeMap::new();
    let (mut to_leader, mut to_step) = (Vec::new(), Vec::new());
    for round in 0..kills {
        let leader = wait_for("a leader", Duration::from_secs(30), || leader_of(&members));
        // Exactly one leader.
        let leaders = members
            .iter()
            .filter(|m| m.as_ref().is_some_and(Member::is_leader))
            .count();
        assert_eq!(leaders, 1, "round {round}: {leaders} leaders");
        // Let it start a step, then kill it at a moment that varies.
        let before = marks(&log).len();
        let m = members[leader].as_ref().expect("leader");
        wait_for(
            &format!("round {round}: a step by the leader pid {}", m.pid()),
            Duration::from_secs(30),
            || (marks(&log).len() > before).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(50 + 97 * (round as u64 % 5)));
        let mut dead = members[leader].take().expect("leader");
        let pid = dead.pid();
        dead.kill9();
        let at = Instant::now();
        let at_unix = unix_now();
        killed.insert(pid, at_unix);
        let next = wait_for(&format!("round {round}: a new leader"), 3 * ttl, || leader_of(&members));
        let took = at.elapsed();
        assert!(took <= 2 * ttl, "round {round}: takeover took {took:?}");
        to_leader.push(took);
        assert_ne!(next, leader);
        let next_pid = members[next].as_ref().expect("leader").pid();
        let first = wait_or_say(
            &format!("round {round}: the new leader's first step"),
            Duration::from_secs(30),
            || {
                let started: std::collections::BTreeSet<String> =
                    marks(&log).into_iter().filter(|m| m.start).map(|m| m.target).collect();
                format!(
                    "{} of {targets} targets started; the new leader (pid {next_pid}) logged:\n{}",
                    started.len(),
                    tail(&stderrs.0[&next_pid], 40)
                )
            },
            || {
                marks(&log)
                    .iter()
                    .find(|m| m.start && m.pid != pid && m.at > at_unix)
                    .map(|m| m.at)
            },
        );
        to_step.push(Duration::from_secs_f64(first - at_unix));
        // The dead member comes back as a standby on its own clone.
        let back = Member::start(&dirs[leader], &endpoints, &args);
        stderrs.add(&back);
        members[leader] = Some(back);
    }
    wait_for("the fleet to converge", Duration::from_secs(120), || {
        converged(&server.bare(), fleet(targets)).then_some(())
    });
    let reruns =
        check_no_overlap_and_no_rerun(&log, &killed, &|pid, t, from, until| stderrs.acked(pid, t, from, until));
    let (counts, fenced) = outcomes(&server.bare());
    assert!(fenced, "an outcome commit without its Gantry-Fence trailer");
    assert_eq!(counts.len(), targets, "{counts:?}");
    let median_max = |v: &mut Vec<Duration>| {
        v.sort();
        (v[v.len() / 2], *v.last().unwrap())
    };
    let (leader_median, leader_max) = median_max(&mut to_leader);
    let (step_median, step_max) = median_max(&mut to_step);
    eprintln!(
        "takeover after kill -9 (TTL {ttl_s}s, {kills} kills): to a new leader median {leader_median:?} max \
         {leader_max:?}; to its first step start median {step_median:?} max {step_max:?}; {reruns} interrupted \
         step(s) run again (their completion had not reached etcd)"
    );
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// SIGSTOP of the leader during a step for 3 × TTL, then SIGCONT: a standby took over; the old
/// leader starts nothing more; no overlap; every outcome recorded once, with its fence.
#[test]
fn paused_leader_starts_nothing_after_it_resumes() {
    let Some(etcd) = Etcd::start() else { return };
    let targets = 6;
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    seed(&server.bare(), &log, targets, "0.3");
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| clone(&server.url(), work.path(), &format!("m{i}")))
        .collect();
    let endpoints = etcd.endpoints();
    let args = ["--lease-ttl", "2s"];
    let mut stderrs = Stderrs::default();
    let members: Vec<Option<Member>> = dirs
        .iter()
        .map(|d| {
            let m = Member::start(d, &endpoints, &args);
            stderrs.add(&m);
            Some(m)
        })
        .collect();
    let leader = wait_for("a leader", Duration::from_secs(30), || leader_of(&members));
    let old = members[leader].as_ref().unwrap();
    wait_for("a step", Duration::from_secs(30), || {
        (!marks(&log).is_empty()).then_some(())
    });
    old.signal("STOP");
    let paused = Instant::now();
    let other = members[1 - leader].as_ref().unwrap();
    wait_for("the standby to lead", Duration::from_secs(20), || {
        other.is_leader().then_some(())
    });
    // Paused for 3 × TTL in all.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(paused.elapsed()));
    let resumed_at = unix_now();
    old.signal("CONT");
    wait_for("the fleet to converge", Duration::from_secs(60), || {
        converged(&server.bare(), fleet(targets)).then_some(())
    });
    // The resumed member answers again once it has looked at etcd: a standby.
    let d = wait_for("the old leader to answer", Duration::from_secs(20), || old.cluster());
    assert_eq!(d["role"], "standby", "{d}");
    let late: Vec<Mark> = marks(&log)
        .into_iter()
        .filter(|m| m.start && m.pid == old.pid() && m.at > resumed_at)
        .collect();
    assert!(late.is_empty(), "the resumed old leader started steps: {late:?}");
    check_no_overlap_and_no_rerun(&log, &BTreeMap::new(), &|pid, t, from, until| {
        stderrs.acked(pid, t, from, until)
    });
    let (counts, fenced) = outcomes(&server.bare());
    assert_eq!(counts.len(), targets, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "an outcome recorded twice: {counts:?}"
    );
    assert!(fenced, "an outcome commit without its Gantry-Fence trailer");
}

/// One etcd member killed: nothing notices. Two killed: no new step starts and the daemon says
/// why. Restarted: the rollout completes by itself.
///
/// Regression (issue #14, was #[ignore]d as flaky): after quorum came back the rollout did not
/// go on: the passes that ran while etcd had no quorum had attempts that could not start, counted
/// as done, and no further pass was asked for.
#[test]
fn quorum_loss_stops_step_starts_and_quorum_back_completes_the_rollout() {
    let Some(mut etcd) = Etcd::start() else { return };
    let targets = 24;
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    seed(&server.bare(), &log, targets, "0.2");
    let dir = clone(&server.url(), work.path(), "m0");
    let endpoints = etcd.endpoints();
    let member = Member::start(&dir, &endpoints, &["--lease-ttl", "2s"]);
    let mut stderrs = Stderrs::default();
    stderrs.add(&member);
    wait_for("a leader", Duration::from_secs(30), || member.is_leader().then_some(()));
    wait_for("a step", Duration::from_secs(30), || {
        (!marks(&log).is_empty()).then_some(())
    });
    etcd.kill(2);
    let starts = |log: &Path| marks(log).iter().filter(|m| m.start).count();
    let at_one_down = starts(&log);
    wait_for(
        "steps to go on with one etcd member down",
        Duration::from_secs(20),
        || (starts(&log) >= at_one_down + 3).then_some(()),
    );
    assert!(member.is_leader(), "one etcd member down: the leader kept its role");
    etcd.kill(1);
    // Running steps finish; once the local lease view ran out (≤ TTL) no new step starts, and
    // the daemon says why.
    let c = wait_for("the member to report the lost quorum", Duration::from_secs(20), || {
        member
            .cluster()
            .filter(|c| c["role"] == "standby" && c["etcd_error"].is_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    let frozen = starts(&log);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(starts(&log), frozen, "a step started without etcd quorum: {c}");
    assert!(
        !converged(&server.bare(), fleet(targets)),
        "the fleet converged before quorum was lost: the test proves nothing"
    );
    etcd.spawn(1);
    etcd.spawn(2);
    wait_or_say(
        "the fleet to converge",
        Duration::from_secs(60),
        || tail(&member.stderr, 40),
        || converged(&server.bare(), fleet(targets)).then_some(()),
    );
    // A step that finished while etcd had no quorum could not journal its completion there: it
    // ran again (an interrupted step), never alongside. Nothing whose completion etcd had ran twice.
    check_no_overlap_and_no_rerun(&log, &BTreeMap::new(), &|pid, t, from, until| {
        stderrs.acked(pid, t, from, until)
    });
    wait_for("the member to lead with no etcd error", Duration::from_secs(20), || {
        member
            .cluster()
            .filter(|c| c["role"] == "leader" && c["etcd_error"].is_null())
    });
}

// ---------------------------------------------------------------------------------------------
// etcd's keys, read and written as the test's own client (the v3 JSON gateway)

fn b64(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    Base64::encode_string(bytes)
}

fn unb64(text: &serde_json::Value) -> Vec<u8> {
    use base64ct::{Base64, Encoding};
    text.as_str()
        .and_then(|t| Base64::decode_vec(t).ok())
        .unwrap_or_default()
}

impl Etcd {
    fn any_client(&self) -> String {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .expect("a live etcd member");
        format!("127.0.0.1:{}", m.client)
    }

    /// Every key-value under `prefix`.
    fn range(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a prefix") += 1;
        let body = serde_json::json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)}).to_string();
        let (code, text) = http("POST", &self.any_client(), "/v3/kv/range", &body);
        assert_eq!(code, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&unb64(&kv["key"])).into_owned(),
                            unb64(&kv["value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn put(&self, key: &str, value: &[u8]) {
        let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value)}).to_string();
        let (code, text) = http("POST", &self.any_client(), "/v3/kv/put", &body);
        assert_eq!(code, 200, "{text}");
    }
}

/// The case of SPEC §8's table "killed after the outcome was published but before its journal
/// left etcd": a new leader finds in etcd the journal of an attempt whose outcome the remote's
/// state branch already records, and drops it: nothing of it runs again (its step, left
/// `started` in that journal, would otherwise run as an interrupted step) and nothing is
/// recorded twice. (Issue #14: a new leader must check the recorded outcomes.)
#[test]
fn restored_journal_whose_outcome_is_already_published_is_dropped_not_resumed() {
    let Some(etcd) = Etcd::start() else { return };
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    seed(&server.bare(), &log, 1, "1.5");
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| clone(&server.url(), work.path(), &format!("m{i}")))
        .collect();
    let endpoints = etcd.endpoints();
    let args = ["--lease-ttl", "2s"];
    let mut first = Member::start(&dirs[0], &endpoints, &args);
    wait_for("a step", Duration::from_secs(30), || {
        (!marks(&log).is_empty()).then_some(())
    });
    // The journal as etcd holds it while the step runs: header and `step_started`.
    let prefix = "/gantry/shards/default/journal/";
    let (key, journal) = wait_for("the journal in etcd", Duration::from_secs(10), || {
        etcd.range(prefix).into_iter().next()
    });
    assert!(
        String::from_utf8_lossy(&journal).contains("step_started"),
        "{}",
        String::from_utf8_lossy(&journal)
    );
    wait_or_say(
        "the outcome on the remote, and the journal gone from etcd",
        Duration::from_secs(30),
        || tail(&first.stderr, 20),
        || (converged(&server.bare(), fleet(1)) && etcd.range(prefix).is_empty()).then_some(()),
    );
    first.kill9();
    // As if the leader had died after publishing the outcome, before deleting the journal.
    etcd.put(&key, &journal);
    let second = Member::start(&dirs[1], &endpoints, &args);
    wait_or_say(
        "the new leader's first pass after copying the journal from etcd",
        Duration::from_secs(30),
        || tail(&second.stderr, 30),
        || {
            let text = second.stderr.lock().unwrap().clone();
            let copied = text
                .lines()
                .position(|l| l.contains("journals copied from etcd") && l.contains("journals=1"))?;
            text.lines()
                .skip(copied)
                .any(|l| l.contains("pass finished"))
                .then_some(())
        },
    );
    let starts = marks(&log).iter().filter(|m| m.start).count();
    assert_eq!(starts, 1, "the step of an attempt already recorded ran again");
    let (counts, _) = outcomes(&server.bare());
    assert_eq!(counts.get("t00"), Some(&1), "{counts:?}");
    // Journals are the `*.jsonl` files (a finished one may stay as an empty `.spare-*`).
    let left: Vec<_> = std::fs::read_dir(dirs[1].join(".git/gantry/journal"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().ends_with(".jsonl"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "the dropped journal is still there: {left:?}");
}

/// Two shards with disjoint selectors (`host=a`, `host=b`), two members each, on clones of one
/// remote: each shard elects its own leader and together they converge the fleet; every
/// target's step ran once, by a member of its own shard. (GANTRY_TEST_SHARD_TARGETS, default 60.)
#[test]
fn two_shards_with_disjoint_selectors_converge_one_fleet_together() {
    let Some(etcd) = Etcd::start() else { return };
    let targets = usize::try_from(env_number("GANTRY_TEST_SHARD_TARGETS", 60)).unwrap();
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    let host = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
    // One policy per shard (as a sharded fleet has): the shards never wait for each other's
    // maxParallel slots.
    let policies: Vec<(String, String)> = ["a", "b"]
        .iter()
        .map(|h| {
            (
                format!("policies/shard-{h}.yaml"),
                format!(
                    "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: {{ name: shard-{h} }}\nspec:\n  \
                     selector: {{ host: {h} }}\n  rollout:\n    maxParallel: 4\n"
                ),
            )
        })
        .collect();
    seed_labelled(
        &server.bare(),
        &log,
        targets,
        "0",
        |i| format!("host: {}", host(i)),
        &policies,
    );
    let endpoints = etcd.endpoints();
    let members: Vec<(String, Option<Member>)> = ["a", "a", "b", "b"]
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let dir = clone(&server.url(), work.path(), &format!("m{i}"));
            let selector = format!("host={shard}");
            let member = Member::start(
                &dir,
                &endpoints,
                &["--shard", shard, "--selector", &selector, "--lease-ttl", "2s"],
            );
            (shard.to_string(), Some(member))
        })
        .collect();
    for shard in ["a", "b"] {
        wait_for(&format!("shard {shard}'s leader"), Duration::from_secs(30), || {
            let leaders: Vec<&Member> = members
                .iter()
                .filter(|(s, m)| s == shard && m.as_ref().is_some_and(Member::is_leader))
                .filter_map(|(_, m)| m.as_ref())
                .collect();
            (leaders.len() == 1).then_some(())
        });
    }
    wait_or_say(
        "the fleet to converge",
        Duration::from_secs(90),
        || {
            members
                .iter()
                .filter_map(|(s, m)| m.as_ref().map(|m| format!("shard {s}:\n{}", tail(&m.stderr, 8))))
                .collect::<Vec<_>>()
                .join("\n")
        },
        || converged(&server.bare(), fleet(targets)).then_some(()),
    );
    let pids_of = |shard: &str| -> Vec<u32> {
        members
            .iter()
            .filter(|(s, _)| s == shard)
            .filter_map(|(_, m)| m.as_ref().map(Member::pid))
            .collect()
    };
    let all = marks(&log);
    for i in 0..targets {
        let name = format!("t{i:02}");
        let starts: Vec<&Mark> = all.iter().filter(|m| m.start && m.target == name).collect();
        assert_eq!(starts.len(), 1, "{name}: {starts:?}");
        assert!(
            pids_of(host(i)).contains(&starts[0].pid),
            "{name} (host={}) ran on a member of the other shard",
            host(i)
        );
    }
    // Each shard's leader says so in /metrics, under its shard's label.
    for shard in ["a", "b"] {
        let (_, m) = members
            .iter()
            .find(|(s, m)| s == shard && m.as_ref().is_some_and(Member::is_leader))
            .expect("a leader");
        let (code, text) = http("GET", &m.as_ref().unwrap().addr, "/metrics", "");
        assert_eq!(code, 200);
        assert!(
            text.contains(&format!("gantry_cluster_leader{{shard=\"{shard}\"}} 1")),
            "{text}"
        );
    }
}

/// A member taking up a new leadership makes its local state branch the remote's: a state
/// commit it made in an earlier leadership and never published (killed before the push) is
/// stale, and publishing it now would overwrite what later leaders recorded. The journals of
/// such attempts are still in etcd, so nothing is lost. (Issue #14: a restarted member that led
/// before replayed its old commits onto the remote's tip; one of them deleted a claim the
/// remote no longer had, and every sync of that clone failed from then on.)
#[test]
fn a_new_leader_drops_state_commits_its_earlier_leadership_did_not_publish() {
    let Some(etcd) = Etcd::start() else { return };
    let server = GitServer::start();
    let work = tempfile::tempdir().expect("tmp");
    let log = work.path().join("steps.log");
    seed(&server.bare(), &log, 2, "0");
    let endpoints = etcd.endpoints();
    let args = ["--lease-ttl", "2s"];
    let a = clone(&server.url(), work.path(), "a");
    let mut first = Member::start(&a, &endpoints, &args);
    wait_or_say(
        "the fleet to converge",
        Duration::from_secs(30),
        || tail(&first.stderr, 20),
        || converged(&server.bare(), fleet(2)).then_some(()),
    );
    first.kill9();
    // Clone b has the remote's state, plus a commit of an earlier life it never published.
    let b = clone(&server.url(), work.path(), "b");
    let repo = git2::Repository::open(&b).expect("open b");
    let state = repo
        .find_reference("refs/heads/gantry/state")
        .and_then(|r| r.peel_to_commit())
        .expect("b has the state branch");
    let path = Path::new("targets/t00.yaml");
    let entry = state.tree().unwrap().get_path(path).expect("t00's record");
    let record = String::from_utf8(repo.find_blob(entry.id()).unwrap().content().to_vec()).unwrap();
    let stale = record.replace("\nstatus: converged", "\nstatus: failed");
    assert_ne!(stale, record);
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert(path, repo.blob(stale.as_bytes()).unwrap(), git2::FileMode::Blob);
    let tree = repo
        .find_tree(update.create_updated(&repo, &state.tree().unwrap()).unwrap())
        .unwrap();
    let sig = git2::Signature::now("gantry", "gantry@localhost").unwrap();
    let stale_commit = repo
        .commit(
            None,
            &sig,
            &sig,
            "an unpublished record of an earlier leadership",
            &tree,
            &[&state],
        )
        .unwrap();
    repo.reference("refs/heads/gantry/state", stale_commit, true, "test")
        .unwrap();
    let second = Member::start(&b, &endpoints, &args);
    wait_or_say(
        "the new leader's first pass",
        Duration::from_secs(30),
        || tail(&second.stderr, 30),
        || {
            let text = second.stderr.lock().unwrap().clone();
            let copied = text.lines().position(|l| l.contains("journals copied from etcd"))?;
            text.lines()
                .skip(copied)
                .any(|l| l.contains("pass finished"))
                .then_some(())
        },
    );
    assert!(
        converged(&server.bare(), fleet(2)),
        "the stale record of an earlier leadership reached the remote"
    );
    let tip = |r: &git2::Repository| r.refname_to_id("refs/heads/gantry/state").ok();
    let bare = git2::Repository::open_bare(server.bare()).unwrap();
    assert_eq!(tip(&repo), tip(&bare), "b's state branch is the remote's");
    assert_eq!(marks(&log).iter().filter(|m| m.start).count(), 2, "nothing ran again");
}
