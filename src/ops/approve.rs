//! `gantry approve`: writes an `Approval` manifest for one approver and commits it on the
//! desired branch, SSH-signed in-process with the approver's key (issue #18).
//!
//! With `[trust]`, an Approval counts only for the addresses the key that signed the commit
//! adding it is listed for (`source::history`), so each approver approves with their own signed
//! commit; this operation makes that commit without shelling out to git. The approval names an
//! exact release, and is bound to that Release manifest's content as it is at the commit.

use std::path::PathBuf;

use crate::manifest::Version;
use git2::Oid;

use crate::manifest::{Labels, Target, selector_matches};
use crate::reconcile::load::load_commit;
use crate::source::edit::ChangeBranch;
use crate::source::trust::{self, CommitSigner};
use crate::source::{SourceError, WatchedRepo};
use crate::state::read_recorded;

/// What to approve, and as whom.
#[derive(Debug, Clone, Default)]
pub struct ApproveOptions {
    /// One target (the Approval's selector is its labels)...
    pub target: Option<String>,
    /// ... or every target matching these labels (`--selector K=V`, repeatable).
    pub selector: Labels,
    /// The exact release; default: the target's `spec.version` when it is an exact version.
    pub version: Option<String>,
    /// The approver's private key (unencrypted OpenSSH file); default: git's `user.signingkey`.
    pub key: Option<PathBuf>,
    /// The approver's address; default: the one the anchored allowed signers list for the key.
    pub approver: Option<String>,
    /// Commit on a new branch (for a pull request) instead of the desired branch.
    pub branch: Option<String>,
}

/// What `approve` committed.
#[derive(Debug, Clone)]
pub struct ApproveReport {
    pub commit: Oid,
    pub branch: String,
    pub file: String,
    pub approver: String,
    pub component: String,
    pub version: Version,
    /// The targets the Approval covers at the desired commit.
    pub targets: Vec<String>,
    /// The signing key's fingerprint.
    pub fingerprint: String,
}

/// Why nothing was approved.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    /// The request does not name one release of one component, or the key/approver is unusable.
    #[error("{0}")]
    Usage(String),
    /// The repository could not be read or written.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The signing key or the allowed signers could not be used.
    #[error(transparent)]
    Trust(#[from] trust::TrustError),
}

/// Writes and commits a signed Approval.
///
/// # Errors
/// [`ApproveError`]: nothing is committed unless the new commit validates.
pub fn approve(repo: &WatchedRepo, options: &ApproveOptions) -> Result<ApproveReport, ApproveError> {
    let desired_branch = repo.desired_branch_hint();
    let head = repo.branch_tip(&desired_branch)?;
    let loaded = load_commit(repo, head)?;
    let desired = &loaded.desired;
    let (selector, targets): (Option<Labels>, Vec<&Target>) = match (&options.target, options.selector.is_empty()) {
        (Some(name), true) => {
            let target = desired.targets.get(name).ok_or_else(|| {
                ApproveError::Usage(format!(
                    "unknown target `{name}`: not in the desired state at {}",
                    short(head)
                ))
            })?;
            let labels = target.labels().clone();
            let covered = desired
                .targets
                .values()
                .filter(|t| t.spec().component == target.spec().component && t.labels() == &labels)
                .collect();
            ((!labels.is_empty()).then_some(labels), covered)
        }
        (None, false) => {
            let covered: Vec<&Target> = desired
                .targets
                .values()
                .filter(|t| selector_matches(Some(&options.selector), t.labels()))
                .collect();
            (Some(options.selector.clone()), covered)
        }
        _ => {
            return Err(ApproveError::Usage(
                "name one TARGET or give --selector K=V (not both)".to_string(),
            ));
        }
    };
    let Some(first) = targets.first() else {
        return Err(ApproveError::Usage("no target matches the selector".to_string()));
    };
    let component = first.spec().component.clone();
    if let Some(other) = targets.iter().find(|t| t.spec().component != component) {
        return Err(ApproveError::Usage(format!(
            "the selector matches targets of components `{component}` and `{}`; an Approval is for one component: narrow the selector",
            other.spec().component
        )));
    }
    let version = match &options.version {
        Some(v) => Version::parse(v.trim())
            .map_err(|e| ApproveError::Usage(format!("--version `{v}` is not an exact version such as 2.0.0 ({e})")))?,
        None => Version::parse(first.spec().version.trim()).map_err(|_| {
            ApproveError::Usage(format!(
                "target `{}` wants `{}`, not one release; pass --version to name the exact release you approve",
                first.name(),
                first.spec().version
            ))
        })?,
    };
    if desired.release(&component, &version).is_none() {
        return Err(ApproveError::Usage(format!(
            "there is no Release {component} {version} at {}; an approval names an existing release",
            short(head)
        )));
    }

    let key_path = match &options.key {
        Some(path) => path.clone(),
        None => trust::git_signing_key(&repo.repo)
            .map_err(|why| ApproveError::Usage(format!("{why}, or pass --key PATH")))?,
    };
    let signer = CommitSigner::from_file(&key_path)?;
    let fingerprint = signer.public_key().fingerprint(ssh_key::HashAlg::Sha256).to_string();
    let recorded = read_recorded(&repo.repo, &desired.config.state_branch).unwrap_or_default();
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded).map_err(|e| ApproveError::Usage(e.to_string()))?;
    let signers = trust::signers_for(repo, head, &desired.config, &anchor)?;
    let listed = signers.as_ref().map(|s| s.addresses_of(signer.public_key()));
    let approver = match (&options.approver, &listed) {
        (Some(a), Some(listed)) => {
            let a = a.trim().to_ascii_lowercase();
            if !listed.contains(&a) {
                return Err(ApproveError::Usage(format!(
                    "key {fingerprint} is not listed for {a} in the allowed signers in force; the approval would not count"
                )));
            }
            a
        }
        (Some(a), None) => a.trim().to_ascii_lowercase(),
        (None, Some(listed)) => listed.first().cloned().ok_or_else(|| {
            ApproveError::Usage(format!(
                "key {fingerprint} is not listed for any address in the allowed signers in force; ask for it to be added first"
            ))
        })?,
        (None, None) => {
            return Err(ApproveError::Usage(
                "[trust] is not set: pass --as ADDRESS to name the approver".to_string(),
            ));
        }
    };

    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    };
    let scope = match &options.target {
        Some(t) => slug(t),
        None => slug(
            &options
                .selector
                .iter()
                .map(|(k, v)| format!("{k}-{v}"))
                .collect::<Vec<_>>()
                .join("-"),
        ),
    };
    let name = format!(
        "{}-{}-{}-{}",
        slug(&component),
        slug(&version.to_string()),
        scope,
        slug(&approver)
    );
    let dir = match &desired.config.paths {
        Some(paths) => paths
            .iter()
            .find(|p| p.contains("approval"))
            .or(paths.first())
            .cloned()
            .unwrap_or_else(|| "approvals".to_string()),
        None => "approvals".to_string(),
    };
    let file = format!("{}/{name}.yaml", dir.trim_end_matches('/'));
    let selector_yaml = selector
        .as_ref()
        .map(|labels| {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{}: {}", yaml_string(k), yaml_string(v)))
                .collect();
            format!("  selector: {{ {} }}\n", pairs.join(", "))
        })
        .unwrap_or_default();
    let content = format!(
        "# Written by `gantry approve`, in a commit signed by {approver}'s key {fingerprint}.\n\
         apiVersion: gantry.dev/v1\nkind: Approval\nmetadata:\n  name: {name}\nspec:\n  component: {}\n  version: {version}\n{selector_yaml}  approvedBy: [{}]\n",
        yaml_string(&component),
        yaml_string(&approver)
    );
    let message = format!(
        "Approve {component} {version} for {}\n\nApproved-by: {approver}\n",
        targets.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    );
    let (change, on) = match &options.branch {
        Some(name) => (
            ChangeBranch::New {
                base: desired_branch.clone(),
                name: name.clone(),
            },
            name.clone(),
        ),
        None => (ChangeBranch::Desired(desired_branch.clone()), desired_branch.clone()),
    };
    let commit = repo.commit_files_change_signed(
        &change,
        &[(&file, content.as_bytes())],
        &message,
        Some(&signer),
        |oid| {
            let check = load_commit(repo, oid).map_err(|e| e.to_string())?;
            if check.is_valid() {
                Ok(())
            } else {
                Err(format!(
                    "the approval commit would not validate: {}",
                    check
                        .diagnostics
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            }
        },
    )?;
    Ok(ApproveReport {
        commit,
        branch: on,
        file,
        approver,
        component,
        version,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
        fingerprint,
    })
}

/// A YAML double-quoted scalar.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}
