//! The status page (`/`): server-rendered, read-only HTML with no JavaScript; it reloads itself
//! every 30 s, and answers `304 Not Modified` when nothing changed (`ETag`). Rendered from
//! `templates/status.html.j2` by minijinja with HTML auto-escaping, so every value (target
//! names, messages, errors from a hostile commit) is escaped by the engine, not by hand.
//!
//! A fleet is summarised, not listed: counts by status per component and per label value (for
//! label keys with at most [`MAX_LABEL_VALUES`] values), each count a link to the targets it
//! counts; the targets table shows one page of [`PAGE_SIZE`] rows, filtered by `?selector=`,
//! `?component=` and `?state=`, paged by `?page=` (issue #12: 552 targets were a 507 KB table).
//! The status comes from the daemon's cache (`status_cache`), never recomputed per request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde_json::json;

use crate::ops::status::TargetStatusRow;

use super::{Shared, lock};

/// Target rows per page.
pub const PAGE_SIZE: usize = 50;
/// Label keys with more distinct values than this (a tenant or host name) are not summarised.
pub const MAX_LABEL_VALUES: usize = 20;
/// Target names listed per rollout wave (the rest are counted).
const WAVE_NAMES: usize = 10;

pub(super) const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2430;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
p.meta{color:#5b6575;margin:0 0 16px}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #c9d1dc;padding:6px 8px;text-align:left;vertical-align:top}\
th{background:#e8edf3}tr:nth-child(even) td{background:#f5f7fa}\
.ok{color:#17663a;font-weight:600}.bad{color:#a61b1b;font-weight:600}.wait{color:#8a5a00;font-weight:600}\
.error{background:#fde8e8;border:1px solid #a61b1b;padding:8px 12px;margin:12px 0}code{font-size:13px}\
td.n{text-align:right}a{color:#1b4f9c}\
.timeline{max-width:1000px;border:1px solid #c9d1dc;margin:0 0 8px}.timeline text{font-size:11px;fill:#1d2430}\
.timeline text.note{font-size:8px;fill:#5b6575}.timeline text.tick{fill:#5b6575}.timeline line.tick{stroke:#e1e6ee}\
.timeline .lane{fill:#f5f7fa}.timeline .open{fill:#bfe5c9}.timeline .soak{fill:#e8b04a}\
.timeline .start{fill:#1b4f9c}.timeline line.now{stroke:#a61b1b;stroke-width:2}.timeline text.now{fill:#a61b1b}";

pub(super) fn class_of(status: &str) -> &'static str {
    match status {
        "converged" | "succeeded" | "completed" | "noop" => "ok",
        "failed" | "rolled_back" | "violation" | "halted" => "bad",
        _ => "wait",
    }
}

/// The page's query: filters and the page number.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageQuery {
    pub selector: crate::ops::agents::Selector,
    pub component: Option<String>,
    pub state: Option<String>,
    /// 1-based.
    pub page: usize,
    /// The label the timeline splits its rows by (`?group=tenant`).
    pub group: Option<String>,
}

impl PageQuery {
    fn keeps(&self, row: &TargetStatusRow) -> bool {
        self.selector.matches(&row.labels)
            && self.component.as_ref().is_none_or(|c| *c == row.component)
            && self.state.as_ref().is_none_or(|s| *s == row.status)
    }

    /// The page's address with these filters and `page` (empty parameters left out).
    fn url(&self, page: usize) -> String {
        let mut params = Vec::new();
        if !self.selector.is_empty() {
            params.push(format!("selector={}", encode(&self.selector.to_string())));
        }
        if let Some(c) = &self.component {
            params.push(format!("component={}", encode(c)));
        }
        if let Some(s) = &self.state {
            params.push(format!("state={}", encode(s)));
        }
        if page > 1 {
            params.push(format!("page={page}"));
        }
        if let Some(g) = &self.group {
            params.push(format!("group={}", encode(g)));
        }
        format!("/?{}", params.join("&"))
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The order of status columns: the usual life of a target, then anything else by name.
fn status_order(status: &str) -> (usize, &str) {
    let known = [
        "converged",
        "pending",
        "in_progress",
        "new",
        "failed",
        "rolled_back",
        "halted",
    ];
    (known.iter().position(|k| *k == status).unwrap_or(known.len()), status)
}

/// One summary row: a group's count per status, each with the link listing those targets.
fn summary_row(
    label: &str,
    rows: &[&TargetStatusRow],
    states: &[String],
    link: &dyn Fn(Option<&str>) -> String,
) -> serde_json::Value {
    let cells: Vec<serde_json::Value> = states
        .iter()
        .map(|s| {
            let n = rows.iter().filter(|r| r.status == *s).count();
            json!({"n": n, "class": if n > 0 { class_of(s) } else { "" }, "url": link(Some(s))})
        })
        .collect();
    json!({"name": label, "total": rows.len(), "url": link(None), "cells": cells})
}

/// Renders the page for `query` from the daemon's cached status.
///
/// # Errors
/// A message when the repository or its state cannot be read.
pub fn render(shared: &Shared, query: &PageQuery) -> Result<String, String> {
    let snapshot = shared.status.current(shared)?;
    let status = &snapshot.report;
    let daemon = lock(&shared.daemon).clone();
    let short = |c: &str| c[..12.min(c.len())].to_string();
    let zone = jiff::tz::TimeZone::system();
    let now = status.now.parse::<jiff::Timestamp>().unwrap_or_else(|_| shared.now());
    let when = |text: &str| local_time(text, now, &zone);

    // Summaries over the whole fleet.
    let mut states: Vec<String> = status
        .targets
        .iter()
        .map(|t| t.status.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    states.sort_by(|a, b| status_order(a).cmp(&status_order(b)));
    let mut by_component: BTreeMap<&str, Vec<&TargetStatusRow>> = BTreeMap::new();
    let mut by_label: BTreeMap<&str, BTreeMap<&str, Vec<&TargetStatusRow>>> = BTreeMap::new();
    for row in &status.targets {
        by_component.entry(&row.component).or_default().push(row);
        for (k, v) in row.labels.iter() {
            by_label.entry(k).or_default().entry(v).or_default().push(row);
        }
    }
    let components: Vec<serde_json::Value> = by_component
        .iter()
        .map(|(name, rows)| {
            let link = |state: Option<&str>| {
                PageQuery {
                    component: Some((*name).to_string()),
                    state: state.map(str::to_string),
                    ..PageQuery::default()
                }
                .url(1)
            };
            summary_row(name, rows, &states, &link)
        })
        .collect();
    let mut labels = Vec::new();
    let mut labels_skipped = Vec::new();
    for (key, values) in &by_label {
        if values.len() > MAX_LABEL_VALUES {
            labels_skipped.push(format!("{key} ({} values)", values.len()));
            continue;
        }
        for (value, rows) in values {
            let link = |state: Option<&str>| {
                PageQuery {
                    selector: crate::ops::agents::Selector(vec![((*key).to_string(), (*value).to_string())]),
                    state: state.map(str::to_string),
                    ..PageQuery::default()
                }
                .url(1)
            };
            labels.push(summary_row(&format!("{key}={value}"), rows, &states, &link));
        }
    }

    // The filtered targets, one page of them.
    let shown: Vec<&TargetStatusRow> = status.targets.iter().filter(|r| query.keeps(r)).collect();
    let pages = shown.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.clamp(1, pages);
    let targets: Vec<serde_json::Value> = shown
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|t| {
            let blockers: Vec<String> = t
                .blockers
                .iter()
                .map(|b| {
                    let until = b
                        .until
                        .map(|u| format!(" (until {})", crate::render::when::local_and_relative(u, now, &zone)))
                        .unwrap_or_default();
                    format!("{}: {}{until}", b.kind.as_str(), b.reason)
                })
                .chain(t.violations.iter().map(|v| format!("✗ {v}")))
                .collect();
            let start = status
                .schedule
                .as_ref()
                .and_then(|s| s.targets.iter().find(|s| s.target == t.target))
                .and_then(|s| s.projected_start);
            json!({
                "target": t.target, "target_url": format!("/targets/{}", encode(&t.target)),
                "component": t.component,
                "projected_start": start.map(|at| crate::render::when::local_and_relative(at, now, &zone)),
                "current": t.current, "desired": t.desired,
                "status": t.status, "status_class": class_of(&t.status),
                "next_action": t.next_action,
                "plan_status": t.plan_status, "plan_class": class_of(&t.plan_status),
                "blockers": blockers, "opens_at": t.opens_at.as_deref().map(when),
                "last_outcome": t.last_outcome,
                "last_class": t.last_outcome.as_deref().map(class_of),
                "last_message": t.last_message,
            })
        })
        .collect();
    let names = |all: Vec<String>| -> String {
        let more = all.len().saturating_sub(WAVE_NAMES);
        let mut text = all.into_iter().take(WAVE_NAMES).collect::<Vec<_>>().join(", ");
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    // Rollouts: what the plan still has to start, then what is recorded (newest first).
    let mut rollouts: Vec<serde_json::Value> = Vec::new();
    for rollout in &status.rollouts {
        for wave in &rollout.waves {
            let status = wave.status.as_str();
            rollouts.push(json!({
                "component": rollout.component, "version": rollout.version.to_string(),
                "wave": wave.name, "targets": names(wave.targets.clone()),
                "status": format!("{status} (planned)"), "class": class_of(status),
                "started": null,
                "until": wave.soak_until.map(|t| crate::render::when::local_and_relative(t, now, &zone)),
            }));
        }
    }
    for rollout in &snapshot.rollouts {
        for wave in &rollout.waves {
            let targets: Vec<String> = rollout
                .targets
                .iter()
                .filter(|(_, t)| t.wave == wave.name)
                .map(|(name, t)| format!("{name} ({})", t.status))
                .collect();
            let status = if rollout.halted.is_some() {
                "halted"
            } else if wave.completed.is_some() {
                "completed"
            } else {
                "in progress"
            };
            rollouts.push(json!({
                "component": rollout.component, "version": rollout.version.to_string(),
                "wave": wave.name, "targets": names(targets),
                "status": status, "class": class_of(status),
                "started": wave.started.as_deref().map(when), "until": wave.completed.as_deref().map(when),
            }));
        }
    }
    let problems: Vec<&String> = [&daemon.last_error, &daemon.remote_error]
        .into_iter()
        .flatten()
        .collect();
    // Clustered (`--etcd`): which member leads the shard, and this member's role.
    let cluster = shared.cluster.get().map(|c| {
        let c = c.status();
        json!({
            "shard": c.shard,
            "member": c.member,
            "leader": c.leader.as_deref().unwrap_or("(none)"),
            "role": if c.role == crate::cluster::Role::Leader { "the leader" } else { "a standby" },
            "etcd_error": c.etcd_error,
        })
    });
    let filtered = query.selector.is_empty() && query.component.is_none() && query.state.is_none();
    let context = json!({
        "style": STYLE,
        "desired": short(&status.desired_commit),
        "state": status.state_commit.as_deref().map_or_else(|| "(none)".to_string(), short),
        "now": crate::render::when::local(now, &zone),
        "passes": daemon.passes,
        "next_wake": daemon.next_wake.as_deref().map(when),
        "invalid": daemon.invalid_commit.as_ref().map(|i| json!({
            "commit": short(&i.commit),
            "last_valid": daemon.last_valid_commit.as_deref().unwrap_or("(none)"),
            "errors": i.errors,
        })),
        "cluster": cluster,
        "problems": problems,
        "total": status.targets.len(),
        "states": states,
        "components": components,
        "labels": labels,
        "labels_skipped": labels_skipped,
        "filter": {
            "any": !filtered,
            "selector": query.selector.to_string(),
            "component": query.component,
            "state": query.state,
            "all_url": "/",
        },
        "shown": shown.len(),
        "page": page,
        "pages": pages,
        "first_row": if shown.is_empty() { 0 } else { (page - 1) * PAGE_SIZE + 1 },
        "last_row": ((page - 1) * PAGE_SIZE + PAGE_SIZE).min(shown.len()),
        "prev_url": (page > 1).then(|| query.url(page - 1)),
        "next_url": (page < pages).then(|| query.url(page + 1)),
        "targets": targets,
        "rollouts": rollouts,
        "svg": status.timeline.as_ref().map(|timeline| {
            let timeline = timeline.select(
                &|row, t| {
                    query.selector.matches(&t.labels) && query.component.as_ref().is_none_or(|c| *c == row.component)
                },
                query.group.as_deref(),
            );
            super::svg::layout(&timeline, &zone)
        }),
        "group": query.group,
    });
    render_page(&context)
}

/// An instant from the status (RFC 3339) in the daemon's zone with how far it is from `now`;
/// text that is not an instant is shown as it is.
pub(super) fn local_time(text: &str, now: jiff::Timestamp, zone: &jiff::tz::TimeZone) -> String {
    match text.parse::<jiff::Timestamp>() {
        Ok(at) => crate::render::when::local_and_relative(at, now, zone),
        Err(_) => text.to_string(),
    }
}

/// The page's template environment: one template, HTML auto-escaping (its name ends in `.html`).
fn environment() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        for (name, source) in [
            ("status.html", include_str!("templates/status.html.j2")),
            ("view.html", include_str!("templates/view.html.j2")),
            ("target.html", include_str!("templates/target.html.j2")),
            ("timeline.svg.html", include_str!("templates/timeline.svg.j2")),
        ] {
            env.add_template(name, source)
                .expect("invariant: the built-in page templates compile");
        }
        env
    })
}

fn render_page(context: &serde_json::Value) -> Result<String, String> {
    render_template("status.html", context)
}

/// Renders one of the page templates with `context`, HTML-escaped.
pub(super) fn render_template(name: &str, context: &serde_json::Value) -> Result<String, String> {
    let template = environment().get_template(name).map_err(|e| e.to_string())?;
    template
        .render(minijinja::Value::from(minijinja::value::Serde(context)))
        .map(|mut html| {
            html.push('\n');
            html
        })
        .map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target name or an error message from a hostile commit is text on the page, never markup.
    #[test]
    fn values_are_escaped_by_the_template_engine() {
        let context = json!({
            "style": STYLE, "desired": "abc", "state": "(none)", "now": "now", "passes": 1,
            "next_wake": null, "invalid": null,
            "cluster": {"shard": "<s>", "member": "m1", "leader": "m2", "role": "a standby", "etcd_error": "<e>"},
            "problems": ["<script>alert(1)</script>"],
            "targets": [{"target": "<b>x</b>", "component": "c\"'&", "current": null, "desired": "1.0.0",
                "status": "new", "status_class": "wait", "next_action": "install",
                "plan_status": "ready", "plan_class": "wait", "blockers": ["<i>window</i>"],
                "opens_at": null, "last_outcome": null, "last_class": null, "last_message": null}],
            "rollouts": [],
            "total": 1, "states": ["new"], "labels": [], "labels_skipped": [],
            "components": [{"name": "c\"'&", "total": 1, "url": "/?component=c%22%27%26",
                "cells": [{"n": 1, "class": "wait", "url": "/?component=c%22%27%26&state=new"}]}],
            "filter": {"any": false, "selector": "", "component": null, "state": null, "all_url": "/"},
            "shown": 1, "page": 1, "pages": 1, "first_row": 1, "last_row": 1,
            "prev_url": null, "next_url": null,
        });
        let html = render_page(&context).unwrap();
        assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "{html}");
        assert!(
            html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;x&lt;/b&gt;"),
            "{html}"
        );
        assert!(html.contains("c&quot;&#x27;&amp;"), "{html}");
        assert!(html.contains("&lt;i&gt;window"), "{html}");
        assert!(
            html.contains(
                "shard <code>&lt;s&gt;</code> · leader <code>m2</code> · this member <code>m1</code> is a standby"
            ),
            "{html}"
        );
        assert!(html.contains("etcd: &lt;e&gt;"), "{html}");
        assert!(html.contains("<td colspan=\"7\">No rollouts yet.</td>"), "{html}");
        assert!(
            html.contains("<style>body{"),
            "the style sheet is trusted markup: {html}"
        );
    }

    /// A label value or target name from a hostile commit is text in the timeline's SVG too.
    #[test]
    fn timeline_values_are_escaped() {
        let svg = json!({
            "width": 1000.0, "height": 60.0, "plot_left": 300.0, "plot_right": 988.0,
            "now_x": 300.0, "now_label": "now <b>", "summary": "s\"><script>",
            "ticks": [{"x": 300.0, "label": "<i>"}],
            "rows": [{"y": 30.0, "label": "billing · tenant=<script>alert(1)</script>", "note": "n&",
                "bands": [{"x": 1.0, "width": 2.0, "class": "open", "title": "</title><script>"}],
                "marks": [{"x": 3.0, "title": "x\" onmouseover=\"alert(1)"}]}],
        });
        let html = render_template("timeline.svg.html", &json!({"svg": svg})).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("\" onmouseover"), "{html}");
        assert!(html.contains("tenant=&lt;script&gt;"), "{html}");
    }
}
