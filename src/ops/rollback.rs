//! Rollback (`gantry rollback TARGET… | --selector K=V [--to VERSION] [--branch NAME]`): propose
//! pinning earlier versions, for one target or a whole environment in one commit.
//!
//! Rolling back is a change to desired state like any other: gantry writes the commit (on the
//! desired branch, or on a new branch for a pull request) and the next reconcile plans the
//! downgrade. Nothing is executed here.

use std::collections::BTreeMap;

use crate::manifest::Version;

use crate::manifest::edit::replace_scalar;
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::source::edit::ChangeBranch;
use crate::source::trust::{self, CommitSigner};
use crate::state::read_recorded;

use super::OpsError;

/// The trailer naming who asked for a rollback (the commit's author).
pub const OPERATOR_TRAILER: &str = "Gantry-Operator";
/// The trailer holding `--reason`.
pub const REASON_TRAILER: &str = "Gantry-Reason";

/// Refuses a `--reason` that is not one non-empty line of text (it becomes a commit trailer).
///
/// # Errors
/// [`OpsError::Usage`] saying so.
pub(crate) fn check_reason(reason: Option<&str>) -> Result<(), OpsError> {
    match reason {
        Some(reason) if reason.trim().is_empty() || reason.chars().any(char::is_control) => Err(OpsError::Usage(
            "--reason must be one non-empty line of text (it becomes a commit trailer)".to_string(),
        )),
        _ => Ok(()),
    }
}

/// The trailer paragraph of a commit gantry writes for an operator (`rollback`, `retry`): the
/// `Gantry-Operator` (the commit's author as git would name it: GIT_AUTHOR_*, then user.*) and,
/// with `--reason`, the `Gantry-Reason`.
///
/// # Errors
/// The operator's identity cannot be read from git's configuration or environment.
pub(crate) fn operator_trailers(repo: &WatchedRepo, reason: Option<&str>) -> Result<String, OpsError> {
    let (author, _) = repo.operator_signatures(|name| std::env::var(name).ok())?;
    let mut trailers = format!(
        "{OPERATOR_TRAILER}: {} <{}>\n",
        author.name().unwrap_or("gantry"),
        author.email().unwrap_or("gantry@localhost")
    );
    if let Some(reason) = reason {
        trailers.push_str(&format!("{REASON_TRAILER}: {}\n", reason.trim()));
    }
    Ok(trailers)
}

/// The key an operator commit (`rollback`, `retry`) is signed with, as `git commit` would sign
/// it: with `[trust]` on, or git's `commit.gpgsign` set, the SSH key git's `user.signingkey`
/// names. `None` when neither asks for a signature.
///
/// # Errors
/// [`OpsError::Usage`] when a signature is needed and no usable key is configured. With `[trust]`
/// an unsigned commit on the desired branch would never be reconciled (an untrusted head holds
/// the whole fleet), so only a new branch (`--branch`, signed when merged) may go unsigned.
pub(crate) fn operator_signer(
    repo: &WatchedRepo,
    config: &crate::manifest::RepoConfig,
    new_branch: bool,
) -> Result<Option<CommitSigner>, OpsError> {
    let gpgsign = repo
        .repo
        .config()
        .ok()
        .and_then(|c| c.get_bool("commit.gpgsign").ok())
        .unwrap_or(false);
    let trusted = config.trust.is_some();
    if !gpgsign && !trusted {
        return Ok(None);
    }
    let key =
        trust::git_signing_key(&repo.repo).and_then(|path| CommitSigner::from_file(&path).map_err(|e| e.to_string()));
    match key {
        Ok(signer) => Ok(Some(signer)),
        Err(_) if trusted && new_branch && !gpgsign => Ok(None),
        Err(why) => Err(OpsError::Usage(format!(
            "the commit must be signed ({}): {why}; or write it to a new branch with --branch NAME for a pull request",
            if trusted {
                "[trust] is on: an unsigned head is never reconciled"
            } else {
                "git's commit.gpgsign is set"
            }
        ))),
    }
}

/// What to roll back.
#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    pub targets: Vec<String>,
    /// `KEY=VALUE` label selectors; every target matching all of them is rolled back too.
    pub selector: Vec<String>,
    /// The version to pin (each target's latest rollback point when absent).
    pub to: Option<String>,
    /// A new branch for the commit instead of the desired branch.
    pub branch: Option<String>,
    /// Why (`--reason`): the commit's `Gantry-Reason` trailer, shown by `history`.
    pub reason: Option<String>,
}

/// One target pinned by the commit.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub target: String,
    pub version: Version,
    /// The target's manifest file that was changed.
    pub file: String,
}

/// The commit `rollback` wrote.
#[derive(Debug)]
pub struct RollbackReport {
    pub commit: git2::Oid,
    /// Where: the desired branch's name, or `new branch NAME`.
    pub on: String,
    pub pinned: Vec<Pinned>,
    /// Set when the desired branch is checked out here: its work tree and index were brought up
    /// to date with the commit (see `source::edit`).
    pub updated_checkout: Option<String>,
}

/// Commits, on the desired branch (or on a new branch), the change that pins every named target
/// to its latest rollback point or to `to`: one commit, validated before the branch moves, so an
/// environment is rolled back (and its rollback reverted) as one change.
///
/// # Errors
/// [`OpsError::Usage`] for an unknown target, a selector nothing matches, a target without a
/// rollback point (and no `--to`), a `--to` that is neither a rollback point nor a release of the
/// target's component, or a manifest whose `spec.version` cannot be edited;
/// [`OpsError::Source`] when the commit does not validate or the checked-out file has changes.
pub fn rollback(repo: &WatchedRepo, options: &RollbackOptions) -> Result<RollbackReport, OpsError> {
    let reason = options.reason.as_deref();
    check_reason(reason)?;
    let desired_branch = repo.desired_branch_hint();
    let head = repo.branch_tip(&desired_branch)?;
    let loaded = load_commit(repo, head)?;
    let names = super::selection::named_targets(
        &loaded.desired,
        &format!("{} ({desired_branch})", &head.to_string()[..12]),
        &options.targets,
        &options.selector,
        "roll back",
    )?;
    let recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;
    // Edits per file, applied bottom-up so earlier locations stay valid.
    let mut by_file: BTreeMap<String, Vec<(crate::manifest::document::Loc, Version)>> = BTreeMap::new();
    let mut pinned = Vec::new();
    let mut currents = Vec::new();
    for target in &names {
        let manifest = &loaded.desired.targets[target];
        let record = recorded.targets.get(target);
        let points: Vec<Version> = record.map(|r| r.rollback_points.clone()).unwrap_or_default();
        let component = manifest.spec().component.clone();
        let version = match options.to.as_deref() {
            Some(text) => {
                let version =
                    Version::parse(text).map_err(|e| OpsError::Usage(format!("--to `{text}` is not a version ({e})")))?;
                if !points.contains(&version) && loaded.desired.release(&component, &version).is_none() {
                    return Err(OpsError::Usage(format!(
                        "{version} is neither a recorded rollback point of `{target}` ({}) nor a release of `{component}`",
                        if points.is_empty() {
                            "none recorded".to_string()
                        } else {
                            points.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                        }
                    )));
                }
                version
            }
            None => points.first().cloned().ok_or_else(|| {
                OpsError::Usage(format!(
                    "no rollback point is recorded for `{target}` (it has not been upgraded by gantry yet); pass --to VERSION"
                ))
            })?,
        };
        let file = manifest.manifest.origin.file.to_string();
        if let Some(what) = &manifest.manifest.origin.generated {
            // Its version may come from a line every target of the fleet shares.
            return Err(OpsError::Usage(format!(
                "{what} ({file}) is generated: pin its version with an override for its tenant and component in the Fleet, then commit that"
            )));
        }
        let loc = manifest
            .manifest
            .origin
            .doc
            .at_pointer("/spec/version")
            .map(|n| n.loc)
            .ok_or_else(|| OpsError::Usage(format!("{file}: target `{target}` has no spec.version to change")))?;
        by_file.entry(file.clone()).or_default().push((loc, version.clone()));
        if let Some(current) = record.and_then(|r| r.version.clone()) {
            currents.push(format!("{target} {current}"));
        }
        pinned.push(Pinned {
            target: target.clone(),
            version,
            file,
        });
    }
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (file, mut edits) in by_file {
        let text = repo
            .read_file(head, &file)?
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OpsError::Usage(format!("{file} is not readable text")))?;
        let mut text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
        edits.sort_by_key(|(loc, _)| std::cmp::Reverse((loc.line, loc.column)));
        for (loc, version) in edits {
            text = replace_scalar(&text, loc, &version.to_string()).map_err(|e| {
                OpsError::Usage(format!(
                    "{file}:{}:{}: cannot edit spec.version: {e}",
                    loc.line, loc.column
                ))
            })?;
        }
        files.push((file, text.into_bytes()));
    }
    let subject = match pinned.as_slice() {
        [one] => format!("Roll back {} to {}", one.target, one.version),
        many => format!(
            "Roll back {} targets ({})",
            many.len(),
            options
                .selector
                .iter()
                .chain(&options.targets)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let listed = if pinned.len() > 1 {
        pinned
            .iter()
            .map(|p| format!("- {} to {}\n", p.target, p.version))
            .collect::<String>()
            + "\n"
    } else {
        String::new()
    };
    let message = format!(
        "{subject}\n\n{listed}Requested with `gantry rollback`{}.\nMerging this commit makes gantry plan the downgrade; reverting it undoes the request.\n\n{}",
        if currents.is_empty() {
            String::new()
        } else {
            format!(" (recorded version {})", currents.join(", "))
        },
        operator_trailers(repo, reason)?
    );
    let change = match &options.branch {
        Some(name) => ChangeBranch::New {
            base: desired_branch.clone(),
            name: name.to_string(),
        },
        None => ChangeBranch::Desired(desired_branch.clone()),
    };
    let signer = operator_signer(repo, &loaded.desired.config, options.branch.is_some())?;
    let edits: Vec<(&str, &[u8])> = files.iter().map(|(f, c)| (f.as_str(), c.as_slice())).collect();
    let commit = repo.commit_files_change_signed(&change, &edits, &message, signer.as_ref(), |oid| {
        let check = load_commit(repo, oid).map_err(|e| e.to_string())?;
        if check.is_valid() {
            Ok(())
        } else {
            Err(format!(
                "the rollback commit would not validate: {}",
                check
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        }
    })?;
    let on = match &change {
        ChangeBranch::Desired(b) => b.clone(),
        ChangeBranch::New { name, .. } => format!("new branch {name}"),
    };
    let checked_out = options.branch.is_none() && repo.checked_out(&desired_branch);
    Ok(RollbackReport {
        commit,
        on,
        pinned,
        updated_checkout: checked_out.then(|| desired_branch.clone()),
    })
}
