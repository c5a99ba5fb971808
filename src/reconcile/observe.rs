//! Drift: run the `observe` step of converged targets and compare what it reports with the
//! recorded version (SPEC §4, "Drift").
//!
//! A target whose `observe` step prints another version than the recorded one (or fails to say)
//! is recorded `drifted`, with what was seen in `observed_version`; one that reports the recorded
//! version again goes back to `converged`. What happens next is the policy's `onDrift`: `report`
//! (nothing more) or `reconcile` (the planner redeploys the recorded version). The daemon runs
//! this stage on every pass; `gantry status --observe` runs it on demand.

use std::time::Duration;

use git2::Oid;
use jiff::Timestamp;

use crate::executor::{StepKind, StepRequest, TargetContext, TemplateContext};
use crate::source::WatchedRepo;
use crate::state::{Batch, RecordedState, StateWriter, TargetStatus, read_recorded};

use super::apply::ApplyError;
use super::attempt::{DEFAULT_STEP_TIMEOUT, ExecutorPool};
use super::load::load_commit;
use super::runtime::Runtime;

/// What the observe step of one target said.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub target: String,
    /// The recorded version it was compared with.
    pub recorded: Option<crate::manifest::Version>,
    /// What the step printed (its last line), when it succeeded.
    pub seen: Option<String>,
    /// Why nothing was seen: the step failed or printed nothing.
    pub error: Option<String>,
    pub drifted: bool,
}

/// Runs `observe` for every target recorded `converged` (or `drifted`) whose component has an
/// `observe` step, and records what changed on the state branch (one commit), unless `dry_run`.
///
/// The caller holds the reconciler lock when recording (the daemon does; `status --observe`
/// takes it).
///
/// # Errors
/// Reading the repository or the state branch, or writing the state commit.
pub fn observe(
    repo: &WatchedRepo,
    head: Oid,
    now: Timestamp,
    runtime: &Runtime,
    dry_run: bool,
) -> Result<Vec<Observation>, ApplyError> {
    let loaded = load_commit(repo, head)?;
    let state_branch = loaded.desired.config.state_branch.clone();
    let mut recorded: RecordedState = read_recorded(&repo.repo, &state_branch)?;
    let checkout = repo.checkout(head)?;
    let pool = ExecutorPool::for_runtime(runtime, &loaded.desired, &checkout);
    let log_dir = repo.gantry_dir().join("logs");
    // Once, not per target: it reads every target (issue #17).
    let redactor = crate::manifest::secrets::Redactor::from_desired(&loaded.desired);
    let mut batch = Batch::new();
    let mut observations = Vec::new();
    for (name, target) in &loaded.desired.targets {
        let Some(record) = recorded.targets.get(name) else {
            continue;
        };
        if !matches!(record.status, TargetStatus::Converged | TargetStatus::Drifted) {
            continue;
        }
        let component = target.spec().component.as_str();
        let Some(spec) = loaded.desired.components.get(component).map(|c| &c.spec) else {
            continue;
        };
        let Some(argv) = spec.steps.observe.clone() else {
            continue;
        };
        let version = record.version.as_ref().map(ToString::to_string).unwrap_or_default();
        let request = StepRequest {
            kind: StepKind::Observe,
            argv,
            context: TemplateContext {
                target: TargetContext {
                    name: name.clone(),
                    labels: target.labels().clone(),
                    vars: target.spec().vars.clone(),
                    config: record.config.as_ref().map(|c| c.values().clone()).unwrap_or_default(),
                },
                component: component.to_string(),
                version: version.clone(),
                from: Some(version.clone()),
                to: version.clone(),
                // The running version's Release manifest, as on every other step (SPEC §5).
                release: record
                    .version
                    .as_ref()
                    .and_then(|v| loaded.desired.release(component, v))
                    .map(|r| r.manifest.name.clone()),
                migration: None,
                attempt: format!("observe-{}", now.strftime("%Y%m%dT%H%M%SZ")),
                commit: head.to_string(),
                weight: None,
                artifact: None,
                artifacts: Vec::new(),
            },
            checkout: checkout.clone(),
            timeout: DEFAULT_STEP_TIMEOUT.min(Duration::from_secs(60)),
            log_path: log_dir.join(format!("observe-{name}.log")),
            output: crate::executor::OutputPolicy {
                redactor: redactor.clone(),
                max_log_bytes: loaded.desired.config.logs.max_step_bytes,
            },
            extra_env: vec![("GANTRY_REPO".to_string(), repo.root().to_string_lossy().into_owned())],
        };
        let result = pool.with(spec.executor.as_deref(), |executor| executor.run(&request));
        let (seen, error) = match result {
            Ok(r) if r.ok => match r
                .observed_version
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
            {
                Some(v) => (Some(v), None),
                None => (None, Some("observe printed no version".to_string())),
            },
            Ok(r) => (None, Some(format!("observe failed: {}", r.message))),
            Err(e) => (None, Some(format!("observe could not run: {e}"))),
        };
        // A step that could not say is not evidence of drift: keep the record as it is.
        let Some(seen_version) = &seen else {
            tracing::warn!(target = %name, "{}", error.as_deref().unwrap_or("observe said nothing"));
            observations.push(Observation {
                target: name.clone(),
                recorded: record.version.clone(),
                seen,
                error,
                drifted: record.status == TargetStatus::Drifted,
            });
            continue;
        };
        let drifted = *seen_version != version;
        let status = if drifted {
            TargetStatus::Drifted
        } else {
            TargetStatus::Converged
        };
        if status != record.status || record.observed_version.as_deref() != Some(seen_version.as_str()) {
            let mut updated = record.clone();
            updated.status = status;
            updated.observed_version = Some(seen_version.clone());
            batch.upsert_target(name.clone(), updated);
        }
        if drifted {
            tracing::warn!(target = %name, recorded = %version, seen = %seen_version, "drift: observe reports another version");
        }
        observations.push(Observation {
            target: name.clone(),
            recorded: record.version.clone(),
            seen,
            error,
            drifted,
        });
    }
    if !dry_run && !batch.is_empty() {
        let drifted: Vec<&str> = observations
            .iter()
            .filter(|o| o.drifted)
            .map(|o| o.target.as_str())
            .collect();
        batch.progress_summary(if drifted.is_empty() {
            "observe: every observed target runs its recorded version".to_string()
        } else {
            format!("observe: drift on {}", drifted.join(", "))
        });
        let mut writer = StateWriter::on_top_of(&repo.repo, &state_branch, &recorded)?;
        if let Some(commit) = writer.commit(&batch, now)? {
            recorded.commit = Some(commit.to_string());
        }
    }
    Ok(observations)
}
