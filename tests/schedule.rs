//! `gantry schedule` (issue #15, "when will my tenant be upgraded?"): projected starts through
//! windows, waves, soaks and approvals, exact to the second with `--now`, across the autumn
//! daylight-saving change of the window's time zone. Real binary, real repositories.

mod common;

use common::{Repo, component, release, target};
use serde_json::Value;

/// Europe/Berlin leaves summer time on Sunday 2026-10-25 at 03:00 CEST (01:00 UTC).
const SATURDAY: &str = "2026-10-24T10:00:00Z";

/// billing 1.0.0 for four targets: `a` (canary, eu), `b` (eu), `c` (us: no window) under a
/// staged policy (canary soaks 24 h), and `d` under a policy that wants one approval. The eu
/// window allows 01:00–03:00 Berlin time every day.
fn fleet() -> Repo {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file("releases/billing.yaml", &release("billing", "1.0.0", ""))
        .file(
            "windows/eu.yaml",
            "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: eu-nights }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  allow:\n    - { days: [mon, tue, wed, thu, fri, sat, sun], start: \"01:00\", end: \"03:00\" }\n",
        )
        .file(
            "policies/staged.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: staged }\nspec:\n  selector: { env: prod }\n  rollout:\n    waves:\n      - { name: canary, selector: { ring: \"0\" }, soak: 24h }\n      - { name: rest, percent: 100 }\n",
        )
        .file(
            "policies/gated.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: gated }\nspec:\n  selector: { env: gated }\n  updates:\n    major: { approvals: 1 }\n",
        )
        .file("targets/a.yaml", &target("a", "billing", "1.0.0", "env: prod, ring: \"0\", region: eu"))
        .file("targets/b.yaml", &target("b", "billing", "1.0.0", "env: prod, ring: \"1\", region: eu"))
        .file("targets/c.yaml", &target("c", "billing", "1.0.0", "env: prod, ring: \"1\", region: us"))
        .file("targets/d.yaml", &target("d", "billing", "1.0.0", "env: gated, region: us"));
    repo.commit_all("fleet");
    repo
}

/// `gantry --now NOW ARGS… --format json`, expected to exit 0, parsed.
fn json(repo: &Repo, now: &str, args: &[&str]) -> Value {
    let mut argv = vec!["--now", now];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--format", "json"]);
    let out = repo.gantry(&argv).expect(0).stdout();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} is not JSON ({e}): {out}"))
}

fn schedule(repo: &Repo, now: &str) -> Value {
    json(repo, now, &["schedule"])
}

fn row<'a>(schedule: &'a Value, target: &str) -> &'a Value {
    schedule["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|r| r["target"] == target))
        .unwrap_or_else(|| panic!("no {target} in {schedule:#}"))
}

#[test]
fn schedule_projects_starts_through_windows_soaks_and_dst() {
    let repo = fleet();
    let s = schedule(&repo, SATURDAY);
    // The canary waits for the window: Sunday 01:00 CEST.
    assert_eq!(row(&s, "a")["projected_start"], "2026-10-24T23:00:00Z", "{s:#}");
    // The rest waits for the canary's 24 h soak; c has no window.
    assert_eq!(row(&s, "c")["projected_start"], "2026-10-25T23:00:00Z", "{s:#}");
    // b too, and then for its window: the soak ends at 00:00 CET (the clocks went back an
    // hour in between, so it is not 01:00 as it would be in summer time): 01:00 CET.
    assert_eq!(row(&s, "b")["projected_start"], "2026-10-26T00:00:00Z", "{s:#}");
    // d needs an approval: time alone does not start it, and the schedule says why.
    assert_eq!(row(&s, "d")["projected_start"], Value::Null, "{s:#}");
    assert_eq!(row(&s, "d")["held_by"][0]["kind"], "approval", "{s:#}");
    let rollout = s["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "staged")
        .unwrap_or_else(|| panic!("{s:#}"));
    assert_eq!(
        (rollout["done"].as_u64(), rollout["total"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(rollout["expected_completion"], "2026-10-26T00:00:00Z", "{s:#}");
    assert_eq!(rollout["waves"][0]["projected_completion"], "2026-10-24T23:00:00Z");
    assert_eq!(rollout["waves"][1]["projected_start"], "2026-10-25T23:00:00Z");

    // The plan's window blocker names b's next window; the schedule knows the soak is longer.
    let plan = json(&repo, SATURDAY, &["plan"]);
    let b = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["target"] == "b")
        .unwrap();
    assert!(b.to_string().contains("2026-10-25T01:00:00+02:00"), "{b}");
}

/// After the canary really ran, the projection starts from what is recorded: the soak counts
/// from the canary's recorded completion, and progress says 1 of 3.
#[test]
fn schedule_after_the_canary_counts_its_soak_from_the_record() {
    let repo = fleet();
    repo.gantry(&["--now", "2026-10-24T23:30:00Z", "apply"]).expect(0);
    let s = schedule(&repo, "2026-10-25T12:00:00Z");
    assert_eq!(row(&s, "a")["action"], "noop", "{s:#}");
    assert_eq!(row(&s, "a")["projected_start"], Value::Null);
    assert_eq!(row(&s, "c")["projected_start"], "2026-10-25T23:30:00Z", "{s:#}");
    assert_eq!(row(&s, "b")["projected_start"], "2026-10-26T00:00:00Z", "{s:#}");
    let rollout = s["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "staged")
        .unwrap_or_else(|| panic!("{s:#}"));
    assert_eq!(
        (rollout["done"].as_u64(), rollout["total"].as_u64()),
        (Some(1), Some(3)),
        "{s:#}"
    );
    assert_eq!(rollout["expected_completion"], "2026-10-26T00:00:00Z", "{s:#}");

    let text = repo
        .gantry(&["--now", "2026-10-25T12:00:00Z", "schedule", "--selector", "region=eu"])
        .expect(0)
        .stdout();
    insta::assert_snapshot!("schedule_text_eu", text.lines().skip(1).collect::<Vec<_>>().join("\n"));
}

/// A later stage (`after: { policy: staged, soak: 2h }`) is projected from the projected end of
/// the stage before it, and an approval, once given, lets the approval-held target be projected.
#[test]
fn schedule_follows_after_stages_and_approvals() {
    let repo = fleet();
    repo.file(
        "policies/late.yaml",
        "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: late }\nspec:\n  selector: { env: late }\n  after: { policy: staged, soak: 2h }\n",
    )
    .file("targets/e.yaml", &target("e", "billing", "1.0.0", "env: late, region: us"))
    .file(
        "approvals/billing-1.0.0.yaml",
        "apiVersion: gantry.dev/v1\nkind: Approval\nmetadata: { name: billing-1.0.0-gated }\nspec: { component: billing, version: 1.0.0, selector: { env: gated }, approvedBy: [carol@example.com] }\n",
    );
    repo.commit_all("a later stage, and d approved");
    let s = schedule(&repo, SATURDAY);
    // Every staged target converged at 2026-10-26T00:00:00Z (b), then 2 h.
    assert_eq!(row(&s, "e")["projected_start"], "2026-10-26T02:00:00Z", "{s:#}");
    assert_eq!(row(&s, "d")["projected_start"], SATURDAY, "{s:#}");
    let text = repo.gantry(&["--now", SATURDAY, "schedule"]).expect(0).stdout();
    assert!(text.contains(&format!("{SATURDAY} (now)")), "{text}");
}

/// What time does not lift is never projected, and the projection ends: a freeze of two years, a suspended target and a pin to a release that does not exist.
#[test]
fn schedule_leaves_unprojectable_targets_without_a_start_and_says_why() {
    let repo = fleet();
    repo.file(
        "windows/freeze.yaml",
        "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: long-freeze }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  deny:\n    - { from: \"2026-10-01T00:00\", to: \"2028-12-31T23:59\" }\n",
    )
    .file(
        "targets/c.yaml",
        &format!("{}  suspend: true\n", target("c", "billing", "1.0.0", "env: prod, ring: \"1\", region: us")),
    )
    .file("targets/f.yaml", &target("f", "billing", "9.9.9", "region: us"));
    repo.commit_all("freeze eu, suspend c, pin f to nothing");
    let s = schedule(&repo, SATURDAY);
    for name in ["a", "b", "c", "f"] {
        assert_eq!(row(&s, name)["projected_start"], Value::Null, "{name}: {s:#}");
    }
    // The planner itself calls windows that never open within its look-ahead a violation.
    assert!(
        row(&s, "a")["violations"][0]
            .as_str()
            .is_some_and(|v| v.contains("never open")),
        "{s:#}"
    );
    assert_eq!(row(&s, "c")["held_by"][0]["kind"], "suspended", "{s:#}");
    assert!(
        row(&s, "f")["violations"][0]
            .as_str()
            .is_some_and(|v| v.contains("9.9.9")),
        "{s:#}"
    );
    assert_eq!(s["horizon"], "2027-10-25T10:00:00Z");
    let text = repo.gantry(&["--now", SATURDAY, "schedule"]).expect(0).stdout();
    assert!(
        text.contains("never (violation)") && text.contains("held by suspended"),
        "{text}"
    );
}

/// Spring forward: Europe/Berlin skips 02:00–03:00 on Sunday 2027-03-28. A window opening at
/// 02:30 that night opens when the planner says it does (a nonexistent local time moves
/// forward to the end of the gap), and the waves after the canary's soak follow from it.
#[test]
fn schedule_agrees_with_the_planner_across_the_spring_gap() {
    let repo = fleet();
    repo.file(
        "windows/eu.yaml",
        "apiVersion: gantry.dev/v1\nkind: Window\nmetadata: { name: eu-nights }\nspec:\n  selector: { region: eu }\n  timezone: Europe/Berlin\n  allow:\n    - { days: [mon, tue, wed, thu, fri, sat, sun], start: \"02:30\", end: \"04:00\" }\n",
    );
    repo.commit_all("window at 02:30");
    let now = "2027-03-27T12:00:00Z";
    let s = schedule(&repo, now);
    let plan = json(&repo, now, &["plan"]);
    let a = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["target"] == "a")
        .unwrap();
    let opens: jiff::Timestamp = a["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "window")
        .and_then(|b| b["opens_at"].as_str())
        .unwrap_or_else(|| panic!("{a}"))
        .parse::<jiff::Timestamp>()
        .unwrap();
    // 02:30 does not exist that night: the window opens when the gap ends, 03:00 CEST (01:00 UTC).
    assert_eq!(opens.to_string(), "2027-03-28T01:00:00Z", "{a}");
    assert_eq!(row(&s, "a")["projected_start"], opens.to_string(), "{s:#}");
    // The soak ends 24 h later, 2027-03-29T01:00Z = 03:00 CEST, inside Monday's window.
    assert_eq!(row(&s, "b")["projected_start"], "2027-03-29T01:00:00Z", "{s:#}");
    assert_eq!(row(&s, "c")["projected_start"], "2027-03-29T01:00:00Z", "{s:#}");
}

/// `status --format json` (and so `/api/status`) carries the same projection as `schedule`.
#[test]
fn status_json_carries_the_schedule() {
    let repo = fleet();
    let mut s = schedule(&repo, SATURDAY);
    s.as_object_mut().unwrap().remove("desired_commit");
    let status = json(&repo, SATURDAY, &["status"]);
    assert_eq!(status["schedule"], s);
    // With a selector, only the selected targets (and their rollouts) are kept.
    let eu = json(&repo, SATURDAY, &["status", "--selector", "region=eu"]);
    let names: Vec<&str> = eu["schedule"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "{eu:#}");
}

/// `upgrade_scheduled` (issue #15: a week, a day and an hour ahead) from `apply`: each webhook
/// at its own lead times, each notice once, only the shortest of the lead times already due.
#[test]
fn upgrade_scheduled_is_sent_once_at_each_webhooks_lead_times() {
    let default_leads = common::Hooks::start();
    let two_hours = common::Hooks::start();
    let repo = fleet();
    repo.file(
        "gantry.toml",
        &format!(
            "desired_branch = \"main\"\n\n\
             [[notify]]\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"upgrade_scheduled\"]\n\n\
             [[notify]]\nurl = \"http://127.0.0.1:{}/hook\"\nevents = [\"upgrade_scheduled\"]\nlead_times = [\"2h\"]\n",
            default_leads.port, two_hours.port
        ),
    );
    repo.commit_all("notify schedules");
    let notices = |hooks: &common::Hooks| -> Vec<String> {
        let mut seen: Vec<String> = hooks
            .bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b["event"] == "upgrade_scheduled")
            .map(|b| {
                format!(
                    "{} {} {}",
                    b["target"].as_str().unwrap(),
                    b["lead"].as_str().unwrap(),
                    b["projected_start"].as_str().unwrap()
                )
            })
            .collect();
        seen.sort();
        seen
    };
    // a starts at 23:00Z (13 h): the day notice; b and c (37–38 h): the week notice.
    repo.gantry(&["--now", SATURDAY, "apply"]).expect(0);
    let first = vec![
        "a 24h 2026-10-24T23:00:00Z".to_string(),
        "b 7d 2026-10-26T00:00:00Z".to_string(),
        "c 7d 2026-10-25T23:00:00Z".to_string(),
    ];
    assert_eq!(notices(&default_leads), first);
    assert_eq!(notices(&two_hours), Vec::<String>::new(), "2 h ahead is not yet");
    let body = default_leads.event("upgrade_scheduled").unwrap();
    assert_eq!(body["action"], "install", "{body}");
    assert!(body["text"].as_str().unwrap().contains("projected to start"), "{body}");

    // The same instant again: nothing is sent twice.
    repo.gantry(&["--now", SATURDAY, "apply"]).expect(0);
    assert_eq!(notices(&default_leads), first);

    // An hour before a's start: the hour notice, and the 2 h webhook's only notice for a.
    repo.gantry(&["--now", "2026-10-24T22:00:00Z", "apply"]).expect(0);
    let mut second = first.clone();
    second.push("a 1h 2026-10-24T23:00:00Z".to_string());
    second.sort();
    assert_eq!(notices(&default_leads), second);
    assert_eq!(notices(&two_hours), ["a 2h 2026-10-24T23:00:00Z"]);
    assert!(
        std::fs::read_to_string(repo.path().join(".git/gantry/announced-schedules"))
            .unwrap()
            .contains("1h a 1.0.0 http://127.0.0.1:"),
        "remembered across processes"
    );
}

/// A lead time that is not a duration is refused by `validate`, naming gantry.toml's line.
#[test]
fn a_bad_lead_time_is_refused_with_its_line() {
    let repo = fleet();
    repo.file(
        "gantry.toml",
        "desired_branch = \"main\"\n\n[[notify]]\nurl = \"http://127.0.0.1:9/hook\"\nlead_times = [\"1h\", \"soon\"]\n",
    );
    repo.commit_all("bad lead time");
    let out = repo.gantry(&["validate"]).expect(1);
    let text = out.stdout() + &out.stderr();
    assert!(
        text.contains("gantry.toml:5:") && text.contains("notify.lead_times"),
        "{text}"
    );
}

/// A daemon at a fixed `--now` in Berlin time, serving the fleet's pages; killed on drop.
struct PageDaemon {
    child: std::process::Child,
    addr: String,
}

impl PageDaemon {
    fn start(repo: &Repo, now: &str) -> PageDaemon {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("gantry"));
        command
            .arg("--repo")
            .arg(repo.path())
            .args(["--now", now, "daemon", "--listen", "127.0.0.1:0"])
            .env("TZ", "Europe/Berlin")
            .env_remove("GANTRY_NOW");
        let (child, addr, _stderr) = common::spawn_daemon(command);
        PageDaemon { child, addr }
    }

    fn get(&self, path: &str) -> (u16, String) {
        common::http_request("GET", &self.addr, path, &[], "")
    }
}

impl Drop for PageDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fleet page draws the schedule as a timeline (server-rendered SVG, no script): a row per
/// wave, the canary's window and soak, a mark per projected start, the now-line, times as Berlin
/// local time with "in …"; `?group=region` splits rows by label.
#[test]
fn the_status_page_draws_the_schedule_timeline_in_local_time() {
    let repo = fleet();
    let daemon = PageDaemon::start(&repo, SATURDAY);
    let (code, html) = daemon.get("/");
    assert_eq!(code, 200, "{html}");
    assert!(!html.contains("<script"), "no JavaScript");
    let svg = html
        .split("<svg class=\"timeline\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap_or_else(|| panic!("no timeline: {html}"));
    assert!(svg.contains("data-label=\"billing 1.0.0 · canary\""), "{svg}");
    assert!(svg.contains("data-label=\"billing 1.0.0 · rest\""), "{svg}");
    assert!(svg.contains("a: starts 2026-10-25 01:00:00 CEST (in 13 h)"), "{svg}");
    assert!(svg.contains("b: starts 2026-10-26 01:00:00 CET (in 1 d 14 h)"), "{svg}");
    assert!(svg.contains("class=\"soak\""), "the canary's 24 h soak: {svg}");
    assert!(svg.contains("class=\"open\""), "eu-nights is shaded: {svg}");
    assert!(
        svg.contains("class=\"now\"") && svg.contains("now 2026-10-24 12:00:00 CEST"),
        "{svg}"
    );
    // Instants on the page are local time to the second with how far away, never nanoseconds.
    assert!(html.contains("now 2026-10-24 12:00:00 CEST"), "{html}");
    assert!(
        html.contains("<td>2026-10-25 01:00:00 CEST (in 13 h)</td>"),
        "projected start column: {html}"
    );
    // minijinja escapes `/` in attributes as `&#x2f;`; a browser reads it back as `/`.
    assert!(html.contains("<a href=\"&#x2f;targets&#x2f;a\">a</a>"), "{html}");

    let (_, grouped) = daemon.get("/?group=region");
    assert!(
        grouped.contains("data-label=\"billing 1.0.0 · rest · region=eu\""),
        "{grouped}"
    );
    assert!(
        grouped.contains("data-label=\"billing 1.0.0 · rest · region=us\""),
        "{grouped}"
    );
}

/// The per-label view a customer-facing page embeds: only that tenant's targets and schedule,
/// nothing of others (no other target, no commit, no daemon state), 404 for an unknown value;
/// checked in headless Chromium as a browser renders it.
#[test]
fn a_label_view_shows_one_tenant_and_nothing_else() {
    let repo = fleet();
    let daemon = PageDaemon::start(&repo, SATURDAY);
    let (code, html) = daemon.get("/view/region/eu");
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("<h1 id=\"view-title\">region=eu</h1>"), "{html}");
    for name in ["<td>a</td>", "<td>b</td>"] {
        assert!(html.contains(name), "{name}: {html}");
    }
    for other in ["<td>c</td>", "<td>d</td>", "c: starts", "gated"] {
        assert!(!html.contains(other), "{other} leaked into the eu view: {html}");
    }
    let head = repo.git.head().unwrap().peel_to_commit().unwrap().id().to_string();
    assert!(!html.contains(&head[..12]), "no commit on a customer view");
    assert!(!html.contains("href="), "no links out of the view: {html}");
    assert_eq!(daemon.get("/view/region/mars").0, 404);
    // What holds a target is said by kind only: reasons may name approvers or other targets.
    let (_, us) = daemon.get("/view/region/us");
    assert!(us.contains("held by approval"), "{us}");
    assert!(!us.contains("still needed"), "no reason text: {us}");
    assert_eq!(daemon.get("/targets/a").0, 200);
    assert_eq!(daemon.get("/targets/zzz").0, 404);

    let Some(chromium) = common::chromium("a_label_view_shows_one_tenant_and_nothing_else") else {
        return;
    };
    let out = common::run_chromium(
        &chromium,
        &format!("http://{}/view/region/eu", daemon.addr),
        &["--dump-dom"],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let svg = dom
        .split("<svg")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap_or_else(|| panic!("no timeline in the DOM:\n{dom}"));
    assert_eq!(svg.matches("<circle class=\"start\"").count(), 2, "a and b: {svg}");
    let table = dom
        .split("<table id=\"targets\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("no targets table in the DOM:\n{dom}"));
    assert_eq!(table.matches("<tr>").count() - 1, 2, "{table}");
}

/// A target's page: its rollback points and its history with the new fields, newest first.
#[test]
fn a_target_page_shows_versions_and_history() {
    let repo = fleet();
    repo.gantry(&["--now", "2026-10-24T23:30:00Z", "apply"]).expect(0);
    let daemon = PageDaemon::start(&repo, "2026-10-25T12:00:00Z");
    let (code, html) = daemon.get("/targets/a");
    assert_eq!(code, 200, "{html}");
    assert!(html.contains("<h1 id=\"target\">a</h1>"), "{html}");
    let history = html
        .split("<table id=\"history\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_else(|| panic!("{html}"));
    assert!(
        history.contains("2026-10-25 01:30:00 CEST (12 h 30 min ago)"),
        "{history}"
    );
    assert!(history.contains("<td>install</td><td>1.0.0</td>"), "{history}");
    assert!(history.contains("succeeded"), "{history}");
    let releases = html.split("<table id=\"releases\">").nth(1).unwrap_or_default();
    assert!(releases.contains("<td>1.0.0</td>"), "{releases}");
}
