//! The timeline the status page draws (issue #15): for every rollout wave, when its targets are
//! projected to start, when their windows are open, when the wave's soak runs, against "now".
//!
//! Made from the [`Schedule`] projection and the same compiled windows the planner judges, so
//! the page shows what `gantry schedule` says. Rows are one per (rollout, wave, set of governing
//! windows): targets under other windows get their own row, so a row's shaded windows are the
//! windows of every target on it. The page then keeps the targets a view selects and may split
//! rows by a label (one row per tenant): [`Timeline::select`].
//!
//! Pure: a function of the plan input and the schedule.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::manifest::Labels;
use crate::policy::window::TargetWindows;

use super::model::PlanInput;
use super::schedule::Schedule;

/// The right edge is at least this far after `now`.
const MIN_SPAN: SignedDuration = SignedDuration::from_hours(24);
/// And at most this far: a projection months ahead is a list, not a picture.
const MAX_SPAN: SignedDuration = SignedDuration::from_hours(24 * 62);
/// Window changes followed per row (a window opening every hour for two months is 1,488).
const MAX_WINDOW_CHANGES: usize = 2_000;

/// An interval of time, `from` before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Interval {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// One target on a row: where its start mark goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineTarget {
    pub target: String,
    pub labels: Labels,
    /// Null: not projected (held by something time alone does not lift).
    pub projected_start: Option<Timestamp>,
    /// Recorded succeeded in this rollout already.
    pub done: bool,
}

/// One row: a rollout's wave (and, after [`Timeline::select`] with a group key, one value of it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineRow {
    pub component: String,
    pub version: String,
    pub policy: Option<String>,
    pub wave: String,
    /// The label value this row groups (`tenant=acme`), after a grouping select.
    pub group: Option<String>,
    /// The windows governing the row's targets, by name (empty: none, always open).
    pub windows: Vec<String>,
    /// When those windows let a change start, clipped to the timeline (empty with no windows).
    pub open: Vec<Interval>,
    /// The wave's soak after its last target: recorded when the wave completed, else projected.
    pub soak: Option<Interval>,
    pub targets: Vec<TimelineTarget>,
}

/// What the page draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub now: Timestamp,
    /// The left edge: `now`, or earlier to show a soak that began before it.
    pub start: Timestamp,
    /// The right edge: past the last projected instant, within [`MIN_SPAN`]..[`MAX_SPAN`].
    pub end: Timestamp,
    pub rows: Vec<TimelineRow>,
}

/// Builds the timeline of `schedule`, projected from `input`.
pub fn timeline(input: &PlanInput, schedule: &Schedule) -> Timeline {
    let now = input.now;
    let gate = crate::policy::gates::WindowGate::new(input.windows, &input.desired.windows, now);
    let mut rows: BTreeMap<(usize, String, Vec<String>), TimelineRow> = BTreeMap::new();
    // The rollout a target is in: same component, version and policy.
    let rollout_of = |t: &super::schedule::TargetSchedule| {
        schedule
            .rollouts
            .iter()
            .position(|r| r.component == t.component && Some(&r.version) == t.to.as_ref() && r.policy == t.policy)
    };
    for t in &schedule.targets {
        let (Some(index), Some(wave)) = (rollout_of(t), t.wave.as_ref()) else {
            continue;
        };
        let rollout = &schedule.rollouts[index];
        let labels = input
            .desired
            .targets
            .get(&t.target)
            .map(|d| d.labels().clone())
            .unwrap_or_default();
        let windows: Vec<String> = gate.governing(&labels).iter().map(|w| w.name().to_string()).collect();
        let done = input
            .recorded
            .rollouts
            .get(&(rollout.component.clone(), rollout.version.clone()))
            .and_then(|r| r.targets.get(&t.target))
            .is_some_and(|e| e.status == crate::state::RolloutTargetStatus::Succeeded);
        rows.entry((index, wave.clone(), windows.clone()))
            .or_insert_with(|| TimelineRow {
                component: rollout.component.clone(),
                version: rollout.version.to_string(),
                policy: rollout.policy.clone(),
                wave: wave.clone(),
                group: None,
                windows,
                open: Vec::new(),
                soak: soak_of(input, rollout, wave),
                targets: Vec::new(),
            })
            .targets
            .push(TimelineTarget {
                target: t.target.clone(),
                labels,
                projected_start: t.projected_start,
                done,
            });
    }
    // Waves in their declared order within a rollout (the map orders them by name).
    let mut rows: Vec<((usize, usize), TimelineRow)> = rows
        .into_iter()
        .map(|((index, wave, _), row)| {
            let position = schedule.rollouts[index]
                .waves
                .iter()
                .position(|w| w.name == wave)
                .unwrap_or(usize::MAX);
            ((index, position), row)
        })
        .collect();
    rows.sort_by_key(|(key, _)| *key);
    let mut rows: Vec<TimelineRow> = rows.into_iter().map(|(_, row)| row).collect();

    let last = rows
        .iter()
        .flat_map(|r| {
            r.targets
                .iter()
                .filter_map(|t| t.projected_start)
                .chain(r.soak.map(|s| s.to))
        })
        .max()
        .unwrap_or(now);
    let span = last.duration_since(now).clamp(MIN_SPAN, MAX_SPAN);
    // A margin of a tenth after the last instant, so its mark is not on the edge.
    let end = now.saturating_add(span + span / 10).unwrap_or(now);
    let start = rows
        .iter()
        .filter_map(|r| r.soak.map(|s| s.from))
        .min()
        .unwrap_or(now)
        .max(now.saturating_sub(span / 4).unwrap_or(now))
        .min(now);
    for row in &mut rows {
        let governing: Vec<&crate::policy::window::WindowSchedule> = input
            .windows
            .iter()
            .filter(|w| row.windows.iter().any(|n| n == w.name()))
            .collect();
        if !governing.is_empty() {
            row.open = open_intervals(&TargetWindows::new(governing), start, end);
        }
    }
    Timeline { now, start, end, rows }
}

/// The wave's soak: from its completion (recorded, else the projected start of its last
/// target) for the policy's soak of that wave. None without a soak or a completion.
fn soak_of(input: &PlanInput, rollout: &super::schedule::RolloutSchedule, wave: &str) -> Option<Interval> {
    let policy = input
        .desired
        .policies
        .iter()
        .find(|p| Some(&p.manifest.name) == rollout.policy.as_ref())?;
    let position = policy.manifest.spec.rollout.waves.iter().position(|w| w.name == wave)?;
    let soak = (*policy.wave_soak.get(position)?)?;
    let recorded = input
        .recorded
        .rollouts
        .get(&(rollout.component.clone(), rollout.version.clone()))
        .and_then(|r| r.waves.iter().find(|w| w.name == wave))
        .and_then(|w| w.completed.as_deref())
        .and_then(|c| c.parse::<Timestamp>().ok());
    let from = recorded.or_else(|| rollout.waves.iter().find(|w| w.name == wave)?.projected_completion)?;
    let soak = SignedDuration::try_from(soak).ok()?;
    Some(Interval {
        from,
        to: from.saturating_add(soak).ok()?,
    })
}

/// When `windows` let a change start within `[start, end]`, walking their changes.
fn open_intervals(windows: &TargetWindows, start: Timestamp, end: Timestamp) -> Vec<Interval> {
    let mut open = Vec::new();
    let mut at = start;
    let mut opened = windows.is_open(start).then_some(start);
    for _ in 0..MAX_WINDOW_CHANGES {
        let Some(next) = windows.next_change(at).filter(|n| *n < end) else {
            break;
        };
        match opened.take() {
            Some(from) => open.push(Interval { from, to: next }),
            None => opened = Some(next),
        }
        at = next;
    }
    if let Some(from) = opened {
        open.push(Interval { from, to: end });
    }
    open
}

impl Timeline {
    /// The timeline of the targets `keep` selects, with rows split by the value of the label
    /// `group` (targets without it are grouped under `(none)`). Rows left empty are dropped.
    pub fn select(&self, keep: &dyn Fn(&TimelineRow, &TimelineTarget) -> bool, group: Option<&str>) -> Timeline {
        let mut rows = Vec::new();
        for row in &self.rows {
            let kept: Vec<&TimelineTarget> = row.targets.iter().filter(|t| keep(row, t)).collect();
            let mut groups: BTreeMap<Option<String>, Vec<TimelineTarget>> = BTreeMap::new();
            for t in kept {
                let value = group.map(|key| format!("{key}={}", t.labels.get(key).map_or("(none)", String::as_str)));
                groups.entry(value).or_default().push(t.clone());
            }
            for (value, targets) in groups {
                rows.push(TimelineRow {
                    group: value,
                    targets,
                    ..row.clone()
                });
            }
        }
        Timeline { rows, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn window(name: &str, yaml: &str) -> crate::policy::window::WindowSchedule {
        let spec: crate::manifest::WindowSpec = serde_saphyr::from_str(yaml).unwrap();
        crate::policy::window::WindowSchedule::compile(name, &spec).unwrap()
    }

    /// Open intervals follow the window to the second, across the DST change in Berlin
    /// (2026-03-29 02:00 → 03:00): the nightly 01:00–04:00 window is 2 h long that night.
    #[test]
    fn open_intervals_follow_the_window_across_dst() {
        let nightly = window(
            "nightly",
            "timezone: Europe/Berlin\nallow:\n  - { days: [mon, tue, wed, thu, fri, sat, sun], start: \"01:00\", end: \"04:00\" }\n",
        );
        let windows = TargetWindows::new([&nightly]);
        let open = open_intervals(&windows, at("2026-03-28T12:00:00Z"), at("2026-03-30T12:00:00Z"));
        assert_eq!(
            open,
            vec![
                Interval {
                    from: at("2026-03-29T00:00:00Z"),
                    to: at("2026-03-29T02:00:00Z")
                },
                Interval {
                    from: at("2026-03-29T23:00:00Z"),
                    to: at("2026-03-30T02:00:00Z")
                },
            ]
        );
    }

    /// Open at the left edge, and still open at the right edge: both intervals are clipped.
    #[test]
    fn open_intervals_are_clipped_to_the_timeline() {
        let day = window(
            "day",
            "timezone: UTC\nallow:\n  - { days: [mon, tue, wed, thu, fri, sat, sun], start: \"08:00\", end: \"20:00\" }\n",
        );
        let windows = TargetWindows::new([&day]);
        let open = open_intervals(&windows, at("2026-06-01T10:00:00Z"), at("2026-06-02T09:00:00Z"));
        assert_eq!(
            open,
            vec![
                Interval {
                    from: at("2026-06-01T10:00:00Z"),
                    to: at("2026-06-01T20:00:00Z")
                },
                Interval {
                    from: at("2026-06-02T08:00:00Z"),
                    to: at("2026-06-02T09:00:00Z")
                },
            ]
        );
        // A window that never opens in range: nothing is shaded.
        let never = open_intervals(&windows, at("2026-06-01T20:30:00Z"), at("2026-06-01T21:00:00Z"));
        assert!(never.is_empty(), "{never:?}");
    }

    #[test]
    fn select_keeps_chosen_targets_and_splits_rows_by_label() {
        let target = |name: &str, tenant: Option<&str>| TimelineTarget {
            target: name.to_string(),
            labels: tenant
                .map(|t| [("tenant".to_string(), t.to_string())].into())
                .unwrap_or_default(),
            projected_start: None,
            done: false,
        };
        let timeline = Timeline {
            now: at("2026-06-01T00:00:00Z"),
            start: at("2026-06-01T00:00:00Z"),
            end: at("2026-06-02T00:00:00Z"),
            rows: vec![TimelineRow {
                component: "billing".into(),
                version: "2.0.0".into(),
                policy: None,
                wave: "all".into(),
                group: None,
                windows: vec![],
                open: vec![],
                soak: None,
                targets: vec![
                    target("a1", Some("acme")),
                    target("g1", Some("globex")),
                    target("x", None),
                ],
            }],
        };
        let split = timeline.select(&|_, _| true, Some("tenant"));
        let groups: Vec<(Option<&str>, Vec<&str>)> = split
            .rows
            .iter()
            .map(|r| {
                (
                    r.group.as_deref(),
                    r.targets.iter().map(|t| t.target.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                (Some("tenant=(none)"), vec!["x"]),
                (Some("tenant=acme"), vec!["a1"]),
                (Some("tenant=globex"), vec!["g1"]),
            ]
        );
        let acme = timeline.select(&|_, t| t.labels.get("tenant").is_some_and(|v| v == "acme"), None);
        assert_eq!(acme.rows.len(), 1);
        assert_eq!(acme.rows[0].targets.len(), 1);
        let nobody = timeline.select(&|_, _| false, None);
        assert!(nobody.rows.is_empty(), "a row without targets is dropped");
    }
}
