//! Notifications (`[[notify]]` webhooks) of a reconcile pass, the same from `gantry apply` and
//! from each daemon pass: both feed a pass's progress events to [`PassNotices`] and end the pass
//! with [`after_pass`] (or [`invalid_commit`]), so the two cannot drift apart (issue #12: `apply`
//! sent none).
//!
//! - [`deliver`]: the [`Notifier`] that POSTs JSON bodies from a background thread, with retries.
//! - [`messages`]: the one-line texts.
//!
//! What a process remembers between passes (rollouts announced, targets already reported
//! blocked, whether the fleet was converged) is a [`Memory`]: the daemon keeps one for its life;
//! `apply` starts from an empty one, exactly like a daemon's first pass.

pub mod deliver;
pub mod messages;
pub mod scheduled;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

pub use self::deliver::{Event, Notifier};
use crate::reconcile::attempt::ProgressEvent;
use crate::state::RecordedState;

use super::status::StatusReport;

/// What notifications remember across the passes of one process.
#[derive(Debug, Default)]
pub struct Memory {
    /// Rollouts (component, version) already announced (`rollout_started`).
    pub announced: BTreeSet<(String, String)>,
    /// Targets reported `blocked` after the last pass (announced again only once unblocked).
    pub blocked: BTreeSet<String>,
    /// Whether the fleet was converged after the last pass (`None` before the first).
    pub converged: Option<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The object inside a `json!` literal.
pub fn details(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The notifications about single attempts of one pass (`rollout_started`, `rollback`,
/// `blocked` for a held action, `failed`), fed every progress event of the pass.
pub struct PassNotices<'a> {
    notifier: &'a Notifier,
    memory: &'a Mutex<Memory>,
    /// Rollouts recorded before this pass: starting one of those is not a new rollout.
    known_rollouts: BTreeSet<(String, String)>,
    /// attempt id → (component, action): later events carry only the attempt.
    running: Mutex<HashMap<String, (String, String)>>,
}

impl<'a> PassNotices<'a> {
    /// Notices for a pass starting from the recorded state `before`.
    pub fn new(notifier: &'a Notifier, memory: &'a Mutex<Memory>, before: &RecordedState) -> Self {
        PassNotices {
            notifier,
            memory,
            known_rollouts: before
                .rollouts
                .keys()
                .map(|(c, v)| (c.clone(), v.to_string()))
                .collect(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The component and action of a running attempt (empty when unknown).
    pub fn running(&self, attempt: &str) -> (String, String) {
        lock(&self.running).get(attempt).cloned().unwrap_or_default()
    }

    /// Sends what `event` calls for.
    pub fn event(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::AttemptStarted {
                target,
                component,
                attempt,
                action,
                to,
                ..
            } => {
                lock(&self.running).insert(attempt.clone(), (component.clone(), action.clone()));
                if matches!(action.as_str(), "install" | "upgrade") {
                    let to = to.as_deref().unwrap_or("(none)");
                    let key = (component.clone(), to.to_string());
                    let new = !self.known_rollouts.contains(&key) && lock(self.memory).announced.insert(key);
                    if new {
                        self.notifier.send(
                            Event::RolloutStarted,
                            &messages::rollout_started(component, to, action, target),
                            details(
                                json!({"component": component, "version": to, "target": target, "attempt": attempt}),
                            ),
                        );
                    }
                }
            }
            ProgressEvent::RollbackStarted {
                target,
                attempt,
                reason,
            } => {
                let (component, _) = self.running(attempt);
                self.notifier.send(
                    Event::Rollback,
                    &messages::rollback(&component, target, reason),
                    details(json!({"target": target, "component": component, "attempt": attempt, "reason": reason})),
                );
            }
            ProgressEvent::Held {
                target,
                component,
                action,
                reason,
            } => {
                self.notifier.send(
                    Event::Blocked,
                    &format!("⏸ {component} on {target}: {action} held: {reason}"),
                    details(json!({"target": target, "component": component, "action": action, "reason": reason})),
                );
            }
            ProgressEvent::AttemptFinished {
                target,
                attempt,
                outcome,
                message,
            } => {
                let (component, action) = lock(&self.running).remove(attempt).unwrap_or_default();
                if outcome != "succeeded" {
                    self.notifier.send(
                        Event::Failed,
                        &messages::failed(&component, target, &action, outcome, message),
                        details(json!({"target": target, "component": component, "attempt": attempt,
                            "action": action, "outcome": outcome, "message": message})),
                    );
                }
            }
            ProgressEvent::StepStarted { .. } | ProgressEvent::StepFinished { .. } => {}
        }
    }
}

/// `invalid_commit`: the desired commit does not validate; nothing of it ran.
pub fn invalid_commit(notifier: &Notifier, commit: &str, errors: &[String]) {
    let first = errors.first().cloned().unwrap_or_default();
    let short = super::short(commit);
    notifier.send(
        Event::InvalidCommit,
        &messages::invalid_commit(short, &first, errors.len().saturating_sub(1)),
        details(json!({"commit": commit, "errors": errors})),
    );
}

/// After a pass that ran: `wave_completed` for every wave it completed (from `before` to
/// `after`), `blocked` for targets newly blocked in `status`, and `converged` when every target
/// runs what the desired commit asks and this pass recorded something (or the fleet was not
/// converged after the previous pass).
pub fn after_pass(
    notifier: &Notifier,
    memory: &Mutex<Memory>,
    before: &RecordedState,
    after: &RecordedState,
    status: &StatusReport,
    recorded_something: bool,
) {
    for (key, rollout) in &after.rollouts {
        for wave in &rollout.waves {
            let was_done = before
                .rollouts
                .get(key)
                .and_then(|r| r.waves.iter().find(|w| w.name == wave.name))
                .is_some_and(|w| w.completed.is_some());
            if wave.completed.is_some() && !was_done {
                let (component, version) = (&rollout.component, rollout.version.to_string());
                tracing::info!(component = %component, version = %version, wave = %wave.name, "wave completed");
                notifier.send(
                    Event::WaveCompleted,
                    &messages::wave_completed(component, &version, &wave.name),
                    details(json!({"component": component, "version": version, "wave": wave.name,
                        "completed": wave.completed})),
                );
            }
        }
    }
    let blocked: BTreeSet<String> = status
        .targets
        .iter()
        .filter(|t| t.plan_status == "blocked")
        .map(|t| t.target.clone())
        .collect();
    let converged = !status.targets.is_empty()
        && status
            .targets
            .iter()
            .all(|t| t.next_action == "noop" && t.status == "converged");
    let (newly_blocked, announce_converged) = {
        let mut memory = lock(memory);
        let newly: Vec<String> = blocked.difference(&memory.blocked).cloned().collect();
        let announce = converged && (recorded_something || memory.converged == Some(false));
        memory.blocked = blocked;
        memory.converged = Some(converged);
        (newly, announce)
    };
    for name in newly_blocked {
        let Some(row) = status.targets.iter().find(|t| t.target == name) else {
            continue;
        };
        let reasons: Vec<String> = row.blockers.iter().map(messages::blocker).collect();
        tracing::info!(target = %row.target, component = %row.component, "blocked: {}", reasons.join("; "));
        notifier.send(
            Event::Blocked,
            &messages::blocked(
                &row.component,
                &row.target,
                &row.next_action,
                row.desired.as_deref(),
                &reasons,
            ),
            details(
                json!({"target": row.target, "component": row.component, "action": row.next_action,
                "desired": row.desired, "blockers": row.blockers, "opens_at": row.opens_at}),
            ),
        );
    }
    if announce_converged {
        tracing::info!(commit = %status.desired_commit, "converged");
        notifier.send(
            Event::Converged,
            &messages::converged(status.targets.len(), super::short(&status.desired_commit)),
            details(json!({"commit": status.desired_commit, "targets": status.targets.len()})),
        );
    }
}

/// Where `update_available` remembers what it announced, relative to the git dir.
pub const ANNOUNCED_UPDATES: &str = "gantry/announced-updates";

/// `update_available` for every pinned target with a newer release it could take, once per
/// (target, version) across passes and processes (`apply` and the daemon alike): announced pairs
/// are kept in `.git/gantry/announced-updates`, one `target version` per line, and only for
/// targets that still have an update, so the file stays as small as the fleet.
pub fn announce_updates(notifier: &Notifier, status: &StatusReport, git_dir: &std::path::Path) {
    let path = git_dir.join(ANNOUNCED_UPDATES);
    let before: BTreeSet<(String, String)> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, v)| (t.to_string(), v.to_string())))
        .collect();
    let mut now = BTreeSet::new();
    for row in &status.targets {
        let Some(newer) = &row.update_available else { continue };
        let key = (row.target.clone(), newer.clone());
        if !before.contains(&key) {
            tracing::info!(target = %row.target, component = %row.component, newer = %newer, "update available");
            notifier.send(
                Event::UpdateAvailable,
                &messages::update_available(
                    &row.component,
                    &row.target,
                    row.desired.as_deref().unwrap_or("?"),
                    newer,
                ),
                details(
                    json!({"target": row.target, "component": row.component, "pinned": row.desired,
                    "available": newer}),
                ),
            );
        }
        now.insert(key);
    }
    if now != before {
        let text: String = now.iter().map(|(t, v)| format!("{t} {v}\n")).collect();
        let tmp = path.with_extension("tmp");
        // Losing this file only repeats announcements; it never stops a pass.
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!("cannot remember announced updates in {}: {e}", path.display());
        }
    }
}
