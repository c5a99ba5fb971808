//! Fetch stage: read and validate the desired state of one commit, and the recorded state.

use foldhash::{HashMap, HashMapExt};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use git2::Oid;
use jiff::Timestamp;

use crate::executor::{TargetContext, TemplateContext};
use crate::manifest::{self, ComponentSpec, Desired, Diagnostic, Manifest, RawFile, Severity, parse_cache};
use crate::plan::{Evidence, PlanInput};
use crate::policy::{self, window::WindowSchedule};
use crate::render;
use crate::source::{SourceError, TreeFile, WatchedRepo, history, trust};
use crate::state::RecordedState;

/// The desired state of one commit with every diagnostic found reading it.
#[derive(Debug)]
pub struct LoadedCommit {
    pub commit: Oid,
    pub desired: Desired,
    /// Every `Window` of `desired` that compiled (the others are `Invalid` diagnostics).
    pub windows: Vec<WindowSchedule>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedCommit {
    /// Whether a file could not be read at all (exit 1).
    pub fn has_invalid(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Invalid)
    }
    /// Whether the state is readable but can never succeed as declared (exit 2).
    pub fn has_violations(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Violation)
    }
    /// Whether this commit may be reconciled: nothing invalid, no violations.
    pub fn is_valid(&self) -> bool {
        !self.has_invalid() && !self.has_violations()
    }

    /// The planner's input for this commit.
    pub fn plan_input<'a>(
        &'a self,
        recorded: &'a RecordedState,
        evidence: &'a Evidence,
        now: Timestamp,
    ) -> PlanInput<'a> {
        PlanInput {
            desired: &self.desired,
            windows: &self.windows,
            recorded,
            evidence,
            now,
        }
    }
}

/// Reads `gantry.toml` and every manifest at `commit`, validates them, and cross-checks
/// policies against targets.
///
/// # Errors
/// Only git failures; every problem with the content is a diagnostic.
pub fn load_commit(repo: &WatchedRepo, commit: Oid) -> Result<LoadedCommit, SourceError> {
    let _total = tracing::debug_span!("load_commit").entered();
    let read = tracing::debug_span!("load.tree_walk").entered();
    let repo_dir = repo.repo.path().to_path_buf();
    let config = repo.read_raw(commit, "gantry.toml")?;
    // The manifest paths come from gantry.toml; read it first (cheaply) to know where to look.
    let (config_only, _) = manifest::read_manifests(config.as_ref(), &[]);
    let entries = repo.manifest_entries(commit, config_only.config.paths.as_deref())?;
    drop(read);
    let parse = tracing::debug_span!("load.read_parse_check").entered();
    // Files already read (same path, blob and mode) come from the daemon's parse cache; each
    // thread reads its share of the others with its own handle on the repository, then parses
    // and checks them; the result does not depend on the cache or the number of threads.
    let (manifests, mut diagnostics) = parse_cache::read_cached(
        parse_cache::global(),
        config.as_ref(),
        &entries,
        |e| parse_cache::FileKey {
            path: &e.path,
            blob: e.oid,
            mode: e.mode,
        },
        |files| repo.read_entries(files).map(Cow::Owned),
        |files| repo_path_reader(&repo_dir, files),
    )?;
    drop(parse);
    let validate = tracing::debug_span!("load.validate").entered();
    let (desired, semantic) = manifest::validate(manifests);
    drop(validate);
    diagnostics.extend(semantic);
    let policies = tracing::debug_span!("load.policy_ties").entered();
    diagnostics.extend(policy_diagnostics(&desired));
    drop(policies);
    let windows = compile_windows(&desired, &mut diagnostics);
    let templates = tracing::debug_span!("load.render_templates").entered();
    // Only a commit that is otherwise sound is worth rendering: an invalid one is refused anyway.
    if !diagnostics.iter().any(|d| d.severity == Severity::Invalid) {
        // Cached by commit and binary (`template_cache`): the check depends only on those
        // (the tree, and `{{ commit }}` itself).
        diagnostics.extend(super::template_cache::cached(repo.repo.path(), commit, || {
            template_diagnostics(&desired, commit)
        }));
    }
    drop(templates);
    manifest::diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    Ok(LoadedCommit {
        commit,
        desired,
        windows,
        diagnostics,
    })
}

/// [`load_commit`] of `commit`, and the state branch its `gantry.toml` names read alongside
/// on another thread (issue #17: the two are independent, and a pass after a one-file change
/// waited for one and then the other). The state branch name comes from the same `gantry.toml`
/// bytes `load_commit` reads. The recorded state comes back as its own result, so a caller can
/// report an unreadable commit before a state error, as when reading one after the other. It is
/// shared with the state branch cache (`state::read_recorded_shared`): a pass that records
/// outcomes changes its own copy (`Arc::make_mut`).
///
/// # Errors
/// git failures reading the commit (those reading the state branch are in the second value).
pub fn load_with_recorded(
    repo: &WatchedRepo,
    commit: Oid,
) -> Result<
    (
        LoadedCommit,
        Result<Arc<crate::state::RecordedState>, crate::state::StateError>,
    ),
    SourceError,
> {
    let config = repo.read_raw(commit, "gantry.toml")?;
    let state_branch = manifest::read_manifests(config.as_ref(), &[]).0.config.state_branch;
    let git_dir = repo.repo.path();
    let (loaded, early) = std::thread::scope(|scope| {
        let reading = std::thread::Builder::new()
            .name("state-read".into())
            .spawn_scoped(scope, || {
                let own = git2::Repository::open(git_dir).ok()?;
                Some(crate::state::read_recorded_shared(&own, &state_branch))
            });
        let loaded = load_commit(repo, commit);
        let early = match reading {
            Ok(reading) => reading.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => None,
        };
        (loaded, early)
    });
    let loaded = loaded?;
    let recorded = match early {
        Some(recorded) if loaded.desired.config.state_branch == state_branch => recorded,
        // No thread or repository to be had (or, never expected, another branch): read now,
        // after the commit, as a sequential pass does.
        _ => crate::state::read_recorded_shared(&repo.repo, &loaded.desired.config.state_branch),
    };
    Ok((loaded, recorded))
}

fn stand_in_artifact() -> crate::executor::artifact::LocalArtifact {
    crate::executor::artifact::LocalArtifact {
        path: "/validate/artifact".to_owned(),
        sha256: Some("0".repeat(64)),
        url: None,
    }
}

/// One step template to render against the targets of its component.
struct StepTemplate<'a> {
    component: &'a Manifest<ComponentSpec>,
    /// JSON pointer of the argv element, e.g. `/spec/steps/deploy/2`.
    pointer: String,
    template: &'a str,
    /// For a migration: the name of its release manifest (where the diagnostic points).
    release: Option<&'a str>,
    /// For a migration: its release's version and the migration's id (the render sees them).
    migration: Option<(String, &'a str)>,
    /// Whether the step can see artifacts when it runs: not `precheck` or `observe`, which run
    /// before or outside any attempt's version (their contexts have no `artifact`).
    artifacts: bool,
}

/// What one step template is, for the template check's memo: everything of it a render or its
/// diagnostic reads (the origin is read from the current commit when the diagnostic is made).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TemplateSignature {
    template: String,
    pointer: String,
    release: Option<String>,
    migration: Option<(String, String)>,
}

impl TemplateSignature {
    fn of(template: &StepTemplate<'_>) -> TemplateSignature {
        TemplateSignature {
            template: template.template.to_owned(),
            pointer: template.pointer.clone(),
            release: template.release.map(str::to_owned),
            migration: template.migration.as_ref().map(|(v, id)| (v.clone(), (*id).to_owned())),
        }
    }
}

/// A target as a template check saw it: its manifest, shared with the parse cache, whose
/// renders read name, labels, vars, config, component and version ([`Renders::context`]); the
/// rest of the context is the same for every target.
#[derive(Debug, Clone)]
struct TargetInputs(std::sync::Arc<manifest::Manifest<manifest::TargetSpec>>);

impl TargetInputs {
    fn of(target: &manifest::Target) -> TargetInputs {
        TargetInputs(std::sync::Arc::clone(&target.manifest))
    }

    /// Whether `target` renders with these inputs: the same manifest (the parse cache hands
    /// an unchanged file's manifests to every pass), or one equal in every input.
    fn matches(&self, target: &manifest::Target) -> bool {
        let (then, now) = (&self.0, &target.manifest);
        std::sync::Arc::ptr_eq(then, now)
            || (then.spec.component == now.spec.component
                && then.spec.version == now.spec.version
                && then.labels == now.labels
                && then.spec.vars == now.spec.vars
                && then.spec.config == now.spec.config)
    }
}

/// The targets the last template check passed (issue #17: after a one-file change the
/// daemon re-rendered every template against all 10,000 targets, most of a re-plan).
///
/// # Guarantees
/// - **Exact**: a target is taken as passing again only when every input of its renders is equal,
///   compared by value, not by a hash: its name, labels, vars, config, component and
///   version; its component's templates (text, pointer, release, migration version and id,
///   in order); and the commit id, when any of those templates names `commit` (or `debug`,
///   which shows the whole context). The rest of a render's context is constant, and the
///   engine and its limits are the binary's. A test compares the check with and without the
///   memo over a series of edits.
/// - **Bounded**: it holds one check (the last one's targets); in memory, daemon only.
#[derive(Debug)]
struct TemplateMemo {
    commit: Oid,
    /// Targets whose answers this check took from the previous one.
    reused: usize,
    components: BTreeMap<String, Vec<TemplateSignature>>,
    /// The targets that passed every template of their component, with their inputs then, in
    /// name order: the next check walks them beside its own targets, in the same order (issue
    /// #17: a hash map's removal and insertion per target was a third of a re-check).
    targets: Vec<(String, TargetInputs)>,
}

/// The memo, once [`enable_template_memo`] ran (`None` inside while a check holds it).
static TEMPLATE_MEMO: std::sync::OnceLock<std::sync::Mutex<Option<TemplateMemo>>> = std::sync::OnceLock::new();

/// Lets the template check of `load_commit` reuse the last check's answers for targets whose
/// inputs did not change ([`TemplateMemo`]); the daemon calls it at start.
pub fn enable_template_memo() {
    TEMPLATE_MEMO.get_or_init(Default::default);
}

impl TemplateMemo {
    /// The memo to check against: `None` when disabled; an empty one when enabled but held by
    /// another check (which then keeps its own) or not made yet.
    fn take() -> Option<TemplateMemo> {
        let shared = TEMPLATE_MEMO.get()?;
        let taken = shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        Some(taken.unwrap_or_else(|| TemplateMemo {
            commit: Oid::ZERO_SHA1,
            reused: 0,
            components: BTreeMap::new(),
            targets: Vec::new(),
        }))
    }

    fn keep(memo: Option<TemplateMemo>) {
        if let (Some(shared), Some(memo)) = (TEMPLATE_MEMO.get(), memo) {
            *shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(memo);
        }
    }
}

/// The variables a step template can read, judged from its text: a template reads a variable
/// only by naming it, so one whose text does not contain a name cannot read that variable.
/// Conservative (a name inside a longer word or a string literal counts as read); `debug()`
/// shows the whole context, so a template naming it reads everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    /// Any tag at all (text without `{{`, `{%` or `{#` renders to itself).
    tags: bool,
    target: bool,
    component: bool,
    /// `version`, `from`, `to` or `release` (the stand-in release name holds the version).
    version: bool,
    /// `release` or `migration` of a migration.
    migration: bool,
    /// `commit` (the only part of the context that differs between two commits' checks).
    commit: bool,
}

impl Reads {
    fn of(template: &str) -> Reads {
        let tags = template.contains("{{") || template.contains("{%") || template.contains("{#");
        let all = template.contains("debug");
        let names = |words: &[&str]| all || words.iter().any(|w| template.contains(w));
        Reads {
            tags,
            target: names(&["target"]),
            component: names(&["component", "release"]),
            version: names(&["version", "from", "to", "release"]),
            migration: names(&["release", "migration"]),
            commit: names(&["commit"]),
        }
    }

    fn anything(self) -> bool {
        self.tags
    }
}

/// A step template that is only text and `{{ a.b.c }}` lookups and parses: the template check
/// passes a target whose data answers every lookup with a short scalar without making a
/// context or rendering (issue #17: `{{ target.name }}` in the steps of every component made the
/// first plan of a 10,000-target commit build and render 10,000 contexts, a third of its time).
/// A lookup it cannot answer for sure is left to the render, which gives the diagnostic.
struct PlainLookups<'t> {
    paths: Vec<Vec<&'t str>>,
}

/// Lookups at most in a template answered without a render (each costs fuel in a render).
const MAX_PLAIN_LOOKUPS: usize = 16;
/// Longest value a lookup answered without a render may have (a render's output is capped).
const MAX_PLAIN_VALUE: usize = 1024;

impl<'t> PlainLookups<'t> {
    fn of(template: &'t str) -> Option<PlainLookups<'t>> {
        // A comment may hide a `{{` or be left open: neither is a lookup.
        if template.contains("{#") || template.len() > render::sandbox::Profile::Step.limits().output / 2 {
            return None;
        }
        let paths = render::sandbox::plain_lookups(template)?;
        (paths.len() <= MAX_PLAIN_LOOKUPS && render::sandbox::parses(render::sandbox::Profile::Step, template))
            .then_some(PlainLookups { paths })
    }

    /// Whether every lookup is a short scalar in the check's context of `target` (see
    /// [`Renders::context`]) rendering `version` of `component`, `migration` telling whether the
    /// template is a migration's.
    fn answered_by(&self, target: &manifest::Target, component: &str, version: &str, migration: bool) -> bool {
        // A version is not bounded (a long pre-release validates); the stand-in release name is
        // `<component>-<version>`.
        let short_version = component.len() + 1 + version.len() <= MAX_PLAIN_VALUE;
        self.paths.iter().all(|path| match path.as_slice() {
            ["component" | "version" | "from" | "to" | "release"] => short_version,
            ["attempt" | "commit"] | ["target", "name"] => true,
            ["migration"] => migration,
            ["target", "labels", key] => target.labels().get(*key).is_some_and(|v| v.len() <= MAX_PLAIN_VALUE),
            ["target", "vars", path @ ..] => is_short_scalar(&target.spec().vars, path),
            ["target", "config", path @ ..] => is_short_scalar(&target.spec().config, path),
            _ => false,
        })
    }
}

/// Whether `path` leads through the objects of `map` to a string of at most [`MAX_PLAIN_VALUE`]
/// bytes, a number or a boolean.
fn is_short_scalar(map: &serde_json::Map<String, serde_json::Value>, path: &[&str]) -> bool {
    use serde_json::Value;
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let mut value = map.get(*first);
    for key in rest {
        value = match value {
            Some(Value::Object(inner)) => inner.get(*key),
            _ => None,
        };
    }
    match value {
        Some(Value::String(text)) => text.len() <= MAX_PLAIN_VALUE,
        Some(Value::Number(_) | Value::Bool(_)) => true,
        _ => false,
    }
}

/// What a render of a step template depends on, given what it [`Reads`]; the rest of the
/// context (`attempt`, `commit`, `weight`, `artifact`) is the same for every render of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RenderKey<'a> {
    template: &'a str,
    target: Option<&'a str>,
    component: Option<&'a str>,
    version: Option<&'a str>,
    migration: Option<(&'a str, &'a str)>,
    artifacts: bool,
}

/// The renders of the template check, one per distinct [`RenderKey`], and which (template,
/// target) pairs each answers for.
struct Renders<'a> {
    commit: Oid,
    /// What each render is of; its context is made when it renders ([`Renders::render`]).
    jobs: Vec<RenderJob<'a>>,
    job_of: HashMap<RenderKey<'a>, usize>,
    /// (template index, target, job) per pair.
    owners: Vec<(usize, &'a str, usize)>,
}

/// One render of the template check: a template and the inputs of its context.
struct RenderJob<'a> {
    template: &'a str,
    target: &'a manifest::Target,
    component: &'a str,
    version: &'a str,
    migration: Option<(&'a str, &'a str)>,
    /// Whether the context has the stand-in artifact (see [`StepTemplate`]).
    artifacts: bool,
}

/// Renders per thread below which one thread does them all (a render of a short template is a
/// few microseconds).
const MIN_RENDERS_PER_THREAD: usize = 512;

impl<'a> Renders<'a> {
    fn new(commit: Oid) -> Renders<'a> {
        Renders {
            commit,
            jobs: Vec::new(),
            job_of: HashMap::new(),
            owners: Vec::new(),
        }
    }

    /// The pair (`t`, `target`) of `template`, which [`Reads`] `reads`, rendered once per
    /// distinct key.
    #[allow(clippy::too_many_arguments)] // One pair's inputs; a struct for one call adds nothing.
    fn add(
        &mut self,
        t: usize,
        template: &'a str,
        reads: Reads,
        target: &'a manifest::Target,
        component: &'a str,
        version: &'a str,
        migration: Option<(&'a str, &'a str)>,
        artifacts: bool,
    ) {
        if !reads.anything() {
            // Literal text: it renders to itself.
            return;
        }
        let key = RenderKey {
            template,
            target: reads.target.then(|| target.name()),
            component: reads.component.then_some(component),
            version: reads.version.then_some(version),
            migration: if reads.migration { migration } else { None },
            artifacts,
        };
        let job = match self.job_of.get(&key) {
            Some(job) => *job,
            None => {
                self.jobs.push(RenderJob {
                    template,
                    target,
                    component,
                    version,
                    migration,
                    artifacts,
                });
                self.job_of.insert(key, self.jobs.len() - 1);
                self.jobs.len() - 1
            }
        };
        self.owners.push((t, target.name(), job));
    }

    /// Every job's result, in job order. Contexts are made and templates rendered in chunks on
    /// the machine's cores (issue #17: one thread made 10,000 contexts and rendered them, about
    /// a sixth of the first plan of a 10,000-target commit).
    fn render(&self) -> Vec<Result<String, String>> {
        self.render_on(crate::manifest::parallel::threads_for_items(
            self.jobs.len(),
            MIN_RENDERS_PER_THREAD,
        ))
    }

    /// [`Renders::render`] in `threads` chunks.
    fn render_on(&self, threads: usize) -> Vec<Result<String, String>> {
        crate::manifest::parallel::map_chunks(&self.jobs, threads, |chunk| {
            let contexts: Vec<serde_json::Value> = chunk.iter().map(|job| self.context(job)).collect();
            let jobs: Vec<render::sandbox::Job<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(context, job)| render::sandbox::Job {
                    template: job.template,
                    context,
                })
                .collect();
            render::sandbox::render_all(render::sandbox::Profile::Step, &jobs, &contexts)
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// The context `job` renders with in the check: stand-ins for what only a running step has.
    fn context(&self, job: &RenderJob<'_>) -> serde_json::Value {
        let RenderJob {
            target,
            component,
            version,
            migration,
            artifacts,
            ..
        } = *job;
        let version = version.to_owned();
        // A step's `release` is its version's Release manifest, known once it runs: a stand-in
        // name here.
        let release = migration.map_or_else(|| format!("{component}-{version}"), |(release, _)| release.to_owned());
        serde_json::to_value(TemplateContext {
            target: TargetContext {
                name: target.name().to_owned(),
                labels: target.labels().clone(),
                vars: target.spec().vars.clone(),
                config: target.spec().config.clone(),
            },
            component: component.to_owned(),
            from: Some(version.clone()),
            to: version.clone(),
            version,
            release: Some(release),
            migration: migration.map(|(_, id)| id.to_owned()),
            attempt: "validate".to_owned(),
            commit: self.commit.to_string(),
            // Stand-ins for values only a running step has: a traffic weight, and one verified
            // artifact (so `{{ artifact.path }}` renders; its absence is a run-time matter),
            // except where the step never has one.
            weight: Some(100),
            artifact: artifacts.then(stand_in_artifact),
            artifacts: if artifacts {
                vec![stand_in_artifact()]
            } else {
                Vec::new()
            },
        })
        .unwrap_or_default()
    }
}

/// Renders every step template (component steps and release migrations) against every target
/// of its component, strictly and under the template limits (SPEC §5), so an undefined variable
/// (`target.vars.host` missing on one target) or a template over its limits is an `Invalid`
/// diagnostic at the template's file and line before anything runs, instead of a commit that
/// installs one target and fails on the next. Values only known when a step runs (`from`,
/// `attempt`, `weight`, `artifact`) get stand-ins; one diagnostic per template names the first failing target.
fn template_diagnostics(desired: &Desired, commit: Oid) -> Vec<Diagnostic> {
    let (diagnostics, memo) = check_templates(desired, commit, TemplateMemo::take());
    TemplateMemo::keep(memo);
    diagnostics
}

/// [`template_diagnostics`] against `memo` (`None`: render every pair); returns the memo of
/// this check (`None` when given none).
fn check_templates(
    desired: &Desired,
    commit: Oid,
    mut memo: Option<TemplateMemo>,
) -> (Vec<Diagnostic>, Option<TemplateMemo>) {
    let mut templates: Vec<StepTemplate<'_>> = Vec::new();
    for component in desired.components.values() {
        for (step, argv) in component.spec.steps.iter() {
            for (i, template) in argv.iter().enumerate() {
                templates.push(StepTemplate {
                    component,
                    pointer: format!("/spec/steps/{step}/{i}"),
                    template,
                    release: None,
                    migration: None,
                    artifacts: !matches!(step, "precheck" | "observe"),
                });
            }
        }
    }
    for (name, releases) in &desired.releases {
        let Some(component) = desired.components.get(name) else {
            continue;
        };
        for release in releases {
            for (m, migration) in release.spec().migrations.iter().enumerate() {
                let down = migration
                    .down
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, t)| (format!("/spec/migrations/{m}/down/{i}"), t));
                for (pointer, template) in migration
                    .up
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("/spec/migrations/{m}/up/{i}"), t))
                    .chain(down)
                {
                    templates.push(StepTemplate {
                        component,
                        pointer,
                        template,
                        release: Some(&release.manifest.name),
                        migration: Some((release.version.to_string(), &migration.id)),
                        artifacts: true,
                    });
                }
            }
        }
    }
    // What each template reads, judged once per template (issue #17: judged once per target and
    // template, it was most of a first plan's template check on a 10,000-target fleet).
    let reads: Vec<Reads> = templates.iter().map(|t| Reads::of(t.template)).collect();
    let plain: Vec<Option<PlainLookups<'_>>> = templates.iter().map(|t| PlainLookups::of(t.template)).collect();
    // The templates of each component, in order: a target renders exactly these.
    let mut of_component: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (t, template) in templates.iter().enumerate() {
        of_component
            .entry(template.component.name.as_str())
            .or_default()
            .push(t);
    }
    // What the last check (daemon only) can answer for: a target whose render inputs and whose
    // component's templates are unchanged fails exactly the templates it failed then.
    let mut next = memo.as_ref().map(|_| TemplateMemo {
        commit,
        reused: 0,
        components: of_component
            .iter()
            .map(|(name, ts)| {
                let signature = ts.iter().map(|t| TemplateSignature::of(&templates[*t])).collect();
                ((*name).to_owned(), signature)
            })
            .collect(),
        // Sized for every target at once (not grown, and every entry moved, a dozen times).
        targets: Vec::with_capacity(desired.targets.len()),
    });
    // The last check's targets, walked in name order beside this check's.
    let mut known_targets = memo
        .as_mut()
        .map(|m| std::mem::take(&mut m.targets))
        .unwrap_or_default()
        .into_iter()
        .peekable();
    let reusable: HashMap<String, bool> = match (&memo, &next) {
        (Some(memo), Some(next)) => next
            .components
            .iter()
            .map(|(name, signature)| {
                let reads_commit = signature.iter().any(|s| Reads::of(&s.template).commit);
                let same = memo.components.get(name) == Some(signature) && (!reads_commit || memo.commit == commit);
                (name.clone(), same)
            })
            .collect(),
        _ => HashMap::new(),
    };
    // One render per distinct (template, what it can read): a template can only read the
    // variables it names, so two jobs that differ only in variables their template does not
    // name render alike (issue #17: a 10,000-target fleet rendered `{{ version }}` of every
    // migration once per target, 10-14 s and 6 GB for the first plan of each commit).
    let jobs = tracing::debug_span!("templates.jobs").entered();
    let mut renders = Renders::new(commit);
    // Per target, in name order: the templates it fails (index in its component's list) and why.
    let mut failed_by: Vec<(&str, Vec<(usize, String)>)> = Vec::new();
    let mut rendered: Vec<&manifest::Target> = Vec::new();
    for target in desired.targets.values() {
        let component = target.spec().component.as_str();
        let Some(ts) = of_component.get(component) else {
            continue;
        };
        let known = if reusable.get(component).copied().unwrap_or(false) {
            while known_targets
                .next_if(|(name, _)| name.as_str() < target.name())
                .is_some()
            {}
            known_targets
                .next_if(|(name, _)| name == target.name())
                .filter(|(_, known)| known.matches(target))
        } else {
            None
        };
        if let Some(known) = known {
            // It passed every template then, with these same inputs: it passes now.
            if let Some(next) = next.as_mut() {
                next.targets.push(known);
                next.reused += 1;
            }
            continue;
        }
        rendered.push(target);
        for t in ts {
            let template = &templates[*t];
            let (version, migration) = match &template.migration {
                Some((version, id)) => (version.as_str(), template.release.map(|r| (r, *id))),
                None => (target.spec().version.as_str(), None),
            };
            if plain[*t]
                .as_ref()
                .is_some_and(|p| p.answered_by(target, component, version, migration.is_some()))
            {
                continue;
            }
            renders.add(
                *t,
                template.template,
                reads[*t],
                target,
                component,
                version,
                migration,
                template.artifacts,
            );
        }
    }
    drop(jobs);
    if let Some(next) = &next {
        tracing::debug!(reused = next.reused, rendered = rendered.len(), "template check");
    }
    let rendering = tracing::debug_span!("templates.render", jobs = renders.jobs.len()).entered();
    let results = renders.render();
    drop(rendering);
    // The targets rendered now: what each failed, merged into the name order of all targets.
    let mut fresh: HashMap<&str, Vec<(usize, String)>> = HashMap::new();
    for (t, target, job) in &renders.owners {
        if let Err(problem) = &results[*job] {
            let local = of_component[templates[*t].component.name.as_str()]
                .iter()
                .position(|u| u == t)
                .expect("invariant: a template is in its component's list");
            fresh.entry(*target).or_default().push((local, problem.clone()));
        }
    }
    let mut passed = Vec::new();
    for target in rendered {
        let failed = fresh.remove(target.name()).unwrap_or_default();
        // Only a target that passed is remembered: a failure may come from the sandbox (a
        // child killed under load), which the next commit must not inherit.
        if next.is_some() && failed.is_empty() {
            passed.push((target.name().to_owned(), TargetInputs::of(target)));
        }
        failed_by.push((target.name(), failed));
    }
    if let Some(next) = next.as_mut() {
        next.targets = merged_in_name_order(std::mem::take(&mut next.targets), passed);
    }
    failed_by.sort_by(|a, b| a.0.cmp(b.0));
    // First failure per template (in target name order), and how many targets failed.
    let mut failures: BTreeMap<usize, (&str, String, usize)> = BTreeMap::new();
    for (target, failed) in &failed_by {
        let component = desired.targets.get(*target).map(|t| t.spec().component.as_str());
        let Some(ts) = component.and_then(|c| of_component.get(c)) else {
            continue;
        };
        for (local, problem) in failed.iter() {
            failures.entry(ts[*local]).or_insert((target, problem.clone(), 0)).2 += 1;
        }
    }
    let diagnostics = failures
        .into_iter()
        .map(|(t, (target, problem, count))| {
            let template = &templates[t];
            let origin = match template.release {
                Some(release) => desired
                    .releases
                    .get(&template.component.name)
                    .and_then(|rs| rs.iter().find(|r| r.manifest.name == release))
                    .map_or(&template.component.origin, |r| &r.manifest.origin),
                None => &template.component.origin,
            };
            let more = match count {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            origin.diagnostic(
                Severity::Invalid,
                super::template_cache::KIND,
                &template.pointer,
                format!(
                    "template `{}` does not render for target `{target}`{more}: {problem}",
                    crate::executor::truncate_for_message(template.template, 80)
                ),
            )
        })
        .collect();
    (diagnostics, next)
}

/// `kept` and `more`, each in name order, as one list in name order: each of `more` is placed by
/// a binary search (after a one-file change, one target among 10,000).
fn merged_in_name_order(
    kept: Vec<(String, TargetInputs)>,
    more: Vec<(String, TargetInputs)>,
) -> Vec<(String, TargetInputs)> {
    if more.is_empty() {
        return kept;
    }
    let places: Vec<usize> = more
        .iter()
        .map(|(name, _)| kept.partition_point(|(k, _)| k < name))
        .collect();
    let mut merged = Vec::with_capacity(kept.len() + more.len());
    let mut kept = kept.into_iter();
    let mut taken = 0;
    for (place, entry) in places.into_iter().zip(more) {
        merged.extend(kept.by_ref().take(place - taken));
        taken = place;
        merged.push(entry);
    }
    merged.extend(kept);
    merged
}

/// Reads `entries` through a new handle on the repository at `dir` (for another thread).
fn repo_path_reader<'a>(dir: &Path, entries: &[TreeFile]) -> Result<Cow<'a, [RawFile]>, SourceError> {
    Ok(Cow::Owned(WatchedRepo::open(dir)?.read_entries(entries)?))
}

/// Compiles every Window; each mistake becomes an `Invalid` diagnostic at its JSON pointer.
fn compile_windows(desired: &Desired, diagnostics: &mut Vec<Diagnostic>) -> Vec<WindowSchedule> {
    let mut windows = Vec::with_capacity(desired.windows.len());
    for window in &desired.windows {
        match WindowSchedule::compile(&window.name, &window.spec) {
            Ok(schedule) => windows.push(schedule),
            Err(errors) => diagnostics.extend(errors.into_iter().map(|e| {
                window.origin.diagnostic(
                    Severity::Invalid,
                    "window",
                    &e.pointer,
                    format!("window `{}`: {}", window.name, e.message),
                )
            })),
        }
    }
    windows
}

/// Reads from git what the planner's gates need beyond the manifests: the `Approved-by:`
/// trailers on the commit that last changed each target's desired version, and, with `[trust]`,
/// what signed history vouches for ([`trusted_approvals`]). Only targets whose policy asks for
/// approvals for some update type are looked up, so fleets without approval rules never walk
/// history. Signatures are checked against the signers of `anchor` (`source::trust`), never the
/// head's own list.
///
/// # Errors
/// git failures walking history.
pub fn evidence(
    repo: &WatchedRepo,
    loaded: &LoadedCommit,
    anchor: &trust::AnchorSource,
) -> Result<Evidence, SourceError> {
    let _stage = tracing::debug_span!("evidence.approvals").entered();
    // Borrowed, in name order (issue #17: 10,000 names and versions were copied here, then
    // made a map).
    let wanted: Vec<(&str, &str)> = loaded
        .desired
        .targets
        .iter()
        .filter(|(_, t)| {
            policy::select_policy(&loaded.desired, t).is_ok_and(|g| {
                let u = &g.spec().updates;
                u.patch.approvals > 0 || u.minor.approvals > 0 || u.major.approvals > 0
            })
        })
        .map(|(name, t)| (name.as_str(), t.spec().version.as_str()))
        .collect();
    if wanted.is_empty() {
        return Ok(Evidence::default());
    }
    // With `[trust]`, approvals count only from signed commits. `apply` has already refused an
    // untrusted head; if the signers cannot be read here, no approval counts.
    let signers = match trust::signers_for(repo, loaded.commit, &loaded.desired.config, anchor) {
        Ok(signers) => signers,
        Err(e) => {
            tracing::warn!("approvals not counted: {e}");
            Some(trust::AllowedSigners::none("(unreadable allowed signers)"))
        }
    };
    let found = history::version_change_approvers(repo, loaded.commit, &wanted, signers.as_ref())?;
    let trusted = match &signers {
        Some(signers) => Some(trusted_approvals(
            repo,
            loaded,
            wanted.iter().map(|(name, _)| *name).zip(&found),
            signers,
        )?),
        None => None,
    };
    Ok(Evidence {
        // Only targets some approver is found for (issue #17: a fleet's 10,000 targets, most
        // set by commits without trailers, made a 10,000-entry map of empty sets every pass).
        commit_approvers: wanted
            .iter()
            .map(|(name, _)| name)
            .zip(found)
            .filter(|(_, v)| !v.approvers.is_empty())
            .map(|(t, v)| ((*t).to_string(), v.approvers))
            .collect(),
        trusted,
    })
}

/// With `[trust]` (issue #18): for each target, the digests of the releases of its component
/// whose content is unchanged since the commit whose trailers approved it; for each Approval
/// manifest, the addresses the signed commit that added it vouches for and the digest of the
/// release it names when that release is unchanged since. One history walk finds when each
/// release last changed; an approval at commit C approved a release last changed at S when C is
/// S or descends from it. `found` is each target's name with what
/// [`history::version_change_approvers`] found for it.
///
/// # Errors
/// git failures walking history.
pub fn trusted_approvals<'f>(
    repo: &WatchedRepo,
    loaded: &LoadedCommit,
    found: impl Iterator<Item = (&'f str, &'f history::VersionApproval)> + Clone,
    signers: &trust::AllowedSigners,
) -> Result<policy::approvals::TrustedApprovals, SourceError> {
    use policy::approvals::{ManifestApproval, release_digest};
    let desired = &loaded.desired;
    let approvals: BTreeMap<String, String> = desired
        .approvals
        .iter()
        .map(|a| (a.name.clone(), history::approval_fingerprint(&a.spec)))
        .collect();
    let approval_commits = history::approval_commits(repo, loaded.commit, &approvals)?;
    // The releases any approval may be about: those of the components concerned.
    let components: std::collections::BTreeSet<&str> = found
        .clone()
        .filter_map(|(t, _)| desired.targets.get(t).map(|t| t.spec().component.as_str()))
        .chain(desired.approvals.iter().map(|a| a.spec.component.as_str()))
        .collect();
    let releases: Vec<&manifest::Release> = components
        .iter()
        .filter_map(|c| desired.releases.get(*c))
        .flatten()
        .collect();
    let wanted: BTreeMap<String, String> = releases
        .iter()
        .map(|r| {
            (
                history::release_key(r.spec()),
                history::release_fingerprint(&r.manifest.name, r.spec()),
            )
        })
        .collect();
    let changed_at = history::release_commits(repo, loaded.commit, &wanted)?;
    let mut memo: BTreeMap<(Oid, Oid), bool> = BTreeMap::new();
    // Whether an approval made at `approved` saw `release` as it is at head.
    let mut unchanged_since = |release: &manifest::Release, approved: Oid| -> Result<bool, SourceError> {
        let Some(&changed) = changed_at.get(&history::release_key(release.spec())) else {
            return Ok(false);
        };
        if changed == approved {
            return Ok(true);
        }
        if let Some(&known) = memo.get(&(approved, changed)) {
            return Ok(known);
        }
        let later = repo.repo.graph_descendant_of(approved, changed)?;
        memo.insert((approved, changed), later);
        Ok(later)
    };
    let mut trusted = policy::approvals::TrustedApprovals::default();
    for (name, approval) in found {
        let Some(target) = desired.targets.get(name) else {
            continue;
        };
        let mut approved = BTreeMap::new();
        for release in desired.releases.get(&target.spec().component).into_iter().flatten() {
            if unchanged_since(release, approval.commit)? {
                approved.insert(release.version.clone(), release_digest(release));
            }
        }
        trusted.commit_releases.insert(name.to_string(), approved);
    }
    for approval in &desired.approvals {
        let Some(&commit) = approval_commits.get(&approval.name) else {
            continue;
        };
        let short = &commit.to_string()[..7];
        let mut vouched = ManifestApproval::default();
        let named = approval
            .spec
            .approved_by
            .iter()
            .filter_map(|who| policy::approvals::normalize_address(who));
        match trust::vouched(repo, commit, signers, named) {
            Ok((signer, kept, dropped)) => {
                vouched.approvers.extend(kept);
                for address in dropped {
                    vouched.notes.push(format!(
                        "Approval `{}` names {address} but commit {short} that added it is signed by {} ({}), which is not listed for {address} (in {} and in the list before that commit): each approver signs their own approval (`gantry approve`)",
                        approval.name, signer.email, signer.fingerprint, signers.source_name
                    ));
                }
            }
            Err(e) => vouched.notes.push(format!(
                "Approval `{}` not counted: commit {short} that added it is not trusted ({e})",
                approval.name
            )),
        }
        if let Ok(version) = crate::manifest::Version::parse(approval.spec.version.trim())
            && let Some(release) = desired.release(&approval.spec.component, &version)
            && unchanged_since(release, commit)?
        {
            vouched.release = Some(release_digest(release));
        }
        trusted.manifests.insert(approval.name.clone(), vouched);
    }
    Ok(trusted)
}

/// Policy ties, checked for every target (the planner also reports them per action).
fn policy_diagnostics(desired: &Desired) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    // Requirements between pinned targets are known without recorded state too (issue #16).
    for (target, why) in crate::plan::pinned_requirement_conflicts(desired) {
        out.push(target.manifest.origin.diagnostic(
            Severity::Violation,
            "requires",
            "/spec/version",
            format!("target `{}`: {why}", target.name()),
        ));
    }
    for target in desired.targets.values() {
        match policy::select_policy(desired, target) {
            Err(tie) => out.push(target.manifest.origin.diagnostic(
                Severity::Violation,
                "policy_tie",
                "/metadata/labels",
                format!("target `{}`: {tie}", target.name()),
            )),
            // A pin that can never be deployed (yanked, denied by its policy) is known without
            // any recorded state: `validate` says so, as `plan` does (issue #16). A pin with no
            // release at all is the target check's own diagnostic.
            Ok(governing) => {
                if let manifest::VersionWanted::Pin(pin) = &target.wanted {
                    let releases = desired
                        .releases
                        .get(&target.spec().component)
                        .map_or(&[][..], Vec::as_slice);
                    if manifest::release_in(releases, pin).is_some()
                        && let Err(why) = crate::plan::resolve_pin(releases, target, governing, pin)
                    {
                        out.push(target.manifest.origin.diagnostic(
                            Severity::Violation,
                            "pin",
                            "/spec/version",
                            format!("target `{}`: {why}", target.name()),
                        ));
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a template's text lets it read decides how many renders the check needs; erring
    /// towards "reads it" costs renders, never a missed failure.
    #[test]
    fn a_template_reads_only_what_it_names() {
        let reads = |t: &str| {
            let r = Reads::of(t);
            (r.anything(), r.target, r.component, r.version, r.migration)
        };
        for (template, want) in [
            ("scripts/migrate.sh", (false, false, false, false, false)),
            ("{{ version }}", (true, false, false, true, false)),
            ("{{ target.name }}", (true, true, false, false, false)),
            (
                "{{ target.vars.host }}:{{ migration }}",
                (true, true, false, false, true),
            ),
            // `release` holds component and version in the stand-in.
            ("{{ release }}", (true, false, true, true, true)),
            ("{% if from %}x{% endif %}", (true, false, false, true, false)),
            // `debug()` shows the whole context.
            ("{{ debug() }}", (true, true, true, true, true)),
            // A comment is a tag: it is rendered (and so parsed) like the rest.
            ("{# note #}", (true, false, false, false, false)),
        ] {
            assert_eq!(reads(template), want, "{template}");
        }
    }

    /// Keys that differ only in what a template cannot read are the same render.
    #[test]
    fn render_keys_ignore_what_the_template_does_not_read() {
        let key = |template, target, version| RenderKey {
            template,
            target,
            component: None,
            version,
            migration: None,
            artifacts: true,
        };
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(key("{{ version }}", None, Some("1.0.0"))));
        assert!(
            !seen.insert(key("{{ version }}", None, Some("1.0.0"))),
            "a second target: same render"
        );
        assert!(seen.insert(key("{{ version }}", None, Some("2.0.0"))));
        assert!(seen.insert(key("{{ target.name }}", Some("a"), None)));
        assert!(seen.insert(key("{{ target.name }}", Some("b"), None)));
        let without_artifacts = RenderKey {
            artifacts: false,
            ..key("{{ version }}", None, Some("1.0.0"))
        };
        assert!(seen.insert(without_artifacts), "a precheck's render is its own");
    }

    /// Issue #17: the check's renders run in chunks on several threads; each job's result is
    /// the one a single thread gives, failures in every chunk included, and the diagnostic names
    /// the failing target wherever its render ran.
    #[test]
    fn renders_split_over_threads_answer_as_one_thread() {
        let mut files = vec![
            (
                "components/web.yaml".to_string(),
                "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    \
                 deploy: [\"deploy.sh\", \"{{ target.vars.host }}\", \"{{ version }}\"]\n"
                    .to_string(),
            ),
            (
                "releases/web.yaml".to_string(),
                "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: web-1.0.0 }\nspec: { component: web, version: 1.0.0 }\n"
                    .to_string(),
            ),
        ];
        // Every target renders on its own (the template names it); three lack the variable,
        // near the start, the middle and the end of name order.
        let without_host = ["t0003", "t0600", "t1198"];
        for i in 0..1200 {
            let name = format!("t{i:04}");
            let vars = if without_host.contains(&name.as_str()) {
                String::new()
            } else {
                format!(", vars: {{ host: h{i} }}")
            };
            files.push((
                format!("targets/{name}.yaml"),
                format!(
                    "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: web, version: 1.0.0{vars} }}\n"
                ),
            ));
        }
        let files: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let desired = desired_of(&files);
        let mut renders = Renders::new(Oid::ZERO_SHA1);
        let template = "{{ target.vars.host }}";
        for target in desired.targets.values() {
            renders.add(0, template, Reads::of(template), target, "web", "1.0.0", None, true);
        }
        assert_eq!(renders.jobs.len(), 1200, "one render per target");
        let one = renders.render_on(1);
        for threads in [2, 3, 7] {
            assert_eq!(renders.render_on(threads), one, "{threads} threads");
        }
        let failed: Vec<&str> = renders
            .jobs
            .iter()
            .zip(&one)
            .filter(|(_, result)| result.is_err())
            .map(|(job, _)| job.target.name())
            .collect();
        assert_eq!(failed, without_host);
        assert_eq!(one[1].as_deref(), Ok("h1"), "a render's own target's value");
        let (diagnostics, _) = check_templates(&desired, Oid::ZERO_SHA1, None);
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(diagnostics[0].to_string().contains("t0003"), "{}", diagnostics[0]);
    }

    /// Issue #17: a plain-lookup template is passed without a render only where the render
    /// passes too. Every template of a corpus (plain, tricky and hostile) against targets with
    /// and without each value: wherever the shortcut answers, the render succeeds; and the
    /// shortcut does answer the usual argv lookups.
    #[test]
    fn a_template_passed_without_a_render_renders() {
        let long = "x".repeat(MAX_PLAIN_VALUE + 1);
        let mut files = vec![(
            "components/web.yaml".to_string(),
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: web }\nspec:\n  steps:\n    deploy: [\"deploy.sh\"]\n"
                .to_string(),
        )];
        let targets = [
            "{ component: web, version: 1.0.0 }".to_string(),
            "{ component: web, version: 1.0.0, vars: { host: h, port: 80, on: true, nul: null, list: [1], nested: { deep: d }, items: i } }".to_string(),
            format!("{{ component: web, version: 1.0.0, vars: {{ host: {long} }}, config: {{ replicas: 2, tls: {{ on: false }} }} }}"),
            // A version is not bounded: a long pre-release, 15 times, is over the output cap.
            format!("{{ component: web, version: \"1.0.0-{}\" }}", "b".repeat(9000)),
        ];
        for (i, spec) in targets.iter().enumerate() {
            let labels = if i == 1 { ", labels: { env: prod }" } else { "" };
            files.push((
                format!("targets/t{i}.yaml"),
                format!("apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: t{i}{labels} }}\nspec: {spec}\n"),
            ));
        }
        let files: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
        let desired = desired_of(&files);
        let answered = [
            "{{ target.name }}",
            "--host={{ target.vars.host }}:{{ target.vars.port }}",
            "{{ version }}",
            "{{ from }}-{{ to }}",
            "{{ attempt }}",
            "{{ commit }}",
            "{{ component }}/{{ release }}",
            "{{- target.name -}}",
            "{{ target.labels.env }}",
            "{{ target.vars.nested.deep }}",
            "{{ target.vars.on }}",
            "{{ target.vars.items }}",
            "{{ target.config.replicas }}",
            "{{ target.config.tls.on }}",
            "{{ migration }}",
        ];
        let rendered_only = [
            "{{ target.name.upper }}",
            "{{ target.vars.missing }}",
            "{{ target.vars.nul }}",
            "{{ target.vars.list }}",
            "{{ target.vars }}",
            "{{ target }}",
            "{{ target.labels.missing }}",
            "{{ artifact.path }}",
            "{{ weight }}",
            "{{ true }}",
            "{{ none }}",
            "{{ loop }}",
            "{{ target.name | upper }}",
            "{# {{ target.name }}",
            "{{ target.name }",
            "{% if x %}{{ target.name }}",
            "{{ target.vars.host.x }}",
            "{{ target.config }}",
            "{{ undefined_name }}",
            "{{ target.vars.nested }}",
            // The second mark negates: a string or boolean cannot be.
            "{{--target.name}}",
            "{{+-target.name}}",
            "{{--version}}",
            "{{--target.vars.on}}",
            "{{ target.name--}}",
        ];
        let fifteen_versions = "{{ version }}".repeat(15);
        let mut shortcuts = 0;
        for template in answered
            .iter()
            .chain(&rendered_only)
            .chain([&fifteen_versions.as_str()])
        {
            let plain = PlainLookups::of(template);
            for migration in [None, Some(("web-1.0.0", "m1"))] {
                for target in desired.targets.values() {
                    let version = target.spec().version.as_str();
                    if !plain
                        .as_ref()
                        .is_some_and(|p| p.answered_by(target, "web", version, migration.is_some()))
                    {
                        continue;
                    }
                    shortcuts += 1;
                    let mut renders = Renders::new(Oid::ZERO_SHA1);
                    renders.add(
                        0,
                        template,
                        Reads::of(template),
                        target,
                        "web",
                        version,
                        migration,
                        true,
                    );
                    let rendered = renders.render_on(1);
                    assert!(
                        rendered.iter().all(Result::is_ok),
                        "`{template}` passed without a render for {} (migration {migration:?}): {rendered:?}",
                        target.name()
                    );
                }
            }
        }
        // The usual lookups are answered for the target that has the values.
        let t1 = &desired.targets["t1"];
        for template in answered
            .iter()
            .filter(|t| !t.contains("config") && !t.contains("migration"))
        {
            assert!(
                PlainLookups::of(template).is_some_and(|p| p.answered_by(t1, "web", "1.0.0", false)),
                "{template}"
            );
        }
        assert!(PlainLookups::of("{{ migration }}").is_some_and(|p| p.answered_by(t1, "web", "1.0.0", true)));
        assert!(PlainLookups::of("{{ migration }}").is_some_and(|p| !p.answered_by(t1, "web", "1.0.0", false)));
        // A value over the bound goes to the render.
        let t2 = &desired.targets["t2"];
        assert!(PlainLookups::of("{{ target.vars.host }}").is_some_and(|p| !p.answered_by(t2, "web", "1.0.0", false)));
        // So is a long version (the reviewer's case: 15 lookups of a 9 KB version pass 128 KiB).
        let t3 = &desired.targets["t3"];
        let long_version = t3.spec().version.as_str();
        assert!(PlainLookups::of(&fifteen_versions).is_some_and(|p| !p.answered_by(t3, "web", long_version, false)));
        assert!(PlainLookups::of(&fifteen_versions).is_some_and(|p| p.answered_by(t1, "web", "1.0.0", false)));
        assert!(shortcuts > 40, "{shortcuts}");
        // The rest (structures, none, names the check's context lacks or only a render can
        // judge, filters, statements, broken tags) are left to the render for every target.
        for template in rendered_only {
            let plain = PlainLookups::of(template);
            for target in desired.targets.values() {
                assert!(
                    !plain.as_ref().is_some_and(|p| p.answered_by(
                        target,
                        "web",
                        target.spec().version.as_str(),
                        false
                    )),
                    "`{template}` answered for {}",
                    target.name()
                );
            }
        }
    }

    /// The desired state of `files` (path, YAML), as `load_commit` validates it.
    fn desired_of(files: &[(&str, String)]) -> Desired {
        let raw: Vec<RawFile> = files
            .iter()
            .map(|(path, text)| RawFile {
                path: (*path).to_owned(),
                content: manifest::RawContent::Bytes(text.clone().into_bytes()),
            })
            .collect();
        let (manifests, diagnostics) = manifest::read_manifests(None, &raw);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        manifest::validate(manifests).0
    }

    /// The remembered targets merged in name order: new ones before, between and after the
    /// kept ones, and none.
    #[test]
    fn remembered_targets_merge_in_name_order() {
        let target = manifest::read_manifests(
            None,
            &[RawFile {
                path: "t.yaml".to_owned(),
                content: manifest::RawContent::Bytes(
                    b"apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: t }\nspec: { component: web, version: 1.0.0 }\n".to_vec(),
                ),
            }],
        )
        .0
        .targets
        .remove(0);
        let entries = |names: &[&str]| -> Vec<(String, TargetInputs)> {
            names
                .iter()
                .map(|n| ((*n).to_string(), TargetInputs(Arc::clone(&target))))
                .collect()
        };
        let names = |list: Vec<(String, TargetInputs)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(
            names(merged_in_name_order(
                entries(&["b", "d", "f"]),
                entries(&["a", "c", "e", "g"])
            )),
            ["a", "b", "c", "d", "e", "f", "g"]
        );
        assert_eq!(
            names(merged_in_name_order(entries(&["b", "d"]), Vec::new())),
            ["b", "d"]
        );
        assert_eq!(
            names(merged_in_name_order(Vec::new(), entries(&["c", "e"]))),
            ["c", "e"]
        );
    }

    /// The template check's memo (issue #17) answers exactly what a check without it answers,
    /// over a series of commits: a target fixed, one broken, one renamed, a label a template
    /// reads changed, a component's template changed, and a template whose render depends on
    /// the commit id checked at two ids with the same files.
    #[test]
    fn the_template_memo_answers_what_a_full_check_answers() {
        let component = |deploy: &str| {
            format!(
                "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: web }}\nspec:\n  steps:\n    \
                 deploy: [\"deploy.sh\", \"{deploy}\", \"{{{{ version }}}}\"]\n    \
                 health: [\"check.sh\", \"{{% if commit[:1] == '0' %}}{{{{ nope }}}}{{% endif %}}\"]\n"
            )
        };
        let release = "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: web-1.0.0 }\nspec:\n  \
                       component: web\n  version: 1.0.0\n  migrations:\n    - id: m1\n      \
                       up: [\"m.sh\", \"{{ target.labels.tier }}\", \"{{ migration }}\"]\n"
            .to_string();
        let target = |name: &str, tier: Option<&str>, host: Option<&str>| {
            let labels = tier.map_or_else(String::new, |t| format!("\n  labels: {{ tier: {t} }}"));
            let vars = host.map_or_else(String::new, |h| format!(", vars: {{ host: {h} }}"));
            format!(
                "apiVersion: gantry.dev/v1\nkind: Target\nmetadata:\n  name: {name}{labels}\nspec: {{ component: web, \
                 version: 1.0.0{vars} }}\n"
            )
        };
        let deploy = "{{ target.vars.host }}";
        // A second component whose templates never name `commit`: its targets can be reused.
        let api = |x_url: bool, y_url: bool| {
            let t = |name: &str, url: bool| {
                let vars = if url { ", vars: { url: u }" } else { "" };
                format!(
                    "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: api, version: 1.0.0{vars} }}\n"
                )
            };
            vec![
                (
                    "components/api.yaml",
                    "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: api }\nspec:\n  steps:\n    \
                     deploy: [\"d.sh\", \"{{ target.vars.url }}\"]\n"
                        .to_string(),
                ),
                ("releases/api.yaml", "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: api-1.0.0 }\nspec: { component: api, version: 1.0.0 }\n".to_string()),
                ("targets/x.yaml", t("x", x_url)),
                ("targets/y.yaml", t("y", y_url)),
                ("targets/z.yaml", t("z", true)),
            ]
        };
        let commit = |n: u8| Oid::from_bytes(&[n; 20]).expect("an id");
        let first_files = vec![
            ("components/web.yaml", component(deploy)),
            ("releases/web.yaml", release.clone()),
            ("targets/a.yaml", target("a", Some("gold"), Some("a.example"))),
            ("targets/b.yaml", target("b", Some("gold"), None)),
            ("targets/c.yaml", target("c", None, Some("c.example"))),
        ];
        let steps: Vec<(Oid, Vec<(&str, String)>)> = vec![
            // b has no host, c no tier; the commit id starts with 0: `nope` fails everywhere.
            (commit(0x01), first_files.clone()),
            // Same files, an id starting with f: the commit-reading template now renders.
            (commit(0xf1), first_files),
            // b fixed, a loses its tier, c renamed to d.
            (
                commit(0xf2),
                vec![
                    ("components/web.yaml", component(deploy)),
                    ("releases/web.yaml", release.clone()),
                    ("targets/a.yaml", target("a", None, Some("a.example"))),
                    ("targets/b.yaml", target("b", Some("gold"), Some("b.example"))),
                    ("targets/d.yaml", target("d", Some("gold"), Some("c.example"))),
                ],
            ),
            // The component's deploy template changes: every target is checked again.
            (
                commit(0xf3),
                vec![
                    ("components/web.yaml", component("{{ target.vars.port }}")),
                    ("releases/web.yaml", release.clone()),
                    ("targets/a.yaml", target("a", None, Some("a.example"))),
                    ("targets/b.yaml", target("b", Some("gold"), Some("b.example"))),
                    ("targets/d.yaml", target("d", Some("gold"), Some("c.example"))),
                ],
            ),
            // Back to the first files at the first id.
            (commit(0x02), {
                let mut files = vec![
                    ("components/web.yaml", component(deploy)),
                    ("releases/web.yaml", release.clone()),
                ];
                files.push(("targets/a.yaml", target("a", Some("gold"), Some("a.example"))));
                files.push(("targets/b.yaml", target("b", Some("gold"), None)));
                files
            }),
        ];
        let mut memo = Some(TemplateMemo {
            commit: Oid::ZERO_SHA1,
            reused: 0,
            components: BTreeMap::new(),
            targets: Vec::new(),
        });
        let apis = [
            api(true, false),
            api(true, false),
            api(false, false),
            api(false, false),
            api(true, false),
        ];
        let mut seen = Vec::new();
        for (i, ((commit, files), api)) in steps.iter().zip(apis).enumerate() {
            let files: Vec<(&str, String)> = files.iter().cloned().chain(api).collect();
            let desired = desired_of(&files);
            let (cold, none) = check_templates(&desired, *commit, None);
            assert!(none.is_none());
            let (warm, next) = check_templates(&desired, *commit, memo.take());
            assert_eq!(warm, cold, "step {i}");
            let next = next.expect("a memo in, a memo out");
            let next_reused = (next.reused, next.targets.len());
            assert!(
                next.targets.windows(2).all(|w| w[0].0 < w[1].0),
                "step {i}: the remembered targets are in name order"
            );
            memo = Some(next);
            seen.push((cold.len(), next_reused));
        }
        // The series is not trivial: the commit id, the fixes and the template change show.
        // (diagnostics, (targets taken from the memo, targets remembered)): only `api`'s targets,
        // whose component never names `commit`, are reused, only while their inputs are
        // unchanged; only targets that passed are remembered (a sandbox failure is never
        // inherited by the next commit).
        assert_eq!(
            seen,
            vec![(4, (0, 2)), (3, (2, 3)), (2, (1, 3)), (3, (1, 1)), (3, (1, 2))],
            "{seen:?}"
        );
    }
}
