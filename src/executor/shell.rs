//! The built-in `shell` executor: runs a step's rendered argv directly (no shell) in the checkout.
//!
//! Each step runs in a new process group so that a timeout, or the end of the step, can kill
//! everything the step started, including children it put in the background.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::output::{Capture, Stream, open_log};
use super::running;
use super::spawn::{StepCommand, StepProcess, spawn_step};
use super::{Executor, ExecutorError, Exit, StepKind, StepRequest, StepResult, human_duration, resolve_program};

/// After a step's processes are gone, how long to wait for its output pipes to close. They only
/// stay open if a process escaped the group (e.g. with `setsid`) and kept them; gantry does not
/// wait for such a process.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs steps as local processes. Stateless: one instance may run any number of steps.
///
/// # Guarantees
///
/// - argv elements reach the program exactly as rendered, one element each; nothing is
///   interpreted by a shell.
/// - The process runs in the checkout with stdin closed, the inherited environment plus
///   `GANTRY_*` (see [`StepRequest::env`]), and stdout and stderr appended to the step log.
/// - When `run` returns, the step's process group has been sent `SIGKILL`: after a timeout,
///   and also after a normal exit, so background children (`sleep 1000 &`) do not outlive the
///   step. A step that must leave a service running hands it to a service manager or detaches
///   it into its own session (`setsid`), like in a CI job.
#[derive(Debug, Default, Clone)]
pub struct ShellExecutor {
    _private: (),
}

impl ShellExecutor {
    pub fn new() -> Self {
        ShellExecutor { _private: () }
    }
}

impl Executor for ShellExecutor {
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError> {
        let argv = step.render_argv()?;
        let program = resolve_program(step.kind, &argv[0], &step.checkout)?;
        if !step.checkout.is_dir() {
            return Err(ExecutorError::InvalidCheckout {
                step: step.kind,
                checkout: step.checkout.clone(),
                problem: "does not exist",
            });
        }
        let capture = Capture::default();
        capture.begin(open_log(&step.log_path)?, &step.output);
        // The templates, not the rendered argv: rendered values may hold secrets.
        capture.note(&format!(
            "{} step {:?} in {}",
            step.kind,
            step.argv,
            step.checkout.display()
        ));

        // stdout and stderr share one pipe, so the log shows them in the order they were
        // written. An observe step reads stdout on its own, since its version is printed there.
        let io_err = |what| {
            move |source| ExecutorError::Io {
                step: step.kind,
                what,
                source,
            }
        };
        let (merged_out, merged_in) = io::pipe().map_err(io_err("create the output pipe"))?;
        let separate_stdout = step.kind == StepKind::Observe;
        let stdout_pipe = if separate_stdout {
            Some(io::pipe().map_err(io_err("create the output pipe"))?)
        } else {
            None
        };
        let devnull = dev_null().map_err(io_err("open /dev/null"))?;

        let started = Instant::now();
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.extend(step.extra_env.iter().map(|(k, v)| (k.into(), v.into())));
        env.extend(step.env().into_iter().map(|(k, v)| (k.into(), v.into())));
        let spawned = spawn_retrying(&StepCommand {
            program: &program,
            argv: &argv,
            env,
            cwd: &step.checkout,
            stdin: devnull.as_fd(),
            stdout: stdout_pipe.as_ref().map_or(merged_in.as_fd(), |(_, w)| w.as_fd()),
            stderr: merged_in.as_fd(),
        });
        // Close our copies of the pipes' write ends: the reader sees EOF once the step's
        // processes are gone, not never.
        drop(merged_in);
        let stdout_out = stdout_pipe.map(|(r, _)| r);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let message = spawn_failure(&argv[0], &program, &step.checkout, &e);
                capture.note(&message);
                capture.end();
                return Ok(StepResult::failed(Exit::SpawnFailed, message, started.elapsed()));
            }
        };
        let group = child.pid();
        // Where a resumed attempt finds this step's processes if gantry dies now (issue #10, bug 7).
        let marker = mark_running(&step.log_path, group);

        // One thread (this one) copies the output and watches for the end of the step: no
        // thread per step (issue #17: three threads per attempt cost more than the step).
        let mut outputs = vec![(File::from(OwnedFd::from(merged_out)), Stream::Other)];
        if let Some(out) = stdout_out {
            outputs.push((File::from(OwnedFd::from(out)), Stream::Stdout));
        }
        let mut watch = StepWatch {
            outputs,
            exit: LeaderExit::watch(group),
            capture: &capture,
        };
        let ended = wait_then_kill_group(&mut child, group, step.timeout, &mut watch)
            .map_err(io_err("wait for the step process"))?;
        // The group is killed: nothing of this step is left to find.
        if let Some(marker) = marker {
            marker.clear();
        }
        let duration = started.elapsed();

        if !watch.drain(Instant::now() + OUTPUT_GRACE) {
            capture.note("output still open after the step ended: a process left the step's process group");
        }
        drop(watch);

        let (ok, exit, message) = describe_end(ended, step.timeout);
        let observed_version = if ok && step.kind == StepKind::Observe {
            capture.last_stdout_line()
        } else {
            None
        };
        capture.note(&format!(
            "{} step {message} after {}",
            step.kind,
            human_duration(duration)
        ));
        Ok(StepResult {
            ok,
            exit,
            message,
            output_tail: capture.end(),
            duration,
            observed_version,
        })
    }
}

/// The start time of `pid` (clock ticks since boot, `/proc/<pid>/stat` field 22), which tells a
/// process apart from a later one that got the same pid.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// `(state, process group)` of `pid` from `/proc/<pid>/stat`.
fn state_and_group(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let group = rest.nth(1)?.parse().ok()?;
    Some((state, group))
}

/// Processes of `group` that still run (zombies run nothing and are not counted).
fn live_members(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| matches!(state_and_group(pid), Some((state, g)) if g == group && state != 'Z' && state != 'X'))
        .collect()
}

/// Before an interrupted attempt runs again: kills whatever is left of the step that was running
/// when the reconciler died (its process group, from its record in `running-steps` next to the
/// log directory, or the `<attempt>.pgid` marker an older gantry wrote next to `log_path`) and waits until none of it
/// runs, so the resumed step never overlaps the interrupted one.
///
/// # Guarantees
/// Never signals an unrelated process: a group id stays reserved while any member lives, so if
/// the leader's pid now names a process with another start time, the old group is empty.
///
/// # Errors
/// A process of the group still runs after `wait` (it ignored `SIGKILL`: stuck in the kernel).
pub fn reap_interrupted_step(log_path: &Path, wait: Duration) -> io::Result<()> {
    let dir = running_dir(log_path);
    let attempt = attempt_of(log_path);
    // A gantry before issue #17 marked the step in `<attempt>.pgid`; a record in
    // `running-steps` is what this one writes.
    let legacy = log_path.with_extension("pgid");
    let (group, started) = match std::fs::read_to_string(&legacy) {
        Ok(text) => {
            let mut fields = text.split_whitespace();
            (
                fields.next().and_then(|g| g.parse().ok()),
                fields.next().and_then(|s| s.parse().ok()),
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => match running::take_left_behind(dir, &attempt)? {
            Some(record) => (Some(record.group), Some(record.start)),
            None => return Ok(()),
        },
        Err(e) => return Err(e),
    };
    if let Some(group) = group.filter(|g: &i32| *g > 1)
        && !leader_pid_reused(group, started.unwrap_or(0))
    {
        let deadline = Instant::now() + wait;
        loop {
            kill_group(Pid::from_raw(group));
            let left = live_members(group);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "process{} {} of the interrupted step (group {group}) still run{} after SIGKILL",
                    if left.len() == 1 { "" } else { "es" },
                    left.iter().map(i32::to_string).collect::<Vec<_>>().join(", "),
                    if left.len() == 1 { "s" } else { "" }
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::info!(pgid = group, "killed what was left of the interrupted step");
    }
    match std::fs::remove_file(&legacy) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => running::forget_left_behind(dir, &attempt),
        Err(e) => Err(e),
    }
}

/// Whether `group`'s leader pid now names a later process than the one that started at
/// `started` (0: unknown, never counts as reused).
pub(crate) fn leader_pid_reused(group: i32, started: u64) -> bool {
    matches!(start_time(group), Some(now) if started != 0 && now != started)
}

/// The attempt a step log belongs to: its file name without `.log`.
fn attempt_of(log_path: &Path) -> String {
    log_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where `running-steps` is: next to the log directory (`.git/gantry/running-steps` for
/// `.git/gantry/logs/<attempt>.log`, as `.git/gantry/artifacts` is), so the log directory holds
/// only logs.
fn running_dir(log_path: &Path) -> &Path {
    let logs = log_path.parent().unwrap_or(Path::new("."));
    logs.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(logs)
}

/// Records the running step's group where a resumed attempt finds it ([`running`]).
fn mark_running(log_path: &Path, group: Pid) -> Option<running::RunningStep> {
    let dir = running_dir(log_path);
    let start = start_time(group.as_raw()).unwrap_or_default();
    running::mark(dir, &attempt_of(log_path), group.as_raw(), start)
}

/// How the step's main process ended.
#[derive(Debug, Clone, Copy)]
enum Ended {
    Finished(ExitStatus),
    TimedOut,
}

fn describe_end(ended: Ended, timeout: Duration) -> (bool, Exit, String) {
    match ended {
        Ended::TimedOut => (
            false,
            Exit::TimedOut(timeout),
            format!(
                "timed out after {}; its process group was killed",
                human_duration(timeout)
            ),
        ),
        Ended::Finished(status) => match (status.code(), status.signal()) {
            (Some(code), _) => (code == 0, Exit::Code(code), format!("exited with status {code}")),
            (None, Some(sig)) => {
                let name = signal_name(sig);
                (false, Exit::Signal(name.clone()), format!("killed by {name}"))
            }
            // Neither a code nor a signal cannot happen for a process we waited for to end.
            (None, None) => (false, Exit::Code(-1), format!("ended with unknown status {status}")),
        },
    }
}

pub(crate) fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// A message that says which program, where, and what to do about it.
fn spawn_failure(argv0: &str, program: &Path, checkout: &Path, e: &io::Error) -> String {
    let in_checkout = argv0.contains('/') && !Path::new(argv0).is_absolute();
    match e.kind() {
        io::ErrorKind::NotFound if !argv0.contains('/') => {
            format!("{argv0}: command not found in PATH")
        }
        // ENOENT for a file that exists means its `#!` interpreter is missing.
        io::ErrorKind::NotFound if program.exists() => {
            format!("{argv0}: cannot run it: the interpreter on its #! line was not found")
        }
        io::ErrorKind::NotFound if in_checkout => {
            format!("{argv0}: No such file or directory in checkout {}", checkout.display())
        }
        io::ErrorKind::NotFound => format!("{argv0}: No such file or directory"),
        io::ErrorKind::PermissionDenied => {
            format!("{argv0}: permission denied: is it executable? (in git: `git update-index --chmod=+x {argv0}`)")
        }
        _ => format!("{argv0}: cannot start: {e}"),
    }
}

/// Spawns `command`, retrying briefly on `ETXTBSY`. That error is transient: exec fails while
/// any process has the file open for writing, and in a multi-threaded process a child forked
/// by another thread holds such descriptors until its own exec closes them (rust-lang/rust#114554),
/// e.g. right after a script was written.
pub(crate) fn spawn(command: &mut Command) -> io::Result<Child> {
    retry_text_busy(|| command.spawn())
}

/// [`spawn_step`], retried briefly on `ETXTBSY` like [`spawn`].
fn spawn_retrying(command: &StepCommand) -> io::Result<StepProcess> {
    retry_text_busy(|| spawn_step(command))
}

/// Runs `start` again while it fails with `ETXTBSY`: 6 retries, 5 ms doubling.
fn retry_text_busy<T>(mut start: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..6 {
        match start() {
            Err(e) if e.raw_os_error() == Some(Errno::ETXTBSY as i32) => std::thread::sleep(delay),
            other => return other,
        }
        delay *= 2;
    }
    start()
}

/// `/dev/null`, opened once per process: every step's stdin.
fn dev_null() -> io::Result<BorrowedFd<'static>> {
    static DEV_NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    if let Some(file) = DEV_NULL.get() {
        return Ok(file.as_fd());
    }
    let file = File::open("/dev/null")?;
    Ok(DEV_NULL.get_or_init(|| file).as_fd())
}

/// The process group a child leads (it was spawned with `process_group(0)`).
pub(crate) fn process_group_of(child: &Child) -> Pid {
    // Linux pids are at most 2^22; `i32::MAX` would only show up if that ever stopped holding.
    Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
}

/// Sends `SIGKILL` to every process of the group. A group that is already gone is fine.
pub(crate) fn kill_group(group: Pid) {
    match killpg(group, Signal::SIGKILL) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = group.as_raw(), error = %e, "cannot kill a step's process group")
        }
    }
}

/// The step's output pipes and how the end of its leader is noticed, watched together by the
/// thread that runs the step.
struct StepWatch<'c> {
    /// Pipes still open, with the stream each carries.
    outputs: Vec<(File, Stream)>,
    exit: LeaderExit,
    capture: &'c Capture,
}

impl StepWatch<'_> {
    /// Copies whatever output is ready within `wait` (`None`: until something happens) and says
    /// whether the leader has exited (without reaping it).
    fn step(&mut self, wait: Option<Duration>) -> io::Result<bool> {
        let exit_fd = self.exit.fd();
        // Without a pidfd, the leader's exit is polled: wake at least every `EXIT_POLL`.
        let wait = if matches!(self.exit, LeaderExit::Polled(_)) {
            Some(wait.map_or(EXIT_POLL, |w| w.min(EXIT_POLL)))
        } else {
            wait
        };
        let timeout = match wait {
            // Rounded up, so a wait never ends a moment before its deadline.
            Some(w) => PollTimeout::try_from(w.as_millis().saturating_add(1).min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = self
            .outputs
            .iter()
            .map(|(file, _)| PollFd::new(file.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(fd) = exit_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds.iter().map(|fd| fd.any().unwrap_or(false)).collect();
        drop(fds);
        let exited = match exit_fd {
            Some(_) => ready[self.outputs.len()],
            None => self.exit.exited_without_fd(),
        };
        let mut buf = [0u8; 8192];
        let mut i = 0;
        let mut index = 0;
        while i < self.outputs.len() {
            let was_ready = ready[index];
            index += 1;
            if !was_ready {
                i += 1;
                continue;
            }
            let (file, stream) = &mut self.outputs[i];
            match file.read(&mut buf) {
                Ok(0) => {
                    self.outputs.remove(i);
                    continue;
                }
                Ok(n) => self.capture.write(*stream, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // As a reader thread did: an unreadable pipe ends that stream's output.
                Err(_) => {
                    self.outputs.remove(i);
                    continue;
                }
            }
            i += 1;
        }
        Ok(exited)
    }

    /// After the group is killed: copies the rest of the output until every pipe is closed or
    /// `until` passes. False when a pipe was still open then (a process escaped the group).
    fn drain(&mut self, until: Instant) -> bool {
        while !self.outputs.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.exit = LeaderExit::Reaped;
            if self.step(Some(left)).is_err() {
                return false;
            }
        }
        true
    }
}

/// How long the leader's exit may go unnoticed where there is no pidfd to poll.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// How the leader's exit is noticed.
enum LeaderExit {
    /// A pidfd (Linux 5.3+): readable once the leader has exited, without reaping it.
    #[cfg(target_os = "linux")]
    Pidfd(OwnedFd),
    /// No pidfd: asked every [`EXIT_POLL`].
    Polled(Pid),
    /// Already reaped: nothing to watch.
    Reaped,
}

impl LeaderExit {
    #[cfg(target_os = "linux")]
    fn watch(leader: Pid) -> LeaderExit {
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new descriptor (which
        // we then own) or -1; it touches no memory of ours.
        let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, leader.as_raw(), 0) };
        match i32::try_from(fd) {
            // SAFETY: a descriptor just returned by the kernel, owned by nothing else.
            Ok(fd) if fd >= 0 => LeaderExit::Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }),
            _ => LeaderExit::Polled(leader),
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn watch(leader: Pid) -> LeaderExit {
        LeaderExit::Polled(leader)
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            #[cfg(target_os = "linux")]
            LeaderExit::Pidfd(fd) => Some(fd.as_fd()),
            _ => None,
        }
    }

    /// Without a pidfd: whether the leader has exited (left unreaped on Linux).
    fn exited_without_fd(&self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            LeaderExit::Pidfd(_) => false,
            LeaderExit::Reaped => false,
            #[cfg(target_os = "linux")]
            LeaderExit::Polled(leader) => {
                use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
                // WNOWAIT: learn that the leader exited without reaping it (see
                // `wait_then_kill_group`).
                !matches!(
                    waitid(
                        Id::Pid(*leader),
                        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
                    ),
                    Ok(WaitStatus::StillAlive)
                )
            }
            #[cfg(not(target_os = "linux"))]
            LeaderExit::Polled(leader) => nix::sys::signal::kill(*leader, None).is_err(),
        }
    }
}

/// Copies the step's output while waiting until the child exits or `timeout` passes, kills its
/// process group either way, and reaps the child.
///
/// The group is killed while the leader is still an unreaped zombie (on Linux): its pid (which
/// is the group's id) cannot be reused until it is reaped, so `killpg` can never hit an
/// unrelated group that happened to get the same id.
fn wait_then_kill_group(
    child: &mut StepProcess,
    group: Pid,
    timeout: Duration,
    watch: &mut StepWatch,
) -> io::Result<Ended> {
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        if watch.step(Some(left))? {
            break;
        }
    }
    kill_group(group);
    let status = child.wait()?;
    // Exiting on its own in the instant the timeout passed still counts as finishing.
    Ok(if timed_out && status.signal() == Some(Signal::SIGKILL as i32) {
        Ended::TimedOut
    } else {
        Ended::Finished(status)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use nix::sys::signal::kill;
    use tempfile::TempDir;

    use super::*;
    use crate::executor::testutil::request;

    /// The start time of a running `pid`, as the running-step record holds it.
    pub(crate) fn start_time_of(pid: i32) -> u64 {
        start_time(pid).expect("a running process")
    }

    /// Writes an executable script into the checkout.
    pub(crate) fn script(dir: &Path, rel: &str, body: &str) -> PathBuf {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// True once `pid` no longer runs. A killed orphan may stay a zombie for a moment until init
    /// reaps it (or longer, if this sandbox's pid 1 does not reap); a zombie runs nothing.
    pub(crate) fn process_gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let gone = kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH)
                || fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| {
                        s.rsplit(')')
                            .next()
                            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false);
            if gone || Instant::now() > deadline {
                return gone;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn run(req: &StepRequest) -> StepResult {
        ShellExecutor::new().run(req).unwrap()
    }

    #[test]
    fn hostile_value_reaches_the_program_as_one_literal_argument() {
        let dir = TempDir::new().unwrap();
        let co = dir.path();
        script(
            co,
            "scripts/args.sh",
            "#!/bin/sh\nprintf '%s\\n' \"$#\" > args.out\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\" >> args.out; done\n",
        );
        let hostile = "x; touch PWNED; $(touch PWNED2) `touch PWNED3` | touch PWNED4";
        let mut req = request(StepKind::Deploy, &["scripts/args.sh", "{{ target.vars.evil }}"], co);
        req.context.target.vars.insert("evil".into(), hostile.into());

        let result = run(&req);

        assert!(result.ok, "{result:?}");
        let args = fs::read_to_string(co.join("args.out")).unwrap();
        assert_eq!(args, format!("1\n[{hostile}]\n"));
        for f in ["PWNED", "PWNED2", "PWNED3", "PWNED4"] {
            assert!(!co.join(f).exists(), "{f} was created");
            assert!(!Path::new(f).exists(), "{f} was created in the test's cwd");
        }
    }

    #[test]
    fn gantry_env_vars_are_set() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "env.sh",
            "#!/bin/sh\nenv | grep '^GANTRY_' | sort > env.out\n",
        );
        let mut req = request(StepKind::MigrateUp, &["./env.sh"], dir.path());
        req.extra_env = vec![
            ("GANTRY_REPO".into(), "/srv/repo".into()),
            ("GANTRY_STEP".into(), "cannot override".into()),
        ];
        let result = run(&req);
        assert!(result.ok, "{result:?}");
        let env = fs::read_to_string(dir.path().join("env.out")).unwrap();
        assert_eq!(
            env,
            "GANTRY_ATTEMPT=a1\nGANTRY_COMMIT=4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e\nGANTRY_COMPONENT=billing\nGANTRY_FROM=1.2.0\nGANTRY_REPO=/srv/repo\nGANTRY_STEP=migrate_up\n\
             GANTRY_TARGET=acme\nGANTRY_TO=2.0.0\nGANTRY_VERSION=2.0.0\n"
        );
    }

    #[test]
    fn relative_program_resolves_in_the_checkout_which_is_the_cwd() {
        let dir = TempDir::new().unwrap();
        script(dir.path(), "scripts/where.sh", "#!/bin/sh\npwd -P\n");
        let result = run(&request(StepKind::Deploy, &["scripts/where.sh"], dir.path()));
        assert!(result.ok, "{result:?}");
        assert_eq!(result.output_tail, dir.path().canonicalize().unwrap().to_str().unwrap());
    }

    #[test]
    fn program_escaping_the_checkout_is_refused() {
        let dir = TempDir::new().unwrap();
        let err = ShellExecutor::new()
            .run(&request(StepKind::Deploy, &["../evil.sh"], dir.path()))
            .unwrap_err();
        assert!(matches!(err, ExecutorError::EscapesCheckout { .. }), "{err}");
    }

    #[test]
    fn symlinked_program_pointing_outside_the_checkout_is_refused() {
        let outside = TempDir::new().unwrap();
        let target = script(outside.path(), "evil.sh", "#!/bin/sh\necho pwned\n");
        let dir = TempDir::new().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("scripts/deploy.sh")).unwrap();
        // A symlinked directory on the way escapes just the same.
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        for program in ["scripts/deploy.sh", "linked/evil.sh"] {
            let err = ShellExecutor::new()
                .run(&request(StepKind::Deploy, &[program], dir.path()))
                .unwrap_err();
            assert!(matches!(err, ExecutorError::EscapesCheckout { .. }), "{program}: {err}");
            assert!(err.to_string().contains("no symbolic link pointing outside"), "{err}");
        }
        // A link that stays inside the checkout is fine.
        script(dir.path(), "real.sh", "#!/bin/sh\necho inside\n");
        std::os::unix::fs::symlink(dir.path().join("real.sh"), dir.path().join("scripts/inside.sh")).unwrap();
        let result = ShellExecutor::new()
            .run(&request(StepKind::Deploy, &["scripts/inside.sh"], dir.path()))
            .unwrap();
        assert!(result.ok, "{result:?}");
    }

    #[test]
    fn timeout_kills_the_whole_process_group() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "hang.sh",
            "#!/bin/sh\nsleep 300 &\necho $! > bg.pid\necho started\nsleep 300\n",
        );
        let mut req = request(StepKind::Deploy, &["./hang.sh"], dir.path());
        req.timeout = Duration::from_secs(2);

        let started = Instant::now();
        let result = run(&req);

        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert!(!result.ok);
        assert_eq!(result.exit, Exit::TimedOut(Duration::from_secs(2)));
        assert!(result.message.starts_with("timed out after 2s"), "{}", result.message);
        assert_eq!(result.output_tail, "started");
        let pid: i32 = fs::read_to_string(dir.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(process_gone(pid), "background child {pid} survived the timeout");
    }

    #[test]
    fn background_children_do_not_outlive_a_finished_step() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "bg.sh",
            "#!/bin/sh\nsleep 300 &\necho $! > bg.pid\nexit 0\n",
        );
        let started = Instant::now();
        let result = run(&request(StepKind::Deploy, &["./bg.sh"], dir.path()));
        assert!(result.ok, "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the background child"
        );
        let pid: i32 = fs::read_to_string(dir.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(process_gone(pid), "background child {pid} survived the step");
    }

    #[test]
    fn non_zero_exit_fails_with_the_code() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "fail.sh",
            "#!/bin/sh\necho 'migration 12 failed' >&2\nexit 3\n",
        );
        let result = run(&request(StepKind::Deploy, &["./fail.sh"], dir.path()));
        assert!(!result.ok);
        assert_eq!(result.exit, Exit::Code(3));
        assert_eq!(result.message, "exited with status 3");
        assert_eq!(result.output_tail, "migration 12 failed");
    }

    #[test]
    fn death_by_signal_names_the_signal() {
        let dir = TempDir::new().unwrap();
        script(dir.path(), "term.sh", "#!/bin/sh\nkill -TERM $$\nsleep 5\n");
        let result = run(&request(StepKind::Deploy, &["./term.sh"], dir.path()));
        assert!(!result.ok);
        assert_eq!(result.exit, Exit::Signal("SIGTERM".into()));
        assert_eq!(result.message, "killed by SIGTERM");
    }

    #[test]
    fn output_tail_and_full_log() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "chatty.sh",
            "#!/bin/sh\ni=1\nwhile [ $i -le 100 ]; do echo \"out $i\"; [ $i = 50 ] && echo 'err 50' >&2; i=$((i+1)); done\necho 'err last' >&2\n",
        );
        let req = request(StepKind::Deploy, &["./chatty.sh"], dir.path());
        let result = run(&req);
        assert!(result.ok, "{result:?}");
        assert!(
            result.output_tail.ends_with("out 100\nerr last"),
            "{}",
            result.output_tail
        );
        assert_eq!(result.output_tail.lines().count(), 40);
        assert!(result.output_tail.starts_with('…'));

        // The log has everything, and a second run appends rather than truncates.
        run(&req);
        let log = fs::read_to_string(&req.log_path).unwrap();
        assert_eq!(log.matches("out 1\n").count(), 2, "{log}");
        assert_eq!(log.matches("out 100\n").count(), 2);
        assert_eq!(log.matches("err last\n").count(), 2);
        assert!(log.contains("# gantry: deploy step [\"./chatty.sh\"]"), "{log}");
        // One pipe for both streams keeps them in the order they were written.
        assert_eq!(log.matches("out 50\nerr 50\nout 51\n").count(), 2, "{log}");
    }

    #[test]
    fn missing_script_is_a_failed_step_with_a_clear_message() {
        let dir = TempDir::new().unwrap();
        let result = run(&request(StepKind::Deploy, &["scripts/deploy.sh"], dir.path()));
        assert!(!result.ok);
        assert_eq!(result.exit, Exit::SpawnFailed);
        assert_eq!(
            result.message,
            format!(
                "scripts/deploy.sh: No such file or directory in checkout {}",
                dir.path().display()
            )
        );
    }

    #[test]
    fn non_executable_script_says_so() {
        let dir = TempDir::new().unwrap();
        let path = script(dir.path(), "scripts/deploy.sh", "#!/bin/sh\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let result = run(&request(StepKind::Deploy, &["scripts/deploy.sh"], dir.path()));
        assert_eq!(result.exit, Exit::SpawnFailed);
        assert!(
            result.message.starts_with("scripts/deploy.sh: permission denied"),
            "{}",
            result.message
        );
    }

    #[test]
    fn missing_command_in_path_says_so() {
        let dir = TempDir::new().unwrap();
        let result = run(&request(StepKind::Deploy, &["gantry-no-such-command-xyz"], dir.path()));
        assert_eq!(result.message, "gantry-no-such-command-xyz: command not found in PATH");
    }

    /// Issue #17: without a pidfd (a kernel before 5.3) the leader's exit is polled. The same
    /// wait must still end with the leader, copy its output, and time out a hanging one.
    #[test]
    fn without_a_pidfd_the_polled_wait_ends_with_the_leader_and_times_out_a_hanging_one() {
        for (script, timeout, timed_out) in [
            ("echo polled; exit 3", Duration::from_secs(30), false),
            ("echo hanging; exec sleep 300", Duration::from_millis(300), true),
        ] {
            let (out, into) = io::pipe().unwrap();
            let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
            let mut child = spawn_step(&StepCommand {
                program: Path::new("/bin/sh"),
                argv: &argv,
                env: std::env::vars_os().collect(),
                cwd: Path::new("/"),
                stdin: dev_null().unwrap(),
                stdout: into.as_fd(),
                stderr: into.as_fd(),
            })
            .unwrap();
            drop(into);
            let group = child.pid();
            let capture = Capture::default();
            let dir = TempDir::new().unwrap();
            capture.begin(open_log(&dir.path().join("step.log")).unwrap(), &Default::default());
            let mut watch = StepWatch {
                outputs: vec![(File::from(OwnedFd::from(out)), Stream::Other)],
                exit: LeaderExit::Polled(group),
                capture: &capture,
            };
            let started = Instant::now();
            let ended = wait_then_kill_group(&mut child, group, timeout, &mut watch).unwrap();
            assert!(watch.drain(Instant::now() + OUTPUT_GRACE), "{script}: output left open");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{script}: {:?}",
                started.elapsed()
            );
            match ended {
                Ended::TimedOut => assert!(timed_out, "{script}: timed out"),
                Ended::Finished(status) => {
                    assert!(!timed_out, "{script}: finished");
                    assert_eq!(status.code(), Some(3), "{script}");
                }
            }
            let want = if timed_out { "hanging" } else { "polled" };
            assert_eq!(capture.end(), want, "{script}");
        }
    }

    #[test]
    fn observe_reports_the_last_stdout_line() {
        let dir = TempDir::new().unwrap();
        script(
            dir.path(),
            "version.sh",
            "#!/bin/sh\necho 'probing' >&2\necho '1.9.3'\necho '' \necho 'noise' >&2\n",
        );
        let result = run(&request(StepKind::Observe, &["./version.sh"], dir.path()));
        assert_eq!(result.observed_version.as_deref(), Some("1.9.3"));
        // Only observe steps report a version.
        let deploy = run(&request(StepKind::Deploy, &["./version.sh"], dir.path()));
        assert_eq!(deploy.observed_version, None);
    }
}
