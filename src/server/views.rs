//! The pages besides the fleet page (issue #15):
//!
//! - `/view/KEY/VALUE`: what a customer-facing status page embeds for one tenant (or any label
//!   value): that value's targets, their schedule as a timeline and their recent outcomes, and
//!   nothing about any other target: no commits, no daemon errors, no fleet summary, no links
//!   out; what holds a target is said by kind and lift time only (reasons may name other
//!   targets or approvers). Unknown values are 404, so the page does not tell which values
//!   exist.
//! - `/targets/NAME`: one target's versions, rollback points and history.
//!
//! Both read the daemon's cached status (the history page also walks the state branch through
//! its cache) and render through the same escaping template environment as `/`.

use serde_json::json;

use crate::ops::OpsError;
use crate::render::when;

use super::page::{STYLE, class_of, render_template};
use super::{Shared, svg};

/// History rows shown on a target's page (newest first); `gantry history` has the rest.
const HISTORY_ROWS: usize = 100;

/// The page of the targets whose label `key` is `value`; `None` when no target has it.
///
/// # Errors
/// A message when the status cannot be computed or the page rendered.
pub fn label_view(shared: &Shared, key: &str, value: &str) -> Result<Option<String>, String> {
    let snapshot = shared.status.current(shared)?;
    let status = &snapshot.report;
    let zone = jiff::tz::TimeZone::system();
    let now = status.now.parse::<jiff::Timestamp>().unwrap_or_else(|_| shared.now());
    let has = |labels: &crate::manifest::Labels| labels.get(key).is_some_and(|v| v == value);
    let rows: Vec<&crate::ops::status::TargetStatusRow> = status.targets.iter().filter(|t| has(&t.labels)).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for row in &rows {
        *counts.entry(row.status.as_str()).or_default() += 1;
    }
    let targets: Vec<serde_json::Value> = rows
        .iter()
        .map(|t| {
            let scheduled = status
                .schedule
                .as_ref()
                .and_then(|s| s.targets.iter().find(|s| s.target == t.target));
            let start = scheduled.and_then(|s| s.projected_start);
            // What holds it, by kind and when it lifts: the reasons can name other targets
            // (a dependency, a wave's members) or approvers, which a tenant's page must not.
            let held: Vec<String> = scheduled
                .map(|s| {
                    s.held_by
                        .iter()
                        .map(|b| match b.lifts_at() {
                            Some(at) => {
                                format!("{} until {}", b.kind.as_str(), when::local_and_relative(at, now, &zone))
                            }
                            None => b.kind.as_str().to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "target": t.target, "component": t.component,
                "current": t.current, "desired": t.desired,
                "status": t.status, "status_class": class_of(&t.status),
                "next_action": t.next_action,
                "projected_start": start.map(|at| when::local_and_relative(at, now, &zone)),
                "held": held,
                "last_outcome": t.last_outcome,
                "last_class": t.last_outcome.as_deref().map(class_of),
            })
        })
        .collect();
    let svg = status.timeline.as_ref().map(|timeline| {
        let mine = timeline.select(&|_, t| has(&t.labels), None);
        svg::layout(&mine, &zone)
    });
    let context = json!({
        "style": STYLE,
        "title": format!("{key}={value}"),
        "now": when::local(now, &zone),
        "counts": counts.iter().map(|(s, n)| json!({"status": s, "n": n, "class": class_of(s)})).collect::<Vec<_>>(),
        "total": rows.len(),
        "targets": targets,
        "svg": svg,
    });
    render_template("view.html", &context).map(Some)
}

/// The page of one target: versions, rollback points and its newest history rows.
///
/// # Errors
/// [`OpsError::UnknownTarget`] for a target the desired commit does not have; reading errors.
pub fn target_page(shared: &Shared, target: &str) -> Result<String, OpsError> {
    let repo = crate::source::WatchedRepo::open(&shared.repo_path)?;
    let now = shared.now();
    let zone = jiff::tz::TimeZone::system();
    let versions = crate::ops::versions::versions(&repo, target, now)?;
    let history = crate::ops::history::history(&repo, Some(target))?;
    let total = history.len();
    let rows: Vec<serde_json::Value> = history
        .iter()
        .take(HISTORY_ROWS)
        .map(|r| {
            let e = &r.entry;
            json!({
                "time": when::local_and_relative(e.time, now, &zone),
                "action": e.detail.action,
                "change": match &e.from {
                    Some(from) if *from != e.to => format!("{from} → {}", e.to),
                    _ => e.to.to_string(),
                },
                "update_type": r.update_type.map(|u| u.as_str()),
                "outcome": e.outcome.as_str(),
                "class": class_of(e.outcome.as_str()),
                "duration": e.detail.duration_ms.map(|ms| format!("{:.1} s", ms as f64 / 1000.0)),
                "approvers": e.detail.approvers.join(", "),
                "operator": r.operator,
                "reason": r.reason,
                "message": e.message,
                "commit": e.desired_commit[..12.min(e.desired_commit.len())].to_string(),
            })
        })
        .collect();
    let releases: Vec<serde_json::Value> = versions
        .releases
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or_default())
        .collect();
    let context = json!({
        "style": STYLE,
        "target": versions.target,
        "component": versions.component,
        "wanted": versions.wanted,
        "policy": versions.policy,
        "current": versions.current.as_ref().map(ToString::to_string),
        "desired": versions.desired.as_ref().map(ToString::to_string),
        "status": versions.status,
        "now": when::local(now, &zone),
        "releases": releases,
        "rollback_points": versions.rollback_points.iter().map(|p| json!({
            "version": p.version.to_string(), "released": p.released, "yanked": p.yanked,
        })).collect::<Vec<_>>(),
        "history": rows,
        "history_total": total,
        "history_shown": total.min(HISTORY_ROWS),
    });
    render_template("target.html", &context).map_err(OpsError::Usage)
}
