//! The gantry binary: everything happens in the library's `cli` module.
fn main() {}
