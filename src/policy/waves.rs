//! Waves: which targets of a rollout go in which wave, and whether a wave may start at `now`.
//!
//! A **rollout** is the set of targets moving one component to one version (SPEC §1). Its
//! targets are split into cumulative waves by the policy's `rollout.waves`; a wave starts only
//! when every earlier wave has finished and soaked. Pure functions of the members, the recorded
//! rollout and `now`.
//!
//! # Semantics
//! - **Order.** Members are ordered by the 64-bit FNV-1a hash of their name (ties by name). The
//!   hash is fixed forever, unlike std's randomized `DefaultHasher`, so the same fleet gets the
//!   same waves on every run and machine, and which targets go first does not follow
//!   alphabetical (often: per-customer) naming.
//! - **Cumulative sizes.** A `percent` wave holds `ceil(percent% × rollout size)` targets in
//!   total, counting the earlier waves' targets, and at least one; it adds targets in hash
//!   order until it has that many. A `selector` wave adds every member matching the selector.
//!   With both, it adds members matching the selector until `ceil(percent%)` of those are in.
//!   A wave with neither takes everyone left.
//! - **Leftovers.** Members no declared wave reached (the last wave is not 100%, or a selector
//!   misses them) form an implicit final wave named [`REST_WAVE`], without soak, so nobody is
//!   left behind silently and the declared waves keep their meaning.
//! - **No waves** declared: one wave named [`ALL_WAVE`].
//! - **Recorded placement wins.** A target the state branch records in a wave stays in it, so a
//!   rollout's membership changing (a target added mid-rollout) never moves started targets.
//! - **Completion.** A wave is complete when every one of its targets finished (succeeded, or
//!   failed/rolled back within `maxFailures`: more halts the rollout anyway). It completed at the
//!   recorded `waves[].completed`, else at its last target's `finished`. An empty wave is
//!   complete and has no soak.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::manifest::{Labels, WaveSpec, selector_matches};
use crate::state::{RolloutRecord, RolloutTargetStatus};

/// The wave of a policy that declares none.
pub const ALL_WAVE: &str = "all";
/// The implicit wave of the members no declared wave reached.
pub const REST_WAVE: &str = "rest";

/// 64-bit FNV-1a of `name`: the stable order of a rollout's targets.
pub fn stable_hash(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes()
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME))
}

/// A target of a rollout: its name and (when it is still desired) its labels.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub name: &'a str,
    pub labels: Option<&'a Labels>,
}

/// One wave with the targets it adds (not counting earlier waves'), in hash order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWave {
    pub name: String,
    pub soak: Option<Duration>,
    pub targets: Vec<String>,
}

/// Splits `members` into waves (see the module docs).
///
/// `soaks` are the parsed `soak`s of `specs`, in order (missing = none).
///
/// # Guarantees
/// Every member is in exactly one wave; the result does not depend on the order of `members`.
pub fn assign(
    specs: &[WaveSpec],
    soaks: &[Option<Duration>],
    members: &[Member],
    recorded: Option<&RolloutRecord>,
) -> Vec<PlannedWave> {
    let mut ordered: Vec<Member> = members.to_vec();
    ordered.sort_by(|a, b| (stable_hash(a.name), a.name).cmp(&(stable_hash(b.name), b.name)));
    ordered.dedup_by(|a, b| a.name == b.name);
    if specs.is_empty() {
        return vec![PlannedWave {
            name: ALL_WAVE.to_string(),
            soak: None,
            targets: ordered.iter().map(|m| m.name.to_string()).collect(),
        }];
    }
    let declared: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let pinned = |m: &Member| -> Option<&str> {
        let wave = recorded?.targets.get(m.name)?.wave.as_str();
        declared.contains(wave).then_some(wave)
    };
    let total = ordered.len();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut waves = Vec::with_capacity(specs.len() + 1);
    for (i, spec) in specs.iter().enumerate() {
        let mut targets: Vec<&str> = Vec::new();
        for m in &ordered {
            if pinned(m) == Some(spec.name.as_str()) && placed.insert(m.name) {
                targets.push(m.name);
            }
        }
        let free = |m: &&Member| pinned(m).is_none();
        let matches = |m: &&Member| selector_matches(spec.selector.as_ref(), m.labels.unwrap_or(&Labels::new()));
        match (&spec.selector, spec.percent) {
            (_, None) => {
                for m in ordered.iter().filter(free).filter(matches) {
                    if placed.insert(m.name) {
                        targets.push(m.name);
                    }
                }
            }
            (None, Some(percent)) => {
                let goal = cumulative_goal(percent, total);
                for m in ordered.iter().filter(free) {
                    if placed.len() >= goal {
                        break;
                    }
                    if placed.insert(m.name) {
                        targets.push(m.name);
                    }
                }
            }
            (Some(_), Some(percent)) => {
                // Labels are only known for desired targets; recorded-only ones never match.
                let pool: Vec<&Member> = ordered.iter().filter(|m| m.labels.is_some()).filter(matches).collect();
                let goal = cumulative_goal(percent, pool.len());
                let mut have = pool.iter().filter(|m| placed.contains(m.name)).count();
                for m in pool.into_iter().filter(|m| pinned(m).is_none()) {
                    if have >= goal {
                        break;
                    }
                    if placed.insert(m.name) {
                        targets.push(m.name);
                        have += 1;
                    }
                }
            }
        }
        waves.push(PlannedWave {
            name: spec.name.clone(),
            soak: soaks.get(i).copied().flatten(),
            targets: targets.into_iter().map(str::to_string).collect(),
        });
    }
    let rest: Vec<String> = ordered
        .iter()
        .filter(|m| !placed.contains(m.name))
        .map(|m| m.name.to_string())
        .collect();
    if !rest.is_empty() {
        waves.push(PlannedWave {
            name: REST_WAVE.to_string(),
            soak: None,
            targets: rest,
        });
    }
    waves
}

/// `ceil(percent% of n)`, at least 1 (when there is anyone), at most `n`.
fn cumulative_goal(percent: u32, n: usize) -> usize {
    let n64 = n as u64;
    let goal = (u64::from(percent) * n64).div_ceil(100).clamp(1, n64.max(1));
    usize::try_from(goal).unwrap_or(n).min(n)
}

/// Where a wave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaveStatus {
    /// No target of it has started.
    Pending,
    /// Some targets started, not all finished.
    InProgress,
    /// Every target finished; the soak has not passed yet.
    Soaking,
    /// Every target finished and the soak passed.
    Complete,
}

impl WaveStatus {
    /// The name users see (the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            WaveStatus::Pending => "pending",
            WaveStatus::InProgress => "in_progress",
            WaveStatus::Soaking => "soaking",
            WaveStatus::Complete => "complete",
        }
    }
}

impl std::fmt::Display for WaveStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A wave's progress at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveProgress {
    pub status: WaveStatus,
    pub finished: usize,
    pub total: usize,
    /// When the soak ends (set once the wave completed and has a soak).
    pub soak_until: Option<Timestamp>,
}

/// The progress of every wave of a rollout at `now`.
pub fn progress(waves: &[PlannedWave], recorded: Option<&RolloutRecord>, now: Timestamp) -> Vec<WaveProgress> {
    let entry = |t: &str| recorded.and_then(|r| r.targets.get(t));
    let recorded_completion: BTreeMap<&str, Timestamp> = recorded
        .into_iter()
        .flat_map(|r| &r.waves)
        .filter_map(|w| Some((w.name.as_str(), w.completed.as_deref()?.parse().ok()?)))
        .collect();
    waves
        .iter()
        .map(|wave| {
            let total = wave.targets.len();
            let finished = wave
                .targets
                .iter()
                .filter(|t| entry(t).is_some_and(|e| e.status != RolloutTargetStatus::InProgress))
                .count();
            let started = wave.targets.iter().any(|t| entry(t).is_some());
            if total == 0 {
                return WaveProgress {
                    status: WaveStatus::Complete,
                    finished,
                    total,
                    soak_until: None,
                };
            }
            if finished < total {
                return WaveProgress {
                    status: if started {
                        WaveStatus::InProgress
                    } else {
                        WaveStatus::Pending
                    },
                    finished,
                    total,
                    soak_until: None,
                };
            }
            let completed = recorded_completion.get(wave.name.as_str()).copied().or_else(|| {
                wave.targets
                    .iter()
                    .filter_map(|t| entry(t)?.finished.as_deref()?.parse::<Timestamp>().ok())
                    .max()
            });
            let soak_until = match (completed, wave.soak) {
                (Some(at), Some(soak)) if !soak.is_zero() => {
                    SignedDuration::try_from(soak).ok().and_then(|s| at.checked_add(s).ok())
                }
                _ => None,
            };
            WaveProgress {
                status: match soak_until {
                    Some(until) if now < until => WaveStatus::Soaking,
                    _ => WaveStatus::Complete,
                },
                finished,
                total,
                soak_until,
            }
        })
        .collect()
}

/// What a target in a wave waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaveGate {
    /// Every earlier wave is complete and soaked.
    Go,
    /// An earlier wave has unfinished targets.
    WaitsFor {
        wave: String,
        finished: usize,
        total: usize,
    },
    /// An earlier wave finished and soaks until `until`.
    Soaking { wave: String, until: Timestamp },
}

/// The gate of wave `index`: the first earlier wave that is not complete and soaked.
pub fn gate(waves: &[PlannedWave], progress: &[WaveProgress], index: usize) -> WaveGate {
    for (wave, p) in waves.iter().zip(progress).take(index) {
        match p.status {
            WaveStatus::Complete => {}
            WaveStatus::Soaking => {
                if let Some(until) = p.soak_until {
                    return WaveGate::Soaking {
                        wave: wave.name.clone(),
                        until,
                    };
                }
            }
            WaveStatus::Pending | WaveStatus::InProgress => {
                return WaveGate::WaitsFor {
                    wave: wave.name.clone(),
                    finished: p.finished,
                    total: p.total,
                };
            }
        }
    }
    WaveGate::Go
}

/// Why a rollout is halted, if it is: the state branch says so, or more targets failed than
/// `maxFailures` tolerates. A halted rollout stays halted until the desired version changes
/// (another version is another rollout).
pub fn halted(recorded: Option<&RolloutRecord>, max_failures: u32) -> Option<String> {
    let record = recorded?;
    if let Some(halt) = &record.halted {
        return Some(format!(
            "rollout {} {} halted at {} after {} failed: {}; pin another version (fix forward or revert) to continue",
            record.component, record.version, halt.at, halt.target, halt.reason
        ));
    }
    (record.failures > max_failures).then(|| {
        format!(
            "rollout {} {} halted: {} failed targets exceed maxFailures {max_failures}; pin another version (fix forward or revert) to continue",
            record.component, record.version, record.failures
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Halt, RolloutTarget, WaveRecord};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn spec(name: &str, selector: Option<Labels>, percent: Option<u32>) -> WaveSpec {
        WaveSpec {
            name: name.into(),
            selector,
            percent,
            soak: None,
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i:02}")).collect()
    }

    fn members<'a>(names: &'a [String], labels: &'a [Labels]) -> Vec<Member<'a>> {
        names
            .iter()
            .zip(labels)
            .map(|(n, l)| Member {
                name: n,
                labels: Some(l),
            })
            .collect()
    }

    fn sizes(waves: &[PlannedWave]) -> Vec<(String, usize)> {
        waves.iter().map(|w| (w.name.clone(), w.targets.len())).collect()
    }

    #[test]
    fn fnv1a_matches_reference_values() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(stable_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn percent_waves_are_cumulative_ceil_and_at_least_one() {
        let n = names(10);
        let l = vec![Labels::new(); 10];
        let cases: &[(&[u32], &[usize])] = &[
            (&[1, 50, 100], &[1, 4, 5]),  // ceil(0.1)=1, then 5 in total, then 10
            (&[25, 100], &[3, 7]),        // ceil(2.5)=3
            (&[0, 100], &[1, 9]),         // at least one
            (&[10, 10, 100], &[1, 0, 9]), // a wave already reached adds nobody
            (&[30, 60], &[3, 3, 4]),      // leftovers go to `rest`
        ];
        for (percents, expected) in cases {
            let specs: Vec<WaveSpec> = percents
                .iter()
                .enumerate()
                .map(|(i, p)| spec(&format!("w{i}"), None, Some(*p)))
                .collect();
            let waves = assign(&specs, &[], &members(&n, &l), None);
            let got: Vec<usize> = waves.iter().map(|w| w.targets.len()).collect();
            assert_eq!(&got, expected, "{percents:?}");
            let all: HashSet<&String> = waves.iter().flat_map(|w| &w.targets).collect();
            assert_eq!(all.len(), 10, "every member in exactly one wave");
        }
        let rest = assign(&[spec("w", None, Some(30))], &[], &members(&n, &l), None);
        assert_eq!(rest.last().map(|w| w.name.as_str()), Some(REST_WAVE));
    }

    #[test]
    fn selector_waves_take_matching_targets_then_percent_fills_up() {
        let n = names(10);
        let l: Vec<Labels> = (0..10)
            .map(|i| labels(&[("ring", if i < 2 { "0" } else { "1" })]))
            .collect();
        let specs = [
            spec("canary", Some(labels(&[("ring", "0")])), None),
            spec("half", None, Some(50)),
            spec("all", None, Some(100)),
        ];
        let waves = assign(&specs, &[], &members(&n, &l), None);
        assert_eq!(
            sizes(&waves),
            vec![("canary".into(), 2), ("half".into(), 3), ("all".into(), 5)]
        );
        let mut canary = waves[0].targets.clone();
        canary.sort();
        assert_eq!(canary, vec!["t00", "t01"]);
        // Selector + percent: half of the ring-1 targets.
        let both = assign(
            &[spec("ring1-half", Some(labels(&[("ring", "1")])), Some(50))],
            &[],
            &members(&n, &l),
            None,
        );
        assert_eq!(sizes(&both), vec![("ring1-half".into(), 4), ("rest".into(), 6)]);
    }

    #[test]
    fn order_is_stable_and_independent_of_input_order() {
        let n = names(20);
        let l = vec![Labels::new(); 20];
        let specs = [spec("a", None, Some(20)), spec("b", None, Some(100))];
        let forward = assign(&specs, &[], &members(&n, &l), None);
        let mut reversed = members(&n, &l);
        reversed.reverse();
        assert_eq!(assign(&specs, &[], &reversed, None), forward);
        // The order is the hash order, not the name order.
        let mut by_hash = n.clone();
        by_hash.sort_by_key(|s| stable_hash(s));
        assert_eq!(forward[0].targets, by_hash[..4].to_vec());
    }

    #[test]
    fn no_waves_is_one_wave_all() {
        let n = names(3);
        let l = vec![Labels::new(); 3];
        let waves = assign(&[], &[], &members(&n, &l), None);
        assert_eq!(sizes(&waves), vec![(ALL_WAVE.into(), 3)]);
    }

    fn record(entries: &[(&str, &str, RolloutTargetStatus, Option<&str>)]) -> RolloutRecord {
        RolloutRecord {
            component: "billing".into(),
            version: semver::Version::new(2, 0, 0),
            started: "2026-11-21T10:00:00Z".into(),
            waves: Vec::new(),
            targets: entries
                .iter()
                .map(|(t, wave, status, finished)| {
                    (
                        t.to_string(),
                        RolloutTarget {
                            wave: wave.to_string(),
                            status: *status,
                            started: "2026-11-21T10:00:00Z".into(),
                            finished: finished.map(str::to_string),
                        },
                    )
                })
                .collect(),
            failures: 0,
            halted: None,
        }
    }

    #[test]
    fn recorded_wave_placement_is_kept() {
        let n = names(10);
        let l = vec![Labels::new(); 10];
        let specs = [spec("first", None, Some(10)), spec("all", None, Some(100))];
        let fresh = assign(&specs, &[], &members(&n, &l), None);
        // Record a target the fresh assignment puts in `all` as having run in `first`.
        let moved = fresh[1].targets[0].clone();
        let rec = record(&[(
            &moved,
            "first",
            RolloutTargetStatus::Succeeded,
            Some("2026-11-21T10:05:00Z"),
        )]);
        let waves = assign(&specs, &[], &members(&n, &l), Some(&rec));
        assert!(waves[0].targets.contains(&moved));
        assert_eq!(
            waves[0].targets.len(),
            1,
            "the recorded target already fills the 10% wave"
        );
    }

    #[test]
    fn progress_and_gate_through_soak() {
        let soak = Duration::from_secs(30 * 60);
        let waves = vec![
            PlannedWave {
                name: "canary".into(),
                soak: Some(soak),
                targets: vec!["a".into()],
            },
            PlannedWave {
                name: "all".into(),
                soak: None,
                targets: vec!["b".into()],
            },
        ];
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let p = progress(&waves, None, at("2026-11-21T10:00:00Z"));
        assert_eq!(p[0].status, WaveStatus::Pending);
        assert_eq!(gate(&waves, &p, 0), WaveGate::Go);
        assert_eq!(
            gate(&waves, &p, 1),
            WaveGate::WaitsFor {
                wave: "canary".into(),
                finished: 0,
                total: 1
            }
        );
        let mut rec = record(&[(
            "a",
            "canary",
            RolloutTargetStatus::Succeeded,
            Some("2026-11-21T10:10:00Z"),
        )]);
        let p = progress(&waves, Some(&rec), at("2026-11-21T10:20:00Z"));
        assert_eq!(p[0].status, WaveStatus::Soaking);
        assert_eq!(
            gate(&waves, &p, 1),
            WaveGate::Soaking {
                wave: "canary".into(),
                until: at("2026-11-21T10:40:00Z")
            }
        );
        // A recorded completion time wins over the last finish.
        rec.waves.push(WaveRecord {
            name: "canary".into(),
            started: None,
            completed: Some("2026-11-21T10:15:00Z".into()),
        });
        let p = progress(&waves, Some(&rec), at("2026-11-21T10:44:59Z"));
        assert_eq!(p[0].soak_until, Some(at("2026-11-21T10:45:00Z")));
        let p = progress(&waves, Some(&rec), at("2026-11-21T10:45:00Z"));
        assert_eq!(p[0].status, WaveStatus::Complete);
        assert_eq!(gate(&waves, &p, 1), WaveGate::Go);
    }

    #[test]
    fn halted_by_record_or_by_failures() {
        let mut rec = record(&[]);
        assert_eq!(halted(Some(&rec), 0), None);
        rec.failures = 2;
        assert!(halted(Some(&rec), 1).is_some_and(|r| r.contains("2 failed targets exceed maxFailures 1")));
        assert_eq!(halted(Some(&rec), 2), None);
        rec.halted = Some(Halt {
            at: "2026-11-21T11:00:00Z".into(),
            target: "t03".into(),
            reason: "health check http failed".into(),
        });
        assert!(halted(Some(&rec), 5).is_some_and(|r| r.contains("after t03 failed: health check http failed")));
        assert_eq!(halted(None, 0), None);
    }
}
