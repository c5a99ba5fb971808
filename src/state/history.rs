//! History: the finished attempts recorded on the state branch, read back from commit trailers.
//!
//! Every outcome commit carries one block of `Gantry-*` trailers per finished attempt (format in
//! the [`state`](super) module docs). Commits without them (progress records, hand edits) are
//! skipped, and so is a block that is missing a field or has a value that does not parse, with
//! a warning: the audit trail is read as far as it can be.

use git2::{Oid, Repository, Sort};
use serde::Serialize;

use super::StateError;
use super::branch::{git_error, state_tip, trailer};
use super::record::Outcome;

/// One finished attempt as recorded on the state branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The state commit that recorded it.
    pub commit: String,
    /// That commit's time (the `now` it was recorded at).
    pub time: jiff::Timestamp,
    pub target: String,
    /// Absent in commits written before `Gantry-Component` was recorded.
    pub component: Option<String>,
    /// `None` for an install.
    pub from: Option<semver::Version>,
    pub to: semver::Version,
    pub outcome: Outcome,
    pub desired_commit: String,
    pub attempt: String,
    /// Why it ended this way (`Gantry-Message`); empty when none was given.
    pub message: String,
}

/// The outcomes recorded on `state_branch`, newest commit first; outcomes sharing a commit keep
/// the order the commit lists them in. With `target`, only that target's outcomes.
///
/// The walk follows first parents from the tip, so it is the branch's own line of commits. A
/// branch that does not exist has no history.
///
/// # Errors
/// [`StateError::InvalidBranchName`], or [`StateError::Git`] when a commit cannot be read;
/// [`StateError::UntrustedCommit`] / [`StateError::Rewritten`] when state signing is on and the
/// branch does not verify (`state::signing`).
pub fn read_history(
    repo: &Repository,
    state_branch: &str,
    target: Option<&str>,
) -> Result<Vec<HistoryEntry>, StateError> {
    super::signing::verify_branch(repo, state_branch)?;
    let Some(tip) = state_tip(repo, state_branch)? else {
        return Ok(Vec::new());
    };
    let walk_error = |e| git_error(state_branch, "walking the state branch", e);
    let mut walk = repo.revwalk().map_err(walk_error)?;
    walk.set_sorting(Sort::TOPOLOGICAL).map_err(walk_error)?;
    walk.simplify_first_parent().map_err(walk_error)?;
    walk.push(tip).map_err(walk_error)?;

    let mut entries = Vec::new();
    for oid in walk {
        let oid = oid.map_err(walk_error)?;
        let commit = repo
            .find_commit(oid)
            .map_err(|e| git_error(state_branch, format!("reading state commit {oid}"), e))?;
        let Ok(message) = commit.message() else {
            tracing::warn!(commit = %oid, "state commit message is not UTF-8; skipped in history");
            continue;
        };
        let time = jiff::Timestamp::from_second(commit.time().seconds()).unwrap_or_else(|_| {
            tracing::warn!(commit = %oid, "state commit time is out of range");
            jiff::Timestamp::UNIX_EPOCH
        });
        entries.extend(
            parse_outcomes(oid, time, message)
                .into_iter()
                .filter(|entry| target.is_none_or(|t| entry.target == t)),
        );
    }
    Ok(entries)
}

/// The outcome blocks of one commit message.
fn parse_outcomes(commit: Oid, time: jiff::Timestamp, message: &str) -> Vec<HistoryEntry> {
    let Ok(trailers) = git2::message_trailers_strs(message) else {
        return Vec::new();
    };
    // Split the trailers into blocks, each opened by Gantry-Target.
    let mut blocks: Vec<Vec<(&str, &str)>> = Vec::new();
    for (key, value) in trailers.iter() {
        if key.eq_ignore_ascii_case(trailer::TARGET) {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push((key, value.trim()));
        }
    }
    blocks
        .iter()
        .filter_map(|block| {
            let entry = parse_block(commit, time, block);
            if entry.is_none() {
                tracing::warn!(commit = %commit, ?block, "incomplete or invalid Gantry trailers; skipped in history");
            }
            entry
        })
        .collect()
}

fn parse_block(commit: Oid, time: jiff::Timestamp, block: &[(&str, &str)]) -> Option<HistoryEntry> {
    let get = |key: &str| block.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
    let from = match get(trailer::FROM)? {
        trailer::NO_VERSION => None,
        version => Some(semver::Version::parse(version).ok()?),
    };
    let outcome = get(trailer::OUTCOME)?;
    let outcome = [Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack]
        .into_iter()
        .find(|o| o.as_str() == outcome)?;
    Some(HistoryEntry {
        commit: commit.to_string(),
        time,
        target: get(trailer::TARGET)?.to_string(),
        component: get(trailer::COMPONENT).map(str::to_string),
        from,
        to: semver::Version::parse(get(trailer::TO)?).ok()?,
        outcome,
        desired_commit: get(trailer::DESIRED_COMMIT)?.to_string(),
        attempt: get(trailer::ATTEMPT)?.to_string(),
        message: get(trailer::MESSAGE).unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::branch::tests::{BRANCH, finished, hand_commit, now, target, temp_repo};
    use crate::state::{Batch, StateWriter};

    #[test]
    fn history_reads_outcomes_newest_first_and_filters_by_target() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        batch.upsert_target("acme", target("billing", "1.2.0"));
        batch.outcome(finished("acme", None, "1.2.0", Outcome::Succeeded));
        let first = writer.commit(&batch, now()).unwrap().unwrap();

        let mut batch = Batch::new();
        batch.upsert_rollout(crate::state::RolloutRecord {
            component: "billing".into(),
            version: "2.0.0".parse().unwrap(),
            started: "2026-02-03T11:00:00Z".into(),
            waves: Vec::new(),
            targets: Default::default(),
            failures: 0,
            halted: None,
        });
        writer.commit(&batch, now()).unwrap().unwrap();

        let later = now() + jiff::SignedDuration::from_hours(2);
        let mut batch = Batch::new();
        batch.outcome(finished("zen", Some("1.2.0"), "2.0.0", Outcome::Succeeded));
        let mut rolled_back = finished("acme", Some("1.2.0"), "2.0.0", Outcome::RolledBack);
        rolled_back.message = "health check http failed".into();
        batch.outcome(rolled_back);
        let third = writer.commit(&batch, later).unwrap().unwrap();

        let all = read_history(&repo, BRANCH, None).unwrap();
        let summary: Vec<_> = all
            .iter()
            .map(|e| (e.target.as_str(), e.outcome, e.commit.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("zen", Outcome::Succeeded, third.to_string()),
                ("acme", Outcome::RolledBack, third.to_string()),
                ("acme", Outcome::Succeeded, first.to_string()),
            ]
        );
        assert_eq!(
            all[1],
            HistoryEntry {
                commit: third.to_string(),
                time: later,
                target: "acme".into(),
                component: Some("billing".into()),
                from: Some("1.2.0".parse().unwrap()),
                to: "2.0.0".parse().unwrap(),
                outcome: Outcome::RolledBack,
                desired_commit: "4f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4".into(),
                attempt: "acme-20260203T100000Z".into(),
                message: "health check http failed".into(),
            }
        );
        assert_eq!(all[2].from, None);

        let acme = read_history(&repo, BRANCH, Some("acme")).unwrap();
        assert_eq!(
            acme.iter().map(|e| e.outcome).collect::<Vec<_>>(),
            [Outcome::RolledBack, Outcome::Succeeded]
        );
        assert!(read_history(&repo, BRANCH, Some("nobody")).unwrap().is_empty());
    }

    #[test]
    fn history_skips_commits_without_trailers_and_broken_blocks() {
        let (_dir, repo) = temp_repo();
        assert!(read_history(&repo, BRANCH, None).unwrap().is_empty());
        hand_commit(&repo, &[("README.md", "x\n")], "hand edit without trailers");
        hand_commit(
            &repo,
            &[("README.md", "y\n")],
            "hand edit\n\nGantry-Target: acme\nGantry-From: one\nGantry-To: 2.0.0\nGantry-Outcome: succeeded\n\
             Gantry-Desired-Commit: abc\nGantry-Attempt: a1\nGantry-Target: zen\nGantry-From: none\n\
             Gantry-To: 2.0.0\nGantry-Outcome: failed\nGantry-Desired-Commit: abc\nGantry-Attempt: a2\n",
        );
        let entries = read_history(&repo, BRANCH, None).unwrap();
        let summary: Vec<_> = entries
            .iter()
            .map(|e| (e.target.as_str(), e.component.as_deref(), e.outcome))
            .collect();
        assert_eq!(summary, [("zen", None, Outcome::Failed)]);
    }
}
