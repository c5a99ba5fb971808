//! Templates the watched repository controls, rendered under hard limits on memory, CPU time and
//! output size (SPEC §5 "Template limits").
//!
//! minijinja's fuel bounds instructions, not bytes: thirty `{% set a = a ~ a %}` are thirty
//! instructions and a 1 GiB string, and Rust aborts the whole process when an allocation fails.
//! No check inside the process covers every way a template grows a value (`~`, `+`, `*`,
//! `join`, `replace`, `indent`, captured blocks, …), and an allocator cannot refuse an
//! allocation without aborting. The operating system can: the gantry binary renders every
//! template that is more than plain lookups in a child of itself (`gantry __render-sandbox`)
//! whose address space, CPU time and core dumps are capped with `setrlimit` before it starts.
//! Whatever a template does, the worst outcome is that child dying, which is reported as the
//! limit it hit; gantry's own memory stays small.
//!
//! Plain lookups (`{{ target.vars.host }}`, text around them) cannot produce more than the
//! context already holds and render in process, so ordinary manifests cost no extra process.
//! Library users and unit tests, which have no gantry binary to start, render in process too,
//! bounded by fuel and the output cap only ([`enable`] is called by the binary's `main`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Output, State, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// The hidden subcommand the binary answers as a sandbox child.
pub const SANDBOX_ARG: &str = "__render-sandbox";

/// Which templates are rendered, and so which environment and limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Profile {
    /// Step argv elements and health check urls and queries: strict undefined, no escaping.
    Step,
    /// The repository's `templates/plan.<format>.j2`.
    Plan,
}

/// The limits one template evaluation runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space of the sandbox process, in bytes (`RLIMIT_AS`).
    pub memory: u64,
    /// CPU seconds of the sandbox process (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Bytes one rendered template may produce.
    pub output: usize,
    /// minijinja fuel (instructions) per template.
    pub fuel: u64,
}

/// Limits for step templates. 128 KiB is also Linux's limit on one argv element
/// (`MAX_ARG_STRLEN`), so nothing larger could ever be run.
pub const STEP_LIMITS: Limits = Limits {
    memory: 256 << 20,
    cpu_seconds: 10,
    output: 128 << 10,
    fuel: 50_000,
};

/// Limits for the repository's plan template: a plan of 10,000 targets is about 20 MB of JSON,
/// so the context alone needs a few hundred MiB.
pub const PLAN_LIMITS: Limits = Limits {
    memory: 1 << 30,
    cpu_seconds: 60,
    output: 64 << 20,
    fuel: 5_000_000,
};

/// Nesting limit for step templates; real argv elements nest a few levels at most.
const STEP_RECURSION_LIMIT: usize = 32;
const PLAN_RECURSION_LIMIT: usize = 64;

impl Profile {
    pub fn limits(self) -> Limits {
        match self {
            Profile::Step => STEP_LIMITS,
            Profile::Plan => PLAN_LIMITS,
        }
    }

    /// The one environment of this profile: fuel, recursion limit, no loader (so no
    /// `include`/`import` of files), only minijinja's built-in filters and functions (none of
    /// which read the process environment or the filesystem), trailing newlines kept.
    pub fn environment(self) -> &'static Environment<'static> {
        static STEP: OnceLock<Environment<'static>> = OnceLock::new();
        static PLAN: OnceLock<Environment<'static>> = OnceLock::new();
        let cell = match self {
            Profile::Step => &STEP,
            Profile::Plan => &PLAN,
        };
        cell.get_or_init(|| {
            let mut env = Environment::new();
            env.set_fuel(Some(self.limits().fuel));
            match self {
                Profile::Step => {
                    env.set_formatter(json_for_structures);
                    env.set_undefined_behavior(UndefinedBehavior::Strict);
                    env.set_recursion_limit(STEP_RECURSION_LIMIT);
                    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
                }
                Profile::Plan => {
                    env.set_recursion_limit(PLAN_RECURSION_LIMIT);
                    env.add_filter("md", md_escape);
                }
            }
            // An argv element is data: "x\n" must stay "x\n"; plan templates end with a newline
            // and so does the output. With the default delimiters `build` cannot fail; if it
            // somehow did, the default syntax is still safe.
            if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
                env.set_syntax(syntax);
            }
            env
        })
    }
}

/// How a step template writes a value: strings and numbers as they are; booleans, maps and
/// lists as JSON (`true`, `{"tier":"gold"}`, `["a","b"]`), which the program receiving an argv
/// element can parse, instead of minijinja's Python spellings (`True`, `{'tier': 'gold'}`;
/// issue #16). Only what a `{{ }}` writes is formatted: `"x" ~ flag` still concatenates
/// minijinja's text, so SPEC §5 says to write `{{ flag | tojson }}` there.
fn json_for_structures(out: &mut Output<'_>, state: &mut State<'_, '_>, value: &Value) -> Result<(), minijinja::Error> {
    match value.kind() {
        ValueKind::Bool | ValueKind::Map | ValueKind::Seq => {
            let text = serde_json::to_string(value)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string()))?;
            out.write_str(&text)
                .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// The `md` filter of plan templates: a value inside a markdown table cell.
fn md_escape(value: String) -> String {
    value.replace('|', "\\|").replace('\n', "<br>")
}

/// Set by the binary's `main`: the gantry executable to start as a sandbox.
static SANDBOX_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every later non-trivial render go through a sandbox child of the running executable.
/// Called by the gantry binary; without it (library use, unit tests) rendering stays in process.
pub fn enable() {
    if let Ok(exe) = std::env::current_exe() {
        let _ = SANDBOX_EXE.set(exe);
    }
}

/// Whether renders go through a sandbox process.
pub fn enabled() -> bool {
    SANDBOX_EXE.get().is_some()
}

/// Whether `template` is only text and `{{ a.b.c }}` lookups (no statements, operators, filters
/// or calls): it cannot produce more than its context holds, so it is safe to render in process.
/// Anything unusual (a `{{` inside a comment, a string literal) counts as not plain.
pub fn is_plain_lookup(template: &str) -> bool {
    lookups_of(template, |_| ()).is_some()
}

/// The lookups of a plain-lookup template ([`is_plain_lookup`]), each as its path (`a.b.c` →
/// `["a", "b", "c"]`), in order; `None` when the template is not plain.
pub fn plain_lookups(template: &str) -> Option<Vec<Vec<&str>>> {
    let mut paths = Vec::new();
    lookups_of(template, |path| paths.push(path))?;
    Some(paths)
}

/// Calls `each` with the path of every `{{ a.b.c }}` of `template`; `None` (having called it for
/// some) when the template is not plain.
fn lookups_of<'t>(template: &'t str, mut each: impl FnMut(Vec<&'t str>)) -> Option<()> {
    if template.contains("{%") {
        return None;
    }
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        let after = &rest[at + 2..];
        let end = after.find("}}")?;
        // One whitespace-control mark on each side: in `{{--x}}` the second `-` negates `x`.
        let expr = &after[..end];
        let expr = expr.strip_prefix(['-', '+']).unwrap_or(expr);
        let expr = expr.strip_suffix(['-', '+']).unwrap_or(expr).trim();
        let is_ident = |s: &str| {
            let mut chars = s.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !expr.split('.').all(is_ident) {
            return None;
        }
        each(expr.split('.').collect());
        rest = &after[end + 2..];
    }
    Some(())
}

/// Whether `template` parses in `profile`'s environment.
pub fn parses(profile: Profile, template: &str) -> bool {
    compile(profile, template).is_ok()
}

/// Renders `template` against `context` in this process, with fuel and the output cap of
/// `profile` (but no memory bound: see the module docs). Returns the output or what went wrong
/// in one line.
pub fn render_in_process(profile: Profile, template: &str, context: &serde_json::Value) -> Result<String, String> {
    render_compiled(profile, &compile(profile, template), template, context)
}

/// `template` parsed in `profile`'s environment, or why it does not parse.
fn compile(profile: Profile, template: &str) -> Result<minijinja::Template<'_, '_>, String> {
    profile
        .environment()
        .template_from_str(template)
        .map_err(|e| describe(template, &e))
}

/// Renders a [`compile`]d `template` against `context` under `profile`'s output limit (its
/// fuel is counted per render by the environment).
fn render_compiled(
    profile: Profile,
    compiled: &Result<minijinja::Template<'_, '_>, String>,
    template: &str,
    context: &serde_json::Value,
) -> Result<String, String> {
    let compiled = compiled.as_ref().map_err(Clone::clone)?;
    let limit = profile.limits().output;
    let mut out = CappedOutput {
        buf: Vec::new(),
        limit,
        exceeded: false,
    };
    let ctx = minijinja::Value::from(minijinja::value::Serde(context));
    match compiled.render_captured_to(ctx, &mut out) {
        Ok(_) => String::from_utf8(out.buf).map_err(|_| "template output is not UTF-8".to_owned()),
        Err(_) if out.exceeded => Err(output_exceeded(limit)),
        Err(e) => Err(describe(template, &e)),
    }
}

fn output_exceeded(limit: usize) -> String {
    format!(
        "template output exceeds {} (the limit for this kind of template); make it produce less",
        human_bytes(limit as u64)
    )
}

/// A writer that refuses to hold more than `limit` bytes.
struct CappedOutput {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for CappedOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One line saying what went wrong and where, e.g. "undefined value at `target.nmae`".
/// minijinja's `Display` names the template (always `<string>` here) rather than the failing
/// expression, so quote the expression from the source span instead.
pub fn describe(template: &str, err: &minijinja::Error) -> String {
    let mut problem = match err.kind() {
        minijinja::ErrorKind::OutOfFuel => "too much work (template fuel exhausted)".to_owned(),
        kind => match err.detail() {
            Some(detail) => format!("{kind}: {detail}"),
            None => kind.to_string(),
        },
    };
    if let Some(span) = err.range().and_then(|r| template.get(r))
        && !span.is_empty()
        && !problem.contains(&format!("`{span}`"))
    {
        problem.push_str(&format!(" at `{span}`"));
    }
    problem
}

/// One template to render: its source and the index of its context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job<'a> {
    pub template: &'a str,
    pub context: usize,
}

#[derive(Serialize)]
struct Request<'a> {
    profile: Profile,
    contexts: &'a [serde_json::Value],
    jobs: &'a [Job<'a>],
}

#[derive(Deserialize)]
struct OwnedRequest {
    profile: Profile,
    contexts: Vec<serde_json::Value>,
    jobs: Vec<OwnedJob>,
}

#[derive(Deserialize)]
struct OwnedJob {
    template: String,
    context: usize,
}

/// One answer line of the sandbox: exactly one of the two is set.
#[derive(Serialize, Deserialize)]
struct Answer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    err: Option<String>,
}

/// Renders every job, in order. Plain lookups render in process; the rest go through sandbox
/// children when [`enable`]d (one child for all of them, and a fresh one after any job that
/// kills its child). Each result is the output or a one-line problem, e.g.
/// "template needs more than 512 MiB of memory …".
pub fn render_all(profile: Profile, jobs: &[Job<'_>], contexts: &[serde_json::Value]) -> Vec<Result<String, String>> {
    let mut results: Vec<Option<Result<String, String>>> = vec![None; jobs.len()];
    let mut sandboxed: Vec<usize> = Vec::new();
    // Each distinct template is parsed once (issue #17: the template check of a 10,000-target
    // fleet parsed the same few templates 10,000 times each).
    let mut compiled: HashMap<&str, Result<minijinja::Template<'_, '_>, String>> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if !enabled() || is_plain_lookup(job.template) {
            let template = compiled
                .entry(job.template)
                .or_insert_with(|| compile(profile, job.template));
            results[i] = Some(render_compiled(profile, template, job.template, &contexts[job.context]));
        } else {
            sandboxed.push(i);
        }
    }
    if !sandboxed.is_empty() {
        let exe = SANDBOX_EXE
            .get()
            .expect("invariant: sandboxed jobs exist only when enabled");
        let batch: Vec<Job<'_>> = sandboxed.iter().map(|&i| jobs[i].clone()).collect();
        for (i, result) in sandboxed
            .into_iter()
            .zip(render_in_children(exe, profile, &batch, contexts))
        {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("invariant: every job got a result"))
        .collect()
}

/// Renders one template; see [`render_all`].
pub fn render(profile: Profile, template: &str, context: &serde_json::Value) -> Result<String, String> {
    render_all(profile, &[Job { template, context: 0 }], std::slice::from_ref(context))
        .pop()
        .expect("invariant: one job, one result")
}

fn render_in_children(
    exe: &std::path::Path,
    profile: Profile,
    jobs: &[Job<'_>],
    contexts: &[serde_json::Value],
) -> Vec<Result<String, String>> {
    let mut results = Vec::with_capacity(jobs.len());
    while results.len() < jobs.len() {
        let pending = &jobs[results.len()..];
        match run_child(exe, profile, pending, contexts) {
            Ok(answers) => {
                let complete = answers.len() == pending.len();
                results.extend(answers);
                if !complete {
                    // The child exited cleanly without answering everything: never loop.
                    let missing = jobs.len() - results.len();
                    results.extend(std::iter::repeat_n(
                        Err("the template sandbox stopped early".to_owned()),
                        missing,
                    ));
                }
            }
            Err((answers, failure)) => {
                results.extend(answers);
                // The job after the last answer is the one that killed the child.
                results.push(Err(failure));
            }
        }
    }
    results
}

type ChildFailure = (Vec<Result<String, String>>, String);

/// Runs one sandbox child over `jobs`. On a crash, returns the answers it gave before dying and
/// what killed it.
fn run_child(
    exe: &std::path::Path,
    profile: Profile,
    jobs: &[Job<'_>],
    contexts: &[serde_json::Value],
) -> Result<Vec<Result<String, String>>, ChildFailure> {
    let limits = profile.limits();
    let fail = |answers: Vec<_>, what: String| Err((answers, what));
    // The request goes through an anonymous file, not a pipe: a child that dies before reading
    // it all must not kill gantry with SIGPIPE (the binary restores SIGPIPE's default action).
    let request = match request_file(profile, jobs, contexts) {
        Ok(file) => file,
        Err(e) => return fail(Vec::new(), format!("cannot prepare the template sandbox: {e}")),
    };
    let mut command = Command::new(exe);
    command
        .arg(SANDBOX_ARG)
        .env_clear()
        .stdin(Stdio::from(request))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit runs between fork and exec; it is async-signal-safe and touches no
    // memory of the parent.
    unsafe {
        command.pre_exec(move || {
            use nix::sys::resource::{Resource, getrlimit, setrlimit};
            for (resource, wanted) in [
                (Resource::RLIMIT_AS, limits.memory),
                (Resource::RLIMIT_CPU, limits.cpu_seconds),
                (Resource::RLIMIT_CORE, 0),
            ] {
                // Never raise a limit the parent already runs under (`ulimit -v` in tests).
                let (soft, hard) = getrlimit(resource)?;
                let value = wanted.min(soft).min(hard);
                setrlimit(resource, value, hard)?;
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return fail(Vec::new(), format!("cannot start the template sandbox: {e}")),
    };
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(pipe) = stderr {
            let _ = pipe.take(64 << 10).read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut answers = Vec::with_capacity(jobs.len());
    if let Some(stdout) = child.stdout.take() {
        // A line is one output (at most `limits.output` bytes, JSON-escaped) plus framing.
        let line_limit = (limits.output as u64) * 6 + 1024;
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while answers.len() < jobs.len() {
            line.clear();
            match (&mut reader).take(line_limit).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => match serde_json::from_slice::<Answer>(&line) {
                    Ok(Answer { ok: Some(out), .. }) => answers.push(Ok(out)),
                    Ok(Answer { err: Some(err), .. }) => answers.push(Err(err)),
                    _ => break,
                },
            }
        }
    }
    let status = child.wait();
    let stderr = errors.join().unwrap_or_default();
    match status {
        Ok(status) if status.success() => Ok(answers),
        Ok(status) => {
            let why = if stderr.contains("memory allocation") || stderr.contains("out of memory") {
                format!(
                    "template needs more than {} of memory (the limit for this kind of template); make it build smaller values",
                    human_bytes(limits.memory)
                )
            } else if status.signal() == Some(nix::libc::SIGXCPU) || status.signal() == Some(nix::libc::SIGKILL) {
                format!(
                    "template needs more than {} s of CPU time (the limit for this kind of template)",
                    limits.cpu_seconds
                )
            } else if stderr.contains("overflowed its stack") {
                "template nests too deeply (stack exhausted)".to_owned()
            } else {
                let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                format!("the template sandbox failed ({status}): {last}")
            };
            fail(answers, why)
        }
        Err(e) => fail(answers, format!("cannot wait for the template sandbox: {e}")),
    }
}

fn request_file(profile: Profile, jobs: &[Job<'_>], contexts: &[serde_json::Value]) -> std::io::Result<std::fs::File> {
    let fd = nix::sys::memfd::memfd_create(c"gantry-render", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut file = std::fs::File::from(fd);
    {
        let mut out = std::io::BufWriter::new(&mut file);
        serde_json::to_writer(
            &mut out,
            &Request {
                profile,
                contexts,
                jobs,
            },
        )?;
        out.flush()?;
    }
    file.rewind()?;
    Ok(file)
}

/// The sandbox child: reads one request on stdin, writes one JSON answer line per job (flushed,
/// so the parent knows which job was running if the child dies) and exits 0.
pub fn serve() -> ExitCode {
    let mut input = Vec::new();
    if std::io::stdin().lock().read_to_end(&mut input).is_err() {
        return ExitCode::from(70);
    }
    let Ok(request) = serde_json::from_slice::<OwnedRequest>(&input) else {
        eprintln!("gantry sandbox: malformed request");
        return ExitCode::from(70);
    };
    drop(input);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for job in &request.jobs {
        let Some(context) = request.contexts.get(job.context) else {
            return ExitCode::from(70);
        };
        let answer = match render_in_process(request.profile, &job.template, context) {
            Ok(text) => Answer {
                ok: Some(text),
                err: None,
            },
            Err(problem) => Answer {
                ok: None,
                err: Some(problem),
            },
        };
        let written = serde_json::to_writer(&mut out, &answer)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if written.is_err() {
            return ExitCode::from(74);
        }
    }
    ExitCode::SUCCESS
}

/// `512 MiB`, `128 KiB`, `17 B`.
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lookups_are_told_apart_from_everything_else() {
        let cases = [
            ("deploy.sh", true),
            ("{{ target.vars.host }}", true),
            ("--to={{version}}", true),
            ("{{- target.name -}}:{{ to }}", true),
            ("{{ a ~ a }}", false),
            ("{% set a = 'x' %}{{ a }}", false),
            ("{{ target.name | upper }}", false),
            ("{{ target['name'] }}", false),
            ("{{ '{{' }}", false),
            ("{{ range(3) }}", false),
            ("{{ unclosed", false),
            ("{{ 1name }}", false),
        ];
        for (template, plain) in cases {
            assert_eq!(is_plain_lookup(template), plain, "{template}");
        }
    }

    #[test]
    fn output_cap_stops_a_template_that_writes_too_much() {
        let ctx = serde_json::json!({});
        let err = render_in_process(
            Profile::Step,
            "{% for i in range(100000) %}{{ \"x\" * 100 }}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("output exceeds 128 KiB"), "{err}");
        let ok = render_in_process(Profile::Step, "{% for i in range(10) %}x{% endfor %}", &ctx).unwrap();
        assert_eq!(ok, "xxxxxxxxxx");
    }

    /// Issue #17: `render_all` parses each distinct template once; every render still gets its
    /// own fuel, its own context and, for a template that does not parse, the error a render on
    /// its own gives.
    #[test]
    fn renders_sharing_a_parsed_template_each_get_their_own_fuel_and_context() {
        let empty = serde_json::json!({});
        let looping = |n: usize| format!("{{% for i in range({n}) %}}{{% endfor %}}");
        let fits = |n: usize| render_in_process(Profile::Step, &looping(n), &empty).is_ok();
        // The longest loop (by doubling) one render's fuel allows: two of them would not fit.
        let mut n = 64;
        while fits(2 * n) {
            n *= 2;
        }
        assert!(fits(n));
        let twice = render_in_process(Profile::Step, &looping(2 * n), &empty).unwrap_err();
        assert!(twice.contains("fuel"), "{twice}");
        let heavy = looping(n);
        let contexts = [serde_json::json!({"v": "a"}), serde_json::json!({"v": "b"})];
        let job = |template, context| Job { template, context };
        let jobs = [
            job(heavy.as_str(), 0),
            job("{{ v }}", 0),
            job(heavy.as_str(), 1),
            job("{{ unclosed", 0),
            job("{{ v }}", 1),
            job(heavy.as_str(), 0),
            job("{{ unclosed", 1),
        ];
        let results = render_all(Profile::Step, &jobs, &contexts);
        let alone: Vec<_> = jobs
            .iter()
            .map(|j| render_in_process(Profile::Step, j.template, &contexts[j.context]))
            .collect();
        assert_eq!(results, alone);
        assert!(
            results[0].is_ok() && results[2].is_ok() && results[5].is_ok(),
            "{results:?}"
        );
        assert_eq!((results[1].as_deref(), results[4].as_deref()), (Ok("a"), Ok("b")));
        assert!(results[3].is_err() && results[3] == results[6], "{results:?}");
    }

    #[test]
    fn human_bytes_names_units() {
        for (bytes, text) in [
            (512 << 20, "512 MiB"),
            (1 << 30, "1 GiB"),
            (128 << 10, "128 KiB"),
            (17, "17 B"),
        ] {
            assert_eq!(human_bytes(bytes), text);
        }
    }
}
