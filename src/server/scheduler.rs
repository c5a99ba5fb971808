//! The daemon's scheduler: when the next reconcile pass runs.
//!
//! A small state machine. Inputs: trigger events (start, `POST /api/refresh`), the desired
//! branch's tip as observed before each pass (a file event or a fetch shows up as a new tip), pass
//! results, and the clock. Output: whether a pass is due now, and else when to wake next. The
//! async [`drive`] loop around it is generic over the [`Reconcile`] it drives, so the tests run
//! the real loop with tokio's paused clock, as kube-runtime tests its scheduler.
//!
//! # Guarantees
//! - **Nothing is missed for long**: besides file events, a full pass runs every `rescan`
//!   (`poll_interval`, like Flux's `interval`), so a commit whose file event was lost (a watcher
//!   short of file descriptors, an inotify queue overflow) is reconciled by the next rescan.
//! - **A trigger arriving while a pass runs is never lost**: the tip is compared again after every
//!   pass, `Notify` keeps a wake-up that arrives while nobody waits, and a refresh request stays
//!   pending until a pass starts.
//! - **Every failed pass is retried**: a transient error (I/O, a full disk, git) backs off
//!   exponentially from [`Backoff::BASE`] to [`Backoff::MAX`] and runs again; a terminal one (an
//!   invalid or untrusted commit, unknown targets) runs again only once the desired commit
//!   changes, or on an explicit refresh (see [`crate::ops::error_policy`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use git2::Oid;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The daemon started.
    Start,
    /// The desired branch's tip is not the one the last pass ran against.
    NewCommit,
    /// `POST /api/refresh`.
    Refresh,
    /// The plan's next instant arrived (a window opens, a soak ends).
    Timer,
    /// The backoff after a failed pass ran out.
    Retry,
    /// The periodic full reconcile.
    Rescan,
}

/// How a pass ended, as the scheduler needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassResult {
    /// The pass ran (whatever its targets' outcomes); wake at `next_wake` if the plan has one.
    Done {
        commit: Option<Oid>,
        next_wake: Option<Instant>,
    },
    /// The input is wrong: wait until the desired commit is no longer `input`.
    Terminal { input: Option<Oid>, error: Option<String> },
    /// Something else failed: back off and retry.
    Transient { error: String },
}

/// Exponential backoff after consecutive failed passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive failed passes.
    pub failures: u32,
}

impl Backoff {
    /// The first retry's delay.
    pub const BASE: Duration = Duration::from_secs(1);
    /// The longest delay between retries.
    pub const MAX: Duration = Duration::from_secs(300);

    /// Counts a failure and returns the delay before the retry: 1 s, 2 s, 4 s, … up to 5 min.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        Self::BASE.saturating_mul(1 << doublings).min(Self::MAX)
    }
}

/// The scheduler's state.
#[derive(Debug)]
pub struct Scheduler {
    rescan: Duration,
    /// Start or refresh asked for a pass that has not started yet.
    pending: Option<Trigger>,
    /// The tip the last pass ran against (`None` before the first).
    attempted: Option<Option<Oid>>,
    /// After a terminal error: the input it failed on; no pass until the tip differs.
    waiting_for_change: Option<Option<Oid>>,
    plan_wake: Option<Instant>,
    retry_at: Option<Instant>,
    next_rescan: Instant,
    backoff: Backoff,
    last_error: Option<String>,
}

impl Scheduler {
    /// A scheduler whose first pass is due at once, rescanning every `rescan`.
    pub fn new(now: Instant, rescan: Duration) -> Scheduler {
        Scheduler {
            rescan,
            pending: Some(Trigger::Start),
            attempted: None,
            waiting_for_change: None,
            plan_wake: None,
            retry_at: None,
            next_rescan: now + rescan,
            backoff: Backoff::default(),
            last_error: None,
        }
    }

    /// An operator asked for a pass (`POST /api/refresh`): it runs even while waiting for a
    /// terminal error's input to change.
    pub fn refresh(&mut self) {
        self.pending = Some(Trigger::Refresh);
    }

    /// Whether a pass is due at `now` with the desired branch at `tip`, and why. A pass that
    /// is due must be run and reported with [`Scheduler::finished`].
    pub fn due(&mut self, now: Instant, tip: Option<Oid>) -> Option<Trigger> {
        let new_commit = self.attempted.is_some_and(|a| a != tip);
        if let Some(input) = self.waiting_for_change {
            if input != tip {
                self.waiting_for_change = None;
                return Some(Trigger::NewCommit);
            }
            if self.pending == Some(Trigger::Refresh) {
                return self.pending.take();
            }
            // Rescans would fail the same way; keep the rescan clock moving without a pass.
            if self.next_rescan <= now {
                self.next_rescan = now + self.rescan;
            }
            return None;
        }
        if let Some(trigger) = self.pending.take() {
            return Some(trigger);
        }
        if new_commit {
            return Some(Trigger::NewCommit);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            return Some(Trigger::Retry);
        }
        if self.plan_wake.is_some_and(|t| t <= now) {
            return Some(Trigger::Timer);
        }
        if self.next_rescan <= now {
            return Some(Trigger::Rescan);
        }
        None
    }

    /// Records how a pass that started with the branch at `tip` ended.
    pub fn finished(&mut self, now: Instant, tip: Option<Oid>, result: PassResult) {
        self.next_rescan = now + self.rescan;
        self.plan_wake = None;
        self.retry_at = None;
        match result {
            PassResult::Done { commit, next_wake } => {
                self.attempted = Some(commit.or(tip));
                self.plan_wake = next_wake;
                self.backoff = Backoff::default();
                self.last_error = None;
            }
            PassResult::Terminal { input, error } => {
                self.attempted = Some(input);
                self.waiting_for_change = Some(input);
                self.backoff = Backoff::default();
                self.last_error = error;
            }
            PassResult::Transient { error } => {
                self.attempted = Some(tip);
                self.retry_at = Some(now + self.backoff.fail());
                self.last_error = Some(error);
            }
        }
    }

    /// When to wake next on the scheduler's own account: a retry, the plan's next instant, or
    /// the rescan (`None` only while a pass is already due).
    pub fn next_wake(&self) -> Option<Instant> {
        if self.waiting_for_change.is_some() {
            return Some(self.next_rescan);
        }
        [self.retry_at, self.plan_wake, Some(self.next_rescan)]
            .into_iter()
            .flatten()
            .min()
    }

    /// When the failed pass is retried, if the last pass failed transiently.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The last pass's error (terminal or transient), cleared by a pass that runs.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Consecutive failed passes.
    pub fn failures(&self) -> u32 {
        self.backoff.failures
    }
}

/// What the scheduler drives: the daemon's passes, or a test double.
pub trait Reconcile {
    /// Looks at the world before deciding: fetches from the remote when due, reads the desired
    /// branch's tip. `refresh` is whether an operator asked for a pass since the last look.
    fn observe(&mut self) -> impl Future<Output = Observed> + Send;
    /// Runs one pass.
    fn reconcile(&mut self, trigger: Trigger) -> impl Future<Output = PassResult> + Send;
    /// Publishes the scheduler's view (`/api/daemon`) after a pass.
    fn publish(&mut self, scheduler: &Scheduler);
    /// When the next remote poll is due, if there is a remote.
    fn next_poll(&self) -> Option<Instant>;
}

/// What [`Reconcile::observe`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub tip: Option<Oid>,
    pub refresh: bool,
}

/// Runs passes as the scheduler decides until `stop` is set; `wake` interrupts a wait (file
/// events, refresh, stop).
pub async fn drive<R: Reconcile>(scheduler: &mut Scheduler, reconciler: &mut R, wake: &Notify, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let observed = reconciler.observe().await;
        if observed.refresh {
            scheduler.refresh();
        }
        if let Some(trigger) = scheduler.due(Instant::now(), observed.tip) {
            tracing::debug!(?trigger, "reconcile pass");
            let result = reconciler.reconcile(trigger).await;
            scheduler.finished(Instant::now(), observed.tip, result);
            reconciler.publish(scheduler);
            // Look again at once: a commit may have landed during the pass.
            continue;
        }
        let wake_at = [scheduler.next_wake(), reconciler.next_poll()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            () = wake.notified() => {}
            () = sleep_until(wake_at) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    const RESCAN: Duration = Duration::from_secs(30);

    fn oid(n: u8) -> Option<Oid> {
        Some(Oid::from_bytes(&[n; 20]).expect("20 bytes make an oid"))
    }

    /// The world a test changes from outside: the tip, and results for the next passes.
    #[derive(Default)]
    struct World {
        tip: Option<Oid>,
        refresh: bool,
        /// Results of the coming passes; `Done` once it runs out.
        script: VecDeque<PassResult>,
        /// (seconds since the start, trigger, tip at the start) of every pass.
        passes: Vec<(u64, Trigger, Option<Oid>)>,
    }

    struct Fake {
        world: Arc<Mutex<World>>,
        start: Instant,
        /// How long a pass takes.
        pass_time: Duration,
    }

    impl Reconcile for Fake {
        async fn observe(&mut self) -> Observed {
            let mut w = self.world.lock().unwrap();
            Observed {
                tip: w.tip,
                refresh: std::mem::take(&mut w.refresh),
            }
        }
        async fn reconcile(&mut self, trigger: Trigger) -> PassResult {
            // A pass applies the tip it reads when it starts.
            let applied = {
                let mut w = self.world.lock().unwrap();
                let at = (Instant::now() - self.start).as_secs();
                let tip = w.tip;
                w.passes.push((at, trigger, tip));
                tip
            };
            tokio::time::sleep(self.pass_time).await;
            let mut w = self.world.lock().unwrap();
            w.script.pop_front().unwrap_or(PassResult::Done {
                commit: applied,
                next_wake: None,
            })
        }
        fn publish(&mut self, _: &Scheduler) {}
        fn next_poll(&self) -> Option<Instant> {
            None
        }
    }

    struct Harness {
        world: Arc<Mutex<World>>,
        wake: Arc<Notify>,
        stop: Arc<AtomicBool>,
        task: tokio::task::JoinHandle<Scheduler>,
    }

    fn start(pass_time: Duration, script: Vec<PassResult>) -> Harness {
        let world = Arc::new(Mutex::new(World {
            tip: oid(1),
            script: script.into(),
            ..World::default()
        }));
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let (w, n, s) = (Arc::clone(&world), Arc::clone(&wake), Arc::clone(&stop));
        let task = tokio::spawn(async move {
            let now = Instant::now();
            let mut scheduler = Scheduler::new(now, RESCAN);
            let mut fake = Fake {
                world: w,
                start: now,
                pass_time,
            };
            drive(&mut scheduler, &mut fake, &n, &s).await;
            scheduler
        });
        Harness {
            world,
            wake,
            stop,
            task,
        }
    }

    impl Harness {
        fn passes(&self) -> Vec<(u64, Trigger, Option<Oid>)> {
            self.world.lock().unwrap().passes.clone()
        }
        async fn finish(self) -> Scheduler {
            self.stop.store(true, Ordering::SeqCst);
            self.wake.notify_one();
            self.task.await.expect("the loop does not panic")
        }
    }

    fn transient(what: &str) -> PassResult {
        PassResult::Transient { error: what.into() }
    }

    /// Regression (issue #12): after a journal write failed on a full disk the daemon never
    /// retried. Every transient failure is retried, 1 s, 2 s, 4 s apart, and the error clears
    /// once a pass succeeds.
    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_retried_with_exponential_backoff_until_it_succeeds() {
        let h = start(
            Duration::ZERO,
            vec![
                transient("No space left on device (os error 28)"),
                transient("disk full"),
                transient("disk full"),
            ],
        );
        tokio::time::sleep(Duration::from_secs(20)).await;
        let passes: Vec<(u64, Trigger)> = h.passes().iter().map(|(at, t, _)| (*at, *t)).collect();
        assert_eq!(
            passes,
            [
                (0, Trigger::Start),
                (1, Trigger::Retry),
                (3, Trigger::Retry),
                (7, Trigger::Retry)
            ]
        );
        let scheduler = h.finish().await;
        assert_eq!(scheduler.last_error(), None);
        assert_eq!(scheduler.failures(), 0);
        assert_eq!(scheduler.next_retry(), None);
    }

    /// While a pass keeps failing, the scheduler says when it retries and what failed.
    #[test]
    fn a_failing_pass_reports_its_error_and_next_retry() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, RESCAN);
        assert_eq!(s.due(t0, oid(1)), Some(Trigger::Start));
        s.finished(t0, oid(1), transient("cannot write .git/gantry/journal"));
        assert_eq!(s.last_error(), Some("cannot write .git/gantry/journal"));
        assert_eq!(s.next_retry(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.next_wake(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(s.due(t0 + Duration::from_millis(999), oid(1)), None);
        assert_eq!(s.due(t0 + Duration::from_secs(1), oid(1)), Some(Trigger::Retry));
        // The delays double up to five minutes and stay there.
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..12).map(|_| b.fail().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    /// Regression (issue #12): a commit made while the file watcher was failing (no event ever
    /// arrives) is reconciled by the periodic full reconcile, within one `poll_interval`.
    #[tokio::test(start_paused = true)]
    async fn a_commit_without_a_file_event_is_reconciled_by_the_periodic_rescan() {
        let h = start(Duration::ZERO, Vec::new());
        tokio::time::sleep(Duration::from_secs(5)).await;
        // No wake-up: the watcher lost the event.
        h.world.lock().unwrap().tip = oid(2);
        tokio::time::sleep(Duration::from_secs(26)).await;
        let passes = h.passes();
        assert_eq!(passes.len(), 2, "{passes:?}");
        assert_eq!(passes[1], (30, Trigger::NewCommit, oid(2)));
        // And without any change, a full pass still runs every interval.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let rescans: Vec<u64> = h.passes()[2..].iter().map(|(at, _, _)| *at).collect();
        assert_eq!(rescans, [60, 90]);
        assert!(h.passes()[2..].iter().all(|(_, t, _)| *t == Trigger::Rescan));
        h.finish().await;
    }

    /// A commit and a refresh that arrive while a pass runs each get a pass right after it.
    #[tokio::test(start_paused = true)]
    async fn triggers_arriving_during_a_pass_are_not_lost() {
        let h = start(Duration::from_secs(10), Vec::new());
        tokio::time::sleep(Duration::from_secs(5)).await;
        h.world.lock().unwrap().tip = oid(2);
        h.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The first pass (0-10 s) saw tip 1; the commit at 5 s runs at 10 s.
        assert_eq!(h.passes()[1], (10, Trigger::NewCommit, oid(2)));
        h.world.lock().unwrap().refresh = true;
        h.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(h.passes()[2], (20, Trigger::Refresh, oid(2)));
        h.finish().await;
    }

    /// An invalid or untrusted commit is not retried until the desired commit changes (or an
    /// operator asks), unlike a transient failure.
    #[tokio::test(start_paused = true)]
    async fn a_terminal_error_waits_for_a_new_commit() {
        let h = start(
            Duration::ZERO,
            vec![PassResult::Terminal {
                input: oid(1),
                error: Some("commit is not signed by an allowed signer".into()),
            }],
        );
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(h.passes().len(), 1, "no retry and no rescan of the same input");
        h.world.lock().unwrap().tip = oid(2);
        h.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(h.passes()[1], (100, Trigger::NewCommit, oid(2)));
        let scheduler = h.finish().await;
        assert_eq!(scheduler.last_error(), None);
    }

    /// The plan's own instants (a window opening) wake the loop before the rescan.
    #[test]
    fn the_plan_next_instant_is_a_timer() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0, RESCAN);
        assert_eq!(s.due(t0, oid(1)), Some(Trigger::Start));
        s.finished(
            t0,
            oid(1),
            PassResult::Done {
                commit: oid(1),
                next_wake: Some(t0 + Duration::from_secs(7)),
            },
        );
        assert_eq!(s.next_wake(), Some(t0 + Duration::from_secs(7)));
        assert_eq!(s.due(t0 + Duration::from_secs(6), oid(1)), None);
        assert_eq!(s.due(t0 + Duration::from_secs(7), oid(1)), Some(Trigger::Timer));
    }
}
