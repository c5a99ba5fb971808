//! Agents that pull, one per host: `--selector KEY=VALUE` picks the targets an agent runs, and
//! claims on the shared state branch keep every rollout rule true across agents.
//!
//! # The claim protocol (docs/SPEC.md §8, "Agents")
//! Before starting attempts, an agent (holding its own repository lock, its state branch just
//! made the remote's) writes `claims/<target>.yaml` for each ready target it may start, in one
//! commit on the state tip, and pushes it **fast-forward only**. The push is the
//! compare-and-swap: it succeeds only if nobody pushed since the agent fetched, so two agents can
//! never both take the last free `maxParallel` slot. On rejection the claim commit is dropped,
//! the remote's state fetched, the plan's wants counted again, and the claim retried. Only
//! claimed targets run. After the pass the agent removes its claims of finished targets in a
//! commit published with its outcomes.
//!
//! # Guarantees
//! - A target claimed by another agent is never claimed, live or expired: only the claimant
//!   (which resumes the attempt from its journal when it restarts) may finish it, so an attempt
//!   is never started twice.
//! - `maxParallel` counts live claims of every agent under the same policy.
//! - A claim expires after [`CLAIM_LEASE`]; expiry frees the `maxParallel` slot (so a dead agent
//!   does not stall the fleet forever), never the target.
//! - Waves, soak, `maxFailures` and halts are read from the recorded state, which every agent
//!   adopts from the remote before planning, so they hold across agents as in one process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{Oid, Repository};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::manifest::Labels;
use crate::source::remote::{Pushed, Remote};
use crate::source::sync::{self, SyncError};

/// How long a claim holds a `maxParallel` slot without its agent finishing it.
pub const CLAIM_LEASE: SignedDuration = SignedDuration::from_hours(1);
/// Where claims live on the state branch.
pub const CLAIMS_DIR: &str = "claims";

/// `--selector KEY=VALUE` (repeatable): a target matches when it has every pair as a label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(pub Vec<(String, String)>);

impl Selector {
    /// Parses one `KEY=VALUE`.
    ///
    /// # Errors
    /// A message saying what is expected.
    pub fn parse_pair(text: &str) -> Result<(String, String), String> {
        match text.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
            _ => Err(format!("`{text}` is not KEY=VALUE (for example --selector host=web-1)")),
        }
    }

    /// Whether there is nothing to select by (every target matches).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether labels have every pair.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// The desired targets whose labels match `selector` (`--selector` on `status` and `plan`).
///
/// # Errors
/// The desired branch cannot be read.
pub fn selected_names(
    repo: &crate::source::WatchedRepo,
    selector: &Selector,
) -> Result<BTreeSet<String>, crate::source::SourceError> {
    let head = repo.branch_tip(&repo.desired_branch_hint())?;
    let loaded = crate::reconcile::load::load_commit(repo, head)?;
    Ok(loaded
        .desired
        .targets
        .iter()
        .filter(|(_, t)| selector.matches(&t.manifest.labels))
        .map(|(name, _)| name.clone())
        .collect())
}

/// `claims/<target>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub target: String,
    pub agent: String,
    /// The governing policy (`None`: the built-in one); `maxParallel` counts per policy.
    pub policy: Option<String>,
    pub claimed: Timestamp,
    pub expires: Timestamp,
}

/// A ready action an agent would like to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub target: String,
    pub policy: Option<String>,
    /// The policy's `maxParallel`.
    pub limit: u32,
}

/// What [`grant`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Targets this agent may start (new claims, and claims it already held).
    pub granted: Vec<String>,
    /// Wanted targets another agent holds.
    pub held_elsewhere: Vec<String>,
    /// Wanted targets without a free slot now.
    pub no_slot: Vec<String>,
}

/// Decides which wanted targets `me` may claim, in order (pure).
pub fn grant(claims: &[Claim], wanted: &[Wanted], me: &str, now: Timestamp) -> Grants {
    let mut grants = Grants::default();
    let by_target: BTreeMap<&str, &Claim> = claims.iter().map(|c| (c.target.as_str(), c)).collect();
    let mut used: BTreeMap<Option<String>, u32> = BTreeMap::new();
    for claim in claims.iter().filter(|c| c.expires > now) {
        *used.entry(claim.policy.clone()).or_default() += 1;
    }
    for want in wanted {
        match by_target.get(want.target.as_str()) {
            Some(c) if c.agent != me => grants.held_elsewhere.push(want.target.clone()),
            Some(c) => {
                // Ours already (a resumed attempt): it holds its slot if live; re-take one if not.
                if c.expires <= now {
                    let n = used.entry(want.policy.clone()).or_default();
                    if *n >= want.limit.max(1) {
                        grants.no_slot.push(want.target.clone());
                        continue;
                    }
                    *n += 1;
                }
                grants.granted.push(want.target.clone());
            }
            None => {
                let n = used.entry(want.policy.clone()).or_default();
                if *n >= want.limit.max(1) {
                    grants.no_slot.push(want.target.clone());
                } else {
                    *n += 1;
                    grants.granted.push(want.target.clone());
                }
            }
        }
    }
    grants
}

/// The claims on the state branch's tip.
///
/// # Errors
/// git failures; an unreadable claim file is an error naming it (claims are written by gantry);
/// an untrusted state branch (`state::signing`), with its message.
pub fn read_claims(repo: &Repository, state_branch: &str) -> Result<Vec<Claim>, git2::Error> {
    // Claims decide who may start a target: read them only from a verified branch (issue #18).
    crate::state::signing::verify_branch(repo, state_branch).map_err(|e| git2::Error::from_str(&e.to_string()))?;
    let Ok(tip) = repo.refname_to_id(&format!("refs/heads/{state_branch}")) else {
        return Ok(Vec::new());
    };
    let tree = repo.find_commit(tip)?.tree()?;
    let Ok(entry) = tree.get_path(Path::new(CLAIMS_DIR)) else {
        return Ok(Vec::new());
    };
    let dir = repo.find_tree(entry.id())?;
    let mut claims = Vec::new();
    for entry in dir.iter() {
        let blob = repo.find_blob(entry.id())?;
        let text = String::from_utf8_lossy(blob.content());
        let claim: Claim = serde_saphyr::from_str(&text).map_err(|e| {
            git2::Error::from_str(&format!(
                "{state_branch}:{CLAIMS_DIR}/{}: not a claim: {e}",
                entry.name().unwrap_or("?")
            ))
        })?;
        claims.push(claim);
    }
    Ok(claims)
}

/// This repository's agent id (`.git/gantry/agent-id`, made once: host name and a random part),
/// stable across restarts so a restarted agent recognises its own claims.
///
/// # Errors
/// I/O errors on `.git/gantry`.
pub fn agent_id(git_dir: &Path) -> std::io::Result<String> {
    let path = git_dir.join("gantry").join("agent-id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && !text.trim().is_empty()
    {
        return Ok(text.trim().to_string());
    }
    use sha2::Digest;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "host".into());
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let seed = format!(
        "{host}{}{}{}",
        std::process::id(),
        Timestamp::now().as_nanosecond(),
        git_dir.display()
    );
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let id = format!("{}-{suffix}", if host.is_empty() { "host" } else { &host });
    std::fs::create_dir_all(path.parent().unwrap_or(git_dir))?;
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, format!("{id}\n"))?;
    std::fs::rename(&temp, &path)?;
    Ok(id)
}

/// Commits `changes` (`claims/<target>.yaml` → content, or `None` to remove) on the local state
/// tip (compare-and-swap on the local ref); the new tip and the old one.
fn commit_claims(
    repo: &Repository,
    state_branch: &str,
    changes: &[(String, Option<String>)],
    message: &str,
    now: Timestamp,
) -> Result<Option<(Oid, Option<Oid>)>, git2::Error> {
    if changes.is_empty() {
        return Ok(None);
    }
    let local = format!("refs/heads/{state_branch}");
    let old = repo.refname_to_id(&local).ok();
    let parent = old.map(|id| repo.find_commit(id)).transpose()?;
    let base = match &parent {
        Some(p) => p.tree()?,
        None => repo.find_tree(repo.treebuilder(None)?.write()?)?,
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (target, content) in changes {
        let path = format!("{CLAIMS_DIR}/{target}.yaml");
        match content {
            Some(text) => update.upsert(path, repo.blob(text.as_bytes())?, git2::FileMode::Blob),
            None => update.remove(path),
        };
    }
    let tree = repo.find_tree(update.create_updated(repo, &base)?)?;
    if Some(tree.id()) == parent.as_ref().map(|p| p.tree_id()) {
        return Ok(None);
    }
    let signature = git2::Signature::new("gantry", "gantry@localhost", &git2::Time::new(now.as_second(), 0))?;
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let id = crate::state::signing::commit(repo, &signature, &signature, message, &tree, &parents)?;
    match old {
        Some(old) => repo.reference_matching(&local, id, true, old, message)?,
        None => repo.reference(&local, id, false, message)?,
    };
    if let Err(e) = crate::state::signing::wrote(repo, state_branch, old, id) {
        tracing::warn!(branch = state_branch, "claims commit {id} not pinned as verified: {e}");
    }
    Ok(Some((id, old)))
}

/// Claims as many of `wanted` as rules allow, by compare-and-swap on the remote's state branch.
/// Returns what [`grant`] gave (every granted target is claimed on the remote).
///
/// # Errors
/// [`SyncError`] when the remote cannot be reached or keeps moving.
pub fn claim(
    repo: &Repository,
    remote: &Remote<'_>,
    state_branch: &str,
    me: &str,
    wanted: &[Wanted],
    now: Timestamp,
) -> Result<Grants, SyncError> {
    const TRIES: usize = 8;
    let local = format!("refs/heads/{state_branch}");
    let err = |source: git2::Error| SyncError::Local {
        remote: remote.name().to_string(),
        what: format!("claims on {state_branch}"),
        source,
    };
    let mut last = String::new();
    for _ in 0..TRIES {
        sync::sync_state(repo, remote, state_branch)?;
        let claims = read_claims(repo, state_branch).map_err(err)?;
        let grants = grant(&claims, wanted, me, now);
        let expires = now.checked_add(CLAIM_LEASE).unwrap_or(now);
        let mut changes = Vec::new();
        for target in &grants.granted {
            let current = claims.iter().find(|c| &c.target == target);
            if current.is_some_and(|c| c.expires > now) {
                continue; // Ours and live: nothing to write.
            }
            let want = wanted.iter().find(|w| &w.target == target);
            let claim = Claim {
                target: target.clone(),
                agent: me.to_string(),
                policy: want.and_then(|w| w.policy.clone()),
                claimed: now,
                expires,
            };
            let text = serde_saphyr::to_string(&claim).map_err(|e| err(git2::Error::from_str(&e.to_string())))?;
            changes.push((target.clone(), Some(text)));
        }
        let message = format!(
            "claim {} for agent {me}\n\nGantry-Claim-Agent: {me}\n",
            changes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
        );
        let Some((new, old)) = commit_claims(repo, state_branch, &changes, &message, now).map_err(err)? else {
            return Ok(grants);
        };
        match remote.push(&[format!("{local}:{local}")])? {
            Pushed::Accepted => {
                let _ = repo.reference(
                    &format!("refs/remotes/{}/{state_branch}", remote.name()),
                    new,
                    true,
                    "gantry: pushed claims",
                );
                return Ok(grants);
            }
            Pushed::Rejected(why) => {
                // Someone moved the remote since we fetched: drop our claim, count again.
                last = why
                    .iter()
                    .map(|(r, w)| format!("{r}: {w}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                match old {
                    Some(old) => {
                        repo.reference_matching(&local, old, true, new, "gantry: drop a refused claim")
                            .map_err(err)?;
                    }
                    None => repo.find_reference(&local).and_then(|mut r| r.delete()).map_err(err)?,
                }
                tracing::info!(agent = me, "claim refused (the remote moved); counting again");
            }
        }
    }
    Err(SyncError::Rejected {
        remote: remote.name().to_string(),
        branch: state_branch.to_string(),
        tries: TRIES,
        detail: last,
    })
}

/// Removes this agent's claims except on `keep` (targets with unfinished attempts), as a local
/// commit published with the pass's outcomes.
///
/// # Errors
/// git failures.
pub fn release(
    repo: &Repository,
    state_branch: &str,
    me: &str,
    keep: &BTreeSet<String>,
    now: Timestamp,
) -> Result<bool, git2::Error> {
    let claims = read_claims(repo, state_branch)?;
    let changes: Vec<(String, Option<String>)> = claims
        .iter()
        .filter(|c| c.agent == me && !keep.contains(&c.target))
        .map(|c| (c.target.clone(), None))
        .collect();
    let message = format!(
        "release {} for agent {me}\n\nGantry-Claim-Agent: {me}\n",
        changes.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
    );
    Ok(commit_claims(repo, state_branch, &changes, &message, now)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_second(1_790_000_000 + minutes * 60).unwrap()
    }

    fn claim(target: &str, agent: &str, policy: &str, expires: i64) -> Claim {
        Claim {
            target: target.into(),
            agent: agent.into(),
            policy: Some(policy.into()),
            claimed: at(0),
            expires: at(expires),
        }
    }

    fn want(target: &str, policy: &str, limit: u32) -> Wanted {
        Wanted {
            target: target.into(),
            policy: Some(policy.into()),
            limit,
        }
    }

    #[test]
    fn grants() {
        let now = at(10);
        for (name, claims, wanted, granted, elsewhere, no_slot) in [
            (
                "free slot",
                vec![],
                vec![want("t1", "p", 1)],
                vec!["t1"],
                vec![],
                vec![],
            ),
            (
                "the last slot goes to one",
                vec![],
                vec![want("t1", "p", 1), want("t2", "p", 1)],
                vec!["t1"],
                vec![],
                vec!["t2"],
            ),
            (
                "another agent's live claim takes the slot",
                vec![claim("x", "b", "p", 60)],
                vec![want("t1", "p", 1)],
                vec![],
                vec![],
                vec!["t1"],
            ),
            (
                "other policies do not count",
                vec![claim("x", "b", "q", 60)],
                vec![want("t1", "p", 1)],
                vec!["t1"],
                vec![],
                vec![],
            ),
            (
                "an expired claim frees its slot",
                vec![claim("x", "b", "p", 5)],
                vec![want("t1", "p", 1)],
                vec!["t1"],
                vec![],
                vec![],
            ),
            (
                "but never its target",
                vec![claim("t1", "b", "p", 5)],
                vec![want("t1", "p", 1)],
                vec![],
                vec!["t1"],
                vec![],
            ),
            (
                "our own live claim is kept (resume)",
                vec![claim("t1", "me", "p", 60)],
                vec![want("t1", "p", 1), want("t2", "p", 1)],
                vec!["t1"],
                vec![],
                vec!["t2"],
            ),
            (
                "maxParallel 2 across agents",
                vec![claim("x", "b", "p", 60)],
                vec![want("t1", "p", 2), want("t2", "p", 2)],
                vec!["t1"],
                vec![],
                vec!["t2"],
            ),
        ] {
            let g = grant(&claims, &wanted, "me", now);
            assert_eq!(g.granted, granted, "{name}");
            assert_eq!(g.held_elsewhere, elsewhere, "{name}");
            assert_eq!(g.no_slot, no_slot, "{name}");
        }
    }

    #[test]
    fn selectors() {
        let labels: Labels = [
            ("host".to_string(), "a".to_string()),
            ("ring".to_string(), "0".to_string()),
        ]
        .into_iter()
        .collect();
        for (pairs, want) in [
            (vec![], true),
            (vec![("host", "a")], true),
            (vec![("host", "a"), ("ring", "0")], true),
            (vec![("host", "b")], false),
            (vec![("zone", "a")], false),
        ] {
            let s = Selector(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
            assert_eq!(s.matches(&labels), want, "{s}");
        }
        assert_eq!(Selector::parse_pair("host=a").unwrap(), ("host".into(), "a".into()));
        assert!(Selector::parse_pair("host").is_err());
        assert!(Selector::parse_pair("=a").is_err());
    }
}
