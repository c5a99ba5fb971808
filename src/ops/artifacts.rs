//! Artifact checksums checked at review time: `validate` and `plan` hash every `path` artifact
//! that declares a `sha256` from the commit's tree, so a tampered artifact fails CI, not only
//! the apply that would have run it (issue #15). `url` artifacts are left to apply: CI must not
//! need the network.

use std::path::{Component, Path};

use git2::Oid;

use crate::executor::artifact::digest_bytes;
use crate::manifest::{Desired, Diagnostic, Severity};
use crate::source::{SourceError, WatchedRepo};

/// A diagnostic for every `path` artifact at `commit` that is missing, outside the
/// repository, or whose sha256 differs from the one its release declares.
///
/// # Errors
/// git failures reading the tree or a blob.
pub fn verify_at_commit(repo: &WatchedRepo, commit: Oid, desired: &Desired) -> Result<Vec<Diagnostic>, SourceError> {
    let tree = repo.repo.find_commit(commit)?.tree()?;
    let mut found = Vec::new();
    for release in desired.releases.values().flatten() {
        let spec = release.spec();
        let name = format!("{} {}", spec.component, release.version);
        for (i, artifact) in spec.artifacts.iter().enumerate() {
            let (Some(path), Some(expected)) = (&artifact.path, &artifact.sha256) else {
                continue;
            };
            let origin = &release.manifest.origin;
            let at = |field: &str| format!("/spec/artifacts/{i}/{field}");
            let escapes = Path::new(path)
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
            if escapes {
                found.push(origin.diagnostic(
                    Severity::Violation,
                    "artifact",
                    &at("path"),
                    format!("artifact {path} of {name} is outside the repository; give a path inside it, relative to its root"),
                ));
                continue;
            }
            let entry = match tree.get_path(Path::new(path)) {
                Ok(entry) => entry,
                Err(e) if e.code() == git2::ErrorCode::NotFound => {
                    found.push(origin.diagnostic(
                        Severity::Violation,
                        "artifact",
                        &at("path"),
                        format!(
                            "artifact {path} of {name} is not in commit {}; commit the file or fix the path",
                            &commit.to_string()[..12]
                        ),
                    ));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if entry.filemode() == i32::from(git2::FileMode::Link) {
                found.push(origin.diagnostic(
                    Severity::Warning,
                    "artifact",
                    &at("path"),
                    format!("artifact {path} of {name} is a symbolic link: its sha256 is checked only when an apply runs it; commit the file itself to have it checked here"),
                ));
                continue;
            }
            let Ok(blob) = entry.to_object(&repo.repo)?.into_blob() else {
                found.push(origin.diagnostic(
                    Severity::Violation,
                    "artifact",
                    &at("path"),
                    format!("artifact {path} of {name} is a directory; name a file"),
                ));
                continue;
            };
            let actual = digest_bytes(blob.content());
            if !actual.eq_ignore_ascii_case(expected) {
                found.push(origin.diagnostic(
                    Severity::Violation,
                    "artifact",
                    &at("sha256"),
                    format!("artifact {path} of {name}: sha256 is {actual}, the release declares {expected}; an apply would refuse it (fix the artifact or the release's sha256)"),
                ));
            }
        }
    }
    Ok(found)
}
