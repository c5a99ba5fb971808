//! `gantry daemon`: watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions};

use super::{Cli, Exit, OpsError, now_fixed};

pub fn run(cli: &Cli, listen: Option<&str>) -> Result<Exit, OpsError> {
    let options = DaemonOptions {
        repo: cli.repo.clone(),
        listen: listen.map(str::to_string),
        now: now_fixed(cli)?,
    };
    server::run(options)?;
    Ok(Exit::Ok)
}
