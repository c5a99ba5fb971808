//! `gantry approve`: commits a signed Approval for the approver (see `ops::approve`).

use std::path::PathBuf;

use crate::ops::approve::{ApproveOptions, approve};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError};

/// The command's arguments, as given.
pub struct Args<'a> {
    pub target: Option<&'a str>,
    pub selector: &'a [String],
    pub version: Option<&'a str>,
    pub key: Option<&'a PathBuf>,
    pub approver: Option<&'a str>,
    pub branch: Option<&'a str>,
}

pub fn run(cli: &Cli, args: Args) -> Result<Exit, OpsError> {
    let mut selector = crate::manifest::Labels::new();
    for pair in args.selector {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| OpsError::Usage(format!("--selector `{pair}` is not KEY=VALUE")))?;
        selector.insert(k.trim().to_string(), v.trim().to_string());
    }
    let options = ApproveOptions {
        target: args.target.map(str::to_string),
        selector,
        version: args.version.map(str::to_string),
        key: args.key.cloned(),
        approver: args.approver.map(str::to_string),
        branch: args.branch.map(str::to_string),
    };
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = approve(&repo, &options).map_err(|e| OpsError::Usage(e.to_string()))?;
    println!(
        "{} on {}: {} approves {} {} for {} ({}, signed with {})",
        &report.commit.to_string()[..12],
        report.branch,
        report.approver,
        report.component,
        report.version,
        report.targets.join(", "),
        report.file,
        report.fingerprint
    );
    let checked_out = repo
        .repo
        .head()
        .ok()
        .and_then(|h| h.shorthand().ok().map(str::to_string));
    if checked_out.as_deref() == Some(report.branch.as_str()) && repo.repo.workdir().is_some() {
        eprintln!(
            "note: {} is checked out here and its work tree does not have {} yet; run `git checkout HEAD -- {}` to update it",
            report.branch, report.file, report.file
        );
    }
    Ok(Exit::Ok)
}
