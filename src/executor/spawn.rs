//! Starting a step's process without copying gantry's address space (issue #17).
//!
//! `std::process::Command` forks when it must run code in the child (ours sets the parent-death
//! signal there), and a fork of a large, multi-threaded process copies its page tables and
//! shoots down TLBs on every core: measured, that was a third of the CPU of converging 1,000
//! targets whose deploy is `/bin/true`. [`spawn_step`] starts the child as `posix_spawn` does
//! inside glibc: `clone(CLONE_VM | CLONE_VFORK)` on a small stack of its own, where the child
//! only makes system calls on memory prepared beforehand, then `execve`s. The calling thread
//! waits (vfork) until the child has exec'd or failed; other threads run on.
//!
//! The child, in order: resets every caught signal's handler to the default (they are gantry's
//! code, which must not run in the child), `SIGPIPE` to the default (as `Command` does), makes
//! itself a process-group leader, asks for `SIGKILL` when the spawning thread dies
//! (`PR_SET_PDEATHSIG`) and gives up if gantry already died, wires stdin/stdout/stderr,
//! changes into the checkout, unblocks every signal, and `execve`s the program, searching `PATH`
//! (of the step's environment) for a bare name like `execvp` does. An exec error is handed back
//! through memory shared with the parent, and reported like `Command::spawn` reports it.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;
use nix::unistd::Pid;

/// What the child is started with. Every field is prepared by the parent: the child allocates
/// nothing.
pub(crate) struct StepCommand<'a> {
    /// The program: a path (absolute, or relative to `cwd`), or a bare name searched in `PATH`.
    pub program: &'a Path,
    /// argv, `argv[0]` included.
    pub argv: &'a [String],
    /// The whole environment of the child, in order; a later value of a name wins.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: &'a Path,
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
}

/// A started step process (the leader of its own process group), to be waited for once.
#[derive(Debug)]
pub(crate) struct StepProcess {
    pid: Pid,
}

impl StepProcess {
    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits for the process to end and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut status: libc::c_int = 0;
        loop {
            // SAFETY: waitpid writes one int through a pointer to a live local.
            let r = unsafe { libc::waitpid(self.pid.as_raw(), &raw mut status, 0) };
            if r == self.pid.as_raw() {
                return Ok(ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// The child's stack: one per spawning thread, reused (the thread waits while the child runs on
/// it, so it is free again when `clone` returns).
const CHILD_STACK_BYTES: usize = 64 * 1024;

thread_local! {
    static CHILD_STACK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Everything the child reads, laid out before `clone`.
struct ChildPlan {
    /// Programs to try in order (`PATH` candidates for a bare name, else just the one).
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    /// `/bin/sh`'s argv for each candidate, run when the candidate is a script without a `#!`
    /// line (ENOEXEC), as `execvp` does: `["/bin/sh", <candidate>, argv[1..]…]`.
    sh_argvs: Vec<Vec<*const libc::c_char>>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    parent: libc::pid_t,
    /// Set by the child when it fails before or at exec: the errno.
    failure: AtomicI32,
}

const SH: &[u8] = b"/bin/sh\0";

/// Starts `command` as described in the module documentation.
///
/// # Errors
/// The `io::Error` of the failing step (exec's errno for a missing or non-executable program,
/// `ESRCH` when gantry's parent-death wiring failed), as `Command::spawn` would return it.
pub(crate) fn spawn_step(command: &StepCommand) -> io::Result<StepProcess> {
    let cstring = |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    let argv_c: Vec<CString> = command
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env_c = environment(&command.env)?;
    let candidates = candidates(command.program, &command.env)?;
    let cwd = cstring(command.cwd.as_os_str().as_bytes())?;

    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let sh_argvs = candidates
        .iter()
        .map(|candidate| {
            let mut sh_argv: Vec<*const libc::c_char> = vec![SH.as_ptr().cast(), candidate.as_ptr()];
            sh_argv.extend(argv_c.iter().skip(1).map(|a| a.as_ptr()));
            sh_argv.push(std::ptr::null());
            sh_argv
        })
        .collect();
    let mut envp: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut plan = ChildPlan {
        candidates,
        argv,
        sh_argvs,
        envp,
        cwd,
        stdin: command.stdin.as_raw_fd(),
        stdout: command.stdout.as_raw_fd(),
        stderr: command.stderr.as_raw_fd(),
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        failure: AtomicI32::new(0),
    };

    let pid = CHILD_STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.len() < CHILD_STACK_BYTES {
            *stack = vec![0u8; CHILD_STACK_BYTES];
        }
        // The stack grows down on every architecture Linux runs gantry on: pass its top,
        // 16-byte aligned.
        let top = stack.as_mut_ptr().wrapping_add(stack.len());
        let top = top.wrapping_sub(top as usize % 16);
        // Block every signal on this thread around clone, so no handler of gantry's runs in the
        // child before it has reset them; restored right after.
        let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        let mut old = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigfillset initialises `all`; pthread_sigmask reads it and writes `old`.
        // clone runs `child` on the stack above (owned by this thread, unused until clone
        // returns since CLONE_VFORK suspends this thread until the child execs or exits) with
        // `plan`, which outlives the child's use of it for the same reason.
        unsafe {
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
            let pid = libc::clone(
                child,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut plan).cast(),
            );
            let clone_error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), std::ptr::null_mut());
            if pid < 0 { Err(clone_error) } else { Ok(pid) }
        }
    })?;
    let mut process = StepProcess {
        pid: Pid::from_raw(pid),
    };
    match plan.failure.load(Ordering::Acquire) {
        0 => Ok(process),
        errno => {
            // The child exited with 127 without exec'ing: reap it.
            let _ = process.wait();
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// `K=V` for every variable, the last value of a name winning, in first-seen order.
fn environment(env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    let mut merged: Vec<(&OsStr, &OsStr)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match merged.iter_mut().find(|(name, _)| *name == k.as_os_str()) {
            Some(slot) => slot.1 = v,
            None => merged.push((k, v)),
        }
    }
    merged
        .into_iter()
        .map(|(k, v)| {
            let mut bytes = Vec::with_capacity(k.len() + v.len() + 1);
            bytes.extend_from_slice(k.as_bytes());
            bytes.push(b'=');
            bytes.extend_from_slice(v.as_bytes());
            CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        })
        .collect()
}

/// The paths exec tries for `program`: itself when it holds a `/`, else each `PATH` entry (the
/// step environment's `PATH`, `/bin:/usr/bin` without one; an empty entry is the cwd) joined
/// with it, as `execvp` does.
fn candidates(program: &Path, env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    let bytes = program.as_os_str().as_bytes();
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    if bytes.is_empty() {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    if bytes.contains(&b'/') {
        return Ok(vec![CString::new(bytes).map_err(|_| invalid())?]);
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(b"/bin:/usr/bin".as_slice(), |(_, v)| v.as_bytes());
    path.split(|b| *b == b':')
        .map(|dir| {
            let mut full = Vec::with_capacity(dir.len() + bytes.len() + 1);
            if !dir.is_empty() {
                full.extend_from_slice(dir);
                full.push(b'/');
            }
            full.extend_from_slice(bytes);
            CString::new(full).map_err(|_| invalid())
        })
        .collect()
}

/// The child. Runs on its own stack in gantry's memory while the spawning thread waits: only
/// system calls on what `plan` holds, no allocation, no locks, no unwinding.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildPlan` the parent passed to clone; it stays alive and unchanged
    // until this child execs or exits (CLONE_VFORK). Every call below is a system call wrapper
    // that is async-signal-safe; the pointers handed to them point into `plan`.
    unsafe {
        let plan = &*(arg as *const ChildPlan);
        let fail = |errno: libc::c_int| -> libc::c_int {
            plan.failure.store(errno.max(1), Ordering::Release);
            libc::_exit(127)
        };
        let errno = || *libc::__errno_location();

        // Handlers are gantry's code: back to the default for every caught signal. Ignored ones
        // stay ignored (inherited, as across any exec), except SIGPIPE (Rust ignores it).
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut current) != 0 {
                continue;
            }
            let handler = current.sa_sigaction;
            if (handler != libc::SIG_DFL && handler != libc::SIG_IGN) || sig == libc::SIGPIPE {
                libc::sigaction(sig, &raw const default, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(errno());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
            return fail(errno());
        }
        // gantry died before the prctl: do not start the step at all.
        if libc::getppid() != plan.parent {
            return fail(libc::ESRCH);
        }
        for (from, to) in [(plan.stdin, 0), (plan.stdout, 1), (plan.stderr, 2)] {
            if from == to {
                // Already in place: only clear close-on-exec.
                let flags = libc::fcntl(from, libc::F_GETFD);
                if flags < 0 || libc::fcntl(from, libc::F_SETFD, flags & !libc::FD_CLOEXEC) != 0 {
                    return fail(errno());
                }
            } else if libc::dup2(from, to) < 0 {
                return fail(errno());
            }
        }
        if libc::chdir(plan.cwd.as_ptr()) != 0 {
            return fail(errno());
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &raw const none, std::ptr::null_mut());

        // As execvp: EACCES on one PATH entry is remembered while the others are tried; a
        // missing entry moves on; anything else stops the search.
        let mut seen_eacces = false;
        let mut last = libc::ENOENT;
        for (candidate, sh_argv) in plan.candidates.iter().zip(&plan.sh_argvs) {
            libc::execve(candidate.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
            last = errno();
            if last == libc::ENOEXEC {
                // A script without `#!`: run it with /bin/sh, as execvp does.
                libc::execve(SH.as_ptr().cast(), sh_argv.as_ptr(), plan.envp.as_ptr());
                last = errno();
                break;
            }
            match last {
                libc::EACCES => seen_eacces = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => break,
            }
        }
        if seen_eacces && last != libc::ETXTBSY {
            last = libc::EACCES;
        }
        fail(last)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    use super::*;

    fn env_with(extra: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
        env.extend(extra.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))));
        env
    }

    /// Runs `argv` with `env` in `cwd` and returns (exit status, stdout+stderr).
    fn run(
        program: &str,
        argv: &[&str],
        env: Vec<(OsString, OsString)>,
        cwd: &Path,
    ) -> io::Result<(ExitStatus, String)> {
        let (mut out_r, out_w) = io::pipe()?;
        let null = std::fs::File::open("/dev/null")?;
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let mut process = spawn_step(&StepCommand {
            program: Path::new(program),
            argv: &argv,
            env,
            cwd,
            stdin: null.as_fd(),
            stdout: out_w.as_fd(),
            stderr: out_w.as_fd(),
        })?;
        drop(out_w);
        let mut text = String::new();
        out_r.read_to_string(&mut text)?;
        Ok((process.wait()?, text))
    }

    #[test]
    fn the_child_gets_argv_env_cwd_and_its_own_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let (status, out) = run(
            "/bin/sh",
            &[
                "sh",
                "-c",
                "echo \"$1|$GANTRY_X|$(pwd)|$(ps -o pgid= $$ | tr -d ' ')|$$\"",
                "sh",
                "a b;$(x)",
            ],
            env_with(&[("GANTRY_X", "first"), ("GANTRY_X", "second")]),
            dir.path(),
        )
        .unwrap();
        assert!(status.success(), "{out}");
        let fields: Vec<&str> = out.trim().split('|').collect();
        assert_eq!(fields[0], "a b;$(x)", "one literal argument");
        assert_eq!(fields[1], "second", "a later value of a name wins");
        assert_eq!(
            Path::new(fields[2]).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(fields[3], fields[4], "the child leads its own process group");
    }

    #[test]
    fn exec_errors_come_back_as_spawn_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = run("/nonexistent/prog", &["prog"], env_with(&[]), dir.path()).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let not_in_path = run("gantry-no-such-command", &["x"], env_with(&[]), dir.path()).unwrap_err();
        assert_eq!(not_in_path.kind(), io::ErrorKind::NotFound);
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "#!/bin/sh\nexit 0\n").unwrap();
        let denied = run(plain.to_str().unwrap(), &["plain"], env_with(&[]), dir.path()).unwrap_err();
        assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
        let gone_cwd = dir.path().join("gone");
        let no_cwd = run("/bin/true", &["true"], env_with(&[]), &gone_cwd).unwrap_err();
        assert_eq!(no_cwd.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_bare_name_is_searched_in_the_steps_path_and_a_script_without_shebang_runs_with_sh() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("gantry-test-tool");
        std::fs::write(&tool, "echo \"no shebang: $1\"\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", bin.display());
        let (status, out) = run(
            "gantry-test-tool",
            &["gantry-test-tool", "arg"],
            env_with(&[("PATH", &path)]),
            dir.path(),
        )
        .unwrap();
        assert!(status.success(), "{out}");
        assert_eq!(out.trim(), "no shebang: arg");
    }

    #[test]
    fn caught_and_piped_signals_are_reset_for_the_child() {
        // Rust ignores SIGPIPE; the child must get the default, as with `Command`.
        let dir = tempfile::tempdir().unwrap();
        let (status, out) = run(
            "/bin/sh",
            &["sh", "-c", "grep -E '^Sig(Ign|Blk):' /proc/self/status"],
            env_with(&[]),
            dir.path(),
        )
        .unwrap();
        assert!(status.success(), "{out}");
        for line in out.lines() {
            let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(mask & (1 << (libc::SIGPIPE - 1)), 0, "{line}");
            if line.starts_with("SigBlk") {
                assert_eq!(mask, 0, "no signal stays blocked: {line}");
            }
        }
    }
}
