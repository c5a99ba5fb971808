//! Hard limits on what a manifest or a step controls (issue #12): hostile templates, step
//! output, and templates that cannot render for some target. Each test runs the real binary
//! under `ulimit -v`, as the bad-input corpus does, so a blow-up fails the test instead of
//! swapping.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Repo, component, git_cli, release, target};

/// Virtual memory bound (KiB) for one gantry run: the 1 GiB strings of the bombs below cannot
/// fit, so passing means they were never built in gantry's own process.
const MEMORY_LIMIT_KIB: u64 = 1_500_000;

/// Runs gantry under `ulimit -v`; returns its output.
fn gantry_bounded(repo: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KIB}; exec \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("gantry"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("GANTRY_NOW")
        .stdin(Stdio::null())
        .output()
        .expect("run gantry")
}

/// Thirty doublings of a 16-byte string: 16 GiB if it were ever built.
fn doubling_bomb() -> String {
    let mut t = String::from("{% set a = \"xxxxxxxxxxxxxxxx\" %}");
    for _ in 0..30 {
        t.push_str("{% set a = a ~ a %}");
    }
    t.push_str("{{ a }}");
    t
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A fleet whose deploy step runs `scripts/deploy.sh`, which leaves a marker per target.
fn fleet_with_argv(extra_argv: &str) -> Repo {
    let repo = Repo::new();
    repo.file(
        "components/web.yaml",
        &format!(
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: web }}\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{{{ target.name }}}}\", {extra_argv}]\n"
        ),
    )
    .file("releases/web.yaml", &release("web", "1.0.0", ""))
    .file(
        "targets/a.yaml",
        &format!("{}  vars: {{ host: a.example }}\n", target("a", "web", "1.0.0", "env: prod")),
    )
    .file("targets/b.yaml", &target("b", "web", "1.0.0", "env: prod"))
    .file(
        "scripts/deploy.sh",
        &format!("#!/bin/sh\ntouch \"{}/ran-$1\"\n", repo.path().display()),
    );
    repo.commit_all("fleet");
    repo
}

fn ran_anything(repo: &Repo) -> bool {
    std::fs::read_dir(repo.path())
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("ran-"))
}

/// Regression (issue #12 item 1): a template memory bomb in an argv passed `validate`, then
/// `apply` aborted with "memory allocation of 1073741840 bytes failed" (exit 134) on every pass.
#[test]
fn template_memory_bomb_in_argv_is_rejected_by_validate_and_apply_without_crashing() {
    let repo = fleet_with_argv(&json_string(&doubling_bomb()));
    for command in ["validate", "apply"] {
        let out = gantry_bounded(repo.path(), &[command]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains("components/web.yaml:6:")
                && stderr.contains("needs more than 256 MiB of memory (the limit for this kind of template)"),
            "{command}: {stderr}"
        );
        assert!(!stderr.contains("memory allocation"), "{stderr}");
    }
    assert!(!ran_anything(&repo), "nothing may run from an invalid commit");
}

/// Regression (issue #12 item 1): a pull request's `templates/plan.markdown.j2` drove
/// `gantry plan` to 1.6 GiB.
#[test]
fn plan_template_memory_bomb_fails_plan_with_the_limit() {
    let repo = fleet_with_argv("\"--host={{ target.name }}\"");
    repo.file("templates/plan.markdown.j2", &doubling_bomb());
    repo.commit_all("hostile plan template");
    let out = gantry_bounded(repo.path(), &["plan", "--format", "markdown"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("templates/plan.markdown.j2: template needs more than 1 GiB of memory"),
        "{stderr}"
    );
}

/// An argv element longer than Linux accepts (128 KiB, `MAX_ARG_STRLEN`) is a template error,
/// named at its file and line, not an exec failure halfway through a rollout.
#[test]
fn template_output_over_the_argv_limit_is_rejected_by_validate() {
    let repo = fleet_with_argv(&json_string(
        "{% for c in target.name * 3000 %}{{ 'y' * 100 }}{% endfor %}",
    ));
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("template output exceeds 128 KiB"), "{stderr}");
}

/// Regression (issue #12 item 7): `validate` and `plan` passed a step referring to
/// `target.vars.host`, which target `b` lacks; `apply` installed `a` and failed on `b`.
#[test]
fn undefined_target_var_is_reported_at_the_template_before_anything_runs() {
    let repo = fleet_with_argv("\"--host={{ target.vars.host }}\"");
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("components/web.yaml:6:")
            && stderr.contains("does not render for target `b`")
            && stderr.contains("target.vars.host"),
        "{stderr}"
    );
    let out = gantry_bounded(repo.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        !ran_anything(&repo),
        "target `a` must not be installed from a commit `b` cannot render"
    );

    // With the var on every target, the same template renders and both targets install.
    repo.file(
        "targets/b.yaml",
        &format!(
            "{}  vars: {{ host: b.example }}\n",
            target("b", "web", "1.0.0", "env: prod")
        ),
    );
    repo.commit_all("b gets a host");
    let out = gantry_bounded(repo.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(repo.path().join("ran-a").exists() && repo.path().join("ran-b").exists());
}

/// A migration template is rendered against the targets of its component too, and reported at
/// the release manifest.
#[test]
fn undefined_var_in_a_migration_is_reported_at_the_release() {
    let repo = Repo::new();
    repo.file("components/web.yaml", &component("web", ""))
        .file(
            "releases/web.yaml",
            &release(
                "web",
                "1.0.0",
                "  migrations:\n    - id: m1\n      up: [\"scripts/m.sh\", \"{{ target.vars.db }}\"]\n",
            ),
        )
        .file("targets/a.yaml", &target("a", "web", "1.0.0", "env: prod"))
        .file("scripts/deploy.sh", "#!/bin/sh\n")
        .file("scripts/m.sh", "#!/bin/sh\n");
    repo.commit_all("fleet");
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("releases/web.yaml:") && stderr.contains("target.vars.db"),
        "{stderr}"
    );
}

/// Runs gantry and samples its peak resident set (VmHWM, KiB) until it exits. Only gantry's
/// own process is measured, not the steps it runs.
fn peak_rss_kib(repo: &Path, args: &[&str]) -> (Output, u64) {
    let child = Command::new(assert_cmd::cargo::cargo_bin("gantry"))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("GANTRY_NOW")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gantry");
    let status = format!("/proc/{}/status", child.id());
    let sampler = std::thread::spawn(move || {
        let mut peak = 0;
        while let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
            if text.contains("State:\tZ") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        peak
    });
    let output = child.wait_with_output().expect("wait gantry");
    (output, sampler.join().expect("sampler"))
}

/// Regression (issue #12 item 2): a step printing 1 GiB with `[secrets]` set drove gantry to
/// 2 GiB RSS (redaction read the whole log) and left a 1 GiB log. Here a step prints 1 GiB
/// with a secret in every line: gantry's peak RSS stays far below the output's size, the log
/// keeps the configured head and tail with the secret redacted, and the middle is counted.
#[test]
fn huge_step_output_keeps_gantry_small_and_the_log_bounded_and_redacted() {
    const SECRET: &str = "tok-9f8e7d6c5b4a";
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "[secrets]\nvars = [\"token\"]\n\n[logs]\nmax_step_bytes = 1048576\n",
    )
    .file("components/web.yaml", &component("web", ""))
    .file("releases/web.yaml", &release("web", "1.0.0", ""))
    .file(
        "targets/a.yaml",
        &format!(
            "{}  vars: {{ token: \"{SECRET}\" }}\n",
            target("a", "web", "1.0.0", "env: prod")
        ),
    )
    .file(
        "scripts/deploy.sh",
        &format!("#!/bin/sh\nyes 'output line with {SECRET} in it' | head -c 1073741824\necho last line {SECRET}\n"),
    );
    repo.commit_all("chatty step");
    let (out, peak_kib) = peak_rss_kib(repo.path(), &["apply"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("gantry peak RSS for 1 GiB of step output: {peak_kib} KiB");
    assert!(peak_kib > 0, "could not sample gantry's RSS");
    assert!(
        peak_kib < 96 * 1024,
        "gantry peaked at {peak_kib} KiB for 1 GiB of step output"
    );

    let logs: Vec<_> = std::fs::read_dir(repo.path().join(".git/gantry/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read(&logs[0]).unwrap();
    assert!(log.len() < (1 << 20) + 4096, "log is {} bytes", log.len());
    let text = String::from_utf8_lossy(&log);
    assert!(!text.contains(SECRET), "secret in the log");
    assert!(text.contains("output line with *** in it"), "head missing");
    assert!(text.contains("last line ***"), "tail missing");
    assert!(text.contains("bytes of output omitted here"), "no omission marker");
}

/// `[logs]` is checked: a budget the repository could use to make gantry hold gigabytes in
/// memory is refused with the field's line.
#[test]
fn log_budget_over_the_ceiling_is_invalid() {
    let repo = fleet_with_argv("\"x\"");
    repo.file("gantry.toml", "[logs]\nmax_step_bytes = 4294967296\n");
    repo.commit_all("huge log budget");
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gantry.toml:2:") && stderr.contains("max_step_bytes"),
        "{stderr}"
    );
}

/// About 4.4 MiB of OpenAPI-like YAML that never mentions gantry's API.
fn openapi_yaml(marker: &str) -> String {
    let mut text = String::from("openapi: 3.0.0\ninfo: { title: shop, version: 1.0.0 }\npaths:\n");
    let mut i = 0;
    while text.len() < 4_400_000 {
        text.push_str(&format!(
            "  /items/{i}:\n    get:\n      summary: item number {i}\n      responses: {{ \"200\": {{ description: ok }} }}\n"
        ));
        i += 1;
    }
    text.push_str(marker);
    text
}

/// Regression (issue #12 item 6): an unrelated 4.4 MiB YAML file (an OpenAPI spec) made the
/// whole commit invalid ("larger than the 4194304 byte limit for a manifest"), though SPEC §2
/// says files without `apiVersion: gantry.dev/…` are ignored.
#[test]
fn a_large_unrelated_yaml_file_is_ignored_not_fatal() {
    let repo = fleet_with_argv("\"--host={{ target.name }}\"");
    repo.file("api/openapi.yaml", &openapi_yaml(""));
    repo.commit_all("add the shop's API spec");
    let started = std::time::Instant::now();
    let out = gantry_bounded(repo.path(), &["validate"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("openapi.yaml"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(5), "validate took {took:?}");

    // The same file declaring gantry's API is a manifest over the limit: still refused.
    repo.file("api/openapi.yaml", &openapi_yaml("---\napiVersion: gantry.dev/v1\n"));
    repo.commit_all("now it claims to be ours");
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("api/openapi.yaml") && stderr.contains("larger than the 4194304 byte limit"),
        "{stderr}"
    );

    // Packed, both files are read whole (libgit2 cannot stream a packed object) and judged the
    // same way: the marked one is still refused, the unmarked one still ignored.
    git_cli(&repo, &["repack", "-adq"]);
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "packed: {stderr}");
    assert!(
        stderr.contains("api/openapi.yaml") && stderr.contains("larger than the 4194304 byte limit"),
        "packed: {stderr}"
    );
    repo.file("api/openapi.yaml", &openapi_yaml(""));
    repo.commit_all("back to the packed unrelated spec");
    let out = gantry_bounded(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "packed: {stderr}");
    assert!(!stderr.contains("openapi.yaml"), "packed: {stderr}");
}

/// A large file that is not a manifest is judged from a stream when it is a loose object (as a
/// local commit leaves it): gantry never holds it whole. 192 MiB of YAML that mentions gantry's
/// API only at its end: validate refuses it as a manifest over the limit, with a peak RSS far
/// below the file's size.
#[test]
fn a_huge_loose_file_is_judged_without_being_loaded() {
    let repo = fleet_with_argv("\"--host={{ target.name }}\"");
    let line = "- { name: filler, note: this file is large but not a manifest }\n";
    let mut text = line.repeat((192 << 20) / line.len());
    text.push_str("---\napiVersion: gantry.dev/v1\n");
    repo.file("data/huge.yaml", &text);
    drop(text);
    repo.commit_all("a huge loose file");
    let (out, peak_kib) = peak_rss_kib(repo.path(), &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("gantry peak RSS judging a 192 MiB loose file: {peak_kib} KiB");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("data/huge.yaml") && stderr.contains("larger than the 4194304 byte limit"),
        "{stderr}"
    );
    assert!(peak_kib > 0, "could not sample gantry's RSS");
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB: the file was loaded");
}

/// `[housekeeping]` durations go through the manifest duration grammar, and the interval must
/// be longer than 0 (a zero interval would housekeep after every pass).
#[test]
fn housekeeping_settings_are_validated_with_their_field_named() {
    for (toml, want) in [
        (
            "[housekeeping]\ninterval = \"0s\"\n",
            "housekeeping.interval: must be longer than 0",
        ),
        (
            "[housekeeping]\nprune_after = \"soon\"\n",
            "housekeeping.prune_after: \"soon\" is not a valid duration",
        ),
    ] {
        let repo = Repo::new();
        repo.file("gantry.toml", toml)
            .file("components/web.yaml", &component("web", ""))
            .file("releases/web.yaml", &release("web", "1.0.0", ""))
            .file("targets/a.yaml", &target("a", "web", "1.0.0", "env: test"));
        repo.commit_all("config");
        let run = repo.gantry(&["validate"]).expect(1);
        assert!(
            run.stderr().contains(want) || run.stdout().contains(want),
            "{}{}",
            run.stdout(),
            run.stderr()
        );
    }
    let repo = Repo::new();
    repo.file(
        "gantry.toml",
        "[housekeeping]\ninterval = \"30m\"\nprune_after = \"7d\"\n",
    )
    .file("components/web.yaml", &component("web", ""))
    .file("releases/web.yaml", &release("web", "1.0.0", ""))
    .file("targets/a.yaml", &target("a", "web", "1.0.0", "env: test"));
    repo.commit_all("config");
    repo.gantry(&["validate"]).expect(0);
}
