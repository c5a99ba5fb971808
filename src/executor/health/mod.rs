//! Health checks after a deploy or reload (SPEC §5): `command`, `http` and `prometheus` checks,
//! plus the component's own `health` step, run in a soak loop.
//!
//! The loop runs every check each `interval` until `soak` has passed; a check that fails
//! `failureThreshold` times in a row makes the target unhealthy. Time comes from a [`Clock`] so
//! tests drive the loop with a [`FakeClock`] instead of sleeping.
//!
//! The checks arrive typed ([`crate::manifest::health`]); [`clock`] holds the clocks and
//! [`requests`] the `http` and `prometheus` requests.

use std::path::Path;
use std::time::Duration;

mod clock;
mod requests;

use crate::manifest::Argv;
pub use crate::manifest::health::{DEFAULT_HTTP_TIMEOUT, DEFAULT_INTERVAL};
use crate::manifest::health::{HealthSettings, Probe};
pub use clock::{Clock, FakeClock, SystemClock};
use requests::{http_check, prometheus_check};

use super::{Executor, ExecutorError, StepKind, StepRequest, TemplateContext, render_one, truncate_for_message};

/// What a probe concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthVerdict {
    /// Every check passed through the soak (and on the last round).
    Healthy { rounds: u32 },
    /// `check` failed `failureThreshold` times in a row; `message` says how it failed last.
    Unhealthy {
        check: String,
        message: String,
        rounds: u32,
    },
}

/// One check, with its settings resolved.
#[derive(Debug, Clone, PartialEq)]
struct Check {
    name: String,
    timeout: Duration,
    kind: CheckKind,
}

#[derive(Debug, Clone, PartialEq)]
enum CheckKind {
    /// The component's `health` step, run by the component's executor.
    Step(Argv),
    /// A policy check, typed by validation (a `command` runs on the local shell executor).
    Declared(Probe),
}

/// The outcome of running one check once.
#[derive(Debug, Clone, PartialEq)]
struct CheckOutcome {
    ok: bool,
    message: String,
}

impl CheckOutcome {
    fn pass(message: impl Into<String>) -> Self {
        CheckOutcome {
            ok: true,
            message: message.into(),
        }
    }
    fn fail(message: impl Into<String>) -> Self {
        CheckOutcome {
            ok: false,
            message: message.into(),
        }
    }
}

/// What a probe needs to run: the values templates see, where commands run, and who runs them.
pub struct ProbeRun<'a> {
    pub context: &'a TemplateContext,
    pub checkout: &'a Path,
    /// Output of `command` checks and the `health` step is appended here.
    pub log_path: &'a Path,
    /// Redaction and log bounds for the command checks' output.
    pub output: &'a super::OutputPolicy,
    /// Runs the component's `health` step (the component's executor, maybe a plugin).
    pub component: &'a mut dyn Executor,
    /// Runs the policy's `command` checks (the shell executor).
    pub local: &'a mut dyn Executor,
    pub clock: &'a dyn Clock,
    /// Extra environment for command checks and the health step (e.g. `GANTRY_REPO`).
    pub extra_env: &'a [(String, String)],
}

/// The health checks for one target after a deploy or reload, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthProbe {
    checks: Vec<Check>,
    interval: Duration,
    soak: Duration,
    failure_threshold: u32,
}

impl HealthProbe {
    /// Builds a probe from a policy's typed `health` settings and the component's `health` step
    /// (which runs first in every round, named `health step`). `step_timeout` bounds command
    /// checks and the step; http and prometheus checks default to 10s.
    pub fn new(health: &HealthSettings, component_step: Option<&Argv>, step_timeout: Duration) -> Self {
        let mut checks = Vec::new();
        if let Some(argv) = component_step {
            checks.push(Check {
                name: "health step".into(),
                timeout: step_timeout,
                kind: CheckKind::Step(argv.clone()),
            });
        }
        checks.extend(health.checks.iter().map(|c| Check {
            name: c.name.clone(),
            timeout: c.timeout_or(step_timeout),
            kind: CheckKind::Declared(c.probe.clone()),
        }));
        HealthProbe {
            checks,
            interval: health.interval,
            soak: health.soak,
            failure_threshold: health.failure_threshold.max(1),
        }
    }

    /// Whether there is nothing to check (no policy checks, no component `health` step).
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Consecutive failures of one check that make a target unhealthy.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Runs every check once: one analysis round (SPEC §8, continuous analysis), in order.
    ///
    /// # Errors
    /// As [`HealthProbe::run`]: a check that cannot even be attempted.
    pub fn round(&self, run: &mut ProbeRun<'_>) -> Result<Vec<crate::policy::analysis::CheckResult>, ExecutorError> {
        self.checks
            .iter()
            .map(|check| {
                let outcome = run_check(check, run)?;
                Ok(crate::policy::analysis::CheckResult {
                    check: check.name.clone(),
                    ok: outcome.ok,
                    message: outcome.message,
                })
            })
            .collect()
    }

    /// Runs the checks until the soak has passed (healthy) or one check failed
    /// `failureThreshold` times in a row (unhealthy). With no soak, one passing round suffices;
    /// a round with a failure below the threshold is retried after `interval`, so a probe never
    /// ends healthy on a round with a failing check.
    ///
    /// # Errors
    ///
    /// A check that cannot even be attempted: a url, query or argv that does not render, or an
    /// executor `Err` (see the [`Executor`] contract).
    pub fn run(&self, run: &mut ProbeRun<'_>) -> Result<HealthVerdict, ExecutorError> {
        if self.checks.is_empty() {
            return Ok(HealthVerdict::Healthy { rounds: 0 });
        }
        let started = run.clock.now();
        let mut consecutive = vec![0u32; self.checks.len()];
        let mut rounds = 0;
        loop {
            rounds += 1;
            let round_started = run.clock.now();
            let mut all_passed = true;
            for (check, failures) in self.checks.iter().zip(consecutive.iter_mut()) {
                let outcome = run_check(check, run)?;
                if outcome.ok {
                    *failures = 0;
                    continue;
                }
                all_passed = false;
                *failures += 1;
                // The rendered URL may carry a credential (`?token=…`): masked before it is
                // logged or recorded (issue #18).
                let message = crate::manifest::secrets::mask_url_credentials(&outcome.message);
                tracing::info!(check = %check.name, failures = *failures, threshold = self.failure_threshold, message = %message, "health check failed");
                if *failures >= self.failure_threshold {
                    return Ok(HealthVerdict::Unhealthy {
                        check: check.name.clone(),
                        message,
                        rounds,
                    });
                }
            }
            if all_passed && run.clock.now().saturating_duration_since(started) >= self.soak {
                return Ok(HealthVerdict::Healthy { rounds });
            }
            // Fixed rate from the start of the round, so slow checks do not stretch the soak.
            let wait = (round_started + self.interval).saturating_duration_since(run.clock.now());
            run.clock.sleep(wait);
        }
    }
}

fn run_check(check: &Check, run: &mut ProbeRun<'_>) -> Result<CheckOutcome, ExecutorError> {
    match &check.kind {
        CheckKind::Step(argv) => {
            let req = step_request(argv, check.timeout, run);
            Ok(step_outcome(run.component.run(&req)?))
        }
        CheckKind::Declared(Probe::Command(argv)) => {
            let req = step_request(argv, check.timeout, run);
            Ok(step_outcome(run.local.run(&req)?))
        }
        CheckKind::Declared(Probe::Http { url, expect, body }) => {
            let url = render_url(check, url, run.context)?;
            // The expected body is a template like the url (issue #16: a version page that must
            // show `{{ version }}`).
            let body = body
                .as_deref()
                .map(|b| render_one(StepKind::Health, "body", b, run.context))
                .transpose()?;
            Ok(http_check(&url, *expect, body.as_deref(), check.timeout))
        }
        CheckKind::Declared(Probe::Prometheus {
            url,
            query,
            bounds,
            on_no_data,
        }) => {
            let url = render_url(check, url, run.context)?;
            let query = render_one(StepKind::Health, "query", query, run.context)?;
            Ok(prometheus_check(&url, &query, *bounds, *on_no_data, check.timeout))
        }
    }
}

fn step_request(argv: &Argv, timeout: Duration, run: &ProbeRun<'_>) -> StepRequest {
    StepRequest {
        kind: StepKind::Health,
        argv: argv.clone(),
        context: run.context.clone(),
        checkout: run.checkout.to_path_buf(),
        timeout,
        log_path: run.log_path.to_path_buf(),
        output: run.output.clone(),
        extra_env: run.extra_env.to_vec(),
    }
}

fn step_outcome(r: super::StepResult) -> CheckOutcome {
    // The last output line usually says why a check script failed.
    match r
        .output_tail
        .lines()
        .next_back()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != r.message)
    {
        Some(last) if !r.ok => CheckOutcome::fail(format!("{}: {}", r.message, truncate_for_message(last, 200))),
        _ => CheckOutcome {
            ok: r.ok,
            message: r.message,
        },
    }
}

fn render_url(check: &Check, url: &str, context: &TemplateContext) -> Result<String, ExecutorError> {
    let url = render_one(StepKind::Health, "url", url, context)?;
    if !url.starts_with("http://") {
        return Err(ExecutorError::InvalidCheck {
            check: check.name.clone(),
            problem: format!("url {url:?} must start with http:// (health checks do not speak TLS)"),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests;
