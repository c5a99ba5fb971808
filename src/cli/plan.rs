//! `gantry plan`: render what reconciling `head` (or merging it onto `base`) would do.

use crate::plan::{self, Action, Evidence, Plan};
use crate::reconcile::load::{self, LoadedCommit, load_commit};
use crate::render::{self, Format, PlanContext};
use crate::source::{WatchedRepo, is_manifest_path};
use crate::state::RecordedState;

use super::{Cli, CliError, Exit, now, resolve_commit};

pub fn run(cli: &Cli, base: Option<&str>, head: Option<&str>, format: Format) -> Result<Exit, CliError> {
    let now = now(cli)?;
    let repo = WatchedRepo::open(&cli.repo)?;
    let head_commit = resolve_commit(&repo, head)?;
    let loaded = load_commit(&repo, head_commit)?;
    if loaded.has_invalid() {
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        eprintln!(
            "error: the manifests at {} cannot be read; fix the errors above",
            &head_commit.to_string()[..12]
        );
        return Ok(Exit::Invalid);
    }
    let recorded = crate::state::read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;
    let anchor = crate::reconcile::apply::anchor_of(&repo, &recorded).map_err(CliError::Apply)?;
    let evidence = load::evidence(&repo, &loaded, &anchor)?;
    // With `[trust]`, CI sees that `apply` would refuse this head. Only a warning: pull
    // requests are often signed when merged, not before.
    if let Err(e) = crate::reconcile::apply::check_trust(&repo, head_commit, &loaded, &recorded) {
        eprintln!("warning: {e}");
    }
    let mut head_plan = plan_of(&loaded, &recorded, &evidence, now);
    head_plan.head = Some(head_commit.to_string());

    let mut context = PlanContext {
        head_summary: Some(repo.describe(head_commit)?.summary),
        ..PlanContext::default()
    };
    if let Some(base) = base {
        let base_commit = repo.resolve(base)?;
        head_plan.base = Some(base_commit.to_string());
        let base_loaded = load_commit(&repo, base_commit)?;
        let base_evidence = load::evidence(&repo, &base_loaded, &anchor)?;
        let base_plan = plan_of(&base_loaded, &recorded, &base_evidence, now);
        keep_changed_actions(&mut head_plan, &base_plan);
        for file in repo.changed_files(base_commit, head_commit)? {
            if is_manifest_path(&file.path) || file.path == "gantry.toml" {
                context.diffs.push(render::unified_diff(
                    &file.path,
                    file.old.as_deref(),
                    file.new.as_deref(),
                ));
            }
        }
    }
    let override_name = format!("templates/plan.{}.j2", format.as_str());
    let override_template = match format {
        Format::Json => None,
        _ => match repo.read_file(head_commit, &override_name)? {
            Some(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| CliError::Usage(format!("{override_name} is not UTF-8; save it as UTF-8")))?,
            ),
            None => None,
        },
    };
    if format == Format::Json {
        // Streamed: the JSON of a large plan is tens of megabytes.
        render::write_plan_json(&head_plan, std::io::BufWriter::new(std::io::stdout().lock()))?;
    } else {
        let text = render::render_plan(&head_plan, format, &context, override_template.as_deref())?;
        print!("{text}");
    }
    Ok(if head_plan.has_violations() {
        Exit::Violations
    } else {
        Exit::Ok
    })
}

fn plan_of(loaded: &LoadedCommit, recorded: &RecordedState, evidence: &Evidence, now: jiff::Timestamp) -> Plan {
    let mut plan = plan::plan(&loaded.plan_input(recorded, evidence, now));
    plan::attach_diagnostics(&mut plan, &loaded.diagnostics);
    plan
}

/// Keeps only the head actions that differ from base's action for the same target.
fn keep_changed_actions(head: &mut Plan, base: &Plan) {
    let same = |a: &Action, b: &Action| {
        a.action == b.action
            && a.from == b.from
            && a.to == b.to
            && a.stops == b.stops
            && a.migrations == b.migrations
            && a.config_diff == b.config_diff
            && a.status == b.status
            && a.violations == b.violations
    };
    head.actions
        .retain(|a| match base.actions.iter().find(|b| b.target == a.target) {
            Some(b) => !same(a, b),
            None => true,
        });
    head.summarize();
}
