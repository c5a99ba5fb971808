//! Fetch stage: read and validate the desired state of one commit, and the recorded state.

use git2::Oid;

use crate::manifest::{self, Desired, Diagnostic, RawContent, RawFile, Severity};
use crate::policy;
use crate::source::{SourceError, WatchedRepo};

/// The desired state of one commit with every diagnostic found reading it.
pub struct LoadedCommit {
    pub commit: Oid,
    pub desired: Desired,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedCommit {
    /// Whether a file could not be read at all (exit 1).
    pub fn has_invalid(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Invalid)
    }
    /// Whether the state is readable but can never succeed as declared (exit 2).
    pub fn has_violations(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Violation)
    }
    /// Whether this commit may be reconciled: nothing invalid, no violations.
    pub fn is_valid(&self) -> bool {
        !self.has_invalid() && !self.has_violations()
    }
}

/// Reads `gantry.toml` and every manifest at `commit`, validates them, and cross-checks
/// policies against targets.
///
/// # Errors
/// Only git failures; every problem with the content is a diagnostic.
pub fn load_commit(repo: &WatchedRepo, commit: Oid) -> Result<LoadedCommit, SourceError> {
    let config = repo.read_file(commit, "gantry.toml")?.map(|bytes| RawFile {
        path: "gantry.toml".to_string(),
        content: RawContent::Bytes(bytes),
    });
    // The manifest paths come from gantry.toml; read it first (cheaply) to know where to look.
    let (config_only, _) = manifest::read_manifests(config.as_ref(), &[]);
    let files = repo.manifest_files(commit, config_only.config.paths.as_deref())?;
    let (manifests, mut diagnostics) = manifest::read_manifests(config.as_ref(), &files);
    let (desired, semantic) = manifest::validate(manifests);
    diagnostics.extend(semantic);
    diagnostics.extend(policy_diagnostics(&desired));
    manifest::diagnostic::sort(&mut diagnostics);
    diagnostics.dedup();
    Ok(LoadedCommit {
        commit,
        desired,
        diagnostics,
    })
}

/// Policy ties, checked for every target (the planner also reports them per action).
fn policy_diagnostics(desired: &Desired) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for target in desired.targets.values() {
        if let Err(tie) = policy::select_policy(desired, target) {
            out.push(target.manifest.origin.diagnostic(
                Severity::Violation,
                "policy_tie",
                "/metadata/labels",
                format!("target `{}`: {tie}", target.name()),
            ));
        }
    }
    out
}
