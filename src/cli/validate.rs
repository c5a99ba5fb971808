//! `gantry validate`: prints [`crate::ops::validate::validate`]'s report.

use crate::ops::validate::validate;
use crate::render::Format;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError};

pub fn run(cli: &Cli, rev: Option<&str>, format: Format) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = validate(&repo, rev)?;
    let exit = report.exit();
    match format {
        Format::Json => {
            let out = serde_json::json!({
                "commit": report.commit.to_string(),
                "valid": exit == Exit::Ok,
                "diagnostics": report.diagnostics,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).map_err(|e| OpsError::Usage(e.to_string()))?
            );
        }
        Format::Text | Format::Markdown => {
            for d in &report.diagnostics {
                eprintln!("{d}");
            }
            if exit == Exit::Ok {
                println!("{}", report.verdict());
            } else {
                eprintln!("{}", report.verdict());
            }
        }
    }
    Ok(exit)
}
