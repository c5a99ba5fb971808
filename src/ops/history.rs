//! History: the outcomes recorded on the state branch, newest first (`gantry history`), each
//! with who wrote the desired commit it reconciled and, for rollbacks, the operator and reason,
//! and its update type (issue #15).

use std::collections::HashMap;

use serde::Serialize;

use crate::policy::UpdateType;
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
    /// patch, minor or major for a version change; null for `config` and `remove`.
    pub update_type: Option<UpdateType>,
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
                update_type: update_type_of(&entry),
                entry,
                author: desired.author,
                committer: desired.committer,
                operator: desired.operator,
                reason: desired.reason,
            }
        })
        .collect())
}

/// The update type of a recorded attempt: by its action, or (records older than the action)
/// by whether the version changed.
pub fn update_type_of(entry: &HistoryEntry) -> Option<UpdateType> {
    let changes_version = match entry.detail.action.as_deref() {
        Some("config" | "remove") => false,
        Some(_) => true,
        None => entry.from.as_ref() != Some(&entry.to),
    };
    changes_version.then(|| crate::policy::update_type(entry.from.as_ref(), &entry.to))
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
    use super::{trailer, update_type_of};
    use crate::policy::UpdateType;
    use crate::state::{AttemptDetail, HistoryEntry, Outcome};

    #[test]
    fn update_type_follows_the_action() {
        let cases = [
            (Some("upgrade"), Some("1.2.0"), "2.0.0", Some(UpdateType::Major)),
            (Some("upgrade"), Some("1.2.0"), "1.3.0", Some(UpdateType::Minor)),
            (Some("downgrade"), Some("1.2.1"), "1.2.0", Some(UpdateType::Patch)),
            (Some("install"), None, "1.2.0", Some(UpdateType::Major)),
            (Some("config"), Some("1.2.0"), "1.2.0", None),
            (Some("remove"), Some("1.2.0"), "1.2.0", None),
            (None, Some("1.2.0"), "1.2.0", None),
            (None, Some("1.2.0"), "1.2.5", Some(UpdateType::Patch)),
        ];
        for (action, from, to, want) in cases {
            let entry = HistoryEntry {
                commit: String::new(),
                time: jiff::Timestamp::UNIX_EPOCH,
                target: "acme".into(),
                component: None,
                from: from.map(|v| v.parse().unwrap()),
                to: to.parse().unwrap(),
                outcome: Outcome::Succeeded,
                desired_commit: String::new(),
                attempt: String::new(),
                message: String::new(),
                urgency: None,
                emergency_reason: None,
                detail: AttemptDetail {
                    action: action.map(str::to_string),
                    ..AttemptDetail::default()
                },
            };
            assert_eq!(update_type_of(&entry), want, "{action:?} {from:?} → {to}");
        }
    }

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
