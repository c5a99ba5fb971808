//! `gantry daemon`: sets up logging, then watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions, ServerError};

use super::{Cli, CliError, Exit, LogFormat, now_fixed};

/// Log lines on stderr: human-readable, or one JSON object per line. `RUST_LOG` filters
/// (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second subscriber (tests calling `run` twice) is not an error worth stopping for.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub fn run(cli: &Cli, listen: Option<&str>) -> Result<Exit, CliError> {
    init_logging(cli.log_format);
    let options = DaemonOptions {
        repo: cli.repo.clone(),
        listen: listen.map(str::to_string),
        now: now_fixed(cli)?,
    };
    match server::run(options) {
        Ok(()) => Ok(Exit::Ok),
        Err(ServerError::Locked(e)) => {
            eprintln!("error: {e}");
            Ok(Exit::Locked)
        }
        Err(e) => Err(CliError::Server(e)),
    }
}
