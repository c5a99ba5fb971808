//! One reconcile pass: recover interrupted attempts, plan, run every ready action, record.
//!
//! Named stages, as in Flux's controllers: fetch (read the desired commit and the state branch)
//! → plan (pure) → gate (the plan's blockers) → execute (attempts, in parallel up to each
//! policy's `maxParallel`) → record (outcome commits on the state branch). A terminal problem
//! (an invalid desired commit) stops before execute; a failed step is an outcome, not an error.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use crate::manifest::Version;
use git2::Oid;
use jiff::Timestamp;

use std::sync::Arc;

use crate::executor::health::Clock;
use crate::manifest::health::HealthSettings;
use crate::manifest::secrets::Redactor;
use crate::manifest::{Desired, Diagnostic, PolicySpec};
use crate::plan::{self, Action, ActionKind, Plan, Status};
use crate::policy::{self, Governing};
use crate::source::{SourceError, WatchedRepo, trust};
use crate::state::housekeeping;
use crate::state::{
    AttemptHeader, Batch, FinishedAttempt, Journal, JournalError, LockError, Outcome, ReconcilerLock, RecordedState,
    RolloutRecord, RolloutTarget, RolloutTargetStatus, StateError, StateWriter, TargetRecord, TargetStatus, WaveRecord,
};

use super::attempt::{self, AttemptEnv, AttemptResult, ExecutorPool, ProgressSink};
use super::load::{LoadedCommit, load_commit};
use super::program;
use super::runtime::Runtime;

/// Finished attempts wait at most this long to be recorded together.
const RECORD_AFTER: std::time::Duration = std::time::Duration::from_millis(200);
/// ... or until this many are waiting ...
const RECORD_BATCH: usize = 64;
/// ... or, on a fleet larger than `RECORD_BATCH * RECORD_SHARE`, this fraction of it: a state
/// commit rewrites the `targets/` tree and the rollout files, which grow with the fleet, so batches
/// of a fixed size made converging a fleet quadratic (issue #17: at 10,000 targets, hashing and
/// compressing those objects took a quarter of the pass's CPU).
const RECORD_SHARE: usize = 64;

/// How many finished attempts may wait for one state commit on a fleet of `fleet` targets.
fn record_batch(fleet: usize) -> usize {
    RECORD_BATCH.max(fleet / RECORD_SHARE)
}

/// What a pass may do.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Only these targets (empty: all).
    pub targets: Vec<String>,
    /// Plan and report, run nothing, record nothing.
    pub dry_run: bool,
    /// A fixed clock (`--now`); `None` reads the system clock at each stage.
    pub now: Option<Timestamp>,
    /// Reconcile a head that does not descend from the trust anchor (`--allow-rewind`).
    pub allow_rewind: bool,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub commit: Option<String>,
    /// The state branch the pass read and wrote, once the commit's config named it.
    pub state_branch: Option<String>,
    pub outcomes: Vec<FinishedAttempt>,
    /// The last plan computed (what is left: blocked, violations).
    pub plan: Option<Plan>,
    pub resumed: usize,
    /// Attempts that could not start (their journal could not be written: a full disk, a
    /// read-only `.git/gantry`), with the error and its OS cause. Nothing of them ran; the
    /// targets are retried by the next pass. A pass with any is not a success.
    pub not_started: Vec<(String, String)>,
    /// Actions a failing `precheck` held this pass: (target, reason). Nothing of them ran.
    pub held: Vec<(String, String)>,
}

impl ApplyReport {
    /// Whether any attempt of this pass ended failed or rolled back.
    pub fn has_failures(&self) -> bool {
        self.outcomes.iter().any(|o| o.outcome != Outcome::Succeeded)
    }
}

/// Why a pass stopped before or while executing.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Another reconciler holds the repository.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The repository could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The state branch could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The step journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The desired commit does not validate; nothing of it was applied.
    #[error("desired commit {commit} is not valid; nothing was applied (fix the errors above and commit again)")]
    InvalidCommit {
        commit: String,
        diagnostics: Vec<Diagnostic>,
        violations_only: bool,
    },
    /// An attempt could not be journaled or resumed.
    #[error(transparent)]
    Attempt(#[from] attempt::AttemptError),
    /// Finished attempts could not be committed to the state branch. Their journals are kept.
    #[error(
        "{source}; the outcome of {} is kept in the journal (.git/gantry/journal) and will be recorded by the \
         next `gantry apply` without running any step again",
        .targets.join(", ")
    )]
    Record {
        targets: Vec<String>,
        source: Box<StateError>,
    },
    /// `[trust]` is set and the desired commit is not signed by an allowed signer.
    #[error("commit {commit} is not signed by an allowed signer ({source}); nothing was applied")]
    Untrusted {
        commit: String,
        source: Box<crate::source::trust::TrustError>,
    },
    /// The trust anchor refuses the head: a rewind, an unrelated history, a missing anchor.
    #[error("{0}")]
    Anchor(#[source] Box<crate::source::trust::TrustError>),
    /// Targets named with --target that the desired state does not have.
    #[error("unknown target{} {}: not in the desired state", if .0.len() == 1 { "" } else { "s" }, .0.join(", "))]
    UnknownTargets(Vec<String>),
}

/// Runs one reconcile pass.
///
/// # Guarantees
/// Holds the repository lock for the whole pass (except `dry_run`). Every step's completion is
/// journaled before the next starts; every finished attempt is committed to the state branch
/// before its journal is removed. An invalid desired commit runs nothing.
///
/// # Errors
/// [`ApplyError`]; failed targets are outcomes in the report, not errors.
pub fn apply(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, ApplyError> {
    apply_with(repo, options, progress, &Runtime::default())
}

/// [`apply`] with injected executors and clocks (see [`Runtime`]).
///
/// # Errors
/// As [`apply`].
pub fn apply_with(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    progress: &dyn ProgressSink,
    runtime: &Runtime,
) -> Result<ApplyReport, ApplyError> {
    let lock = if options.dry_run {
        None
    } else {
        Some(ReconcilerLock::acquire(repo.repo.path())?)
    };
    let report = pass(repo, options, None, progress, runtime)?;
    if let (Some(lock), Some(state_branch)) = (&lock, &report.state_branch) {
        fold_packs(repo, lock, state_branch);
    }
    Ok(report)
}

/// Folds the packs of the pass's large batches before the lock is let go (see
/// [`housekeeping::fold_packs`]; the daemon does it in its housekeeping). A failure only costs
/// lookups, never a record: it is a warning, and the pass's outcome stands.
fn fold_packs(repo: &WatchedRepo, lock: &ReconcilerLock, state_branch: &str) {
    match housekeeping::fold_packs(&repo.repo, lock, state_branch) {
        Ok(Some(done)) => tracing::debug!(
            packs_folded = done.packs_folded,
            packed = done.packed,
            "the pass's packs of records were folded into one"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!("{e}; the records are intact, only spread over more packs"),
    }
}

/// Runs one reconcile pass for a caller that holds the repository lock for longer than a pass
/// (the daemon holds it for its whole life). `stop`, once set, lets no new attempt or step
/// start: running steps finish and are recorded; an attempt stopped between steps keeps its
/// journal and no outcome, so the next start resumes it.
///
/// # Errors
/// As [`apply`], except [`ApplyError::Locked`].
pub fn apply_holding_lock(
    repo: &WatchedRepo,
    _lock: &ReconcilerLock,
    options: &ApplyOptions,
    stop: &AtomicBool,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, ApplyError> {
    pass(repo, options, Some(stop), progress, &Runtime::default())
}

/// [`apply_holding_lock`] with injected executors and clocks (see [`Runtime`]).
///
/// # Errors
/// As [`apply_holding_lock`].
pub fn apply_holding_lock_with(
    repo: &WatchedRepo,
    _lock: &ReconcilerLock,
    options: &ApplyOptions,
    stop: &AtomicBool,
    progress: &dyn ProgressSink,
    runtime: &Runtime,
) -> Result<ApplyReport, ApplyError> {
    pass(repo, options, Some(stop), progress, runtime)
}

fn pass(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    stop: Option<&AtomicBool>,
    progress: &dyn ProgressSink,
    runtime: &Runtime,
) -> Result<ApplyReport, ApplyError> {
    let stopped = || stop.is_some_and(|s| s.load(Ordering::SeqCst));
    let clock = || runtime.now(options.now);
    let soak_clock = || runtime.soak_clock(options.now);
    let mut report = ApplyReport::default();
    let journal_dir = Journal::dir(repo.repo.path());

    // Fetch: the desired commit first, so its state branch name is known.
    let head = repo.branch_tip(&repo.desired_branch_hint())?;
    let (loaded, recorded) = super::load::load_with_recorded(repo, head)?;
    let mut recorded = recorded?;
    report.commit = Some(head.to_string());
    let state_branch = loaded.desired.config.state_branch.clone();
    report.state_branch = Some(state_branch.clone());
    let redactor = Redactor::from_desired(&loaded.desired);
    let context = PassContext {
        repo,
        state_branch: &state_branch,
        attempts: AttemptShared {
            now: &clock,
            soak_clock: &soak_clock,
            progress,
            journal_dir: &journal_dir,
            stop,
            redactor: &redactor,
        },
    };
    // Trust: before anything runs, even a resumed attempt (source::trust). The desired branch
    // only moves forward from the anchor, and the head is signed by the anchored signers.
    let trust_stage = tracing::debug_span!("trust.check").entered();
    let anchor = anchor_of(repo, &recorded)?;
    if !options.allow_rewind {
        trust::check_forward(repo, head, &anchor).map_err(|e| ApplyError::Anchor(Box::new(e)))?;
    }
    check_trust_anchored(repo, head, &loaded, &anchor)?;
    drop(trust_stage);

    // Recover: attempts a killed reconciler left behind go first, from their own commit.
    if !options.dry_run {
        let stage = tracing::debug_span!("journal.load_unfinished").entered();
        let unfinished = Journal::load_unfinished(&journal_dir)?;
        drop(stage);
        // Waves as the head's plan sees them, so a resumed attempt completes (or halts) its
        // wave like any other. Only planned when there is something to resume (a pass without
        // journals left behind, the usual case, skips a whole extra plan: issue #17).
        let members = if loaded.is_valid() && !unfinished.is_empty() {
            let evidence = super::load::evidence(repo, &loaded, &anchor)?;
            wave_members(
                &plan::plan(&loaded.plan_input(&recorded, &evidence, clock())).actions,
                &recorded,
            )
        } else {
            wave_members(&[], &recorded)
        };
        for left in unfinished {
            if stopped() {
                return Ok(report);
            }
            // A journal whose outcome the state branch already holds (its removal was lost to
            // a power cut) has nothing left to do.
            let recorded_already = recorded
                .targets
                .get(&left.header.target)
                .and_then(|r| r.last_attempt.as_ref())
                .is_some_and(|a| a.id == left.header.attempt && a.outcome.is_some());
            if recorded_already {
                left.remove()?;
                continue;
            }
            let commit = Oid::from_str(&left.header.desired_commit).map_err(SourceError::Git)?;
            let their = if commit == head {
                None
            } else {
                Some(load_commit(repo, commit)?)
            };
            let desired = their.as_ref().map_or(&loaded.desired, |l| &l.desired);
            let Some(env_parts) = EnvParts::for_target(repo, desired, &left.header.target, commit, &recorded)? else {
                // The target is gone from that commit's state: nothing sensible to resume.
                left.remove()?;
                continue;
            };
            let pool = ExecutorPool::for_runtime(runtime, desired, &env_parts.checkout);
            // Its own commit's secrets are what its steps may print.
            let theirs = their.as_ref().map(|l| Redactor::from_desired(&l.desired));
            let shared = AttemptShared {
                redactor: theirs.as_ref().unwrap_or(&redactor),
                ..context.attempts
            };
            let env = env_parts.env(desired, &pool, &shared);
            let record = recorded.targets.get(&left.header.target).cloned();
            let on_interrupt = env.policy.on_interrupt;
            let result = match attempt::resume(&env, left, record.as_ref(), on_interrupt) {
                Err(attempt::AttemptError::Stopped) => return Ok(report),
                other => other?,
            };
            report.resumed += 1;
            let wave = result.header.wave.clone();
            record_results(
                repo,
                &state_branch,
                &mut recorded,
                vec![(wave, result)],
                &mut report,
                Some((desired, &members)),
                clock(),
            )?;
        }
    }

    if !loaded.is_valid() {
        return Err(ApplyError::InvalidCommit {
            commit: head.to_string(),
            violations_only: !loaded.has_invalid(),
            diagnostics: loaded.diagnostics,
        });
    }
    let unknown: Vec<String> = options
        .targets
        .iter()
        .filter(|t| !loaded.desired.targets.contains_key(*t) && !recorded.targets.contains_key(*t))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(ApplyError::UnknownTargets(unknown));
    }
    // This head is trusted and valid: it is the anchor from now on (source::trust). Pinned
    // (written and fsynced) on another thread while the checkout is written, and waited for
    // before anything runs, analysis rounds included: no step of this head starts before its
    // anchor is durable (issue #17: the fsync sat on the path to the first step).
    let pinning = (!options.dry_run)
        .then(|| trust::TrustAnchor::of(head, &loaded.desired.config))
        .filter(|pinned| !matches!(&anchor, trust::AnchorSource::Pinned(a) if a == pinned))
        .map(|pinned| {
            let git_dir = repo.repo.path().to_path_buf();
            std::thread::spawn(move || {
                let _stage = tracing::debug_span!("trust.anchor_write").entered();
                pinned.write(&git_dir)
            })
        });

    if !options.dry_run {
        let _stage = tracing::debug_span!("prune_logs").entered();
        prune_logs(repo, &loaded.desired.config.logs, clock());
    }
    let evidence = super::load::evidence(repo, &loaded, &anchor)?;
    let checkout = if options.dry_run {
        PathBuf::new()
    } else {
        let _stage = tracing::debug_span!("checkout").entered();
        repo.checkout(head)?
    };
    if let Some(pinning) = pinning {
        pinning
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(|e| ApplyError::Anchor(Box::new(e)))?;
    }
    let pool = ExecutorPool::for_runtime(runtime, &loaded.desired, &checkout);
    // Analyse: health rounds due on soaking waves, before anything new may start.
    if !options.dry_run && !stopped() {
        let env = super::analysis::AnalysisEnv {
            repo,
            desired: &loaded.desired,
            state_branch: &state_branch,
            pool: &pool,
            checkout: &checkout,
            commit: loaded.commit,
            now: clock(),
            redactor: &redactor,
        };
        let stage = tracing::debug_span!("analysis").entered();
        let failures = super::analysis::run_due_rounds(&env, &mut recorded)?;
        drop(stage);
        for failure in failures {
            if stopped() {
                return Ok(report);
            }
            roll_back_analysis_failure(&context, &loaded, &pool, &mut recorded, failure, &mut report)?;
        }
    }
    // Plan → execute → record until nothing more is ready (a completed wave may free the next).
    loop {
        let plan = plan::plan(&loaded.plan_input(&recorded, &evidence, clock()));
        let ready: Vec<Action> = plan
            .actions
            .iter()
            .filter(|a| a.status == Status::Ready)
            .filter(|a| options.targets.is_empty() || options.targets.contains(&a.target))
            // One attempt per target per pass: a failed one waits for a new desired state.
            .filter(|a| !report.outcomes.iter().any(|o| o.target == a.target))
            .filter(|a| !report.held.iter().any(|(t, _)| t == &a.target))
            .cloned()
            .collect();
        if ready.is_empty() || options.dry_run || stopped() {
            report.plan = Some(plan);
            break;
        }
        let before = report.outcomes.len();
        run_batch(&context, &loaded, &pool, &mut recorded, &plan, ready, &mut report)?;
        report.plan = Some(plan);
        if report.outcomes.len() == before {
            // Nothing finished (only held actions): nothing new can have become ready.
            break;
        }
    }
    Ok(report)
}

/// With `[trust]`, refuses a head that is not signed by an allowed signer (`plan` calls it to warn). The signers are
/// anchored in the last reconciled commit (see `source::trust`): `.git/gantry/trust-anchor`,
/// else the newest `desired_commit` recorded on the state branch.
///
/// # Errors
/// [`ApplyError::Untrusted`] saying why.
pub fn check_trust(
    repo: &WatchedRepo,
    head: Oid,
    loaded: &LoadedCommit,
    recorded: &RecordedState,
) -> Result<(), ApplyError> {
    check_trust_anchored(repo, head, loaded, &anchor_of(repo, recorded)?)
}

/// The trust anchor in force (`source::trust`): `.git/gantry/trust-anchor`, else the newest
/// desired commit recorded on the state branch.
///
/// # Errors
/// [`ApplyError::Anchor`] when the pinned anchor cannot be read.
pub fn anchor_of(repo: &WatchedRepo, recorded: &RecordedState) -> Result<trust::AnchorSource, ApplyError> {
    trust::AnchorSource::find(repo.repo.path(), last_reconciled(recorded)).map_err(|e| ApplyError::Anchor(Box::new(e)))
}

/// [`check_trust`] with the anchor already found.
fn check_trust_anchored(
    repo: &WatchedRepo,
    head: Oid,
    loaded: &LoadedCommit,
    anchor: &trust::AnchorSource,
) -> Result<(), ApplyError> {
    let untrusted = |source| ApplyError::Untrusted {
        commit: head.to_string(),
        source: Box::new(source),
    };
    let signers = match trust::signers_for(repo, head, &loaded.desired.config, anchor) {
        Ok(Some(signers)) => signers,
        Ok(None) => return Ok(()),
        Err(e @ (trust::TrustError::MissingAnchor { .. } | trust::TrustError::Anchor(_))) => {
            return Err(ApplyError::Anchor(Box::new(e)));
        }
        Err(e) => return Err(untrusted(e)),
    };
    let signer = trust::verify_commit(&repo.repo, head, &signers).map_err(untrusted)?;
    tracing::info!(commit = %head, signer = %signer.email, key = %signer.fingerprint, "desired commit signed by an allowed signer");
    Ok(())
}

/// The desired commit of the most recently finished attempt on the state branch.
pub(crate) fn last_reconciled(recorded: &RecordedState) -> Option<Oid> {
    recorded
        .targets
        .values()
        .filter_map(|r| r.last_attempt.as_ref())
        .filter_map(|a| {
            Some((
                jiff::Timestamp::from_str(a.finished.as_deref()?).ok()?,
                &a.desired_commit,
            ))
        })
        .max_by_key(|(finished, _)| *finished)
        .and_then(|(_, commit)| Oid::from_str(commit).ok())
}

/// Applies `[logs]` retention before a pass writes new logs. Best effort: a log that cannot be
/// deleted is worth a warning, not a failed pass.
fn prune_logs(repo: &WatchedRepo, config: &crate::manifest::LogsConfig, now: Timestamp) {
    let max_age = crate::manifest::values::parse_duration(&config.max_age).unwrap_or(std::time::Duration::MAX);
    let dir = repo.gantry_dir().join("logs");
    match crate::state::logs::prune(&dir, config.keep, max_age, now) {
        Ok(pruned) if pruned.expired + pruned.surplus > 0 => {
            tracing::info!(expired = pruned.expired, surplus = pruned.surplus, "pruned step logs");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(dir = %dir.display(), "cannot prune step logs: {e}"),
    }
}

/// The per-target parts of an attempt's environment.
/// What one pass's steps share: the repository and state branch outcomes are recorded to, and
/// what every attempt of the pass is given ([`AttemptShared`]).
struct PassContext<'p> {
    repo: &'p WatchedRepo,
    state_branch: &'p str,
    attempts: AttemptShared<'p>,
}

/// What every attempt of one pass shares, on whichever thread it runs: the clocks (wall time
/// and the soak clock), where progress goes, the journal directory, the stop flag and the
/// commit's secrets.
#[derive(Clone, Copy)]
struct AttemptShared<'p> {
    now: &'p (dyn Fn() -> Timestamp + Sync),
    soak_clock: &'p (dyn Fn() -> Arc<dyn Clock> + Sync),
    progress: &'p dyn ProgressSink,
    journal_dir: &'p std::path::Path,
    stop: Option<&'p AtomicBool>,
    /// Built once per pass: it reads every target (issue #17).
    redactor: &'p Redactor,
}

struct EnvParts {
    target: String,
    component: String,
    labels: crate::manifest::Labels,
    vars: serde_json::Map<String, serde_json::Value>,
    config: serde_json::Map<String, serde_json::Value>,
    previous_config: Option<serde_json::Map<String, serde_json::Value>>,
    policy: PolicySpec,
    health: HealthSettings,
    checkout: PathBuf,
    repo_root: PathBuf,
    log_dir: PathBuf,
}

impl EnvParts {
    fn for_target(
        repo: &WatchedRepo,
        desired: &Desired,
        target: &str,
        commit: Oid,
        recorded: &RecordedState,
    ) -> Result<Option<EnvParts>, ApplyError> {
        let checkout = repo.checkout(commit)?;
        let log_dir = repo.gantry_dir().join("logs");
        if let Some(t) = desired.targets.get(target) {
            let governing = governing_of(desired, t);
            return Ok(Some(EnvParts {
                target: target.to_string(),
                component: t.spec().component.clone(),
                labels: t.labels().clone(),
                vars: t.spec().vars.clone(),
                config: t.spec().config.clone(),
                previous_config: recorded
                    .targets
                    .get(target)
                    .and_then(|r| r.config.as_ref())
                    .map(|c| c.values().clone()),
                policy: governing.spec().clone(),
                health: governing.health().clone(),
                checkout,
                repo_root: repo.root(),
                log_dir,
            }));
        }
        // A removal: the target is only in recorded state.
        Ok(recorded.targets.get(target).map(|r| EnvParts {
            target: target.to_string(),
            component: r.component.clone(),
            labels: Default::default(),
            vars: Default::default(),
            config: r.config.as_ref().map(|c| c.values().clone()).unwrap_or_default(),
            previous_config: r.config.as_ref().map(|c| c.values().clone()),
            policy: policy::builtin_policy_spec().clone(),
            health: HealthSettings::default(),
            checkout,
            repo_root: repo.root(),
            log_dir,
        }))
    }

    /// The attempt environment of this target in `pass`, run by `pool` from `desired`.
    fn env<'a>(&'a self, desired: &'a Desired, pool: &'a ExecutorPool, shared: &AttemptShared<'a>) -> AttemptEnv<'a> {
        AttemptEnv {
            desired,
            policy: &self.policy,
            health: &self.health,
            target_name: &self.target,
            component: &self.component,
            labels: self.labels.clone(),
            vars: self.vars.clone(),
            config: self.config.clone(),
            previous_config: self.previous_config.clone(),
            checkout: self.checkout.clone(),
            repo_root: self.repo_root.clone(),
            log_dir: self.log_dir.clone(),
            executors: pool,
            clock: (shared.soak_clock)(),
            now: shared.now,
            progress: shared.progress,
            journal_dir: shared.journal_dir.to_path_buf(),
            stop: shared.stop,
            redactor: shared.redactor.clone(),
        }
    }
}

/// The policy governing `target` (the built-in one when no policy or several select it: the
/// planner has already reported that as a violation).
fn governing_of<'d>(desired: &'d Desired, target: &crate::manifest::Target) -> Governing<'d> {
    policy::select_policy(desired, target).unwrap_or(Governing::BuiltIn)
}

fn governing_spec(desired: &Desired, target: &crate::manifest::Target) -> PolicySpec {
    governing_of(desired, target).spec().clone()
}

/// A unique, sortable attempt id that is also a valid file name.
fn attempt_id(target: &str, now: Timestamp) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let salt = (u64::from(std::process::id()) << 32 | u64::from(nanos)) ^ u64::from(n);
    format!("{}-{target}-{:06x}", now.strftime("%Y%m%dT%H%M%SZ"), salt & 0xff_ffff)
}

/// Rolls back a target whose analysis failed: the rollback of the upgrade that brought it to the
/// rollout's version, run as an attempt of its own (journaled, resumable) that ends
/// `rolled_back`; the rollout counts it as a failure and halts past `maxFailures`. With
/// `autoRollback: false`, or nothing to roll back to (an install), the target stays and only
/// the rollout records the failure.
///
/// # Errors
/// [`ApplyError`] when the attempt cannot be journaled or the outcome recorded.
fn roll_back_analysis_failure(
    pass: &PassContext,
    loaded: &LoadedCommit,
    pool: &ExecutorPool,
    recorded: &mut Arc<RecordedState>,
    failure: super::analysis::AnalysisFailure,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let PassContext { repo, state_branch, .. } = *pass;
    let clock = pass.attempts.now;
    let desired = &loaded.desired;
    let Some(record) = recorded.targets.get(&failure.target).cloned() else {
        return Ok(());
    };
    let Some(parts) = EnvParts::for_target(repo, desired, &failure.target, loaded.commit, recorded)? else {
        return Ok(());
    };
    let upgrade = record.last_attempt.clone();
    let from = upgrade.as_ref().and_then(|a| a.from.clone());
    let steps = match (&upgrade, &from) {
        (Some(upgrade), Some(from)) if parts.policy.auto_rollback => {
            let start = program::Progress {
                version: Some(from.clone()),
                applied: record
                    .applied_migrations
                    .iter()
                    .filter(|m| m.attempt != upgrade.id)
                    .cloned()
                    .collect(),
                at_snapshot: None,
                removed: false,
                weight: None,
                quiesced: false,
            };
            let mut now = program::Progress::start(Some(&record));
            // The upgrade took its snapshot (if the component has a snapshot step) before it
            // changed anything.
            now.at_snapshot = desired
                .components
                .get(&failure.component)
                .is_some_and(|c| c.spec.steps.snapshot.is_some())
                .then(|| start.applied.clone());
            program::rollback_program(
                desired,
                &failure.component,
                false,
                &start,
                &now,
                &upgrade.id,
                parts.health.has_checks(),
                None,
            )
            .map_err(|e| format!("cannot roll back: {e}"))
        }
        (_, _) if !parts.policy.auto_rollback => Err("autoRollback is off".to_string()),
        _ => Err("nothing to roll back to (it was installed at this version)".to_string()),
    };
    let steps = steps.and_then(|s| {
        if s.is_empty() {
            Err("the rollback has no steps".to_string())
        } else {
            Ok(s)
        }
    });
    let mut steps = match steps {
        Ok(steps) => steps,
        Err(why) => return record_analysis_failure(repo, desired, state_branch, recorded, &failure, &why, clock()),
    };
    steps[0].reason = Some(failure.reason.clone());
    let now = clock();
    let header = AttemptHeader {
        attempt: attempt_id(&failure.target, now),
        target: failure.target.clone(),
        component: failure.component.clone(),
        from,
        to: failure.version.clone(),
        desired_commit: loaded.commit.to_string(),
        action: attempt::ANALYSIS_ROLLBACK.to_string(),
        spec_hash: desired.targets.get(&failure.target).map(|t| t.spec_hash()),
        wave: Some(failure.wave.clone()),
        started: now,
        plan: serde_json::Value::Null,
        approvers: Vec::new(),
        emergency: None,
    };
    let env = parts.env(desired, pool, &pass.attempts);
    let result = match attempt::start(&env, header, Some(&record), steps) {
        Err(attempt::AttemptError::Stopped) => return Ok(()),
        other => other?,
    };
    let members = WaveMembers::new();
    let halts = record_results(
        repo,
        state_branch,
        recorded,
        vec![(Some(failure.wave.clone()), result)],
        report,
        Some((desired, &members)),
        clock(),
    )?;
    for (component, version) in halts {
        tracing::warn!(%component, %version, "rollout halted after a failed analysis");
    }
    Ok(())
}

/// Records in the rollout that a target failed its analysis but was not rolled back (`why`).
fn record_analysis_failure(
    repo: &WatchedRepo,
    desired: &Desired,
    state_branch: &str,
    recorded: &mut Arc<RecordedState>,
    failure: &super::analysis::AnalysisFailure,
    why: &str,
    now: Timestamp,
) -> Result<(), ApplyError> {
    let key = (failure.component.clone(), failure.version.clone());
    let Some(mut rollout) = recorded.rollouts.get(&key).cloned() else {
        return Ok(());
    };
    let message = format!("{}; not rolled back: {why}", failure.reason);
    tracing::error!(target = %failure.target, "{message}");
    if let Some(entry) = rollout.targets.get_mut(&failure.target) {
        entry.status = RolloutTargetStatus::Failed;
        entry.finished = Some(now.to_string());
    }
    rollout.failures += 1;
    let max_failures = desired
        .targets
        .get(&failure.target)
        .map_or(0, |t| governing_spec(desired, t).rollout.max_failures);
    if rollout.failures > max_failures && rollout.halted.is_none() {
        // The spec of every target the rollout holds, so `gantry retry` can re-arm each one.
        let specs = rollout
            .targets
            .keys()
            .filter_map(|t| Some((t.clone(), desired.targets.get(t)?.spec_hash())))
            .collect();
        rollout.halted = Some(crate::state::Halt {
            at: now.to_string(),
            target: failure.target.clone(),
            reason: message.clone(),
            specs,
        });
    }
    let mut batch = Batch::new();
    batch.upsert_rollout(rollout.clone());
    batch.progress_summary(format!(
        "gantry: {}@{} analysis failed on {}",
        failure.component, failure.version, failure.target
    ));
    let mut writer = StateWriter::on_top_of(&repo.repo, state_branch, recorded)?;
    let recorded = Arc::make_mut(recorded);
    if let Some(commit) = writer.commit(&batch, now)? {
        recorded.commit = Some(commit.to_string());
    }
    recorded.rollouts.insert(key, rollout);
    Ok(())
}

/// A prepared attempt: its action, environment, program and journal header.
type Prepared = (Action, EnvParts, Vec<program::PlannedStep>, AttemptHeader);

/// The prepared attempts of a batch that have not started, per governing policy (each in plan
/// order, the policies in the order they first come). Finding the next to start looks at the
/// front of each policy's queue only: a scan of every waiting attempt at each finished one made
/// a 10,000-target batch quadratic (issue #17).
#[derive(Default)]
struct Waiting {
    by_policy: Vec<(Option<String>, VecDeque<Prepared>)>,
}

impl Waiting {
    fn push(&mut self, prepared: Prepared) {
        let policy = &prepared.0.policy;
        match self.by_policy.iter_mut().find(|(p, _)| p == policy) {
            Some((_, queue)) => queue.push_back(prepared),
            None => self.by_policy.push((policy.clone(), VecDeque::from([prepared]))),
        }
    }

    fn is_empty(&self) -> bool {
        self.by_policy.iter().all(|(_, queue)| queue.is_empty())
    }

    fn clear(&mut self) {
        self.by_policy.clear();
    }

    /// Takes the next attempt whose policy is below its `maxParallel` with `running` (per
    /// governing policy; `None`: the built-in one), dropping those of `halted` rollouts on the way.
    fn next_startable(
        &mut self,
        running: &BTreeMap<Option<String>, u32>,
        halted: impl Fn(&Action) -> bool,
    ) -> Option<Prepared> {
        for (policy, queue) in &mut self.by_policy {
            while let Some((action, parts, _, _)) = queue.front() {
                if halted(action) {
                    queue.pop_front();
                    continue;
                }
                if running.get(policy).copied().unwrap_or(0) >= parts.policy.rollout.max_parallel.max(1) {
                    break;
                }
                return queue.pop_front();
            }
        }
        None
    }
}

fn run_batch(
    pass: &PassContext,
    loaded: &LoadedCommit,
    pool: &ExecutorPool,
    recorded: &mut Arc<RecordedState>,
    plan: &Plan,
    ready: Vec<Action>,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    let PassContext { repo, state_branch, .. } = *pass;
    let AttemptShared { now: clock, stop, .. } = pass.attempts;
    let attempts = pass.attempts;
    let desired = &loaded.desired;
    let batch_size = record_batch(desired.targets.len().max(recorded.targets.len()));
    // Prepare every attempt up front (its program is fixed before anything runs).
    let mut queue = Waiting::default();
    let prepare = tracing::debug_span!("batch.prepare").entered();
    for action in ready {
        let Some(parts) = EnvParts::for_target(repo, desired, &action.target, loaded.commit, recorded)? else {
            continue;
        };
        let record = recorded.targets.get(&action.target);
        let now = clock();
        let id = attempt_id(&action.target, now);
        let forward = match desired.targets.get(&action.target) {
            Some(target) => program::forward_program(desired, target, record, &action, &id, parts.health.has_checks()),
            None => Ok(Vec::new()),
        };
        let forward = match forward {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(target = %action.target, "cannot build the attempt: {e}");
                continue;
            }
        };
        let to = action.to.clone().or_else(|| record.and_then(|r| r.version.clone()));
        let Some(to) = to else { continue };
        let header = AttemptHeader {
            attempt: id,
            target: action.target.clone(),
            component: action.component.clone(),
            from: action.from.clone(),
            to,
            desired_commit: loaded.commit.to_string(),
            action: action.action.as_str().to_string(),
            started: now,
            plan: serde_json::Value::Null,
            wave: action.wave.clone(),
            spec_hash: desired.targets.get(&action.target).map(|t| t.spec_hash()),
            approvers: action.approvals.as_ref().map(|a| a.have.clone()).unwrap_or_default(),
            emergency: action.urgency.and(action.reason.clone()),
        };
        queue.push((action, parts, forward, header));
    }
    let members = &wave_members(&plan.actions, recorded);
    drop(prepare);

    // Execute: at most `maxParallel` running per policy, on a set of worker threads that lives
    // for the batch (one thread per attempt cost more than a short attempt itself, issue #17);
    // record as they finish. A panicking attempt sends its panic, which is re-raised here:
    // without it the pass would wait for that attempt's result forever.
    type Finished = std::thread::Result<Result<AttemptResult, attempt::AttemptError>>;
    type Job = (
        Action,
        EnvParts,
        Vec<program::PlannedStep>,
        AttemptHeader,
        Option<TargetRecord>,
    );
    let (sender, receiver) = mpsc::channel::<(Action, Finished)>();
    let (job_sender, job_receiver) = mpsc::channel::<Job>();
    let jobs = &std::sync::Mutex::new(job_receiver);
    let mut running: BTreeMap<Option<String>, u32> = BTreeMap::new();
    let mut halted_rollouts: Vec<(String, String)> = Vec::new();
    std::thread::scope(|scope| -> Result<(), ApplyError> {
        // Owned by this closure: however it returns, the workers see the end of their queue.
        let job_sender = job_sender;
        let mut workers = 0usize;
        let mut in_flight = 0usize;
        let mut pending: Vec<(Option<String>, AttemptResult)> = Vec::new();
        let mut oldest_pending: Option<std::time::Instant> = None;
        // Whether the pending outcomes are to be recorded now, and whether one is a failure.
        let (mut record_due, mut urgent) = (false, false);
        loop {
            // A failure may halt its rollout: recorded before anything else starts.
            if record_due && urgent {
                let halts = record_results(
                    repo,
                    state_branch,
                    recorded,
                    std::mem::take(&mut pending),
                    report,
                    Some((desired, members)),
                    clock(),
                )?;
                oldest_pending = None;
                halted_rollouts.extend(halts);
            }
            // Start whatever has capacity (nothing new once the daemon is stopping).
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                queue.clear();
            }
            let halted = |action: &Action| {
                halted_rollouts
                    .iter()
                    .any(|(c, v)| c == &action.component && action.to.as_ref().is_some_and(|to| to.to_string() == *v))
            };
            while let Some((action, parts, forward, header)) = queue.next_startable(&running, halted) {
                *running.entry(action.policy.clone()).or_default() += 1;
                let record = recorded.targets.get(&action.target).cloned();
                // A worker per attempt running at once: every busy worker holds one of them.
                if in_flight == workers {
                    workers += 1;
                    let sender = sender.clone();
                    scope.spawn(move || {
                        // The queue's lock is held only to take the next job.
                        let next = || jobs.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        while let Ok((action, parts, forward, header, record)) = next() {
                            let env = parts.env(desired, pool, &attempts);
                            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                attempt::start(&env, header, record.as_ref(), forward)
                            }));
                            if sender.send((action, result)).is_err() {
                                break;
                            }
                        }
                    });
                }
                in_flight += 1;
                // The workers end only with this closure, which owns the sending side.
                let _ = job_sender.send((action, parts, forward, header, record));
            }
            // Only successes are left to record here, and a success halts no rollout: they are
            // recorded after the starts above, so the workers run while the state commit syncs
            // (issue #17: they sat idle through every commit).
            if record_due && !urgent {
                let halts = record_results(
                    repo,
                    state_branch,
                    recorded,
                    std::mem::take(&mut pending),
                    report,
                    Some((desired, members)),
                    clock(),
                )?;
                oldest_pending = None;
                halted_rollouts.extend(halts);
            }
            urgent = false;
            if in_flight == 0 {
                break;
            }
            // Wait for one to finish (or for pending outcomes to be due), then take every
            // other finished one with it.
            let first = match oldest_pending {
                Some(since) => match receiver.recv_timeout(RECORD_AFTER.saturating_sub(since.elapsed())) {
                    Ok(done) => Some(done),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match receiver.recv() {
                    Ok(done) => Some(done),
                    Err(_) => break,
                },
            };
            for (action, result) in first.into_iter().chain(receiver.try_iter()) {
                in_flight -= 1;
                if let Some(n) = running.get_mut(&action.policy) {
                    *n = n.saturating_sub(1);
                }
                let result = match result {
                    Ok(result) => result,
                    Err(panic) => std::panic::resume_unwind(panic),
                };
                match result {
                    Ok(r) => {
                        // A failure may halt its rollout: record it at once so nothing else of
                        // that rollout starts.
                        urgent |= r.outcome != Outcome::Succeeded;
                        pending.push((action.wave, r));
                        oldest_pending.get_or_insert_with(std::time::Instant::now);
                    }
                    Err(attempt::AttemptError::Held(reason)) => {
                        tracing::warn!(target = %action.target, "held: {reason}");
                        report.held.push((action.target.clone(), reason));
                    }
                    Err(attempt::AttemptError::Stopped) => {
                        tracing::info!(target = %action.target, "stopping: attempt left to resume at the next start");
                    }
                    Err(e) => {
                        let error = crate::error_chain(&e);
                        tracing::error!(target = %action.target, "attempt could not be journaled: {error}");
                        report.not_started.push((action.target.clone(), error));
                    }
                }
            }
            // Outcomes are safe in their journals until recorded, so several share a commit:
            // one commit per attempt would cost more than the attempts themselves.
            let due = oldest_pending.is_some_and(|since| since.elapsed() >= RECORD_AFTER);
            record_due = !pending.is_empty()
                && (urgent || due || pending.len() >= batch_size || (in_flight == 0 && queue.is_empty()));
        }
        if !pending.is_empty() {
            let halts = record_results(
                repo,
                state_branch,
                recorded,
                pending,
                report,
                Some((desired, members)),
                clock(),
            )?;
            halted_rollouts.extend(halts);
        }
        Ok(())
    })?;
    Ok(())
}

/// Record stage: commits finished attempts (and their rollouts) in one state commit, then
/// removes their journals. Returns the rollouts this batch halted.
fn record_results(
    repo: &WatchedRepo,
    state_branch: &str,
    recorded: &mut Arc<RecordedState>,
    results: Vec<(Option<String>, AttemptResult)>,
    report: &mut ApplyReport,
    waves: Option<(&Desired, &WaveMembers)>,
    now: Timestamp,
) -> Result<Vec<(String, String)>, ApplyError> {
    if results.is_empty() {
        return Ok(Vec::new());
    }
    // The pass's own copy from here on (the state branch cache keeps the one it read).
    let recorded = Arc::make_mut(recorded);
    let mut batch = Batch::new();
    let mut finished = Vec::new();
    let mut halts = Vec::new();
    let mut rollouts: BTreeMap<(String, Version), RolloutRecord> = BTreeMap::new();
    // The waves this batch's results are in, and those results' targets.
    let mut touched_waves: BTreeMap<(String, Version, &str), Vec<&str>> = BTreeMap::new();
    let mut written_targets: Vec<(String, TargetRecord)> = Vec::new();
    for (wave, result) in &results {
        match &result.record {
            Some(record) => {
                batch.upsert_target(&result.target, record.clone());
                written_targets.push((result.target.clone(), record.clone()));
            }
            None => {
                let mut removed = recorded
                    .targets
                    .get(&result.target)
                    .cloned()
                    .unwrap_or_else(|| TargetRecord {
                        component: result.header.component.clone(),
                        version: None,
                        config_hash: None,
                        config: None,
                        applied_migrations: Vec::new(),
                        status: TargetStatus::Removed,
                        last_attempt: None,
                        rollback_points: Vec::new(),
                        observed_version: None,
                    });
                removed.status = TargetStatus::Removed;
                batch.upsert_target(&result.target, removed.clone());
                written_targets.push((result.target.clone(), removed));
            }
        }
        let outcome = FinishedAttempt {
            target: result.target.clone(),
            component: result.header.component.clone(),
            from: result.header.from.clone(),
            to: result.header.to.clone(),
            outcome: result.outcome,
            desired_commit: result.header.desired_commit.clone(),
            attempt: result.header.attempt.clone(),
            message: result.message.clone(),
            emergency: result.header.emergency.clone(),
        };
        batch.outcome(outcome.clone());
        finished.push(outcome);
        if let Some((desired, members)) = waves
            && let Some(wave) = wave
            // A downgrade is in a wave only when it follows the upgrade rules (issue #18).
            && matches!(
                result.header.action.as_str(),
                "install" | "upgrade" | "downgrade" | attempt::ANALYSIS_ROLLBACK
            )
        {
            touched_waves
                .entry((result.header.component.clone(), result.header.to.clone(), wave.as_str()))
                .or_default()
                .push(&result.target);
            if let Some(halt) = update_rollout(desired, recorded, &mut rollouts, result, wave, members, now) {
                halts.push(halt);
            }
        }
    }
    // Once per wave and batch, not per result: checking a 10,000-target wave after each of its
    // results made its convergence quadratic (issue #17).
    for ((component, version, wave), results) in touched_waves {
        if let Some(rollout) = rollouts.get_mut(&(component, version)) {
            complete_wave(rollout, wave, &results, members_of(waves, rollout, wave), now);
        }
    }
    let written_rollouts: Vec<RolloutRecord> = rollouts.into_values().collect();
    for rollout in &written_rollouts {
        batch.upsert_rollout(rollout.clone());
    }
    let mut writer = StateWriter::on_top_of(&repo.repo, state_branch, recorded)?;
    // The journals are removed only after this commit, so a failed write loses no outcome.
    let committed = writer.commit(&batch, now).map_err(|source| ApplyError::Record {
        targets: finished.iter().map(|f| f.target.clone()).collect(),
        source: Box::new(source),
    })?;
    if let Some(commit) = committed {
        recorded.commit = Some(commit.to_string());
    }
    // Keep the in-memory view in step with what was just committed (re-reading every record
    // after every commit would make a pass quadratic in the number of targets).
    for (target, record) in written_targets {
        recorded.targets.insert(target, record);
    }
    for rollout in written_rollouts {
        recorded
            .rollouts
            .insert((rollout.component.clone(), rollout.version.clone()), rollout);
    }
    for (_, result) in results {
        result.journal.finish()?;
    }
    report.outcomes.extend(finished);
    Ok(halts)
}

/// Which targets the plan puts in each wave of each rollout: (component, version, wave) → targets
/// (each once, in name order).
pub type WaveMembers = BTreeMap<(String, String, String), Vec<String>>;

/// Collects wave membership from a plan's actions and the recorded rollouts.
fn wave_members(actions: &[Action], recorded: &RecordedState) -> WaveMembers {
    let mut members: WaveMembers = BTreeMap::new();
    for a in actions {
        if let (Some(wave), Some(to)) = (&a.wave, &a.to)
            && matches!(a.action, ActionKind::Install | ActionKind::Upgrade)
        {
            members
                .entry((a.component.clone(), to.to_string(), wave.clone()))
                .or_default()
                .push(a.target.clone());
        }
    }
    for ((component, version), rollout) in &recorded.rollouts {
        for (target, entry) in &rollout.targets {
            members
                .entry((component.clone(), version.to_string(), entry.wave.clone()))
                .or_default()
                .push(target.clone());
        }
    }
    // Each name once. Deduplicated at the end: checking each push against its list cost a
    // pass on a fleet of 10,000 targets in one wave about 0.2 s, twice (issue #17). Callers
    // treat a list as a set.
    for list in members.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    members
}

/// The targets the plan puts in `wave` of `rollout` (none without waves).
fn members_of<'m>(waves: Option<(&Desired, &'m WaveMembers)>, rollout: &RolloutRecord, wave: &str) -> &'m [String] {
    waves
        .and_then(|(_, members)| {
            members.get(&(rollout.component.clone(), rollout.version.to_string(), wave.to_string()))
        })
        .map_or(&[], Vec::as_slice)
}

/// Sets `wave`'s completion time when every member succeeded: the wave's members as the plan saw
/// them, and the targets of this batch's `results` in it (a resumed attempt whose target has since
/// been pinned elsewhere is in no plan, but is still in its wave).
fn complete_wave(rollout: &mut RolloutRecord, wave: &str, results: &[&str], members: &[String], now: Timestamp) {
    let succeeded = |t: &str| {
        rollout
            .targets
            .get(t)
            .is_some_and(|e| e.status == RolloutTargetStatus::Succeeded)
    };
    let complete = results.iter().all(|t| succeeded(t)) && members.iter().all(|t| succeeded(t));
    if complete
        && let Some(w) = rollout
            .waves
            .iter_mut()
            .find(|w| w.name == wave && w.completed.is_none())
    {
        w.completed = Some(now.to_string());
    }
}

/// Updates `rollouts/<component>@<version>.yaml` for a finished attempt: the target's entry, the
/// wave's start, failures and the halt ([`complete_wave`] sets its completion, once per batch).
/// Returns the rollout when this failure halts it (more failures than `maxFailures`).
fn update_rollout(
    desired: &Desired,
    recorded: &RecordedState,
    rollouts: &mut BTreeMap<(String, Version), RolloutRecord>,
    result: &AttemptResult,
    wave: &str,
    members: &WaveMembers,
    now: Timestamp,
) -> Option<(String, String)> {
    let key = (result.header.component.clone(), result.header.to.clone());
    let target = desired.targets.get(&result.target)?;
    let spec = governing_spec(desired, target);
    // Several results of one batch may touch the same rollout: build on what the batch holds.
    let rollout = rollouts.entry(key.clone()).or_insert_with(|| {
        recorded.rollouts.get(&key).cloned().unwrap_or_else(|| RolloutRecord {
            component: key.0.clone(),
            version: key.1.clone(),
            started: result.header.started.to_string(),
            waves: Vec::new(),
            targets: BTreeMap::new(),
            failures: 0,
            halted: None,
        })
    });
    let status = match result.outcome {
        Outcome::Succeeded => RolloutTargetStatus::Succeeded,
        Outcome::Failed => RolloutTargetStatus::Failed,
        Outcome::RolledBack => RolloutTargetStatus::RolledBack,
    };
    rollout.targets.insert(
        result.target.clone(),
        RolloutTarget {
            wave: wave.to_string(),
            status,
            started: result.header.started.to_string(),
            finished: Some(now.to_string()),
        },
    );
    if !rollout.waves.iter().any(|w| w.name == wave) {
        rollout.waves.push(WaveRecord {
            name: wave.to_string(),
            started: Some(result.header.started.to_string()),
            completed: None,
            analysis: None,
        });
    }
    let mut halt = None;
    if result.outcome != Outcome::Succeeded {
        rollout.failures += 1;
        if rollout.failures > spec.rollout.max_failures && rollout.halted.is_none() {
            // Every target of the rollout, with its spec now: changing one (`gantry retry`)
            // re-arms the rollout for that target.
            let mut names: std::collections::BTreeSet<&String> = rollout.targets.keys().collect();
            for ((c, v, _), ts) in members {
                if *c == key.0 && *v == key.1.to_string() {
                    names.extend(ts);
                }
            }
            // Only targets that want this version now: one that comes to it later is held (a
            // spec change *to* a halted version is not a retry of it).
            let specs = names
                .into_iter()
                .filter_map(|t| {
                    let target = desired.targets.get(t)?;
                    let wants = match &target.wanted {
                        crate::manifest::values::VersionWanted::Pin(v) => *v == key.1,
                        crate::manifest::values::VersionWanted::Requirement(r) => r.matches(&key.1),
                    };
                    wants.then(|| (t.clone(), target.spec_hash()))
                })
                .collect();
            rollout.halted = Some(crate::state::Halt {
                at: now.to_string(),
                target: result.target.clone(),
                reason: result.message.clone(),
                specs,
            });
            halt = Some((key.0.clone(), key.1.to_string()));
        }
    }
    halt
}
