//! The gantry binary: everything happens in the library's `cli` module.
fn main() -> std::process::ExitCode {
    gantry::cli::run()
}
