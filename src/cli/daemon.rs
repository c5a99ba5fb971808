//! `gantry daemon`: watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions, ServerError};

use super::{Cli, CliError, Exit, now_fixed};

pub fn run(
    cli: &Cli,
    listen: Option<&str>,
    webhook_secret_file: Option<&std::path::Path>,
    selector: &crate::ops::agents::Selector,
) -> Result<Exit, CliError> {
    let webhook_secret = webhook_secret_file
        .map(server::hooks::WebhookSecret::from_file)
        .transpose()
        .map_err(CliError::Usage)?;
    let options = DaemonOptions {
        repo: cli.repo.clone(),
        listen: listen.map(str::to_string),
        now: now_fixed(cli)?,
        auth: cli.git.auth(),
        webhook_secret,
        selector: selector.clone(),
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
