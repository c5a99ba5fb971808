//! The status page (`/`): server-rendered, read-only HTML with no JavaScript; it reloads itself.
//! Rendered from `templates/status.html.j2` by minijinja with HTML auto-escaping, so every value
//! (target names, messages, errors from a hostile commit) is escaped by the engine, not by hand.

use std::sync::OnceLock;

use serde_json::json;

use crate::ops::status::status_report;
use crate::plan;
use crate::reconcile::load::{evidence, load_commit};
use crate::source::WatchedRepo;
use crate::state::read_recorded;

use super::{Shared, lock};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2430;background:#fff}\
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\
p.meta{color:#5b6575;margin:0 0 16px}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #c9d1dc;padding:6px 8px;text-align:left;vertical-align:top}\
th{background:#e8edf3}tr:nth-child(even) td{background:#f5f7fa}\
.ok{color:#17663a;font-weight:600}.bad{color:#a61b1b;font-weight:600}.wait{color:#8a5a00;font-weight:600}\
.error{background:#fde8e8;border:1px solid #a61b1b;padding:8px 12px;margin:12px 0}code{font-size:13px}";

fn class_of(status: &str) -> &'static str {
    match status {
        "converged" | "succeeded" | "completed" | "noop" => "ok",
        "failed" | "rolled_back" | "violation" | "halted" => "bad",
        _ => "wait",
    }
}

/// Renders the page from the status report, the plan's rollouts and the recorded rollouts.
///
/// # Errors
/// A message when the repository or its state cannot be read.
pub fn render(shared: &Shared) -> Result<String, String> {
    let now = shared.now();
    let repo = WatchedRepo::open(&shared.repo_path).map_err(|e| e.to_string())?;
    let status = status_report(&repo, None, now).map_err(|e| e.to_string())?;
    let commit = repo
        .branch_tip(&shared.config.desired_branch)
        .map_err(|e| e.to_string())?;
    let loaded = load_commit(&repo, commit).map_err(|e| e.to_string())?;
    let recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch).map_err(|e| e.to_string())?;
    let anchor = crate::reconcile::apply::anchor_of(&repo, &recorded).map_err(|e| e.to_string())?;
    let evidence = evidence(&repo, &loaded, &anchor).map_err(|e| e.to_string())?;
    let plan = plan::plan(&loaded.plan_input(&recorded, &evidence, now));
    let daemon = lock(&shared.daemon).clone();

    let short = |c: &str| c[..12.min(c.len())].to_string();
    let targets: Vec<serde_json::Value> = status
        .targets
        .iter()
        .map(|t| {
            let blockers: Vec<String> = t
                .blockers
                .iter()
                .map(|b| {
                    let until = b.until.map(|u| format!(" (until {u})")).unwrap_or_default();
                    format!("{}: {}{until}", b.kind.as_str(), b.reason)
                })
                .chain(t.violations.iter().map(|v| format!("✗ {v}")))
                .collect();
            json!({
                "target": t.target, "component": t.component,
                "current": t.current, "desired": t.desired,
                "status": t.status, "status_class": class_of(&t.status),
                "next_action": t.next_action,
                "plan_status": t.plan_status, "plan_class": class_of(&t.plan_status),
                "blockers": blockers, "opens_at": t.opens_at,
                "last_outcome": t.last_outcome,
                "last_class": t.last_outcome.as_deref().map(class_of),
                "last_message": t.last_message,
            })
        })
        .collect();
    // Rollouts: what the plan still has to start, then what is recorded (newest first).
    let mut rollouts: Vec<serde_json::Value> = Vec::new();
    for rollout in &plan.rollouts {
        for wave in &rollout.waves {
            let status = wave.status.as_str();
            rollouts.push(json!({
                "component": rollout.component, "version": rollout.version.to_string(),
                "wave": wave.name, "targets": wave.targets.join(", "),
                "status": format!("{status} (planned)"), "class": class_of(status),
                "started": null, "until": wave.soak_until.map(|t| t.to_string()),
            }));
        }
    }
    let mut recorded_rollouts: Vec<_> = recorded.rollouts.values().collect();
    recorded_rollouts.sort_by(|a, b| b.started.cmp(&a.started));
    for rollout in recorded_rollouts {
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
                "wave": wave.name, "targets": targets.join(", "),
                "status": status, "class": class_of(status),
                "started": wave.started, "until": wave.completed,
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
    let context = json!({
        "style": STYLE,
        "desired": short(&status.desired_commit),
        "state": status.state_commit.as_deref().map_or_else(|| "(none)".to_string(), short),
        "now": status.now,
        "passes": daemon.passes,
        "next_wake": daemon.next_wake,
        "invalid": daemon.invalid_commit.as_ref().map(|i| json!({
            "commit": short(&i.commit),
            "last_valid": daemon.last_valid_commit.as_deref().unwrap_or("(none)"),
            "errors": i.errors,
        })),
        "cluster": cluster,
        "problems": problems,
        "targets": targets,
        "rollouts": rollouts,
    });
    render_page(&context)
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
        env.add_template("status.html", include_str!("templates/status.html.j2"))
            .expect("invariant: the built-in status page template compiles");
        env
    })
}

fn render_page(context: &serde_json::Value) -> Result<String, String> {
    let template = environment().get_template("status.html").map_err(|e| e.to_string())?;
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
}
