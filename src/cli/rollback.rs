//! `gantry rollback TARGET… | --selector K=V [--to VERSION] [--branch NAME] [--reason TEXT]`:
//! runs [`crate::ops::rollback::rollback`] and says where the commit went.

use crate::ops::rollback::{RollbackOptions, rollback};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError};

pub fn run(cli: &Cli, options: &RollbackOptions) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = rollback(&repo, options)?;
    for pin in &report.pinned {
        println!(
            "{} on {}: pin {} to {} ({})",
            &report.commit.to_string()[..12],
            report.on,
            pin.target,
            pin.version,
            pin.file
        );
    }
    if let Some(desired_branch) = &report.updated_checkout {
        let mut files: Vec<&str> = report.pinned.iter().map(|p| p.file.as_str()).collect();
        files.dedup();
        eprintln!(
            "note: {desired_branch} is checked out here: {} updated in the work tree and the index",
            match files.as_slice() {
                [one] => format!("{one} was"),
                many => format!("{} were", many.join(", ")),
            }
        );
    }
    Ok(Exit::Ok)
}
