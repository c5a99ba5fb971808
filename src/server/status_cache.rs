//! The daemon's status, computed once and served to `/api/status` and the page until something
//! it depends on changes (issue #12 item 8: each request recomputed everything, 2–4 s on a long
//! history, and the page asked every 5 s).
//!
//! # Guarantees
//! A cached status is served only while the desired branch, the state branch and the journal
//! directory are where they were when it was computed (two ref reads, a `stat` of the directory
//! and of each journal in it: a running attempt's current step is appended to its journal, which
//! changes no directory time, issue #15), and, with the system clock, for at most [`MAX_AGE`]
//! (windows open and soaks end with time alone). With a fixed `--now` only the first three
//! matter. Every pass stores the status it computed for its notifications.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use git2::Oid;

use crate::ops::status::{Projection, StatusReport, status_report};
use crate::source::WatchedRepo;
use crate::state::{Journal, RolloutRecord, read_recorded_shared, state_tip};

use super::{Shared, lock};

/// How long a status computed with the system clock is served.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// What the status was computed from (read it before computing the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    desired: Option<Oid>,
    state: Option<Oid>,
    journal: Option<SystemTime>,
    /// The journals' total size: it grows with every step started or completed.
    journal_bytes: u64,
}

/// A status and the recorded rollouts (newest first) the page shows with it.
#[derive(Debug)]
pub struct Snapshot {
    pub report: StatusReport,
    pub rollouts: Vec<RolloutRecord>,
}

struct Entry {
    key: Key,
    at: Instant,
    snapshot: Arc<Snapshot>,
}

/// The daemon's cached status (in [`Shared`]).
#[derive(Default)]
pub struct StatusCache {
    entry: Mutex<Option<Entry>>,
}

/// Where the inputs of the status are now.
pub fn key(shared: &Shared, repo: &WatchedRepo) -> Key {
    Key {
        desired: repo.branch_tip(&shared.config.desired_branch).ok(),
        state: state_tip(&repo.repo, &shared.config.state_branch).ok().flatten(),
        journal: std::fs::metadata(Journal::dir(repo.repo.path()))
            .and_then(|m| m.modified())
            .ok(),
        journal_bytes: std::fs::read_dir(Journal::dir(repo.repo.path()))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum(),
    }
}

impl StatusCache {
    /// The current status: the cached one when still valid, else computed now (and kept).
    ///
    /// # Errors
    /// A message when the repository or its state cannot be read.
    pub fn current(&self, shared: &Shared) -> Result<Arc<Snapshot>, String> {
        let repo = WatchedRepo::open(&shared.repo_path).map_err(|e| e.to_string())?;
        let key = key(shared, &repo);
        if let Some(entry) = lock(&self.entry).as_ref()
            && entry.key == key
            && (shared.now.is_some() || entry.at.elapsed() < MAX_AGE)
        {
            return Ok(Arc::clone(&entry.snapshot));
        }
        let report = status_report(&repo, None, shared.now(), Projection::Schedule).map_err(|e| e.to_string())?;
        self.store(shared, &repo, key, report)
    }

    /// Keeps `report`, computed by a pass from the inputs `key` (read before it).
    pub fn offer(&self, shared: &Shared, repo: &WatchedRepo, key: Key, report: StatusReport) {
        if let Err(e) = self.store(shared, repo, key, report) {
            tracing::debug!("status not cached: {e}");
        }
    }

    fn store(
        &self,
        shared: &Shared,
        repo: &WatchedRepo,
        key: Key,
        report: StatusReport,
    ) -> Result<Arc<Snapshot>, String> {
        // Shared with the state branch cache: only the rollouts are copied, not every record.
        let recorded = read_recorded_shared(&repo.repo, &shared.config.state_branch).map_err(|e| e.to_string())?;
        let mut rollouts: Vec<RolloutRecord> = recorded.rollouts.values().cloned().collect();
        rollouts.sort_by(|a, b| b.started.cmp(&a.started));
        let snapshot = Arc::new(Snapshot { report, rollouts });
        *lock(&self.entry) = Some(Entry {
            key,
            at: Instant::now(),
            snapshot: Arc::clone(&snapshot),
        });
        Ok(snapshot)
    }
}
