//! The status page (`/`): server-rendered, read-only HTML with no JavaScript; it reloads itself.

use std::fmt::Write;

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

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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
    let evidence = evidence(&repo, &loaded).map_err(|e| e.to_string())?;
    let plan = plan::plan(&loaded.plan_input(&recorded, &evidence, now));
    let daemon = lock(&shared.daemon).clone();

    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>gantry</title><style>{STYLE}</style></head><body>\
         <h1>gantry</h1><p class=\"meta\">desired <code>{}</code> · state <code>{}</code> · now {} · {} passes{}</p>",
        esc(&status.desired_commit[..12.min(status.desired_commit.len())]),
        esc(status
            .state_commit
            .as_deref()
            .map_or("(none)", |c| &c[..12.min(c.len())])),
        esc(&status.now),
        daemon.passes,
        daemon
            .next_wake
            .as_deref()
            .map(|w| format!(" · next wake {}", esc(w)))
            .unwrap_or_default(),
    );
    if let Some(invalid) = &daemon.invalid_commit {
        let _ = write!(
            h,
            "<div class=\"error\" id=\"invalid\"><strong>Desired commit <code>{}</code> is not valid; nothing of it \
             is applied.</strong> Last valid: <code>{}</code><ul>",
            esc(&invalid.commit[..12.min(invalid.commit.len())]),
            esc(daemon.last_valid_commit.as_deref().unwrap_or("(none)")),
        );
        for e in &invalid.errors {
            let _ = write!(h, "<li><code>{}</code></li>", esc(e));
        }
        h.push_str("</ul></div>");
    }
    // Clustered (`--etcd`): which member leads the shard, and this member's role.
    if let Some(cluster) = shared.cluster.get().map(|c| c.status()) {
        let _ = write!(
            h,
            "<p class=\"meta\" id=\"cluster\">shard <code>{}</code> · leader <code>{}</code> · this member \
             <code>{}</code> is {}</p>",
            esc(&cluster.shard),
            esc(cluster.leader.as_deref().unwrap_or("(none)")),
            esc(&cluster.member),
            if cluster.role == crate::cluster::Role::Leader {
                "the leader"
            } else {
                "a standby"
            },
        );
        if let Some(e) = &cluster.etcd_error {
            let _ = write!(h, "<div class=\"error\">etcd: {}</div>", esc(e));
        }
    }
    for problem in [&daemon.last_error, &daemon.remote_error].into_iter().flatten() {
        let _ = write!(h, "<div class=\"error\">{}</div>", esc(problem));
    }

    h.push_str(
        "<h2>Targets</h2><table id=\"targets\"><thead><tr><th>Target</th><th>Component</th><th>Current</th>\
         <th>Desired</th><th>Status</th><th>Next action</th><th>Blockers</th><th>Next window</th>\
         <th>Last outcome</th></tr></thead><tbody>",
    );
    for t in &status.targets {
        let blockers: Vec<String> = t
            .blockers
            .iter()
            .map(|b| {
                let until = b
                    .until
                    .map(|u| format!(" (until {})", esc(&u.to_string())))
                    .unwrap_or_default();
                format!("{}: {}{until}", esc(b.kind.as_str()), esc(&b.reason))
            })
            .chain(t.violations.iter().map(|v| format!("✗ {}", esc(v))))
            .collect();
        let last = match (&t.last_outcome, &t.last_message) {
            (Some(o), Some(m)) => format!("<span class=\"{}\">{}</span>: {}", class_of(o), esc(o), esc(m)),
            (Some(o), None) => format!("<span class=\"{}\">{}</span>", class_of(o), esc(o)),
            _ => "–".into(),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{} <span class=\"{}\">({})\
             </span></td><td>{}</td><td>{}</td><td>{last}</td></tr>",
            esc(&t.target),
            esc(&t.component),
            esc(t.current.as_deref().unwrap_or("–")),
            esc(t.desired.as_deref().unwrap_or("–")),
            class_of(&t.status),
            esc(&t.status),
            esc(&t.next_action),
            class_of(&t.plan_status),
            esc(&t.plan_status),
            if blockers.is_empty() {
                "–".into()
            } else {
                blockers.join("<br>")
            },
            esc(t.opens_at.as_deref().unwrap_or("–")),
        );
    }
    h.push_str("</tbody></table>");

    // Rollouts: what the plan still has to start, then what is recorded (newest first).
    h.push_str(
        "<h2>Rollouts</h2><table id=\"rollouts\"><thead><tr><th>Component</th><th>Version</th><th>Wave</th>\
         <th>Targets</th><th>Status</th><th>Started</th><th>Completed / soak until</th></tr></thead><tbody>",
    );
    let mut rows = 0;
    for rollout in &plan.rollouts {
        for wave in &rollout.waves {
            let status = wave.status.as_str();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{} (planned)</td><td>–</td><td>{}</td></tr>",
                esc(&rollout.component),
                esc(&rollout.version.to_string()),
                esc(&wave.name),
                esc(&wave.targets.join(", ")),
                class_of(&status),
                esc(&status),
                esc(&wave.soak_until.map_or_else(|| "–".to_string(), |t| t.to_string())),
            );
            rows += 1;
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
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&rollout.component),
                esc(&rollout.version.to_string()),
                esc(&wave.name),
                esc(&targets.join(", ")),
                class_of(status),
                status,
                esc(wave.started.as_deref().unwrap_or("–")),
                esc(wave.completed.as_deref().unwrap_or("–")),
            );
            rows += 1;
        }
    }
    if rows == 0 {
        h.push_str("<tr><td colspan=\"7\">No rollouts yet.</td></tr>");
    }
    h.push_str("</tbody></table></body></html>\n");
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
