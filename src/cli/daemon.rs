//! `gantry daemon`: watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions};

use super::{Cli, Exit, OpsError, now_fixed};

pub fn run(
    cli: &Cli,
    listen: Option<&str>,
    webhook_secret_file: Option<&std::path::Path>,
    selector: &crate::ops::agents::Selector,
    allow_rewind: bool,
    allowed_hosts: &[String],
) -> Result<Exit, OpsError> {
    let webhook_secret = webhook_secret_file
        .map(server::hooks::WebhookSecret::from_file)
        .transpose()
        .map_err(OpsError::Usage)?;
    let options = DaemonOptions {
        repo: cli.repo.clone(),
        listen: listen.map(str::to_string),
        now: now_fixed(cli)?,
        auth: cli.git.auth(),
        webhook_secret,
        selector: selector.clone(),
        allow_rewind,
        allowed_hosts: allowed_hosts.to_vec(),
    };
    server::run(options)?;
    Ok(Exit::Ok)
}
