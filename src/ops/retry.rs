//! Retry (`gantry retry TARGET… | --selector K=V`): bump `spec.retry` of targets in one commit.
//!
//! A failed attempt holds its target, and a halted rollout its targets, until the target's spec
//! changes (SPEC §3). Retrying is such a change, made as a reviewed commit like `gantry
//! rollback`: gantry writes it (on the desired branch, or on a new branch for a pull request)
//! and the next reconcile tries again. Nothing is executed here.

use std::collections::BTreeMap;
use std::fmt;

use crate::manifest::edit::replace_scalar;
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::source::edit::ChangeBranch;
use crate::state::{TargetStatus, read_recorded};

use super::OpsError;

/// What to retry.
#[derive(Debug, Clone, Default)]
pub struct RetryOptions {
    pub targets: Vec<String>,
    /// `KEY=VALUE` label selectors; a target matching all of them is retried too.
    pub selector: Vec<String>,
    /// A new branch for the commit instead of the desired branch.
    pub branch: Option<String>,
    /// Why (`--reason`): the commit's `Gantry-Reason` trailer, shown by `history`.
    pub reason: Option<String>,
}

/// One target whose `spec.retry` was bumped.
#[derive(Debug, Clone)]
pub struct Bumped {
    pub target: String,
    pub file: String,
    pub retry: u32,
    /// What held it, from recorded state (`None`: nothing recorded held it).
    pub was: Option<String>,
}

impl fmt::Display for Bumped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: spec.retry {} ({})", self.target, self.retry, self.file)?;
        match &self.was {
            Some(was) => write!(f, "; {was}: the next apply tries again"),
            None => write!(f, "; its last attempt did not fail, so this only records the request"),
        }
    }
}

/// The commit `retry` wrote.
#[derive(Debug)]
pub struct RetryReport {
    pub commit: git2::Oid,
    /// The desired branch's name, or `new branch NAME`.
    pub on: String,
    pub targets: Vec<Bumped>,
}

impl RetryReport {
    /// One line: how many targets, and what the commit does.
    pub fn summary(&self) -> String {
        let n = self.targets.len();
        format!(
            "retry {n} target{} (bumps spec.retry; re-arms their halted attempt and rollout)",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// Commits a bump of `spec.retry` for every named or selected target.
///
/// # Errors
/// [`OpsError::Usage`] for an unknown target, a malformed selector, no target selected, or a
/// manifest gantry cannot edit (say where); source errors when the commit cannot be written.
pub fn retry(repo: &WatchedRepo, options: &RetryOptions) -> Result<RetryReport, OpsError> {
    super::rollback::check_reason(options.reason.as_deref())?;
    let desired_branch = repo.desired_branch_hint();
    let head = repo.branch_tip(&desired_branch)?;
    let loaded = load_commit(repo, head)?;
    let names = super::selection::named_targets(
        &loaded.desired,
        &format!("{} ({desired_branch})", &head.to_string()[..12]),
        &options.targets,
        &options.selector,
        "retry",
    )?;
    let recorded = read_recorded(&repo.repo, &loaded.desired.config.state_branch)?;

    // Edits per file, applied bottom-up so earlier locations stay valid.
    let mut by_file: BTreeMap<String, Vec<(u32, String, Edit)>> = BTreeMap::new();
    let mut bumped = Vec::new();
    for name in &names {
        let target = &loaded.desired.targets[name];
        let file = target.manifest.origin.file.to_string();
        if let Some(what) = &target.manifest.origin.generated {
            // Its fields live in lines other targets of the fleet may share.
            return Err(OpsError::Usage(format!(
                "{what} ({file}) is generated: bump `retry:` in an override for its tenant and component in the Fleet, then commit that"
            )));
        }
        let doc = &target.manifest.origin.doc;
        let retry = target.spec().retry + 1;
        let edit = match doc.at_pointer("/spec/retry") {
            Some(node) => Edit::Replace(node.loc),
            None => {
                let version = doc.at_pointer("/spec/version").ok_or_else(|| {
                    OpsError::Usage(format!(
                        "{file}: target `{name}` has no spec.version to add spec.retry after"
                    ))
                })?;
                Edit::InsertAfter(version.loc)
            }
        };
        let line = match edit {
            Edit::Replace(loc) | Edit::InsertAfter(loc) => loc.line,
        };
        by_file
            .entry(file.clone())
            .or_default()
            .push((line, retry.to_string(), edit));
        let was = recorded.targets.get(name).and_then(|r| {
            let last = r.last_attempt.as_ref()?;
            matches!(
                r.status,
                TargetStatus::Failed | TargetStatus::RolledBack | TargetStatus::Unknown
            )
            .then(|| {
                format!(
                    "held since its attempt to {} ended {}",
                    last.to,
                    last.outcome.map_or("unfinished", |o| o.as_str())
                )
            })
        });
        bumped.push(Bumped {
            target: name.clone(),
            file,
            retry,
            was,
        });
    }
    let mut contents: Vec<(String, Vec<u8>)> = Vec::new();
    for (file, mut edits) in by_file {
        let text = repo
            .read_file(head, &file)?
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OpsError::Usage(format!("{file} is not readable text")))?;
        let mut text = text.strip_prefix('\u{feff}').unwrap_or(&text).to_string();
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, value, edit) in edits {
            text = match edit {
                Edit::Replace(loc) => replace_scalar(&text, loc, &value),
                Edit::InsertAfter(loc) => insert_key_after(&text, loc, "retry", &value),
            }
            .map_err(|e| OpsError::Usage(format!("{file}: cannot set spec.retry: {e}")))?;
        }
        contents.push((file, text.into_bytes()));
    }
    let message = format!(
        "Retry {}\n\nRequested with `gantry retry`: bumps spec.retry, a change to each target's spec that\nre-arms its halted attempt and rollout. Reverting this commit withdraws the request.\n\n{}",
        names.join(", "),
        super::rollback::operator_trailers(repo, options.reason.as_deref())?
    );
    let change = match &options.branch {
        Some(name) => ChangeBranch::New {
            base: desired_branch.clone(),
            name: name.clone(),
        },
        None => ChangeBranch::Desired(desired_branch.clone()),
    };
    let signer = super::rollback::operator_signer(repo, &loaded.desired.config, options.branch.is_some())?;
    let files: Vec<(&str, &[u8])> = contents.iter().map(|(f, c)| (f.as_str(), c.as_slice())).collect();
    let commit = repo.commit_files_change_signed(&change, &files, &message, signer.as_ref(), |oid| {
        let check = load_commit(repo, oid).map_err(|e| e.to_string())?;
        if check.has_invalid() {
            Err(format!(
                "the retry commit would not validate: {}",
                check
                    .diagnostics
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        } else {
            Ok(())
        }
    })?;
    let on = match &change {
        ChangeBranch::Desired(b) => b.clone(),
        ChangeBranch::New { name, .. } => format!("new branch {name}"),
    };
    Ok(RetryReport {
        commit,
        on,
        targets: bumped,
    })
}

#[derive(Debug, Clone, Copy)]
enum Edit {
    /// `spec.retry` exists: replace its value.
    Replace(crate::manifest::document::Loc),
    /// Add `retry:` after the line of `spec.version` (block style only).
    InsertAfter(crate::manifest::document::Loc),
}

/// Inserts `key: value` as a new line after the block-style mapping entry whose value starts at
/// `loc`, with that entry's indentation.
fn insert_key_after(text: &str, loc: crate::manifest::document::Loc, key: &str, value: &str) -> Result<String, String> {
    let index = (loc.line as usize).checked_sub(1).ok_or("no location")?;
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let line = lines
        .get(index)
        .ok_or_else(|| format!("line {} is past the end", loc.line))?;
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    let entry = line.trim_start();
    if entry.starts_with('{')
        || !entry.contains(':')
        || line[..(loc.column as usize).saturating_sub(1).min(line.len())].contains('{')
    {
        return Err(format!(
            "line {}: spec is written in flow style; add `retry: 1` to it by hand",
            loc.line
        ));
    }
    let newline = if line.ends_with('\n') { "" } else { "\n" };
    lines[index].push_str(newline);
    lines.insert(index + 1, format!("{indent}{key}: {value}\n"));
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::document::Loc;

    #[test]
    fn inserts_retry_after_the_version_line_with_its_indentation() {
        let cases = [
            (
                "kind: Target\nspec:\n  component: a\n  version: \"1.0.0\"\n  suspend: false\n",
                4,
                Ok("kind: Target\nspec:\n  component: a\n  version: \"1.0.0\"\n  retry: 1\n  suspend: false\n"),
            ),
            (
                "spec:\n    version: 1.0.0",
                2,
                Ok("spec:\n    version: 1.0.0\n    retry: 1\n"),
            ),
            ("spec: { component: a, version: 1.0.0 }\n", 1, Err(())),
        ];
        for (text, line, want) in cases {
            let got = insert_key_after(text, Loc { line, column: 12 }, "retry", "1");
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(w), "{text:?}"),
                Err(()) => assert!(got.unwrap_err().contains("flow style"), "{text:?}"),
            }
        }
    }
}
