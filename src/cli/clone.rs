//! `gantry clone URL DIR`: prepare a reconciler's repository from a remote (see `ops::clone`).

use crate::ops::clone::{CloneOptions, clone};

use super::{Cli, Exit, OpsError};

pub fn run(cli: &Cli, url: &str, dir: &std::path::Path) -> Result<Exit, OpsError> {
    let report = clone(&CloneOptions {
        url: url.to_string(),
        dir: dir.to_path_buf(),
        auth: cli.git.auth(),
    })?;
    let state = match &report.state_commit {
        Some(commit) => format!("{} at {}", report.state_branch, crate::ops::short(commit)),
        None => format!("{} not on the remote yet", report.state_branch),
    };
    println!(
        "cloned {} into {}: {} at {}, {state}; remote `{}`",
        report.url,
        report.dir.display(),
        report.desired_branch,
        crate::ops::short(&report.desired_commit),
        report.remote
    );
    if report.remote_unset {
        eprintln!(
            "warning: gantry.toml sets no `remote`: a reconciler in {} will neither fetch new commits nor publish \
             its recorded state (add `remote = \"{}\"` to gantry.toml)",
            report.dir.display(),
            report.remote
        );
    }
    Ok(Exit::Ok)
}
