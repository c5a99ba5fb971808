//! Release artifacts (`spec.artifacts[].path`): resolved inside the checkout and checked against
//! their `sha256` before any step of an attempt runs (SPEC §2, Release).
//!
//! Validation already refuses `..` and absolute paths; here the path is resolved on disk, so a
//! symbolic link committed in the repository cannot point the check (or a step) outside it.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The path leaves the checkout, textually or through a symbolic link.
    #[error("artifact {path}: resolves outside the checkout {}; artifacts must be files inside the repository", checkout.display())]
    Escapes { path: String, checkout: PathBuf },
    /// The file cannot be read.
    #[error("artifact {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The digest differs from the one declared.
    #[error("artifact {path}: sha256 is {actual}, the release declares {expected}")]
    Mismatch {
        path: String,
        expected: String,
        actual: String,
    },
}

/// Resolves `path` (relative, `/`-separated) in `checkout`, following links, and checks it stays
/// inside; then compares its sha256 with `expected` (hex, any case) when one is declared.
///
/// # Errors
/// [`ArtifactError`].
pub fn verify_artifact(checkout: &Path, path: &str, expected: Option<&str>) -> Result<PathBuf, ArtifactError> {
    let escapes = || ArtifactError::Escapes {
        path: path.to_string(),
        checkout: checkout.to_path_buf(),
    };
    let relative = Path::new(path);
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(escapes());
    }
    let unreadable = |source| ArtifactError::Unreadable {
        path: path.to_string(),
        source,
    };
    let root = checkout.canonicalize().map_err(unreadable)?;
    let real = checkout.join(relative).canonicalize().map_err(unreadable)?;
    if !real.starts_with(&root) {
        return Err(escapes());
    }
    if let Some(expected) = expected {
        let mut file = std::fs::File::open(&real).map_err(unreadable)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(unreadable)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ArtifactError::Mismatch {
                path: path.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    // sha256("hello\n")
    const HELLO: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn digest_checked_and_links_followed() {
        let checkout = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(checkout.path().join("artifacts")).unwrap();
        std::fs::write(checkout.path().join("artifacts/a.tgz"), "hello\n").unwrap();
        std::fs::write(outside.path().join("secret"), "hello\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            checkout.path().join("artifacts/link.tgz"),
        )
        .unwrap();

        assert!(verify_artifact(checkout.path(), "artifacts/a.tgz", Some(HELLO)).is_ok());
        assert!(verify_artifact(checkout.path(), "artifacts/a.tgz", Some(&HELLO.to_uppercase())).is_ok());
        assert!(verify_artifact(checkout.path(), "artifacts/a.tgz", None).is_ok());
        let err = verify_artifact(checkout.path(), "artifacts/a.tgz", Some(&"0".repeat(64))).unwrap_err();
        assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
        for path in ["artifacts/link.tgz", "../x", "/etc/passwd"] {
            let err = verify_artifact(checkout.path(), path, Some(HELLO)).unwrap_err();
            assert!(matches!(err, ArtifactError::Escapes { .. }), "{path}: {err}");
        }
        let err = verify_artifact(checkout.path(), "artifacts/missing", None).unwrap_err();
        assert!(err.to_string().starts_with("artifact artifacts/missing: "), "{err}");
    }
}
