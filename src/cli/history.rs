//! `gantry history [TARGET]`: prints [`crate::ops::history::history`] as text, JSON or CSV.

use crate::ops::history::{HistoryRecord, history};
use crate::source::WatchedRepo;

use super::{Cli, Exit, HistoryFormat, OpsError};

pub fn run(cli: &Cli, target: Option<&str>, format: HistoryFormat) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let entries = history(&repo, target)?;
    match format {
        HistoryFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&entries).map_err(|e| OpsError::Usage(e.to_string()))?
            );
        }
        HistoryFormat::Csv => {
            println!(
                "time,target,component,from,to,outcome,attempt,desired_commit,state_commit,message,author,committer,operator,reason,action,update_type,started,finished,duration_ms,approvers,health,output_tail"
            );
            for r in &entries {
                let e = &r.entry;
                let fields = [
                    e.time.to_string(),
                    e.target.clone(),
                    e.component.clone().unwrap_or_default(),
                    e.from.as_ref().map(ToString::to_string).unwrap_or_default(),
                    e.to.to_string(),
                    e.outcome.as_str().to_string(),
                    e.attempt.clone(),
                    e.desired_commit.clone(),
                    e.commit.clone(),
                    e.message.clone(),
                    r.author.clone().unwrap_or_default(),
                    r.committer.clone().unwrap_or_default(),
                    r.operator.clone().unwrap_or_default(),
                    r.reason.clone().unwrap_or_default(),
                    e.detail.action.clone().unwrap_or_default(),
                    r.update_type.map(|u| u.to_string()).unwrap_or_default(),
                    e.detail.started.map(|t| t.to_string()).unwrap_or_default(),
                    e.detail.finished.map(|t| t.to_string()).unwrap_or_default(),
                    e.detail.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
                    e.detail.approvers.join(";"),
                    match &e.detail.health {
                        // One JSON object in one field: checks are named by the manifests.
                        Some(h) => serde_json::to_string(h).map_err(|e| OpsError::Usage(e.to_string()))?,
                        None => String::new(),
                    },
                    e.detail.output_tail.clone().unwrap_or_default(),
                ];
                println!("{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        // Messages and output tails come from steps and manifests, whole: no terminal escapes
        // (issue #18, attack 12; JSON and CSV quote them instead).
        HistoryFormat::Text => print!(
            "{}",
            crate::render::mask::strip_terminal_controls(&text(&entries, target))
        ),
    }
    Ok(Exit::Ok)
}

/// The history as `gantry history` prints it.
pub fn text(entries: &[HistoryRecord], target: Option<&str>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if entries.is_empty() {
        let _ = writeln!(
            out,
            "no recorded outcomes{}",
            target.map(|t| format!(" for {t}")).unwrap_or_default()
        );
    }
    for r in entries {
        let e = &r.entry;
        let _ = writeln!(
            out,
            "{}  {}  {} {} → {}  {}{}{}{}{}{}{}{}",
            e.time,
            e.target,
            e.component.as_deref().unwrap_or("?"),
            e.from
                .as_ref()
                .map_or_else(|| "(none)".to_string(), ToString::to_string),
            e.to,
            e.outcome.as_str(),
            if e.message.is_empty() {
                String::new()
            } else {
                format!(" — {}", e.message)
            },
            r.operator.as_ref().map(|o| format!(" · by {o}")).unwrap_or_default(),
            r.reason
                .as_ref()
                .map(|why| format!(" · reason: {why}"))
                .unwrap_or_default(),
            r.update_type.map(|u| format!(" · {u}")).unwrap_or_default(),
            e.emergency_reason
                .as_ref()
                .map(|why| format!(" · EMERGENCY: {why}"))
                .unwrap_or_default(),
            e.detail
                .duration_ms
                .map(|ms| format!(" · took {}", Took(ms)))
                .unwrap_or_default(),
            if e.detail.approvers.is_empty() {
                String::new()
            } else {
                format!(" · approved by {}", e.detail.approvers.join(", "))
            },
        );
        if let Some(h) = &e.detail.health {
            let figures: Vec<String> = h.last.iter().map(|(check, value)| format!("{check}={value}")).collect();
            let _ = writeln!(
                out,
                "    health ({} wave {}, {} rounds): {} {}",
                h.rollout,
                h.wave,
                h.rounds,
                h.status.as_str(),
                figures.join(" ")
            );
        }
        // The text view shows the tail's last lines; JSON and CSV keep it whole.
        if e.outcome != crate::state::Outcome::Succeeded
            && let Some(tail) = e.detail.output_tail.as_deref().filter(|t| !t.trim().is_empty())
        {
            let lines: Vec<&str> = tail.trim_end().lines().collect();
            for line in &lines[lines.len().saturating_sub(TEXT_TAIL_LINES)..] {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
    out
}

/// Lines of a failed step's output tail the text view shows.
const TEXT_TAIL_LINES: usize = 5;

/// A duration in milliseconds as people read it: `850ms`, `42s`, `2m03s`, `1h05m`.
struct Took(i64);

impl std::fmt::Display for Took {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.max(0);
        let s = ms / 1000;
        match s {
            0 => write!(f, "{ms}ms"),
            1..60 => write!(f, "{s}s"),
            60..3600 => write!(f, "{}m{:02}s", s / 60, s % 60),
            _ => write!(f, "{}h{:02}m", s / 3600, s % 3600 / 60),
        }
    }
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{HistoryEntry, Outcome};

    fn entry(target: &str, from: Option<&str>, to: &str, outcome: Outcome, message: &str) -> HistoryRecord {
        let entry = HistoryEntry {
            commit: "89abcdef0123456789abcdef0123456789abcdef".into(),
            time: "2026-11-21T02:05:00Z".parse().unwrap(),
            target: target.into(),
            component: Some("billing".into()),
            from: from.map(|v| v.parse().unwrap()),
            to: to.parse().unwrap(),
            outcome,
            desired_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            attempt: "a1".into(),
            message: message.into(),
            urgency: None,
            emergency_reason: None,
            detail: crate::state::AttemptDetail::default(),
        };
        HistoryRecord {
            update_type: crate::ops::history::update_type_of(&entry),
            entry,
            author: Some("Ada <ada@example.com>".into()),
            committer: Some("Ada <ada@example.com>".into()),
            operator: None,
            reason: None,
        }
    }

    /// A rolled-back upgrade with every field the records give (issue #15).
    fn failed_with_detail() -> HistoryRecord {
        let mut r = entry(
            "acme-billing",
            Some("1.3.0"),
            "2.0.0",
            Outcome::RolledBack,
            "step health failed: exit 1",
        );
        r.entry.detail = crate::state::AttemptDetail {
            action: Some("upgrade".into()),
            started: Some("2026-11-21T02:03:00Z".parse().unwrap()),
            finished: Some("2026-11-21T02:05:03Z".parse().unwrap()),
            duration_ms: Some(123_000),
            approvers: vec!["ada@example.com".into(), "bo@example.com".into()],
            output_tail: Some("1\n2\n3\n4\n5\n6\nerror: p99 0.93 > 0.5, token=***\n".into()),
            health: Some(crate::state::HealthAtDecision {
                rollout: "billing@2.0.0".into(),
                wave: "canary".into(),
                rounds: 3,
                last_round: Some("2026-11-21T02:05:00Z".into()),
                status: crate::state::AnalysisStatus::Failed,
                failures: [("p99".to_string(), 2)].into(),
                last: [("p99".to_string(), "0.93".to_string())].into(),
            }),
        };
        r.update_type = crate::ops::history::update_type_of(&r.entry);
        r
    }

    /// `history --format json` with every field (issue #15): the JSON users and auditors parse.
    #[test]
    fn history_json_every_field() {
        let json = serde_json::to_string_pretty(&[failed_with_detail()]).unwrap();
        insta::assert_snapshot!("history_json_every_field", json);
    }

    /// `gantry history` as users read it: installs, upgrades, a rollback with its reason.
    #[test]
    fn history_text() {
        let mut rollback = entry("acme-billing", Some("2.0.0"), "1.3.0", Outcome::Succeeded, "");
        rollback.operator = Some("Bo <bo@example.com>".into());
        rollback.reason = Some("checkout errors after 2.0.0".into());
        let entries = [
            rollback,
            failed_with_detail(),
            entry("acme-billing", Some("1.0.0"), "1.3.0", Outcome::Succeeded, ""),
            entry("acme-billing", None, "1.0.0", Outcome::Succeeded, ""),
        ];
        insta::assert_snapshot!("history_text", text(&entries, None));
        insta::assert_snapshot!("history_text_empty", text(&[], Some("acme-billing")));
    }
}
