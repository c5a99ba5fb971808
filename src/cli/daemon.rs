//! `gantry daemon`: watches and reconciles until SIGTERM (see `server`).

use crate::server::{self, DaemonOptions};

use super::{Cli, Exit, OpsError, now_fixed};

/// `--etcd`, `--shard`, `--lease-ttl`: join a shard of reconcilers on etcd (issue #14).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// etcd endpoints (comma-separated): join a shard; only its elected leader reconciles.
    #[arg(
        long = "etcd",
        env = "GANTRY_ETCD_ENDPOINTS",
        value_name = "URL[,URL…]",
        value_delimiter = ','
    )]
    pub etcd: Vec<String>,
    /// The group of members electing one leader (with --etcd).
    #[arg(long, default_value = "default", value_name = "NAME")]
    pub shard: String,
    /// The leader's lease: a dead leader is replaced within about this long (whole seconds, ≥ 2s).
    #[arg(long = "lease-ttl", default_value = "10s", value_name = "DURATION")]
    pub lease_ttl: String,
}

impl ClusterArgs {
    /// The cluster options, or `None` without `--etcd`.
    fn options(&self) -> Result<Option<crate::cluster::ClusterOptions>, OpsError> {
        let endpoints: Vec<String> = self
            .etcd
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Ok(None);
        }
        let lease_ttl = crate::manifest::values::parse_duration(&self.lease_ttl)
            .map_err(|e| OpsError::Usage(format!("--lease-ttl: {e}")))?;
        Ok(Some(crate::cluster::ClusterOptions {
            endpoints,
            shard: self.shard.clone(),
            lease_ttl,
        }))
    }
}

pub fn run(
    cli: &Cli,
    listen: Option<&str>,
    webhook_secret_file: Option<&std::path::Path>,
    selector: &crate::ops::agents::Selector,
    allow_rewind: bool,
    allowed_hosts: &[String],
    cluster: &ClusterArgs,
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
        cluster: cluster.options()?,
    };
    server::run(options)?;
    Ok(Exit::Ok)
}
