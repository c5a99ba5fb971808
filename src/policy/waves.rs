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
//! - **Cumulative sizes.** A `percent` wave brings the rollout to `ceil(percent% × rollout size)`
//!   targets in total, counting the earlier waves' targets; it adds targets in hash order until
//!   it has that many, and always at least one while anyone is left (so a `percent: 5` canary
//!   after `dev` and `staging` selector waves that already hold more than 5% is not empty). A
//!   `selector` wave adds every member matching the selector. With both, it adds members
//!   matching the selector until `ceil(percent%)` of those are in (again at least one). A wave
//!   with neither takes everyone left.
//! - **Groups.** With `groupBy: <label>`, targets sharing that label's value are one unit: a
//!   wave takes whole groups (a percent wave may overshoot its goal by the rest of a group; a
//!   selector wave takes a group when any member matches). Groups are ordered by the hash of
//!   the label value, so two rollouts grouped by the same label (a tenant's backend and its
//!   frontend are two components, two rollouts) put the same tenants in the same waves.
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

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::manifest::{LabelView, WaveSpec};
use crate::state::{AnalysisStatus, RolloutRecord, RolloutTargetStatus, WaveAnalysis};

use super::analysis::{AnalysisView, Timetable};

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
    pub labels: Option<LabelView<'a>>,
}

/// One wave with the targets it adds (not counting earlier waves'), in hash order.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWave {
    pub name: String,
    pub soak: Option<Duration>,
    pub targets: Vec<String>,
    /// The analysis round interval, when health checks run through this wave's soak.
    pub analysis: Option<Duration>,
}

/// How a rollout's targets are split: the policy's waves, their parsed soaks and `groupBy`.
#[derive(Debug, Clone, Copy)]
pub struct WaveRules<'a> {
    pub specs: &'a [WaveSpec],
    /// The parsed `soak`s of `specs`, in order (missing = none).
    pub soaks: &'a [Option<Duration>],
    /// `rollout.groupBy`: targets sharing this label's value move together.
    pub group_by: Option<&'a str>,
    /// The health round interval, when the policy (or the component) has checks to run through
    /// every soak; `None`: soaks are only waits.
    pub analysis: Option<Duration>,
}

/// A member with its place in the members given to [`assign`].
type Placed<'a> = (usize, Member<'a>);

/// Targets that move together (one target, or every member sharing the `groupBy` value), all
/// groups in one list: no list per group (issue #17: without `groupBy` that was one allocation
/// per target of every rollout on every pass).
struct Groups<'a> {
    /// (place in the members given, member) in group order, each name once.
    members: Vec<Placed<'a>>,
    /// Where each group lies in `members`, in order.
    ranges: Vec<std::ops::Range<usize>>,
    /// (place, place of the member kept) of each member left out as a second one of its name.
    twins: Vec<(usize, usize)>,
}

impl<'a> Groups<'a> {
    fn len(&self) -> usize {
        self.ranges.len()
    }

    /// The members of group `g`.
    fn of(&self, g: usize) -> &[Placed<'a>] {
        &self.members[self.ranges[g].clone()]
    }
}

/// Splits `members` into groups ordered by the stable hash of the `groupBy` value (or of the
/// name, for a target without that label), so two rollouts grouped by the same label (a tenant's
/// backend and frontend) put the same tenants in the same waves.
fn groups<'a>(members: &[Member<'a>], group_by: Option<&str>) -> Groups<'a> {
    // Each name hashed once, not once per comparison of the sort.
    let mut ordered: Vec<(u64, usize, Member<'a>)> = members
        .iter()
        .enumerate()
        .map(|(at, m)| (stable_hash(m.name), at, *m))
        .collect();
    // Stable, so of two members of one name the first given is kept.
    ordered.sort_by(|(ha, _, a), (hb, _, b)| (ha, a.name).cmp(&(hb, b.name)));
    let mut twins = Vec::new();
    ordered.dedup_by(|(_, at, a), (_, kept, b)| {
        let twin = a.name == b.name;
        if twin {
            twins.push((*at, *kept));
        }
        twin
    });
    let Some(label) = group_by else {
        // Every target its own group, already in the order of its key (hash, then name).
        return Groups {
            ranges: (0..ordered.len()).map(|g| g..g + 1).collect(),
            members: ordered.into_iter().map(|(_, at, m)| (at, m)).collect(),
            twins,
        };
    };
    // Key: (hash, 0 = label value / 1 = name, the text).
    let mut by_key: BTreeMap<(u64, u8, &'a str), Vec<Placed<'a>>> = BTreeMap::new();
    for (name_hash, at, m) in ordered {
        let value = m.labels.and_then(|labels| labels.labels().get(label));
        let key = match value {
            Some(v) => (stable_hash(v), 0, v.as_str()),
            None => (name_hash, 1, m.name),
        };
        by_key.entry(key).or_default().push((at, m));
    }
    let mut grouped = Groups {
        members: Vec::with_capacity(members.len()),
        ranges: Vec::with_capacity(by_key.len()),
        twins,
    };
    for group in by_key.into_values() {
        let start = grouped.members.len();
        grouped.members.extend(group);
        grouped.ranges.push(start..grouped.members.len());
    }
    grouped
}

/// The waves of a rollout, and the wave of each member.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The declared waves in order (or the one wave `all`), then `rest` when some member is
    /// left for it.
    pub waves: Vec<PlannedWave>,
    /// `wave_of[i]`: the index in `waves` of the wave that holds the `i`th member given (a
    /// second member of one name: the wave of the first).
    pub wave_of: Vec<usize>,
}

/// Splits `members` into waves (see the module docs).
///
/// # Guarantees
/// Every member is in exactly one wave; members sharing the `groupBy` value are in the same wave
/// (unless the state branch recorded them apart); every declared wave that some member is left
/// for holds at least one; the result does not depend on the order of `members` (but for which
/// of two members of one name gives its labels).
pub fn assign(rules: WaveRules, members: &[Member], recorded: Option<&RolloutRecord>) -> Assignment {
    let WaveRules {
        specs,
        soaks,
        group_by,
        analysis,
    } = rules;
    let groups = groups(members, group_by);
    let mut wave_of = vec![0; members.len()];
    let with_twins = |mut wave_of: Vec<usize>| {
        for &(twin, kept) in &groups.twins {
            wave_of[twin] = wave_of[kept];
        }
        wave_of
    };
    if specs.is_empty() {
        let waves = vec![PlannedWave {
            name: ALL_WAVE.to_string(),
            soak: None,
            analysis: None,
            targets: groups.members.iter().map(|(_, m)| m.name.to_string()).collect(),
        }];
        return Assignment {
            waves,
            wave_of: with_twins(wave_of),
        };
    }
    let index_of: BTreeMap<&str, usize> = specs.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    // A group goes where the state branch recorded its earliest member (the others follow).
    let pinned: Vec<Option<usize>> = (0..groups.len())
        .map(|g| {
            groups
                .of(g)
                .iter()
                .filter_map(|(_, m)| index_of.get(recorded?.targets.get(m.name)?.wave.as_str()).copied())
                .min()
        })
        .collect();
    let total = groups.members.len();
    let mut taken = vec![false; groups.len()];
    let mut placed = 0usize;
    let mut waves = Vec::with_capacity(specs.len() + 1);
    // Puts group `g` in wave `w`: its names onto `targets`; returns how many.
    let mut take = |g: usize, w: usize, targets: &mut Vec<String>, taken: &mut [bool]| -> usize {
        taken[g] = true;
        for (at, m) in groups.of(g) {
            targets.push(m.name.to_string());
            wave_of[*at] = w;
        }
        groups.of(g).len()
    };
    for (w, spec) in specs.iter().enumerate() {
        let mut targets: Vec<String> = Vec::new();
        for (g, pin) in pinned.iter().enumerate() {
            if *pin == Some(w) {
                placed += take(g, w, &mut targets, &mut taken);
            }
        }
        // The selector resolved once in the members' selector table (they share one).
        let table = members.iter().find_map(|m| m.labels.and_then(|l| l.table()));
        let resolved = spec.selector.as_ref().zip(table).map(|(s, table)| table.resolve(s));
        let matches = |g: usize| {
            groups.of(g).iter().any(|(_, m)| {
                m.labels.is_some_and(|l| match &resolved {
                    Some(resolved) => l.matches_resolved(resolved),
                    None => l.matches(spec.selector.as_ref()),
                })
            })
        };
        let free = |g: usize, taken: &[bool]| !taken[g] && pinned[g].is_none();
        match (&spec.selector, spec.percent) {
            (_, None) => {
                for g in 0..groups.len() {
                    // Without a selector, every member matches, even one only recorded.
                    if free(g, &taken) && (spec.selector.is_none() || matches(g)) {
                        placed += take(g, w, &mut targets, &mut taken);
                    }
                }
            }
            (None, Some(percent)) => {
                let goal = cumulative_goal(percent, total);
                for g in 0..groups.len() {
                    if placed >= goal && !targets.is_empty() {
                        break;
                    }
                    if free(g, &taken) {
                        placed += take(g, w, &mut targets, &mut taken);
                    }
                }
            }
            (Some(_), Some(percent)) => {
                // Labels are only known for desired targets; recorded-only ones never match.
                let pool: Vec<usize> = (0..groups.len()).filter(|&g| matches(g)).collect();
                let size: usize = pool.iter().map(|&g| groups.of(g).len()).sum();
                let goal = cumulative_goal(percent, size);
                let mut have: usize = pool.iter().filter(|&&g| taken[g]).map(|&g| groups.of(g).len()).sum();
                for g in pool {
                    if have >= goal && !targets.is_empty() {
                        break;
                    }
                    if free(g, &taken) {
                        let n = take(g, w, &mut targets, &mut taken);
                        placed += n;
                        have += n;
                    }
                }
            }
        }
        let soak = soaks.get(w).copied().flatten();
        waves.push(PlannedWave {
            name: spec.name.clone(),
            soak,
            targets,
            analysis: analysis.filter(|_| soak.is_some_and(|s| !s.is_zero())),
        });
    }
    let mut rest = Vec::new();
    for g in 0..groups.len() {
        if !taken[g] {
            take(g, specs.len(), &mut rest, &mut taken);
        }
    }
    if !rest.is_empty() {
        waves.push(PlannedWave {
            name: REST_WAVE.to_string(),
            soak: None,
            targets: rest,
            analysis: None,
        });
    }
    Assignment {
        waves,
        wave_of: with_twins(wave_of),
    }
}

/// `ceil(percent% of n)`, at most `n`.
fn cumulative_goal(percent: u32, n: usize) -> usize {
    let goal = (u64::from(percent) * n as u64).div_ceil(100);
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
    /// The health analysis through the soak (once the wave completed, when it has one). The
    /// wave soaks until the analysis passed, even past `soak_until`.
    pub analysis: Option<AnalysisView>,
}

/// The progress of every wave of a rollout at `now`.
pub fn progress(waves: &[PlannedWave], recorded: Option<&RolloutRecord>, now: Timestamp) -> Vec<WaveProgress> {
    let entry = |t: &str| recorded.and_then(|r| r.targets.get(t));
    let recorded_completion: BTreeMap<&str, Timestamp> = recorded
        .into_iter()
        .flat_map(|r| &r.waves)
        .filter_map(|w| Some((w.name.as_str(), w.completed.as_deref()?.parse().ok()?)))
        .collect();
    let recorded_analysis: BTreeMap<&str, &WaveAnalysis> = recorded
        .into_iter()
        .flat_map(|r| &r.waves)
        .filter_map(|w| Some((w.name.as_str(), w.analysis.as_ref()?)))
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
                    analysis: None,
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
                    analysis: None,
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
            let analysis = match (completed, wave.soak, wave.analysis) {
                (Some(completed), Some(soak), Some(interval)) if soak_until.is_some() => {
                    let timetable = Timetable {
                        completed,
                        soak,
                        interval,
                    };
                    let record = recorded_analysis.get(wave.name.as_str()).copied();
                    Some(AnalysisView::new(&timetable, record, now))
                }
                _ => None,
            };
            let analysing = analysis.as_ref().is_some_and(|a| a.status == AnalysisStatus::Running);
            WaveProgress {
                status: match soak_until {
                    Some(until) if now < until || analysing => WaveStatus::Soaking,
                    _ => WaveStatus::Complete,
                },
                finished,
                total,
                soak_until,
                analysis,
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
    /// An earlier wave finished and soaks until `until` (and, with analysis, until its
    /// analysis passed: `analysis` says where it stands).
    Soaking {
        wave: String,
        until: Timestamp,
        analysis: Option<String>,
    },
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
                        analysis: p.analysis.as_ref().map(AnalysisView::summary),
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

/// Where an earlier stage (`after: { policy, soak }`) stands for a rollout of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageGate {
    /// The stage is complete and has been for its soak (or governs no target of the component).
    Open,
    /// `done` of the stage's `total` targets of the component run the version, converged.
    Waiting { done: usize, total: usize },
    /// Every target of the stage runs the version since `since`; the gate opens at `until`.
    Soaking { since: Timestamp, until: Timestamp },
}

/// The gate of a stage whose targets of the component converged on the version at the given
/// instants (`None`: not there yet). A stage with no such target holds nothing back: it is not a
/// stage of this component.
pub fn stage_gate(members: &[Option<Timestamp>], soak: Duration, now: Timestamp) -> StageGate {
    let done = members.iter().filter(|m| m.is_some()).count();
    if done < members.len() {
        return StageGate::Waiting {
            done,
            total: members.len(),
        };
    }
    let Some(since) = members.iter().flatten().max().copied() else {
        return StageGate::Open;
    };
    let until = SignedDuration::try_from(soak)
        .ok()
        .and_then(|s| since.checked_add(s).ok())
        .unwrap_or(since);
    if now < until {
        StageGate::Soaking { since, until }
    } else {
        StageGate::Open
    }
}

/// Why a rollout is halted, if it is: the state branch says so, or more targets failed than
/// `maxFailures` tolerates. A halted rollout stays halted until the desired version changes
/// (another version is another rollout).
pub fn halted(recorded: Option<&RolloutRecord>, max_failures: u32) -> Option<String> {
    let record = recorded?;
    if let Some(halt) = &record.halted {
        return Some(format!(
            "rollout {} {} halted at {} after {} failed: {}; retry targets with `gantry retry TARGET…` (bumps spec.retry; a retried target is no longer held) or pin another version (fix forward or revert) to continue",
            record.component, record.version, halt.at, halt.target, halt.reason
        ));
    }
    (record.failures > max_failures).then(|| {
        format!(
            "rollout {} {} halted: {} failed targets exceed maxFailures {max_failures}; retry targets with `gantry retry TARGET…` or pin another version (fix forward or revert) to continue",
            record.component, record.version, record.failures
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;
    use crate::manifest::Labels;
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
            after: None,
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
                labels: Some(LabelView::plain(l)),
            })
            .collect()
    }

    /// `assign` with plain waves (no soaks, no grouping).
    fn plain(specs: &[WaveSpec], members: &[Member], recorded: Option<&RolloutRecord>) -> Vec<PlannedWave> {
        let rules = WaveRules {
            specs,
            soaks: &[],
            group_by: None,
            analysis: None,
        };
        assign(rules, members, recorded).waves
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
            (&[10, 10, 100], &[1, 1, 8]), // a wave already reached still holds one
            (&[30, 60], &[3, 3, 4]),      // leftovers go to `rest`
        ];
        for (percents, expected) in cases {
            let specs: Vec<WaveSpec> = percents
                .iter()
                .enumerate()
                .map(|(i, p)| spec(&format!("w{i}"), None, Some(*p)))
                .collect();
            let waves = plain(&specs, &members(&n, &l), None);
            let got: Vec<usize> = waves.iter().map(|w| w.targets.len()).collect();
            assert_eq!(&got, expected, "{percents:?}");
            let all: HashSet<&String> = waves.iter().flat_map(|w| &w.targets).collect();
            assert_eq!(all.len(), 10, "every member in exactly one wave");
        }
        let rest = plain(&[spec("w", None, Some(30))], &members(&n, &l), None);
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
        let waves = plain(&specs, &members(&n, &l), None);
        assert_eq!(
            sizes(&waves),
            vec![("canary".into(), 2), ("half".into(), 3), ("all".into(), 5)]
        );
        let mut canary = waves[0].targets.clone();
        canary.sort();
        assert_eq!(canary, vec!["t00", "t01"]);
        // Selector + percent: half of the ring-1 targets.
        let both = plain(
            &[spec("ring1-half", Some(labels(&[("ring", "1")])), Some(50))],
            &members(&n, &l),
            None,
        );
        assert_eq!(sizes(&both), vec![("ring1-half".into(), 4), ("rest".into(), 6)]);
    }

    /// Regression (issue #11): after `dev` and `staging` selector waves, a `percent: 5`
    /// production canary got 0 targets because the selector waves already exceeded 5%.
    #[test]
    fn percent_wave_after_selector_waves_is_never_empty() {
        // (fleet size, targets in dev, in staging, percents after them, expected sizes)
        type Case = (usize, usize, usize, &'static [u32], &'static [usize]);
        let cases: &[Case] = &[
            (20, 2, 2, &[5, 25, 75, 100], &[2, 2, 1, 1, 9, 5]),
            (4, 1, 1, &[5, 100], &[1, 1, 1, 1]),
            (3, 1, 1, &[5, 25, 100], &[1, 1, 1]), // nobody left for 25% and 100%
            (100, 10, 10, &[5, 25, 100], &[10, 10, 1, 4, 75]),
            (1, 0, 0, &[1, 100], &[0, 0, 1]),
            (7, 0, 0, &[50, 100], &[0, 0, 4, 3]),
        ];
        for (size, dev, staging, percents, expected) in cases {
            let n = names(*size);
            let l: Vec<Labels> = (0..*size)
                .map(|i| {
                    let env = if i < *dev {
                        "dev"
                    } else if i < dev + staging {
                        "staging"
                    } else {
                        "prod"
                    };
                    labels(&[("env", env)])
                })
                .collect();
            let mut specs = vec![
                spec("dev", Some(labels(&[("env", "dev")])), None),
                spec("staging", Some(labels(&[("env", "staging")])), None),
            ];
            specs.extend(
                percents
                    .iter()
                    .enumerate()
                    .map(|(i, p)| spec(&format!("p{i}-{p}"), None, Some(*p))),
            );
            let waves = plain(&specs, &members(&n, &l), None);
            let got: Vec<usize> = waves.iter().map(|w| w.targets.len()).collect();
            let what = format!("{size} targets, {dev} dev, {staging} staging, then {percents:?}");
            assert_eq!(&got[..expected.len().min(got.len())], *expected, "{what}: {waves:?}");
            assert_eq!(got.iter().sum::<usize>(), *size, "{what}: everyone placed once");
            // Every declared wave that had someone left to take holds at least one target.
            let mut left = *size;
            for (w, wave) in waves.iter().enumerate().take(specs.len()) {
                if left > 0 && specs[w].percent.is_some() {
                    assert!(!wave.targets.is_empty(), "{what}: wave {} is empty", wave.name);
                }
                left -= wave.targets.len();
            }
        }
    }

    #[test]
    fn percent_arithmetic_around_small_fleets() {
        // (fleet size, percent, cumulative goal)
        let cases = [
            (0, 50, 0),
            (1, 1, 1),
            (1, 100, 1),
            (2, 1, 1),
            (2, 50, 1),
            (2, 51, 2),
            (3, 33, 1),
            (3, 34, 2),
            (10, 5, 1),
            (10, 25, 3),
            (19, 5, 1),
            (21, 5, 2),
            (100, 1, 1),
            (100, 99, 99),
        ];
        for (n, percent, goal) in cases {
            assert_eq!(cumulative_goal(percent, n), goal, "{percent}% of {n}");
        }
    }

    #[test]
    fn group_by_keeps_every_target_of_a_group_in_one_wave() {
        // 20 tenants with two targets each (backend and frontend of one component's rollout),
        // plus 3 targets without the label.
        let mut n = Vec::new();
        let mut l = Vec::new();
        for t in 0..20 {
            for role in ["backend", "frontend"] {
                n.push(format!("tenant{t:02}-{role}"));
                l.push(labels(&[("tenant", &format!("tenant{t:02}"))]));
            }
        }
        for i in 0..3 {
            n.push(format!("loner{i}"));
            l.push(Labels::new());
        }
        let specs: Vec<WaveSpec> = [5, 25, 75, 100]
            .iter()
            .map(|p| spec(&format!("p{p}"), None, Some(*p)))
            .collect();
        let rules = WaveRules {
            specs: &specs,
            soaks: &[],
            group_by: Some("tenant"),
            analysis: None,
        };
        let waves = assign(rules, &members(&n, &l), None).waves;
        let tenant_of = |name: &str| name.split('-').next().unwrap().to_string();
        let mut wave_of_tenant: BTreeMap<String, &str> = BTreeMap::new();
        for wave in &waves {
            for t in &wave.targets {
                if t.starts_with("loner") {
                    continue;
                }
                let previous = wave_of_tenant.insert(tenant_of(t), wave.name.as_str());
                assert!(
                    previous.is_none_or(|w| w == wave.name),
                    "{t} split from its pair: {previous:?} vs {}",
                    wave.name
                );
            }
        }
        assert_eq!(wave_of_tenant.len(), 20);
        // Cumulative goals are met with whole groups: 5% of 43 = 3 targets → 2 groups at most.
        let cumulative: Vec<usize> = waves
            .iter()
            .scan(0, |sum, w| {
                *sum += w.targets.len();
                Some(*sum)
            })
            .collect();
        for (c, p) in cumulative.iter().zip([5, 25, 75, 100]) {
            let goal = cumulative_goal(p, 43);
            assert!(*c >= goal && *c <= goal + 1, "{p}%: {c} targets for a goal of {goal}");
        }
    }

    /// Regression (issue #11): 13 of 20 customers had their backend and frontend in different
    /// stages. Two rollouts grouped by `tenant` (one per component) order tenants by the hash of
    /// the label value, so every stage holds the same tenants in both.
    #[test]
    fn group_by_puts_the_same_tenants_in_the_same_waves_of_two_rollouts() {
        let specs: Vec<WaveSpec> = [5, 25, 75, 100]
            .iter()
            .map(|p| spec(&format!("p{p}"), None, Some(*p)))
            .collect();
        let rules = WaveRules {
            specs: &specs,
            soaks: &[],
            group_by: Some("tenant"),
            analysis: None,
        };
        let tenants: Vec<String> = (0..20).map(|t| format!("customer-{t:02}")).collect();
        let l: Vec<Labels> = tenants.iter().map(|t| labels(&[("tenant", t)])).collect();
        let per_wave = |role: &str| -> Vec<BTreeSet<String>> {
            let n: Vec<String> = tenants.iter().map(|t| format!("{t}-{role}")).collect();
            assign(rules, &members(&n, &l), None)
                .waves
                .iter()
                .map(|w| {
                    w.targets
                        .iter()
                        .map(|t| t.trim_end_matches(&format!("-{role}")).to_string())
                        .collect()
                })
                .collect()
        };
        let backend = per_wave("backend");
        assert_eq!(backend, per_wave("frontend"));
        let sizes: Vec<usize> = backend.iter().map(BTreeSet::len).collect();
        assert_eq!(sizes, vec![1, 4, 10, 5]);
        // Without groupBy the two rollouts disagree (the order follows the target names).
        let ungrouped = |role: &str| -> Vec<String> {
            let n: Vec<String> = tenants.iter().map(|t| format!("{t}-{role}")).collect();
            plain(&specs, &members(&n, &l), None)[1]
                .targets
                .iter()
                .map(|t| t.trim_end_matches(&format!("-{role}")).to_string())
                .collect()
        };
        assert_ne!(ungrouped("backend"), ungrouped("frontend"));
    }

    #[test]
    fn order_is_stable_and_independent_of_input_order() {
        let n = names(20);
        let l = vec![Labels::new(); 20];
        let specs = [spec("a", None, Some(20)), spec("b", None, Some(100))];
        let forward = plain(&specs, &members(&n, &l), None);
        let mut reversed = members(&n, &l);
        reversed.reverse();
        assert_eq!(plain(&specs, &reversed, None), forward);
        // The order is the hash order, not the name order.
        let mut by_hash = n.clone();
        by_hash.sort_by_key(|s| stable_hash(s));
        assert_eq!(forward[0].targets, by_hash[..4].to_vec());
    }

    #[test]
    fn no_waves_is_one_wave_all() {
        let n = names(3);
        let l = vec![Labels::new(); 3];
        let waves = plain(&[], &members(&n, &l), None);
        assert_eq!(sizes(&waves), vec![(ALL_WAVE.into(), 3)]);
    }

    fn record(entries: &[(&str, &str, RolloutTargetStatus, Option<&str>)]) -> RolloutRecord {
        RolloutRecord {
            component: "billing".into(),
            version: crate::manifest::Version::new(2, 0, 0),
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
        let fresh = plain(&specs, &members(&n, &l), None);
        // Record a target the fresh assignment puts in `all` as having run in `first`.
        let moved = fresh[1].targets[0].clone();
        let rec = record(&[(
            &moved,
            "first",
            RolloutTargetStatus::Succeeded,
            Some("2026-11-21T10:05:00Z"),
        )]);
        let waves = plain(&specs, &members(&n, &l), Some(&rec));
        assert!(waves[0].targets.contains(&moved));
        assert_eq!(
            waves[0].targets.len(),
            1,
            "the recorded target already fills the 10% wave"
        );
    }

    /// `wave_of` gives every member given, a second one of a name too, the wave holding its
    /// name: with and without `groupBy`, declared waves or none, percentages, a selector, a
    /// wave left for the rest, and placements the state branch recorded.
    #[test]
    fn each_members_wave_is_the_one_holding_its_name() {
        let mut n = Vec::new();
        let mut l = Vec::new();
        for t in 0..40 {
            n.push(format!("t{t:02}"));
            let ring = if t % 5 == 0 { "canary" } else { "main" };
            l.push(labels(&[("tenant", &format!("c{}", t % 7)), ("ring", ring)]));
        }
        // Two names given twice, the second time at the end and without labels.
        for twin in ["t05", "t17"] {
            n.push(twin.to_string());
            l.push(Labels::new());
        }
        let canary = || Some(labels(&[("ring", "canary")]));
        let spec_sets = [
            vec![],
            vec![spec("p10", None, Some(10)), spec("p50", None, Some(50))],
            vec![
                spec("canary", canary(), None),
                spec("half", None, Some(50)),
                spec("all", None, None),
            ],
            vec![spec("canary", canary(), Some(50))],
        ];
        let rec = record(&[
            (
                "t33",
                "p50",
                RolloutTargetStatus::Succeeded,
                Some("2026-11-21T10:05:00Z"),
            ),
            (
                "t17",
                "canary",
                RolloutTargetStatus::Failed,
                Some("2026-11-21T10:05:00Z"),
            ),
        ]);
        let mut checked = 0;
        for group_by in [None, Some("tenant")] {
            for specs in &spec_sets {
                for recorded in [None, Some(&rec)] {
                    let rules = WaveRules {
                        specs,
                        soaks: &[],
                        group_by,
                        analysis: None,
                    };
                    let assigned = assign(rules, &members(&n, &l), recorded);
                    assert_eq!(assigned.wave_of.len(), n.len());
                    for (i, name) in n.iter().enumerate() {
                        let wave = &assigned.waves[assigned.wave_of[i]];
                        assert!(
                            wave.targets.contains(name),
                            "{name} (member {i}) is not in wave {} it was given ({group_by:?}, {} waves declared)",
                            wave.name,
                            specs.len()
                        );
                    }
                    let held: usize = assigned.waves.iter().map(|w| w.targets.len()).sum();
                    assert_eq!(held, 40, "every name once");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 16);
    }

    #[test]
    fn progress_and_gate_through_soak() {
        let soak = Duration::from_secs(30 * 60);
        let waves = vec![
            PlannedWave {
                name: "canary".into(),
                soak: Some(soak),
                targets: vec!["a".into()],
                analysis: None,
            },
            PlannedWave {
                name: "all".into(),
                soak: None,
                targets: vec!["b".into()],
                analysis: None,
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
                until: at("2026-11-21T10:40:00Z"),
                analysis: None,
            }
        );
        // A recorded completion time wins over the last finish.
        rec.waves.push(WaveRecord {
            name: "canary".into(),
            started: None,
            completed: Some("2026-11-21T10:15:00Z".into()),
            analysis: None,
        });
        let p = progress(&waves, Some(&rec), at("2026-11-21T10:44:59Z"));
        assert_eq!(p[0].soak_until, Some(at("2026-11-21T10:45:00Z")));
        let p = progress(&waves, Some(&rec), at("2026-11-21T10:45:00Z"));
        assert_eq!(p[0].status, WaveStatus::Complete);
        assert_eq!(gate(&waves, &p, 1), WaveGate::Go);
    }

    #[test]
    fn a_stage_opens_once_every_target_converged_and_soaked() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let soak = Duration::from_secs(48 * 3600);
        let now = at("2026-11-23T09:00:00Z");
        let done = |s: &str| Some(at(s));
        let cases: &[(&[Option<Timestamp>], StageGate)] = &[
            (&[], StageGate::Open),
            (
                &[done("2026-11-21T10:00:00Z"), None],
                StageGate::Waiting { done: 1, total: 2 },
            ),
            (
                &[done("2026-11-21T10:00:00Z"), done("2026-11-21T10:30:00Z")],
                StageGate::Soaking {
                    since: at("2026-11-21T10:30:00Z"),
                    until: at("2026-11-23T10:30:00Z"),
                },
            ),
            (&[done("2026-11-21T09:00:00Z")], StageGate::Open),
            (
                &[done("2026-11-21T09:00:01Z")],
                StageGate::Soaking {
                    since: at("2026-11-21T09:00:01Z"),
                    until: at("2026-11-23T09:00:01Z"),
                },
            ),
        ];
        for (members, expected) in cases {
            assert_eq!(&stage_gate(members, soak, now), expected, "{members:?}");
        }
        assert_eq!(
            stage_gate(&[done("2026-11-23T09:00:00Z")], Duration::ZERO, now),
            StageGate::Open
        );
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
            specs: Default::default(),
        });
        assert!(halted(Some(&rec), 5).is_some_and(|r| r.contains("after t03 failed: health check http failed")));
        assert_eq!(halted(None, 0), None);
    }
}
