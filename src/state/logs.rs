//! Retention of step logs under `.git/gantry/logs/`: by count and by age (`[logs]` in
//! gantry.toml), so a reconciler running for months does not fill its disk with old output.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;

/// What one pruning did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Logs deleted because they were older than `max_age`.
    pub expired: usize,
    /// Logs deleted because more than `keep` newer ones exist.
    pub surplus: usize,
}

/// Deletes the `*.log` files of `dir` older than `max_age` at `now`, then all but the `keep`
/// newest (by modification time, then name). A missing directory has nothing to prune.
///
/// # Errors
/// The directory cannot be listed, or a log cannot be deleted.
pub fn prune(dir: &Path, keep: usize, max_age: Duration, now: Timestamp) -> std::io::Result<Pruned> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pruned::default()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(now.as_second()).unwrap_or(0));
    let mut logs: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") && entry.file_type()?.is_file() {
            logs.push((entry.metadata()?.modified()?, path));
        }
    }
    let mut pruned = Pruned::default();
    logs.retain(|(modified, path)| {
        let expired = now.duration_since(*modified).is_ok_and(|age| age > max_age);
        if expired && std::fs::remove_file(path).is_ok() {
            pruned.expired += 1;
        }
        !expired
    });
    logs.sort_by(|a, b| b.cmp(a));
    for (_, path) in logs.iter().skip(keep) {
        std::fs::remove_file(path)?;
        pruned.surplus += 1;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str, age: Duration, now: SystemTime) {
        let path = dir.join(name);
        std::fs::write(&path, "x").unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(now - age).unwrap();
    }

    /// Issue #12: nothing ever removed step logs. Retention by age and by count.
    #[test]
    fn prunes_expired_logs_then_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let now: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let now_sys = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_second() as u64);
        let day = Duration::from_secs(86_400);
        touch(dir.path(), "old.log", 40 * day, now_sys);
        touch(dir.path(), "a.log", 3 * day, now_sys);
        touch(dir.path(), "b.log", 2 * day, now_sys);
        touch(dir.path(), "c.log", day, now_sys);
        touch(dir.path(), "notes.txt", 400 * day, now_sys);
        let pruned = prune(dir.path(), 2, 30 * day, now).unwrap();
        assert_eq!(pruned, Pruned { expired: 1, surplus: 1 });
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b.log", "c.log", "notes.txt"]);
        assert_eq!(
            prune(&dir.path().join("missing"), 1, day, now).unwrap(),
            Pruned::default()
        );
    }
}
