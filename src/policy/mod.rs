//! Policy arithmetic that the planner consults: pure functions of manifests and `now`.
pub mod window;
