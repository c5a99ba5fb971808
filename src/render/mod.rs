//! Rendering: plans through minijinja templates (text, markdown) or as JSON, and manifest diffs.

mod json;
pub mod mask;
pub mod sandbox;
pub mod summary;
pub mod when;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::plan::{Action, ActionKind, Direction, Plan, ReleaseNote, Rollout};

/// Output formats of data commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Json => "json",
        }
    }
}

/// Errors rendering output.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template (built-in or the repository's override) failed.
    #[error("template {name}: {detail}")]
    Template { name: String, detail: String },
    /// JSON serialization failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// A unified diff of one changed file.
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub diff: String,
}

/// Makes a unified diff (3 lines of context) of one file's two sides, with the values of
/// manifest `vars` masked ([`mask::mask_vars`]): every format and template sees only the mask.
pub fn unified_diff(path: &str, old: Option<&str>, new: Option<&str>) -> FileDiff {
    let (old_text, new_text) = if path == "gantry.toml" {
        (old.unwrap_or("").to_string(), new.unwrap_or("").to_string())
    } else {
        let old_masked = mask::mask_vars(path, old.unwrap_or(""), None);
        let new_masked = mask::mask_vars(path, new.unwrap_or(""), Some(&old_masked));
        (old_masked.text, new_masked.text)
    };
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    let old_name = if old.is_some() {
        format!("a/{path}")
    } else {
        "/dev/null".to_string()
    };
    let new_name = if new.is_some() {
        format!("b/{path}")
    } else {
        "/dev/null".to_string()
    };
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    FileDiff {
        path: path.to_string(),
        diff: text,
    }
}

/// Extra context for rendering a plan.
#[derive(Debug, Clone, Default)]
pub struct PlanContext {
    pub head_summary: Option<String>,
    pub diffs: Vec<FileDiff>,
    /// Every desired target's labels, for roll-ups by label ([`summary::fit_markdown`]); filled
    /// for markdown only (empty otherwise: nothing else reads them).
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// How many target names a wave lists in text and markdown; the rest are counted. JSON always
/// has every name.
pub const WAVE_TARGETS_SHOWN: usize = 20;

/// A rollout as templates see it: only staged ones (several waves) or halted ones are shown,
/// since a single wave says nothing the action list does not.
fn rollout_view(rollout: &Rollout) -> Option<serde_json::Value> {
    if rollout.waves.len() < 2 && rollout.halted.is_none() {
        return None;
    }
    let waves: Vec<serde_json::Value> = rollout
        .waves
        .iter()
        .map(|w| {
            serde_json::json!({
                "name": w.name,
                "status": w.status,
                "soak_until": w.soak_until,
                "count": w.targets.len(),
                "shown": w.targets.iter().take(WAVE_TARGETS_SHOWN).collect::<Vec<_>>(),
                "more": w.targets.len().saturating_sub(WAVE_TARGETS_SHOWN),
            })
        })
        .collect();
    Some(serde_json::json!({
        "component": rollout.component,
        "version": rollout.version,
        "policy": rollout.policy,
        "halted": rollout.halted,
        "waves": waves,
    }))
}

/// The numbered steps an action will run, in words.
pub fn describe_steps(action: &Action) -> Vec<String> {
    let irreversible = irreversible_keys(action);
    let mark = |m: &crate::plan::PlannedMigration| {
        if irreversible.contains(&format!("{}/{}", m.release, m.id)) {
            ", irreversible: no down"
        } else {
            ""
        }
    };
    let mut steps = Vec::new();
    match action.action {
        ActionKind::Install | ActionKind::Upgrade => {
            for stop in &action.stops {
                for m in action
                    .migrations
                    .iter()
                    .filter(|m| &m.stop == stop && m.phase == crate::manifest::Phase::Pre)
                {
                    steps.push(format!("migrate up {} ({}, pre{})", m.id, m.release, mark(m)));
                }
                steps.push(format!("deploy {stop} + health"));
                for m in action
                    .migrations
                    .iter()
                    .filter(|m| &m.stop == stop && m.phase == crate::manifest::Phase::Post)
                {
                    steps.push(format!("migrate up {} ({}, post{})", m.id, m.release, mark(m)));
                }
            }
        }
        ActionKind::Downgrade => {
            for m in action.migrations.iter() {
                match m.direction {
                    Direction::Restore => {
                        steps.push(format!("restore snapshot (undoes {} of {}, no down)", m.id, m.release))
                    }
                    _ => steps.push(format!("migrate down {} ({})", m.id, m.release)),
                }
            }
            if let Some(to) = &action.to {
                steps.push(format!("deploy {to} + health"));
            }
        }
        ActionKind::Config => steps.push("reload config + health".to_string()),
        ActionKind::Remove => steps.push("remove (component's remove step, if any)".to_string()),
        ActionKind::Noop => {}
    }
    steps
}

/// `release/id` of every migration an action runs that has no `down`, for templates to mark.
fn irreversible_keys(action: &Action) -> Vec<String> {
    action
        .migrations
        .iter()
        .filter(|m| {
            action
                .releases
                .iter()
                .any(|note| note.version == m.release && note.irreversible.contains(&m.id))
        })
        .map(|m| format!("{}/{}", m.release, m.id))
        .collect()
}

/// Writes a plan as pretty JSON and a newline (the built-in `--format json`) to `out`, without
/// building the whole text in memory first (on 10,000 targets it is 40 MB), a large plan's
/// actions rendered on several threads ([`json`]). Buffer `out`.
///
/// # Errors
/// [`RenderError::Json`] when serializing or writing fails.
pub fn write_plan_json(plan: &Plan, mut out: impl std::io::Write) -> Result<(), RenderError> {
    let _stage = tracing::debug_span!("render").entered();
    json::write_pretty(plan, &mut out)?;
    out.write_all(b"\n").map_err(serde_json::Error::io)?;
    out.flush().map_err(serde_json::Error::io)?;
    Ok(())
}

/// Renders a plan. `override_template` is the watched repository's `templates/plan.<format>.j2`.
///
/// # Errors
/// [`RenderError`] when a template does not compile or fails.
pub fn render_plan(
    plan: &Plan,
    format: Format,
    context: &PlanContext,
    override_template: Option<&str>,
) -> Result<String, RenderError> {
    if format == Format::Json && override_template.is_none() {
        let mut text = Vec::new();
        write_plan_json(plan, &mut text)?;
        return Ok(String::from_utf8(text).expect("invariant: serde_json writes UTF-8"));
    }
    let _stage = tracing::debug_span!("render").entered();
    let builtin = match format {
        Format::Text => include_str!("templates/plan.text.j2"),
        Format::Markdown => include_str!("templates/plan.markdown.j2"),
        Format::Json => "",
    };
    let source = override_template.unwrap_or(builtin);
    let name = if override_template.is_some() {
        format!("templates/plan.{}.j2", format.as_str())
    } else {
        format!("built-in plan.{}.j2", format.as_str())
    };
    // Compile first so a syntax error is reported before any context is built.
    sandbox::Profile::Plan
        .environment()
        .template_from_str(source)
        .map_err(|e| RenderError::Template {
            name: name.clone(),
            detail: e.to_string(),
        })?;

    let plan_json = serde_json::to_value(plan)?;
    let mut groups: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    // Release notes once per component and version, not once per target: a train of 500
    // targets crossing one release shows its changelog once.
    let mut notes: BTreeMap<&str, BTreeMap<&crate::manifest::Version, &ReleaseNote>> = BTreeMap::new();
    for (action, json) in plan
        .actions
        .iter()
        .zip(plan_json["actions"].as_array().into_iter().flatten())
    {
        let mut json = json.clone();
        json["steps"] = serde_json::to_value(describe_steps(action))?;
        json["irreversible"] = serde_json::to_value(irreversible_keys(action))?;
        groups.entry(&action.component).or_default().push(json);
        let component_notes = notes.entry(&action.component).or_default();
        for note in action.releases.iter() {
            component_notes.insert(&note.version, note);
        }
    }
    let groups: Vec<serde_json::Value> = groups
        .into_iter()
        .map(|(component, actions)| {
            serde_json::json!({
                "component": component,
                "actions": actions,
                "releases": notes
                    .get(component)
                    .map(|n| n.values().filter(|note| note.worth_showing()).collect::<Vec<_>>())
                    .unwrap_or_default(),
                "rollouts": plan
                    .rollouts
                    .iter()
                    .filter(|r| r.component == component)
                    .filter_map(rollout_view)
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut ctx = plan_json;
    ctx["groups"] = serde_json::Value::Array(groups);
    ctx["diffs"] = serde_json::to_value(&context.diffs)?;
    ctx["head_summary"] = serde_json::to_value(&context.head_summary)?;
    // The repository's own template may be hostile (a pull request's, in CI): it renders in
    // the sandbox under the plan limits. The built-in ones are ours and render in process.
    let rendered = if override_template.is_some() {
        sandbox::render(sandbox::Profile::Plan, source, &ctx)
    } else {
        sandbox::render_in_process(sandbox::Profile::Plan, source, &ctx)
    };
    let text = rendered.map_err(|detail| RenderError::Template { name, detail })?;
    // Commit subjects and manifest strings are repository content: no terminal escapes reach
    // a terminal through a plan (JSON escapes them on its own).
    Ok(mask::strip_terminal_controls(&text))
}
