//! `gantry schedule [--selector K=V]… [--format text|json]`: prints
//! [`crate::ops::schedule::schedule`].

use crate::ops::agents::Selector;
use crate::ops::schedule::schedule;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, VersionsFormat, now};

pub fn run(cli: &Cli, format: VersionsFormat, selector: &Selector) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let selected = if selector.is_empty() {
        None
    } else {
        Some(crate::ops::agents::selected_names(&repo, selector)?)
    };
    let report = schedule(&repo, now(cli)?, selected.as_ref())?;
    match format {
        VersionsFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| OpsError::Usage(e.to_string()))?
        ),
        // Blocker reasons quote manifests: no terminal escapes.
        VersionsFormat::Text => print!("{}", crate::render::mask::strip_terminal_controls(&report.to_string())),
    }
    Ok(Exit::Ok)
}
