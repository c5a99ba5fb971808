//! `gantry plan`: renders [`crate::ops::plan::plan`]'s report.

use crate::ops::plan::{PlanReport, plan};
use crate::render::{self, Format};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, now};

pub fn run(
    cli: &Cli,
    base: Option<&str>,
    head: Option<&str>,
    format: Format,
    selector: &crate::ops::agents::Selector,
) -> Result<Exit, OpsError> {
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
            if format == Format::Json {
                // Streamed: the JSON of a large plan is tens of megabytes.
                render::write_plan_json(&planned.plan, std::io::BufWriter::new(std::io::stdout().lock()))?;
            } else {
                let text = render::render_plan(&planned.plan, format, &planned.context, planned.template.as_deref())?;
                print!("{text}");
            }
        }
    }
    Ok(exit)
}
