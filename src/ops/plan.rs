//! Planning for review: what reconciling `head` would do now, or with a base, what merging it
//! would change (`gantry plan`).

use std::collections::BTreeMap;
use std::sync::Arc;

use git2::Oid;

use crate::manifest::Diagnostic;
use crate::plan::{self, Action, Evidence, Plan};
use crate::reconcile::load::{self, LoadedCommit, load_commit};
use crate::render::{self, Format, PlanContext};
use crate::source::{WatchedRepo, is_manifest_path};
use crate::state::RecordedState;

use super::{Exit, OpsError, resolve_commit};

/// What `plan` produced.
#[derive(Debug)]
pub enum PlanReport {
    /// The head's manifests cannot be read: nothing was planned.
    Unreadable { commit: Oid, diagnostics: Vec<Diagnostic> },
    /// The plan, ready to render.
    Planned(Box<Planned>),
}

/// A plan with what its rendering needs.
#[derive(Debug)]
pub struct Planned {
    pub plan: Plan,
    /// The head's summary line and, with a base, the diffs of changed manifests.
    pub context: PlanContext,
    /// The repository's `templates/plan.<format>.j2` at head, if it has one (never for JSON).
    pub template: Option<String>,
    /// `[trust]` would refuse head (a warning: pull requests are often signed when merged).
    pub trust_warning: Option<String>,
    /// The head commit and the recorded state the plan was made from, handed over with it
    /// rather than freed here: a command line run ends right after printing and never frees
    /// them (issue #17: freeing 10,000 targets and their records took ~20 ms of a cold plan,
    /// on the thread that renders next).
    pub loaded: LoadedCommit,
    /// The recorded state the plan was made from (kept for the same reason as `loaded`).
    pub recorded: Arc<RecordedState>,
}

impl PlanReport {
    /// The exit code: 1 unreadable, 2 violations (SPEC §6, §8).
    pub fn exit(&self) -> Exit {
        match self {
            PlanReport::Unreadable { .. } => Exit::Invalid,
            PlanReport::Planned(p) if p.plan.has_violations() => Exit::Violations,
            PlanReport::Planned(_) => Exit::Ok,
        }
    }
}

/// Plans `head` (default: tip of the desired branch) at `now`; with `base`, keeps only the
/// actions that differ from base's and adds a unified diff of every changed manifest.
///
/// # Errors
/// The repository, a revision or recorded state cannot be read; the override template is not
/// UTF-8.
pub fn plan(
    repo: &WatchedRepo,
    base: Option<&str>,
    head: Option<&str>,
    format: Format,
    now: jiff::Timestamp,
) -> Result<PlanReport, OpsError> {
    let head_commit = resolve_commit(repo, head)?;
    let (mut loaded, recorded) = load::load_with_recorded(repo, head_commit)?;
    if loaded.has_invalid() {
        return Ok(PlanReport::Unreadable {
            commit: head_commit,
            diagnostics: loaded.diagnostics,
        });
    }
    let artifacts = super::artifacts::verify_at_commit(repo, head_commit, &loaded.desired)?;
    loaded.diagnostics.extend(artifacts);
    let recorded = recorded?;
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
    let evidence = load::evidence(repo, &loaded, &anchor)?;
    let trust_warning = crate::reconcile::apply::check_trust(repo, head_commit, &loaded, &recorded)
        .err()
        .map(|e| e.to_string());
    let mut head_plan = plan_of(&loaded, &recorded, &evidence, now);
    head_plan.head = Some(head_commit.to_string());

    let mut context = PlanContext {
        head_summary: Some(repo.describe(head_commit)?.summary),
        // Only markdown rolls rows up by label (issue #17: 10,000 targets' labels were copied
        // for every format).
        labels: if format == Format::Markdown {
            loaded
                .desired
                .targets
                .values()
                .map(|t| (t.name().to_string(), t.manifest.labels.clone()))
                .collect()
        } else {
            BTreeMap::new()
        },
        ..PlanContext::default()
    };
    if let Some(base) = base {
        let base_commit = repo.resolve(base)?;
        head_plan.base = Some(base_commit.to_string());
        let base_loaded = load_commit(repo, base_commit)?;
        let base_evidence = load::evidence(repo, &base_loaded, &anchor)?;
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
    let template = match format {
        Format::Json => None,
        _ => match repo.read_file(head_commit, &override_name)? {
            Some(bytes) => Some(
                String::from_utf8(bytes)
                    .map_err(|_| OpsError::Usage(format!("{override_name} is not UTF-8; save it as UTF-8")))?,
            ),
            None => None,
        },
    };
    Ok(PlanReport::Planned(Box::new(Planned {
        plan: head_plan,
        context,
        template,
        trust_warning,
        loaded,
        recorded,
    })))
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
