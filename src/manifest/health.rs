//! A policy's health checks, typed once by validation: what each check probes, how long it may
//! take, and how the soak loop runs them. The executor runs exactly these values; nothing
//! downstream reads a check's fields again (issue #9: the fields used to be checked in
//! validation and once more, with other messages, when the checks ran).

use std::time::Duration;

use super::types::{Argv, OnNoData};

/// How often checks run when the policy does not say.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Timeout of one http or prometheus request when the check does not say.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A policy's `health` section, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    pub checks: Vec<PolicyCheck>,
    /// Time between rounds (`health.interval`, default [`DEFAULT_INTERVAL`]).
    pub interval: Duration,
    /// How long every check must keep passing after a deploy (`health.soak`, default 0: one
    /// round).
    pub soak: Duration,
    /// Consecutive failures of one check that make a target unhealthy (at least 1).
    pub failure_threshold: u32,
    /// `peers`: through a wave's soak, the checks also run on the rollout's other converged
    /// targets.
    pub peers: bool,
}

/// The settings of a policy without a `health` section (and of the built-in policy).
pub static NO_HEALTH_CHECKS: HealthSettings = HealthSettings {
    checks: Vec::new(),
    interval: DEFAULT_INTERVAL,
    soak: Duration::ZERO,
    failure_threshold: 1,
    peers: false,
};

impl Default for HealthSettings {
    fn default() -> Self {
        NO_HEALTH_CHECKS.clone()
    }
}

impl HealthSettings {
    /// The same checks, held for `soak` instead (a traffic weight holds for its analysis time).
    pub fn holding_for(&self, soak: Duration) -> HealthSettings {
        HealthSettings { soak, ..self.clone() }
    }

    /// Whether the policy declares checks of its own.
    pub fn has_checks(&self) -> bool {
        !self.checks.is_empty()
    }
}

/// One declared check.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyCheck {
    pub name: String,
    /// `timeout`; `None`: the step timeout for a command, [`DEFAULT_HTTP_TIMEOUT`] for requests.
    pub timeout: Option<Duration>,
    pub probe: Probe,
}

impl PolicyCheck {
    /// The timeout of one run of this check.
    pub fn timeout_or(&self, step_timeout: Duration) -> Duration {
        self.timeout.unwrap_or(match self.probe {
            Probe::Command(_) => step_timeout,
            Probe::Http { .. } | Probe::Prometheus { .. } => DEFAULT_HTTP_TIMEOUT,
        })
    }
}

/// What a check probes, with every field its kind needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Runs a command on the reconciler's host; healthy when it exits 0.
    Command(Argv),
    /// GET `url` (a template); healthy on status `expect` with `body` in the response.
    Http {
        url: String,
        expect: u16,
        body: Option<String>,
    },
    /// An instant Prometheus `query` (a template) at `url`; healthy within `bounds`.
    Prometheus {
        url: String,
        query: String,
        bounds: MetricBounds,
        on_no_data: OnNoData,
    },
}

/// The range a metric must stay in: at least one end is given (validation refuses neither).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricBounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
}
