//! Stage timings for profiling: `GANTRY_TRACE_TIMINGS=1` prints how long each stage took to
//! stderr (`gantry timing: load.parse 123.4 ms`). Off by default and then costs one relaxed
//! load per stage; `bench/plan_10k.sh` uses it to show where the time goes.

use std::sync::OnceLock;
use std::time::Instant;

/// Whether `GANTRY_TRACE_TIMINGS` is set to something other than empty or `0`.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("GANTRY_TRACE_TIMINGS").is_some_and(|v| !v.is_empty() && v != "0"))
}

/// A running stage; prints its duration when dropped (or [`Stage::end`]ed).
#[must_use = "a stage is timed until it is dropped"]
pub struct Stage {
    name: &'static str,
    start: Option<Instant>,
}

/// Starts timing a stage (a no-op unless [`enabled`]).
pub fn stage(name: &'static str) -> Stage {
    Stage {
        name,
        start: enabled().then(Instant::now),
    }
}

impl Stage {
    /// Ends the stage now.
    pub fn end(self) {}
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            eprintln!(
                "gantry timing: {:<26} {:>8.1} ms{}",
                self.name,
                start.elapsed().as_secs_f64() * 1000.0,
                memory()
            );
        }
    }
}

/// `  rss 123 MB (peak 140 MB)` from `/proc/self/status`, where there is one.
fn memory() -> String {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return String::new();
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    format!("   rss {:>4} MB (peak {} MB)", field("VmRSS:"), field("VmHWM:"))
}
