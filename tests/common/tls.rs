//! Real servers on 127.0.0.1 for integration tests: a test CA and a server certificate made with
//! the openssl CLI, and child processes killed on drop. `.ci/run` installs the server binaries;
//! outside CI a missing one skips the test loudly.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` every 20 ms until it returns something, for at most 30 s.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The path of a server binary, or `None` (with a loud note) outside CI when it is missing.
pub fn require(candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{candidates:?} missing in CI: .ci/run installs it"
        );
        eprintln!("SKIPPED: none of {candidates:?} is installed (run .ci/run, or apt-get install it)");
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn wait_listening(port: u16) {
    wait_for(&format!("a server on port {port}"), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
}

/// Runs `program` in `dir`; panics with its stderr when it fails.
pub fn sh(program: &str, args: &[&str], dir: &Path) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes, in `dir`, a CA (`ca.crt`, `ca.key`) and a certificate for 127.0.0.1 signed by it
/// (`server.crt`, `server.key`), valid two days.
pub fn make_test_ca(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=gantry test CA",
    ]);
    sh("openssl", &ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    sh("openssl", &csr, dir);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        dir,
    );
}

/// Starts nginx as a child (no daemon, no master) with `conf` written to `dir/nginx.conf`, and
/// waits until it listens on `port`.
pub fn start_nginx(nginx: &Path, dir: &Path, conf: &str, port: u16) -> Server {
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let server = Server(
        Command::new(nginx)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("nginx-error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nginx"),
    );
    wait_listening(port);
    server
}

/// The head of an nginx configuration running in the foreground with every file under `dir`
/// (the caller adds its `server` blocks and closes the `http` block).
pub fn nginx_conf_head(dir: &Path) -> String {
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n client_body_temp_path {d}/tmp/body;\n fastcgi_temp_path {d}/tmp/fcgi;\n\
         proxy_temp_path {d}/tmp/proxy;\n uwsgi_temp_path {d}/tmp/uwsgi;\n scgi_temp_path {d}/tmp/scgi;\n",
        d = dir.display()
    )
}
