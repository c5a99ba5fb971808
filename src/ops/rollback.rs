//! Rollback (`gantry rollback TARGET [--to VERSION] [--branch NAME]`): propose pinning an
//! earlier version.
//!
//! Rolling back is a change to desired state like any other: gantry writes the commit (on the
//! desired branch, or on a new branch for a pull request) and the next reconcile plans the
//! downgrade. Nothing is executed here.

use semver::Version;

use crate::manifest::edit::replace_scalar;
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::source::edit::ChangeBranch;
use crate::state::read_recorded;

use super::OpsError;

/// The trailer naming who asked for a rollback (the commit's author).
pub const OPERATOR_TRAILER: &str = "Gantry-Operator";
/// The trailer holding `--reason`.
pub const REASON_TRAILER: &str = "Gantry-Reason";

/// The commit `rollback` wrote.
#[derive(Debug)]
pub struct RollbackReport {
    pub commit: git2::Oid,
    /// Where: the desired branch's name, or `new branch NAME`.
    pub on: String,
    pub target: String,
    pub version: Version,
    /// The target's manifest file that was changed.
    pub file: String,
    /// Set when the desired branch is checked out here: its work tree and index were brought up
    /// to date with the commit (see `source::edit`).
    pub updated_checkout: Option<String>,
}

/// Commits, on the desired branch (or on a new branch `branch`), the change that pins `target`
/// to its latest rollback point or to `to`. The commit is validated before the branch moves.
///
/// # Errors
/// [`OpsError::Usage`] when `--reason` is not one non-empty line of text.
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

/// # Errors
/// [`OpsError::Usage`] for an unknown target, a bad or unknown `--to`, no rollback point, or a
/// manifest gantry cannot edit; source errors when the commit cannot be written.
pub fn rollback(
    repo: &WatchedRepo,
    target: &str,
    to: Option<&str>,
    branch: Option<&str>,
    reason: Option<&str>,
) -> Result<RollbackReport, OpsError> {
    check_reason(reason)?;
    let desired_branch = repo.desired_branch_hint();
    let head = repo.branch_tip(&desired_branch)?;
    let loaded = load_commit(repo, head)?;
    let manifest = loaded.desired.targets.get(target).ok_or_else(|| {
        OpsError::Usage(format!(
            "target `{target}` is not in the desired state at {} ({desired_branch})",
            &head.to_string()[..12]
        ))
    })?;
    let recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;
    let record = recorded.targets.get(target);
    let points: Vec<Version> = record.map(|r| r.rollback_points.clone()).unwrap_or_default();
    let component = manifest.spec().component.clone();
    let version = match to {
        Some(text) => {
            let version = Version::parse(text).map_err(|e| OpsError::Usage(format!("--to `{text}` is not a version ({e})")))?;
            if !points.contains(&version) && loaded.desired.release(&component, &version).is_none() {
                return Err(OpsError::Usage(format!(
                    "{version} is neither a recorded rollback point of `{target}` ({}) nor a release of `{component}`",
                    if points.is_empty() { "none recorded".to_string() } else { points.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") }
                )));
            }
            version
        }
        None => points.first().cloned().ok_or_else(|| {
            OpsError::Usage(format!("no rollback point is recorded for `{target}` (it has not been upgraded by gantry yet); pass --to VERSION"))
        })?,
    };
    let current = record.and_then(|r| r.version.clone());
    let file = manifest.manifest.origin.file.to_string();
    let loc = manifest
        .manifest
        .origin
        .doc
        .at_pointer("/spec/version")
        .map(|n| n.loc)
        .ok_or_else(|| OpsError::Usage(format!("{file}: target `{target}` has no spec.version to change")))?;
    let text = repo
        .read_file(head, &file)?
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| OpsError::Usage(format!("{file} is not readable text")))?;
    let new_text = replace_scalar(
        text.strip_prefix('\u{feff}').unwrap_or(&text),
        loc,
        &version.to_string(),
    )
    .map_err(|e| {
        OpsError::Usage(format!(
            "{file}:{}:{}: cannot edit spec.version: {e}",
            loc.line, loc.column
        ))
    })?;
    let message = format!(
        "Roll back {target} to {version}\n\nRequested with `gantry rollback`{}.\nMerging this commit makes gantry plan the downgrade; reverting it undoes the request.\n\n{}",
        current
            .as_ref()
            .map(|c| format!(" (recorded version {c})"))
            .unwrap_or_default(),
        operator_trailers(repo, reason)?
    );
    let change = match branch {
        Some(name) => ChangeBranch::New {
            base: desired_branch.clone(),
            name: name.to_string(),
        },
        None => ChangeBranch::Desired(desired_branch.clone()),
    };
    let commit = repo.commit_file_change(&change, &file, new_text.as_bytes(), &message, |oid| {
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
    let checked_out = branch.is_none()
        && repo
            .repo
            .head()
            .ok()
            .and_then(|h| h.shorthand().ok().map(str::to_string))
            .as_deref()
            == Some(desired_branch.as_str())
        && repo.repo.workdir().is_some();
    Ok(RollbackReport {
        commit,
        on,
        target: target.to_string(),
        version,
        updated_checkout: checked_out.then(|| desired_branch.clone()),
        file,
    })
}
