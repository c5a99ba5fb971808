//! The recorded state a command line run read, kept in `.git/gantry/cache/state` for the next
//! run at the same state tip (issue #17: reading and parsing 10,000 records was a third of a
//! cold `plan`'s CPU, for a state branch that had not moved since the previous command). The
//! daemon keeps its own in memory instead (`read::RecordCache`).
//!
//! # Guarantees
//! - **Exact**: the key is the state branch's tip commit (the hash of its whole tree) and the
//!   running binary ([`binary_identity`]: a rebuilt or upgraded gantry, which may parse records
//!   differently, misses). A state is kept only when it reads back from the file as the very
//!   state the records parsed to; anything else is not written.
//! - **Never trusted over the branch**: the branch is verified (state signing) before the cache
//!   is looked at, as for every read; the cache only stands in for parsing a verified tip.
//! - **Corruption is a miss**: the file carries a SHA-256 of its body and is replaced by rename
//!   (`walk_cache::write_digested`); a torn, edited, unreadable or older-format file is ignored
//!   and replaced, never an error.
//! - **Bounded**: one state (the last tip read), and nothing is written past
//!   [`MAX_FILE_BYTES`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::Oid;
use serde::{Deserialize, Serialize};

use crate::source::walk_cache::{binary_identity, read_digested, write_digested};
use crate::state::record::{RecordedState, RolloutRecord, TargetRecord};

/// The file's first line, before the digest of its body: the format, the tip and the binary,
/// so that a file of another tip is refused before its body is hashed or parsed.
fn magic(tip: Oid) -> String {
    format!("gantry-state-cache v1 {tip} {}", binary_identity().replace(' ', "_"))
}
/// The file is not written past this size (nor read: `walk_cache::MAX_CACHE_FILE_BYTES`).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// The cache file of the repository whose git directory is `git_dir`.
pub fn file_path(git_dir: &Path) -> PathBuf {
    git_dir.join("gantry").join("cache").join("state")
}

/// What the file holds (borrowed to write it, owned to read it).
#[derive(Serialize)]
struct BodyRef<'a> {
    targets: &'a BTreeMap<String, TargetRecord>,
    rollouts: Vec<&'a RolloutRecord>,
}

#[derive(Deserialize)]
struct Body {
    targets: BTreeMap<String, TargetRecord>,
    rollouts: Vec<RolloutRecord>,
}

/// The state kept for the tip `tip`, if the file holds it for this binary.
pub(super) fn load(git_dir: &Path, tip: Oid) -> Option<RecordedState> {
    let text = read_digested(&file_path(git_dir), &magic(tip))?;
    let body: Body = serde_json::from_str(&text).ok()?;
    Some(state_of(tip, body))
}

fn state_of(tip: Oid, body: Body) -> RecordedState {
    RecordedState {
        commit: Some(tip.to_string()),
        targets: body.targets,
        rollouts: body
            .rollouts
            .into_iter()
            .map(|r| ((r.component.clone(), r.version.clone()), r))
            .collect(),
    }
}

/// Keeps `state`, read at `tip`, for the next run: only when it reads back as itself, and on a
/// failure to write, a debug line (the next run parses the records again).
pub(super) fn store(git_dir: &Path, tip: Oid, state: &RecordedState) {
    let body = BodyRef {
        targets: &state.targets,
        rollouts: state.rollouts.values().collect(),
    };
    let Ok(text) = serde_json::to_string(&body) else {
        return;
    };
    if text.len() > MAX_FILE_BYTES {
        return;
    }
    // A value JSON cannot carry, or a record whose type reads back otherwise, is not kept; nor
    // a rollout kept under a version written otherwise than its record's (two files of versions
    // that compare equal: `2026-10-15` and `2026.10.15`), which a read back would key by its own.
    let keyed_as_written = state
        .rollouts
        .iter()
        .all(|((component, version), r)| *component == r.component && version.to_string() == r.version.to_string());
    let reads_back = keyed_as_written && serde_json::from_str::<Body>(&text).is_ok_and(|b| state_of(tip, b) == *state);
    if !reads_back {
        tracing::debug!("recorded state cache not saved: the state does not read back as itself");
        return;
    }
    if let Err(e) = write_digested(&file_path(git_dir), &magic(tip), &text) {
        tracing::debug!("recorded state cache not saved ({e})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::branch::read::{RecordCache, read_with};
    use crate::state::branch::tests::{BRANCH, now, rollout, target, temp_repo};
    use crate::state::branch::{Batch, StateWriter};

    /// A command line read: nothing kept in memory, the file consulted.
    fn cli_read(repo: &git2::Repository) -> RecordedState {
        std::sync::Arc::unwrap_or_clone(read_with(repo, BRANCH, &mut RecordCache::keeping_nothing()).unwrap())
    }

    fn write(repo: &git2::Repository, name: &str, version: &str) -> Oid {
        let mut batch = Batch::new();
        batch
            .upsert_target(name, target("billing", version))
            .upsert_rollout(rollout());
        StateWriter::open(repo, BRANCH)
            .unwrap()
            .commit(&batch, now())
            .unwrap()
            .unwrap()
    }

    /// Rewrites the file's body for `tip` (a valid digest): what the next read returns shows
    /// whether it came from the file.
    fn plant(git_dir: &Path, tip: Oid, edit: impl FnOnce(&mut serde_json::Value)) {
        let text = read_digested(&file_path(git_dir), &magic(tip)).expect("a cached state");
        let mut body: serde_json::Value = serde_json::from_str(&text).unwrap();
        edit(&mut body);
        write_digested(&file_path(git_dir), &magic(tip), &body.to_string()).unwrap();
    }

    /// The second command line read at a tip comes from the file, and equals the parse; a new
    /// tip is parsed again (the file of the old one is never taken for it).
    #[test]
    fn a_second_read_at_the_same_tip_comes_from_the_file_and_a_new_tip_is_parsed() {
        let (dir, repo) = temp_repo();
        let git_dir = repo.path().to_path_buf();
        let first = write(&repo, "acme", "1.0.0");
        let parsed = cli_read(&repo);
        assert_eq!(load(&git_dir, first), Some(parsed.clone()), "kept as parsed");
        assert_eq!(parsed.rollouts.len(), 1);
        plant(&git_dir, first, |b| b["targets"]["acme"]["status"] = "failed".into());
        assert_eq!(
            cli_read(&repo).targets["acme"].status,
            crate::state::TargetStatus::Failed,
            "read from the file"
        );

        let second = write(&repo, "acme", "1.1.0");
        let state = cli_read(&repo);
        assert_eq!(state.commit, Some(second.to_string()));
        assert_eq!(state.targets["acme"], target("billing", "1.1.0"));
        assert_eq!(load(&git_dir, first), None, "one state kept: the last tip's");
        assert_eq!(load(&git_dir, second), Some(state));
        drop(dir);
    }

    /// A torn or edited file (its digest no longer matches), or one another binary wrote, is a
    /// miss: the records are parsed again and the file replaced.
    #[test]
    fn a_damaged_or_foreign_file_is_a_miss_and_is_replaced() {
        let (_dir, repo) = temp_repo();
        let git_dir = repo.path().to_path_buf();
        let tip = write(&repo, "acme", "1.0.0");
        let parsed = cli_read(&repo);
        let path = file_path(&git_dir);
        let text = std::fs::read_to_string(&path).unwrap();

        std::fs::write(&path, text.replace("converged", "failed")).unwrap();
        assert_eq!(load(&git_dir, tip), None, "edited: the digest does not match");
        assert_eq!(cli_read(&repo), parsed);
        assert_eq!(load(&git_dir, tip), Some(parsed.clone()), "replaced");

        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert_eq!(cli_read(&repo), parsed, "torn");

        let (_, body) = text.split_once('\n').unwrap();
        let other = format!("gantry-state-cache v1 {tip} 0.0.1:1:1");
        write_digested(&path, &other, &body.replace("converged", "failed")).unwrap();
        assert_eq!(cli_read(&repo), parsed, "another binary's file");
        assert_eq!(load(&git_dir, tip), Some(parsed));
    }

    /// A cache path that is a link to `/dev/zero`, a FIFO or a file past the bound is a miss,
    /// read no further than the bound: not a hang, not gigabytes of memory (review of issue #17).
    #[test]
    fn a_cache_path_that_is_a_device_or_huge_is_a_miss() {
        let (_dir, repo) = temp_repo();
        write(&repo, "acme", "1.0.0");
        let parsed = cli_read(&repo);
        let path = file_path(repo.path());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert_eq!(cli_read(&repo), parsed, "a device");
        std::fs::remove_file(&path).unwrap();
        // mkfifo(1), tests only: opening a FIFO to read blocks until a writer comes.
        let made = std::process::Command::new("mkfifo").arg(&path).status().unwrap();
        assert!(made.success());
        assert_eq!(cli_read(&repo), parsed, "a FIFO");
        std::fs::remove_file(&path).unwrap();
        let huge = std::fs::File::create(&path).unwrap();
        huge.set_len(crate::source::walk_cache::MAX_CACHE_FILE_BYTES as u64 + 1)
            .unwrap();
        assert_eq!(cli_read(&repo), parsed, "past the bound");
    }

    /// Two rollout files whose versions compare equal but are written differently: the state
    /// keys both by the first one's text, which a read back from the file would not, so it is
    /// not kept.
    #[test]
    fn a_rollout_keyed_otherwise_than_its_record_is_not_kept() {
        let (_dir, repo) = temp_repo();
        let tip = write(&repo, "acme", "1.0.0");
        let mut state = cli_read(&repo);
        std::fs::remove_file(file_path(repo.path())).unwrap();
        let (_, mut record) = state.rollouts.pop_first().unwrap();
        let (dashed, dotted) = (
            crate::manifest::Version::parse("2026-10-15").unwrap(),
            crate::manifest::Version::parse("2026.10.15").unwrap(),
        );
        assert_eq!(dashed, dotted, "versions that compare equal");
        record.version = dotted;
        state.rollouts.insert((record.component.clone(), dashed), record);
        store(repo.path(), tip, &state);
        assert!(!file_path(repo.path()).exists());
    }

    /// A state that does not read back from JSON as itself is not kept.
    #[test]
    fn a_state_that_does_not_read_back_is_not_kept() {
        let (_dir, repo) = temp_repo();
        let tip = write(&repo, "acme", "1.0.0");
        let mut state = cli_read(&repo);
        std::fs::remove_file(file_path(repo.path())).unwrap();
        // Not what the tip holds: the commit names another tip.
        state.commit = Some("elsewhere".to_string());
        store(repo.path(), tip, &state);
        assert!(!file_path(repo.path()).exists());
    }
}
