//! The gantry binary: everything happens in the library's `cli` module.

/// mimalloc instead of glibc's malloc (issue #17): see the reason next to it in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    restore_sigpipe();
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == gantry::render::sandbox::SANDBOX_ARG)
    {
        return gantry::render::sandbox::serve();
    }
    gantry::render::sandbox::enable();
    // State commits are fsynced before the journal entries they record are removed.
    if let Err(e) = gantry::state::durability::enable_fsync() {
        eprintln!("warning: libgit2 cannot fsync what it writes ({e}); a power cut may lose recent outcomes");
    }
    gantry::cli::run()
}

/// Rust ignores SIGPIPE, so `gantry history | head` would panic on the closed pipe; a command
/// line tool should just stop, as `cat` does.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
