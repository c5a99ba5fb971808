//! `gantry versions TARGET` and `GET /api/versions/<target>` (issue #15): the releases a target
//! may take, the version it runs and its rollback points. Real binary, real repositories, a real
//! daemon on 127.0.0.1.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Repo, component, release, target};

const NOW: &str = "2026-11-21T10:00:00Z";

/// billing with a deprecated, a yanked, a breaking and a beta release; acme installed at 1.0.0,
/// then upgraded by its requirement `^1` (to 1.3.0), so 1.0.0 is its rollback point.
fn fleet() -> Repo {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file("releases/billing-1.0.0.yaml", &release("billing", "1.0.0", ""))
        .file(
            "releases/billing-1.1.0.yaml",
            &release("billing", "1.1.0", "  deprecated: use 1.3.x\n"),
        )
        .file(
            "releases/billing-1.2.0.yaml",
            &release("billing", "1.2.0", "  yanked: true\n"),
        )
        .file("releases/billing-1.3.0.yaml", &release("billing", "1.3.0", ""))
        .file(
            "releases/billing-1.4.0-beta.1.yaml",
            &release("billing", "1.4.0-beta.1", ""),
        )
        .file(
            "releases/billing-2.0.0.yaml",
            &release("billing", "2.0.0", "  breaking: true\n"),
        )
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"));
    repo.commit_all("fleet at 1.0.0");
    repo.gantry(&["--now", NOW, "apply"]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "^1", "env: prod"));
    repo.commit_all("acme follows ^1");
    repo.gantry(&["--now", NOW, "apply"]).expect(0);
    repo
}

#[test]
fn versions_lists_releases_with_flags_and_rollback_points() {
    let repo = fleet();
    let text = repo.gantry(&["--now", NOW, "versions", "acme"]).expect(0).stdout();
    insta::assert_snapshot!("versions_text", text);

    let json: serde_json::Value = serde_json::from_str(
        &repo
            .gantry(&["--now", NOW, "versions", "acme", "--format", "json"])
            .expect(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(json["current"], "1.3.0", "{json}");
    assert_eq!(json["desired"], "1.3.0");
    assert_eq!(json["wanted"], "^1");
    assert_eq!(json["status"], "converged");
    assert_eq!(
        json["rollback_points"],
        serde_json::json!([{ "version": "1.0.0", "released": true, "yanked": false }])
    );
    let releases = json["releases"].as_array().unwrap();
    let by_version = |v: &str| {
        releases
            .iter()
            .find(|r| r["version"] == v)
            .unwrap_or_else(|| panic!("{v}: {json}"))
    };
    let versions: Vec<&str> = releases.iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(
        versions,
        ["2.0.0", "1.4.0-beta.1", "1.3.0", "1.2.0", "1.1.0", "1.0.0"],
        "newest first"
    );
    let allowed: Vec<&str> = releases
        .iter()
        .filter(|r| r["allowed"] == true)
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["1.3.0", "1.1.0", "1.0.0"]);
    assert_eq!(by_version("1.2.0")["yanked"], true);
    assert_eq!(by_version("1.1.0")["deprecated"], "use 1.3.x");
    assert_eq!(by_version("2.0.0")["breaking"], true);
    assert_eq!(by_version("2.0.0")["matches_version"], false);
    assert_eq!(by_version("1.4.0-beta.1")["channel"], "beta");
    assert_eq!(by_version("1.4.0-beta.1")["channel_allowed"], false);
    assert_eq!(by_version("1.4.0-beta.1")["matches_version"], true);
}

/// An unknown target is a usage error (SPEC §6 exit 1) that names it and says where to look.
#[test]
fn versions_of_an_unknown_target_is_exit_1_naming_it() {
    let repo = fleet();
    let run = repo.gantry(&["versions", "nobody"]).expect(1);
    assert!(
        run.stderr()
            .contains("unknown target `nobody`: not in the desired state at"),
        "{}",
        run.stderr()
    );
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    repo.gantry(&["versions", "acme", "--format", "yaml"]).expect(2);
}

fn get(url: &str, host: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(host) = host {
        request = request.header("Host", host);
    }
    let mut response = request.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (
        response.status().as_u16(),
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// `GET /api/versions/<target>` is the CLI's JSON; an unknown target is 404; the route is behind
/// the same Host guard as the other API routes (421 for a rebinding name).
#[test]
fn api_versions_matches_the_cli_and_is_guarded() {
    let repo = fleet();
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("gantry"));
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["--now", NOW, "daemon", "--listen", "127.0.0.1:0"])
        .env_remove("GANTRY_NOW");
    let (mut child, addr, _stderr) = common::spawn_daemon(command);
    let url = format!("http://{addr}/api/versions/acme");
    let (code, body) = get(&url, None);
    let cli = repo
        .gantry(&["--now", NOW, "versions", "acme", "--format", "json"])
        .expect(0)
        .stdout();
    let (api, cli): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&body).unwrap(),
        serde_json::from_str(&cli).unwrap(),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(api, cli);
    let (code, body) = get(&format!("http://{addr}/api/versions/nobody"), None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("unknown target `nobody`"), "{body}");
    let (code, _) = get(&url, Some("rebind.example"));
    assert_eq!(code, 421);
    let _ = child.kill();
    let _ = child.wait();
}

/// What the governing policy refuses: a denied release and one too new for `minReleaseAge`
/// (with the instant it becomes eligible), for a requirement and for a pin alike.
#[test]
fn versions_shows_policy_denials_and_release_age() {
    let repo = Repo::new();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file("scripts/deploy.sh", "#!/bin/sh\nexit 0\n")
        .file(
            "policies/prod.yaml",
            "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: prod }\nspec:\n  deny: [\"1.1.0\"]\n  updates:\n    major: { minReleaseAge: 7d }\n",
        )
        .file("releases/billing-1.0.0.yaml", &release("billing", "1.0.0", "  released: 2026-01-01\n"))
        .file("releases/billing-1.1.0.yaml", &release("billing", "1.1.0", "  released: 2026-01-01\n"))
        .file("releases/billing-1.2.0.yaml", &release("billing", "1.2.0", "  released: 2026-11-20\n"))
        .file("targets/acme.yaml", &target("acme", "billing", "^1", "env: prod"))
        .file("targets/zen.yaml", &target("zen", "billing", "1.2.0", "env: prod"));
    repo.commit_all("fleet");
    for (name, wanted_allowed) in [("acme", ["1.0.0"].as_slice()), ("zen", [].as_slice())] {
        let out = repo
            .gantry(&["--now", NOW, "versions", name, "--format", "json"])
            .expect(0)
            .stdout();
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["policy"], "prod", "{json}");
        let releases = json["releases"].as_array().unwrap();
        let allowed: Vec<&str> = releases
            .iter()
            .filter(|r| r["allowed"] == true)
            .map(|r| r["version"].as_str().unwrap())
            .collect();
        assert_eq!(allowed, wanted_allowed, "{name}: {json}");
        let denied = releases.iter().find(|r| r["version"] == "1.1.0").unwrap();
        assert_eq!(denied["denied"], "1.1.0", "{json}");
        let young = releases.iter().find(|r| r["version"] == "1.2.0").unwrap();
        assert_eq!(young["eligible_at"], "2026-11-27T00:00:00Z", "{name}: {json}");
        assert_eq!(young["allowed"], false, "{name}: {json}");
    }
    let text = repo.gantry(&["--now", NOW, "versions", "zen"]).expect(0).stdout();
    assert!(text.contains("too new until 2026-11-27T00:00:00Z"), "{text}");
    assert!(text.contains("denied by policy (1.1.0)"), "{text}");
}
