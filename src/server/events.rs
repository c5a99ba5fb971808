//! The daemon's progress sink: every pass event becomes a log line (with `target`, `component`
//! and `attempt` fields), metrics, the notifications that are about single attempts, and a
//! message on `/api/events` (the event's JSON, as `gantry apply --format json` prints it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::ops::notify::PassNotices;
use crate::reconcile::attempt::{ProgressEvent, ProgressSink};

use super::Shared;

/// What the sink remembers of a running attempt (later events carry only its id).
#[derive(Debug, Clone)]
struct Running {
    component: String,
    action: String,
}

/// A [`ProgressSink`] for one daemon pass.
pub struct DaemonSink<'a> {
    shared: &'a Shared,
    attempts: Mutex<HashMap<String, Running>>,
    step_kinds: Mutex<HashMap<(String, String), String>>,
    /// When the desired commit this pass reconciles was seen; taken by the first step.
    seen: Mutex<Option<Instant>>,
    /// The pass's notifications, as `gantry apply` sends them.
    notices: PassNotices<'a>,
}

impl<'a> DaemonSink<'a> {
    pub fn new(shared: &'a Shared, seen: Option<Instant>, before: &crate::state::RecordedState) -> Self {
        DaemonSink {
            shared,
            attempts: Mutex::new(HashMap::new()),
            step_kinds: Mutex::new(HashMap::new()),
            seen: Mutex::new(seen),
            notices: PassNotices::new(&shared.notifier, &shared.notices, before),
        }
    }

    fn running(&self, attempt: &str) -> Option<Running> {
        lock(&self.attempts).get(attempt).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ProgressSink for DaemonSink<'_> {
    fn event(&self, event: &ProgressEvent) {
        self.log_and_measure(event);
        self.notices.event(event);
        match serde_json::to_value(event) {
            Ok(data) => self.shared.events.publish(super::stream::kind_of(&data), &data),
            Err(e) => tracing::warn!("cannot encode a progress event for /api/events: {e}"),
        }
    }
}

impl DaemonSink<'_> {
    /// The log line and metrics of `event`.
    fn log_and_measure(&self, event: &ProgressEvent) {
        match event {
            ProgressEvent::AttemptStarted {
                target,
                component,
                attempt,
                action,
                from,
                to,
                steps,
            } => {
                let from = from.as_deref().unwrap_or("(none)");
                let to = to.as_deref().unwrap_or("(none)");
                tracing::info!(target = %target, component = %component, attempt = %attempt, action = %action,
                    from, to, steps, "attempt started: {action} {component} {from} → {to}");
                lock(&self.attempts).insert(
                    attempt.clone(),
                    Running {
                        component: component.clone(),
                        action: action.clone(),
                    },
                );
            }
            ProgressEvent::StepStarted {
                target,
                attempt,
                step,
                kind,
                index,
                steps,
            } => {
                if let Some(seen) = lock(&self.seen).take() {
                    lock(&self.shared.metrics)
                        .commit_to_first_step
                        .observe(seen.elapsed().as_secs_f64());
                }
                let component = self.running(attempt).map(|r| r.component).unwrap_or_default();
                tracing::info!(target = %target, component = %component, attempt = %attempt, step = %step,
                    kind = %kind, "step {index}/{steps} started: {step}");
                lock(&self.step_kinds).insert((attempt.clone(), step.clone()), kind.clone());
            }
            ProgressEvent::StepFinished {
                target,
                attempt,
                step,
                ok,
                message,
                duration_ms,
            } => {
                let component = self.running(attempt).map(|r| r.component).unwrap_or_default();
                let kind = lock(&self.step_kinds)
                    .remove(&(attempt.clone(), step.clone()))
                    .unwrap_or_else(|| step.clone());
                // Lossless for any real duration (2^53 ms is 285 000 years).
                #[allow(clippy::cast_precision_loss)]
                let seconds = *duration_ms as f64 / 1000.0;
                lock(&self.shared.metrics).observe_step(&kind, seconds);
                if *ok {
                    tracing::info!(target = %target, component = %component, attempt = %attempt, step = %step,
                        kind = %kind, duration_ms = *duration_ms as u64, "step finished: {step}");
                } else {
                    tracing::warn!(target = %target, component = %component, attempt = %attempt, step = %step,
                        kind = %kind, duration_ms = *duration_ms as u64, "step failed: {step}: {message}");
                }
            }
            ProgressEvent::RollbackStarted {
                target,
                attempt,
                reason,
            } => {
                let component = self.running(attempt).map(|r| r.component).unwrap_or_default();
                tracing::warn!(target = %target, component = %component, attempt = %attempt, "rolling back: {reason}");
                lock(&self.shared.metrics).rollbacks += 1;
            }
            ProgressEvent::Held {
                target,
                component,
                action,
                reason,
            } => {
                tracing::warn!(target = %target, component = %component, action = %action, "held: {reason}");
            }
            ProgressEvent::AttemptFinished {
                target,
                attempt,
                outcome,
                message,
            } => {
                let running = lock(&self.attempts).remove(attempt);
                let (component, action) = running.map_or_else(Default::default, |r| (r.component, r.action));
                *lock(&self.shared.metrics)
                    .actions
                    .entry((action.clone(), outcome.clone()))
                    .or_default() += 1;
                if outcome == "succeeded" {
                    tracing::info!(target = %target, component = %component, attempt = %attempt, outcome = %outcome,
                        "attempt finished: {action} succeeded");
                } else {
                    tracing::error!(target = %target, component = %component, attempt = %attempt, outcome = %outcome,
                        "attempt finished: {action} {outcome}: {message}");
                }
            }
        }
    }
}
