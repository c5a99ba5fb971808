//! The daemon: watches the repository, reconciles on every new desired commit and on its own
//! timers, and serves `/healthz`, `/metrics`, `/api/status`, `/api/events` and a status page
//! over HTTP.
//!
//! # Expected flow
//! Take the repository lock for the daemon's whole life → bind the HTTP address (printing
//! `listening on ADDR` as the first line on stderr) → reconcile once → wait for a trigger: a file
//! event on the desired branch's ref (local commits act within milliseconds), a remote poll
//! (`poll_interval`, or `POST /api/refresh`), or the plan's next instant (a window opens, a soak
//! ends, an error's retry) → reconcile again. Passes are blocking code on `spawn_blocking`.
//!
//! # Guarantees
//! SIGTERM/SIGINT: no new step starts, the running step finishes (or times out) and is
//! recorded, then the daemon exits 0. An attempt stopped between two steps keeps its journal
//! and resumes at the next start. A desired commit that fails validation is not reconciled:
//! nothing of it runs, the error is logged, notified (`invalid_commit`) and shown by
//! `/api/daemon` and the status page, and the daemon waits for the next commit.

mod events;
pub mod guard;
pub mod hooks;
mod http;
pub mod metrics;
mod page;
pub mod remote;
pub mod scheduler;
pub mod status_cache;
mod stream;
mod svg;
mod views;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use git2::Oid;
use jiff::Timestamp;
use serde::Serialize;

use crate::manifest::RepoConfig;
use crate::reconcile::apply::{ApplyError, ApplyOptions};
use crate::source::sync::Fetched;
use crate::source::{SourceError, WatchedRepo};
use crate::state::{LockError, ReconcilerLock, read_recorded_shared};

use self::events::DaemonSink;
use self::metrics::Metrics;
use self::scheduler::{Observed, PassResult, Reconcile, Scheduler, Trigger};
use crate::ops::Requeue;
use crate::ops::notify::{self as notices, Notifier};

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another reconciler (a daemon or `gantry apply`) holds the repository.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The repository could not be opened or read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// `--etcd`: the shard could not be joined.
    #[error("cannot join the shard: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source} (set `listen` in gantry.toml or pass --listen ADDR)")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The runtime, the file watcher or the HTTP server failed.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Watching the repository's refs failed.
    #[error("cannot watch {path} for new commits: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: ::notify::Error,
    },
    /// `poll_interval` in gantry.toml is not a duration (the message of
    /// [`RepoConfig::poll_interval`], the same `validate` prints).
    #[error("gantry.toml: {0}")]
    PollInterval(String),
}

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub repo: PathBuf,
    /// Overrides `listen` from gantry.toml (port 0: any free port).
    pub listen: Option<String>,
    /// A fixed clock (`--now`): timers never fire, which suits tests.
    pub now: Option<Timestamp>,
    /// Credentials for the remote (host settings).
    pub auth: crate::source::remote::GitAuth,
    /// The secret webhook deliveries must prove (`--webhook-secret-file`).
    pub webhook_secret: Option<hooks::WebhookSecret>,
    /// `--selector`: the targets this agent reconciles (see `ops::agents`).
    pub selector: crate::ops::agents::Selector,
    /// Reconcile heads that do not descend from the trust anchor (`--allow-rewind`).
    pub allow_rewind: bool,
    /// Host names the HTTP API answers to besides the listen address (`--allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// `--etcd …`: join a shard; only its leader reconciles (see `crate::cluster`).
    pub cluster: Option<crate::cluster::ClusterOptions>,
}

/// What the daemon knows beyond the status report (served as `/api/daemon`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonState {
    /// The last desired commit that validated and was reconciled.
    pub last_valid_commit: Option<String>,
    /// The tip of the desired branch when it does not validate, with its errors.
    pub invalid_commit: Option<InvalidCommit>,
    pub passes: u64,
    /// When the last pass finished (RFC 3339).
    pub last_pass: Option<String>,
    /// The last pass's error other than an invalid commit (cleared by a pass that runs).
    pub last_error: Option<String>,
    /// When a failed pass is retried (RFC 3339), while the last pass failed transiently.
    pub next_retry: Option<String>,
    /// Consecutive failed passes (the backoff doubles with each, up to 5 minutes).
    pub failures: u32,
    /// The last fetch or push error (cleared by a good one).
    pub remote_error: Option<String>,
    /// When the daemon wakes next on its own (RFC 3339): a retry, a window opening or soak
    /// ending, or at the latest the periodic full reconcile (`poll_interval`).
    pub next_wake: Option<String>,
    /// The last state-branch housekeeping pass (`[housekeeping]`), once one ran.
    pub housekeeping: Option<Housekeeping>,
}

/// The last housekeeping pass, for `/api/daemon`.
#[derive(Debug, Clone, Serialize)]
pub struct Housekeeping {
    /// When it finished (RFC 3339, wall clock).
    pub last: String,
    /// What it did (counts of loose objects before and after, objects packed, …).
    #[serde(flatten)]
    pub done: crate::state::housekeeping::Housekept,
    /// Why it stopped early, if it did (what it did before stays done).
    pub error: Option<String>,
}

/// A desired commit that failed validation.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidCommit {
    pub commit: String,
    pub errors: Vec<String>,
}

/// State shared by the reconcile loop, the HTTP handlers and the file watcher.
pub struct Shared {
    pub repo_path: PathBuf,
    pub now: Option<Timestamp>,
    /// `--allow-rewind`.
    pub allow_rewind: bool,
    /// Which Host and Origin headers the HTTP API accepts (`guard`).
    pub guard: guard::HostGuard,
    pub metrics: Mutex<Metrics>,
    pub daemon: Mutex<DaemonState>,
    /// Set once on SIGTERM/SIGINT.
    pub stop: AtomicBool,
    /// `POST /api/refresh` asked for a fetch and a pass.
    pub refresh: AtomicBool,
    /// Wakes the reconcile loop (file events, refresh, stop).
    pub wake: tokio::sync::Notify,
    /// When the first ref event since the last pass arrived (commit-to-first-step latency).
    pub event_at: Mutex<Option<Instant>>,
    pub notifier: Notifier,
    /// What notifications remember across passes (rollouts announced, targets blocked).
    pub notices: Mutex<notices::Memory>,
    /// The status `/api/status` and the page serve (recomputed only when its inputs move).
    pub status: status_cache::StatusCache,
    /// When housekeeping last ran (monotonic clock: it paces itself, not the plan).
    pub housekept_at: Mutex<Option<Instant>>,
    /// `/api/events`: the passes' progress as server-sent events.
    pub events: stream::EventHub,
    config: RepoConfig,
    auth: crate::source::remote::GitAuth,
    webhook_secret: Option<hooks::WebhookSecret>,
    selector: crate::ops::agents::Selector,
    /// Set once the shard is joined (`--etcd`); empty otherwise.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Shared {
    /// The clock: `--now`, or the system's.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// # Errors
/// [`ServerError::Locked`] when another reconciler holds the repository; others when the
/// repository, the address or the watcher cannot be set up. Failures of single passes are
/// logged and retried, never returned.
pub fn run(options: DaemonOptions) -> Result<(), ServerError> {
    // Every pass re-reads the desired commit: files unchanged since (same blob) are not parsed
    // again (issue #17).
    crate::manifest::parse_cache::enable();
    // Likewise the state branch's records, by blob id: a pass reads the branch several times.
    crate::state::branch::enable_process_cache();
    // And the template check's answers per target: after a one-file change only the targets
    // whose render inputs changed are rendered again.
    crate::reconcile::load::enable_template_memo();
    // The history walk and template check cache files are written off the pass's path; the
    // last saves are flushed at shutdown.
    crate::source::cache_writer::write_in_background();
    // And the levels of the desired commit's tree, by tree id: a commit that changes one file
    // leaves most directories as they were.
    crate::source::tree_listing::enable();
    let repo = WatchedRepo::open(&options.repo)?;
    let lock = ReconcilerLock::acquire(repo.repo.path())?;
    let config = read_config(&repo);
    let listen = options.listen.clone().unwrap_or_else(|| config.listen.clone());
    // `poll_interval` paces remote fetches and, with or without a remote, the periodic full
    // reconcile that catches whatever a lost file event missed.
    let interval = config.poll_interval().map_err(ServerError::PollInterval)?;
    let git_dir = repo.repo.path().to_path_buf();
    drop(repo);
    let shared = Arc::new(Shared {
        repo_path: options.repo.clone(),
        now: options.now,
        allow_rewind: options.allow_rewind,
        guard: guard::HostGuard::new(options.allowed_hosts.clone()),
        metrics: Mutex::new(Metrics::default()),
        daemon: Mutex::new(DaemonState::default()),
        stop: AtomicBool::new(false),
        refresh: AtomicBool::new(false),
        wake: tokio::sync::Notify::new(),
        event_at: Mutex::new(None),
        notifier: Notifier::new(config.notify.clone()),
        notices: Mutex::new(notices::Memory::default()),
        status: status_cache::StatusCache::default(),
        housekept_at: Mutex::new(None),
        events: stream::EventHub::default(),
        config,
        auth: options.auth.clone(),
        webhook_secret: options.webhook_secret.clone(),
        selector: options.selector.clone(),
        cluster: std::sync::OnceLock::new(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        // Passes run on blocking threads and parse manifests there: the parser threads' stack,
        // not tokio's 2 MiB (see `manifest::parallel::PARSER_STACK_BYTES`).
        .thread_stack_size(crate::manifest::parallel::PARSER_STACK_BYTES)
        .enable_all()
        .build()
        .map_err(|source| ServerError::Io {
            what: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(serve(
        shared,
        Arc::new(lock),
        &listen,
        &git_dir,
        interval,
        options.cluster,
    ))
}

/// `gantry.toml` at the tip of the desired branch (defaults when there is none yet).
fn read_config(repo: &WatchedRepo) -> RepoConfig {
    let Ok(tip) = repo.branch_tip(&repo.desired_branch_hint()) else {
        return RepoConfig::default();
    };
    match crate::reconcile::load::load_commit(repo, tip) {
        Ok(loaded) => loaded.desired.config,
        Err(_) => RepoConfig::default(),
    }
}

async fn serve(
    shared: Arc<Shared>,
    lock: Arc<ReconcilerLock>,
    listen: &str,
    git_dir: &Path,
    interval: Duration,
    cluster: Option<crate::cluster::ClusterOptions>,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        what: "cannot read the bound address",
        source,
    })?;
    shared.guard.bound(addr);
    // The first line on stderr, always plain text: tests and scripts read the port from it.
    eprintln!("listening on {addr}");
    tracing::info!(%addr, repo = %shared.repo_path.display(), "daemon started");
    // Ref locks of the state branch left by a gantry killed while writing it (issue #14).
    let mut state_refs = vec![format!("refs/heads/{}", shared.config.state_branch)];
    if let Some(remote) = &shared.config.remote {
        state_refs.push(format!("refs/remotes/{remote}/{}", shared.config.state_branch));
    }
    match lock.clear_stale_ref_locks(git_dir, &state_refs) {
        Ok(removed) => {
            for path in removed {
                tracing::warn!(path = %path.display(), "removed a ref lock left by a killed gantry");
            }
        }
        Err(e) => tracing::warn!("cannot remove a stale ref lock of the state branch: {e}"),
    }

    let _watcher = watch_refs(git_dir, &shared.config.desired_branch, Arc::clone(&shared))?;
    tokio::spawn(stop_on_signal(Arc::clone(&shared)));

    let (done, mut done_rx) = tokio::sync::watch::channel(false);
    let app = http::router(Arc::clone(&shared));
    let server = tokio::spawn(http::serve(listener, app, async move {
        let _ = done_rx.wait_for(|d| *d).await;
    }));

    let campaign = match cluster {
        Some(options) => Some(join_cluster(&shared, &options, git_dir).await?),
        None => None,
    };
    let mut scheduler = Scheduler::new(tokio::time::Instant::now(), interval);
    let mut daemon = Daemon {
        shared: Arc::clone(&shared),
        held: lock,
        poll: shared.config.remote.is_some().then_some(interval),
        next_poll: Some(tokio::time::Instant::now()),
        tip: None,
    };
    scheduler::drive(&mut scheduler, &mut daemon, &shared.wake, &shared.stop).await;
    // Event streams never end on their own: end them, or they would hold the shutdown.
    shared.events.close();
    if let Some((stop, task)) = campaign {
        // After the last step finished: give the leadership up so a standby takes over at once.
        stop.notify_one();
        let _ = task.await;
    }
    let _ = done.send(true);
    if let Err(e) = server.await {
        tracing::error!("the HTTP server task ended abnormally: {e}");
    }
    crate::source::cache_writer::flush();
    tracing::info!("stopped");
    Ok(())
}

/// `--etcd`: joins the shard, installs the journal fence and starts campaigning. Each election
/// won asks the loop for a pass (a refresh: fetch, then reconcile).
async fn join_cluster(
    shared: &Arc<Shared>,
    options: &crate::cluster::ClusterOptions,
    git_dir: &Path,
) -> Result<(Arc<tokio::sync::Notify>, tokio::task::JoinHandle<()>), ServerError> {
    let cluster = crate::cluster::Cluster::join(options, &shared.selector, git_dir).await?;
    crate::cluster::install_fence(&cluster);
    let _ = shared.cluster.set(Arc::clone(&cluster));
    let stop = Arc::new(tokio::sync::Notify::new());
    let s = Arc::clone(shared);
    let task = tokio::spawn(cluster.run(Arc::clone(&stop), move || {
        s.refresh.store(true, Ordering::SeqCst);
        s.wake.notify_one();
    }));
    Ok((stop, task))
}

/// Sets the stop flag on SIGTERM or SIGINT.
async fn stop_on_signal(shared: Arc<Shared>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let sigterm = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = sigterm => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: no new step starts; the running step finishes and is recorded");
    shared.stop.store(true, Ordering::SeqCst);
    shared.wake.notify_one();
}

/// Watches `.git` (HEAD, packed-refs) and `.git/refs` (recursively) and wakes the loop on any
/// change to the desired branch's ref. The loop compares the branch tip, so a burst of events
/// (lock file, rename, reflog) amounts to one pass: events are debounced by the tip itself.
fn watch_refs(git_dir: &Path, branch: &str, shared: Arc<Shared>) -> Result<::notify::RecommendedWatcher, ServerError> {
    use ::notify::{RecursiveMode, Watcher};
    let ref_path = PathBuf::from("refs/heads").join(branch);
    let wanted =
        move |path: &Path| path.ends_with(&ref_path) || path.ends_with("packed-refs") || path.ends_with("HEAD");
    let mut watcher = ::notify::recommended_watcher(move |event: ::notify::Result<::notify::Event>| {
        // An error (an inotify queue overflow, no file descriptor for a new watch) may have cost
        // events: look at the tip now rather than wait for the rescan.
        let Ok(event) = event else {
            shared.wake.notify_one();
            return;
        };
        // Reading a ref (as the loop itself does) is an access event; only changes matter.
        if matches!(event.kind, ::notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.iter().any(|p| wanted(p)) {
            lock(&shared.event_at).get_or_insert_with(Instant::now);
            shared.wake.notify_one();
        }
    })
    .map_err(|source| ServerError::Watch {
        path: git_dir.to_path_buf(),
        source,
    })?;
    let refs = git_dir.join("refs");
    for (path, mode) in [
        (git_dir, RecursiveMode::NonRecursive),
        (refs.as_path(), RecursiveMode::Recursive),
    ] {
        watcher.watch(path, mode).map_err(|source| ServerError::Watch {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(watcher)
}

/// The tip of the desired branch, if it has one.
fn desired_tip(shared: &Shared) -> Option<Oid> {
    let repo = WatchedRepo::open(&shared.repo_path).ok()?;
    repo.branch_tip(&shared.config.desired_branch).ok()
}

/// The daemon as the scheduler drives it: fetches, tip reads and passes on blocking threads.
struct Daemon {
    shared: Arc<Shared>,
    held: Arc<ReconcilerLock>,
    /// The remote's poll interval, when there is a remote.
    poll: Option<Duration>,
    next_poll: Option<tokio::time::Instant>,
    /// The tip as last observed: the input a terminal error is tied to.
    tip: Option<Oid>,
}

impl Reconcile for Daemon {
    async fn observe(&mut self) -> Observed {
        let refresh = self.shared.refresh.swap(false, Ordering::SeqCst);
        // Remote: fetch when the poll is due or a refresh asked for it.
        if let (Some(remote), Some(interval)) = (self.shared.config.remote.clone(), self.poll)
            && (refresh || self.next_poll.is_some_and(|t| t <= tokio::time::Instant::now()))
        {
            self.next_poll = Some(tokio::time::Instant::now() + interval);
            let s = Arc::clone(&self.shared);
            let fetched = tokio::task::spawn_blocking(move || fetch(&s, &remote)).await;
            if let Ok(Some(at)) = fetched {
                lock(&self.shared.event_at).get_or_insert(at);
            }
        }
        let s = Arc::clone(&self.shared);
        self.tip = tokio::task::spawn_blocking(move || desired_tip(&s))
            .await
            .ok()
            .flatten();
        Observed { tip: self.tip, refresh }
    }

    async fn reconcile(&mut self, trigger: Trigger) -> PassResult {
        let seen = lock(&self.shared.event_at).take();
        let seen = if trigger == Trigger::NewCommit { seen } else { None };
        let (s, l) = (Arc::clone(&self.shared), Arc::clone(&self.held));
        let outcome = tokio::task::spawn_blocking(move || run_pass(&s, &l, seen))
            .await
            .unwrap_or_else(|e| PassOutcome::Failed {
                requeue: Requeue::Backoff,
                message: format!("the pass panicked: {e}"),
            });
        match outcome {
            PassOutcome::Done { commit, next_wake } => PassResult::Done {
                commit,
                next_wake: next_wake.and_then(|at| instant_of(&self.shared, at)),
            },
            PassOutcome::Invalid { commit } => PassResult::Terminal {
                input: Some(commit),
                error: None,
            },
            PassOutcome::Failed { requeue, message } => {
                tracing::error!("reconcile pass failed: {message}");
                match requeue {
                    Requeue::WhenInputChanges => PassResult::Terminal {
                        input: self.tip,
                        error: Some(message),
                    },
                    Requeue::Backoff => PassResult::Transient { error: message },
                }
            }
        }
    }

    fn publish(&mut self, scheduler: &Scheduler) {
        let mut daemon = lock(&self.shared.daemon);
        daemon.last_error = scheduler.last_error().map(str::to_string);
        daemon.next_wake = scheduler.next_wake().map(wall_clock);
        daemon.next_retry = scheduler.next_retry().map(wall_clock);
        daemon.failures = scheduler.failures();
    }

    fn next_poll(&self) -> Option<tokio::time::Instant> {
        self.poll.and(self.next_poll)
    }
}

/// The wall-clock time (RFC 3339) of a monotonic instant, for `/api/daemon`.
fn wall_clock(at: tokio::time::Instant) -> String {
    let ahead = at.saturating_duration_since(tokio::time::Instant::now());
    Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(ahead).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or_else(|_| Timestamp::now())
        .to_string()
}

/// The monotonic instant of a wall-clock time (`None` with a fixed `--now`: timers never fire).
fn instant_of(shared: &Shared, at: Timestamp) -> Option<tokio::time::Instant> {
    if shared.now.is_some() {
        return None;
    }
    let ahead = Timestamp::now().duration_until(at);
    let ahead = Duration::try_from(ahead).unwrap_or_default();
    // A little slack so the plan, computed at wake-up, sees the instant as past.
    Some(tokio::time::Instant::now() + ahead + Duration::from_millis(50))
}

/// Fetches the desired branch; the time it advanced, if it did.
fn fetch(shared: &Shared, remote: &str) -> Option<Instant> {
    let repo = WatchedRepo::open(&shared.repo_path).ok()?;
    match remote::fetch_desired(&repo.repo, remote, &shared.config.desired_branch, &shared.auth) {
        Ok(fetched) => {
            lock(&shared.daemon).remote_error = None;
            match fetched {
                Fetched::Advanced(commit) => {
                    tracing::info!(remote, %commit, "fetched a new desired commit");
                    Some(Instant::now())
                }
                Fetched::Unchanged | Fetched::Missing => None,
                Fetched::Diverged => {
                    tracing::warn!(
                        remote,
                        branch = %shared.config.desired_branch,
                        "the local desired branch has commits the remote lacks; not fast-forwarding"
                    );
                    None
                }
            }
        }
        Err(e) => {
            tracing::warn!("fetch failed: {e}");
            lock(&shared.daemon).remote_error = Some(e.to_string());
            None
        }
    }
}

/// How a pass ended, for the loop.
enum PassOutcome {
    Done {
        commit: Option<Oid>,
        next_wake: Option<Timestamp>,
    },
    Invalid {
        commit: Oid,
    },
    /// The pass failed; the error policy says whether to back off or wait for new input.
    Failed {
        requeue: Requeue,
        message: String,
    },
}

impl PassOutcome {
    /// A transient failure outside `apply` (opening the repository, reading state).
    fn transient(message: String) -> PassOutcome {
        PassOutcome::Failed {
            requeue: Requeue::Backoff,
            message,
        }
    }
}

/// One pass (blocking): apply, then metrics, notifications and the push of recorded state.
fn run_pass(shared: &Shared, lock_held: &ReconcilerLock, seen: Option<Instant>) -> PassOutcome {
    // Clustered: only the shard's leader reconciles (an election won triggers a pass), and
    // first from the journals etcd holds.
    if let Some(cluster) = shared.cluster.get() {
        match cluster.begin_pass(|| adopt_remote_state(shared)) {
            Ok(true) => {}
            Ok(false) => {
                return PassOutcome::Done {
                    commit: None,
                    next_wake: None,
                };
            }
            Err(e) => return PassOutcome::transient(e),
        }
    }
    let repo = match WatchedRepo::open(&shared.repo_path) {
        Ok(r) => r,
        Err(e) => return PassOutcome::transient(e.to_string()),
    };
    let state_branch = shared.config.state_branch.clone();
    // Unreadable recorded state fails the pass (and it is retried): a default here made the
    // wave and rollout notifications compare against nothing (issue #9).
    // Shared with the state branch cache (read-only here): not a copy of every record per pass.
    let before = match read_recorded_shared(&repo.repo, &state_branch) {
        Ok(before) => before,
        Err(e) => return PassOutcome::transient(format!("cannot read the state branch before the pass: {e}")),
    };
    let sink = DaemonSink::new(shared, seen, &before);
    let options = ApplyOptions {
        targets: Vec::new(),
        dry_run: false,
        now: shared.now,
        allow_rewind: shared.allow_rewind,
    };
    // With a remote: the recorded state is the remote's before planning (nothing runs when it
    // cannot be fetched), attempts are claimed across agents, outcomes published (`ops::shared`).
    let result = match crate::ops::shared::agent_pass(
        &repo,
        lock_held,
        &options,
        &shared.selector,
        &shared.auth,
        &shared.stop,
        &sink,
    ) {
        Ok(report) => {
            if shared.config.remote.is_some() {
                lock(&shared.daemon).remote_error = None;
            } else {
                // No remote: the local commit is the shared record (clustered journals go).
                crate::state::fence::published();
            }
            Ok(report)
        }
        Err(crate::ops::shared::SharedError::Apply(e)) => Err(e),
        Err(crate::ops::shared::SharedError::Sync(e)) => {
            let message = format!("{e}; no step runs until the remote's recorded state is known");
            tracing::warn!("{message}");
            lock(&shared.daemon).remote_error = Some(e.to_string());
            return PassOutcome::transient(message);
        }
    };
    // The pass counters move last, once its gauges and notifications are done, so a reader that
    // sees the pass counted sees everything it changed.
    let outcome = pass_outcome(shared, &repo, &state_branch, &before, result);
    housekeep_if_due(shared, &repo, lock_held);
    lock(&shared.metrics).passes += 1;
    lock(&shared.daemon).passes += 1;
    lock(&shared.daemon).last_pass = Some(Timestamp::now().to_string());
    outcome
}

/// Clustered, at a new leadership: the local state branch becomes the remote's (see
/// `Cluster::begin_pass`). Without a remote there is nothing to adopt.
fn adopt_remote_state(shared: &Shared) -> Result<(), String> {
    let Some(name) = &shared.config.remote else {
        return Ok(());
    };
    let repo = WatchedRepo::open(&shared.repo_path).map_err(|e| e.to_string())?;
    let remote = crate::source::remote::Remote::open(&repo.repo, name, &shared.auth).map_err(|e| e.to_string())?;
    crate::source::sync::adopt_remote_state(&repo.repo, &remote, &shared.config.state_branch)
        .map(|_| ())
        .map_err(|e| format!("cannot adopt the remote's recorded state: {e}"))
}

/// Packs and prunes the state branch's objects when `[housekeeping] interval` has passed since
/// the last time (the first pass of a daemon does it once), or at once when gantry's packs are
/// at the count a pass folds (a pass of many large batches), holding the reconciler lock, so no
/// gantry writer runs meanwhile.
fn housekeep_if_due(shared: &Shared, repo: &WatchedRepo, lock_held: &ReconcilerLock) {
    let settings = &shared.config.housekeeping;
    let parse = |text: &str, default: Duration| crate::manifest::values::parse_duration(text).unwrap_or(default);
    let interval = parse(&settings.interval, Duration::from_secs(3600)).max(Duration::from_secs(1));
    let prune_after = parse(&settings.prune_after, Duration::from_secs(14 * 86_400));
    // Not when the last housekeeping failed: a fold that cannot succeed (a listed pack damaged)
    // would otherwise run, and fail, after every pass instead of once an interval.
    let fold_now = crate::state::housekeeping::packs_to_fold(repo.repo.path())
        && lock(&shared.daemon)
            .housekeeping
            .as_ref()
            .is_none_or(|h| h.error.is_none());
    {
        let mut at = lock(&shared.housekept_at);
        if !fold_now && at.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        *at = Some(Instant::now());
    }
    let result = crate::state::housekeeping::housekeep(&repo.repo, lock_held, &shared.config.state_branch, prune_after);
    let (done, error) = match result {
        Ok(done) => {
            tracing::info!(
                loose_before = done.loose_before,
                packed = done.packed,
                pruned = done.pruned,
                loose_after = done.loose_after,
                "housekeeping: state objects packed, unreachable ones pruned"
            );
            (done, None)
        }
        Err(e) => {
            tracing::warn!("{e}; the repository is unchanged or only partly tidied, and valid");
            (crate::state::housekeeping::Housekept::default(), Some(e.to_string()))
        }
    };
    lock(&shared.daemon).housekeeping = Some(Housekeeping {
        last: Timestamp::now().to_string(),
        done,
        error,
    });
}

/// The bookkeeping after `apply_holding_lock`: metrics, status, notifications, remote push.
fn pass_outcome(
    shared: &Shared,
    repo: &WatchedRepo,
    state_branch: &str,
    before: &crate::state::RecordedState,
    result: Result<crate::reconcile::apply::ApplyReport, ApplyError>,
) -> PassOutcome {
    match result {
        Ok(report) => {
            let commit = report.commit.as_deref().and_then(|c| Oid::from_str(c).ok());
            {
                let mut metrics = lock(&shared.metrics);
                metrics.desired_commit_valid = true;
                metrics.last_valid_commit.clone_from(&report.commit);
            }
            {
                let mut daemon = lock(&shared.daemon);
                daemon.last_valid_commit.clone_from(&report.commit);
                daemon.invalid_commit = None;
                // `last_error`, `failures` and the wake-ups are the scheduler's, published
                // together once it has taken this pass's result.
            }
            tracing::info!(
                commit = report.commit.as_deref().unwrap_or(""),
                attempts = report.outcomes.len(),
                resumed = report.resumed,
                "pass finished"
            );
            let after = match read_recorded_shared(&repo.repo, state_branch) {
                Ok(after) => after,
                Err(e) => return PassOutcome::transient(format!("cannot read the state branch after the pass: {e}")),
            };
            // Drift: the observe stage of every pass (SPEC §4); its findings are in the state.
            let after = match commit {
                Some(head) => {
                    let now = shared.now.unwrap_or_else(Timestamp::now);
                    let runtime = crate::reconcile::runtime::Runtime::default();
                    match crate::reconcile::observe::observe(repo, head, now, &runtime, false) {
                        Ok(seen) if seen.iter().any(|o| o.drifted) => {
                            read_recorded_shared(&repo.repo, state_branch).unwrap_or(after)
                        }
                        Ok(_) => after,
                        Err(e) => {
                            tracing::warn!("observe stage: {e}");
                            after
                        }
                    }
                }
                None => after,
            };
            {
                // Attempts by component, update type, outcome and channel, their durations,
                // and rollout progress, from the records this pass wrote (issue #15).
                let mut counters = lock(&shared.metrics);
                for outcome in &report.outcomes {
                    counters.observe_attempt(&metrics::AttemptSample::of(outcome, after.targets.get(&outcome.target)));
                }
                if let Some(plan) = &report.plan {
                    counters.rollouts = metrics::rollout_progress(&plan.rollouts, &after);
                }
            }
            stream::publish_pass(&shared.events, before, &after);
            let notice_due = after_pass(shared, repo, before, &after, !report.outcomes.is_empty());
            if (!report.outcomes.is_empty() || report.resumed > 0)
                && let Some(remote) = &shared.config.remote
            {
                match remote::push_state(&repo.repo, remote, state_branch, &shared.auth) {
                    Ok(()) => lock(&shared.daemon).remote_error = None,
                    Err(e) => {
                        tracing::warn!("cannot push the state branch: {e}");
                        lock(&shared.daemon).remote_error = Some(e.to_string());
                    }
                }
            }
            // Clustered: an attempt that could not start (its fenced journal write was refused
            // or unanswered: leadership lost, or etcd without quorum) is retried with backoff.
            // Done would wait for the next poll, and nothing else asks for a pass while the
            // role does not change (a leader stalled for the whole poll interval).
            if shared.cluster.get().is_some() && !report.not_started.is_empty() {
                let (target, error) = &report.not_started[0];
                return PassOutcome::transient(format!(
                    "{} attempt(s) could not start, first {target}: {error}",
                    report.not_started.len()
                ));
            }
            let next_wake = report
                .plan
                .as_ref()
                .and_then(|p| next_instant(p, shared.now()))
                .into_iter()
                .chain(notice_due)
                .min();
            PassOutcome::Done { commit, next_wake }
        }
        Err(ApplyError::InvalidCommit {
            commit, diagnostics, ..
        }) => {
            lock(&shared.metrics).desired_commit_valid = false;
            let errors: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            let short = &commit[..12.min(commit.len())];
            let already = {
                let mut daemon = lock(&shared.daemon);
                let already = daemon.invalid_commit.as_ref().is_some_and(|i| i.commit == commit);
                daemon.invalid_commit = Some(InvalidCommit {
                    commit: commit.clone(),
                    errors: errors.clone(),
                });
                already
            };
            if !already {
                for e in &errors {
                    tracing::error!(commit = %commit, "{e}");
                }
                tracing::error!(commit = %commit, "desired commit {short} is not valid; nothing of it is applied");
                notices::invalid_commit(&shared.notifier, &commit, &errors);
            }
            match Oid::from_str(&commit) {
                Ok(commit) => PassOutcome::Invalid { commit },
                Err(e) => PassOutcome::transient(e.to_string()),
            }
        }
        Err(e) => PassOutcome::Failed {
            requeue: crate::ops::error_policy(&e),
            message: e.to_string(),
        },
    }
}

/// After a pass: the target gauges, and the notifications of a finished pass (the same
/// function `gantry apply` ends with: `ops::notify::after_pass`). Returns when the next
/// `upgrade_scheduled` notice falls due, for the daemon to wake then.
fn after_pass(
    shared: &Shared,
    repo: &WatchedRepo,
    before: &crate::state::RecordedState,
    after: &crate::state::RecordedState,
    recorded_something: bool,
) -> Option<Timestamp> {
    let key = status_cache::key(shared, repo);
    // The projection is a planning round per instant something lifts (seconds for thousands of
    // targets): made after a pass only for `upgrade_scheduled`; otherwise the page or
    // `/api/status` makes it when asked (the cache keeps it until its inputs move).
    let projection = if shared.notifier.wants(notices::Event::UpgradeScheduled) {
        crate::ops::status::Projection::Schedule
    } else {
        crate::ops::status::Projection::Skip
    };
    let status = match crate::ops::status::status_report(repo, None, shared.now(), projection) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot compute the status after the pass: {e}");
            return None;
        }
    };
    let mut by_status = std::collections::BTreeMap::new();
    for t in &status.targets {
        *by_status.entry(t.status.clone()).or_insert(0u64) += 1;
    }
    lock(&shared.metrics).targets = by_status;
    notices::after_pass(
        &shared.notifier,
        &shared.notices,
        before,
        after,
        &status,
        recorded_something,
    );
    notices::announce_updates(&shared.notifier, &status, repo.repo.path());
    let notice_due = status
        .schedule
        .as_ref()
        .and_then(|s| notices::scheduled::announce(&shared.notifier, s, repo.repo.path(), shared.now()));
    if status.schedule.is_some() {
        shared.status.offer(shared, repo, key, status);
    }
    notice_due
}

/// The earliest future instant in a plan: a window opening, a blocker lifting, a soak ending.
pub fn next_instant(plan: &crate::plan::Plan, now: Timestamp) -> Option<Timestamp> {
    let blockers = plan
        .actions
        .iter()
        .flat_map(|a| &a.blocked_by)
        .filter_map(crate::plan::Blocker::lifts_at);
    let soaks = plan.rollouts.iter().flat_map(|r| &r.waves).filter_map(|w| w.soak_until);
    blockers.chain(soaks).filter(|at| *at > now).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue #9): the daemon had its own duration grammar; `1h30m` passed
    /// `validate` and then stopped the daemon, and a bare `10` did the reverse.
    #[test]
    fn poll_interval_shares_the_manifest_grammar() {
        for (text, want) in [
            ("30s", Ok(Duration::from_secs(30))),
            ("5m", Ok(Duration::from_secs(300))),
            ("1h30m", Ok(Duration::from_secs(5400))),
            ("250ms", Ok(Duration::from_millis(250))),
            (
                "10",
                Err(format!(
                    "poll_interval: \"10\" is not a valid duration: {}",
                    crate::manifest::values::DURATION_RULE
                )),
            ),
            (
                "0s",
                Err("poll_interval: \"0s\" must be longer than 0 (e.g. 30s, 10m, 1h30m)".to_string()),
            ),
        ] {
            let config = RepoConfig {
                poll_interval: text.to_string(),
                ..RepoConfig::default()
            };
            assert_eq!(config.poll_interval(), want, "{text}");
            if let Err(message) = want {
                assert_eq!(
                    ServerError::PollInterval(message.clone()).to_string(),
                    format!("gantry.toml: {message}")
                );
            }
        }
    }
}
