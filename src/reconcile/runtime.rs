//! What a reconcile pass runs steps with and reads time from, injected so reconcile logic can be
//! tested in-process (a recording or simulating executor, a fake clock) and run for real alike.
//!
//! Production passes use [`Runtime::default`]: the executors `gantry.toml` declares (the built-in
//! shell, plugins) and the system clock. A test hands in an [`ExecutorSource`] that serves every
//! step, and a wall clock it controls.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use crate::executor::{Clock, Executor, ExecutorError, StepRequest, StepResult, SystemClock};

/// Hands out the executor for each step.
///
/// # Contract
/// Called once per step (and once per health round's executor), possibly from several attempt
/// threads at once. The returned executor obeys the [`Executor`] contract.
pub trait ExecutorSource: Send + Sync {
    /// The executor for a step of a component whose `spec.executor` is `name` (`None`: the
    /// built-in shell executor, which also runs the policy's `command` health checks).
    fn executor(&self, name: Option<&str>) -> Box<dyn Executor>;
}

/// One executor shared by every step (behind a lock), e.g. a
/// [`RecordingExecutor`](crate::executor::RecordingExecutor): steps of parallel attempts take
/// turns.
pub struct Shared<E: Executor + 'static>(pub Arc<Mutex<E>>);

impl<E: Executor + 'static> Shared<E> {
    pub fn new(executor: E) -> Shared<E> {
        Shared(Arc::new(Mutex::new(executor)))
    }
}

impl<E: Executor + 'static> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<E: Executor + 'static> Executor for Shared<E> {
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError> {
        // A step that panicked poisoned the lock; the executor's own state is still the record.
        let mut guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.run(step)
    }
}

impl<E: Executor + 'static> ExecutorSource for Shared<E> {
    fn executor(&self, _name: Option<&str>) -> Box<dyn Executor> {
        Box::new(self.clone())
    }
}

/// The wall clock of a pass (windows, soak, attempt times).
pub type WallClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The seams of a pass. `Default` is production: declared executors, system clocks.
#[derive(Clone, Default)]
pub struct Runtime {
    /// Serves every step instead of the declared shell and plugin executors.
    pub executors: Option<Arc<dyn ExecutorSource>>,
    /// The wall clock when `--now` does not fix it (`None`: the system clock).
    pub now: Option<WallClock>,
    /// The health soak loop's clock when `--now` does not fix time (`None`: the system clock).
    /// Under a fixed `--now` every attempt's soak runs on its own fake clock (no real waiting).
    pub soak_clock: Option<Arc<dyn Clock>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("executors", &self.executors.as_ref().map(|_| "injected"))
            .field("now", &self.now.as_ref().map(|_| "injected"))
            .field("soak_clock", &self.soak_clock.as_ref().map(|_| "injected"))
            .finish()
    }
}

impl Runtime {
    /// A runtime whose every step runs on `executors`.
    pub fn with_executors(executors: impl ExecutorSource + 'static) -> Runtime {
        Runtime {
            executors: Some(Arc::new(executors)),
            ..Runtime::default()
        }
    }

    /// The current time: `fixed` (`--now`) first, then the injected clock, then the system's.
    pub fn now(&self, fixed: Option<Timestamp>) -> Timestamp {
        match (fixed, &self.now) {
            (Some(t), _) => t,
            (None, Some(clock)) => clock(),
            (None, None) => Timestamp::now(),
        }
    }

    /// The soak clock of one attempt: a fresh fake clock under a fixed `--now` (bug 9 of issue
    /// #10: the soak ran on real time although `--now` fixes the clock for soak), else the
    /// injected or system clock.
    pub fn soak_clock(&self, fixed: Option<Timestamp>) -> Arc<dyn Clock> {
        if fixed.is_some() {
            return Arc::new(crate::executor::FakeClock::new());
        }
        self.soak_clock.clone().unwrap_or_else(|| Arc::new(SystemClock))
    }
}
