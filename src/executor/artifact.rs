//! Artifact verification: a release's files are checked against their sha256 before any step runs.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::manifest::Artifact;

/// The largest artifact fetched over HTTP for verification.
const MAX_DOWNLOAD: u64 = 2 * 1024 * 1024 * 1024;

/// Checks every artifact that declares a `sha256`: a `path` inside the checkout, or an
/// `http://` url. Returns a message for the first one that does not match or cannot be read.
///
/// # Errors
/// A message naming the artifact, what was expected and what was found, ending with what to do.
pub fn verify(artifacts: &[Artifact], checkout: &Path, release: &str) -> Result<(), String> {
    for artifact in artifacts {
        let Some(expected) = artifact.sha256.as_deref() else {
            continue;
        };
        let (name, actual) = match (&artifact.path, &artifact.url) {
            (Some(path), _) => (path.clone(), digest_file(checkout, path)?),
            (None, Some(url)) => (url.clone(), digest_url(url)?),
            (None, None) => continue,
        };
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "artifact {name} of {release}: sha256 is {actual}, the release declares {expected}; nothing ran (fix the artifact or the release's sha256)"
            ));
        }
    }
    Ok(())
}

fn digest_file(checkout: &Path, relative: &str) -> Result<String, String> {
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
    let mut file = std::fs::File::open(&real).map_err(|e| format!("artifact {relative}: {e}"))?;
    hash_reader(&mut file).map_err(|e| format!("artifact {relative}: {e}"))
}

fn digest_url(url: &str) -> Result<String, String> {
    if !url.starts_with("http://") {
        return Err(format!(
            "artifact {url}: only http:// urls can be verified; use a path in the repository"
        ));
    }
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let mut response = agent.get(url).call().map_err(|e| format!("artifact {url}: {e}"))?;
    let mut reader = response.body_mut().with_config().limit(MAX_DOWNLOAD).reader();
    hash_reader(&mut reader).map_err(|e| format!("artifact {url}: {e}"))
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
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
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
        assert!(verify(&[artifact("a.tar", good)], dir.path(), "billing 1.0.0").is_ok());
        let err = verify(&[artifact("a.tar", &"0".repeat(64))], dir.path(), "billing 1.0.0").unwrap_err();
        assert!(
            err.contains("artifact a.tar of billing 1.0.0: sha256 is 2cf24dba"),
            "{err}"
        );
        assert!(
            verify(&[artifact("missing.tar", good)], dir.path(), "b")
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
        let err = verify(&[artifact("link", &"0".repeat(64))], dir.path(), "b").unwrap_err();
        assert!(err.contains("outside the repository checkout"), "{err}");
    }
}
