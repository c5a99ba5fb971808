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

/// Upper bounds (seconds) of the attempt-duration buckets: an attempt runs from seconds (one
/// deploy) to hours (migrations, long soaks of its health step).
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

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
    /// (component, update type, outcome, channel) → finished attempts.
    pub attempts: BTreeMap<AttemptLabels, u64>,
    /// (component, update type) → attempt durations.
    pub attempt_durations: BTreeMap<(String, String), Histogram>,
    /// (component, policy) → targets done and in total of the rollouts still in progress.
    pub rollouts: BTreeMap<(String, String), RolloutProgress>,
}

/// The labels of `gantry_attempts_total`. Every value is bounded by the manifests (components,
/// channels) or fixed (update type, outcome); targets and versions are left out on purpose: a
/// label per target or per release would make a new series for every one and grow the
/// Prometheus database without bound (`gantry history` has the per-target record).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AttemptLabels {
    pub component: String,
    /// `patch`, `minor`, `major`, or `none` (config change, removal).
    pub update_type: String,
    pub outcome: String,
    /// The release's prerelease channel, or `stable`.
    pub channel: String,
}

/// One finished attempt as the metrics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptSample {
    pub labels: AttemptLabels,
    /// `finished - started` from the target's record (absent when the record has no times).
    pub seconds: Option<f64>,
}

impl AttemptSample {
    /// The sample of `outcome`, with its action and times from the target's record after the pass
    /// (the record's `last_attempt`, when it is this attempt).
    pub fn of(outcome: &crate::state::FinishedAttempt, record: Option<&crate::state::TargetRecord>) -> AttemptSample {
        let attempt = record
            .and_then(|r| r.last_attempt.as_ref())
            .filter(|a| a.id == outcome.attempt);
        let changes_version = match attempt.map(|a| a.action.as_str()) {
            Some("config" | "remove") => false,
            Some(_) => true,
            None => outcome.from.as_ref() != Some(&outcome.to),
        };
        let update_type = if changes_version {
            crate::policy::update_type(outcome.from.as_ref(), &outcome.to).as_str()
        } else {
            "none"
        };
        let channel = outcome.to.channel().unwrap_or("stable");
        let seconds = attempt.and_then(|a| {
            let started: jiff::Timestamp = a.started.parse().ok()?;
            let finished: jiff::Timestamp = a.finished.as_deref()?.parse().ok()?;
            Some(finished.duration_since(started).as_secs_f64().max(0.0))
        });
        AttemptSample {
            labels: AttemptLabels {
                component: outcome.component.clone(),
                update_type: update_type.to_string(),
                outcome: outcome.outcome.as_str().to_string(),
                channel: channel.to_string(),
            },
            seconds,
        }
    }
}

/// Which count of a [`RolloutProgress`] a gauge shows.
type ProgressField = fn(&RolloutProgress) -> u64;

/// Targets of a component's rollouts under one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutProgress {
    /// Targets recorded `succeeded` in the rollout.
    pub done: u64,
    /// Targets the rollout's waves hold.
    pub total: u64,
}

/// Per (component, policy): the targets done and in total of the plan's rollouts still in
/// progress. Rollouts of several versions of one component under one policy are added up (the
/// version is not a label, see [`AttemptLabels`]).
pub fn rollout_progress(
    rollouts: &[crate::plan::Rollout],
    recorded: &crate::state::RecordedState,
) -> BTreeMap<(String, String), RolloutProgress> {
    let mut out: BTreeMap<(String, String), RolloutProgress> = BTreeMap::new();
    for rollout in rollouts {
        let record = recorded
            .rollouts
            .get(&(rollout.component.clone(), rollout.version.clone()));
        let key = (
            rollout.component.clone(),
            rollout.policy.clone().unwrap_or_else(|| "default".to_string()),
        );
        let entry = out.entry(key).or_default();
        for target in rollout.waves.iter().flat_map(|w| &w.targets) {
            entry.total += 1;
            let done = record
                .and_then(|r| r.targets.get(target))
                .is_some_and(|t| t.status == crate::state::RolloutTargetStatus::Succeeded);
            entry.done += u64::from(done);
        }
    }
    out
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
            attempts: BTreeMap::new(),
            attempt_durations: BTreeMap::new(),
            rollouts: BTreeMap::new(),
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

    /// Counts a finished attempt and observes its duration.
    pub fn observe_attempt(&mut self, sample: &AttemptSample) {
        *self.attempts.entry(sample.labels.clone()).or_default() += 1;
        if let Some(seconds) = sample.seconds {
            self.attempt_durations
                .entry((sample.labels.component.clone(), sample.labels.update_type.clone()))
                .or_insert_with(|| Histogram::new(ATTEMPT_BUCKETS))
                .observe(seconds);
        }
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

        header(
            &mut out,
            "gantry_attempts_total",
            "counter",
            "Finished target attempts by component, update type, outcome and release channel.",
        );
        for (l, n) in &self.attempts {
            let _ = writeln!(
                out,
                "gantry_attempts_total{{component=\"{}\",update_type=\"{}\",outcome=\"{}\",channel=\"{}\"}} {n}",
                escape(&l.component),
                escape(&l.update_type),
                escape(&l.outcome),
                escape(&l.channel)
            );
        }

        header(
            &mut out,
            "gantry_attempt_duration_seconds",
            "histogram",
            "Duration of finished target attempts (started to finished) by component and update type.",
        );
        for ((component, update_type), histogram) in &self.attempt_durations {
            histogram.render(
                &mut out,
                "gantry_attempt_duration_seconds",
                &format!(
                    "component=\"{}\",update_type=\"{}\"",
                    escape(component),
                    escape(update_type)
                ),
            );
        }

        // Each family's samples follow its own TYPE line (the exposition format requires it).
        let families: [(&str, &str, ProgressField); 2] = [
            (
                "gantry_rollout_targets",
                "Targets of the rollouts in progress, by component and policy.",
                |p| p.total,
            ),
            (
                "gantry_rollout_targets_done",
                "Targets of the rollouts in progress that succeeded, by component and policy.",
                |p| p.done,
            ),
        ];
        for (name, help, value) in families {
            header(&mut out, name, "gauge", help);
            for ((component, policy), progress) in &self.rollouts {
                let _ = writeln!(
                    out,
                    "{name}{{component=\"{}\",policy=\"{}\"}} {}",
                    escape(component),
                    escape(policy),
                    value(progress)
                );
            }
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

    fn finished(from: Option<&str>, to: &str, outcome: crate::state::Outcome) -> crate::state::FinishedAttempt {
        crate::state::FinishedAttempt {
            target: "acme".into(),
            component: "billing".into(),
            from: from.map(|v| v.parse().unwrap()),
            to: to.parse().unwrap(),
            outcome,
            desired_commit: "abc".into(),
            attempt: "a1".into(),
            message: String::new(),
            emergency: None,
        }
    }

    fn record(id: &str, action: &str, started: &str, finished: Option<&str>) -> crate::state::TargetRecord {
        crate::state::TargetRecord {
            component: "billing".into(),
            version: None,
            config_hash: None,
            config: None,
            applied_migrations: Vec::new(),
            status: crate::state::TargetStatus::Converged,
            last_attempt: Some(crate::state::AttemptRecord {
                id: id.into(),
                desired_commit: "abc".into(),
                from: None,
                to: "1.0.0".parse().unwrap(),
                action: action.into(),
                started: started.into(),
                finished: finished.map(str::to_string),
                outcome: None,
                message: String::new(),
                config_hash: None,
                output_tail: String::new(),
                spec_hash: None,
                approvers: Vec::new(),
                emergency: None,
            }),
            rollback_points: Vec::new(),
            observed_version: None,
        }
    }

    /// Issue #15: `/metrics` counted outcomes by action kind only. Each finished attempt is
    /// labelled with its component, update type (none for config/remove), outcome and channel,
    /// and its duration comes from its own record (not another attempt's).
    #[test]
    fn attempt_samples_are_labelled_and_timed_from_their_own_record() {
        use crate::state::Outcome;
        let t0 = "2026-11-21T10:00:00Z";
        let cases = [
            (
                finished(Some("1.2.0"), "1.3.0", Outcome::Succeeded),
                Some(record("a1", "upgrade", t0, Some("2026-11-21T10:01:30Z"))),
                ("minor", "succeeded", "stable"),
                Some(90.0),
            ),
            (
                finished(None, "2.0.0-beta.3", Outcome::Failed),
                Some(record("a1", "install", t0, Some("2026-11-21T10:00:02Z"))),
                ("major", "failed", "beta"),
                Some(2.0),
            ),
            (
                finished(Some("1.2.0"), "1.2.0", Outcome::RolledBack),
                Some(record("a1", "config", t0, Some(t0))),
                ("none", "rolled_back", "stable"),
                Some(0.0),
            ),
            (
                finished(Some("1.2.0"), "1.2.1", Outcome::Succeeded),
                Some(record("a0", "upgrade", t0, Some(t0))),
                ("patch", "succeeded", "stable"),
                None,
            ),
            (
                finished(Some("1.2.0"), "1.2.0", Outcome::Succeeded),
                None,
                ("none", "succeeded", "stable"),
                None,
            ),
        ];
        for (outcome, record, (update_type, result, channel), seconds) in cases {
            let sample = AttemptSample::of(&outcome, record.as_ref());
            assert_eq!(
                (
                    sample.labels.update_type.as_str(),
                    sample.labels.outcome.as_str(),
                    sample.labels.channel.as_str()
                ),
                (update_type, result, channel),
                "{outcome:?}"
            );
            assert_eq!(sample.seconds, seconds, "{outcome:?}");
        }
    }

    #[test]
    fn attempts_and_their_durations_render_with_bounded_labels() {
        let mut m = Metrics::default();
        let done = record("a1", "upgrade", "2026-11-21T10:00:00Z", Some("2026-11-21T10:00:45Z"));
        let sample = AttemptSample::of(
            &finished(Some("1.2.0"), "1.3.0", crate::state::Outcome::Succeeded),
            Some(&done),
        );
        m.observe_attempt(&sample);
        m.observe_attempt(&sample);
        m.rollouts.insert(
            ("billing".into(), "staged".into()),
            RolloutProgress { done: 1, total: 3 },
        );
        let text = m.render();
        for line in [
            "gantry_attempts_total{component=\"billing\",update_type=\"minor\",outcome=\"succeeded\",channel=\"stable\"} 2\n",
            "gantry_attempt_duration_seconds_bucket{component=\"billing\",update_type=\"minor\",le=\"30\"} 0\n",
            "gantry_attempt_duration_seconds_bucket{component=\"billing\",update_type=\"minor\",le=\"60\"} 2\n",
            "gantry_attempt_duration_seconds_sum{component=\"billing\",update_type=\"minor\"} 90\n",
            "gantry_rollout_targets{component=\"billing\",policy=\"staged\"} 3\n",
            "gantry_rollout_targets_done{component=\"billing\",policy=\"staged\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}in\n{text}");
        }
        assert!(!text.contains("acme"), "no target names as labels:\n{text}");
        // Every sample follows its own family's TYPE line.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    name == family
                        || name
                            .strip_prefix(family.as_str())
                            .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s)),
                    "{name} after TYPE {family}"
                );
            }
        }
    }
}
