//! `gantry apply`: one reconcile pass now, with live progress (bars on a terminal, lines otherwise).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::ops::apply::{counts, exit};
use crate::reconcile::apply::{ApplyError, ApplyOptions};
use crate::reconcile::attempt::{ProgressEvent, ProgressSink};
use crate::render::Format;
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, now_fixed};

/// Plain progress lines on stderr (a terminal gets the same lines, with colour-free symbols).
struct Lines {
    out: Mutex<std::io::Stderr>,
}

impl ProgressSink for Lines {
    fn event(&self, event: &ProgressEvent) {
        // Step messages come from scripts and manifests: no terminal escapes (issue #18).
        let line = crate::render::mask::strip_terminal_controls(&progress_line(event));
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(out, "{line}");
    }
}

/// One progress line of `gantry apply` (text, not on a terminal).
pub fn progress_line(event: &ProgressEvent) -> String {
    match event {
        ProgressEvent::AttemptStarted {
            target,
            component,
            action,
            from,
            to,
            steps,
            ..
        } => format!(
            "▶ {target}: {action} {component} {} → {} ({steps} steps)",
            from.as_deref().unwrap_or("(none)"),
            to.as_deref().unwrap_or("(none)")
        ),
        ProgressEvent::StepStarted {
            target,
            step,
            index,
            steps,
            ..
        } => format!("  {target} [{index}/{steps}] {step} …"),
        ProgressEvent::StepFinished {
            target,
            step,
            ok,
            message,
            duration_ms,
            ..
        } => {
            format!(
                "  {target} {} {step} ({duration_ms} ms){}",
                if *ok { "✓" } else { "✗" },
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            )
        }
        ProgressEvent::RollbackStarted { target, reason, .. } => format!("↩ {target}: rolling back ({reason})"),
        ProgressEvent::Held {
            target, action, reason, ..
        } => format!("⏸ {target}: {action} held, nothing changed ({reason}); the next pass tries again"),
        ProgressEvent::AttemptFinished {
            target,
            outcome,
            message,
            ..
        } => {
            format!(
                "■ {target}: {outcome}{}",
                if message.is_empty() {
                    String::new()
                } else {
                    format!(" — {message}")
                }
            )
        }
    }
}

/// A live view on a terminal: one bar per running attempt (its steps) under an overall bar;
/// finished attempts print a line above the bars.
struct Bars {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    attempts: Mutex<std::collections::HashMap<String, indicatif::ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        let multi = indicatif::MultiProgress::new();
        let overall = multi.add(indicatif::ProgressBar::new(0));
        overall.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} attempts finished {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        overall.enable_steady_tick(std::time::Duration::from_millis(120));
        Bars {
            multi,
            overall,
            attempts: Mutex::new(Default::default()),
        }
    }
}

impl ProgressSink for Bars {
    fn event(&self, event: &ProgressEvent) {
        let mut attempts = self.attempts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            ProgressEvent::AttemptStarted {
                target,
                attempt,
                action,
                from,
                to,
                steps,
                ..
            } => {
                self.overall.inc_length(1);
                let bar = self
                    .multi
                    .insert_before(&self.overall, indicatif::ProgressBar::new(*steps as u64));
                bar.set_style(
                    indicatif::ProgressStyle::with_template("  {prefix:24} [{bar:20}] {pos}/{len} {wide_msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_prefix(target.clone());
                bar.set_message(format!(
                    "{action} {} → {}",
                    from.as_deref().unwrap_or("(none)"),
                    to.as_deref().unwrap_or("(none)")
                ));
                attempts.insert(attempt.clone(), bar);
            }
            ProgressEvent::StepStarted {
                attempt,
                step,
                index,
                steps,
                ..
            } => {
                if let Some(bar) = attempts.get(attempt) {
                    bar.set_length(*steps as u64);
                    bar.set_position(index.saturating_sub(1) as u64);
                    bar.set_message(step.clone());
                }
            }
            ProgressEvent::StepFinished { attempt, ok, .. } => {
                if let Some(bar) = attempts.get(attempt)
                    && *ok
                {
                    bar.inc(1);
                }
            }
            ProgressEvent::RollbackStarted { attempt, reason, .. } => {
                if let Some(bar) = attempts.get(attempt) {
                    bar.set_message(format!("rolling back: {reason}"));
                }
            }
            ProgressEvent::Held {
                target, action, reason, ..
            } => {
                let _ = self.multi.println(format!("⏸ {target}: {action} held ({reason})"));
            }
            ProgressEvent::AttemptFinished {
                target,
                attempt,
                outcome,
                message,
            } => {
                if let Some(bar) = attempts.remove(attempt) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.overall.inc(1);
                let mark = if outcome == "succeeded" { "✓" } else { "✗" };
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(" — {message}")
                };
                let _ = self.multi.println(format!("{mark} {target}: {outcome}{detail}"));
            }
        }
    }
}

/// One JSON event per line on stdout.
struct JsonLines {
    out: Mutex<std::io::Stdout>,
}

impl ProgressSink for JsonLines {
    fn event(&self, event: &ProgressEvent) {
        if let Ok(text) = serde_json::to_string(event) {
            let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(out, "{text}");
        }
    }
}

pub fn run(
    cli: &Cli,
    targets: &[String],
    dry_run: bool,
    allow_rewind: bool,
    format: Format,
    selector: &crate::ops::agents::Selector,
) -> Result<Exit, OpsError> {
    let repo = WatchedRepo::open(&cli.repo)?;
    let options = ApplyOptions {
        targets: targets.to_vec(),
        dry_run,
        now: now_fixed(cli)?,
        allow_rewind,
    };
    let lines = Lines {
        out: Mutex::new(std::io::stderr()),
    };
    let json = JsonLines {
        out: Mutex::new(std::io::stdout()),
    };
    let bars = (format != Format::Json && std::io::stderr().is_terminal()).then(Bars::new);
    let sink: &dyn ProgressSink = match (&bars, format) {
        (_, Format::Json) => &json,
        (Some(bars), _) => bars,
        (None, _) => &lines,
    };
    // With a remote or a selector: the fleet's shared state, claims and publishing (ops::shared).
    // `[[notify]]` webhooks as the daemon sends them (ops::notify); one that is down is a
    // warning, never a failed apply.
    let notified = crate::ops::apply::apply_notifying(&repo, &options, selector, &cli.git.auth(), sink);
    for line in &notified.undelivered {
        eprintln!("warning: notification not delivered: {line} (the apply itself is not affected)");
    }
    let result = notified.result;
    if let Some(bars) = &bars {
        bars.overall.finish_and_clear();
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            if let OpsError::Apply(ApplyError::InvalidCommit {
                commit, diagnostics, ..
            }) = &e
            {
                for d in diagnostics {
                    eprintln!("{d}");
                }
                eprintln!(
                    "error: desired commit {} is not valid; nothing was applied",
                    crate::ops::short(commit)
                );
                return Ok(e.exit());
            }
            return Err(e);
        }
    };
    if format == Format::Json {
        let summary = serde_json::json!({
            "event": "pass_finished",
            "commit": report.commit,
            "resumed": report.resumed,
            "outcomes": report.outcomes.iter().map(|o| serde_json::json!({
                "target": o.target, "component": o.component,
                "from": o.from.as_ref().map(ToString::to_string), "to": o.to.to_string(),
                "outcome": o.outcome.as_str(), "attempt": o.attempt, "message": o.message,
            })).collect::<Vec<_>>(),
            "held": report.held.iter().map(|(target, reason)| serde_json::json!({
                "target": target, "reason": reason,
            })).collect::<Vec<_>>(),
        });
        println!("{summary}");
    } else {
        if dry_run && let Some(plan) = &report.plan {
            let text = crate::render::render_plan(plan, Format::Text, &Default::default(), None)?;
            print!("{text}");
        }
        for (target, reason) in &report.held {
            eprintln!("held: {target}: {reason}");
        }
        for (target, error) in &report.not_started {
            eprintln!("error: target {target}: the attempt could not start: {error}");
        }
        let c = counts(&report);
        eprintln!(
            "{} attempt{} ({} succeeded, {} failed or rolled back){}{}; {} blocked, {} with violations",
            c.attempts,
            if c.attempts == 1 { "" } else { "s" },
            c.succeeded,
            c.failed,
            if c.resumed > 0 {
                format!(", {} resumed after an interruption", c.resumed)
            } else {
                String::new()
            },
            if dry_run { " (dry run: nothing ran)" } else { "" },
            c.blocked,
            c.violations,
        );
    }
    Ok(exit(&report))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gantry apply`'s progress lines (not on a terminal): an upgrade step by step, a failing
    /// health check and its rollback.
    #[test]
    fn apply_progress_lines() {
        let (t, a) = ("acme-billing".to_string(), "20261121T020000-acme-billing".to_string());
        let events = [
            ProgressEvent::AttemptStarted {
                target: t.clone(),
                component: "billing".into(),
                attempt: a.clone(),
                action: "upgrade".into(),
                from: Some("1.3.0".into()),
                to: Some("2.0.0".into()),
                steps: 3,
            },
            ProgressEvent::StepStarted {
                target: t.clone(),
                attempt: a.clone(),
                step: "migrate up split-namespaces".into(),
                kind: "migrate-up".into(),
                index: 1,
                steps: 3,
            },
            ProgressEvent::StepFinished {
                target: t.clone(),
                attempt: a.clone(),
                step: "migrate up split-namespaces".into(),
                ok: true,
                message: String::new(),
                duration_ms: 120,
            },
            ProgressEvent::StepFinished {
                target: t.clone(),
                attempt: a.clone(),
                step: "health 2.0.0".into(),
                ok: false,
                message: "exit 1".into(),
                duration_ms: 3004,
            },
            ProgressEvent::RollbackStarted {
                target: t.clone(),
                attempt: a.clone(),
                reason: "step health 2.0.0 failed: exit 1".into(),
            },
            ProgressEvent::AttemptFinished {
                target: t.clone(),
                attempt: a.clone(),
                outcome: "rolled_back".into(),
                message: "step health 2.0.0 failed: exit 1".into(),
            },
            ProgressEvent::AttemptStarted {
                target: "new-billing".into(),
                component: "billing".into(),
                attempt: "a2".into(),
                action: "install".into(),
                from: None,
                to: Some("2.0.0".into()),
                steps: 1,
            },
            ProgressEvent::AttemptFinished {
                target: "new-billing".into(),
                attempt: "a2".into(),
                outcome: "succeeded".into(),
                message: String::new(),
            },
        ];
        let lines: Vec<String> = events.iter().map(progress_line).collect();
        insta::assert_snapshot!("apply_progress_lines", lines.join("\n"));
    }
}
