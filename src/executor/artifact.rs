//! Artifact verification: a release's files are checked against their sha256 before any step
//! runs, and handed to steps as **local files** (issue #18, attack 9).
//!
//! A `path` artifact is the file in the desired commit's checkout. A `url` artifact with a
//! `sha256` is downloaded once into `.git/gantry/artifacts/<sha256>` (written to a temporary
//! name while hashed, renamed only when the digest matches, then made read-only) and steps get
//! that file, never the URL to fetch again: what ran is what was verified. A cached file is
//! hashed again before each use. Steps see the files as `{{ artifact.path }}` (the first
//! artifact), `{{ artifacts[i].path }}`, and in `GANTRY_ARTIFACT` / `GANTRY_ARTIFACTS`
//! (newline-separated).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::manifest::Artifact;

/// The largest artifact fetched over HTTP for verification.
const MAX_DOWNLOAD: u64 = 2 * 1024 * 1024 * 1024;

/// A verified artifact, as steps see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalArtifact {
    /// The local file (absolute).
    pub path: String,
    /// Its sha256 (hex), when the release declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where it came from, for a `url` artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Checks every artifact that declares a `sha256` (a `path` inside the checkout, or an
/// `http://` or `https://` url, downloaded into `cache`) and returns the local files steps get. A `url`
/// artifact without `sha256` is not fetched and not handed over.
///
/// # Errors
/// A message naming the artifact, what was expected and what was found, ending with what to do.
pub fn verify(
    artifacts: &[Artifact],
    checkout: &Path,
    cache: &Path,
    release: &str,
) -> Result<Vec<LocalArtifact>, String> {
    let mut local = Vec::new();
    for artifact in artifacts {
        let expected = artifact.sha256.as_deref().map(str::to_ascii_lowercase);
        match (&artifact.path, &artifact.url, &expected) {
            (Some(path), _, _) => {
                let real = inside_checkout(checkout, path)?;
                if let Some(expected) = &expected {
                    let actual = digest_file(&real).map_err(|e| format!("artifact {path}: {e}"))?;
                    mismatch(path, release, &actual, expected)?;
                }
                local.push(LocalArtifact {
                    path: real.to_string_lossy().into_owned(),
                    sha256: expected,
                    url: None,
                });
            }
            (None, Some(url), Some(expected)) => {
                let path = fetch_verified(url, expected, cache, release)?;
                local.push(LocalArtifact {
                    path: path.to_string_lossy().into_owned(),
                    sha256: Some(expected.clone()),
                    url: Some(url.clone()),
                });
            }
            _ => {}
        }
    }
    Ok(local)
}

fn mismatch(name: &str, release: &str, actual: &str, expected: &str) -> Result<(), String> {
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    Err(format!(
        "artifact {name} of {release}: sha256 is {actual}, the release declares {expected}; nothing ran (fix the artifact or the release's sha256)"
    ))
}

/// The cached, verified copy of `url`: reused when its content still hashes to `expected`,
/// else downloaded to a temporary file while hashed and renamed into place only on a match.
fn fetch_verified(url: &str, expected: &str, cache: &Path, release: &str) -> Result<PathBuf, String> {
    if expected.len() != 64 || !expected.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "artifact {url} of {release}: sha256 `{expected}` is not 64 hex digits"
        ));
    }
    let target = cache.join(expected);
    if target.is_file() {
        match digest_file(&target) {
            Ok(actual) if actual == expected => return Ok(target),
            _ => {
                // Changed on disk: fetch again.
                let _ = make_writable(&target);
                let _ = std::fs::remove_file(&target);
            }
        }
    }
    std::fs::create_dir_all(cache).map_err(|e| format!("artifact cache {}: {e}", cache.display()))?;
    let partial = cache.join(format!("{expected}.{}.partial", std::process::id()));
    let result = download(url, &partial);
    let actual = match result {
        Ok(actual) => actual,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    if let Err(e) = mismatch(url, release, &actual, expected) {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let read_only = std::fs::Permissions::from_mode_compat(0o444);
    std::fs::set_permissions(&partial, read_only).map_err(|e| format!("artifact {url}: {e}"))?;
    std::fs::rename(&partial, &target).map_err(|e| format!("artifact {url}: {e}"))?;
    Ok(target)
}

/// Downloads `url` (`http://` or `https://`) into `file`, fsynced; returns the sha256 of what
/// was written.
///
/// https is verified by OpenSSL (through native-tls) against the host's trust store: the
/// system CA bundle, or the PEM files the standard `SSL_CERT_FILE` / `SSL_CERT_DIR` variables
/// name. There is no switch to turn verification off; integrity itself comes from the sha256
/// in the (signed) release, the transport only keeps the download private and on time.
fn download(url: &str, file: &Path) -> Result<String, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "artifact {url}: only http:// and https:// urls can be verified; use a path in the repository"
        ));
    }
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::NativeTls)
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .tls_config(tls)
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::NativeTls(tls) => format!(
            "artifact {url}: TLS verification failed: {tls} (the server's certificate is not trusted by this host: \
             add its CA to the system trust store, or point SSL_CERT_FILE at a PEM file holding it); nothing ran"
        ),
        other => format!("artifact {url}: {other}"),
    })?;
    let mut reader = response.body_mut().with_config().limit(MAX_DOWNLOAD).reader();
    let mut out = std::fs::File::create(file).map_err(|e| format!("artifact {url}: {e}"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer).map_err(|e| format!("artifact {url}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|e| format!("artifact {url}: {e}"))?;
    }
    out.sync_all().map_err(|e| format!("artifact {url}: {e}"))?;
    Ok(crate::hex::encode(&hasher.finalize()))
}

fn make_writable(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode_compat(0o644))
}

/// `std::os::unix::fs::PermissionsExt::from_mode`, spelled so the module reads the same on
/// every platform gantry builds on (Unix only today).
trait FromModeCompat {
    fn from_mode_compat(mode: u32) -> Self;
}

impl FromModeCompat for std::fs::Permissions {
    fn from_mode_compat(mode: u32) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(mode)
    }
}

/// The real path of `relative` in the checkout; refuses anything that resolves outside it.
fn inside_checkout(checkout: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = checkout.join(relative);
    // Resolve links and refuse anything that ends up outside the checkout.
    let real = path
        .canonicalize()
        .map_err(|e| format!("artifact {relative}: {e} (in the desired commit's checkout)"))?;
    let root = checkout
        .canonicalize()
        .map_err(|e| format!("checkout {}: {e}", checkout.display()))?;
    if !real.starts_with(&root) {
        return Err(format!(
            "artifact {relative} resolves outside the repository checkout; nothing ran"
        ));
    }
    Ok(real)
}

fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    hash_reader(&mut file)
}

/// The lowercase hex sha256 of `bytes` (the form releases declare).
pub fn digest_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_reader(reader: &mut dyn Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::hex::encode(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &str, sha: &str) -> Artifact {
        Artifact {
            path: Some(path.into()),
            url: None,
            sha256: Some(sha.into()),
        }
    }

    #[test]
    fn matching_and_mismatching_digests() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar"), b"hello").unwrap();
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let cache = dir.path().join("cache");
        let local = verify(&[artifact("a.tar", good)], dir.path(), &cache, "billing 1.0.0").unwrap();
        assert_eq!(local.len(), 1);
        assert!(local[0].path.ends_with("/a.tar"), "{local:?}");
        let err = verify(
            &[artifact("a.tar", &"0".repeat(64))],
            dir.path(),
            &cache,
            "billing 1.0.0",
        )
        .unwrap_err();
        assert!(
            err.contains("artifact a.tar of billing 1.0.0: sha256 is 2cf24dba"),
            "{err}"
        );
        assert!(
            verify(&[artifact("missing.tar", good)], dir.path(), &cache, "b")
                .unwrap_err()
                .contains("missing.tar")
        );
    }

    #[test]
    fn links_out_of_the_checkout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x"), b"hello").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), dir.path().join("link")).unwrap();
        let err = verify(
            &[artifact("link", &"0".repeat(64))],
            dir.path(),
            &dir.path().join("c"),
            "b",
        )
        .unwrap_err();
        assert!(err.contains("outside the repository checkout"), "{err}");
    }

    /// Serves `bodies` in turn on 127.0.0.1, one per connection.
    fn serve(bodies: Vec<&'static [u8]>) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/billing.tar", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            for body in bodies {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
            }
        });
        (url, handle)
    }

    /// Issue #18, attack 9: a URL artifact was verified, then fetched again by the step over
    /// plain http, where it could differ. Now the step gets the verified local copy.
    #[test]
    fn url_artifacts_are_downloaded_once_verified_and_kept_local() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("artifacts");
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; // "hello"
        // The server would answer a second fetch with other bytes: it is never asked.
        let (url, server) = serve(vec![b"hello"]);
        let url_artifact = Artifact {
            path: None,
            url: Some(url.clone()),
            sha256: Some(good.to_uppercase()),
        };
        let local = verify(std::slice::from_ref(&url_artifact), dir.path(), &cache, "b 1").unwrap();
        server.join().unwrap();
        assert_eq!(local[0].path, cache.join(good).to_string_lossy());
        assert_eq!(std::fs::read(&local[0].path).unwrap(), b"hello");
        assert_eq!(local[0].url.as_deref(), Some(url.as_str()));
        // Reused from the cache without a request (the server is gone).
        let again = verify(std::slice::from_ref(&url_artifact), dir.path(), &cache, "b 1").unwrap();
        assert_eq!(again, local);

        // A mismatching download is refused and leaves nothing behind.
        let (url, server) = serve(vec![b"evil"]);
        let bad = Artifact {
            path: None,
            url: Some(url),
            sha256: Some("0".repeat(64)),
        };
        let err = verify(&[bad], dir.path(), &cache, "b 2").unwrap_err();
        server.join().unwrap();
        assert!(err.contains("sha256 is "), "{err}");
        let left: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(good)], "no partial file left");
    }
}
