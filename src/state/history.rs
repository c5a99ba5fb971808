//! History: the finished attempts recorded on the state branch, read back from commit trailers.
//!
//! Every outcome commit carries one block of `Gantry-*` trailers per finished attempt (format in
//! the [`state`](super) module docs). Commits without them (progress records, hand edits) are
//! skipped, and so is a block that is missing a field or has a value that does not parse, with
//! a warning: the audit trail is read as far as it can be.
//!
//! The trailers hold one line per fact; what an attempt looked like in full (its duration, the
//! approvers that counted, the failing step's output tail, the health analysis at the decision,
//! the whole message) is read from the records the same commit wrote (`targets/<target>.yaml`,
//! `rollouts/<component>@<version>.yaml`). Commits written before those fields existed, or whose
//! record is of another attempt, leave them empty: new fields are additive (issue #15).

use git2::{Oid, Repository, Sort};
use serde::Serialize;

use std::collections::BTreeMap;

use super::StateError;
use super::branch::{git_error, parse_record_text, state_tip, trailer};
use super::record::{AnalysisStatus, Outcome, RolloutRecord, TargetRecord};

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
    pub from: Option<crate::manifest::Version>,
    pub to: crate::manifest::Version,
    pub outcome: Outcome,
    pub desired_commit: String,
    pub attempt: String,
    /// Why it ended this way: the whole message from the target's record, or (in commits
    /// written before records kept it) the `Gantry-Message` trailer; empty when none was given.
    pub message: String,
    /// `emergency` when the attempt moved to an emergency release (`Gantry-Urgency`, issue
    /// #16); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub urgency: Option<String>,
    /// The emergency release's reason (`Gantry-Emergency-Reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_reason: Option<String>,
    /// What the records of the same commit say of the attempt.
    #[serde(flatten)]
    pub detail: AttemptDetail,
}

/// An attempt as its target's and rollout's records at the outcome commit describe it. Every
/// field is empty when the commit's record is missing, unreadable or of another attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AttemptDetail {
    /// `install`, `upgrade`, `downgrade`, `config`, `remove`, `analysis_rollback`.
    pub action: Option<String>,
    pub started: Option<jiff::Timestamp>,
    pub finished: Option<jiff::Timestamp>,
    /// `finished - started`, in milliseconds.
    pub duration_ms: Option<i64>,
    /// The approvers whose approvals counted (empty: none needed, or not recorded).
    pub approvers: Vec<String>,
    /// The last lines of output of the step that decided the outcome (secrets already redacted
    /// when it was recorded), verbatim.
    pub output_tail: Option<String>,
    /// The health analysis of the target's wave as it stood when the outcome was recorded.
    pub health: Option<HealthAtDecision>,
}

/// The rollout's analysis of one target (SPEC §8, `waves[].analysis`) at an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthAtDecision {
    /// The rollout (`component@version`) and wave the analysis belongs to.
    pub rollout: String,
    pub wave: String,
    /// The wave's analysis: rounds run and the instant of the latest.
    pub rounds: u32,
    pub last_round: Option<String>,
    /// The target's own verdict.
    pub status: AnalysisStatus,
    /// Per check: consecutive failed rounds.
    pub failures: BTreeMap<String, u32>,
    /// Per check: what its last round saw (a metric's value, an endpoint's status).
    pub last: BTreeMap<String, String>,
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
    let mut rollouts = RolloutCache::default();
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
        let mut files = commit.tree().ok().map(|root| CommitFiles {
            repo,
            commit: oid,
            root,
            dirs: std::collections::HashMap::new(),
        });
        for mut entry in parse_outcomes(oid, time, message)
            .into_iter()
            .filter(|entry| target.is_none_or(|t| entry.target == t))
        {
            if let Some(files) = files.as_mut() {
                attach_detail(files, &mut entry, &mut rollouts);
            }
            entries.push(entry);
        }
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

/// The rollout records read so far, parsed once per blob (`None`: unreadable). A rollout record
/// lists every target of its rollout, and each commit of a fleet's convergence holds many
/// outcomes of one rollout: parsed per outcome, the history of a 10,000-target rollout took eight
/// minutes (issue #17).
type RolloutCache = std::collections::HashMap<Oid, Option<std::rc::Rc<RolloutRecord>>>;

/// The files of one state commit, read by path, each directory's tree looked up once: the
/// `targets/` tree is as large as the fleet, and libgit2 keeps no tree that large in its cache,
/// so looked up per outcome it was read and hashed once per outcome (issue #17).
struct CommitFiles<'r> {
    repo: &'r Repository,
    commit: Oid,
    root: git2::Tree<'r>,
    dirs: std::collections::HashMap<String, Option<git2::Tree<'r>>>,
}

impl CommitFiles<'_> {
    /// The blob id at `path` (`dir/file`), if there is one.
    fn blob_id(&mut self, path: &str) -> Option<Oid> {
        let (dir, file) = path.rsplit_once('/')?;
        let (repo, root) = (self.repo, &self.root);
        let tree = self.dirs.entry(dir.to_owned()).or_insert_with(|| {
            let entry = root.get_path(std::path::Path::new(dir)).ok()?;
            repo.find_tree(entry.id()).ok()
        });
        let entry = tree.as_ref()?.get_name(file)?;
        (entry.kind() == Some(git2::ObjectType::Blob)).then(|| entry.id())
    }

    /// The text at `path`, if it is a UTF-8 file.
    fn text(&mut self, path: &str) -> Option<String> {
        let blob = self.repo.find_blob(self.blob_id(path)?).ok()?;
        std::str::from_utf8(blob.content()).ok().map(str::to_owned)
    }
}

/// Fills `entry.detail` (and the whole message) from the records its commit wrote.
fn attach_detail(files: &mut CommitFiles<'_>, entry: &mut HistoryEntry, rollouts: &mut RolloutCache) {
    let commit = files.commit;
    let record: Option<TargetRecord> = files.text(&TargetRecord::path(&entry.target)).and_then(|text| {
        parse_record_text(&text)
            .inspect_err(
                |e| tracing::warn!(%commit, target = %entry.target, "unreadable target record in history: {e}"),
            )
            .ok()
    });
    if let Some(attempt) = record
        .as_ref()
        .and_then(|r| r.last_attempt.as_ref())
        .filter(|a| a.id == entry.attempt)
    {
        let started = attempt.started.parse::<jiff::Timestamp>().ok();
        let finished = attempt
            .finished
            .as_deref()
            .and_then(|f| f.parse::<jiff::Timestamp>().ok());
        entry.detail.action = Some(attempt.action.clone());
        entry.detail.started = started;
        entry.detail.finished = finished;
        entry.detail.duration_ms = started
            .zip(finished)
            .and_then(|(s, f)| i64::try_from(f.duration_since(s).as_millis()).ok());
        entry.detail.approvers = attempt.approvers.clone();
        entry.detail.output_tail = Some(attempt.output_tail.clone());
        if !attempt.message.is_empty() {
            entry.message = attempt.message.clone();
        }
    }
    let Some(component) = entry.component.clone() else {
        return;
    };
    let versions = [Some(entry.to.clone()), entry.from.clone()];
    entry.detail.health = versions.into_iter().flatten().find_map(|version| {
        let blob = files.blob_id(&RolloutRecord::path(&component, &version))?;
        let repo = files.repo;
        let rollout = rollouts
            .entry(blob)
            .or_insert_with(|| {
                let blob = repo.find_blob(blob).ok()?;
                let text = std::str::from_utf8(blob.content()).ok()?;
                parse_record_text::<RolloutRecord>(text)
                    .inspect_err(|e| tracing::warn!(%commit, "unreadable rollout record in history: {e}"))
                    .ok()
                    .map(std::rc::Rc::new)
            })
            .clone()?;
        let wave_name = &rollout.targets.get(&entry.target)?.wave;
        let wave = rollout.waves.iter().find(|w| &w.name == wave_name)?;
        let analysis = wave.analysis.as_ref()?;
        let mine = analysis.targets.get(&entry.target)?;
        Some(HealthAtDecision {
            rollout: format!("{component}@{version}"),
            wave: wave.name.clone(),
            rounds: analysis.rounds,
            last_round: analysis.last_round.clone(),
            status: mine.status,
            failures: mine.failures.clone(),
            last: mine.last.clone(),
        })
    });
}

fn parse_block(commit: Oid, time: jiff::Timestamp, block: &[(&str, &str)]) -> Option<HistoryEntry> {
    let get = |key: &str| block.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| *v);
    let from = match get(trailer::FROM)? {
        trailer::NO_VERSION => None,
        version => Some(crate::manifest::Version::parse(version).ok()?),
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
        to: crate::manifest::Version::parse(get(trailer::TO)?).ok()?,
        outcome,
        desired_commit: get(trailer::DESIRED_COMMIT)?.to_string(),
        attempt: get(trailer::ATTEMPT)?.to_string(),
        message: get(trailer::MESSAGE).unwrap_or_default().to_string(),
        urgency: get(trailer::URGENCY).map(str::to_string),
        emergency_reason: get(trailer::EMERGENCY_REASON).map(str::to_string),
        detail: AttemptDetail::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::branch::tests::{BRANCH, finished, hand_commit, now, target, temp_repo};
    use crate::state::record::{AttemptRecord, RolloutTarget, WaveAnalysis, WaveRecord};
    use crate::state::{Batch, StateWriter};

    /// The attempt `id` upgrading billing 1.2.0 → 2.0.0, started 2026-02-03T10:00:00Z.
    fn upgrade_attempt(id: &str, finished: &str, outcome: Outcome, message: &str) -> AttemptRecord {
        AttemptRecord {
            id: id.into(),
            desired_commit: "4f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4".into(),
            from: Some("1.2.0".parse().unwrap()),
            to: "2.0.0".parse().unwrap(),
            action: "upgrade".into(),
            started: "2026-02-03T10:00:00Z".into(),
            finished: Some(finished.into()),
            outcome: Some(outcome),
            message: message.into(),
            config_hash: None,
            output_tail: String::new(),
            spec_hash: None,
            approvers: Vec::new(),
            emergency: None,
        }
    }

    /// The rollout of billing 2.0.0 with one wave, `canary`, under `analysis`, and `targets`.
    fn canary_rollout(analysis: WaveAnalysis, targets: BTreeMap<String, RolloutTarget>) -> RolloutRecord {
        RolloutRecord {
            component: "billing".into(),
            version: "2.0.0".parse().unwrap(),
            started: "2026-02-03T10:00:00Z".into(),
            waves: vec![WaveRecord {
                name: "canary".into(),
                started: Some("2026-02-03T10:00:00Z".into()),
                completed: None,
                analysis: Some(analysis),
            }],
            targets,
            failures: 0,
            halted: None,
        }
    }

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
                urgency: None,
                emergency_reason: None,
                detail: AttemptDetail::default(),
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

    /// Issue #15: history read only trailers, so a failed step said "exited with status 1" and
    /// a long message was cut at `…`. The records of the same commit give the whole message,
    /// the output tail verbatim, the duration, the approvers and the wave's health analysis.
    #[test]
    fn history_reads_the_attempt_detail_from_the_records_of_its_commit() {
        use crate::state::record::{RolloutTargetStatus, TargetAnalysis};
        let (_dir, repo) = temp_repo();
        let long = format!("step deploy failed: {}", "x".repeat(400));
        let tail = "line one\n  indented: two\n***\nlast line";
        let mut record = target("billing", "1.2.0");
        record.last_attempt = Some(AttemptRecord {
            output_tail: tail.into(),
            approvers: vec!["ada@example.com".into(), "bo@example.com".into()],
            ..upgrade_attempt(
                "acme-20260203T100000Z",
                "2026-02-03T10:02:03.5Z",
                Outcome::RolledBack,
                &long,
            )
        });
        let analysis = WaveAnalysis {
            status: AnalysisStatus::Failed,
            rounds: 3,
            last_round: Some("2026-02-03T10:02:00Z".into()),
            targets: BTreeMap::from([(
                "acme".to_string(),
                TargetAnalysis {
                    status: AnalysisStatus::Failed,
                    failures: BTreeMap::from([("p99".to_string(), 2)]),
                    last: BTreeMap::from([("p99".to_string(), "0.93".to_string())]),
                },
            )]),
            peers: BTreeMap::new(),
        };
        let mut batch = Batch::new();
        batch.upsert_target("acme", record);
        let mut rollout = canary_rollout(
            analysis,
            BTreeMap::from([(
                "acme".to_string(),
                RolloutTarget {
                    wave: "canary".into(),
                    status: RolloutTargetStatus::RolledBack,
                    started: "2026-02-03T10:00:00Z".into(),
                    finished: Some("2026-02-03T10:02:03Z".into()),
                },
            )]),
        );
        rollout.failures = 1;
        batch.upsert_rollout(rollout);
        let mut outcome = finished("acme", Some("1.2.0"), "2.0.0", Outcome::RolledBack);
        outcome.message = long.clone();
        batch.outcome(outcome);
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        writer.commit(&batch, now()).unwrap().unwrap();

        let entry = read_history(&repo, BRANCH, None).unwrap().remove(0);
        assert_eq!(
            entry.message, long,
            "the whole message, not the trailer's 200 characters"
        );
        assert_eq!(entry.detail.output_tail.as_deref(), Some(tail));
        assert_eq!(entry.detail.duration_ms, Some(123_500));
        assert_eq!(entry.detail.action.as_deref(), Some("upgrade"));
        assert_eq!(entry.detail.approvers, ["ada@example.com", "bo@example.com"]);
        let health = entry.detail.health.expect("the wave's analysis");
        assert_eq!(
            (health.rollout.as_str(), health.wave.as_str(), health.rounds),
            ("billing@2.0.0", "canary", 3)
        );
        assert_eq!(health.status, AnalysisStatus::Failed);
        assert_eq!(health.last["p99"], "0.93");
        assert_eq!(health.failures["p99"], 2);
    }

    /// Issue #17: the records are read once per commit and each rollout parsed once per blob,
    /// yet every entry gets its own commit's records: two commits of two outcomes each, the
    /// rollout's analysis at 3 rounds then 5, and acme's record naming each commit's attempt.
    #[test]
    fn each_entry_reads_the_records_of_its_own_commit() {
        use crate::state::record::{RolloutTargetStatus, TargetAnalysis};
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let names = ["acme", "zen"];
        for (pass, rounds) in [(1, 3), (2, 5)] {
            let mut batch = Batch::new();
            let mut record = target("billing", "2.0.0");
            record.last_attempt = Some(upgrade_attempt(
                &format!("acme-{pass}"),
                "2026-02-03T10:00:01Z",
                Outcome::Succeeded,
                &format!("pass {pass}"),
            ));
            batch.upsert_target("acme", record);
            let analysis = WaveAnalysis {
                status: AnalysisStatus::Running,
                rounds,
                last_round: None,
                targets: names
                    .iter()
                    .map(|n| {
                        let running = TargetAnalysis {
                            status: AnalysisStatus::Running,
                            failures: BTreeMap::new(),
                            last: BTreeMap::new(),
                        };
                        (n.to_string(), running)
                    })
                    .collect(),
                peers: BTreeMap::new(),
            };
            let targets = names
                .iter()
                .map(|n| {
                    let entry = RolloutTarget {
                        wave: "canary".into(),
                        status: RolloutTargetStatus::Succeeded,
                        started: "2026-02-03T10:00:00Z".into(),
                        finished: None,
                    };
                    (n.to_string(), entry)
                })
                .collect();
            batch.upsert_rollout(canary_rollout(analysis, targets));
            for name in names {
                let mut outcome = finished(name, Some("1.2.0"), "2.0.0", Outcome::Succeeded);
                outcome.attempt = format!("{name}-{pass}");
                batch.outcome(outcome);
            }
            writer.commit(&batch, now()).unwrap().unwrap();
        }
        let seen: Vec<(String, String, Option<u32>, Option<String>)> = read_history(&repo, BRANCH, None)
            .unwrap()
            .into_iter()
            .map(|e| {
                let rounds = e.detail.health.as_ref().map(|h| h.rounds);
                (e.target, e.attempt, rounds, e.detail.action.map(|_| e.message))
            })
            .collect();
        let row = |target: &str, attempt: &str, rounds: u32, message: Option<&str>| {
            (
                target.to_string(),
                attempt.to_string(),
                Some(rounds),
                message.map(str::to_string),
            )
        };
        assert_eq!(
            seen,
            [
                row("acme", "acme-2", 5, Some("pass 2")),
                row("zen", "zen-2", 5, None),
                row("acme", "acme-1", 3, Some("pass 1")),
                row("zen", "zen-1", 3, None),
            ]
        );
    }

    /// Older state branches still read (issue #15: new fields are additive): a record written
    /// before `approvers` existed, a commit without `Gantry-Component`, and a record of a later
    /// attempt than the outcome's leave the detail empty instead of failing or mixing attempts.
    #[test]
    fn history_reads_a_state_branch_written_by_the_old_format() {
        let (_dir, repo) = temp_repo();
        let old_record = "component: billing\nversion: 1.2.0\napplied_migrations: []\nstatus: failed\n\
            last_attempt:\n  id: a1\n  desired_commit: abc\n  from: 1.0.0\n  to: 1.2.0\n  action: upgrade\n  \
            started: 2026-02-03T10:00:00Z\n  finished: 2026-02-03T10:00:09Z\n  outcome: failed\n  \
            message: step deploy exited with status 1\n  output_tail: |\n    boom\nrollback_points: []\n";
        hand_commit(
            &repo,
            &[("targets/acme.yaml", old_record)],
            "billing 1.0.0 → 1.2.0 on acme: failed\n\nGantry-Target: acme\nGantry-From: 1.0.0\nGantry-To: 1.2.0\n\
             Gantry-Outcome: failed\nGantry-Desired-Commit: abc\nGantry-Attempt: a1\n\
             Gantry-Message: step deploy exited with status 1\n",
        );
        hand_commit(
            &repo,
            &[("targets/acme.yaml", &old_record.replace("id: a1", "id: a2"))],
            "billing 1.0.0 → 1.2.0 on acme: failed\n\nGantry-Target: acme\nGantry-From: 1.0.0\nGantry-To: 1.2.0\n\
             Gantry-Outcome: failed\nGantry-Desired-Commit: abc\nGantry-Attempt: a0\n\
             Gantry-Message: older\n",
        );
        let entries = read_history(&repo, BRANCH, None).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].attempt, "a0");
        assert_eq!(entries[0].detail, AttemptDetail::default(), "record of another attempt");
        assert_eq!(entries[0].message, "older");
        let old = &entries[1];
        assert_eq!(old.component, None);
        assert_eq!(old.detail.duration_ms, Some(9_000));
        assert_eq!(old.detail.output_tail.as_deref(), Some("boom\n"));
        assert!(old.detail.approvers.is_empty());
        assert_eq!(old.detail.health, None);
    }

    /// Issue #16: an attempt to an emergency release records `Gantry-Urgency: emergency` and
    /// its reason (on one line) in the outcome commit's trailers, and history reads them back;
    /// a normal attempt in the same commit has neither.
    #[test]
    fn emergency_trailers_are_written_and_read_back() {
        let (_dir, repo) = temp_repo();
        let mut writer = StateWriter::open(&repo, BRANCH).unwrap();
        let mut batch = Batch::new();
        let mut hotfix = finished("acme", Some("1.2.0"), "1.2.1", Outcome::Succeeded);
        hotfix.emergency = Some("CVE-2026-0001:\nparser overflow".into());
        batch.outcome(hotfix);
        batch.outcome(finished("zen", Some("1.2.0"), "1.3.0", Outcome::Succeeded));
        let commit = writer.commit(&batch, now()).unwrap().unwrap();
        let message = repo.find_commit(commit).unwrap().message().unwrap().to_string();
        assert!(
            message.contains(
                "Gantry-Attempt: acme-20260203T100000Z\nGantry-Urgency: emergency\nGantry-Emergency-Reason: CVE-2026-0001: parser overflow\n"
            ),
            "{message}"
        );
        assert_eq!(message.matches("Gantry-Urgency").count(), 1, "{message}");
        let all = read_history(&repo, BRANCH, None).unwrap();
        let by = |t: &str| all.iter().find(|e| e.target == t).unwrap();
        assert_eq!(by("acme").urgency.as_deref(), Some("emergency"));
        assert_eq!(
            by("acme").emergency_reason.as_deref(),
            Some("CVE-2026-0001: parser overflow")
        );
        assert_eq!(
            (by("zen").urgency.as_deref(), by("zen").emergency_reason.as_deref()),
            (None, None)
        );
        let json = serde_json::to_value(by("zen")).unwrap();
        assert!(
            json.get("urgency").is_none() && json.get("emergency_reason").is_none(),
            "{json}"
        );
    }
}
