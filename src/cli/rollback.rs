//! `gantry rollback TARGET [--to VERSION] [--branch NAME]`: runs [`crate::ops::rollback::rollback`]
//! and says where the commit went.

use crate::ops::rollback::rollback;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError};

pub fn run(
    cli: &Cli,
    target: &str,
    to: Option<&str>,
    branch: Option<&str>,
    reason: Option<&str>,
) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = rollback(&repo, target, to, branch, reason)?;
    println!(
        "{} on {}: pin {} to {} ({})",
        &report.commit.to_string()[..12],
        report.on,
        report.target,
        report.version,
        report.file
    );
    if let Some(desired_branch) = &report.updated_checkout {
        eprintln!(
            "note: {desired_branch} is checked out here: {} was updated in the work tree and the index",
            report.file
        );
    }
    Ok(Exit::Ok)
}
