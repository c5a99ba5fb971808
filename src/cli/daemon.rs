//! `gantry daemon`: watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions, ServerError};

use super::{Cli, CliError, Exit, now_fixed};

pub fn run(cli: &Cli, listen: Option<&str>, allow_rewind: bool, allowed_hosts: &[String]) -> Result<Exit, CliError> {
    let options = DaemonOptions {
        repo: cli.repo.clone(),
        listen: listen.map(str::to_string),
        now: now_fixed(cli)?,
        allow_rewind,
        allowed_hosts: allowed_hosts.to_vec(),
    };
    match server::run(options) {
        Ok(()) => Ok(Exit::Ok),
        Err(ServerError::Locked(e)) => {
            eprintln!("error: {e}");
            Ok(Exit::Locked)
        }
        Err(e) => Err(CliError::Server(e)),
    }
}
