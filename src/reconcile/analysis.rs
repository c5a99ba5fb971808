//! Analysis stage (issue #11): before planning, a pass runs the health-check rounds due on every
//! soaking wave, records them in `rollouts/<component>@<version>.yaml`, and hands back the
//! targets whose checks failed `failureThreshold` rounds in a row, for `apply` to roll back.
//! When rounds are due and what they mean is pure (`policy::analysis`); this runs the checks.

use std::path::Path;
use std::sync::Arc;

use crate::manifest::Version;
use jiff::Timestamp;

use crate::executor::health::{HealthProbe, ProbeRun, SystemClock};
use crate::executor::{ShellExecutor, TargetContext, TemplateContext};
use crate::manifest::Desired;
use crate::policy::analysis::{self, CheckResult, Timetable};
use crate::policy::{self, Governing};
use crate::source::WatchedRepo;
use crate::state::{
    AnalysisStatus, Batch, RecordedState, RolloutRecord, RolloutTargetStatus, StateWriter, TargetStatus,
};

use super::apply::ApplyError;
use super::attempt::ExecutorPool;

/// A target whose analysis failed: it is to be rolled back.
#[derive(Debug, Clone)]
pub struct AnalysisFailure {
    pub target: String,
    pub component: String,
    pub version: Version,
    pub wave: String,
    /// `analysis failed in wave W: check `C` failed N rounds in a row: MESSAGE`.
    pub reason: String,
}

/// Where the checks run and who runs them.
pub struct AnalysisEnv<'a> {
    pub repo: &'a WatchedRepo,
    pub desired: &'a Desired,
    pub state_branch: &'a str,
    pub pool: &'a ExecutorPool,
    pub checkout: &'a Path,
    /// The desired commit the rounds run under (`{{ commit }}` in the checks).
    pub commit: git2::Oid,
    pub now: Timestamp,
    /// The `[secrets]` values of [`Self::desired`], built once per pass.
    pub redactor: &'a crate::manifest::secrets::Redactor,
}

/// Runs the rounds due at `env.now` on every soaking wave with analysis, and records them (one
/// state commit). Returns the targets that failed.
///
/// # Errors
/// [`ApplyError::State`] when the rounds cannot be recorded; checks that fail are results.
pub fn run_due_rounds(
    env: &AnalysisEnv,
    recorded: &mut Arc<RecordedState>,
) -> Result<Vec<AnalysisFailure>, ApplyError> {
    let mut failures = Vec::new();
    let mut changed: Vec<RolloutRecord> = Vec::new();
    let mut summary: Vec<String> = Vec::new();
    for rollout in recorded.rollouts.values() {
        let mut rollout = rollout.clone();
        let mut touched = false;
        for w in 0..rollout.waves.len() {
            if let Some(line) = analyse_wave(env, recorded, &mut rollout, w, &mut failures) {
                touched = true;
                summary.push(line);
            }
        }
        if touched {
            changed.push(rollout);
        }
    }
    if changed.is_empty() {
        return Ok(failures);
    }
    let mut batch = Batch::new();
    for rollout in &changed {
        batch.upsert_rollout(rollout.clone());
    }
    batch.progress_summary(format!("gantry: analysis {}", summary.join("; ")));
    let mut writer = StateWriter::on_top_of(&env.repo.repo, env.state_branch, recorded)?;
    // The pass's own copy from here on (the state branch cache keeps the one it read).
    let recorded = Arc::make_mut(recorded);
    if let Some(commit) = writer.commit(&batch, env.now)? {
        recorded.commit = Some(commit.to_string());
    }
    for rollout in changed {
        recorded
            .rollouts
            .insert((rollout.component.clone(), rollout.version.clone()), rollout);
    }
    Ok(failures)
}

/// Runs the due rounds of wave `w` of `rollout`; returns a summary line when it ran any.
fn analyse_wave(
    env: &AnalysisEnv,
    recorded: &RecordedState,
    rollout: &mut RolloutRecord,
    w: usize,
    failures: &mut Vec<AnalysisFailure>,
) -> Option<String> {
    let wave = &rollout.waves[w];
    if wave
        .analysis
        .as_ref()
        .is_some_and(|a| a.status != AnalysisStatus::Running)
    {
        return None;
    }
    // The targets this wave upgraded that still run the rollout's version as desired.
    let members: Vec<&String> = rollout
        .targets
        .iter()
        .filter(|(_, t)| t.wave == wave.name)
        .map(|(name, _)| name)
        .collect();
    let all_finished = members
        .iter()
        .all(|t| rollout.targets[*t].status != RolloutTargetStatus::InProgress);
    if members.is_empty() || !all_finished {
        return None;
    }
    let completed: Timestamp = match &wave.completed {
        Some(c) => c.parse().ok()?,
        None => members
            .iter()
            .filter_map(|t| rollout.targets[*t].finished.as_deref()?.parse::<Timestamp>().ok())
            .max()?,
    };
    let watched: Vec<&String> = members
        .into_iter()
        .filter(|t| rollout.targets[*t].status == RolloutTargetStatus::Succeeded)
        .filter(|t| {
            recorded
                .targets
                .get(*t)
                .is_some_and(|r| r.version.as_ref() == Some(&rollout.version) && r.status == TargetStatus::Converged)
        })
        .filter(|t| env.desired.targets.contains_key(*t))
        .collect();
    let first = env.desired.targets.get(*watched.first()?)?;
    let governing = policy::select_policy(env.desired, first).ok()?;
    let spec = governing.spec();
    let index = spec.rollout.waves.iter().position(|s| s.name == wave.name)?;
    let soak = governing
        .wave_soaks()
        .get(index)
        .copied()
        .flatten()
        .filter(|s| !s.is_zero())?;
    let component = env.desired.components.get(&rollout.component)?;
    let probe = HealthProbe::new(
        governing.health(),
        component.spec.steps.health.as_ref(),
        super::attempt::step_timeout(spec),
    );
    if probe.is_empty() {
        return None;
    }
    let timetable = Timetable {
        completed,
        soak,
        interval: interval_of(governing),
    };
    let last_round = wave
        .analysis
        .as_ref()
        .and_then(|a| a.last_round.as_deref()?.parse::<Timestamp>().ok());
    let due = timetable.due(last_round, env.now)?;
    // More rounds back to back than the threshold could not change a verdict.
    let rounds = due.count.min(probe.failure_threshold().max(1));
    let names: Vec<String> = watched.iter().map(|t| (*t).clone()).collect();
    let (wave_name, version) = (wave.name.clone(), rollout.version.clone());
    let peers = if governing.health().peers {
        peers_of(env, recorded, rollout, &wave_name, governing)
    } else {
        Vec::new()
    };
    let state = rollout.waves[w]
        .analysis
        .get_or_insert_with(|| analysis::start(names.iter().map(String::as_str)));
    for name in &names {
        let Some(entry) = state.targets.get_mut(name) else {
            continue;
        };
        if entry.status != AnalysisStatus::Running {
            continue;
        }
        let target = &env.desired.targets[name];
        let context = context_of(recorded, target, &rollout.component, &version, env.commit);
        let log_path = env
            .repo
            .gantry_dir()
            .join("logs")
            .join(format!("analysis-{}@{version}-{name}.log", rollout.component));
        for _ in 0..rounds {
            let results = run_round(env, &probe, &context, &component.spec.executor, &log_path);
            if let Some((check, message)) = analysis::record_round(entry, &results, probe.failure_threshold()) {
                let n = probe.failure_threshold().max(1);
                let reason = format!(
                    "analysis failed in wave {wave_name}: check `{check}` failed {n} round{} in a row: {message}",
                    if n == 1 { "" } else { "s" }
                );
                tracing::warn!(target = %name, component = %rollout.component, %version, "{reason}");
                failures.push(AnalysisFailure {
                    target: name.clone(),
                    component: rollout.component.clone(),
                    version: version.clone(),
                    wave: wave_name.clone(),
                    reason,
                });
                break;
            }
        }
    }
    // Peers: a canary that harms its neighbours fails its wave, though its own checks pass.
    let n = probe.failure_threshold().max(1);
    let mut harmed = None;
    for (name, peer_version) in &peers {
        let entry = state.peers.entry(name.clone()).or_insert_with(analysis::running);
        if entry.status != AnalysisStatus::Running {
            continue;
        }
        let context = context_of(
            recorded,
            &env.desired.targets[name],
            &rollout.component,
            peer_version,
            env.commit,
        );
        let log_path = env
            .repo
            .gantry_dir()
            .join("logs")
            .join(format!("analysis-{}@{version}-peer-{name}.log", rollout.component));
        for _ in 0..rounds {
            let results = run_round(env, &probe, &context, &component.spec.executor, &log_path);
            if let Some((check, message)) = analysis::record_round(entry, &results, probe.failure_threshold()) {
                harmed = Some(format!(
                    "peer `{name}` ({peer_version}): check `{check}` failed {n} round{} in a row: {message}",
                    if n == 1 { "" } else { "s" }
                ));
                break;
            }
        }
        if harmed.is_some() {
            break;
        }
    }
    if let Some(why) = harmed {
        let reason = format!("analysis failed in wave {wave_name}: {why}");
        tracing::warn!(component = %rollout.component, %version, "{reason}");
        for (name, entry) in state
            .targets
            .iter_mut()
            .filter(|(_, t)| t.status == AnalysisStatus::Running)
        {
            entry.status = AnalysisStatus::Failed;
            failures.push(AnalysisFailure {
                target: name.clone(),
                component: rollout.component.clone(),
                version: version.clone(),
                wave: wave_name.clone(),
                reason: reason.clone(),
            });
        }
    }
    state.rounds += rounds;
    state.last_round = Some(due.at.to_string());
    analysis::settle(state, due.last);
    let line = format!(
        "{}@{version} wave {wave_name}: {} round{} ({})",
        rollout.component,
        rounds,
        if rounds == 1 { "" } else { "s" },
        state.status.as_str()
    );
    tracing::info!("{line}");
    Some(line)
}

/// The peers of wave `wave` (`health.peers`): desired targets of the rollout's component under
/// the same policy, not in that wave, converged, each with the version it runs.
fn peers_of(
    env: &AnalysisEnv,
    recorded: &RecordedState,
    rollout: &RolloutRecord,
    wave: &str,
    governing: Governing,
) -> Vec<(String, Version)> {
    env.desired
        .targets
        .values()
        .filter(|t| t.spec().component == rollout.component)
        .filter(|t| rollout.targets.get(t.name()).is_none_or(|r| r.wave != wave))
        .filter(|t| policy::select_policy(env.desired, t).ok().and_then(|g| g.name()) == governing.name())
        .filter_map(|t| {
            let r = recorded.targets.get(t.name())?;
            let version = r.version.clone()?;
            (r.status == TargetStatus::Converged).then(|| (t.name().to_string(), version))
        })
        .collect()
}

/// The round interval of a policy (the health `interval`, default 10 s).
fn interval_of(governing: Governing) -> std::time::Duration {
    Some(governing.health().interval)
        .filter(|i| !i.is_zero())
        .unwrap_or(crate::manifest::health::DEFAULT_INTERVAL)
}

/// What the checks' templates see: the target at the rollout's version, as after its deploy.
fn context_of(
    recorded: &RecordedState,
    target: &crate::manifest::Target,
    component: &str,
    version: &Version,
    commit: git2::Oid,
) -> TemplateContext {
    let last = recorded
        .targets
        .get(&target.manifest.name)
        .and_then(|r| r.last_attempt.as_ref());
    TemplateContext {
        target: TargetContext {
            name: target.manifest.name.clone(),
            labels: target.labels().clone(),
            vars: target.spec().vars.clone(),
            config: target.spec().config.clone(),
        },
        component: component.to_string(),
        version: version.to_string(),
        from: last.and_then(|a| a.from.as_ref()).map(Version::to_string),
        to: version.to_string(),
        release: None,
        migration: None,
        attempt: last.map(|a| a.id.clone()).unwrap_or_default(),
        commit: commit.to_string(),
        weight: None,
        artifact: None,
        artifacts: Vec::new(),
    }
}

/// One round on one target; a check that cannot even run fails the round with that reason.
fn run_round(
    env: &AnalysisEnv,
    probe: &HealthProbe,
    context: &TemplateContext,
    executor: &Option<String>,
    log_path: &Path,
) -> Vec<CheckResult> {
    let extra_env = vec![(
        "GANTRY_REPO".to_string(),
        env.repo.root().to_string_lossy().into_owned(),
    )];
    let output = crate::executor::OutputPolicy {
        redactor: env.redactor.clone(),
        max_log_bytes: env.desired.config.logs.max_step_bytes,
    };
    env.pool.with(executor.as_deref(), |component| {
        let mut local = ShellExecutor::new();
        let mut run = ProbeRun {
            context,
            checkout: env.checkout,
            log_path,
            output: &output,
            component,
            local: &mut local,
            clock: &SystemClock,
            extra_env: &extra_env,
        };
        probe.round(&mut run).unwrap_or_else(|e| {
            vec![CheckResult {
                check: "analysis".into(),
                ok: false,
                message: e.to_string(),
            }]
        })
    })
}
