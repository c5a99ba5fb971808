//! `gantry validate`: parse, schema-check and cross-check every manifest at a commit.

use crate::render::Format;
use crate::source::WatchedRepo;

use super::{Cli, CliError, Exit, resolve_commit};

pub fn run(cli: &Cli, rev: Option<&str>, format: Format) -> Result<Exit, CliError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let commit = resolve_commit(&repo, rev)?;
    let loaded = crate::reconcile::load::load_commit(&repo, commit)?;
    let exit = if loaded.has_invalid() {
        Exit::Invalid
    } else if loaded.has_violations() {
        Exit::Violations
    } else {
        Exit::Ok
    };
    match format {
        Format::Json => {
            let out = serde_json::json!({
                "commit": commit.to_string(),
                "valid": exit == Exit::Ok,
                "diagnostics": loaded.diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| CliError::Usage(e.to_string()))?
            );
        }
        Format::Text | Format::Markdown => {
            for d in &loaded.diagnostics {
                eprintln!("{d}");
            }
            let d = &loaded.desired;
            let counts = format!(
                "{} components, {} releases, {} targets, {} policies, {} windows, {} approvals",
                d.components.len(),
                d.releases.values().map(Vec::len).sum::<usize>(),
                d.targets.len(),
                d.policies.len(),
                d.windows.len(),
                d.approvals.len()
            );
            let problems = loaded
                .diagnostics
                .iter()
                .filter(|d| d.severity != crate::manifest::Severity::Warning)
                .count();
            if exit == Exit::Ok {
                println!("{} is valid: {counts}", &commit.to_string()[..12]);
            } else {
                eprintln!(
                    "{} is not valid: {problems} problem{}",
                    &commit.to_string()[..12],
                    if problems == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(exit)
}
