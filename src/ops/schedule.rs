//! Schedule (`gantry schedule`): the projected start of every target and each rollout's
//! progress and expected completion, from [`crate::plan::schedule::schedule`] (issue #15).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::plan::schedule::Schedule;
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::read_recorded;

use super::{OpsError, resolve_commit};

/// The schedule of the desired branch's tip at `now`, with the commit it was made from.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleReport {
    pub desired_commit: String,
    #[serde(flatten)]
    pub schedule: Schedule,
}

/// Projects the schedule at `now`; with `selected`, only those targets (and the rollouts they
/// are in) are kept. The projection itself always covers the whole fleet (waves count every
/// target).
///
/// # Errors
/// Reading the repository or the state branch.
pub fn schedule(
    repo: &WatchedRepo,
    now: jiff::Timestamp,
    selected: Option<&BTreeSet<String>>,
) -> Result<ScheduleReport, OpsError> {
    let commit = resolve_commit(repo, None)?;
    let loaded = load_commit(repo, commit)?;
    let recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
    let evidence = crate::reconcile::load::evidence(repo, &loaded, &anchor)?;
    let mut schedule = crate::plan::schedule::schedule(&loaded.plan_input(&recorded, &evidence, now));
    if let Some(selected) = selected {
        schedule.retain_targets(selected);
    }
    Ok(ScheduleReport {
        desired_commit: commit.to_string(),
        schedule,
    })
}

/// The schedule as `gantry schedule` prints it.
impl fmt::Display for ScheduleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.schedule;
        writeln!(
            f,
            "desired {} · now {} · projected up to {} (attempts counted as instant and successful)",
            &self.desired_commit[..12.min(self.desired_commit.len())],
            s.now,
            s.horizon
        )?;
        let width = s.targets.iter().map(|t| t.target.len()).max().unwrap_or(6).max(6);
        writeln!(
            f,
            "{:width$}  {:10} {:10} {:18} {:10} PROJECTED START",
            "TARGET", "COMPONENT", "ACTION", "CHANGE", "WAVE"
        )?;
        for t in &s.targets {
            let change = match (&t.from, &t.to) {
                (Some(from), Some(to)) if from != to => format!("{from} → {to}"),
                (None, Some(to)) => format!("→ {to}"),
                (_, Some(to)) => to.to_string(),
                (_, None) => "-".to_string(),
            };
            let start = match (t.projected_start, t.action) {
                (Some(at), _) if at == s.now => format!("{at} (now)"),
                (Some(at), _) => at.to_string(),
                (None, crate::plan::ActionKind::Noop) => "-".to_string(),
                (None, _) if !t.violations.is_empty() => "never (violation)".to_string(),
                (None, _) => "not projected".to_string(),
            };
            writeln!(
                f,
                "{:width$}  {:10} {:10} {:18} {:10} {start}",
                t.target,
                t.component,
                t.action.as_str(),
                change,
                t.wave.as_deref().unwrap_or("-"),
            )?;
            if t.projected_start.is_none() {
                for b in &t.held_by {
                    writeln!(f, "{:width$}    held by {}: {}", "", b.kind, b.reason)?;
                }
                for v in &t.violations {
                    writeln!(f, "{:width$}    ✗ {v}", "")?;
                }
            }
        }
        for r in &s.rollouts {
            writeln!(
                f,
                "rollout {} {} (policy {}): {} of {} done, expected completion {}",
                r.component,
                r.version,
                r.policy.as_deref().unwrap_or("default"),
                r.done,
                r.total,
                r.expected_completion
                    .map_or_else(|| "not projected".to_string(), |t| t.to_string())
            )?;
            for w in &r.waves {
                let plural = if w.targets == 1 { "" } else { "s" };
                if w.done == w.targets {
                    writeln!(f, "  wave {} ({} target{plural}): complete", w.name, w.targets)?;
                    continue;
                }
                writeln!(
                    f,
                    "  wave {} ({} of {} target{plural} done): starts {}, completes {}",
                    w.name,
                    w.done,
                    w.targets,
                    w.projected_start
                        .map_or_else(|| "not projected".to_string(), |t| t.to_string()),
                    w.projected_completion
                        .map_or_else(|| "not projected".to_string(), |t| t.to_string())
                )?;
            }
        }
        Ok(())
    }
}
