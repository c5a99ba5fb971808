//! `gantry plan`: renders [`crate::ops::plan::plan`]'s report.

use std::path::PathBuf;

use crate::ops::plan::{PlanReport, plan};
use crate::render::summary::{DEFAULT_MAX_BYTES, Fit, fit_markdown};
use crate::render::{self, Format};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, now};

/// How the plan is printed.
pub struct Output {
    pub format: Format,
    /// Markdown only: a label to roll up by.
    pub group_by: Option<String>,
    /// Markdown only: the most bytes to print (default [`DEFAULT_MAX_BYTES`]).
    pub max_bytes: Option<usize>,
    /// Where to write the full plan too.
    pub full_output: Option<PathBuf>,
}

pub fn run(
    cli: &Cli,
    base: Option<&str>,
    head: Option<&str>,
    output: &Output,
    selector: &crate::ops::agents::Selector,
) -> Result<Exit, OpsError> {
    let format = output.format;
    if format != Format::Markdown && (output.group_by.is_some() || output.max_bytes.is_some()) {
        return Err(OpsError::Usage(
            "--group-by and --max-bytes shape markdown for a pull request comment; add --format markdown".to_string(),
        ));
    }
    let now = now(cli)?;
    let repo = WatchedRepo::open(&cli.repo)?;
    let mut report = plan(&repo, base, head, format, now)?;
    if let PlanReport::Planned(planned) = &mut report
        && !selector.is_empty()
    {
        // Planned for the whole fleet (waves and maxParallel count every target); only this
        // selector's rows are shown.
        let selected = crate::ops::agents::selected_names(&repo, selector)?;
        planned.plan.actions.retain(|a| selected.contains(&a.target));
        planned.plan.summarize();
    }
    let exit = report.exit();
    match report {
        PlanReport::Unreadable { commit, diagnostics } => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            eprintln!(
                "error: the manifests at {} cannot be read; fix the errors above",
                &commit.to_string()[..12]
            );
        }
        PlanReport::Planned(planned) => {
            if let Some(warning) = &planned.trust_warning {
                eprintln!("warning: {warning}");
            }
            if format == Format::Json && planned.template.is_none() {
                if let Some(path) = &output.full_output {
                    let file = std::fs::File::create(path).map_err(|e| full_output_error(path, &e))?;
                    render::write_plan_json(&planned.plan, std::io::BufWriter::new(file))?;
                }
                // Streamed: the JSON of a large plan is tens of megabytes.
                render::write_plan_json(&planned.plan, std::io::BufWriter::new(std::io::stdout().lock()))?;
            } else {
                let text = render::render_plan(&planned.plan, format, &planned.context, planned.template.as_deref())?;
                if let Some(path) = &output.full_output {
                    std::fs::write(path, &text).map_err(|e| full_output_error(path, &e))?;
                }
                if format == Format::Markdown {
                    let fit = Fit {
                        max_bytes: output.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                        group_by: output.group_by.clone(),
                        full_output: output.full_output.as_ref().map(|p| p.display().to_string()),
                    };
                    print!("{}", fit_markdown(&planned.plan, &planned.context, &text, &fit));
                } else {
                    print!("{text}");
                }
            }
            // The process ends right after printing: freeing a large plan value by value (10,000
            // actions with their release notes: ~3% of a cold plan's instructions, on one
            // thread), and the commit and recorded state it was made from, only delays the exit.
            // Plain data, nothing to flush or release.
            std::mem::forget(planned);
        }
    }
    Ok(exit)
}

fn full_output_error(path: &std::path::Path, e: &std::io::Error) -> OpsError {
    OpsError::Usage(format!("--full-output {}: {e}; name a writable file", path.display()))
}
