//! One recorded state across machines: a pass with a remote starts from the remote's recorded
//! state and ends by publishing its outcomes (see `source::sync` for the guarantees).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;

use jiff::Timestamp;

use super::agents::{self, Selector, Wanted};
use crate::manifest::RepoConfig;
use crate::plan::{self, Status};
use crate::policy::{self, Governing};
use crate::reconcile::apply::{ApplyError, ApplyOptions, ApplyReport, apply, apply_holding_lock};
use crate::reconcile::attempt::ProgressSink;
use crate::reconcile::load::{self, load_commit};
use crate::source::WatchedRepo;
use crate::source::remote::{GitAuth, Remote};
use crate::source::sync::{self, SyncError};
use crate::state::{Journal, ReconcilerLock, read_recorded_shared};

/// Why a shared pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The pass itself.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Fetching or publishing recorded state; nothing ran when it happened before the pass.
    #[error("{0}")]
    Sync(#[from] SyncError),
}

impl From<SharedError> for super::OpsError {
    fn from(e: SharedError) -> Self {
        match e {
            SharedError::Apply(e) => super::OpsError::Apply(e),
            SharedError::Sync(e) => super::OpsError::from(e),
        }
    }
}

/// `gantry.toml` at the tip of the desired branch (defaults when absent or unreadable: the
/// pass itself reports a broken file with its line).
pub fn repo_config(repo: &WatchedRepo) -> RepoConfig {
    let read = || -> Option<RepoConfig> {
        let tip = repo.branch_tip(&repo.desired_branch_hint()).ok()?;
        let bytes = repo.read_file(tip, "gantry.toml").ok()??;
        toml::from_str(std::str::from_utf8(&bytes).ok()?).ok()
    };
    read().unwrap_or_default()
}

/// Before a pass (holding the lock): fast-forward the desired branch from the remote and make
/// the recorded state the remote's when it is ahead. Without `remote` in gantry.toml: nothing.
///
/// # Errors
/// [`SyncError`]: the pass must not run on a state that may be stale.
pub fn sync_before(repo: &WatchedRepo, config: &RepoConfig, auth: &GitAuth) -> Result<(), SyncError> {
    let Some(name) = &config.remote else {
        return Ok(());
    };
    let remote = Remote::open(&repo.repo, name, auth)?;
    sync::fetch_desired(&repo.repo, &remote, &config.desired_branch)?;
    sync::sync_state(&repo.repo, &remote, &config.state_branch)?;
    Ok(())
}

/// After a pass: publish outcome commits (rebuilt on the remote's tip on rejection).
///
/// # Errors
/// [`SyncError`]; the outcomes stay committed locally and the next pass publishes them.
pub fn publish_after(repo: &WatchedRepo, config: &RepoConfig, auth: &GitAuth) -> Result<(), SyncError> {
    let Some(name) = &config.remote else {
        crate::state::fence::published();
        return Ok(());
    };
    let remote = Remote::open(&repo.repo, name, auth)?;
    sync::push_state(&repo.repo, &remote, &config.state_branch)?;
    // Clustered: the outcomes are shared now; their journals may leave etcd.
    crate::state::fence::published();
    Ok(())
}

/// `gantry apply` with a remote and/or a selector: sync, claim, one pass, release, publish,
/// all under the repository lock (a dry run takes the lock only to sync, claims nothing and
/// publishes nothing).
///
/// # Errors
/// [`SharedError`].
pub fn apply_shared(
    repo: &WatchedRepo,
    options: &ApplyOptions,
    selector: &Selector,
    auth: &GitAuth,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, SharedError> {
    let config = repo_config(repo);
    if config.remote.is_none() && selector.is_empty() {
        return Ok(apply(repo, options, progress)?);
    }
    if options.dry_run {
        // A dry run never waits for the lock: with a reconciler running (which keeps the state
        // in step itself) it plans on the local state as it is.
        if let Ok(lock) = ReconcilerLock::acquire(repo.repo.path()) {
            sync_before(repo, &config, auth)?;
            drop(lock);
        }
        let mut options = options.clone();
        options.targets = selected_targets(repo, &options.targets, selector)?;
        if options.targets.is_empty() && !selector.is_empty() {
            return Ok(plan_only(repo, options.now)?);
        }
        return Ok(apply(repo, &options, progress)?);
    }
    let lock = ReconcilerLock::acquire(repo.repo.path()).map_err(ApplyError::Locked)?;
    agent_pass(repo, &lock, options, selector, auth, &AtomicBool::new(false), progress)
}

/// Desired targets matching the selector (and `--target`, when given).
fn selected_targets(repo: &WatchedRepo, targets: &[String], selector: &Selector) -> Result<Vec<String>, ApplyError> {
    if selector.is_empty() {
        return Ok(targets.to_vec());
    }
    let head = repo.branch_tip(&repo.desired_branch_hint())?;
    let loaded = load_commit(repo, head)?;
    Ok(loaded
        .desired
        .targets
        .iter()
        .filter(|(name, t)| selector.matches(&t.manifest.labels) && (targets.is_empty() || targets.contains(name)))
        .map(|(name, _)| name.clone())
        .collect())
}

/// A report with the current plan and nothing run (no target of this agent is ready).
fn plan_only(repo: &WatchedRepo, now: Option<Timestamp>) -> Result<ApplyReport, ApplyError> {
    let head = repo.branch_tip(&repo.desired_branch_hint())?;
    let loaded = load_commit(repo, head)?;
    if !loaded.is_valid() {
        return Err(ApplyError::InvalidCommit {
            commit: head.to_string(),
            violations_only: !loaded.has_invalid(),
            diagnostics: loaded.diagnostics,
        });
    }
    let recorded = read_recorded_shared(&repo.repo, &loaded.desired.config.state_branch)?;
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
    let evidence = load::evidence(repo, &loaded, &anchor)?;
    let plan = plan::plan(&loaded.plan_input(&recorded, &evidence, now.unwrap_or_else(Timestamp::now)));
    Ok(ApplyReport {
        commit: Some(head.to_string()),
        plan: Some(plan),
        ..ApplyReport::default()
    })
}

/// One pass of an agent, for a caller holding the lock (`apply`, and each daemon pass):
/// 1. sync: desired fast-forwarded, recorded state the remote's (nothing runs if this fails);
/// 2. plan over the whole fleet; this agent wants the ready actions of its selected targets;
/// 3. claim them on the remote's state branch (see `ops::agents`), only granted ones run,
///    plus attempts of its own left unfinished by a kill (resumed from their journals);
/// 4. the pass; 5. release the claims of finished targets; 6. publish outcomes and releases.
///
/// Without a remote, only the selector applies (one process: no claims needed).
///
/// # Errors
/// [`SharedError`].
pub fn agent_pass(
    repo: &WatchedRepo,
    lock: &ReconcilerLock,
    options: &ApplyOptions,
    selector: &Selector,
    auth: &GitAuth,
    stop: &AtomicBool,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, SharedError> {
    let config = repo_config(repo);
    let Some(remote_name) = config.remote.clone() else {
        let mut options = options.clone();
        options.targets = selected_targets(repo, &options.targets, selector)?;
        if options.targets.is_empty() && !selector.is_empty() {
            return Ok(plan_only(repo, options.now)?);
        }
        return Ok(apply_holding_lock(repo, lock, &options, stop, progress)?);
    };
    sync_before(repo, &config, auth)?;
    // Rounds until nothing more of this agent is ready or can be claimed: a finished attempt
    // frees a maxParallel slot, a completed wave may free the next.
    let mut total = ApplyReport::default();
    loop {
        let round = claim_round(
            repo,
            lock,
            options,
            selector,
            auth,
            &config,
            &remote_name,
            stop,
            progress,
        )?;
        let ran = !round.outcomes.is_empty();
        total.commit = round.commit;
        total.plan = round.plan;
        total.resumed += round.resumed;
        total.outcomes.extend(round.outcomes);
        total.not_started.extend(round.not_started);
        if !ran || stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(total);
        }
    }
}

/// One round of [`agent_pass`]: plan, claim, run the granted, release, publish.
#[allow(clippy::too_many_arguments)]
fn claim_round(
    repo: &WatchedRepo,
    lock: &ReconcilerLock,
    options: &ApplyOptions,
    selector: &Selector,
    auth: &GitAuth,
    config: &RepoConfig,
    remote_name: &str,
    stop: &AtomicBool,
    progress: &dyn ProgressSink,
) -> Result<ApplyReport, SharedError> {
    let remote = Remote::open(&repo.repo, remote_name, auth).map_err(SyncError::from)?;
    let now = options.now.unwrap_or_else(Timestamp::now);
    let head = repo.branch_tip(&repo.desired_branch_hint()).map_err(ApplyError::from)?;
    let loaded = load_commit(repo, head).map_err(ApplyError::from)?;
    let journal_dir = Journal::dir(repo.repo.path());
    let unfinished: BTreeSet<String> = Journal::load_unfinished(&journal_dir)
        .map_err(ApplyError::from)?
        .into_iter()
        .map(|j| j.header.target)
        .collect();
    let mut wanted = Vec::new();
    if loaded.is_valid() {
        let recorded = read_recorded_shared(&repo.repo, &config.state_branch).map_err(ApplyError::from)?;
        let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
        let evidence = load::evidence(repo, &loaded, &anchor).map_err(ApplyError::from)?;
        let plan = plan::plan(&loaded.plan_input(&recorded, &evidence, now));
        for action in plan.actions.iter().filter(|a| a.status == Status::Ready) {
            let Some(target) = loaded.desired.targets.get(&action.target) else {
                continue;
            };
            let chosen = options.targets.is_empty() || options.targets.contains(&action.target);
            if !chosen || !selector.matches(&target.manifest.labels) {
                continue;
            }
            let limit = match policy::select_policy(&loaded.desired, target) {
                Ok(Governing::Declared(p)) => p.manifest.spec.rollout.max_parallel,
                _ => policy::builtin_policy_spec().rollout.max_parallel,
            };
            wanted.push(Wanted {
                target: action.target.clone(),
                policy: action.policy.clone(),
                limit,
            });
        }
    }
    let me = agents::agent_id(repo.repo.path()).map_err(|e| {
        ApplyError::Source(crate::source::SourceError::Io {
            path: repo.gantry_dir().join("agent-id"),
            source: e,
        })
    })?;
    let grants = if wanted.is_empty() {
        agents::Grants::default()
    } else {
        agents::claim(&repo.repo, &remote, &config.state_branch, &me, &wanted, now)?
    };
    for target in &grants.held_elsewhere {
        tracing::info!(target = %target, "claimed by another agent; not started here");
    }
    for target in &grants.no_slot {
        tracing::info!(target = %target, "no free maxParallel slot across agents; waiting");
    }
    let run: Vec<String> = grants
        .granted
        .iter()
        .chain(&unfinished)
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    let result = if run.is_empty() {
        if !loaded.is_valid() {
            // Report the invalid commit exactly as a plain pass does.
            apply_holding_lock(repo, lock, options, stop, progress)
        } else {
            plan_only(repo, options.now)
        }
    } else {
        let mut options = options.clone();
        options.targets = run.clone();
        apply_holding_lock(repo, lock, &options, stop, progress)
    };
    // Release whatever is not left unfinished, even after a failed pass, and publish.
    let still: BTreeSet<String> = Journal::load_unfinished(&journal_dir)
        .map(|v| v.into_iter().map(|j| j.header.target).collect())
        .unwrap_or_else(|_| run.iter().cloned().collect());
    let released =
        agents::release(&repo.repo, &config.state_branch, &me, &still, now).map_err(|source| SyncError::Local {
            remote: remote_name.to_string(),
            what: format!("releasing claims on {}", config.state_branch),
            source,
        })?;
    let report = result?;
    if (released || !report.outcomes.is_empty() || report.resumed > 0)
        && let Err(e) = publish_after(repo, config, auth)
    {
        // The outcomes are committed locally; the next pass publishes them first.
        tracing::warn!("{e}; the outcomes are recorded locally and published by the next pass");
    }
    Ok(report)
}
