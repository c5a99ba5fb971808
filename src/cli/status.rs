//! `gantry status`: prints [`crate::ops::status::status_report`] as a table or JSON.

use crate::ops::status::{StatusReport, status_report};
use crate::render::Format;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, now};

pub fn run(
    cli: &Cli,
    format: Format,
    selector: &crate::ops::agents::Selector,
    observe: bool,
) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    if observe {
        crate::ops::status::observe_now(&repo, now(cli)?)?;
    }
    let mut report = status_report(&repo, None, now(cli)?)?;
    if !selector.is_empty() {
        let selected = crate::ops::agents::selected_names(&repo, selector)?;
        report.targets.retain(|t| selected.contains(&t.target));
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| OpsError::Usage(e.to_string()))?
        );
        return Ok(Exit::Ok);
    }
    print!("{}", text(&report));
    if !report.valid {
        eprintln!("warning: the desired commit does not validate; run `gantry validate`");
    }
    Ok(Exit::Ok)
}

/// The status table as `gantry status` prints it.
pub fn text(report: &StatusReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let width = report.targets.iter().map(|t| t.target.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(
        out,
        "desired {} · state {} · now {}",
        &report.desired_commit[..12],
        report
            .state_commit
            .as_deref()
            .map_or("(none)", |c| &c[..12.min(c.len())]),
        report.now
    );
    let _ = writeln!(
        out,
        "{:width$}  {:10} {:9} {:9} {:12} {:10} NEXT",
        "TARGET", "COMPONENT", "CURRENT", "DESIRED", "STATUS", "ACTION"
    );
    for t in &report.targets {
        let _ = writeln!(
            out,
            "{:width$}  {:10} {:9} {:9} {:12} {:10} {}",
            t.target,
            t.component,
            t.current.as_deref().unwrap_or("-"),
            t.desired.as_deref().unwrap_or("-"),
            t.status,
            t.next_action,
            t.plan_status
        );
        for b in &t.blockers {
            let when = match (&b.opens_at, b.lifts_at_text()) {
                (Some(_), Some(at)) => format!(" (opens {at})"),
                (None, Some(at)) => format!(" (until {at})"),
                (_, None) => String::new(),
            };
            println!("{:width$}    blocked by {}: {}{when}", "", b.kind, b.reason);
        }
        for v in &t.violations {
            let _ = writeln!(out, "{:width$}    ✗ {v}", "");
        }
        if let (Some(outcome), Some(message)) = (&t.last_outcome, &t.last_message)
            && outcome != "succeeded"
        {
            let _ = writeln!(out, "{:width$}    last attempt {outcome}: {message}", "");
        }
    }
    for rollout in &report.rollouts {
        for wave in &rollout.waves {
            if let Some(analysis) = &wave.analysis {
                let _ = writeln!(
                    out,
                    "rollout {} {} wave {} ({:?}): {}",
                    rollout.component,
                    rollout.version,
                    wave.name,
                    wave.status,
                    analysis.summary()
                );
            }
        }
    }
    out
}
