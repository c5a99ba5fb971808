//! `gantry history [TARGET]`: finished attempts from the state branch, newest first.

use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::read_history;

use super::{Cli, CliError, Exit, HistoryFormat, resolve_commit};

pub fn run(cli: &Cli, target: Option<&str>, format: HistoryFormat) -> Result<Exit, CliError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let state_branch = match resolve_commit(&repo, None) {
        Ok(commit) => load_commit(&repo, commit)?.desired.config.state_branch,
        Err(_) => crate::manifest::RepoConfig::default().state_branch,
    };
    let entries = read_history(&repo.repo, &state_branch, target)?;
    match format {
        HistoryFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&entries).map_err(|e| CliError::Usage(e.to_string()))?
            );
        }
        HistoryFormat::Csv => {
            println!("time,target,component,from,to,outcome,attempt,desired_commit,state_commit,message");
            for e in &entries {
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
                ];
                println!("{}", fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        HistoryFormat::Text => {
            if entries.is_empty() {
                println!(
                    "no recorded outcomes{}",
                    target.map(|t| format!(" for {t}")).unwrap_or_default()
                );
            }
            for e in &entries {
                println!(
                    "{}  {}  {} {} → {}  {}{}",
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
                    }
                );
            }
        }
    }
    Ok(Exit::Ok)
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}
