//! `gantry retry TARGET… [--selector K=V]… [--branch NAME]`: runs [`crate::ops::retry::retry`]
//! and says what the commit unblocks.

use crate::ops::retry::{RetryOptions, retry};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError};

pub fn run(
    cli: &Cli,
    targets: &[String],
    selector: &[String],
    branch: Option<&str>,
    reason: Option<&str>,
) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let options = RetryOptions {
        targets: targets.to_vec(),
        selector: selector.to_vec(),
        branch: branch.map(str::to_string),
        reason: reason.map(str::to_string),
    };
    let report = retry(&repo, &options)?;
    println!(
        "{} on {}: {}",
        &report.commit.to_string()[..12],
        report.on,
        report.summary()
    );
    for bumped in &report.targets {
        println!("  {bumped}");
    }
    Ok(Exit::Ok)
}
