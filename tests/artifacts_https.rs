//! Issue #18: `url` artifacts over https, verified with the host's CAs. A real nginx on
//! 127.0.0.1 serves the artifact over TLS with a certificate from a CA this test makes; gantry
//! trusts it only through `SSL_CERT_FILE` (SPEC §8, Executors). The artifact is fetched once,
//! checked against its sha256, and the step gets the local file, never the URL.

mod common;

use std::path::Path;

use common::tls::{free_port, make_test_ca, nginx_conf_head, require, start_nginx};
use common::{Repo, Run};

/// nginx serving `dir/www` over TLS on 127.0.0.1, logging each request's path to
/// `dir/access.log`.
struct StaticHttps {
    _nginx: common::tls::Server,
    dir: tempfile::TempDir,
    port: u16,
}

impl StaticHttps {
    fn start() -> Option<StaticHttps> {
        let nginx = require(&["/usr/sbin/nginx"])?;
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        make_test_ca(d);
        for sub in ["tmp", "www"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let port = free_port();
        let conf = format!(
            "{head} log_format paths '$request_uri';\n access_log {d}/access.log paths;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {d}/server.crt;\n\
             ssl_certificate_key {d}/server.key;\n  root {d}/www;\n }}\n}}\n",
            head = nginx_conf_head(d),
            d = d.display(),
        );
        let nginx = start_nginx(&nginx, d, &conf, port);
        Some(StaticHttps {
            _nginx: nginx,
            dir,
            port,
        })
    }

    /// Publishes `body` as `/name`; returns its https URL.
    fn publish(&self, name: &str, body: &[u8]) -> String {
        std::fs::write(self.dir.path().join("www").join(name), body).unwrap();
        format!("https://127.0.0.1:{}/{name}", self.port)
    }

    /// How many requests asked for `/name`.
    fn requests(&self, name: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == format!("/{name}"))
            .count()
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }
}

fn sha256(bytes: &[u8]) -> String {
    common::sha256_hex(bytes)
}

/// Two targets of one release with one `url` artifact (see `common::url_artifact_fleet`).
fn fleet(url: &str, sha: &str) -> Repo {
    common::url_artifact_fleet(url, sha, &["acme", "zen"])
}

/// `gantry apply` with `SSL_CERT_FILE` set to `ca` (or unset).
fn apply(repo: &Repo, ca: Option<&Path>) -> Run {
    let mut command = assert_cmd::Command::cargo_bin("gantry").expect("binary");
    command
        .arg("--repo")
        .arg(repo.path())
        .args(["apply", "--format", "json"])
        .env_remove("GANTRY_NOW")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        command.env("SSL_CERT_FILE", ca);
    }
    Run {
        output: command.output().expect("run gantry"),
    }
}

fn read(repo: &Repo, file: &str) -> String {
    std::fs::read_to_string(repo.path().join(file)).unwrap_or_default()
}

/// The legitimate path: fetched over https once for both targets, verified, handed to the step
/// as the cached local file; the server's later answers are never asked for.
#[test]
fn an_https_artifact_is_fetched_once_verified_and_handed_over_as_a_local_file() {
    let Some(server) = StaticHttps::start() else { return };
    let body = b"billing 2.0.0 tarball\n";
    let url = server.publish("billing-2.0.0.tar", body);
    let repo = fleet(&url, &sha256(body));
    apply(&repo, Some(&server.ca())).expect(0);

    let cached = repo
        .path()
        .join(".git/gantry/artifacts")
        .join(sha256(body))
        .canonicalize()
        .unwrap();
    assert_eq!(read(&repo, "runs.log"), "billing 2.0.0 tarball\n".repeat(2));
    assert_eq!(
        read(&repo, "paths.log"),
        format!("{}\n", cached.display()).repeat(2),
        "the step gets the local file, not the URL"
    );
    // One request for both targets; the server now answers with other bytes, which nobody reads.
    assert_eq!(server.requests("billing-2.0.0.tar"), 1);
    server.publish("billing-2.0.0.tar", b"evil\n");
    assert_eq!(std::fs::read(&cached).unwrap(), body);
}

/// A download over https whose sha256 differs from the release's is refused: nothing ran, and
/// nothing is cached.
#[test]
fn an_https_artifact_with_the_wrong_sha256_is_refused() {
    let Some(server) = StaticHttps::start() else { return };
    let url = server.publish("billing-2.0.0.tar", b"tampered\n");
    let declared = sha256(b"what was reviewed\n");
    let repo = fleet(&url, &declared);
    let run = apply(&repo, Some(&server.ca())).expect(2);
    let out = run.stdout() + &run.stderr();
    assert!(
        out.contains(&format!(
            "artifact {url} of billing 2.0.0: sha256 is {}, the release declares {declared}",
            sha256(b"tampered\n")
        )),
        "{out}"
    );
    assert_eq!(read(&repo, "runs.log"), "", "no step ran");
    assert!(!repo.path().join(".git/gantry/artifacts").join(&declared).exists());
}

/// A server whose certificate the host does not trust is refused before anything is read, with
/// a message that names TLS verification and what to do.
#[test]
fn an_https_artifact_from_an_untrusted_server_is_refused() {
    let Some(server) = StaticHttps::start() else { return };
    let body = b"billing 2.0.0 tarball\n";
    let url = server.publish("billing-2.0.0.tar", body);
    let repo = fleet(&url, &sha256(body));
    let run = apply(&repo, None).expect(2);
    let out = run.stdout() + &run.stderr();
    assert!(
        out.contains(&format!("artifact {url}: TLS verification failed: ")),
        "{out}"
    );
    assert!(out.contains("point SSL_CERT_FILE at a PEM file holding it"), "{out}");
    assert_eq!(read(&repo, "runs.log"), "", "no step ran");
    assert_eq!(server.requests("billing-2.0.0.tar"), 0, "no request got through");
}
