//! Execute stage: one attempt on one target, step by step, journaled, rolled back on failure.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::manifest::Version;

use crate::executor::health::{Clock, HealthProbe, HealthVerdict, ProbeRun};
use crate::executor::{
    Executor, OutputPolicy, PluginPool, ShellExecutor, StepKind, StepRequest, StepResult, TargetContext,
    TemplateContext,
};
use crate::manifest::secrets::Redactor;
use crate::manifest::{Desired, ExecutorType, Labels, OnInterrupt, PolicySpec};
use crate::state::journal::{AttemptHeader, Journal, JournalEntry, JournaledAttempt, StepCompleted, StepStarted};
use crate::state::{AttemptRecord, Outcome, TargetRecord, TargetStatus};

use super::program::{self, PlannedStep, Progress};
use super::runtime::{ExecutorSource, Runtime};

/// The action of an attempt that rolls back a target whose analysis failed during its wave's
/// soak: its program is the rollback of the upgrade that brought the target to `to`, and it ends
/// `rolled_back` (or `failed`) with the analysis failure as its message.
pub const ANALYSIS_ROLLBACK: &str = "analysis_rollback";

/// The default step timeout when no policy sets `stepTimeout`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// A policy's `stepTimeout` as a duration (the default when unset). The one place reconcile
/// reads it: `load` already rejected a commit whose `stepTimeout` does not parse with this same
/// grammar (`manifest::values::parse_duration`), so an error here cannot happen for a loaded
/// commit and falls back to the default rather than failing a step.
pub fn step_timeout(policy: &PolicySpec) -> Duration {
    policy
        .step_timeout
        .as_deref()
        .and_then(|t| crate::manifest::values::parse_duration(t).ok())
        .unwrap_or(DEFAULT_STEP_TIMEOUT)
}

/// The executors of one pass, by name. Shell steps get a fresh executor per step (they share
/// nothing); a plugin executor instance runs one process per step running at once
/// ([`PluginPool`]), so plugin targets run side by side up to `maxParallel`. An injected
/// [`ExecutorSource`] (tests, simulations) replaces both.
pub struct ExecutorPool {
    plugins: std::collections::BTreeMap<String, PluginPool>,
    injected: Option<Arc<dyn ExecutorSource>>,
}

impl ExecutorPool {
    /// The executors of a pass: `injected` when given, else those `gantry.toml` declares.
    pub fn for_runtime(runtime: &Runtime, desired: &Desired, checkout: &std::path::Path) -> ExecutorPool {
        match &runtime.executors {
            Some(source) => ExecutorPool {
                plugins: Default::default(),
                injected: Some(Arc::clone(source)),
            },
            None => ExecutorPool::new(desired, checkout),
        }
    }

    /// Prepares the executors named in `gantry.toml`. Plugins start lazily on first use.
    pub fn new(desired: &Desired, checkout: &std::path::Path) -> ExecutorPool {
        let mut plugins = std::collections::BTreeMap::new();
        for (name, config) in &desired.config.executors {
            if config.executor_type == ExecutorType::Plugin
                && let Some(command) = &config.command
            {
                let mut command = command.clone();
                // A relative plugin path names a program in the repository, like step argv[0].
                if let Some(program) = command.first_mut()
                    && program.contains('/')
                    && !program.starts_with('/')
                {
                    *program = checkout.join(&*program).to_string_lossy().into_owned();
                }
                plugins.insert(name.clone(), PluginPool::new(name.clone(), command));
            }
        }
        ExecutorPool {
            plugins,
            injected: None,
        }
    }

    /// Runs `f` with the executor for `name` (`None` or a shell executor name: a fresh shell).
    pub(crate) fn with<R>(&self, name: Option<&str>, f: impl FnOnce(&mut dyn Executor) -> R) -> R {
        if let Some(source) = &self.injected {
            let mut executor = source.executor(name);
            return f(&mut *executor);
        }
        match name.and_then(|n| self.plugins.get(n)) {
            Some(plugin) => plugin.with(f),
            None => f(&mut ShellExecutor::new()),
        }
    }

    /// The executor of the policy's `command` health checks (the built-in shell).
    fn local(&self) -> Box<dyn Executor> {
        match &self.injected {
            Some(source) => source.executor(None),
            None => Box::new(ShellExecutor::new()),
        }
    }
}

/// Live progress of a pass, for people (lines, bars) or machines (JSON events).
pub trait ProgressSink: Sync {
    fn event(&self, event: &ProgressEvent);
}

/// What happened, as it happens.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    AttemptStarted {
        target: String,
        component: String,
        attempt: String,
        action: String,
        from: Option<String>,
        to: Option<String>,
        steps: usize,
    },
    StepStarted {
        target: String,
        attempt: String,
        step: String,
        kind: String,
        index: usize,
        steps: usize,
    },
    StepFinished {
        target: String,
        attempt: String,
        step: String,
        ok: bool,
        message: String,
        duration_ms: u128,
    },
    RollbackStarted {
        target: String,
        attempt: String,
        reason: String,
    },
    AttemptFinished {
        target: String,
        attempt: String,
        outcome: String,
        message: String,
    },
    /// The component's `precheck` failed: the action did not start (nothing changed, nothing
    /// is recorded) and the next pass tries again.
    Held {
        target: String,
        component: String,
        action: String,
        reason: String,
    },
}

/// Everything an attempt needs besides its steps.
pub struct AttemptEnv<'a> {
    pub desired: &'a Desired,
    pub policy: &'a PolicySpec,
    /// The governing policy's typed `health` section.
    pub health: &'a crate::manifest::health::HealthSettings,
    pub target_name: &'a str,
    pub component: &'a str,
    pub labels: Labels,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The config the target ran before this attempt (for undoing a config change).
    pub previous_config: Option<serde_json::Map<String, serde_json::Value>>,
    pub checkout: PathBuf,
    pub repo_root: PathBuf,
    pub log_dir: PathBuf,
    pub executors: &'a ExecutorPool,
    /// The health soak loop's clock (a fake one under a fixed `--now`).
    pub clock: Arc<dyn Clock>,
    pub now: &'a (dyn Fn() -> jiff::Timestamp + Sync),
    pub progress: &'a dyn ProgressSink,
    /// Where attempt journals live (`.git/gantry/journal`).
    pub journal_dir: PathBuf,
    /// Set when the daemon is stopping: no further step starts (see [`AttemptError::Stopped`]).
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
    /// The `[secrets]` values of [`Self::desired`] ([`Redactor::from_desired`], built once per
    /// pass).
    pub redactor: Redactor,
}

/// How an attempt ended, ready to record. Its journal is finished once the outcome is committed.
pub struct AttemptResult {
    pub target: String,
    /// The new record; `None` when the target was removed.
    pub record: Option<TargetRecord>,
    pub outcome: Outcome,
    pub header: AttemptHeader,
    pub message: String,
    pub journal: Journal,
}

/// Why the attempt could not even be journaled (nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// The journal could not be written or reopened.
    #[error(transparent)]
    Journal(#[from] crate::state::journal::JournalError),
    /// A journaled program does not parse (written by another gantry version?).
    #[error("journaled program does not parse: {0}")]
    Plan(String),
    /// The reconciler is stopping and a step was about to start. No outcome is recorded: the
    /// journal stays, so the next start resumes the attempt where it stopped.
    #[error("stopped before the next step; the attempt resumes at the next start")]
    Stopped,
    /// A process of the interrupted step could not be ended; resuming would run the step twice.
    #[error("attempt {attempt} not resumed: {source}; end it by hand, then run `gantry apply` again")]
    Leftover {
        attempt: String,
        #[source]
        source: std::io::Error,
    },
    /// The component's `precheck` failed (the reason ends with its output): nothing ran or was
    /// journaled, and the next pass tries again.
    #[error("held: {0}")]
    Held(String),
}

/// How long a resume waits for the killed processes of an interrupted step to be gone.
const LEFTOVER_WAIT: Duration = Duration::from_secs(10);

struct Runner<'a, 'b> {
    env: &'b AttemptEnv<'a>,
    header: &'b AttemptHeader,
    journal: Journal,
    steps_total: usize,
    /// Hides `[secrets]` values in what a step reports before it reaches the journal, progress
    /// events, state and the step log.
    redactor: Redactor,
    /// The verified artifacts of each release deployed (by version), as local files.
    artifacts: BTreeMap<Version, Vec<crate::executor::artifact::LocalArtifact>>,
}

impl Runner<'_, '_> {
    fn context(&self, step: &PlannedStep) -> TemplateContext {
        // `release` is defined on every step that has a version (issue #16: `{{ release }}`
        // passed validation, then failed on the first deploy): the Release manifest of the
        // migration's release, else of the version the step deploys or checks.
        let release_name = step.release.as_ref().or(step.version.as_ref()).and_then(|version| {
            Some(
                self.env
                    .desired
                    .release(self.env.component, version)?
                    .manifest
                    .name
                    .clone(),
            )
        });
        TemplateContext {
            target: TargetContext {
                name: self.env.target_name.to_string(),
                labels: self.env.labels.clone(),
                vars: self.env.vars.clone(),
                config: if step.previous_config {
                    self.env.previous_config.clone().unwrap_or_default()
                } else {
                    self.env.config.clone()
                },
            },
            component: self.env.component.to_string(),
            version: step.version.as_ref().map_or_else(String::new, Version::to_string),
            // Defined on every step: the empty string for an install, like `GANTRY_FROM`, so a
            // template that validates cannot fail only on installs (issue #10, item 9).
            from: Some(self.header.from.as_ref().map_or_else(String::new, Version::to_string)),
            to: self.header.to.to_string(),
            release: release_name.or_else(|| step.release.as_ref().map(Version::to_string)),
            migration: step.migration.clone(),
            attempt: step.snapshot_of.clone().unwrap_or_else(|| self.header.attempt.clone()),
            commit: self.header.desired_commit.clone(),
            weight: step.weight,
            artifact: step
                .version
                .as_ref()
                .and_then(|v| self.artifacts.get(v)?.first().cloned()),
            artifacts: step
                .version
                .as_ref()
                .and_then(|v| self.artifacts.get(v).cloned())
                .unwrap_or_default(),
        }
    }

    /// Runs one step: journal "started", execute, journal "completed". The completion is on disk
    /// before this returns, so a crash after it never re-runs the step.
    fn run_step(&mut self, step: &PlannedStep, index: usize) -> Result<StepResult, AttemptError> {
        let env = self.env;
        if env.stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
            return Err(AttemptError::Stopped);
        }
        self.journal.append(&JournalEntry::StepStarted(StepStarted {
            step_id: step.id.clone(),
            kind: step.kind.as_str().to_string(),
            at: (env.now)(),
            detail: serde_json::Value::Null,
        }))?;
        env.progress.event(&ProgressEvent::StepStarted {
            target: env.target_name.to_string(),
            attempt: self.header.attempt.clone(),
            step: step.id.clone(),
            kind: step.kind.as_str().to_string(),
            index,
            steps: self.steps_total,
        });
        let mut result = self.execute(step);
        if !self.redactor.is_empty() {
            result.message = self.redactor.redact(&result.message);
            // The executor redacted the output as it streamed (log and tail); a message may
            // still quote a rendered argv.
            result.output_tail = self.redactor.redact(&result.output_tail);
        }
        self.journal.append(&JournalEntry::StepCompleted(StepCompleted {
            step_id: step.id.clone(),
            ok: result.ok,
            at: (env.now)(),
            message: result.message.clone(),
            detail: serde_json::json!({ "output_tail": result.output_tail }),
        }))?;
        env.progress.event(&ProgressEvent::StepFinished {
            target: env.target_name.to_string(),
            attempt: self.header.attempt.clone(),
            step: step.id.clone(),
            ok: result.ok,
            message: result.message.clone(),
            duration_ms: result.duration.as_millis(),
        });
        Ok(result)
    }

    fn execute(&self, step: &PlannedStep) -> StepResult {
        let env = self.env;
        let context = self.context(step);
        let timeout = step_timeout(env.policy);
        let log_path = env.log_dir.join(format!("{}.log", self.header.attempt));
        let output = OutputPolicy {
            redactor: self.redactor.clone(),
            max_log_bytes: env.desired.config.logs.max_step_bytes,
        };
        let executor_name = env
            .desired
            .components
            .get(env.component)
            .and_then(|c| c.spec.executor.clone());
        let mut extra_env = vec![("GANTRY_REPO".to_string(), env.repo_root.to_string_lossy().into_owned())];
        if let Some(first) = &context.artifact {
            let all: Vec<&str> = context.artifacts.iter().map(|a| a.path.as_str()).collect();
            extra_env.push(("GANTRY_ARTIFACT".to_string(), first.path.clone()));
            extra_env.push(("GANTRY_ARTIFACTS".to_string(), all.join("\n")));
        }
        if step.kind == StepKind::Health {
            let component_step = (!step.argv.is_empty()).then_some(&step.argv);
            let started = std::time::Instant::now();
            // A traffic weight is held for its own analysis time instead of `health.soak`.
            let probe = match step.hold_ms {
                Some(ms) => HealthProbe::new(
                    &env.health.holding_for(std::time::Duration::from_millis(ms)),
                    component_step,
                    timeout,
                ),
                None => HealthProbe::new(env.health, component_step, timeout),
            };
            let verdict = env.executors.with(executor_name.as_deref(), |component| {
                let mut local = env.executors.local();
                let mut run = ProbeRun {
                    context: &context,
                    checkout: &env.checkout,
                    log_path: &log_path,
                    output: &output,
                    component,
                    local: &mut *local,
                    clock: &*env.clock,
                    extra_env: &extra_env,
                };
                probe.run(&mut run)
            });
            return match verdict {
                Ok(HealthVerdict::Healthy { rounds }) => StepResult {
                    ok: true,
                    exit: crate::executor::Exit::Code(0),
                    message: format!("healthy ({rounds} round{})", if rounds == 1 { "" } else { "s" }),
                    output_tail: String::new(),
                    duration: started.elapsed(),
                    observed_version: None,
                },
                Ok(HealthVerdict::Unhealthy { check, message, .. }) => StepResult::failed(
                    crate::executor::Exit::Code(1),
                    format!("health check `{check}` failed: {message}"),
                    started.elapsed(),
                ),
                Err(e) => StepResult::failed(crate::executor::Exit::SpawnFailed, e.to_string(), started.elapsed()),
            };
        }
        let request = StepRequest {
            kind: step.kind,
            argv: step.argv.clone(),
            context,
            checkout: env.checkout.clone(),
            timeout,
            log_path,
            output,
            extra_env,
        };
        env.executors
            .with(executor_name.as_deref(), |executor| match executor.run(&request) {
                Ok(result) => result,
                Err(e) => StepResult::failed(crate::executor::Exit::SpawnFailed, e.to_string(), Duration::ZERO),
            })
    }
}

/// Starts a new attempt: journals its header (with the whole program), then runs it.
///
/// # Errors
/// [`AttemptError`] when the journal cannot be written; if that happens before the first step,
/// nothing has run.
pub fn start(
    env: &AttemptEnv,
    mut header: AttemptHeader,
    record: Option<&TargetRecord>,
    forward: Vec<PlannedStep>,
) -> Result<AttemptResult, AttemptError> {
    precheck(env, &header)?;
    header.plan = serde_json::to_value(&forward).unwrap_or_default();
    let journal = Journal::create(&env.journal_dir, &header)?;
    run(env, header, record, &forward, journal, &[], OnInterrupt::Resume)
}

/// Runs the component's `precheck` step (if it has one) before an install, upgrade or config
/// change starts. It is not journaled: it changes nothing, so a crash during it leaves nothing to
/// resume. Downgrades skip it, as they skip waves: a revert is never held back.
///
/// # Errors
/// [`AttemptError::Held`] with the step's message and the last lines of its output.
fn precheck(env: &AttemptEnv, header: &AttemptHeader) -> Result<(), AttemptError> {
    let component = env.desired.components.get(env.component);
    let Some(argv) = component.and_then(|c| c.spec.steps.precheck.clone()) else {
        return Ok(());
    };
    if !matches!(header.action.as_str(), "install" | "upgrade" | "config") {
        return Ok(());
    }
    let context = TemplateContext {
        target: TargetContext {
            name: env.target_name.to_string(),
            labels: env.labels.clone(),
            vars: env.vars.clone(),
            config: env.config.clone(),
        },
        component: env.component.to_string(),
        version: header.to.to_string(),
        // Defined as on every other step (SPEC §5), so what the template check passed runs:
        // `from` is empty on an install, `release` names the version's Release manifest.
        from: Some(header.from.as_ref().map_or_else(String::new, Version::to_string)),
        to: header.to.to_string(),
        release: env
            .desired
            .release(env.component, &header.to)
            .map(|r| r.manifest.name.clone()),
        migration: None,
        attempt: header.attempt.clone(),
        commit: header.desired_commit.clone(),
        weight: None,
        artifact: None,
        artifacts: Vec::new(),
    };
    let request = StepRequest {
        kind: StepKind::Precheck,
        argv,
        context,
        checkout: env.checkout.clone(),
        timeout: step_timeout(env.policy),
        log_path: env.log_dir.join(format!("{}.log", header.attempt)),
        output: OutputPolicy {
            redactor: env.redactor.clone(),
            max_log_bytes: env.desired.config.logs.max_step_bytes,
        },
        extra_env: vec![("GANTRY_REPO".to_string(), env.repo_root.to_string_lossy().into_owned())],
    };
    let executor_name = component.and_then(|c| c.spec.executor.clone());
    let mut result = env
        .executors
        .with(executor_name.as_deref(), |executor| match executor.run(&request) {
            Ok(result) => result,
            Err(e) => StepResult::failed(crate::executor::Exit::SpawnFailed, e.to_string(), Duration::ZERO),
        });
    let redactor = &env.redactor;
    if result.ok {
        return Ok(());
    }
    let redact = |text: &str| {
        if redactor.is_empty() {
            text.to_string()
        } else {
            redactor.redact(text)
        }
    };
    result.message = redact(&result.message);
    let tail: Vec<&str> = result
        .output_tail
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let last = tail[tail.len().saturating_sub(3)..].join(" / ");
    let tail_text = redact(&last);
    let reason = if tail_text.is_empty() || result.message.contains(&tail_text) {
        format!("precheck failed: {}", result.message)
    } else {
        format!("precheck failed: {}: {tail_text}", result.message)
    };
    env.progress.event(&ProgressEvent::Held {
        target: env.target_name.to_string(),
        component: env.component.to_string(),
        action: header.action.clone(),
        reason: reason.clone(),
    });
    Err(AttemptError::Held(reason))
}

/// Resumes an attempt a killed reconciler left behind, from the program it journaled.
///
/// # Guarantees
/// A step the journal records as completed is never run again. The interrupted step (started,
/// not completed) is run again with `onInterrupt: resume` (steps must be idempotent), or the
/// attempt is rolled back from where it stood with `onInterrupt: rollback`.
///
/// # Errors
/// [`AttemptError`] when the journal cannot be reopened or written.
pub fn resume(
    env: &AttemptEnv,
    left: JournaledAttempt,
    record: Option<&TargetRecord>,
    on_interrupt: OnInterrupt,
) -> Result<AttemptResult, AttemptError> {
    let forward: Vec<PlannedStep> =
        serde_json::from_value(left.header.plan.clone()).map_err(|e| AttemptError::Plan(e.to_string()))?;
    let header = left.header.clone();
    let entries = left.entries.clone();
    // Nothing of the interrupted step may still run when the attempt goes on (issue #10, bug 7).
    let log = env.log_dir.join(format!("{}.log", header.attempt));
    crate::executor::shell::reap_interrupted_step(&log, LEFTOVER_WAIT).map_err(|source| AttemptError::Leftover {
        attempt: header.attempt.clone(),
        source,
    })?;
    let journal = left.resume()?;
    run(env, header, record, &forward, journal, &entries, on_interrupt)
}

fn run(
    env: &AttemptEnv,
    header: AttemptHeader,
    record: Option<&TargetRecord>,
    forward: &[PlannedStep],
    journal: Journal,
    journaled: &[JournalEntry],
    on_interrupt: OnInterrupt,
) -> Result<AttemptResult, AttemptError> {
    let completed: HashMap<&str, (bool, &str)> = journaled
        .iter()
        .filter_map(|e| match e {
            JournalEntry::StepCompleted(c) => Some((c.step_id.as_str(), (c.ok, c.message.as_str()))),
            JournalEntry::StepStarted(_) => None,
        })
        .collect();
    // Steps started and never completed: the reconciler died during them.
    let interrupted: Vec<&str> = journaled
        .iter()
        .filter_map(|e| match e {
            JournalEntry::StepStarted(s) if !completed.contains_key(s.step_id.as_str()) => Some(s.step_id.as_str()),
            _ => None,
        })
        .collect();
    // A step started more often than it completed was interrupted at least once: whatever it
    // reports later, its interrupted run may have taken effect.
    let mut starts: HashMap<&str, usize> = HashMap::new();
    for e in journaled {
        if let JournalEntry::StepStarted(s) = e {
            *starts.entry(s.step_id.as_str()).or_default() += 1;
        }
    }
    let was_interrupted = |id: &str| {
        let started = starts.get(id).copied().unwrap_or(0);
        started > usize::from(completed.contains_key(id)) || (started >= 1 && interrupted.contains(&id))
    };
    // Set when a step that had been interrupted then failed: its effect is unknown, and so is
    // where the target stands unless a later step settles it (SPEC §4).
    let mut unknown: Option<String> = None;
    let how_failed = |step: &PlannedStep, unknown: &mut Option<String>| {
        if was_interrupted(&step.id) {
            if step.effect != program::Effect::None {
                *unknown = Some(format!(
                    "step {} was interrupted by a crash and failed when run again, so what it changed is unknown",
                    step.id
                ));
            }
            program::StopKind::Interrupted
        } else {
            program::StopKind::Failed
        }
    };
    // Once a rollback has started, a forward step left interrupted is never run again, whatever
    // `onInterrupt` says: the rollback already undoes it.
    let rolling_back = journaled.iter().any(|e| match e {
        JournalEntry::StepStarted(s) => s.step_id.starts_with("rb-"),
        JournalEntry::StepCompleted(c) => c.step_id.starts_with("rb-"),
    });
    let start = Progress::start(record);
    let mut progress = start.clone();
    env.progress.event(&ProgressEvent::AttemptStarted {
        target: env.target_name.to_string(),
        component: env.component.to_string(),
        attempt: header.attempt.clone(),
        action: header.action.clone(),
        from: header.from.as_ref().map(Version::to_string),
        to: Some(header.to.to_string()),
        steps: forward.len(),
    });
    let mut runner = Runner {
        env,
        header: &header,
        journal,
        steps_total: forward.len(),
        redactor: env.redactor.clone(),
        artifacts: BTreeMap::new(),
    };

    // An analysis rollback says why it runs in its first step, and is not itself rolled back.
    let analysis_reason = (header.action == ANALYSIS_ROLLBACK).then(|| {
        forward
            .first()
            .and_then(|s| s.reason.clone())
            .unwrap_or_else(|| "analysis failed".to_string())
    });
    let mut failure: Option<(String, String)> = None;
    // The step that failed or was interrupted, and how (its rollback depends on both).
    let mut stopped: Option<program::Stopped> = None;
    // Artifacts are verified before the first step of a new attempt; a mismatch runs nothing.
    let mut nothing_ran = false;
    match verify_artifacts(env, forward) {
        Ok(artifacts) => runner.artifacts = artifacts,
        Err(message) if journaled.is_empty() => {
            failure = Some((message, String::new()));
            nothing_ran = true;
        }
        // A resumed attempt keeps going as before; its steps get no artifact files.
        Err(message) => tracing::warn!(
            target = env.target_name,
            "artifacts not available to resumed steps: {message}"
        ),
    }
    for (i, step) in forward.iter().enumerate().filter(|_| !nothing_ran) {
        match completed.get(step.id.as_str()) {
            Some((true, _)) => {
                progress.apply(&step.effect);
                continue;
            }
            Some((false, message)) => {
                failure = Some((format!("step {} failed: {message}", step.id), String::new()));
                stopped = Some(program::Stopped {
                    step,
                    how: how_failed(step, &mut unknown),
                });
                break;
            }
            None => {}
        }
        if interrupted.contains(&step.id.as_str()) && (on_interrupt == OnInterrupt::Rollback || rolling_back) {
            // Whether it took effect is known only if the rollback completes (it undoes either way).
            if step.effect != program::Effect::None {
                unknown = Some(format!(
                    "step {} was interrupted by a crash and may or may not have taken effect",
                    step.id
                ));
            }
            stopped = Some(program::Stopped {
                step,
                how: program::StopKind::Interrupted,
            });
            failure = Some((
                format!("interrupted during step {} (onInterrupt: rollback)", step.id),
                String::new(),
            ));
            break;
        }
        let result = runner.run_step(step, i + 1)?;
        if result.ok {
            progress.apply(&step.effect);
        } else {
            failure = Some((
                format!("step {} failed: {}", step.id, result.message),
                result.output_tail,
            ));
            stopped = Some(program::Stopped {
                step,
                how: how_failed(step, &mut unknown),
            });
            break;
        }
    }

    let from_text = header
        .from
        .as_ref()
        .map_or_else(|| "nothing".to_string(), Version::to_string);
    let (outcome, message, tail) = match failure {
        None if analysis_reason.is_some() => (
            Outcome::RolledBack,
            format!(
                "{}; rolled back to {from_text}",
                analysis_reason.as_deref().unwrap_or_default()
            ),
            String::new(),
        ),
        None => (Outcome::Succeeded, String::new(), String::new()),
        Some((message, tail)) if analysis_reason.is_some() => (
            Outcome::Failed,
            format!(
                "{}; rollback failed: {message}",
                analysis_reason.as_deref().unwrap_or_default()
            ),
            tail,
        ),
        Some((message, tail)) if nothing_ran => (Outcome::Failed, message, tail),
        Some((message, tail)) if !env.policy.auto_rollback => (
            Outcome::Failed,
            format!(
                "{message} (autoRollback is off); {}",
                where_it_stands(&progress, stopped)
            ),
            tail,
        ),
        Some((message, tail)) => {
            env.progress.event(&ProgressEvent::RollbackStarted {
                target: env.target_name.to_string(),
                attempt: header.attempt.clone(),
                reason: message.clone(),
            });
            match program::rollback_program(
                env.desired,
                env.component,
                header.action == crate::plan::ActionKind::Config.as_str(),
                &start,
                &progress,
                &header.attempt,
                env.health.has_checks(),
                stopped,
            ) {
                Err(e) => (
                    Outcome::Failed,
                    format!(
                        "{message}; cannot roll back: {e}; {}",
                        where_it_stands(&progress, stopped)
                    ),
                    tail,
                ),
                Ok(rollback) => {
                    let total = rollback.len();
                    runner.steps_total = total;
                    let mut rollback_failure = None;
                    for (i, step) in rollback.iter().enumerate() {
                        match completed.get(step.id.as_str()) {
                            Some((true, _)) => {
                                progress.apply(&step.effect);
                                continue;
                            }
                            Some((false, m)) => {
                                how_failed(step, &mut unknown);
                                rollback_failure = Some(format!("step {} failed: {m}", step.id));
                                break;
                            }
                            None => {}
                        }
                        let result = runner.run_step(step, i + 1)?;
                        if result.ok {
                            progress.apply(&step.effect);
                        } else {
                            how_failed(step, &mut unknown);
                            rollback_failure = Some(format!("step {} failed: {}", step.id, result.message));
                            break;
                        }
                    }
                    match rollback_failure {
                        None if header.from.is_none() => (
                            Outcome::RolledBack,
                            format!("{message}; rolled back: nothing is installed"),
                            tail,
                        ),
                        None => (
                            Outcome::RolledBack,
                            format!("{message}; rolled back to {from_text}"),
                            tail,
                        ),
                        Some(m) => (
                            Outcome::Failed,
                            format!(
                                "{message}; rollback failed: {m}; {}",
                                where_it_stands(&progress, stopped)
                            ),
                            tail,
                        ),
                    }
                }
            }
        }
    };
    env.progress.event(&ProgressEvent::AttemptFinished {
        target: env.target_name.to_string(),
        attempt: header.attempt.clone(),
        outcome: outcome.as_str().to_string(),
        message: message.clone(),
    });
    let keep = env.policy.keep_rollback_points;
    // A rollback that completed settles what the target holds; a failed attempt whose
    // interrupted step then failed does not.
    let unknown = unknown.filter(|_| outcome == Outcome::Failed);
    let message = match &unknown {
        Some(reason) => format!(
            "{message}; where the target stands is unknown: {reason}; check it, then change its spec (`gantry retry`) to try again"
        ),
        None => message,
    };
    let record = if progress.removed {
        None
    } else {
        let mut finished = finished_record(record, env, &header, &progress, outcome, &message, &tail, keep);
        if unknown.is_some() {
            finished.status = TargetStatus::Unknown;
        }
        Some(finished)
    };
    let Runner { journal, .. } = runner;
    Ok(AttemptResult {
        target: env.target_name.to_string(),
        record,
        outcome,
        header,
        message,
        journal,
    })
}

/// What a failed attempt left, in words (the record holds the same, field by field; whether the
/// workflows are stopped is only in these words).
fn where_it_stands(progress: &Progress, stopped: Option<program::Stopped>) -> String {
    let stands = versions_and_migrations(progress);
    if progress.may_be_quiesced(stopped) {
        format!("{stands}; quiesced: `resume` did not run to completion, so its workflows stay stopped")
    } else {
        stands
    }
}

fn versions_and_migrations(progress: &Progress) -> String {
    let version = progress
        .version
        .as_ref()
        .map_or_else(|| "nothing installed".to_string(), |v| format!("the target runs {v}"));
    let migrations: Vec<String> = progress
        .applied
        .iter()
        .map(|m| format!("{}/{}", m.release, m.id))
        .collect();
    if migrations.is_empty() {
        format!("{version}, no migrations applied")
    } else {
        format!("{version} with migrations {}", migrations.join(", "))
    }
}

/// Verifies the artifacts of every release the program deploys and returns them as local
/// files, by version (`executor::artifact`; downloads are kept in `.git/gantry/artifacts`).
fn verify_artifacts(
    env: &AttemptEnv,
    forward: &[PlannedStep],
) -> Result<BTreeMap<Version, Vec<crate::executor::artifact::LocalArtifact>>, String> {
    let cache = env
        .log_dir
        .parent()
        .map_or_else(|| env.log_dir.join("artifacts"), |gantry| gantry.join("artifacts"));
    let mut out = BTreeMap::new();
    for step in forward.iter().filter(|s| s.kind == StepKind::Deploy) {
        let Some(version) = &step.version else {
            continue;
        };
        if let Some(release) = env.desired.release(env.component, version) {
            let local = crate::executor::artifact::verify(
                &release.spec().artifacts,
                &env.checkout,
                &cache,
                &format!("{} {version}", env.component),
            )?;
            out.insert(version.clone(), local);
        }
    }
    Ok(out)
}

/// The target record after an attempt.
#[allow(clippy::too_many_arguments)]
pub fn finished_record(
    before: Option<&TargetRecord>,
    env: &AttemptEnv,
    header: &AttemptHeader,
    progress: &Progress,
    outcome: Outcome,
    message: &str,
    output_tail: &str,
    keep: u32,
) -> TargetRecord {
    let finished = (env.now)().to_string();
    let status = match outcome {
        Outcome::Succeeded => TargetStatus::Converged,
        Outcome::RolledBack => TargetStatus::RolledBack,
        Outcome::Failed => TargetStatus::Failed,
    };
    let mut rollback_points = before.map(|r| r.rollback_points.clone()).unwrap_or_default();
    if outcome == Outcome::Succeeded
        && let Some(previous) = before.and_then(|r| r.version.clone())
        && Some(&previous) != progress.version.as_ref()
    {
        rollback_points.retain(|v| v != &previous);
        rollback_points.insert(0, previous);
        rollback_points.truncate(keep as usize);
    }
    let succeeded = outcome == Outcome::Succeeded;
    TargetRecord {
        component: env.component.to_string(),
        version: progress.version.clone(),
        config_hash: if succeeded {
            Some(crate::manifest::validate::config_hash(&env.config))
        } else {
            before.and_then(|r| r.config_hash.clone())
        },
        config: if succeeded {
            Some(env.config.clone().into())
        } else {
            before.and_then(|r| r.config.clone())
        },
        applied_migrations: progress.applied.clone(),
        status,
        last_attempt: Some(AttemptRecord {
            id: header.attempt.clone(),
            desired_commit: header.desired_commit.clone(),
            from: header.from.clone(),
            to: header.to.clone(),
            action: header.action.clone(),
            started: header.started.to_string(),
            finished: Some(finished),
            outcome: Some(outcome),
            message: message.to_string(),
            config_hash: Some(crate::manifest::validate::config_hash(&env.config)),
            output_tail: output_tail.to_string(),
            spec_hash: header.spec_hash.clone(),
            approvers: header.approvers.clone(),
            emergency: header.emergency.clone(),
        }),
        rollback_points,
        observed_version: before.and_then(|r| r.observed_version.clone()),
    }
}
