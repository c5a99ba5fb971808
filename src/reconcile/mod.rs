//! Reconcile: the imperative shell around the pure planner (fetch → plan → gate → execute → record).
pub mod analysis;
pub mod apply;
pub mod attempt;
pub mod load;
pub mod observe;
pub mod program;
pub mod runtime;
pub mod template_cache;
