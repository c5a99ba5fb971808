//! `gantry status`: prints [`crate::ops::status::status_report`] as a table or JSON.

use crate::ops::status::{Projection, StatusReport, status_report};
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
    let projection = if format == Format::Json {
        Projection::Schedule
    } else {
        Projection::Skip
    };
    let mut report = status_report(&repo, None, now(cli)?, projection)?;
    if !selector.is_empty() {
        let selected = crate::ops::agents::selected_names(&repo, selector)?;
        report.targets.retain(|t| selected.contains(&t.target));
        if let Some(schedule) = &mut report.schedule {
            schedule.retain_targets(&selected);
        }
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| OpsError::Usage(e.to_string()))?
        );
        return Ok(Exit::Ok);
    }
    // Blocker reasons and step messages come from recorded state raw: no terminal escapes.
    print!("{}", crate::render::mask::strip_terminal_controls(&text(&report)));
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
    let _ = match &report.trust_anchor {
        Some(a) => writeln!(
            out,
            "trust anchor {} (state branch {}, signers {}) · pinned in .git/gantry/trust-anchor",
            &a.commit[..12.min(a.commit.len())],
            a.state_branch,
            a.allowed_signers.as_deref().unwrap_or("none: [trust] off")
        ),
        None => writeln!(out, "trust anchor (none pinned yet: the first apply pins it)"),
    };
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
            let _ = writeln!(out, "{:width$}    blocked by {}: {}{when}", "", b.kind, b.reason);
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
        // A halted rollout runs no analysis: say why it stopped instead of the last rounds.
        if let Some(reason) = &rollout.halted {
            let _ = writeln!(
                out,
                "rollout {} {} halted: {reason}",
                rollout.component, rollout.version
            );
            continue;
        }
        for wave in &rollout.waves {
            if let Some(analysis) = &wave.analysis {
                let _ = writeln!(
                    out,
                    "rollout {} {} wave {} ({}): {}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::status::TargetStatusRow;
    use crate::plan::{Blocker, BlockerKind};

    fn row(
        target: &str,
        current: Option<&str>,
        desired: &str,
        status: &str,
        action: &str,
        plan: &str,
    ) -> TargetStatusRow {
        TargetStatusRow {
            target: target.into(),
            component: "billing".into(),
            labels: Default::default(),
            current: current.map(Into::into),
            desired: Some(desired.into()),
            status: status.into(),
            next_action: action.into(),
            plan_status: plan.into(),
            blockers: Vec::new(),
            violations: Vec::new(),
            opens_at: None,
            last_outcome: None,
            last_message: None,
            attempt: None,
            update_available: None,
        }
    }

    /// The status table as users read it. Regression (issue #9): a release-age blocker printed
    /// as `blocked by releaseage`; it reads `release_age`, as in JSON.
    #[test]
    fn status_text() {
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let mut window = Blocker::new(BlockerKind::Window, "outside the allow window of \"eu-nights\"");
        window.opens_at = Some(
            "2026-11-21T01:00:00Z"
                .parse::<jiff::Timestamp>()
                .unwrap()
                .to_zoned(zone),
        );
        let mut age = Blocker::new(BlockerKind::ReleaseAge, "2.0.0 is younger than minReleaseAge 7d");
        age.until = Some("2026-11-25T00:00:00Z".parse().unwrap());
        let mut blocked = row(
            "globex-billing",
            Some("1.2.0"),
            "2.0.0",
            "converged",
            "upgrade",
            "blocked",
        );
        blocked.blockers = vec![window, age];
        let mut failed = row(
            "initech-billing",
            Some("1.2.0"),
            "2.0.0",
            "rolled_back",
            "upgrade",
            "blocked",
        );
        failed.blockers = vec![Blocker::new(
            BlockerKind::Halted,
            "the last attempt to 2.0.0 rolled back",
        )];
        failed.last_outcome = Some("rolled_back".into());
        failed.last_message = Some("step health failed: exit 1".into());
        // Issue #15: an attempt in flight is named with its step, not as one that "did not finish".
        let flight = crate::ops::status::AttemptInFlight {
            id: "20261120T095900Z-hooli-billing-00c0de".into(),
            action: "upgrade".into(),
            from: Some("1.2.0".into()),
            to: "2.0.0".into(),
            started: "2026-11-20T09:59:00Z".into(),
            step: Some("01-deploy-2.0.0".into()),
            state: crate::ops::status::FlightState::Running,
        };
        let mut running = row(
            "hooli-billing",
            Some("1.2.0"),
            "2.0.0",
            "in_progress",
            "upgrade",
            "blocked",
        );
        running.blockers = vec![Blocker::new(
            BlockerKind::InProgress,
            format!("attempt {}: {flight}", flight.id),
        )];
        running.last_message = Some(flight.to_string());
        running.attempt = Some(flight);
        let mut violation = row("umbrella-billing", None, "9.0.0", "new", "install", "violation");
        violation.violations = vec!["release 9.0.0 of `billing` does not exist".into()];
        let report = StatusReport {
            desired_commit: "0123456789abcdef0123456789abcdef01234567".into(),
            state_commit: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
            now: "2026-11-20T10:00:00Z".into(),
            valid: true,
            trust_anchor: None,
            // A halted rollout says why, not its last analysis rounds (which no longer run).
            rollouts: vec![crate::plan::Rollout {
                component: "billing".into(),
                version: crate::manifest::Version::parse("2.0.0").unwrap(),
                policy: None,
                waves: Vec::new(),
                halted: Some("the last attempt to 2.0.0 rolled back on initech-billing".into()),
            }],
            schedule: None,
            timeline: None,
            targets: vec![
                row("acme-billing", Some("2.0.0"), "2.0.0", "converged", "noop", "noop"),
                blocked,
                running,
                failed,
                violation,
            ],
        };
        let text = text(&report);
        assert!(text.contains("blocked by release_age: "), "{text}");
        insta::assert_snapshot!("status_text", text);
    }
}
