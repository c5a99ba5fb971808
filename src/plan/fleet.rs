//! The desired targets in the order the per-target pass plans them, each with its record on the
//! state branch, found once per plan (issue #17): the passes across targets (rollouts,
//! dependencies) reach an action's target and record by the action's index instead of
//! searching both 10,000-entry maps by name for every action.

use crate::manifest::{Desired, Target};
use crate::state::{RecordedState, TargetRecord};

use super::model::PlanInput;

/// Every desired target in the order of `desired.targets` (the order of the actions the
/// per-target pass returns), with its record.
pub(super) struct Fleet<'a> {
    desired: &'a Desired,
    recorded: &'a RecordedState,
    targets: Vec<&'a Target>,
    /// `records[i]`: what `recorded.targets` holds under `targets[i]`'s name, whatever its status.
    records: Vec<Option<&'a TargetRecord>>,
}

impl<'a> Fleet<'a> {
    pub(super) fn of(input: &PlanInput<'a>) -> Self {
        Self::joined_on(input, super::parallel::threads_for(input.desired.targets.len()))
    }

    /// [`Self::of`], the records found on `threads` threads (the result does not depend on it).
    pub(super) fn joined_on(input: &PlanInput<'a>, threads: usize) -> Self {
        let (desired, recorded) = (input.desired, input.recorded);
        let named: Vec<(&'a String, &'a Target)> = desired.targets.iter().collect();
        // Both maps are sorted by name: one walk through both finds every record; on a large
        // fleet each contiguous chunk of targets walks from its first name on, side by side
        // (issue #17: comparing 10,000 names of each map touched all of them, on one core).
        let chunks = crate::manifest::parallel::map_chunks(&named, threads, |chunk| {
            let Some((first, _)) = chunk.first() else {
                return Vec::new();
            };
            let from = (std::ops::Bound::Included(first.as_str()), std::ops::Bound::Unbounded);
            let mut records_by_name = recorded.targets.range::<str, _>(from).peekable();
            chunk
                .iter()
                .map(|(key, target)| {
                    while records_by_name.next_if(|(name, _)| name < key).is_some() {}
                    let joined = records_by_name.peek().filter(|(name, _)| name == key).map(|(_, r)| *r);
                    // The planner looks records up by the target's own name; a key that
                    // differs from it (never, for a validated `Desired`) is looked up the slow way.
                    if key.as_str() == target.name() {
                        joined
                    } else {
                        recorded.targets.get(target.name())
                    }
                })
                .collect::<Vec<_>>()
        });
        Fleet {
            desired,
            recorded,
            targets: named.into_iter().map(|(_, target)| target).collect(),
            records: chunks.into_iter().flatten().collect(),
        }
    }

    /// The desired targets, in the order of `desired.targets`.
    pub(super) fn targets(&self) -> &[&'a Target] {
        &self.targets
    }

    /// The state branch's record of each of [`Self::targets`] (same index), whatever its status.
    pub(super) fn records(&self) -> &[Option<&'a TargetRecord>] {
        &self.records
    }

    /// The desired target of the action at `index` among the actions planned from
    /// [`Self::targets`] (same index, so named `name`); by name past them (a removal).
    ///
    /// Taken by index without reading the target's name: the dependency and rollout passes ask
    /// for every action's target, and reading each name again from its manifest, scattered over
    /// the heap, was half of the dependency pass's own time on 10,000 targets (issue #17). So
    /// the caller passes the planned actions in their order, as [`super::plan`] does before it
    /// appends the removals and sorts them; a debug build checks the name.
    pub(super) fn target(&self, index: usize, name: &str) -> Option<&'a Target> {
        match self.targets.get(index) {
            Some(target) => {
                debug_assert_eq!(
                    target.name(),
                    name,
                    "the action at {index} is not the one planned for it"
                );
                Some(*target)
            }
            None => self.desired.targets.get(name),
        }
    }

    /// `recorded.targets.get(name)` for the action at `index`, taken by index as
    /// [`Self::target`] takes its target.
    pub(super) fn record(&self, index: usize, name: &str) -> Option<&'a TargetRecord> {
        match self.targets.get(index) {
            Some(target) => {
                debug_assert_eq!(
                    target.name(),
                    name,
                    "the action at {index} is not the one planned for it"
                );
                self.records[index]
            }
            None => self.recorded.targets.get(name),
        }
    }

    /// Asks for the target at `index` and its record to be brought into the cache, for a loop
    /// over the actions to read them a few actions later (see [`crate::prefetch`]).
    pub(super) fn fetch(&self, index: usize) {
        if let Some(target) = self.targets.get(index) {
            crate::prefetch::fetch(*target);
        }
        if let Some(Some(record)) = self.records.get(index) {
            crate::prefetch::fetch(*record);
        }
    }

    /// Asks for what the target at `index` points to (its manifest, its config's hash) and its
    /// record's kept config hash to be brought into the cache, read from the target and record
    /// [`Self::fetch`] asked for a few targets before.
    pub(super) fn fetch_pointed(&self, index: usize) {
        let Some(target) = self.targets.get(index) else {
            return;
        };
        crate::prefetch::fetch(std::sync::Arc::as_ptr(&target.manifest));
        crate::prefetch::fetch_bytes(target.config_hash.as_ptr(), target.config_hash.len());
        if let Some(hash) = self.records[index].and_then(|r| r.config.as_ref()?.kept_hash()) {
            crate::prefetch::fetch_bytes(hash.as_ptr(), hash.len());
        }
    }

    /// The records of targets no longer desired (whatever their status), in name order.
    pub(super) fn recorded_only(&self) -> impl Iterator<Item = (&'a String, &'a TargetRecord)> {
        // Both maps are sorted by name: one walk through both, no search per record.
        let mut desired = self.desired.targets.keys().peekable();
        self.recorded.targets.iter().filter(move |(name, _)| {
            while desired.next_if(|d| d.as_str() < name.as_str()).is_some() {}
            desired.peek().is_none_or(|d| d.as_str() != name.as_str())
        })
    }
}
