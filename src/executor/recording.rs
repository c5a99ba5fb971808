//! A test double: records every step it is asked to run and answers from a script.
//!
//! Reconcile tests use it to check which steps run, in which order, with which rendered argv,
//! and how failures on given steps are handled, without starting any process.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Executor, ExecutorError, Exit, StepKind, StepRequest, StepResult, TemplateContext};

/// One step as the executor saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStep {
    pub kind: StepKind,
    /// The argv after rendering (the templates are in `request.argv`).
    pub argv: Vec<String>,
    pub context: TemplateContext,
    pub request: StepRequest,
}

/// What a scripted call answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Succeeds, reporting this observed version (for `observe` steps).
    Succeed { observed_version: Option<String> },
    /// Fails as if the process exited with status 1, with this message.
    Fail(String),
    /// Fails as if the step timed out.
    TimeOut,
}

/// Which calls a scripted reply applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// The n-th call overall, counting from 1.
    Call(usize),
    /// Every call of this kind.
    Kind(StepKind),
    /// The n-th call of this kind, counting from 1.
    NthOfKind(StepKind, usize),
}

/// A shared view of what a [`RecordingExecutor`] recorded, usable after the executor was moved
/// into (or boxed for) the code under test.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    steps: Arc<Mutex<Vec<RecordedStep>>>,
}

impl Recording {
    fn lock(&self) -> MutexGuard<'_, Vec<RecordedStep>> {
        // Only tests hold this lock and a panicking test has failed anyway; keep the records.
        self.steps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every step so far, in order.
    pub fn steps(&self) -> Vec<RecordedStep> {
        self.lock().clone()
    }

    /// The kinds of every step so far, in order.
    pub fn kinds(&self) -> Vec<StepKind> {
        self.lock().iter().map(|s| s.kind).collect()
    }

    /// `kind argv…` per step, one string each: compact to assert on.
    pub fn lines(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|s| format!("{} {}", s.kind, s.argv.join(" ")).trim_end().to_owned())
            .collect()
    }
}

/// Records requests and returns scripted results; everything not scripted succeeds.
///
/// Templates are rendered with the same strict rules as the real executors, so a template
/// mistake fails here too (as `Err`). The first matching rule wins, in the order added.
///
/// ```
/// use gantry::executor::{RecordingExecutor, StepKind};
/// let ex = RecordingExecutor::new().fail_kind(StepKind::Health, "503 from /health");
/// let recording = ex.recording();
/// # drop((ex, recording));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordingExecutor {
    rules: Vec<(When, Reply)>,
    recording: Recording,
    calls: usize,
    kind_calls: Vec<(StepKind, usize)>,
}

impl RecordingExecutor {
    /// An executor on which every step succeeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle to read what was recorded.
    pub fn recording(&self) -> Recording {
        self.recording.clone()
    }

    /// The `n`-th call overall (from 1) answers `reply`.
    pub fn on_call(mut self, n: usize, reply: Reply) -> Self {
        self.rules.push((When::Call(n), reply));
        self
    }

    /// Every call of `kind` answers `reply`.
    pub fn on_kind(mut self, kind: StepKind, reply: Reply) -> Self {
        self.rules.push((When::Kind(kind), reply));
        self
    }

    /// The `n`-th call (from 1) of `kind` answers `reply`.
    pub fn on_nth_of_kind(mut self, kind: StepKind, n: usize, reply: Reply) -> Self {
        self.rules.push((When::NthOfKind(kind, n), reply));
        self
    }

    /// Shorthand: every step of `kind` fails with `message`.
    pub fn fail_kind(self, kind: StepKind, message: impl Into<String>) -> Self {
        self.on_kind(kind, Reply::Fail(message.into()))
    }

    /// Shorthand: the `n`-th call fails with `message`.
    pub fn fail_call(self, n: usize, message: impl Into<String>) -> Self {
        self.on_call(n, Reply::Fail(message.into()))
    }

    fn reply_for(&mut self, kind: StepKind) -> Reply {
        self.calls += 1;
        let nth_of_kind = match self.kind_calls.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                self.kind_calls.push((kind, 1));
                1
            }
        };
        let calls = self.calls;
        self.rules
            .iter()
            .find(|(when, _)| match *when {
                When::Call(n) => n == calls,
                When::Kind(k) => k == kind,
                When::NthOfKind(k, n) => k == kind && n == nth_of_kind,
            })
            .map(|(_, reply)| reply.clone())
            .unwrap_or(Reply::Succeed { observed_version: None })
    }
}

impl Executor for RecordingExecutor {
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError> {
        let argv = step.render_argv()?;
        self.recording.lock().push(RecordedStep {
            kind: step.kind,
            argv,
            context: step.context.clone(),
            request: step.clone(),
        });
        let zero = Duration::ZERO;
        Ok(match self.reply_for(step.kind) {
            Reply::Succeed { observed_version } => StepResult {
                ok: true,
                exit: Exit::Code(0),
                message: "exited with status 0".into(),
                output_tail: String::new(),
                duration: zero,
                observed_version,
            },
            Reply::Fail(message) => StepResult {
                output_tail: message.clone(),
                ..StepResult::failed(Exit::Code(1), message, zero)
            },
            Reply::TimeOut => StepResult::failed(
                Exit::TimedOut(step.timeout),
                format!("timed out after {}", super::human_duration(step.timeout)),
                zero,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::executor::testutil::request;

    fn req(kind: StepKind) -> StepRequest {
        request(
            kind,
            &["scripts/{{ component }}.sh", "{{ target.name }}"],
            Path::new("/co"),
        )
    }

    #[test]
    fn records_rendered_argv_and_answers_from_the_script() {
        let mut ex = RecordingExecutor::new()
            .fail_call(2, "second call fails")
            .on_nth_of_kind(StepKind::Health, 2, Reply::TimeOut)
            .on_kind(
                StepKind::Observe,
                Reply::Succeed {
                    observed_version: Some("1.9.0".into()),
                },
            );
        let recording = ex.recording();

        let results: Vec<StepResult> = [
            StepKind::Deploy,
            StepKind::Deploy,
            StepKind::Health,
            StepKind::Health,
            StepKind::Observe,
        ]
        .into_iter()
        .map(|k| ex.run(&req(k)).unwrap())
        .collect();

        assert_eq!(
            results.iter().map(|r| r.ok).collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
        assert_eq!(results[1].message, "second call fails");
        assert_eq!(results[3].exit, Exit::TimedOut(Duration::from_secs(10)));
        assert_eq!(results[4].observed_version.as_deref(), Some("1.9.0"));
        assert_eq!(recording.lines()[0], "deploy scripts/billing.sh acme");
        assert_eq!(recording.kinds().len(), 5);
    }

    #[test]
    fn template_errors_surface_like_real_executors() {
        let mut ex = RecordingExecutor::new();
        let bad = request(StepKind::Deploy, &["x", "{{ nope }}"], Path::new("/co"));
        assert!(matches!(ex.run(&bad), Err(ExecutorError::Render { .. })));
        assert!(ex.recording().steps().is_empty());
    }
}
