//! `GET /api/events` (issue #15: "/api/events → 404"): the daemon's progress as server-sent
//! events, read by a plain TCP client while a real daemon reconciles a real repository. Steps
//! block on fifos the test controls, and every wait is bounded polling, never a sleep.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Repo, bumped_fleet, component, release, target};

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One SSE message.
#[derive(Debug, Clone)]
struct Event {
    id: u64,
    kind: String,
    data: serde_json::Value,
}

/// A plain HTTP/1.1 client of `/api/events`: reads the chunked body and splits it into
/// messages (comments and `retry:` are skipped; `raw` keeps everything read, for assertions).
struct EventClient {
    reader: BufReader<TcpStream>,
    pending: String,
    raw: String,
    /// The body's last chunk (size 0) arrived: the server ended the stream, rather than the
    /// connection being cut.
    ended: bool,
}

impl EventClient {
    /// Sends the request; returns the status code and, for a 200, the client.
    fn connect(addr: &str, host: &str, last_event_id: Option<u64>) -> (u16, Option<EventClient>) {
        let mut stream = TcpStream::connect(addr).unwrap();
        // Bounds every read: a stream that stops sending fails the test instead of hanging it.
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut request = format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            request.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut headers = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            headers.push_str(&line.to_ascii_lowercase());
        }
        if code != 200 {
            return (code, None);
        }
        assert!(headers.contains("content-type: text/event-stream"), "{headers}");
        assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
        let client = EventClient {
            reader,
            pending: String::new(),
            raw: String::new(),
            ended: false,
        };
        (code, Some(client))
    }

    /// The next chunk of the body (`None` at its end).
    fn chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        self.reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            self.ended = true;
            return None;
        }
        let mut bytes = vec![0; size + 2];
        self.reader.read_exact(&mut bytes).ok()?;
        bytes.truncate(size);
        Some(String::from_utf8(bytes).unwrap())
    }

    /// The next message with an id (`None` when the stream ends).
    fn next(&mut self) -> Option<Event> {
        loop {
            while let Some((block, rest)) = self.pending.split_once("\n\n") {
                let block = block.to_string();
                self.pending = rest.to_string();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name).map(str::to_string));
                if let (Some(id), Some(kind), Some(data)) = (field("id: "), field("event: "), field("data: ")) {
                    return Some(Event {
                        id: id.parse().unwrap(),
                        kind,
                        data: serde_json::from_str(&data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}")),
                    });
                }
            }
            let chunk = self.chunk()?;
            self.raw.push_str(&chunk);
            self.pending.push_str(&chunk);
        }
    }

    /// Messages up to and including the first `attempt_finished` of `target`.
    fn until_finished(&mut self, target: &str) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let event = self
                .next()
                .unwrap_or_else(|| panic!("the stream ended before {target} finished: {events:#?}"));
            let done = event.kind == "attempt_finished" && event.data["target"] == target;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn daemon(repo: &Repo) -> (std::process::Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["daemon", "--listen", "127.0.0.1:0"])
        .env("GANTRY_REPO_DIR", repo.path())
        .env_remove("GANTRY_NOW");
    common::spawn_daemon(command)
}

/// A client connected while the daemon runs an upgrade gets, in order and with increasing ids,
/// the attempt's start, each step's start and finish, and its outcome, as the same JSON
/// `apply --format json` prints; one that reconnects with `Last-Event-ID` gets only what came
/// after that id.
#[test]
fn a_client_sees_the_attempt_its_steps_and_outcome_in_order_and_resumes_after_last_event_id() {
    let repo = bumped_fleet();
    let (mut child, addr, stderr) = daemon(&repo);
    wait_for_file(&repo.path().join("started"));
    let (code, client) = EventClient::connect(&addr, &addr, None);
    assert_eq!(code, 200);
    let mut client = client.unwrap();
    // The step runs now: what the client saw before is the ring's, the rest arrives live.
    std::fs::write(repo.path().join("release.fifo"), "go\n").unwrap();
    let events = client.until_finished("acme");

    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    for e in &events {
        assert_eq!(
            e.data["event"],
            e.kind.as_str(),
            "the kind is the JSON's `event`: {e:?}"
        );
    }
    let acme: Vec<&Event> = events.iter().filter(|e| e.data["target"] == "acme").collect();
    let kinds: Vec<&str> = acme.iter().map(|e| e.kind.as_str()).collect();
    let started = acme
        .iter()
        .position(|e| e.kind == "attempt_started")
        .expect("attempt_started");
    let start = &acme[started].data;
    assert_eq!(
        (start["from"].as_str(), start["to"].as_str()),
        (Some("1.0.0"), Some("1.1.0")),
        "{start}"
    );
    assert_eq!(start["component"], "billing");
    let attempt = start["attempt"].as_str().unwrap().to_string();
    let of_attempt: Vec<&Event> = acme[started..].to_vec();
    assert!(
        of_attempt.iter().all(|e| e.data["attempt"] == attempt.as_str()),
        "{kinds:?}"
    );
    // attempt_started, then (step_started, step_finished)+, then attempt_finished.
    let middle = &of_attempt[1..of_attempt.len() - 1];
    assert!(!middle.is_empty() && middle.len().is_multiple_of(2), "{kinds:?}");
    for pair in middle.chunks(2) {
        assert_eq!(
            (pair[0].kind.as_str(), pair[1].kind.as_str()),
            ("step_started", "step_finished"),
            "{kinds:?}"
        );
        assert_eq!(pair[0].data["step"], pair[1].data["step"], "{kinds:?}");
        assert_eq!(pair[1].data["ok"], true, "{:?}", pair[1]);
    }
    assert!(
        middle
            .iter()
            .any(|e| e.data["step"].as_str().is_some_and(|s| s.contains("deploy"))),
        "{kinds:?}"
    );
    let last = of_attempt.last().unwrap();
    assert_eq!(last.data["outcome"], "succeeded", "{:?}", last);

    // Reconnect as a browser's EventSource does after a drop, naming the first step's start.
    let resume_at = middle[0].id;
    let (code, again) = EventClient::connect(&addr, &addr, Some(resume_at));
    assert_eq!(code, 200);
    let mut again = again.unwrap();
    let resumed = again.until_finished("acme");
    let resumed_ids: Vec<u64> = resumed.iter().map(|e| e.id).collect();
    let want: Vec<u64> = ids.iter().copied().filter(|id| *id > resume_at).collect();
    assert_eq!(resumed_ids, want, "exactly what came after Last-Event-ID {resume_at}");
    assert_eq!(resumed[0].kind, "step_finished");

    let _ = child.kill();
    let _ = child.wait();
    let log = stderr.lock().unwrap().clone();
    assert!(!log.contains("panicked"), "{log}");
}

/// A client that opens the stream and never reads must not hold up the daemon: the pass of a
/// 40-target bump finishes, every target converges and `/healthz` answers while the client is
/// still connected. (On loopback the kernel's send buffer autotunes and took the whole pass,
/// ~95 KB, so the client's 64-message queue does not overflow here; the `server::stream` unit
/// tests show that drop path message by message.)
#[test]
fn a_client_that_never_reads_does_not_stop_the_pass() {
    const TARGETS: usize = 40;
    let repo = Repo::new();
    // Four steps per upgrade: ten messages per target, more than the loopback socket's buffers
    // and the client's queue hold together.
    repo.file(
        "components/billing.yaml",
        &component(
            "billing",
            "    precheck: [\"true\"]\n    snapshot: [\"true\"]\n    health: [\"true\"]\n",
        ),
    )
    .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
    .file("releases/billing-1.0.0.yaml", &release("billing", "1.0.0", ""))
    .file("releases/billing-1.1.0.yaml", &release("billing", "1.1.0", ""));
    let names: Vec<String> = (0..TARGETS)
        .map(|n| format!("tenant-with-a-rather-long-name-so-events-are-larger-{n:03}"))
        .collect();
    for name in &names {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "billing", "1.0.0", "env: prod"),
        );
    }
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    let (mut child, addr, stderr) = daemon(&repo);

    // The stuck client: the request sent, nothing ever read.
    let mut stuck = TcpStream::connect(&addr).unwrap();
    write!(stuck, "GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    // `None` while the status cannot be computed (a 500 mid-pass, reading a journal the pass
    // just removed, is printed and polled again).
    let status = || -> Option<serde_json::Value> {
        let (code, body) = common::http_request("GET", &addr, "/api/status", &[], "");
        if code != 200 {
            eprintln!("/api/status answered {code}: {body}");
            return None;
        }
        Some(serde_json::from_str(&body).unwrap())
    };

    for name in &names {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "billing", "1.1.0", "env: prod"),
        );
    }
    repo.commit_all("bump all");

    let start = Instant::now();
    loop {
        let json = status().unwrap_or_default();
        let converged = json["targets"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter(|t| t["current"] == "1.1.0" && t["status"] == "converged")
            .count();
        if converged == TARGETS {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{converged}/{TARGETS} converged; daemon log:\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        common::http_request("GET", &addr, "/healthz", &[], ""),
        (200, "ok".to_string())
    );
    // The stuck client is still connected (the daemon never waited for it).
    assert!(stuck.peer_addr().is_ok());
    drop(stuck);
    let _ = child.kill();
    let _ = child.wait();
}

/// The stream is behind the same Host check as the rest of the API (DNS rebinding): a foreign
/// Host gets 421 and no events.
#[test]
fn a_foreign_host_gets_421_from_the_event_stream() {
    let repo = bumped_fleet();
    let (mut child, addr, _stderr) = daemon(&repo);
    let (code, client) = EventClient::connect(&addr, "attacker.example", None);
    assert_eq!(code, 421);
    assert!(client.is_none());
    let (code, _) = EventClient::connect(&addr, &addr, None);
    assert_eq!(code, 200, "the listen address itself is accepted");
    std::fs::write(repo.path().join("release.fifo"), "go\n").ok();
    let _ = child.kill();
    let _ = child.wait();
}

/// Secrets never leave through the stream: a step whose program is named after a `[secrets]`
/// var fails, and its messages on the stream carry `***` where the value was.
#[test]
fn event_data_is_redacted_like_the_rest_of_the_daemons_output() {
    const SECRET: &str = "s3cr3t-token-value-1234";
    let repo = Repo::new();
    repo.file("gantry.toml", "[secrets]\nvars = [\"token\"]\n")
        .file(
            "components/ledger.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: ledger }\nspec:\n  steps:\n    deploy: [\"scripts/{{ target.vars.token }}.sh\"]\n",
        )
        .file("releases/ledger.yaml", &release("ledger", "1.0.0", ""))
        .file(
            "targets/zen.yaml",
            &format!("{}  vars: {{ token: \"{SECRET}\" }}\n", target("zen", "ledger", "1.0.0", "env: prod")),
        );
    repo.commit_all("fleet");
    let (mut child, addr, _stderr) = daemon(&repo);
    let (code, client) = EventClient::connect(&addr, &addr, None);
    assert_eq!(code, 200);
    let mut client = client.unwrap();
    let events = client.until_finished("zen");
    let _ = child.kill();
    let _ = child.wait();
    assert!(!client.raw.contains(SECRET), "{}", client.raw);
    let finished = events.last().unwrap();
    assert_ne!(finished.data["outcome"], "succeeded", "{finished:?}");
    assert!(
        client.raw.contains("scripts/***.sh"),
        "the redacted message is there: {}",
        client.raw
    );
}

/// Wave and rollout progress: after the pass that upgrades a staged rollout's canary, the
/// stream carries `wave_started` and `wave_completed` for the canary wave and a
/// `rollout_progress` naming the targets done, after the attempt's own events.
#[test]
fn waves_and_rollout_progress_are_streamed_after_the_pass() {
    let repo = Repo::new();
    repo.file("components/api.yaml", &component("api", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file(
            "releases/api.yaml",
            &format!("{}---\n{}", release("api", "1.0.0", ""), release("api", "1.1.0", "")),
        )
        .file(
            "policies/staged.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 30m }\n      - { name: all, percent: 100 }\n",
        );
    for (name, ring) in [("api-0", "0"), ("api-1", "1"), ("api-2", "1")] {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "api", "1.0.0", &format!("ring: \"{ring}\"")),
        );
    }
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    let (mut child, addr, _stderr) = daemon(&repo);
    let (code, client) = EventClient::connect(&addr, &addr, None);
    assert_eq!(code, 200);
    let mut client = client.unwrap();
    for name in ["api-0", "api-1", "api-2"] {
        let path = repo.path().join(format!("targets/{name}.yaml"));
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("version: \"1.0.0\"", "version: \"1.1.0\"")).unwrap();
    }
    repo.commit_all("api 1.1.0");

    let mut events = Vec::new();
    let progress = loop {
        let event = client.next().unwrap_or_else(|| panic!("the stream ended: {events:#?}"));
        events.push(event.clone());
        if event.kind == "rollout_progress" {
            break event;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let position = |kind: &str| kinds.iter().position(|k| *k == kind);
    let finished = position("attempt_finished").unwrap_or_else(|| panic!("{kinds:?}"));
    let started = position("wave_started").unwrap_or_else(|| panic!("{kinds:?}"));
    let completed = position("wave_completed").unwrap_or_else(|| panic!("{kinds:?}"));
    assert!(finished < started && started < completed, "{kinds:?}");
    for e in [&events[started], &events[completed]] {
        assert_eq!(
            (
                e.data["component"].as_str(),
                e.data["version"].as_str(),
                e.data["wave"].as_str()
            ),
            (Some("api"), Some("1.1.0"), Some("canary")),
            "{e:?}"
        );
    }
    // The canary soaks for 30 minutes: one target of the rollout is done, the canary wave
    // completed, the second wave not started.
    let data = &progress.data;
    assert_eq!(
        (data["component"].as_str(), data["version"].as_str()),
        (Some("api"), Some("1.1.0")),
        "{data}"
    );
    assert_eq!(data["succeeded"], 1, "{data}");
    assert_eq!(data["halted"], false, "{data}");
    assert_eq!(data["waves"][0]["name"], "canary", "{data}");
    assert!(data["waves"][0]["completed"].is_string(), "{data}");
    assert!(
        data["waves"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(|w| w["started"].is_null()),
        "{data}"
    );
}

/// Streams end when the daemon stops (SIGTERM), so they do not hold its shutdown open: the
/// client reads the body's end, and the daemon exits 0.
#[test]
fn streams_end_when_the_daemon_stops() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    repo.commit_all("fleet");
    let (mut child, addr, _stderr) = daemon(&repo);
    let (code, client) = EventClient::connect(&addr, &addr, None);
    assert_eq!(code, 200);
    let mut client = client.unwrap();
    client.until_finished("acme");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let started = Instant::now();
    // `next` returns `None` at the body's last chunk; a read timeout would panic instead.
    while let Some(event) = client.next() {
        assert!(started.elapsed() < Duration::from_secs(20), "{event:?}");
    }
    // Without the hub's close, the server's drain gave up after 5 s and dropped the
    // connection mid-body: no last chunk.
    assert!(client.ended, "the stream ended with its last chunk: {}", client.raw);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}
