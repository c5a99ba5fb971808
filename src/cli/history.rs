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
                "time,target,component,from,to,outcome,attempt,desired_commit,state_commit,message,author,committer,operator,reason"
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
                ];
                println!("{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        HistoryFormat::Text => print!("{}", text(&entries, target)),
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
            "{}  {}  {} {} → {}  {}{}{}{}",
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
        );
    }
    out
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
        };
        HistoryRecord {
            entry,
            author: Some("Ada <ada@example.com>".into()),
            committer: Some("Ada <ada@example.com>".into()),
            operator: None,
            reason: None,
        }
    }

    /// `gantry history` as users read it: installs, upgrades, a rollback with its reason.
    #[test]
    fn history_text() {
        let mut rollback = entry("acme-billing", Some("2.0.0"), "1.3.0", Outcome::Succeeded, "");
        rollback.operator = Some("Bo <bo@example.com>".into());
        rollback.reason = Some("checkout errors after 2.0.0".into());
        let entries = [
            rollback,
            entry(
                "acme-billing",
                Some("1.3.0"),
                "2.0.0",
                Outcome::RolledBack,
                "step health failed: exit 1",
            ),
            entry("acme-billing", Some("1.0.0"), "1.3.0", Outcome::Succeeded, ""),
            entry("acme-billing", None, "1.0.0", Outcome::Succeeded, ""),
        ];
        insta::assert_snapshot!("history_text", text(&entries, None));
        insta::assert_snapshot!("history_text_empty", text(&[], Some("acme-billing")));
    }
}
