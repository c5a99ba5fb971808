//! `gantry versions TARGET [--format text|json]`: prints [`crate::ops::versions::versions`].

use crate::ops::versions::versions;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, VersionsFormat, now};

pub fn run(cli: &Cli, target: &str, format: VersionsFormat) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = versions(&repo, target, now(cli)?)?;
    match format {
        VersionsFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| OpsError::Usage(e.to_string()))?
        ),
        // Deprecation notes come from manifests: no terminal escapes.
        VersionsFormat::Text => print!("{}", crate::render::mask::strip_terminal_controls(&report.to_string())),
    }
    Ok(Exit::Ok)
}
