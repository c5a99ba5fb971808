//! One fixture helper for integration tests: real temporary git repositories and the real binary.
#![allow(dead_code)] // each test file uses a different part of it

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// A temporary git repository built file by file, committed with git2.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub git: git2::Repository,
}

/// A finished command with helpers to read it.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// Asserts the exit code, printing both streams when it differs.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code(),
            code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

impl Repo {
    /// An empty repository on branch `main`.
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let git = git2::Repository::init_opts(dir.path(), &opts).expect("git init");
        Repo { dir, git }
    }

    /// A repository holding a copy of a directory of the project (e.g. `fixtures/good/multihop`).
    pub fn from_dir(relative: &str) -> Repo {
        let repo = Repo::new();
        let source = project_path(relative);
        copy_tree(&source, repo.path());
        repo.commit_all(&format!("fixture {relative}"));
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file in the work tree (not committed yet).
    pub fn file(&self, path: &str, content: &str) -> &Self {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(&full, content).expect("write");
        if path.ends_with(".sh") || path.ends_with(".py") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.path().join(path)).expect("remove");
        self
    }

    /// Commits the whole work tree on the current branch; returns the commit id.
    pub fn commit_all(&self, message: &str) -> String {
        let mut index = self.git.index().expect("index");
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
        index.update_all(["*"], None).expect("update");
        index.write().expect("write index");
        let tree = self
            .git
            .find_tree(index.write_tree().expect("tree"))
            .expect("find tree");
        // A fixed time makes commit ids, and so snapshots, reproducible.
        let count = self
            .git
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .map_or(0, |c| c.time().seconds() - 1_790_000_000 + 60);
        let sig =
            git2::Signature::new("Test", "test@example.com", &git2::Time::new(1_790_000_000 + count, 0)).expect("sig");
        let parents: Vec<git2::Commit> = self
            .git
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        self.git
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parent_refs)
            .expect("commit")
            .to_string()
    }

    /// Runs gantry with `--repo` set to this repository.
    pub fn gantry(&self, args: &[&str]) -> Run {
        let output = Command::cargo_bin("gantry")
            .expect("binary")
            .arg("--repo")
            .arg(self.path())
            .args(args)
            .env_remove("GANTRY_NOW")
            .output()
            .expect("run gantry");
        Run { output }
    }
}

/// A path inside the project.
pub fn project_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Copies a directory tree, keeping executable bits.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Minimal manifests for tests that build repositories inline.
pub fn component(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: {name} }}\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{{{ target.name }}}}\", \"{{{{ version }}}}\"]\n{extra}"
    )
}

pub fn release(component: &str, version: &str, extra: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: {component}-{version} }}\nspec:\n  component: {component}\n  version: {version}\n{extra}"
    )
}

/// One file of plain releases of `component`, one document per version.
pub fn releases(component: &str, versions: &[&str]) -> String {
    versions
        .iter()
        .map(|v| release(component, v, ""))
        .collect::<Vec<_>>()
        .join("---\n")
}

pub fn target(name: &str, component: &str, version: &str, labels: &str) -> String {
    format!(
        "apiVersion: gantry.dev/v1\nkind: Target\nmetadata:\n  name: {name}\n  labels: {{ {labels} }}\nspec:\n  component: {component}\n  version: \"{version}\"\n"
    )
}

/// Spawns a `gantry daemon --listen 127.0.0.1:0` command (built by the caller with its own
/// arguments and environment) and waits for its first stderr line, `listening on ADDR`.
/// Returns the child, that address, and the rest of its stderr as it arrives (drained on a
/// thread, so the daemon never blocks writing it).
pub fn spawn_daemon(
    mut command: std::process::Command,
) -> (std::process::Child, String, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start gantry daemon");
    let mut reader = BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    reader.read_line(&mut first).expect("read first line");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first stderr line is not `listening on ADDR`: {first:?}"))
        .to_string();
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = std::sync::Arc::clone(&stderr);
    std::thread::spawn(move || {
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (child, addr, stderr)
}

/// An ed25519 key pair made by ssh-keygen; returns (private key path, public key line).
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public.trim().to_string())
}

/// Runs the git CLI in the repository as "Test <test@example.com>" with `gpg.format = ssh`
/// (so `-S` signs with an SSH key); panics with its stderr when it fails, else returns stdout.
pub fn git_cli(repo: &Repo, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(repo.path())
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "gpg.format=ssh",
        ])
        .args(args)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The lowercase hex sha256 of `bytes`, as releases declare artifacts.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fleet whose release billing 2.0.0 has one `url` artifact declared with `sha`, and one
/// target per name at 2.0.0. The deploy step fails unless it got the same file as
/// `{{ artifact.path }}` and `GANTRY_ARTIFACT`, then appends that path to `paths.log` and the
/// file's content to `runs.log` in the work tree. Committed.
pub fn url_artifact_fleet(url: &str, sha: &str, targets: &[&str]) -> Repo {
    let repo = Repo::new();
    repo.file("gantry.toml", "[executors.local]\ntype = \"shell\"\n")
        .file(
            "components/billing.yaml",
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec:\n  steps:\n    deploy: [\"scripts/deploy.sh\", \"{{ artifact.path }}\"]\n",
        )
        .file(
            "releases/billing.yaml",
            &release(
                "billing",
                "2.0.0",
                &format!("  artifacts:\n    - url: {url}\n      sha256: {sha}\n"),
            ),
        )
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\n[ \"$1\" = \"$GANTRY_ARTIFACT\" ] || { echo \"argv $1 != env $GANTRY_ARTIFACT\"; exit 1; }\n\
             echo \"$1\" >> \"$GANTRY_REPO/paths.log\"\ncat \"$1\" >> \"$GANTRY_REPO/runs.log\"\n",
        )
        .file(".gitignore", "*.log\n");
    for name in targets {
        repo.file(
            &format!("targets/{name}.yaml"),
            &target(name, "billing", "2.0.0", "env: prod"),
        );
    }
    repo.commit_all("fleet");
    repo
}

/// Test CAs and real servers on 127.0.0.1 (nginx over TLS).
pub mod tls;

/// A minimal HTTP/1.1 request to `addr` (host:port): the status code and body, or `(0, "")` when
/// nothing answers (a daemon that was just killed); callers assert the code they expect.
pub fn http_request(method: &str, addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// acme installed at 1.0.0 (by `gantry apply`) and bumped to 1.1.0, whose deploy touches
/// `started` and then waits for a line on `release.fifo` (the running binary must set
/// `GANTRY_REPO_DIR` to the repository), so a test holds an attempt mid-step without sleeping.
pub fn bumped_fleet() -> Repo {
    let repo = Repo::new();
    let fifo = repo.path().join("release.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    repo.file("components/billing.yaml", &component("billing", ""))
        .file(
            "scripts/deploy.sh",
            "#!/bin/sh\n[ \"$2\" = 1.1.0 ] || exit 0\ntouch \"$GANTRY_REPO_DIR/started\"\nread line < \"$GANTRY_REPO_DIR/release.fifo\"\nexit 0\n",
        )
        .file("releases/billing-1.0.0.yaml", &release("billing", "1.0.0", ""))
        .file("releases/billing-1.1.0.yaml", &release("billing", "1.1.0", ""))
        .file("targets/acme.yaml", &target("acme", "billing", "1.0.0", "env: prod"))
        .file(".gitignore", "release.fifo\nstarted\n");
    repo.commit_all("fleet");
    repo.gantry(&["apply"]).expect(0);
    repo.file("targets/acme.yaml", &target("acme", "billing", "1.1.0", "env: prod"));
    repo.commit_all("bump");
    repo
}

/// A webhook receiver on 127.0.0.1 recording every request body.
pub struct Hooks {
    pub port: u16,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Hooks {
    pub fn start() -> Hooks {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind hook server");
        let port = listener.local_addr().expect("addr").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&bodies);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(value) = serde_json::from_slice(&body)
                {
                    sink.lock().unwrap().push(value);
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            }
        });
        Hooks { port, bodies }
    }

    pub fn event(&self, name: &str) -> Option<serde_json::Value> {
        self.bodies.lock().unwrap().iter().find(|b| b["event"] == name).cloned()
    }
}

/// The headless Chromium the page tests drive; `None` (with a loud line) only outside CI, where
/// a missing browser is a skip rather than a failure. `test` names the skipped test.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is required on CI (apt-get install -y chromium)"
        );
        eprintln!("SKIPPED {test}: chromium is not installed (and CI is unset)");
    }
    found
}

/// Runs headless Chromium on `url` with `extra` arguments (`--dump-dom`, `--screenshot=…`) in a
/// fresh profile, at 1280×900.
pub fn run_chromium(chromium: &Path, url: &str, extra: &[&str]) -> Output {
    let profile = tempfile::tempdir().expect("profile");
    std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium")
}
