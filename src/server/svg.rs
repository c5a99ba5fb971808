//! The schedule timeline of the status pages, laid out for a server-rendered SVG (issue #15):
//! one row per rollout wave (and label group), its windows' open times shaded, its soak, a mark
//! per target at its projected start, and a line at "now"; the axis in the daemon's local time.
//!
//! Pure layout: [`layout`] turns a [`Timeline`] into shapes with coordinates; the template
//! `timeline.svg.j2` only writes them out (every text auto-escaped by the engine).

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};
use serde::Serialize;

use crate::plan::timeline::Timeline;
use crate::render::when;

/// The drawing's width in SVG units (it scales to the page's width).
const WIDTH: f64 = 1000.0;
/// Where the plot starts: the row labels are left of it.
const PLOT_LEFT: f64 = 300.0;
const PLOT_RIGHT: f64 = WIDTH - 12.0;
const ROW_HEIGHT: f64 = 26.0;
/// The axis labels are above the first row.
const TOP: f64 = 30.0;
/// Axis ticks at most.
const MAX_TICKS: usize = 16;
/// Rows drawn at most; the rest are counted in the summary (a 552-target fleet split by tenant
/// must not make the page heavier than its tables).
pub const MAX_ROWS: usize = 40;
/// Target names in one mark's title; the rest are counted.
const MARK_NAMES: usize = 5;

/// A shaded span on a row (`class`: `open` for a window, `soak`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Band {
    pub x: f64,
    pub width: f64,
    pub class: &'static str,
    pub title: String,
}

/// A target's projected start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mark {
    pub x: f64,
    pub title: String,
}

/// One row of the drawing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SvgRow {
    pub y: f64,
    pub label: String,
    /// What the label leaves out: the windows and how many targets have no projected start.
    pub note: String,
    pub bands: Vec<Band>,
    pub marks: Vec<Mark>,
}

/// An axis tick with its local time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    pub x: f64,
    pub label: String,
}

/// The whole drawing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Svg {
    pub width: f64,
    pub height: f64,
    pub plot_left: f64,
    pub plot_right: f64,
    pub now_x: f64,
    pub now_label: String,
    pub ticks: Vec<Tick>,
    pub rows: Vec<SvgRow>,
    /// The drawing's accessible summary (`<title>`/`aria-label`).
    pub summary: String,
}

/// Lays `timeline` out, times shown in `zone`.
pub fn layout(timeline: &Timeline, zone: &TimeZone) -> Svg {
    let span = timeline.end.duration_since(timeline.start).as_secs_f64().max(1.0);
    let x = |t: Timestamp| -> f64 {
        let offset = t.duration_since(timeline.start).as_secs_f64().clamp(0.0, span);
        round(PLOT_LEFT + offset / span * (PLOT_RIGHT - PLOT_LEFT))
    };
    let at = |t: Timestamp| when::local_and_relative(t, timeline.now, zone);
    let rows: Vec<SvgRow> = timeline
        .rows
        .iter()
        .take(MAX_ROWS)
        .enumerate()
        .map(|(i, row)| {
            let mut bands: Vec<Band> = row
                .open
                .iter()
                .map(|o| Band {
                    x: x(o.from),
                    width: round(x(o.to) - x(o.from)),
                    class: "open",
                    title: format!("window open {} – {}", at(o.from), at(o.to)),
                })
                .collect();
            if let Some(soak) = row.soak {
                bands.push(Band {
                    x: x(soak.from),
                    width: round((x(soak.to) - x(soak.from)).max(1.0)),
                    class: "soak",
                    title: format!("soak {} – {}", at(soak.from), at(soak.to)),
                });
            }
            // One mark per position: targets starting together share it, named in its title.
            let mut by_x: std::collections::BTreeMap<i64, (Timestamp, Vec<&str>)> = std::collections::BTreeMap::new();
            for t in &row.targets {
                if let Some(start) = t.projected_start {
                    let entry = by_x.entry((x(start) * 10.0) as i64).or_insert((start, Vec::new()));
                    entry.0 = entry.0.min(start);
                    entry.1.push(&t.target);
                }
            }
            let marks: Vec<Mark> = by_x
                .into_values()
                .map(|(start, names)| {
                    let more = names.len().saturating_sub(MARK_NAMES);
                    let mut who = names.iter().take(MARK_NAMES).copied().collect::<Vec<_>>().join(", ");
                    if more > 0 {
                        who.push_str(&format!(" and {more} more"));
                    }
                    Mark {
                        x: x(start),
                        title: format!("{who}: starts {}", at(start)),
                    }
                })
                .collect();
            let unprojected = row
                .targets
                .iter()
                .filter(|t| t.projected_start.is_none() && !t.done)
                .count();
            let mut note = Vec::new();
            note.push(if row.windows.is_empty() {
                "no window".to_string()
            } else {
                format!("windows {}", row.windows.join(", "))
            });
            note.push(format!("{} target{}", row.targets.len(), plural(row.targets.len())));
            if unprojected > 0 {
                note.push(format!("{unprojected} not projected"));
            }
            let mut label = format!("{} {} · {}", row.component, row.version, row.wave);
            if let Some(group) = &row.group {
                label.push_str(&format!(" · {group}"));
            }
            SvgRow {
                y: TOP + ROW_HEIGHT * i as f64,
                label,
                note: note.join(" · "),
                bands,
                marks,
            }
        })
        .collect();
    let height = TOP + ROW_HEIGHT * rows.len().max(1) as f64 + 8.0;
    Svg {
        width: WIDTH,
        height,
        plot_left: PLOT_LEFT,
        plot_right: PLOT_RIGHT,
        now_x: x(timeline.now),
        now_label: format!("now {}", when::local(timeline.now, zone)),
        ticks: ticks(timeline.start, timeline.end, zone)
            .into_iter()
            .map(|(t, label)| Tick { x: x(t), label })
            .collect(),
        summary: format!(
            "Schedule from {} to {}: {} row{}{}",
            when::local(timeline.start, zone),
            when::local(timeline.end, zone),
            timeline.rows.len(),
            plural(timeline.rows.len()),
            if timeline.rows.len() > MAX_ROWS {
                format!(", the first {MAX_ROWS} drawn")
            } else {
                String::new()
            }
        ),
        rows,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// To a tenth of a unit: enough for a drawing, and stable text for snapshots.
fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Axis ticks at local calendar boundaries (hours or midnights in `zone`, so a tick is where a
/// wall clock there shows it, across DST), at most [`MAX_TICKS`].
fn ticks(start: Timestamp, end: Timestamp, zone: &TimeZone) -> Vec<(Timestamp, String)> {
    let hours = end.duration_since(start).as_hours();
    let (step, format): (Span, &str) = match hours {
        ..=12 => (1.hour(), "%H:%M"),
        13..=48 => (6.hours(), "%a %H:%M"),
        49..=240 => (1.day(), "%a %d %b"),
        241..=960 => (7.days(), "%d %b"),
        _ => (14.days(), "%d %b"),
    };
    // Stepped on the wall clock (civil time), so a 6-hour tick stays at 00:00, 06:00, … when
    // the clocks change.
    let Ok(mut civil) = start.to_zoned(zone.clone()).start_of_day().map(|d| d.datetime()) else {
        return Vec::new();
    };
    let mut ticks = Vec::new();
    for _ in 0..(MAX_TICKS * 50) {
        let Ok(at) = civil.to_zoned(zone.clone()) else { break };
        if at.timestamp() > end || ticks.len() == MAX_TICKS {
            break;
        }
        if at.timestamp() >= start {
            ticks.push((at.timestamp(), at.strftime(format).to_string()));
        }
        match civil.checked_add(step) {
            Ok(next) => civil = next,
            Err(_) => break,
        }
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::timeline::{Interval, TimelineRow, TimelineTarget};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn timeline() -> Timeline {
        let target = |name: &str, start: Option<&str>| TimelineTarget {
            target: name.into(),
            labels: Default::default(),
            projected_start: start.map(at),
            done: false,
        };
        Timeline {
            now: at("2026-10-24T10:00:00Z"),
            start: at("2026-10-24T10:00:00Z"),
            end: at("2026-10-26T10:00:00Z"),
            rows: vec![
                TimelineRow {
                    component: "billing".into(),
                    version: "2.0.0".into(),
                    policy: Some("staged".into()),
                    wave: "canary".into(),
                    group: None,
                    windows: vec!["eu-nights".into()],
                    open: vec![Interval {
                        from: at("2026-10-24T23:00:00Z"),
                        to: at("2026-10-25T02:00:00Z"),
                    }],
                    soak: Some(Interval {
                        from: at("2026-10-24T23:00:00Z"),
                        to: at("2026-10-25T23:00:00Z"),
                    }),
                    targets: vec![target("a", Some("2026-10-24T23:00:00Z"))],
                },
                TimelineRow {
                    component: "billing".into(),
                    version: "2.0.0".into(),
                    policy: Some("staged".into()),
                    wave: "rest".into(),
                    group: Some("tenant=<acme>".into()),
                    windows: vec![],
                    open: vec![],
                    soak: None,
                    targets: vec![target("c", Some("2026-10-25T23:00:00Z")), target("d", None)],
                },
            ],
        }
    }

    /// The layout as the page draws it: positions proportional to time, titles in local time
    /// with "in …", the axis at Berlin midnights and 6-hour marks across the autumn DST change.
    #[test]
    fn timeline_layout() {
        let zone = TimeZone::get("Europe/Berlin").unwrap();
        let svg = layout(&timeline(), &zone);
        assert_eq!(svg.now_x, PLOT_LEFT);
        // Halfway through the two days: halfway across the plot.
        let mid = svg.rows[1].marks[0].x;
        assert!(
            (mid - (PLOT_LEFT + (PLOT_RIGHT - PLOT_LEFT) * 37.0 / 48.0)).abs() < 0.1,
            "{mid}"
        );
        insta::assert_snapshot!("timeline_layout", serde_json::to_string_pretty(&svg).unwrap());
    }
}
