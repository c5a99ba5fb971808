//! History: the outcomes recorded on the state branch, newest first (`gantry history`), each
//! with who wrote the desired commit it reconciled and, for rollbacks, the operator and reason.

use std::collections::HashMap;

use serde::Serialize;

use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::{HistoryEntry, read_history};

use super::rollback::{OPERATOR_TRAILER, REASON_TRAILER};
use super::{OpsError, resolve_commit};

/// One recorded outcome with what its desired commit says about who and why.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryRecord {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    /// The desired commit's author, `Name <email>` (null when the commit is not in the repository).
    pub author: Option<String>,
    /// The desired commit's committer, `Name <email>`.
    pub committer: Option<String>,
    /// The `Gantry-Operator` trailer of the desired commit (a `gantry rollback` writes it).
    pub operator: Option<String>,
    /// The `Gantry-Reason` trailer of the desired commit (`gantry rollback --reason`).
    pub reason: Option<String>,
}

/// Recorded outcomes, newest first, of every target or of `target`.
///
/// The state branch is the one the desired branch's `gantry.toml` names; a repository without a
/// desired branch yet uses the default name.
///
/// # Errors
/// The repository or the state branch cannot be read.
pub fn history(repo: &WatchedRepo, target: Option<&str>) -> Result<Vec<HistoryRecord>, OpsError> {
    let state_branch = match resolve_commit(repo, None) {
        Ok(commit) => load_commit(repo, commit)?.desired.config.state_branch,
        Err(_) => crate::manifest::RepoConfig::default().state_branch,
    };
    let entries = read_history(&repo.repo, &state_branch, target)?;
    let mut commits: HashMap<String, DesiredCommit> = HashMap::new();
    Ok(entries
        .into_iter()
        .map(|entry| {
            let desired = commits
                .entry(entry.desired_commit.clone())
                .or_insert_with(|| DesiredCommit::read(repo, &entry.desired_commit))
                .clone();
            HistoryRecord {
                entry,
                author: desired.author,
                committer: desired.committer,
                operator: desired.operator,
                reason: desired.reason,
            }
        })
        .collect())
}

/// What a desired commit says; all `None` when it is gone (a force-pushed branch).
#[derive(Debug, Clone, Default)]
struct DesiredCommit {
    author: Option<String>,
    committer: Option<String>,
    operator: Option<String>,
    reason: Option<String>,
}

impl DesiredCommit {
    fn read(repo: &WatchedRepo, id: &str) -> Self {
        let Some(commit) = git2::Oid::from_str(id)
            .ok()
            .and_then(|oid| repo.repo.find_commit(oid).ok())
        else {
            return DesiredCommit::default();
        };
        let person = |s: git2::Signature| {
            format!(
                "{} <{}>",
                String::from_utf8_lossy(s.name_bytes()),
                String::from_utf8_lossy(s.email_bytes())
            )
        };
        let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
        DesiredCommit {
            author: Some(person(commit.author())),
            committer: Some(person(commit.committer())),
            operator: trailer(&message, OPERATOR_TRAILER),
            reason: trailer(&message, REASON_TRAILER),
        }
    }
}

/// The value of trailer `key` in the message's last paragraph.
fn trailer(message: &str, key: &str) -> Option<String> {
    let last = message.trim_end().rsplit("\n\n").next()?;
    last.lines()
        .filter_map(|l| l.split_once(": "))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::trailer;

    #[test]
    fn trailers_come_from_the_last_paragraph() {
        let cases = [
            (
                "Roll back a\n\nbody\n\nGantry-Reason: p99 latency\n",
                Some("p99 latency"),
            ),
            ("Roll back a\n\nGantry-Reason: not trailer\n\nbody\n", None),
            ("subject only", None),
        ];
        for (message, want) in cases {
            assert_eq!(trailer(message, "Gantry-Reason").as_deref(), want, "{message:?}");
        }
    }
}
