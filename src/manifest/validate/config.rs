//! Target config checked against its component: keys, types and hot-reload rules.

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifests;
use crate::manifest::types::*;
use crate::manifest::values;

pub(super) fn validate_config(manifests: &Manifests, diags: &mut Vec<Diagnostic>) {
    let Some(origin) = &manifests.config_origin else { return };
    let config = &manifests.config;
    if let Err(e) = config.poll_interval() {
        diags.push(origin.diagnostic(Severity::Invalid, "duration", "/poll_interval", e));
    }
    if let Err(e) = values::parse_duration(&config.logs.max_age) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "duration",
            "/logs/max_age",
            format!("logs.max_age: {e}"),
        ));
    }
    for (pointer, field, value) in [
        (
            "/housekeeping/interval",
            "housekeeping.interval",
            &config.housekeeping.interval,
        ),
        (
            "/housekeeping/prune_after",
            "housekeeping.prune_after",
            &config.housekeeping.prune_after,
        ),
    ] {
        match values::parse_duration(value) {
            Ok(d) if d.is_zero() && field == "housekeeping.interval" => diags.push(origin.diagnostic(
                Severity::Invalid,
                "duration",
                pointer,
                format!("{field}: must be longer than 0 (e.g. 1h, 30m)"),
            )),
            Ok(_) => {}
            Err(e) => diags.push(origin.diagnostic(Severity::Invalid, "duration", pointer, format!("{field}: {e}"))),
        }
    }
    for (i, hook) in config.notify.iter().enumerate() {
        for (j, lead) in hook.lead_times.iter().flatten().enumerate() {
            match values::parse_duration(lead) {
                Ok(d) if d.is_zero() => diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "duration",
                    &format!("/notify/{i}/lead_times/{j}"),
                    format!("notify.lead_times: {lead:?} must be longer than 0 (e.g. 7d, 24h, 1h)"),
                )),
                Ok(_) => {}
                Err(e) => diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "duration",
                    &format!("/notify/{i}/lead_times/{j}"),
                    format!("notify.lead_times: {e}"),
                )),
            }
        }
    }
    let ceiling = crate::executor::MAX_STEP_LOG_BYTES_CEILING;
    if !(1024..=ceiling).contains(&config.logs.max_step_bytes) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "limit",
            "/logs/max_step_bytes",
            format!(
                "logs.max_step_bytes = {} is out of range (1024 to {ceiling}: the tail half is held in memory while a step runs)",
                config.logs.max_step_bytes
            ),
        ));
    }
    if config.logs.keep == 0 {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "limit",
            "/logs/keep",
            "logs.keep must be at least 1 (the log of the step that just failed is what people read)",
        ));
    }
    for (name, executor) in &config.executors {
        let pointer = format!("/executors/{name}");
        if !values::is_valid_name(name) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "name",
                &pointer,
                format!("executor name `{name}` is invalid (lowercase letters, digits, `.`, `_`, `-`)"),
            ));
        }
        match (executor.executor_type, &executor.command) {
            (ExecutorType::Plugin, None) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &pointer,
                format!("executor `{name}` is a plugin but has no `command` (the program to start, e.g. [\"plugins/kubectl.py\"])"),
            )),
            (ExecutorType::Plugin, Some(command)) if command.is_empty() || command[0].is_empty() => diags.push(
                origin.diagnostic(Severity::Invalid, "schema", &format!("{pointer}/command"), format!("executor `{name}`: `command` must name a program")),
            ),
            _ => {}
        }
    }
    if config.listen.parse::<std::net::SocketAddr>().is_err() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/listen",
            format!("listen `{}` is not an address such as 127.0.0.1:9184", config.listen),
        ));
    }
    for (field, branch) in [
        ("desired_branch", &config.desired_branch),
        ("state_branch", &config.state_branch),
    ] {
        if !values::is_valid_branch_name(branch) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &format!("/{field}"),
                format!("{field} `{branch}` is not a valid branch name"),
            ));
        }
    }
    if config.desired_branch == config.state_branch {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/state_branch",
            "state_branch must differ from desired_branch: gantry writes only to its own branch",
        ));
    }
}
