//! Executors: what performs a step (deploy, migrate, health, snapshot, …) on a target (SPEC §5).
//!
//! The reconciler only sees the [`Executor`] trait. Each step's argv is a list of minijinja
//! templates rendered here, one element at a time, in strict mode and with bounded work, so a
//! manifest can neither inject shell syntax nor make gantry loop. Implementations:
//!
//! - [`ShellExecutor`] runs the argv directly (never through a shell) in the desired commit's
//!   checkout, in its own process group, with a timeout that kills the whole group.
//! - [`PluginExecutor`] drives one long-lived program over JSON lines (kubectl, helm, nomad, …).
//! - [`RecordingExecutor`] records requests and returns scripted results, for tests of the
//!   reconciler that need no processes.
//!
//! [`health`] runs the policy's health checks (command, http, prometheus) through a soak loop.

pub mod artifact;
pub mod health;
pub mod plugin;
pub mod recording;
pub mod shell;

mod output;
mod running;
mod spawn;

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::Labels;
use crate::render::sandbox;

pub use health::{Clock, FakeClock, HealthProbe, HealthVerdict, ProbeRun, SystemClock};
pub use output::{DEFAULT_MAX_STEP_LOG_BYTES, MAX_STEP_LOG_BYTES_CEILING, OutputPolicy};
pub use plugin::{PluginExecutor, PluginPool};
pub use recording::{RecordedStep, Recording, RecordingExecutor, Reply};
pub use shell::ShellExecutor;

/// Performs steps. One instance serves one executor name from `gantry.toml` (or the built-in
/// shell executor) and is used by one reconciler thread at a time.
///
/// # Contract
///
/// - [`run`](Executor::run) is **blocking**: it returns only once the step is over, meaning the
///   process (or the plugin's answer) finished, or the step timed out and everything it started
///   was killed. Nothing a step started keeps running after `run` returns, so the reconciler may
///   record the step as done (or failed) and move on without racing it.
/// - `step.timeout` bounds the whole call, not counting the time to render templates. On timeout
///   the implementation kills what it started and returns `Ok` with a failed [`StepResult`]
///   whose [`Exit`] is [`Exit::TimedOut`]; callers treat that as transient.
/// - `Ok(StepResult { ok: false, .. })` means the step was attempted and failed: non-zero exit,
///   killed by a signal, timed out, the program could not be started, or a plugin said no or
///   broke the protocol. The target may have been changed partway; steps must be idempotent.
/// - `Err(ExecutorError)` means the step was **not** attempted because the request itself is
///   wrong (a template does not render, argv\[0\] escapes the checkout, an operation the plugin
///   does not offer) or gantry's own side failed (cannot write the step log). Nothing was run
///   on the target. A manifest mistake stays a mistake on retry, so callers treat most of these
///   as terminal.
/// - Implementations never pass argv through a shell and never read the process environment
///   into templates.
pub trait Executor: Send {
    /// Runs one step to completion. Blocking; see the trait docs for the full contract.
    ///
    /// # Errors
    ///
    /// [`ExecutorError`] when the step could not be attempted; a step that ran and failed is
    /// `Ok` with `ok: false`.
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError>;
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn run(&mut self, step: &StepRequest) -> Result<StepResult, ExecutorError> {
        (**self).run(step)
    }
}

/// Which step of a component (or migration) is being run. Also the plugin protocol's `op` and
/// the value of `GANTRY_STEP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Deploy,
    Health,
    Snapshot,
    Restore,
    Reload,
    Observe,
    Remove,
    MigrateUp,
    MigrateDown,
    /// Runs before an attempt changes anything; failing holds the action (no rollback).
    Precheck,
    /// Sets the new version's share of traffic (`weight` in templates and requests).
    Shift,
    /// Stops the target's workflows before an attempt changes anything.
    Quiesce,
    /// Starts them again: the last step of an attempt, and of its rollback.
    Resume,
}

impl StepKind {
    /// Every kind, in the order a plugin typically lists them.
    pub const ALL: [StepKind; 13] = [
        StepKind::Deploy,
        StepKind::Health,
        StepKind::Snapshot,
        StepKind::Restore,
        StepKind::Reload,
        StepKind::Observe,
        StepKind::Remove,
        StepKind::MigrateUp,
        StepKind::MigrateDown,
        StepKind::Precheck,
        StepKind::Shift,
        StepKind::Quiesce,
        StepKind::Resume,
    ];

    /// The name used in the plugin protocol, `GANTRY_STEP` and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Deploy => "deploy",
            StepKind::Health => "health",
            StepKind::Snapshot => "snapshot",
            StepKind::Restore => "restore",
            StepKind::Reload => "reload",
            StepKind::Observe => "observe",
            StepKind::Remove => "remove",
            StepKind::MigrateUp => "migrate_up",
            StepKind::MigrateDown => "migrate_down",
            StepKind::Precheck => "precheck",
            StepKind::Shift => "shift",
            StepKind::Quiesce => "quiesce",
            StepKind::Resume => "resume",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `target` value templates see.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetContext {
    pub name: String,
    pub labels: Labels,
    pub vars: serde_json::Map<String, serde_json::Value>,
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// Everything a step's templates may refer to (SPEC §5). Serialized as the template context
/// and, for plugins, as the body of each request.
///
/// Optional fields are left out when absent rather than set to `none`, so strict rendering
/// names the missing variable instead of printing `none` into an argv; templates that may run
/// without them test `{% if from is defined %}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TemplateContext {
    pub target: TargetContext,
    pub component: String,
    /// The stop being deployed or checked; for a migration, the release it belongs to.
    pub version: String,
    /// The version the whole attempt started from; absent for an install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The version the whole attempt ends at.
    pub to: String,
    /// For a migration: the name of the release manifest it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// For a migration: its `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
    /// The attempt id (also names snapshots, so `restore` finds the attempt's one).
    pub attempt: String,
    /// The desired commit being reconciled (full id; `GANTRY_COMMIT`), so a step can say which
    /// revision of the repository it applies (issue #16).
    pub commit: String,
    /// For a `shift` step: the new version's share of traffic, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The first verified artifact of the release being deployed, as a local file
    /// (`{{ artifact.path }}`; see `executor::artifact`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<artifact::LocalArtifact>,
    /// Every verified artifact of that release, in manifest order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<artifact::LocalArtifact>,
}

/// One step to run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    pub kind: StepKind,
    /// argv elements as written in the manifest: minijinja templates, rendered one by one.
    pub argv: Vec<String>,
    pub context: TemplateContext,
    /// The checkout of the desired commit: the working directory, and where relative
    /// argv\[0\] paths resolve. Must be absolute.
    pub checkout: PathBuf,
    pub timeout: Duration,
    /// Output of the step is appended here (created with its parent directories), redacted and
    /// bounded by `output`.
    pub log_path: PathBuf,
    /// How output is redacted and how much of it the log keeps.
    pub output: OutputPolicy,
    /// More environment variables from gantry itself (e.g. `GANTRY_REPO`), set before the
    /// `GANTRY_*` step variables, which win on a clash. Plugins get them in `step.env`.
    pub extra_env: Vec<(String, String)>,
}

impl StepRequest {
    /// The `GANTRY_*` variables every step process gets. `GANTRY_FROM` is empty for an install.
    pub fn env(&self) -> [(&'static str, String); 8] {
        let c = &self.context;
        [
            ("GANTRY_TARGET", c.target.name.clone()),
            ("GANTRY_COMPONENT", c.component.clone()),
            ("GANTRY_FROM", c.from.clone().unwrap_or_default()),
            ("GANTRY_TO", c.to.clone()),
            ("GANTRY_VERSION", c.version.clone()),
            ("GANTRY_ATTEMPT", c.attempt.clone()),
            ("GANTRY_COMMIT", c.commit.clone()),
            ("GANTRY_STEP", self.kind.as_str().to_owned()),
        ]
    }

    /// Renders every argv element; see [`render_argv`].
    ///
    /// # Errors
    ///
    /// [`ExecutorError::Render`] naming the first element that fails, or
    /// [`ExecutorError::EmptyArgv`].
    pub fn render_argv(&self) -> Result<Vec<String>, ExecutorError> {
        if self.argv.is_empty() {
            return Err(ExecutorError::EmptyArgv { step: self.kind });
        }
        render_argv(self.kind, &self.argv, &self.context)
    }
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// The process exited with this status code.
    Code(i32),
    /// The process was ended by a signal gantry did not send (`SIGSEGV`, `SIGTERM`, …).
    Signal(String),
    /// gantry killed the step (its whole process group) when its timeout passed.
    TimedOut(Duration),
    /// The program could not be started.
    SpawnFailed,
    /// A plugin answered the request (`ok` says how).
    Replied,
    /// A plugin crashed, sent something that is not a valid answer, or answered another id.
    ProtocolError,
}

/// What came of a step that was attempted.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// True when the step did what it was asked (exit 0, or a plugin's `"ok": true`).
    pub ok: bool,
    pub exit: Exit,
    /// One line for people: `exited with status 3`, `timed out after 2s`, a plugin's message.
    pub message: String,
    /// The end of the combined stdout and stderr (at most ~4 KiB and 40 lines); the full
    /// output is in the step log.
    pub output_tail: String,
    pub duration: Duration,
    /// What an `observe` step (or a plugin) reported as the running version.
    pub observed_version: Option<String>,
}

impl StepResult {
    /// A failed step that produced no output, e.g. one that could not start.
    pub fn failed(exit: Exit, message: impl Into<String>, duration: Duration) -> Self {
        StepResult {
            ok: false,
            exit,
            message: message.into(),
            output_tail: String::new(),
            duration,
            observed_version: None,
        }
    }
}

/// Why a step could not be attempted (see the [`Executor`] contract).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// An argv element (or a health check's url or query) does not render.
    #[error("{step} step: {field} `{template}`: {problem}")]
    Render {
        step: StepKind,
        /// `argv[1]`, `url`, `query`.
        field: String,
        template: String,
        /// What is wrong, e.g. "undefined value `target.nmae`".
        problem: String,
        #[source]
        source: minijinja::Error,
    },
    /// The step has no argv at all.
    #[error("{step} step: argv is empty")]
    EmptyArgv { step: StepKind },
    /// argv\[0\] (or a plugin command) is a relative path that leaves the checkout with `..`.
    #[error(
        "{step} step: program `{program}` escapes the checkout {checkout} (relative paths must stay inside it: no `..`, no symbolic link pointing outside)"
    )]
    EscapesCheckout {
        step: StepKind,
        program: String,
        checkout: PathBuf,
    },
    /// The working directory is not an absolute path without `..`, or does not exist.
    #[error("{step} step: working directory {checkout} {problem}")]
    InvalidCheckout {
        step: StepKind,
        checkout: PathBuf,
        problem: &'static str,
    },
    /// The step log cannot be opened or written.
    #[error("cannot write the step log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// gantry could not set up what runs the step (pipes, threads).
    #[error("{step} step: cannot {what}")]
    Io {
        step: StepKind,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The plugin's `hello` answer does not list this step's op.
    #[error("plugin {plugin:?} does not offer op \"{op}\" (it offers: {offered})", offered = ops.join(", "))]
    UnsupportedOp {
        plugin: String,
        op: StepKind,
        ops: Vec<String>,
    },
    /// A plugin executor was configured with an empty `command`.
    #[error("plugin {plugin:?}: command is empty")]
    EmptyPluginCommand { plugin: String },
    /// A health check is missing a field its type needs, or has one it cannot use.
    #[error("health check {check:?}: {problem}")]
    InvalidCheck { check: String, problem: String },
}

/// Renders each argv template separately. The result has exactly as many elements as the
/// input: whatever a value contains (spaces, `;`, `$(…)`), it stays inside its element.
///
/// # Errors
///
/// [`ExecutorError::Render`] naming the element (`argv[2]`) and the problem.
pub fn render_argv(
    step: StepKind,
    templates: &[String],
    context: &TemplateContext,
) -> Result<Vec<String>, ExecutorError> {
    render_fields(
        step,
        templates
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("argv[{i}]"), t.as_str()))
            .collect(),
        context,
    )
}

/// Renders one template (a health check's url or query) against `context`.
///
/// # Errors
///
/// [`ExecutorError::Render`] naming `field`.
pub fn render_one(
    step: StepKind,
    field: &str,
    template: &str,
    context: &TemplateContext,
) -> Result<String, ExecutorError> {
    let mut out = render_fields(step, vec![(field.to_owned(), template)], context)?;
    Ok(out.pop().expect("invariant: one field, one result"))
}

/// Renders `(field, template)` pairs under the step template limits (in one sandbox process
/// for those that are more than plain lookups; see [`crate::render::sandbox`]).
fn render_fields(
    step: StepKind,
    fields: Vec<(String, &str)>,
    context: &TemplateContext,
) -> Result<Vec<String>, ExecutorError> {
    let ctx = serde_json::to_value(context).map_err(|e| ExecutorError::Render {
        step,
        field: "context".to_owned(),
        template: String::new(),
        problem: e.to_string(),
        source: minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()),
    })?;
    let jobs: Vec<sandbox::Job<'_>> = fields
        .iter()
        .map(|(_, template)| sandbox::Job { template, context: 0 })
        .collect();
    let results = sandbox::render_all(sandbox::Profile::Step, &jobs, std::slice::from_ref(&ctx));
    fields
        .into_iter()
        .zip(results)
        .map(|((field, template), result)| {
            result.map_err(|problem| ExecutorError::Render {
                step,
                field,
                template: template.to_owned(),
                source: minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, problem.clone()),
                problem,
            })
        })
        .collect()
}

/// Where argv\[0\] points. Names with a `/` resolve against the checkout (so scripts come from
/// the desired commit); bare names (`kubectl`) are looked up in `PATH` like any command;
/// absolute paths are used as given.
///
/// # Errors
///
/// [`ExecutorError::EscapesCheckout`] for a relative path with a `..` component or one that
/// resolves, through symbolic links, outside the checkout, and
/// [`ExecutorError::InvalidCheckout`] when the checkout itself is not a clean absolute path.
pub fn resolve_program(step: StepKind, program: &str, checkout: &Path) -> Result<PathBuf, ExecutorError> {
    check_checkout(step, checkout)?;
    let path = Path::new(program);
    if path.is_absolute() || !program.contains('/') {
        return Ok(path.to_path_buf());
    }
    let escapes = || ExecutorError::EscapesCheckout {
        step,
        program: program.to_owned(),
        checkout: checkout.to_path_buf(),
    };
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(escapes());
    }
    let joined = checkout.join(path);
    // A symlink committed in the repository (or a symlinked directory on the way) could point
    // anywhere; what runs must be inside the checkout once every link is followed. A program
    // that does not exist is left to the spawn, which reports it clearly.
    if let (Ok(real), Ok(root)) = (joined.canonicalize(), checkout.canonicalize())
        && !real.starts_with(&root)
    {
        return Err(escapes());
    }
    Ok(joined)
}

fn check_checkout(step: StepKind, checkout: &Path) -> Result<(), ExecutorError> {
    if checkout.is_absolute() && !checkout.components().any(|c| matches!(c, Component::ParentDir)) {
        Ok(())
    } else {
        Err(ExecutorError::InvalidCheckout {
            step,
            checkout: checkout.to_path_buf(),
            problem: "must be an absolute path without `..`",
        })
    }
}

/// `2s`, `1m30s`, `250ms`: how durations read in step messages.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if !ms.is_multiple_of(1000) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

/// Cuts `s` to at most `max` characters for quoting in a message, marking the cut.
pub(crate) fn truncate_for_message(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers shared by the executor tests.
    use super::*;

    pub fn context() -> TemplateContext {
        let mut vars = serde_json::Map::new();
        vars.insert("host".into(), "clinic-1.internal".into());
        TemplateContext {
            target: TargetContext {
                name: "acme".into(),
                labels: [("env".to_owned(), "prod".to_owned())].into(),
                vars,
                config: serde_json::Map::new(),
            },
            component: "billing".into(),
            version: "2.0.0".into(),
            from: Some("1.2.0".into()),
            to: "2.0.0".into(),
            release: None,
            migration: None,
            attempt: "a1".into(),
            commit: "4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e4f0c1d2e".into(),
            weight: None,
            artifact: None,
            artifacts: Vec::new(),
        }
    }

    pub fn request(kind: StepKind, argv: &[&str], checkout: &Path) -> StepRequest {
        StepRequest {
            kind,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            context: context(),
            checkout: checkout.to_path_buf(),
            timeout: Duration::from_secs(10),
            log_path: checkout.join("logs/step.log"),
            output: Default::default(),
            extra_env: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::testutil::*;
    use super::*;

    fn render(t: &str) -> Result<Vec<String>, ExecutorError> {
        render_argv(StepKind::Deploy, &[t.to_owned()], &context())
    }

    #[test]
    fn renders_each_element_separately() {
        let argv = [
            "scripts/deploy.sh",
            "{{ target.name }}",
            "{{ version }}",
            "{{ vars_missing | default('x') }}",
        ];
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let out = render_argv(StepKind::Deploy, &argv, &context()).unwrap();
        assert_eq!(out, ["scripts/deploy.sh", "acme", "2.0.0", "x"]);
    }

    /// Regression (issue #16): `{{ target.config }}` rendered Python's spelling (`True`,
    /// `{'a': …}`), which no program parses. Booleans, maps and lists render as JSON; strings and
    /// numbers as themselves; `tojson` still quotes a string for a JSON document.
    #[test]
    fn booleans_maps_and_lists_render_as_json() {
        let mut ctx = context();
        ctx.target.config.insert("tls".into(), true.into());
        ctx.target.config.insert("tier".into(), "gold".into());
        let argv: Vec<String> = [
            "{{ target.config.tls }}",
            "{{ target.config }}",
            "{{ target.labels }}",
            "{{ [1, 'a', false] }}",
            "{{ target.config.tier }}",
            "{{ 3 }}-{{ 2.5 }}",
            "{{ target.config.tier | tojson }}",
            "v={{ target.config.tls }}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = render_argv(StepKind::Deploy, &argv, &ctx).unwrap();
        assert_eq!(
            out,
            [
                "true",
                r#"{"tier":"gold","tls":true}"#,
                r#"{"env":"prod"}"#,
                r#"[1,"a",false]"#,
                "gold",
                "3-2.5",
                r#""gold""#,
                "v=true",
            ]
        );
    }

    #[test]
    fn strict_undefined_names_the_variable_and_element() {
        let argv = vec!["deploy".to_owned(), "{{ target.nmae }}".to_owned()];
        let err = render_argv(StepKind::Deploy, &argv, &context()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("argv[1]"), "{msg}");
        assert!(msg.contains("target.nmae"), "{msg}");
        assert!(msg.contains("undefined"), "{msg}");
    }

    #[test]
    fn absent_optional_fields_are_undefined_not_none() {
        // An install has no `from`; printing it must fail rather than put "none" in argv.
        let mut ctx = context();
        ctx.from = None;
        let err = render_argv(StepKind::Deploy, &["{{ from }}".to_owned()], &ctx).unwrap_err();
        assert!(err.to_string().contains("`from`"), "{err}");
        let ok = render_argv(
            StepKind::Deploy,
            &["{% if from is defined %}{{ from }}{% endif %}".to_owned()],
            &ctx,
        );
        assert_eq!(ok.unwrap(), [""]);
    }

    #[test]
    fn fuel_stops_runaway_templates_quickly() {
        let started = Instant::now();
        let t = "{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}{% endfor %}{% endfor %}";
        let err = render(t).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // One huge range is refused outright too, without hanging.
        assert!(render("{% for i in range(100000000) %}{% endfor %}").is_err());
    }

    #[test]
    fn recursion_and_huge_values_are_bounded() {
        let started = Instant::now();
        // A macro calling itself hits the recursion limit instead of the stack.
        let err = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert!(err.to_string().to_lowercase().contains("recursion"), "{err}");
        // Repetition and nested ranges cannot build gigabytes of argv.
        for t in [
            "{{ 'a' * 4000000000 }}",
            "{{ range(1000000000) | list | length }}",
            "{{ ('x' * 100000) * 100000 }}",
        ] {
            match render(t) {
                Err(_) => {}
                Ok(v) => assert!(v[0].len() < 10_000_000, "{t} rendered {} bytes", v[0].len()),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn no_file_or_env_access_from_templates() {
        for t in [
            "{% include '/etc/passwd' %}",
            "{{ env.HOME }}",
            "{{ environ('HOME') }}",
            "{% import 'x' as y %}",
            "{% extends '/etc/passwd' %}",
            "{% from '/etc/passwd' import x %}",
            "{{ self.__class__ }}",
        ] {
            assert!(render(t).is_err(), "{t} rendered");
        }
    }

    #[test]
    fn program_resolution() {
        let co = Path::new("/srv/checkout");
        let r = |p| resolve_program(StepKind::Deploy, p, co);
        assert_eq!(r("scripts/deploy.sh").unwrap(), co.join("scripts/deploy.sh"));
        assert_eq!(r("./deploy.sh").unwrap(), co.join("./deploy.sh"));
        assert_eq!(r("kubectl").unwrap(), Path::new("kubectl"));
        assert_eq!(r("/usr/bin/env").unwrap(), Path::new("/usr/bin/env"));
        assert!(matches!(r("../outside.sh"), Err(ExecutorError::EscapesCheckout { .. })));
        assert!(matches!(
            r("scripts/../../x"),
            Err(ExecutorError::EscapesCheckout { .. })
        ));
        let bad = resolve_program(StepKind::Deploy, "x/y", Path::new("/srv/../etc"));
        assert!(matches!(bad, Err(ExecutorError::InvalidCheckout { .. })));
        let rel = resolve_program(StepKind::Deploy, "x/y", Path::new("relative"));
        assert!(matches!(rel, Err(ExecutorError::InvalidCheckout { .. })));
    }

    #[test]
    fn human_durations() {
        let cases = [
            (2_000, "2s"),
            (250, "250ms"),
            (90_000, "1m30s"),
            (600_000, "10m"),
            (3_600_000, "1h"),
            (1_500, "1.5s"),
        ];
        for (ms, want) in cases {
            assert_eq!(human_duration(Duration::from_millis(ms)), want);
        }
    }
}
