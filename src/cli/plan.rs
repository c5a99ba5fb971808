//! `gantry plan`: renders [`crate::ops::plan::plan`]'s report.

use crate::ops::plan::{PlanReport, plan};
use crate::render::{self, Format};
use crate::source::WatchedRepo;

use super::{Cli, Exit, OpsError, now};

pub fn run(cli: &Cli, base: Option<&str>, head: Option<&str>, format: Format) -> Result<Exit, OpsError> {
    let now = now(cli)?;
    let repo = WatchedRepo::open(&cli.repo)?;
    let report = plan(&repo, base, head, format, now)?;
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
