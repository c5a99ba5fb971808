//! High availability on etcd (issue #14): the members of a shard elect one leader with an etcd
//! lease; only the leader reconciles, and every journal write (so every step start) is an etcd
//! transaction fenced by the leader's election key.
//!
//! # Keys (all under `/gantry/shards/<shard>/`)
//! - `leader`: the member name, put with the member's lease only if absent (create-revision 0).
//!   Its create revision is the **fence**: it changes whenever leadership does.
//! - `selectors`: the shard's `--selector` set, written by its first member.
//! - `journal/<attempt>`: the whole journal of an in-flight attempt (same JSON lines as the file).
//!
//! # Expected flow
//! [`Cluster::join`] connects, checks the selectors, grants a lease and campaigns in a task
//! ([`Cluster::run`]): keep the lease alive every TTL/4, and while standby try the `leader` key
//! every TTL/4. On becoming leader (a new **epoch**): ask the daemon for a pass. Every pass starts
//! with [`Cluster::begin_pass`], which skips it on a standby and, on the first pass of an epoch,
//! copies the shard's journals from etcd into the local journal directory (etcd is
//! authoritative) before anything runs.
//!
//! # Guarantees
//! - A journal write succeeds only inside a transaction comparing `leader`'s create revision
//!   with the one this member won: after its lease expired (kill -9, SIGSTOP longer than the
//!   TTL, a partition) the comparison fails and the step does not start. Locally it is not even
//!   tried unless the pass restored the journals of the current epoch.
//! - Locally, leadership is trusted only until `send time of the last answered keep-alive + TTL`
//!   (monotonic clock, which runs on during SIGSTOP), so a member that cannot renew stops starting
//!   steps at once, before etcd's own expiry, and a resumed member does not act on a stale view.
//! - No quorum: every transaction fails or times out, so no member starts a step; the error is
//!   shown in `/api/daemon` (`cluster.etcd_error`). Quorum back: the loop carries on by itself.
//!
//! # Talking to etcd
//! Through etcd's v3 JSON gRPC-gateway ([`etcd`]): the HTTP API etcd documents and serves on its
//! client URLs (`/v3/kv/txn`, `/v3/lease/keepalive`, …). It needs no protoc and no generated
//! code, and the blocking `ureq` client the crate already has; requests run on blocking threads.
//!
//! # Residual risk (docs/SPEC.md §8 "High availability")
//! A step already running when leadership is lost runs to its end (or its timeout); a new leader
//! resumes that attempt per `onInterrupt`, which for the interrupted step can overlap it if the
//! old leader was paused rather than killed. A step whose completion did not reach etcd is an
//! interrupted step for the next leader (run again or rolled back, as after a crash, SPEC §4).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use self::etcd::{Client, PostError, TxnAnswer};

use crate::ops::agents::Selector;

mod etcd;

/// How a daemon joins a shard (`gantry daemon --etcd … --shard … --lease-ttl …`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub endpoints: Vec<String>,
    pub shard: String,
    pub lease_ttl: Duration,
}

/// Why a member could not join or act.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `--shard` is not a usable name.
    #[error("--shard {0:?}: use letters, digits, '-', '_' or '.' (at most 64)")]
    Shard(String),
    /// `--lease-ttl` is too short for etcd.
    #[error("--lease-ttl {0:?}: must be whole seconds, at least 2s (etcd's minimum lease)")]
    LeaseTtl(Duration),
    /// etcd could not be reached or refused a request.
    #[error("etcd ({endpoints}): {source}")]
    Etcd {
        endpoints: String,
        #[source]
        source: Box<etcd::EtcdError>,
    },
    /// etcd did not answer in time (no quorum, or unreachable).
    #[error("etcd ({endpoints}) did not answer within {after:?} (no quorum or unreachable)")]
    Timeout { endpoints: String, after: Duration },
    /// The shard's recorded selectors differ from this member's.
    #[error(
        "shard {shard:?} reconciles selector `{recorded}` but this member has `{mine}`: all \
         members of a shard must have the same --selector; start it with the shard's selectors \
         or join another --shard"
    )]
    SelectorMismatch {
        shard: String,
        recorded: String,
        mine: String,
    },
    /// The daemon could not be started.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A member's role in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Leader,
    Standby,
}

/// The leadership this member holds.
#[derive(Debug, Clone, Copy)]
struct Leadership {
    /// The create revision of the `leader` key this member wrote: the fence.
    revision: i64,
    /// Until when this member may act (see the module guarantees).
    valid_until: Instant,
    /// Which win of the election this is (see [`View::epoch`]).
    epoch: u64,
}

#[derive(Debug, Default)]
struct View {
    leadership: Option<Leadership>,
    /// Elections won by this member so far, also the ones that took back its own key after its
    /// local view had run out. A pass acts only under the epoch whose journals it restored.
    epoch: u64,
    /// The epoch whose journals the local journal directory holds (see [`Cluster::begin_pass`]).
    restored: Option<u64>,
    /// The fence of this member's latest leadership (the `Gantry-Fence:` trailer).
    last_fence: Option<i64>,
    /// The leader as last read from etcd.
    leader: Option<String>,
    transitions: u64,
    etcd_error: Option<String>,
}

/// What `/api/daemon` shows under `cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub shard: String,
    pub member: String,
    pub role: Role,
    pub leader: Option<String>,
    pub lease_ttl_s: u64,
    pub transitions: u64,
    /// The last etcd failure (cleared by the next success).
    pub etcd_error: Option<String>,
}

/// One member of one shard.
pub struct Cluster {
    client: Client,
    endpoints: String,
    shard: String,
    member: String,
    ttl: Duration,
    journal_dir: PathBuf,
    view: Mutex<View>,
    /// Journals removed locally whose etcd copies go at the next publish.
    removed: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Checks `--shard` (pure).
pub fn valid_shard(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The canonical text of a selector set: pairs sorted, so order on the command line is moot.
pub fn canonical_selector(selector: &Selector) -> String {
    let mut pairs = selector.0.clone();
    pairs.sort();
    pairs.dedup();
    Selector(pairs).to_string()
}

impl Cluster {
    fn key(&self, rest: &str) -> String {
        format!("/gantry/shards/{}/{rest}", self.shard)
    }

    /// How long one etcd request may take: half the TTL. A keep-alive's answer counts from its
    /// send time, so a slow answer still renews; a request stuck longer than that cannot help
    /// a lease it relies on anyway. (A third of the TTL, 667 ms at TTL 2 s, failed keep-alives
    /// and fenced writes on a loaded 2-core machine while etcd was healthy.)
    fn op_timeout(&self) -> Duration {
        (self.ttl / 2).max(Duration::from_millis(500))
    }

    /// Connects, checks the shard's selectors (recording them if the shard is new). Call from
    /// inside the daemon's runtime.
    ///
    /// # Errors
    /// [`ClusterError::Shard`], [`ClusterError::LeaseTtl`], etcd failures, and
    /// [`ClusterError::SelectorMismatch`] when this member's selectors differ from the shard's.
    pub async fn join(
        options: &ClusterOptions,
        selector: &Selector,
        git_dir: &Path,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if !valid_shard(&options.shard) {
            return Err(ClusterError::Shard(options.shard.clone()));
        }
        if options.lease_ttl < Duration::from_secs(2) || options.lease_ttl.subsec_nanos() != 0 {
            return Err(ClusterError::LeaseTtl(options.lease_ttl));
        }
        let cluster = Arc::new(Cluster {
            client: Client::new(&options.endpoints),
            endpoints: options.endpoints.join(","),
            shard: options.shard.clone(),
            member: member_name(),
            ttl: options.lease_ttl,
            journal_dir: crate::state::Journal::dir(git_dir),
            view: Mutex::new(View::default()),
            removed: Mutex::new(Vec::new()),
        });
        cluster.check_selectors(selector).await?;
        // The shard, not the machine, is the agent on the shared state branch: a standby that
        // takes over must own the claims its predecessor made (`ops::agents`).
        let agent = git_dir.join("gantry").join("agent-id");
        std::fs::create_dir_all(git_dir.join("gantry"))?;
        std::fs::write(&agent, format!("shard-{}\n", cluster.shard))?;
        Ok(cluster)
    }

    async fn check_selectors(&self, selector: &Selector) -> Result<(), ClusterError> {
        let key = self.key("selectors");
        let mine = canonical_selector(selector);
        let txn = etcd::txn(
            &[etcd::create_revision_is(&key, 0)],
            &[etcd::put(&key, &mine, None)],
            &[etcd::get(&key)],
        );
        let response = self.txn(txn).await?;
        if response.succeeded {
            return Ok(());
        }
        let recorded = response
            .kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .unwrap_or_default();
        if recorded == mine {
            Ok(())
        } else {
            Err(ClusterError::SelectorMismatch {
                shard: self.shard.clone(),
                recorded,
                mine,
            })
        }
    }

    /// POSTs one gateway request (failing over between endpoints until the request timeout),
    /// recording the outcome in the view. Blocking.
    fn call_blocking(&self, path: &str, body: &Value) -> Result<Value, ClusterError> {
        let result = self.client.post(path, body, self.op_timeout());
        self.outcome(result)
    }

    /// [`Cluster::call_blocking`] on a blocking thread.
    async fn call(&self, path: &'static str, body: Value) -> Result<Value, ClusterError> {
        let (client, after) = (self.client.clone(), self.op_timeout());
        let result = tokio::task::spawn_blocking(move || client.post(path, &body, after))
            .await
            .unwrap_or(Err(PostError::TimedOut));
        self.outcome(result)
    }

    fn outcome(&self, result: Result<Value, PostError>) -> Result<Value, ClusterError> {
        let result = result.map_err(|e| match e {
            PostError::TimedOut => ClusterError::Timeout {
                endpoints: self.endpoints.clone(),
                after: self.op_timeout(),
            },
            PostError::Failed(source) => ClusterError::Etcd {
                endpoints: self.endpoints.clone(),
                source: Box::new(source),
            },
        });
        lock(&self.view).etcd_error = result.as_ref().err().map(ToString::to_string);
        result
    }

    /// A transaction. Safe to repeat on another endpoint: every transaction here is a
    /// compare-and-put of a whole value.
    async fn txn(&self, txn: Value) -> Result<TxnAnswer, ClusterError> {
        Ok(TxnAnswer::read(&self.call("/v3/kv/txn", txn).await?))
    }

    /// The member's view for `/api/daemon`.
    pub fn status(&self) -> ClusterStatus {
        let view = lock(&self.view);
        let role = self.role_of(&view);
        ClusterStatus {
            shard: self.shard.clone(),
            member: self.member.clone(),
            role,
            leader: view.leader.clone(),
            lease_ttl_s: self.ttl.as_secs(),
            transitions: view.transitions,
            etcd_error: view.etcd_error.clone(),
        }
    }

    fn role_of(&self, view: &View) -> Role {
        match view.leadership {
            Some(l) if Instant::now() < l.valid_until => Role::Leader,
            _ => Role::Standby,
        }
    }

    /// `gantry_cluster_leader{shard}` and `gantry_cluster_transitions_total` (text format).
    pub fn render_metrics(&self) -> String {
        let status = self.status();
        let shard = status.shard.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            "# HELP gantry_cluster_leader 1 while this member leads its shard.\n\
             # TYPE gantry_cluster_leader gauge\n\
             gantry_cluster_leader{{shard=\"{shard}\"}} {}\n\
             # HELP gantry_cluster_transitions_total Leadership gained or lost by this member.\n\
             # TYPE gantry_cluster_transitions_total counter\n\
             gantry_cluster_transitions_total {}\n",
            u8::from(status.role == Role::Leader),
            status.transitions
        )
    }

    /// Whether this member may reconcile now.
    pub fn is_leader(&self) -> bool {
        self.role_of(&lock(&self.view)) == Role::Leader
    }

    /// The fence revision while this member leads, under the leadership whose journals the
    /// current pass restored.
    fn fence(&self) -> Result<i64, String> {
        let view = lock(&self.view);
        match view.leadership {
            Some(l) if Instant::now() < l.valid_until && view.restored == Some(l.epoch) => Ok(l.revision),
            Some(l) if Instant::now() < l.valid_until => Err(format!(
                "member {} leads shard {} again since this pass started; the attempt goes on in the next pass, \
                 from etcd's journal",
                self.member, self.shard
            )),
            Some(_) => Err(format!(
                "member {} could not renew its lease of shard {} in time; it no longer leads",
                self.member, self.shard
            )),
            None => Err(format!("member {} does not lead shard {}", self.member, self.shard)),
        }
    }

    /// Runs `op` in a transaction that succeeds only while this member's leadership is current.
    /// Blocking: called from the reconcile pass (a `spawn_blocking` thread).
    fn fenced(&self, op: Value) -> Result<(), String> {
        let revision = self.fence()?;
        let txn = etcd::txn(&[etcd::create_revision_is(&self.key("leader"), revision)], &[op], &[]);
        let response = self
            .call_blocking("/v3/kv/txn", &txn)
            .map(|a| TxnAnswer::read(&a))
            .map_err(|e| e.to_string())?;
        if !response.succeeded {
            self.lose("the fence transaction was refused: another member leads");
            return Err(format!(
                "member {} lost the leadership of shard {} (fence {revision} is stale)",
                self.member, self.shard
            ));
        }
        // A pause during the request: the answer may be older than the lease.
        self.fence().map(|_| ())
    }

    fn lose(&self, why: &str) {
        if lock(&self.view).leadership.take().is_some() {
            tracing::warn!(shard = %self.shard, member = %self.member, "leadership lost: {why}");
        }
    }

    /// Counts a change of role since the last look; `true` when this member became leader.
    fn note_role(&self, last: &mut Role) -> bool {
        let mut view = lock(&self.view);
        let now = self.role_of(&view);
        if now == *last {
            return false;
        }
        *last = now;
        view.transitions += 1;
        now == Role::Leader
    }

    fn attempt_key(&self, path: &Path) -> Result<String, String> {
        let attempt = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{} does not name an attempt", path.display()))?;
        Ok(self.key(&format!("journal/{attempt}")))
    }

    /// Campaigns and keeps the lease until `stop`; calls `on_leader` after each election won
    /// (journals already copied from etcd) or regained. Revokes the lease on stop so a standby takes over
    /// at once.
    pub async fn run(self: Arc<Self>, stop: Arc<tokio::sync::Notify>, on_leader: impl Fn() + Send + 'static) {
        let tick = (self.ttl / 4).min(Duration::from_millis(500));
        let mut lease: Option<i64> = None;
        let mut role = Role::Standby;
        loop {
            let started = Instant::now();
            match lease {
                None => {
                    let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
                    if let Ok(granted) = self.call("/v3/lease/grant", json!({ "TTL": ttl.to_string() })).await {
                        let id = etcd::int(&granted["ID"]);
                        lease = (id != 0).then_some(id);
                    }
                }
                Some(id) => {
                    // One keep-alive per request: `{"result": {"ID", "TTL"}}`, TTL absent (0)
                    // once the lease is gone.
                    let answer = self.call("/v3/lease/keepalive", json!({ "ID": id.to_string() })).await;
                    match answer.map(|a| etcd::int(&a["result"]["TTL"])) {
                        Ok(ttl) if ttl > 0 => {
                            let left = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
                            let mut view = lock(&self.view);
                            if let Some(l) = view.leadership.as_mut() {
                                l.valid_until = started + left;
                            }
                        }
                        Ok(_) => {
                            // The lease expired at etcd: whatever we held with it is gone.
                            self.lose("the lease expired");
                            lease = None;
                            continue;
                        }
                        // Tried again at the next tick.
                        Err(_) => {}
                    }
                }
            }
            let won = match lease {
                Some(id) if !self.is_leader() => self.campaign(id, started).await,
                _ => false,
            };
            // Elected (a new epoch: the next pass restores the journals first), or leading
            // again after etcd came back with the lease alive: a pass.
            if self.note_role(&mut role) || won {
                on_leader();
            }
            tokio::select! {
                () = stop.notified() => break,
                () = tokio::time::sleep(tick.saturating_sub(started.elapsed())) => {}
            }
        }
        if let Some(id) = lease {
            let _ = self.call("/v3/lease/revoke", json!({ "ID": id.to_string() })).await;
        }
        self.lose("stopping");
    }

    /// One try at the `leader` key with lease `id`; `true` when this member leads now.
    async fn campaign(&self, id: i64, started: Instant) -> bool {
        let key = self.key("leader");
        // Our own key left from an earlier leadership of this lease (the local view expired
        // first, e.g. after a pause): it is ours only if its lease is this one.
        let txn = etcd::txn(
            &[etcd::create_revision_is(&key, 0)],
            &[etcd::put(&key, &self.member, Some(id))],
            &[etcd::get(&key)],
        );
        let Ok(response) = self.txn(txn).await else {
            return false;
        };
        let revision = if response.succeeded {
            // The put's revision is the key's create revision.
            if response.revision == 0 {
                return false;
            }
            response.revision
        } else {
            let holder = response.kvs.first().map(|kv| {
                (
                    String::from_utf8_lossy(&kv.value).into_owned(),
                    kv.lease,
                    kv.create_revision,
                )
            });
            match holder {
                // Still ours under this very lease (our local view ran out first, e.g. a
                // keep-alive answer came late): nobody can have led since, take it back.
                Some((name, lease, revision)) if name == self.member && lease == id => revision,
                other => {
                    lock(&self.view).leader = other.map(|(name, _, _)| name);
                    return false;
                }
            }
        };
        {
            let mut view = lock(&self.view);
            view.epoch += 1;
            view.last_fence = Some(revision);
            view.leadership = Some(Leadership {
                revision,
                valid_until: started + self.ttl,
                epoch: view.epoch,
            });
            view.leader = Some(self.member.clone());
        }
        tracing::info!(shard = %self.shard, member = %self.member, fence = revision, "elected leader");
        true
    }

    /// At the start of every pass (blocking, on the pass's thread): `Ok(false)` when this
    /// member does not lead (the pass does nothing). When it leads under an epoch whose journals
    /// it has not restored yet, it first makes the local journal directory exactly etcd's
    /// journals, so the pass resumes what the shard's last leader left, as etcd has it, and then
    /// calls `adopt` (the daemon makes its local state branch the remote's: commits an earlier
    /// leadership of this member did not publish are stale, their journals are in etcd).
    ///
    /// Doing this here rather than in the campaign task means no pass of an earlier epoch is
    /// running while the files are replaced (passes run one at a time), and a pass that began
    /// under an earlier epoch cannot write under this one ([`Cluster::fence`]).
    ///
    /// # Errors
    /// etcd could not be read or the files written: the pass must not run.
    pub fn begin_pass(&self, adopt: impl FnOnce() -> Result<(), String>) -> Result<bool, String> {
        let epoch = {
            let view = lock(&self.view);
            match view.leadership {
                Some(l) if Instant::now() < l.valid_until => {
                    if view.restored == Some(l.epoch) {
                        return Ok(true);
                    }
                    l.epoch
                }
                _ => return Ok(false),
            }
        };
        let prefix = self.key("journal/");
        let response = self
            .call_blocking("/v3/kv/range", &etcd::range_prefix(&prefix))
            .map_err(|e| format!("cannot copy the shard's journals from etcd: {e}"))?;
        let mut stored = Vec::new();
        for kv in etcd::kvs(&response) {
            let name = String::from_utf8_lossy(kv.key.get(prefix.len()..).unwrap_or_default()).into_owned();
            if crate::state::valid_record_name(&name).is_err() {
                return Err(format!(
                    "etcd holds a journal with an unusable name {name:?} under {prefix}"
                ));
            }
            stored.push((format!("{name}.jsonl"), kv.value));
        }
        write_journals(&self.journal_dir, &stored)
            .map_err(|e| format!("cannot write the journals copied from etcd: {e}"))?;
        adopt()?;
        let mut view = lock(&self.view);
        view.restored = Some(epoch);
        tracing::info!(shard = %self.shard, member = %self.member, journals = stored.len(), "journals copied from etcd");
        Ok(view
            .leadership
            .is_some_and(|l| l.epoch == epoch && Instant::now() < l.valid_until))
    }
}

/// Replaces the `*.jsonl` files of `dir` by `stored` (synced).
fn write_journals(dir: &Path, stored: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".jsonl") && !stored.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, bytes) in stored {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
    }
    std::fs::File::open(dir)?.sync_all()
}

/// This process's member name: host name and process id (several members may share a host).
fn member_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_else(|_| "host".into());
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "host" } else { &host },
        std::process::id()
    )
}

impl crate::state::fence::StateFence for Cluster {
    fn journal_written(&self, path: &Path) -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let key = self.attempt_key(path)?;
        self.fenced(etcd::put(&key, bytes, None))
    }

    fn journal_removed(&self, path: &Path) -> Result<(), String> {
        let key = self.attempt_key(path)?;
        lock(&self.removed).push(key);
        Ok(())
    }

    fn published(&self) {
        let keys = std::mem::take(&mut *lock(&self.removed));
        for (i, key) in keys.iter().enumerate() {
            if let Err(e) = self.fenced(etcd::delete(key)) {
                tracing::warn!("cannot remove the journal {key} from etcd: {e}; retried after the next publish");
                lock(&self.removed).extend(keys[i..].iter().cloned());
                return;
            }
        }
    }

    fn trailer(&self) -> Option<String> {
        // The leadership the outcome was reached under: its completion was journaled under this
        // fence (no pass of an earlier epoch writes), even if the lease ran out since.
        let revision = lock(&self.view).last_fence?;
        Some(format!("{}/{}@{revision}", self.shard, self.member))
    }
}

/// Installs `cluster` as the process's state fence (see `state::fence`).
pub fn install_fence(cluster: &Arc<Cluster>) -> bool {
    struct Shared(Arc<Cluster>);
    impl crate::state::fence::StateFence for Shared {
        fn journal_written(&self, path: &Path) -> Result<(), String> {
            self.0.journal_written(path)
        }
        fn journal_removed(&self, path: &Path) -> Result<(), String> {
            self.0.journal_removed(path)
        }
        fn published(&self) {
            self.0.published();
        }
        fn trailer(&self) -> Option<String> {
            crate::state::fence::StateFence::trailer(&*self.0)
        }
    }
    crate::state::fence::install(Box::new(Shared(Arc::clone(cluster))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        for (name, ok) in [
            ("default", true),
            ("eu-west.1_a", true),
            ("", false),
            ("a/b", false),
            ("a b", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(valid_shard(name), ok, "{name:?}");
        }
    }

    #[test]
    fn selectors_compare_as_sets() {
        let a = Selector(vec![("host".into(), "a".into()), ("env".into(), "prod".into())]);
        let b = Selector(vec![("env".into(), "prod".into()), ("host".into(), "a".into())]);
        let c = Selector(vec![("env".into(), "prod".into())]);
        assert_eq!(canonical_selector(&a), canonical_selector(&b));
        assert_ne!(canonical_selector(&a), canonical_selector(&c));
        assert_eq!(canonical_selector(&Selector(Vec::new())), "");
    }

    /// A new leader's journal directory must be exactly etcd's: a journal this member left from
    /// an earlier leadership, whose attempt another leader finished, would otherwise be resumed
    /// and run again.
    #[test]
    fn restored_journals_replace_the_local_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let journals = dir.path().join("journal");
        std::fs::create_dir_all(&journals).expect("mkdir");
        std::fs::write(journals.join("stale.jsonl"), "old\n").expect("write");
        std::fs::write(journals.join("kept.jsonl"), "old\n").expect("write");
        std::fs::write(journals.join("notes.txt"), "not a journal\n").expect("write");
        let stored = vec![
            ("kept.jsonl".to_string(), b"new\n".to_vec()),
            ("fresh.jsonl".to_string(), b"fresh\n".to_vec()),
        ];
        write_journals(&journals, &stored).expect("restore");
        let mut names: Vec<String> = std::fs::read_dir(&journals)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["fresh.jsonl", "kept.jsonl", "notes.txt"]);
        assert_eq!(
            std::fs::read_to_string(journals.join("kept.jsonl")).expect("read"),
            "new\n"
        );
    }
}
