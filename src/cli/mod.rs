//! The command line: argument definitions and one file per command (options → one `ops` call
//! → print). Exit codes are mapped in `ops` ([`OpsError::exit`]).

mod apply;
mod approve;
mod clone;
mod completions;
mod daemon;
mod history;
mod init;
mod plan;
mod retry;
mod rollback;
mod schedule;
mod schema;
mod status;
mod validate;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::ops::agents::Selector;
pub use crate::ops::{Exit, OpsError};
use crate::render::Format;

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
    /// The reconciler's SSH key (an unencrypted OpenSSH ed25519 private key): every commit
    /// gantry writes on the state branch is signed with it, and the branch is verified when read
    /// (docs/SECURITY.md, "Signed state").
    #[arg(long, global = true, env = "GANTRY_STATE_SIGNING_KEY", value_name = "PATH")]
    pub state_signing_key: Option<PathBuf>,
    #[command(flatten)]
    pub git: GitArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Credentials for Git servers: host settings, never read from the watched repository.
#[derive(Debug, Clone, clap::Args)]
pub struct GitArgs {
    /// Private key for ssh remotes (an ssh-agent is used when unset).
    #[arg(long, global = true, env = "GANTRY_GIT_SSH_KEY", value_name = "PATH")]
    pub git_ssh_key: Option<PathBuf>,
    /// OpenSSH known_hosts file for ssh remotes (default ~/.ssh/known_hosts); an unknown or
    /// changed host key is refused.
    #[arg(long, global = true, env = "GANTRY_GIT_KNOWN_HOSTS", value_name = "PATH")]
    pub git_known_hosts: Option<PathBuf>,
    /// File holding the token for https remotes (basic auth password).
    #[arg(long, global = true, env = "GANTRY_GIT_TOKEN_FILE", value_name = "PATH")]
    pub git_token_file: Option<PathBuf>,
    /// User name for https basic auth (default git).
    #[arg(long, global = true, env = "GANTRY_GIT_USERNAME", value_name = "NAME")]
    pub git_username: Option<String>,
    /// Extra CA certificates (PEM) for https remotes.
    #[arg(long, global = true, env = "GANTRY_GIT_CA_FILE", value_name = "PATH")]
    pub git_ca_file: Option<PathBuf>,
}

impl GitArgs {
    /// The credentials these flags describe.
    pub fn auth(&self) -> crate::source::remote::GitAuth {
        crate::source::remote::GitAuth {
            ssh_key: self.git_ssh_key.clone(),
            known_hosts: self.git_known_hosts.clone(),
            token_file: self.git_token_file.clone(),
            username: self.git_username.clone(),
            ca_file: self.git_ca_file.clone(),
        }
    }
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
    /// Prepare a reconciler's repository from a remote (desired and state branches fetched).
    Clone {
        /// The fleet repository: https://…, ssh://…, user@host:path, or a path.
        url: String,
        /// A new or empty directory.
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
        /// Markdown: roll up targets by this label too (e.g. tenant), besides by component.
        #[arg(long, value_name = "LABEL")]
        group_by: Option<String>,
        /// Markdown: the most bytes to print; a larger plan is summarized, naming what it left
        /// out [default: 60000, under a pull request comment's 65,536 characters].
        #[arg(long, value_name = "N")]
        max_bytes: Option<usize>,
        /// Also write the full plan, in the chosen format and never summarized, to this file.
        #[arg(long, value_name = "PATH")]
        full_output: Option<std::path::PathBuf>,
        /// Only targets with this label (repeatable: all must match); see `ops::agents`.
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = crate::ops::agents::Selector::parse_pair)]
        selector: Vec<(String, String)>,
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
        /// Only targets with this label (repeatable: all must match); see `ops::agents`.
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = crate::ops::agents::Selector::parse_pair)]
        selector: Vec<(String, String)>,
    },
    /// Watch and reconcile until SIGTERM; serve /healthz, /metrics, /api/status and a status page.
    Daemon {
        /// The HTTP address (overrides `listen` in gantry.toml; port 0 picks a free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// File holding the secret Git servers sign webhook deliveries with
        /// (`POST /api/hooks/git`); without it every delivery is refused.
        #[arg(long, env = "GANTRY_WEBHOOK_SECRET_FILE", value_name = "PATH")]
        webhook_secret_file: Option<PathBuf>,
        /// Reconcile heads that do not descend from the last reconciled commit.
        #[arg(long)]
        allow_rewind: bool,
        /// A host name the HTTP API answers to besides the listen address (repeatable).
        #[arg(long = "allowed-host", value_name = "NAME")]
        allowed_hosts: Vec<String>,
        /// Only targets with this label (repeatable: all must match); see `ops::agents`.
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = crate::ops::agents::Selector::parse_pair)]
        selector: Vec<(String, String)>,
        /// High availability on etcd (`--etcd`, `--shard`, `--lease-ttl`; see `cluster`).
        #[command(flatten)]
        cluster: daemon::ClusterArgs,
    },
    /// Per target: current, desired, status, next action, window, blockers.
    Status {
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Only targets with this label (repeatable: all must match); see `ops::agents`.
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = crate::ops::agents::Selector::parse_pair)]
        selector: Vec<(String, String)>,
        /// Run each converged target's `observe` step first and record drift.
        #[arg(long)]
        observe: bool,
    },
    /// A target's available releases (what its version, channels and policy allow), the
    /// version it runs and the versions it can be rolled back to.
    Versions {
        target: String,
        #[arg(long, value_enum, default_value = "text")]
        format: VersionsFormat,
    },
    /// Per target the projected start (windows, waves, soaks, approvals, stages), and each
    /// rollout's progress and expected completion.
    Schedule {
        #[arg(long, value_enum, default_value = "text")]
        format: VersionsFormat,
        /// Only targets with this label (repeatable: all must match); the projection still
        /// counts every target.
        #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = crate::ops::agents::Selector::parse_pair)]
        selector: Vec<(String, String)>,
    },
    /// Outcomes recorded on the state branch, newest first.
    History {
        /// Only this target.
        target: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: HistoryFormat,
    },
    /// Commit, on the desired branch, the change that pins TARGETs (or --selector) to their previous versions, in one commit.
    Rollback {
        /// Targets to roll back.
        #[arg(required_unless_present = "selector")]
        targets: Vec<String>,
        /// Also every target with this label (KEY=VALUE; repeat to require several).
        #[arg(long, value_name = "KEY=VALUE")]
        selector: Vec<String>,
        /// The version to pin: a recorded rollback point or an existing release.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
        /// Write the commit on a new branch (for a pull request) instead of the desired branch.
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
        /// Why: recorded as the commit's `Gantry-Reason` trailer and shown by `history`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
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
    /// Bump spec.retry of targets (a reviewed change that re-arms their halted attempt and
    /// rollout), in one commit on the desired branch.
    Retry {
        /// Targets to retry.
        targets: Vec<String>,
        /// Also every target with this label (KEY=VALUE; repeat to require several).
        #[arg(long, value_name = "KEY=VALUE")]
        selector: Vec<String>,
        /// Write the commit on a new branch (for a pull request) instead of the desired branch.
        #[arg(long, value_name = "NAME")]
        branch: Option<String>,
        /// Why: recorded as the commit's `Gantry-Reason` trailer and shown by `history`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Print the JSON Schemas of the manifest kinds (all, or one).
    Schema {
        /// component, release, target, policy, window, approval, fleet, config (gantry.toml) or plan.
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

/// Output formats of `gantry versions` and `gantry schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VersionsFormat {
    Text,
    Json,
}

/// Log line formats (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Parses `--now` / `GANTRY_NOW`, or reads the clock.
fn now(cli: &Cli) -> Result<jiff::Timestamp, OpsError> {
    match &cli.now {
        Some(text) => text.parse::<jiff::Timestamp>().map_err(|e| {
            OpsError::Usage(format!(
                "--now `{text}` is not an RFC 3339 time such as 2026-11-21T10:00:00Z ({e})"
            ))
        }),
        None => Ok(jiff::Timestamp::now()),
    }
}

/// `--now` when given (a fixed clock), else `None` (the system clock, read when needed).
fn now_fixed(cli: &Cli) -> Result<Option<jiff::Timestamp>, OpsError> {
    match &cli.now {
        Some(_) => now(cli).map(Some),
        None => Ok(None),
    }
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
        // Stage timings: the load, plan, render and state-read stages are `debug` spans, so
        // `RUST_LOG=gantry=debug` prints how long each took when it closes (`bench/plan_10k.sh`).
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
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
    // The key is read before anything runs: a missing or unusable key is an error up front, never
    // a pass that records unsigned outcomes.
    if let Some(path) = &cli.state_signing_key {
        match crate::source::trust::CommitSigner::from_file(path) {
            Ok(signer) => crate::state::signing::configure(signer),
            Err(e) => {
                let error = OpsError::Usage(format!("--state-signing-key: {e}; nothing ran"));
                eprintln!("error: {error}");
                return ExitCode::from(error.exit() as u8);
            }
        }
    }
    let result = match &cli.command {
        Command::Validate { rev, format } => validate::run(&cli, rev.as_deref(), *format),
        Command::Plan {
            base,
            head,
            format,
            group_by,
            max_bytes,
            full_output,
            selector,
        } => plan::run(
            &cli,
            base.as_deref(),
            head.as_deref(),
            &plan::Output {
                format: *format,
                group_by: group_by.clone(),
                max_bytes: *max_bytes,
                full_output: full_output.clone(),
            },
            &Selector(selector.clone()),
        ),
        Command::Apply {
            targets,
            dry_run,
            allow_rewind,
            format,
            selector,
        } => apply::run(
            &cli,
            targets,
            *dry_run,
            *allow_rewind,
            *format,
            &Selector(selector.clone()),
        ),
        Command::Daemon {
            listen,
            webhook_secret_file,
            selector,
            allow_rewind,
            allowed_hosts,
            cluster,
        } => daemon::run(
            &cli,
            listen.as_deref(),
            webhook_secret_file.as_deref(),
            &Selector(selector.clone()),
            *allow_rewind,
            allowed_hosts,
            cluster,
        ),
        Command::Status {
            format,
            selector,
            observe,
        } => status::run(&cli, *format, &Selector(selector.clone()), *observe),
        Command::Schedule { format, selector } => schedule::run(&cli, *format, &Selector(selector.clone())),
        Command::History { target, format } => history::run(&cli, target.as_deref(), *format),
        Command::Rollback {
            targets,
            selector,
            to,
            branch,
            reason,
        } => rollback::run(
            &cli,
            &crate::ops::rollback::RollbackOptions {
                targets: targets.clone(),
                selector: selector.clone(),
                to: to.clone(),
                branch: branch.clone(),
                reason: reason.clone(),
            },
        ),
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
        Command::Versions { target, format } => versions::run(&cli, target, *format),
        Command::Retry {
            targets,
            selector,
            branch,
            reason,
        } => retry::run(&cli, targets, selector, branch.as_deref(), reason.as_deref()),
        Command::Schema { kind } => schema::run(kind.as_deref()),
        Command::Init { dir } => init::run(&cli, dir),
        Command::Clone { url, dir } => clone::run(&cli, url, dir),
        Command::Completions { shell } => completions::completions(*shell),
        Command::Man => completions::man(),
    };
    match result {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(&e));
            ExitCode::from(e.exit() as u8)
        }
    }
}
