//! The `plugin` executor: drives one long-lived program over JSON lines on stdin/stdout (SPEC §5).
//!
//! Protocol, one JSON object per line each way, request ids strictly increasing:
//!
//! ```text
//! → {"id":1,"op":"hello","protocol":1}
//! ← {"id":1,"ok":true,"ops":["deploy","health","observe"]}
//! → {"id":2,"op":"deploy","target":{"name":…,"labels":…,"vars":…,"config":…},"component":"billing",
//!    "version":"2.0.0","from":"1.2.0","to":"2.0.0","attempt":"…","step":{"argv":[…],"timeout_ms":600000}}
//! ← {"id":2,"ok":false,"message":"rollout stuck","observed_version":null}
//! ```
//!
//! `release` and `migration` are sent for migration steps, `from` is absent for an install, and
//! `step.env` carries [`StepRequest::extra_env`] when there is any. The plugin's stderr is appended to the running step's log. The plugin runs in the checkout of the
//! desired commit, in its own process group.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::output::{Capture, Stream, open_log};
use super::shell::{kill_group, process_group_of, signal_name, spawn};
use super::{
    Executor, ExecutorError, Exit, StepKind, StepRequest, StepResult, TemplateContext, human_duration, render_argv,
    resolve_program, truncate_for_message,
};

/// The protocol version gantry speaks.
const PROTOCOL: u32 = 1;
/// A line longer than this is a protocol error (and is not buffered further).
const MAX_LINE: usize = 1 << 20;
/// How much of a bad line is quoted in the step's message.
const QUOTE_CHARS: usize = 200;

/// Runs steps by asking a plugin program (one per executor instance, started on first use).
///
/// # Guarantees
///
/// - The plugin is started lazily by the first step, handshakes with `hello`, and is reused by
///   the following steps. It is restarted when a step comes from a different checkout (so it
///   runs from the same commit as the manifests), and after it timed out, crashed or broke the
///   protocol; a broken plugin therefore fails one step, not every later one.
/// - A step's timeout covers starting the plugin, the handshake and the answer. On timeout the
///   plugin's whole process group is killed.
/// - Dropping the executor kills the plugin's process group.
pub struct PluginExecutor {
    name: String,
    command: Vec<String>,
    /// The id of the last request sent; never reused, also across restarts, so an answer meant
    /// for a previous process can never be taken for the current one.
    last_id: u64,
    process: Option<Plugin>,
}

impl std::fmt::Debug for PluginExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginExecutor")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("running", &self.process.as_ref().map(|p| p.child.id()))
            .finish()
    }
}

/// A running plugin process.
struct Plugin {
    child: Child,
    group: Pid,
    /// Lines to the writer thread, which owns stdin, so that a plugin that stops reading cannot
    /// block gantry past the step's timeout.
    requests: Sender<String>,
    answers: Receiver<Line>,
    stderr: Capture,
    ops: Vec<String>,
    checkout: PathBuf,
}

/// What the stdout reader saw.
enum Line {
    Text(String),
    TooLong(String),
    Eof,
}

#[derive(Serialize)]
struct Hello {
    id: u64,
    op: &'static str,
    protocol: u32,
}

#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    op: StepKind,
    #[serde(flatten)]
    context: &'a TemplateContext,
    step: StepBody<'a>,
}

#[derive(Serialize)]
struct StepBody<'a> {
    argv: &'a [String],
    timeout_ms: u128,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<&'a str, &'a str>,
}

/// An answer. Unknown fields are ignored so plugins can grow without breaking gantry.
#[derive(Deserialize)]
struct Answer {
    id: u64,
    ok: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    observed_version: Option<String>,
    #[serde(default)]
    ops: Option<Vec<String>>,
}

/// Why there is no usable answer.
enum Broken {
    TimedOut,
    /// The message for the step.
    Protocol(String),
}

impl PluginExecutor {
    /// A plugin executor named `name` (the `[executors.NAME]` in gantry.toml) that runs
    /// `command` (program and arguments; a relative program path resolves in the checkout).
    pub fn new(name: impl Into<String>, command: Vec<String>) -> Self {
        PluginExecutor {
            name: name.into(),
            command,
            last_id: 0,
            process: None,
        }
    }

    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            kill_group(p.group);
            let _ = p.child.wait();
        }
    }

    /// Starts the plugin in `step.checkout` and handshakes. `Ok(Err(result))` is a failed step.
    fn start(
        &mut self,
        step: &StepRequest,
        capture: &Capture,
        deadline: Instant,
    ) -> Result<Result<(), StepResult>, ExecutorError> {
        let started = Instant::now();
        let Some(program) = self.command.first() else {
            return Err(ExecutorError::EmptyPluginCommand {
                plugin: self.name.clone(),
            });
        };
        let path = resolve_program(step.kind, program, &step.checkout)?;
        let mut command = Command::new(&path);
        command
            .args(&self.command[1..])
            .current_dir(&step.checkout)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let spawned = spawn(&mut command);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let message = format!("plugin {:?}: cannot start {program}: {e}", self.name);
                return Ok(Err(StepResult::failed(Exit::SpawnFailed, message, started.elapsed())));
            }
        };
        let group = process_group_of(&child);
        let io_err = |what, source| ExecutorError::Io {
            step: step.kind,
            what,
            source,
        };
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(group);
            let _ = child.wait();
            let missing = io::Error::other("child has no stdin/stdout/stderr pipe although all were requested");
            return Err(io_err("connect to the plugin", missing));
        };
        let threads =
            spawn_writer(stdin).and_then(|requests| Ok((requests, spawn_reader(stdout, stderr, capture.clone())?)));
        let (requests, answers) = match threads {
            Ok(t) => t,
            Err(source) => {
                kill_group(group);
                let _ = child.wait();
                return Err(io_err("start the plugin's I/O threads", source));
            }
        };
        self.process = Some(Plugin {
            child,
            group,
            requests,
            answers,
            stderr: capture.clone(),
            ops: Vec::new(),
            checkout: step.checkout.clone(),
        });

        let id = self.next_id();
        let hello = Hello {
            id,
            op: "hello",
            protocol: PROTOCOL,
        };
        match self.exchange(id, "hello", &to_line(&hello), deadline) {
            Ok(answer) if answer.ok => {
                if let Some(p) = self.process.as_mut() {
                    p.ops = answer.ops.unwrap_or_default();
                }
                Ok(Ok(()))
            }
            Ok(answer) => {
                self.stop();
                let message = format!(
                    "plugin {:?} refused the handshake (protocol {PROTOCOL}): {}",
                    self.name,
                    answer.message.as_deref().unwrap_or("no message")
                );
                Ok(Err(StepResult::failed(Exit::ProtocolError, message, started.elapsed())))
            }
            Err(broken) => Ok(Err(self.fail(broken, step, "hello", id, started))),
        }
    }

    /// Sends one line and waits for the answer with the same id.
    fn exchange(&mut self, id: u64, op: &str, line: &str, deadline: Instant) -> Result<Answer, Broken> {
        let name = self.name.clone();
        let Some(p) = self.process.as_mut() else {
            return Err(Broken::Protocol(format!("plugin {name:?} is not running")));
        };
        if p.requests.send(line.to_owned()).is_err() {
            return Err(Broken::Protocol(crashed(&name, op, id, p)));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = match p.answers.recv_timeout(left) {
                Err(RecvTimeoutError::Timeout) => return Err(Broken::TimedOut),
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Broken::Protocol(crashed(&name, op, id, p)));
                }
                Ok(Line::TooLong(start)) => {
                    return Err(Broken::Protocol(format!(
                        "plugin {name:?} sent a line longer than {MAX_LINE} bytes in answer to {op} (request {id}): {:?}",
                        truncate_for_message(&start, QUOTE_CHARS)
                    )));
                }
                Ok(Line::Text(text)) => text,
            };
            if text.trim().is_empty() {
                continue;
            }
            let quoted = truncate_for_message(text.trim_end(), QUOTE_CHARS);
            let answer: Answer = serde_json::from_str(&text).map_err(|e| {
                Broken::Protocol(format!(
                    "plugin {name:?} sent a malformed answer to {op} (request {id}): {e}; it sent: {quoted:?}"
                ))
            })?;
            if answer.id != id {
                return Err(Broken::Protocol(format!(
                    "plugin {name:?} answered id {} to {op} (request {id}); it sent: {quoted:?}",
                    answer.id
                )));
            }
            return Ok(answer);
        }
    }

    /// Turns a broken exchange into a failed step and kills the plugin; the next step starts a
    /// fresh one.
    fn fail(&mut self, broken: Broken, step: &StepRequest, op: &str, id: u64, started: Instant) -> StepResult {
        self.stop();
        let (exit, message) = match broken {
            Broken::TimedOut => (
                Exit::TimedOut(step.timeout),
                format!(
                    "timed out after {}: plugin {:?} did not answer {op} (request {id}); killed it, the next step restarts it",
                    human_duration(step.timeout),
                    self.name
                ),
            ),
            Broken::Protocol(message) => (Exit::ProtocolError, message),
        };
        StepResult::failed(exit, message, started.elapsed())
    }

    fn run_step(&mut self, step: &StepRequest, capture: &Capture) -> Result<StepResult, ExecutorError> {
        let started = Instant::now();
        let deadline = started + step.timeout;
        // Plugins may not need an argv (the op says what to do), so an empty one is fine here.
        let argv = render_argv(step.kind, &step.argv, &step.context)?;

        if self.process.as_ref().is_some_and(|p| p.checkout != step.checkout) {
            self.stop();
        }
        if self.process.is_none()
            && let Err(failed) = self.start(step, capture, deadline)?
        {
            return Ok(failed);
        }
        let Some(p) = self.process.as_ref() else {
            unreachable!("start() returned Ok(Ok) so the plugin process is set");
        };
        if !p.ops.iter().any(|op| op == step.kind.as_str()) {
            return Err(ExecutorError::UnsupportedOp {
                plugin: self.name.clone(),
                op: step.kind,
                ops: p.ops.clone(),
            });
        }

        let id = self.next_id();
        let env = step.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = StepBody {
            argv: &argv,
            timeout_ms: step.timeout.as_millis(),
            env,
        };
        let line = to_line(&Request {
            id,
            op: step.kind,
            context: &step.context,
            step: body,
        });
        match self.exchange(id, step.kind.as_str(), &line, deadline) {
            Ok(answer) => {
                let message = answer
                    .message
                    .unwrap_or_else(|| if answer.ok { "ok" } else { "failed" }.to_owned());
                Ok(StepResult {
                    ok: answer.ok,
                    exit: Exit::Replied,
                    message,
                    output_tail: String::new(),
                    duration: started.elapsed(),
                    observed_version: answer.observed_version,
                })
            }
            Err(broken) => Ok(self.fail(broken, step, step.kind.as_str(), id, started)),
        }
    }
}

impl Executor for PluginExecutor {
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError> {
        // The log is opened up front (and again per step by `run_step`) so a plugin that fails
        // to start still leaves its stderr where the step's log is.
        let capture = match self.process.as_ref() {
            Some(p) => p.stderr.clone(),
            None => Capture::default(),
        };
        capture.begin(open_log(&step.log_path)?, &step.output);
        capture.note(&format!(
            "{} step via plugin {:?} {:?}",
            step.kind, self.name, step.argv
        ));
        let result = self.run_step(step, &capture);
        if let Ok(r) = &result {
            capture.note(&format!("{} step: {}", step.kind, r.message));
        }
        let tail = capture.end();
        result.map(|mut r| {
            r.output_tail = tail;
            r
        })
    }
}

/// The plugin processes of one executor instance, one per step running at the same time.
///
/// Protocol 1 is one request at a time per process (ids strictly increasing, each answered
/// before the next is sent), so concurrency comes from processes: a step takes an idle plugin
/// (started lazily by its first step) or starts another, and gives it back when done. At most
/// as many processes run as steps run at once (`maxParallel`), each keeps its own handshake and
/// id sequence, and a plugin that crashes or times out fails only the step it was serving.
/// This needs nothing new from plugins; the price is that a plugin must tolerate copies of
/// itself running side by side (the demo plugin locks its state file).
pub struct PluginPool {
    name: String,
    command: Vec<String>,
    idle: std::sync::Mutex<Vec<PluginExecutor>>,
}

impl std::fmt::Debug for PluginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginPool")
            .field("name", &self.name)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl PluginPool {
    /// A pool for the executor `name` that runs `command` (see [`PluginExecutor::new`]).
    pub fn new(name: impl Into<String>, command: Vec<String>) -> Self {
        PluginPool {
            name: name.into(),
            command,
            idle: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` with a plugin of its own for as long as `f` runs: an idle one, or a new one
    /// when every started plugin is busy. The plugin is kept for later steps afterwards.
    pub fn with<R>(&self, f: impl FnOnce(&mut dyn Executor) -> R) -> R {
        let idle = || self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let taken = idle().pop();
        let mut plugin = taken.unwrap_or_else(|| PluginExecutor::new(self.name.clone(), self.command.clone()));
        let result = f(&mut plugin);
        idle().push(plugin);
        result
    }

    /// How many plugins are idle (started or not yet); for tests.
    pub fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Drop for PluginExecutor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The message for a plugin whose stdout closed: it exited (or closed stdout) mid-request.
fn crashed(name: &str, op: &str, id: u64, p: &mut Plugin) -> String {
    // Give a plugin that is exiting a moment to do so, to report its real status.
    let give_up = Instant::now() + Duration::from_millis(500);
    let status = loop {
        match p.child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < give_up => thread::sleep(Duration::from_millis(10)),
            _ => break None,
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let how = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by {}", signal_name(sig)),
            (None, None) => format!("ended ({s})"),
        },
        None => "closed its stdout".to_owned(),
    };
    format!("plugin {name:?} {how} before answering {op} (request {id})")
}

fn to_line<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs of strings, numbers and JSON maps cannot fail.
    serde_json::to_string(value).unwrap_or_else(|e| unreachable!("request serializes to JSON: {e}"))
}

fn spawn_writer(mut stdin: ChildStdin) -> io::Result<Sender<String>> {
    let (tx, rx) = mpsc::channel::<String>();
    thread::Builder::new()
        .name("gantry-plugin-stdin".into())
        .spawn(move || {
            for line in rx {
                let written = stdin
                    .write_all(line.as_bytes())
                    .and_then(|()| stdin.write_all(b"\n"))
                    .and_then(|()| stdin.flush());
                if written.is_err() {
                    // The plugin is gone; the reader sees EOF and reports it.
                    break;
                }
            }
        })?;
    Ok(tx)
}

/// Reads the plugin's stdout (answers, split into lines) and stderr (into the step's capture)
/// on one thread.
///
/// One thread for both lets it order them: a plugin writes its stderr before the answer that
/// ends a step, so whenever stdout has data, stderr is drained first. The step's log and tail
/// then hold everything the plugin said about the step by the time its answer is handed over,
/// instead of racing into the next step's log.
fn spawn_reader(stdout: ChildStdout, stderr: ChildStderr, capture: Capture) -> io::Result<Receiver<Line>> {
    let (tx, rx) = mpsc::channel();
    thread::Builder::new().name("gantry-plugin-io".into()).spawn(move || {
        let (mut stdout, mut stderr) = (stdout, stderr);
        let mut stderr_open = true;
        let mut partial: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok((out_ready, err_ready)) = wait_readable(&stdout, stderr_open.then_some(&stderr), PollTimeout::NONE)
        {
            if err_ready {
                stderr_open = drain_stderr(&mut stderr, &capture, &mut buf);
            }
            if !out_ready {
                continue;
            }
            let n = match stdout.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            // Whatever the plugin wrote to stderr before this stdout data is in the pipe now.
            while stderr_open && matches!(wait_readable(&stdout, Some(&stderr), PollTimeout::ZERO), Ok((_, true))) {
                stderr_open = drain_stderr(&mut stderr, &capture, &mut buf);
            }
            if n == 0 {
                let _ = tx.send(Line::Eof);
                break;
            }
            partial.extend_from_slice(&buf[..n]);
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                if tx
                    .send(Line::Text(String::from_utf8_lossy(&line).into_owned()))
                    .is_err()
                {
                    return;
                }
            }
            if partial.len() > MAX_LINE {
                let start = String::from_utf8_lossy(&partial[..QUOTE_CHARS * 4]).into_owned();
                let _ = tx.send(Line::TooLong(start));
                break;
            }
        }
        // Keep copying stderr until the plugin is gone, so a dying plugin's last words are
        // logged; the capture drops them once no step is running.
        while stderr_open {
            stderr_open = drain_stderr(&mut stderr, &capture, &mut buf);
        }
    })?;
    Ok(rx)
}

/// Which of stdout and stderr have data (or hit EOF/error, which a read then reports).
fn wait_readable(
    stdout: &ChildStdout,
    stderr: Option<&ChildStderr>,
    timeout: PollTimeout,
) -> nix::Result<(bool, bool)> {
    let mut fds = vec![PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
    if let Some(err) = stderr {
        fds.push(PollFd::new(err.as_fd(), PollFlags::POLLIN));
    }
    loop {
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    let ready = |fd: Option<&PollFd<'_>>| fd.and_then(PollFd::any).unwrap_or(false);
    Ok((ready(fds.first()), ready(fds.get(1))))
}

/// Reads one chunk of stderr into the capture; false once stderr is closed.
fn drain_stderr(stderr: &mut ChildStderr, capture: &Capture, buf: &mut [u8]) -> bool {
    match stderr.read(buf) {
        Ok(0) => false,
        Ok(n) => {
            capture.write(Stream::Other, &buf[..n]);
            true
        }
        Err(e) => e.kind() == io::ErrorKind::Interrupted,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use tempfile::TempDir;

    use super::*;
    use crate::executor::shell::tests::{process_gone, script};
    use crate::executor::testutil::request;

    fn demo_plugin() -> Vec<String> {
        vec![concat!(env!("CARGO_MANIFEST_DIR"), "/examples/plugins/gantry-executor-demo.py").to_owned()]
    }

    /// A python plugin that handshakes correctly and then does `after_hello` (python code with
    /// `req` bound to the parsed request).
    fn faulty_plugin(dir: &Path, after_hello: &str) -> Vec<String> {
        let body = format!(
            "#!/usr/bin/env python3\nimport json, sys, time, os\n\
             for line in sys.stdin:\n    req = json.loads(line)\n\
             \x20   if req['op'] == 'hello':\n\
             \x20       print(json.dumps({{'id': req['id'], 'ok': True, 'ops': ['deploy', 'health']}}), flush=True)\n\
             \x20       continue\n\
             {}\n",
            after_hello
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        script(dir, "plugin.py", &body);
        vec!["./plugin.py".to_owned()]
    }

    fn deploy(dir: &Path) -> StepRequest {
        let mut req = request(
            StepKind::Deploy,
            &["helm", "upgrade", "{{ target.name }}", "--version={{ version }}"],
            dir,
        );
        req.timeout = Duration::from_secs(5);
        req
    }

    #[test]
    fn demo_plugin_handshakes_deploys_and_observes() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new("demo", demo_plugin());

        let result = ex.run(&deploy(dir.path())).unwrap();
        assert!(result.ok, "{result:?}");
        assert_eq!(result.exit, Exit::Replied);
        assert_eq!(
            result.message,
            "deployed billing 2.0.0 to acme (helm upgrade acme --version=2.0.0)"
        );
        // The plugin logs to stderr, which lands in the step log and the tail.
        assert!(
            result.output_tail.contains("demo: deploy acme"),
            "{:?}",
            result.output_tail
        );
        let pid = ex.process.as_ref().unwrap().child.id();

        // Reused for the next step: same process, state kept.
        let observed = ex.run(&request(StepKind::Observe, &[], dir.path())).unwrap();
        assert_eq!(observed.observed_version.as_deref(), Some("2.0.0"));
        assert_eq!(ex.process.as_ref().unwrap().child.id(), pid);
        assert_eq!(ex.last_id, 3, "hello, deploy, observe");
        let log = fs::read_to_string(dir.path().join("logs/step.log")).unwrap();
        assert!(log.contains("demo: observe acme"), "{log}");

        drop(ex);
        assert!(process_gone(pid as i32), "plugin survived drop");
    }

    #[test]
    fn request_carries_the_context_and_the_rendered_argv() {
        let dir = TempDir::new().unwrap();
        let echo =
            "print(json.dumps({'id': req['id'], 'ok': True, 'message': json.dumps(req, sort_keys=True)}), flush=True)";
        let mut ex = PluginExecutor::new("p", faulty_plugin(dir.path(), echo));
        let mut req = deploy(dir.path());
        req.extra_env = vec![("GANTRY_REPO".into(), "/srv/repo".into())];
        let result = ex.run(&req).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&result.message).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({
                "id": 2, "op": "deploy", "component": "billing", "version": "2.0.0",
                "from": "1.2.0", "to": "2.0.0", "attempt": "a1",
                "commit": "4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e",
                "target": {"name": "acme", "labels": {"env": "prod"}, "vars": {"host": "clinic-1.internal"}, "config": {}},
                "step": {"argv": ["helm", "upgrade", "acme", "--version=2.0.0"], "timeout_ms": 5000, "env": {"GANTRY_REPO": "/srv/repo"}},
            })
        );
    }

    #[test]
    fn op_not_offered_is_refused() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new(
            "p",
            faulty_plugin(
                dir.path(),
                "print(json.dumps({'id': req['id'], 'ok': True}), flush=True)",
            ),
        );
        let err = ex.run(&request(StepKind::Snapshot, &[], dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugin \"p\" does not offer op \"snapshot\" (it offers: deploy, health)"
        );
    }

    #[test]
    fn plugin_crash_mid_request_is_a_failed_step() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new(
            "p",
            faulty_plugin(dir.path(), "sys.stderr.write('boom\\n')\nsys.exit(3)"),
        );
        let result = ex.run(&deploy(dir.path())).unwrap();
        assert!(!result.ok);
        assert_eq!(result.exit, Exit::ProtocolError);
        assert_eq!(
            result.message,
            "plugin \"p\" exited with status 3 before answering deploy (request 2)"
        );
        assert!(ex.process.is_none());
    }

    #[test]
    fn garbage_line_is_a_failed_step_quoting_it() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new(
            "p",
            faulty_plugin(dir.path(), "print('Traceback: something ' + 'x' * 500, flush=True)"),
        );
        let result = ex.run(&deploy(dir.path())).unwrap();
        assert_eq!(result.exit, Exit::ProtocolError);
        assert!(
            result
                .message
                .starts_with("plugin \"p\" sent a malformed answer to deploy (request 2): "),
            "{}",
            result.message
        );
        assert!(
            result.message.contains("it sent: \"Traceback: something xxx"),
            "{}",
            result.message
        );
        assert!(result.message.len() < 400, "quote not truncated: {}", result.message);
    }

    #[test]
    fn wrong_id_is_a_failed_step_and_the_plugin_restarts() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new(
            "p",
            faulty_plugin(
                dir.path(),
                "print(json.dumps({'id': req['id'] + 40, 'ok': True}), flush=True)",
            ),
        );
        let result = ex.run(&deploy(dir.path())).unwrap();
        assert_eq!(result.exit, Exit::ProtocolError);
        assert_eq!(
            result.message,
            "plugin \"p\" answered id 42 to deploy (request 2); it sent: \"{\\\"id\\\": 42, \\\"ok\\\": true}\""
        );
        // Restarted on next use: a new hello (3), then the step (4).
        let again = ex.run(&deploy(dir.path())).unwrap();
        assert!(
            again.message.contains("answered id 44 to deploy (request 4)"),
            "{}",
            again.message
        );
    }

    #[test]
    fn timeout_kills_the_plugin_and_the_next_step_restarts_it() {
        let dir = TempDir::new().unwrap();
        let hang_on_request = "if 'hang' in req['step']['argv']:\n    time.sleep(300)\n\
                               print(json.dumps({'id': req['id'], 'ok': True}), flush=True)";
        let mut ex = PluginExecutor::new("p", faulty_plugin(dir.path(), hang_on_request));
        // Start it with a generous timeout first, so a slow interpreter start on a busy machine
        // does not eat the 1s budget of the step under test.
        assert!(ex.run(&deploy(dir.path())).unwrap().ok);
        let pid = ex.process.as_ref().unwrap().child.id();

        let mut req = request(StepKind::Deploy, &["hang"], dir.path());
        req.timeout = Duration::from_secs(1);
        let started = Instant::now();
        let result = ex.run(&req).unwrap();

        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(result.exit, Exit::TimedOut(Duration::from_secs(1)));
        assert_eq!(
            result.message,
            "timed out after 1s: plugin \"p\" did not answer deploy (request 3); killed it, the next step restarts it"
        );
        assert!(ex.process.is_none());
        assert!(process_gone(pid as i32), "timed-out plugin {pid} survived");
        let again = ex.run(&deploy(dir.path())).unwrap();
        assert!(again.ok, "{again:?}");
        assert_ne!(ex.process.as_ref().unwrap().child.id(), pid);
    }

    #[test]
    fn plugin_that_cannot_start_is_a_failed_step() {
        let dir = TempDir::new().unwrap();
        let mut ex = PluginExecutor::new("k8s", vec!["bin/missing-plugin".into()]);
        let result = ex.run(&deploy(dir.path())).unwrap();
        assert_eq!(result.exit, Exit::SpawnFailed);
        assert!(
            result
                .message
                .starts_with("plugin \"k8s\": cannot start bin/missing-plugin"),
            "{}",
            result.message
        );
    }
}
