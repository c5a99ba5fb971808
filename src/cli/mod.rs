//! The command line: argument definitions, one file per command, and exit codes in one place.

mod apply;
mod approve;
mod completions;
mod daemon;
mod history;
mod init;
mod plan;
mod rollback;
mod schema;
pub mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::render::Format;
use crate::source::{SourceError, WatchedRepo};

/// gantry: a declarative GitOps reconciler for upgrades.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, about, long_about = None)]
pub struct Cli {
    /// The watched repository.
    #[arg(long, global = true, default_value = ".", value_name = "PATH")]
    pub repo: PathBuf,
    /// Fix the clock (RFC 3339), for windows, soak and release age.
    #[arg(long, global = true, env = "GANTRY_NOW", value_name = "RFC3339")]
    pub now: Option<String>,
    /// Log lines (daemon): human-readable text, or one JSON object per line.
    #[arg(long, global = true, value_enum, env = "GANTRY_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a working example repository (git-initialised, with one upgrade left to apply).
    Init {
        /// Where to write it: a new or empty directory, or an empty git repository.
        #[arg(default_value = ".", value_name = "DIR")]
        dir: PathBuf,
    },
    /// Parse, schema-check and cross-check every manifest at a commit.
    Validate {
        /// The commit to read (default: tip of the desired branch).
        #[arg(long, value_name = "REV")]
        rev: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Render what reconciling (or, with --base, merging) would do.
    Plan {
        /// Show only what changes relative to this commit, with diffs of changed manifests.
        #[arg(long, value_name = "REV")]
        base: Option<String>,
        /// The commit to plan (default: tip of the desired branch).
        #[arg(long, value_name = "REV")]
        head: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One reconcile pass now: run ready actions, record outcomes.
    Apply {
        /// Only these targets (repeatable).
        #[arg(long = "target", value_name = "NAME")]
        targets: Vec<String>,
        /// Show what would run; run and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Reconcile a head that does not descend from the last reconciled commit (a rewind or
        /// a replaced history); it must still be signed by the anchored signers.
        #[arg(long)]
        allow_rewind: bool,
        /// text: progress lines; json: one JSON event per line.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Watch and reconcile until SIGTERM; serve /healthz, /metrics, /api/status and a status page.
    Daemon {
        /// The HTTP address (overrides `listen` in gantry.toml; port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Reconcile heads that do not descend from the last reconciled commit.
        #[arg(long)]
        allow_rewind: bool,
        /// A host name the HTTP API answers to besides the listen address (repeatable).
        #[arg(long = "allowed-host", value_name = "NAME")]
        allowed_hosts: Vec<String>,
    },
    /// Per target: current, desired, status, next action, window, blockers.
    Status {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Outcomes recorded on the state branch, newest first.
    History {
        /// Only this target.
        target: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: HistoryFormat,
    },
    /// Commit, on the desired branch, the change that pins TARGET to its previous version.
    Rollback {
        target: String,
        /// The version to pin: a recorded rollback point or an existing release.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Write the commit on a new branch (for a pull request) instead of the desired branch.
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
    },
    /// Commit a signed Approval of one release for TARGET (or --selector), as the key's owner.
    Approve {
        /// The target to approve the release for (the Approval selects its labels).
        #[arg(required_unless_present = "selector", conflicts_with = "selector")]
        target: Option<String>,
        /// Approve for every target with these labels (repeatable KEY=VALUE).
        #[arg(long, value_name = "KEY=VALUE")]
        selector: Vec<String>,
        /// The exact release (default: the target's spec.version when exact).
        #[arg(long, value_name = "VERSION")]
        version: Option<String>,
        /// The approver's unencrypted OpenSSH private key (default: git's user.signingkey).
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
        /// The approver's address (default: the one the allowed signers list for the key).
        #[arg(long = "as", value_name = "ADDRESS")]
        approver: Option<String>,
        /// Write the commit on a new branch (for a pull request) instead of the desired branch.
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
    },
    /// Print the JSON Schemas of the manifest kinds (all, or one).
    Schema {
        /// component, release, target, policy, window, approval, config (gantry.toml) or plan.
        kind: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) generated from these definitions.
    Man,
}

/// Output formats of `gantry history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    Text,
    Json,
    Csv,
}

/// Log line formats (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Exit codes (SPEC §6), mapped here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// Invalid input or usage.
    Invalid = 1,
    /// Policy violations (`plan`, `validate`) or failed targets (`apply`).
    Violations = 2,
    /// Another reconciler holds the repository's lock.
    Locked = 3,
}

/// An error that ends a command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or input the user must fix.
    #[error("{0}")]
    Usage(String),
    /// Reading the repository failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    /// Reading recorded state failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A reconcile pass failed.
    #[error(transparent)]
    Apply(crate::reconcile::apply::ApplyError),
    /// `gantry init` could not write the example repository.
    #[error(transparent)]
    Init(#[from] init::InitError),
    /// Writing output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon could not start or failed.
    #[error(transparent)]
    Server(crate::server::ServerError),
}

impl CliError {
    fn exit(&self) -> Exit {
        match self {
            CliError::Apply(crate::reconcile::apply::ApplyError::Locked(_))
            | CliError::Server(crate::server::ServerError::Locked(_)) => Exit::Locked,
            CliError::Usage(_)
            | CliError::Source(_)
            | CliError::Render(_)
            | CliError::State(_)
            | CliError::Apply(_)
            | CliError::Init(_)
            | CliError::Io(_)
            | CliError::Server(_) => Exit::Invalid,
        }
    }
}

/// Parses `--now` / `GANTRY_NOW`, or reads the clock.
fn now(cli: &Cli) -> Result<jiff::Timestamp, CliError> {
    match &cli.now {
        Some(text) => text.parse::<jiff::Timestamp>().map_err(|e| {
            CliError::Usage(format!(
                "--now `{text}` is not an RFC 3339 time such as 2026-11-21T10:00:00Z ({e})"
            ))
        }),
        None => Ok(jiff::Timestamp::now()),
    }
}

/// `--now` when given (a fixed clock), else `None` (the system clock, read when needed).
fn now_fixed(cli: &Cli) -> Result<Option<jiff::Timestamp>, CliError> {
    match &cli.now {
        Some(_) => now(cli).map(Some),
        None => Ok(None),
    }
}

/// Resolves `rev`, or the tip of the desired branch.
fn resolve_commit(repo: &WatchedRepo, rev: Option<&str>) -> Result<git2::Oid, CliError> {
    Ok(match rev {
        Some(rev) => repo.resolve(rev)?,
        None => repo.branch_tip(&repo.desired_branch_hint())?,
    })
}

/// Log lines on stderr: human-readable, or one JSON object per line. `RUST_LOG` filters; the
/// default is `info` for the daemon (its log is its output) and `warn` for one-shot commands,
/// whose output is their own text, so only problems reach the log.
fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
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

/// Runs the command line and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Daemon { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(cli.log_format, default_level);
    let result = match &cli.command {
        Command::Validate { rev, format } => validate::run(&cli, rev.as_deref(), *format),
        Command::Plan { base, head, format } => plan::run(&cli, base.as_deref(), head.as_deref(), *format),
        Command::Apply {
            targets,
            dry_run,
            allow_rewind,
            format,
        } => apply::run(&cli, targets, *dry_run, *allow_rewind, *format),
        Command::Daemon {
            listen,
            allow_rewind,
            allowed_hosts,
        } => daemon::run(&cli, listen.as_deref(), *allow_rewind, allowed_hosts),
        Command::Status { format } => status::run(&cli, *format),
        Command::History { target, format } => history::run(&cli, target.as_deref(), *format),
        Command::Rollback { target, to, branch } => rollback::run(&cli, target, to.as_deref(), branch.as_deref()),
        Command::Approve {
            target,
            selector,
            version,
            key,
            approver,
            branch,
        } => approve::run(
            &cli,
            approve::Args {
                target: target.as_deref(),
                selector,
                version: version.as_deref(),
                key: key.as_ref(),
                approver: approver.as_deref(),
                branch: branch.as_deref(),
            },
        ),
        Command::Schema { kind } => schema::run(kind.as_deref()),
        Command::Init { dir } => init::run(&cli, dir),
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man => completions::man(),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit() as u8)
        }
    }
}
