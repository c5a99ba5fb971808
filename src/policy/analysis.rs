//! Continuous analysis: the policy's health checks keep running on every target of a wave for
//! the wave's whole soak, and a check failing `failureThreshold` rounds in a row fails the
//! target (it is rolled back) while the rest of the wave keeps soaking.
//!
//! Pure: when rounds are due, and what a round's results do to a target's analysis. Rounds are
//! driven by reconcile passes, not by a sleeping loop: round `k` of a wave that completed at `C`
//! is due at `C + k × interval`; a pass at `now` runs the rounds due since the last one it ran
//! (at most `failureThreshold` of them back to back: more could not change the verdict), so
//! `apply --now T` is reproducible and a wave never promotes on a soak nobody watched. The wave
//! passes its analysis on the first round at or after the soak's end on which every target still
//! in the wave passes every check.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::state::{AnalysisStatus, TargetAnalysis, WaveAnalysis};

/// The rounds a pass at `now` should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// How many rounds came due since the last one run (run at most `failureThreshold`).
    pub count: u32,
    /// The index and scheduled instant of the latest due round.
    pub index: u32,
    pub at: Timestamp,
    /// The latest due round is at or after the soak's end: passing it passes the analysis.
    pub last: bool,
}

/// A wave's analysis timetable: it completed at `completed`, soaks `soak`, a round each `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timetable {
    pub completed: Timestamp,
    pub soak: Duration,
    pub interval: Duration,
}

impl Timetable {
    fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX).max(1)
    }

    /// Rounds through the soak: `ceil(soak / interval)`, at least one.
    pub fn rounds(&self) -> u32 {
        let soak = i64::try_from(self.soak.as_millis()).unwrap_or(i64::MAX);
        u32::try_from((soak + self.interval_ms() - 1) / self.interval_ms())
            .unwrap_or(u32::MAX)
            .max(1)
    }

    /// The index of the latest round due at `t` (0: none yet).
    fn index_at(&self, t: Timestamp) -> u32 {
        let elapsed = t.duration_since(self.completed).as_millis();
        if elapsed <= 0 {
            return 0;
        }
        u32::try_from(elapsed / i128::from(self.interval_ms())).unwrap_or(u32::MAX)
    }

    /// The scheduled instant of round `index`.
    pub fn at(&self, index: u32) -> Timestamp {
        let offset = SignedDuration::from_millis(self.interval_ms().saturating_mul(i64::from(index)));
        self.completed.checked_add(offset).unwrap_or(self.completed)
    }

    /// The rounds due at `now` after the round scheduled at `last_round` (none run: after 0).
    pub fn due(&self, last_round: Option<Timestamp>, now: Timestamp) -> Option<Due> {
        let done = last_round.map_or(0, |t| self.index_at(t));
        let index = self.index_at(now);
        (index > done).then(|| Due {
            count: index - done,
            index,
            at: self.at(index),
            last: index >= self.rounds(),
        })
    }

    /// Rounds of the soak not run yet.
    pub fn rounds_left(&self, last_round: Option<Timestamp>) -> u32 {
        self.rounds().saturating_sub(last_round.map_or(0, |t| self.index_at(t)))
    }
}

/// What one check said in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub check: String,
    pub ok: bool,
    pub message: String,
}

/// Folds one round's results into a target's analysis. Returns the check that reached
/// `failure_threshold` consecutive failures and its message (the target failed), if one did.
pub fn record_round(
    target: &mut TargetAnalysis,
    results: &[CheckResult],
    failure_threshold: u32,
) -> Option<(String, String)> {
    let mut failed = None;
    for r in results {
        let count = target.failures.entry(r.check.clone()).or_insert(0);
        *count = if r.ok { 0 } else { *count + 1 };
        target.last.insert(r.check.clone(), r.message.clone());
        if *count >= failure_threshold.max(1) && failed.is_none() {
            failed = Some((r.check.clone(), r.message.clone()));
        }
    }
    if failed.is_some() {
        target.status = AnalysisStatus::Failed;
    }
    failed
}

/// Whether a target's last round passed every check.
pub fn last_round_passed(target: &TargetAnalysis) -> bool {
    target.failures.values().all(|&n| n == 0)
}

/// A target (or peer) whose analysis has not run a round yet.
pub fn running() -> TargetAnalysis {
    TargetAnalysis {
        status: AnalysisStatus::Running,
        failures: BTreeMap::new(),
        last: BTreeMap::new(),
    }
}

/// A fresh analysis of `targets`.
pub fn start<'a>(targets: impl IntoIterator<Item = &'a str>) -> WaveAnalysis {
    WaveAnalysis {
        status: AnalysisStatus::Running,
        rounds: 0,
        last_round: None,
        peers: BTreeMap::new(),
        targets: targets.into_iter().map(|t| (t.to_string(), running())).collect(),
    }
}

/// After a round: the wave passes when the round was its last and every target (and peer) still
/// running passed it (those become `passed`); it stays `running` otherwise. A wave whose every target
/// failed is `failed`.
pub fn settle(analysis: &mut WaveAnalysis, last: bool) {
    let running: Vec<&String> = analysis
        .targets
        .iter()
        .filter(|(_, t)| t.status == AnalysisStatus::Running)
        .map(|(name, _)| name)
        .collect();
    if running.is_empty() {
        analysis.status = if analysis.targets.values().any(|t| t.status != AnalysisStatus::Failed) {
            AnalysisStatus::Passed
        } else {
            AnalysisStatus::Failed
        };
        return;
    }
    if last
        && analysis
            .targets
            .values()
            .chain(analysis.peers.values())
            .filter(|t| t.status == AnalysisStatus::Running)
            .all(last_round_passed)
    {
        for t in analysis
            .targets
            .values_mut()
            .chain(analysis.peers.values_mut())
            .filter(|t| t.status == AnalysisStatus::Running)
        {
            t.status = AnalysisStatus::Passed;
        }
        analysis.status = AnalysisStatus::Passed;
    }
}

/// What plans and status show of a wave's analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalysisView {
    pub status: AnalysisStatus,
    /// Rounds run so far.
    pub rounds: u32,
    /// Rounds of the soak not run yet.
    pub rounds_left: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_round: Option<String>,
    /// When the next round is due (absent once the analysis is over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_round: Option<String>,
    /// Per target: its status, consecutive failures and last result per check.
    pub targets: BTreeMap<String, TargetAnalysis>,
    /// The same per peer, when the policy watches peers (`health.peers`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<String, TargetAnalysis>,
}

impl AnalysisView {
    /// The view of `recorded` (or of an analysis that has not run a round yet) at `now`.
    pub fn new(timetable: &Timetable, recorded: Option<&WaveAnalysis>, now: Timestamp) -> AnalysisView {
        let last_round = recorded.and_then(|a| a.last_round.as_deref()?.parse::<Timestamp>().ok());
        let status = recorded.map_or(AnalysisStatus::Running, |a| a.status);
        let next_round = (status == AnalysisStatus::Running).then(|| {
            let done = last_round.map_or(0, |t| timetable.index_at(t));
            let due = timetable.index_at(now).max(done);
            // A round already due runs at the next pass; otherwise the next scheduled one.
            if due > done {
                now.to_string()
            } else {
                timetable.at(done + 1).to_string()
            }
        });
        AnalysisView {
            status,
            rounds: recorded.map_or(0, |a| a.rounds),
            rounds_left: if status == AnalysisStatus::Running {
                timetable.rounds_left(last_round)
            } else {
                0
            },
            last_round: last_round.map(|t| t.to_string()),
            next_round,
            targets: recorded.map(|a| a.targets.clone()).unwrap_or_default(),
            peers: recorded.map(|a| a.peers.clone()).unwrap_or_default(),
        }
    }

    /// One line for blockers: rounds, and the last result of any failing check.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "analysis {}: {} round{} run, {} left",
            self.status.as_str(),
            self.rounds,
            if self.rounds == 1 { "" } else { "s" },
            self.rounds_left
        );
        let peers = self.peers.iter().map(|(name, t)| (format!("peer {name}"), t));
        let failing: Vec<String> = self
            .targets
            .iter()
            .map(|(name, t)| (name.clone(), t))
            .chain(peers)
            .flat_map(|(target, t)| {
                t.failures.iter().filter(|(_, n)| **n > 0).map(move |(check, n)| {
                    format!(
                        "{target} {check} failing {n}× ({})",
                        t.last.get(check).map_or("", String::as_str)
                    )
                })
            })
            .collect();
        if !failing.is_empty() {
            text.push_str(&format!("; {}", failing.join("; ")));
        }
        if let Some(next) = &self.next_round {
            text.push_str(&format!("; next round at {next}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn table(soak_min: u64, interval_s: u64) -> Timetable {
        Timetable {
            completed: ts("2026-11-21T10:00:00Z"),
            soak: Duration::from_secs(soak_min * 60),
            interval: Duration::from_secs(interval_s),
        }
    }

    #[test]
    fn rounds_come_due_every_interval_and_the_last_is_at_the_soak_end() {
        // (soak min, interval s, last round run, now, expected (count, index, last) or none)
        type Case = (u64, u64, Option<&'static str>, &'static str, Option<(u32, u32, bool)>);
        let cases: &[Case] = &[
            (30, 60, None, "2026-11-21T10:00:00Z", None),
            (30, 60, None, "2026-11-21T10:00:59Z", None),
            (30, 60, None, "2026-11-21T10:01:00Z", Some((1, 1, false))),
            (30, 60, None, "2026-11-21T10:10:30Z", Some((10, 10, false))),
            (30, 60, Some("2026-11-21T10:10:00Z"), "2026-11-21T10:10:59Z", None),
            (
                30,
                60,
                Some("2026-11-21T10:10:00Z"),
                "2026-11-21T10:29:59Z",
                Some((19, 29, false)),
            ),
            (
                30,
                60,
                Some("2026-11-21T10:29:00Z"),
                "2026-11-21T10:30:00Z",
                Some((1, 30, true)),
            ),
            (30, 60, None, "2026-11-21T11:00:00Z", Some((60, 60, true))),
            // A soak that is not a multiple of the interval ends on the round after it.
            (1, 40, None, "2026-11-21T10:01:00Z", Some((1, 1, false))),
            (1, 40, None, "2026-11-21T10:01:20Z", Some((2, 2, true))),
            // Time going backwards runs nothing.
            (30, 60, None, "2026-11-21T09:00:00Z", None),
        ];
        for (soak, interval, last, now, expected) in cases {
            let t = table(*soak, *interval);
            let got = t.due(last.map(ts), ts(now)).map(|d| (d.count, d.index, d.last));
            assert_eq!(
                got, *expected,
                "soak {soak}m every {interval}s, last {last:?}, now {now}"
            );
        }
        assert_eq!(table(30, 60).rounds(), 30);
        assert_eq!(table(1, 40).rounds(), 2);
        assert_eq!(table(0, 10).rounds(), 1);
        assert_eq!(table(30, 60).rounds_left(Some(ts("2026-11-21T10:10:00Z"))), 20);
    }

    fn result(check: &str, ok: bool, message: &str) -> CheckResult {
        CheckResult {
            check: check.into(),
            ok,
            message: message.into(),
        }
    }

    #[test]
    fn a_check_failing_threshold_rounds_in_a_row_fails_the_target() {
        let mut a = start(["canary"]);
        let t = a.targets.get_mut("canary").unwrap();
        let high = result("errors", false, "value 0.09 is above max 0.05");
        let low = result("errors", true, "value 0.01 is within bounds (max 0.05)");
        assert_eq!(record_round(t, std::slice::from_ref(&high), 3), None);
        assert_eq!(record_round(t, std::slice::from_ref(&high), 3), None);
        // A passing round resets the count.
        assert_eq!(record_round(t, &[low], 3), None);
        assert_eq!(t.failures["errors"], 0);
        assert_eq!(record_round(t, std::slice::from_ref(&high), 3), None);
        assert_eq!(record_round(t, std::slice::from_ref(&high), 3), None);
        assert_eq!(
            record_round(t, &[high], 3),
            Some(("errors".into(), "value 0.09 is above max 0.05".into()))
        );
        assert_eq!(t.status, AnalysisStatus::Failed);
        assert_eq!(t.last["errors"], "value 0.09 is above max 0.05");
    }

    #[test]
    fn the_wave_passes_on_a_clean_last_round_only() {
        let mut a = start(["a", "b"]);
        let fail = [result("http", false, "status 503")];
        let pass = [result("http", true, "status 200")];
        record_round(a.targets.get_mut("a").unwrap(), &pass, 3);
        record_round(a.targets.get_mut("b").unwrap(), &fail, 3);
        settle(&mut a, true);
        assert_eq!(
            a.status,
            AnalysisStatus::Running,
            "b failed the last round: keep checking"
        );
        record_round(a.targets.get_mut("b").unwrap(), &pass, 3);
        settle(&mut a, false);
        assert_eq!(a.status, AnalysisStatus::Running, "not the last round yet");
        settle(&mut a, true);
        assert_eq!(a.status, AnalysisStatus::Passed);
        assert!(a.targets.values().all(|t| t.status == AnalysisStatus::Passed));
        // Every target failed: the wave failed.
        let mut all_failed = start(["a"]);
        record_round(all_failed.targets.get_mut("a").unwrap(), &fail, 1);
        settle(&mut all_failed, false);
        assert_eq!(all_failed.status, AnalysisStatus::Failed);
    }

    /// Peers (`health.peers`) hold the wave like its targets: a peer failing the last round
    /// keeps it soaking, and a clean last round passes the peers with the wave.
    #[test]
    fn a_peer_failing_the_last_round_keeps_the_wave_soaking_and_shows_in_the_summary() {
        let fail = [result("http", false, "status 503")];
        let pass = [result("http", true, "status 200")];
        let mut a = start(["canary"]);
        a.peers.insert("peer-1".into(), running());
        record_round(a.targets.get_mut("canary").unwrap(), &pass, 3);
        record_round(a.peers.get_mut("peer-1").unwrap(), &fail, 3);
        settle(&mut a, true);
        assert_eq!(a.status, AnalysisStatus::Running, "the peer failed the last round");
        let view = AnalysisView::new(&table(30, 60), Some(&a), ts("2026-11-21T10:30:00Z"));
        assert!(
            view.summary().contains("peer peer-1 http failing 1× (status 503)"),
            "{}",
            view.summary()
        );
        record_round(a.peers.get_mut("peer-1").unwrap(), &pass, 3);
        settle(&mut a, true);
        assert_eq!(a.status, AnalysisStatus::Passed);
        assert_eq!(a.peers["peer-1"].status, AnalysisStatus::Passed);
    }

    #[test]
    fn the_view_says_rounds_left_and_what_is_failing() {
        let t = table(30, 60);
        let mut a = start(["canary"]);
        a.rounds = 3;
        a.last_round = Some("2026-11-21T10:03:00Z".into());
        record_round(
            a.targets.get_mut("canary").unwrap(),
            &[result("errors", false, "value 0.09 is above max 0.05")],
            3,
        );
        let view = AnalysisView::new(&t, Some(&a), ts("2026-11-21T10:03:30Z"));
        assert_eq!(view.rounds_left, 27);
        assert_eq!(view.next_round.as_deref(), Some("2026-11-21T10:04:00Z"));
        assert_eq!(
            view.summary(),
            "analysis running: 3 rounds run, 27 left; canary errors failing 1× (value 0.09 is above max 0.05); next round at 2026-11-21T10:04:00Z"
        );
        let fresh = AnalysisView::new(&t, None, ts("2026-11-21T10:31:00Z"));
        assert_eq!(fresh.rounds, 0);
        assert_eq!(fresh.next_round.as_deref(), Some("2026-11-21T10:31:00Z"), "due now");
    }
}
