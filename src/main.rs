//! The gantry binary: everything happens in the library's `cli` module.
fn main() -> std::process::ExitCode {
    restore_sigpipe();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == gantry::render::sandbox::SANDBOX_ARG)
    {
        return gantry::render::sandbox::serve();
    }
    gantry::render::sandbox::enable();
    gantry::cli::run()
}

/// Rust ignores SIGPIPE, so `gantry history | head` would panic on the closed pipe; a command
/// line tool should just stop, as `cat` does.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
