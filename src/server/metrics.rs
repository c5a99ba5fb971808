//! The daemon's Prometheus metrics, rendered in the text exposition format 0.0.4.
//!
//! Hand-written rather than `prometheus-client`: a handful of counters, two histograms and two
//! gauges with static names fit in this file, and the format is small and stable; a dependency
//! (and its registry indirection) would be larger than the code it replaces.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Upper bounds (seconds) of the step-duration buckets: steps run from milliseconds to minutes.
const STEP_BUCKETS: &[f64] = &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];
/// Upper bounds (seconds) of the commit-to-first-step buckets: the daemon aims at milliseconds.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Every metric the daemon exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub passes: u64,
    /// (action kind, outcome) → attempts.
    pub actions: BTreeMap<(String, String), u64>,
    pub rollbacks: u64,
    /// step kind → durations.
    pub step_durations: BTreeMap<String, Histogram>,
    pub commit_to_first_step: Histogram,
    /// recorded status → targets.
    pub targets: BTreeMap<String, u64>,
    pub last_valid_commit: Option<String>,
    pub desired_commit_valid: bool,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            passes: 0,
            actions: BTreeMap::new(),
            rollbacks: 0,
            step_durations: BTreeMap::new(),
            commit_to_first_step: Histogram::new(LATENCY_BUCKETS),
            targets: BTreeMap::new(),
            last_valid_commit: None,
            desired_commit_valid: true,
        }
    }
}

impl Metrics {
    /// Records a finished step of `kind`.
    pub fn observe_step(&mut self, kind: &str, seconds: f64) {
        self.step_durations
            .entry(kind.to_string())
            .or_insert_with(|| Histogram::new(STEP_BUCKETS))
            .observe(seconds);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "gantry_reconcile_passes_total",
            "counter",
            "Reconcile passes run.",
        );
        let _ = writeln!(out, "gantry_reconcile_passes_total {}", self.passes);

        header(
            &mut out,
            "gantry_actions_total",
            "counter",
            "Finished target attempts by action kind and outcome.",
        );
        for ((kind, outcome), n) in &self.actions {
            let _ = writeln!(
                out,
                "gantry_actions_total{{kind=\"{}\",outcome=\"{}\"}} {n}",
                escape(kind),
                escape(outcome)
            );
        }

        header(&mut out, "gantry_rollbacks_total", "counter", "Rollbacks started.");
        let _ = writeln!(out, "gantry_rollbacks_total {}", self.rollbacks);

        header(
            &mut out,
            "gantry_step_duration_seconds",
            "histogram",
            "Duration of executed steps by step kind.",
        );
        for (kind, histogram) in &self.step_durations {
            histogram.render(
                &mut out,
                "gantry_step_duration_seconds",
                &format!("kind=\"{}\"", escape(kind)),
            );
        }

        header(
            &mut out,
            "gantry_commit_to_first_step_seconds",
            "histogram",
            "From seeing a new desired commit to the first step of its pass starting.",
        );
        self.commit_to_first_step
            .render(&mut out, "gantry_commit_to_first_step_seconds", "");

        header(&mut out, "gantry_targets", "gauge", "Targets by recorded status.");
        for (status, n) in &self.targets {
            let _ = writeln!(out, "gantry_targets{{status=\"{}\"}} {n}", escape(status));
        }

        header(
            &mut out,
            "gantry_last_valid_desired_commit_info",
            "gauge",
            "The last desired commit that validated (always 1).",
        );
        if let Some(commit) = &self.last_valid_commit {
            let _ = writeln!(
                out,
                "gantry_last_valid_desired_commit_info{{commit=\"{}\"}} 1",
                escape(commit)
            );
        }

        header(
            &mut out,
            "gantry_desired_commit_valid",
            "gauge",
            "1 when the tip of the desired branch validates, else 0.",
        );
        let _ = writeln!(
            out,
            "gantry_desired_commit_valid {}",
            u8::from(self.desired_commit_valid)
        );
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut m = Metrics::default();
        m.commit_to_first_step.observe(0.003);
        m.commit_to_first_step.observe(0.5);
        let text = m.render();
        assert!(text.contains("gantry_commit_to_first_step_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("gantry_commit_to_first_step_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("gantry_commit_to_first_step_seconds_bucket{le=\"0.5\"} 2\n"));
        assert!(text.contains("gantry_commit_to_first_step_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("gantry_commit_to_first_step_seconds_count 2\n"));
    }

    #[test]
    fn labels_are_escaped() {
        let mut m = Metrics::default();
        m.observe_step("de\"ploy", 1.0);
        assert!(m.render().contains("kind=\"de\\\"ploy\",le=\"1\"} 1"));
    }
}
