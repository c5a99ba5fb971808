//! The daemon's planning with its caches warm (parse cache by blob, state records by blob, the
//! template check's memo per target) answers exactly what a fresh `gantry plan` process answers,
//! commit after commit (issue #17: the caches must never return a stale answer).

mod common;

use common::{Repo, component, release};
use gantry::ops::plan::{PlanReport, plan};
use gantry::render::{self, Format};
use gantry::source::WatchedRepo;

const NOW: &str = "2026-11-21T10:00:00Z";

/// A target of `web` with `vars.host` when `host` is given.
fn web_target(name: &str, version: &str, host: Option<&str>) -> String {
    let vars = host.map_or_else(String::new, |h| format!("\n  vars: {{ host: {h} }}"));
    format!(
        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata:\n  name: {name}\n  labels: {{ tier: gold }}\nspec:\n  \
         component: web\n  version: \"{version}\"{vars}\n"
    )
}

/// What `plan` prints for `rev`, in process (the daemon's caches, warm from earlier commits):
/// the JSON plan, or the diagnostics of a commit that cannot be read.
fn in_process(repo: &WatchedRepo, rev: &str) -> String {
    let now = NOW.parse().expect("a timestamp");
    match plan(repo, None, Some(rev), Format::Json, now).expect("a plan") {
        PlanReport::Planned(planned) => {
            let mut out = Vec::new();
            render::write_plan_json(&planned.plan, &mut out).expect("JSON");
            String::from_utf8(out).expect("UTF-8")
        }
        PlanReport::Unreadable { diagnostics, .. } => diagnostics.iter().map(|d| format!("{d}\n")).collect(),
    }
}

/// What a fresh `gantry plan --format json` process prints for `rev` (diagnostics on stderr
/// when the commit cannot be read).
fn fresh_process(repo: &Repo, rev: &str) -> String {
    let run = repo.gantry(&["plan", "--now", NOW, "--format", "json", "--head", rev]);
    match run.code() {
        0 | 2 => run.stdout(),
        _ => run
            .stderr()
            .lines()
            .filter(|l| !l.starts_with("error: the manifests at"))
            .map(|l| format!("{l}\n"))
            .collect(),
    }
}

/// A Fleet of `web` for two tenants at `version`.
fn web_fleet(version: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Fleet\nmetadata: {{ name: erp }}\nspec:\n  tenants: [acme, globex]\n  \
         components: [web]\n  defaults: {{ version: \"{version}\", vars: {{ host: f }} }}\n"
    )
}

/// Regression guard for the daemon's re-plan caches (issue #17): after each one-file change
/// (a version bump, a target breaking a step template, the fix, a component template change,
/// a target removed, a Fleet's version bumped) the plan through the warm caches equals a fresh
/// process's plan. (The parse cache once handed back no Fleet manifests: the daemon planned
/// every fleet target as removed.)
#[test]
fn warm_daemon_plan_equals_a_fresh_process_after_each_one_file_change() {
    gantry::manifest::parse_cache::enable();
    gantry::state::branch::enable_process_cache();
    gantry::reconcile::load::enable_template_memo();

    let repo = Repo::new();
    let steps = "    health: [\"check.sh\", \"{{ target.vars.host }}\"]\n";
    repo.file("gantry.toml", "desired_branch = \"main\"\n")
        .file("components/web.yaml", &component("web", steps))
        .file(
            "releases/web.yaml",
            &format!("{}---\n{}", release("web", "1.0.0", ""), release("web", "1.1.0", "")),
        )
        .file("fleets/erp.yaml", &web_fleet("1.0.0"));
    for i in 0..12 {
        repo.file(
            &format!("targets/t{i:02}.yaml"),
            &web_target(&format!("t{i:02}"), "1.0.0", Some("h")),
        );
    }
    let mut commits = vec![repo.commit_all("fleet")];
    let edits: Vec<(&str, Option<String>)> = vec![
        ("targets/t03.yaml", Some(web_target("t03", "1.1.0", Some("h")))),
        ("targets/t05.yaml", Some(web_target("t05", "1.0.0", None))),
        ("targets/t05.yaml", Some(web_target("t05", "1.1.0", Some("h2")))),
        (
            "components/web.yaml",
            Some(component(
                "web",
                "    health: [\"check.sh\", \"{{ target.vars.port }}\"]\n",
            )),
        ),
        ("components/web.yaml", Some(component("web", steps))),
        ("targets/t07.yaml", None),
        ("fleets/erp.yaml", Some(web_fleet("1.1.0"))),
    ];
    for (path, content) in &edits {
        match content {
            Some(text) => repo.file(path, text),
            None => repo.remove(path),
        };
        commits.push(repo.commit_all(&format!("edit {path}")));
    }

    let watched = WatchedRepo::open(repo.path()).expect("the repository");
    let mut unreadable = 0;
    for (i, commit) in commits.iter().enumerate() {
        let fresh = fresh_process(&repo, commit);
        let warm = in_process(&watched, commit);
        assert_eq!(warm, fresh, "commit {i} ({commit})");
        unreadable += usize::from(warm.contains("does not render"));
        if !warm.contains("does not render") {
            assert!(
                warm.contains("acme") && warm.contains("globex"),
                "commit {i}: the fleet's targets are planned"
            );
        }
    }
    // Two commits break the template (t05 without a host; `port` nowhere): the series shows
    // failures appearing and going, not only plans.
    assert_eq!(unreadable, 2);
}
