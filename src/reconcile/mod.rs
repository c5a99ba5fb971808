//! Reconcile: the imperative shell around the pure planner (fetch → plan → gate → execute → record).
pub mod load;
