//! `GET /api/events`: the daemon's progress as server-sent events (SPEC §7).
//!
//! Every progress event of a pass (the same JSON objects as `gantry apply --format json`) and,
//! after a pass, the wave and rollout changes it recorded, become one SSE message:
//! `id: N` (increasing from 1 for the daemon's life), `event: KIND`, `data: {JSON}`.
//!
//! # Guarantees
//! - A pass never waits for a client: [`EventHub::publish`] only `try_send`s into each
//!   client's bounded queue ([`CLIENT_QUEUE`] messages); a client whose queue is full is dropped
//!   (its stream ends after what it already holds), never the event and never the pass.
//! - The last [`RING`] messages are kept: a client reconnecting with `Last-Event-ID: N` gets the
//!   kept messages after `N`, then live ones, with no gap or repeat between the two (both are
//!   taken under one lock). A first connection (no `Last-Event-ID`, or an id this daemon never
//!   issued, e.g. from before a restart) gets the whole ring first.
//! - An idle stream carries a comment (`: keep-alive`) every [`HEARTBEAT`], so proxies keep
//!   it open. Streams are connections like any other: they count toward the server's connection
//!   cap, and one that cannot be written to stops being "active" and is the first evicted.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::state::RecordedState;

/// Messages kept for clients that reconnect with `Last-Event-ID`.
pub const RING: usize = 256;
/// Messages a client may have waiting; one more and it is dropped.
pub const CLIENT_QUEUE: usize = 64;
/// How often an idle stream carries a `: keep-alive` comment.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Sent first on every stream: the reconnect delay a browser's `EventSource` uses.
const PREAMBLE: &str = "retry: 5000\n\n";

/// One message, kept encoded.
#[derive(Debug)]
struct Message {
    id: u64,
    text: Bytes,
}

#[derive(Default)]
struct Inner {
    /// The id of the last message published (0: none yet).
    last_id: u64,
    ring: VecDeque<Arc<Message>>,
    clients: Vec<mpsc::Sender<Arc<Message>>>,
    /// The daemon is stopping: streams end, new ones are refused.
    closed: bool,
}

/// The daemon's event stream: publishers (the pass) on one side, clients on the other.
#[derive(Default)]
pub struct EventHub {
    inner: Mutex<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The SSE text of one message: `data` is one line, as `serde_json` writes no raw newlines.
fn encode(id: u64, kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {data}\n\n"))
}

impl EventHub {
    /// Sends `data` as an event of `kind` to every client, and keeps it in the ring.
    /// Never blocks: a client that cannot take it is dropped.
    pub fn publish(&self, kind: &str, data: &Value) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        inner.last_id += 1;
        let message = Arc::new(Message {
            id: inner.last_id,
            text: encode(inner.last_id, kind, data),
        });
        if inner.ring.len() == RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back(Arc::clone(&message));
        inner.clients.retain(|client| match client.try_send(Arc::clone(&message)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    "an /api/events client fell {CLIENT_QUEUE} messages behind; dropping it (it may reconnect with Last-Event-ID)"
                );
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// A new client: the kept messages after `last_event_id` (all of them when it is `None` or
    /// not an id this daemon issued), then live ones. `None` once the daemon is stopping.
    pub fn subscribe(&self, last_event_id: Option<u64>) -> Option<EventStream> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return None;
        }
        let after = last_event_id.filter(|id| *id <= inner.last_id).unwrap_or(0);
        let backlog: VecDeque<Bytes> = inner
            .ring
            .iter()
            .filter(|m| m.id > after)
            .map(|m| m.text.clone())
            .collect();
        let (sender, receiver) = mpsc::channel(CLIENT_QUEUE);
        // Streams whose connection closed leave only a closed sender: forget those here too,
        // so the list stays as long as the open connections even when nothing is published.
        inner.clients.retain(|c| !c.is_closed());
        inner.clients.push(sender);
        let start = tokio::time::Instant::now() + HEARTBEAT;
        let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(EventStream {
            preamble: true,
            backlog,
            receiver,
            heartbeat,
        })
    }

    /// The daemon is stopping: every stream ends (so the server's graceful shutdown is not held
    /// open by them) and new ones are refused.
    pub fn close(&self) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        inner.clients.clear();
    }

    /// Clients connected now.
    #[cfg(test)]
    fn clients(&self) -> usize {
        lock(&self.inner).clients.len()
    }
}

/// One client's stream: the preamble, its backlog, then live messages and heartbeats; ends when
/// the hub drops the client or closes.
pub struct EventStream {
    preamble: bool,
    backlog: VecDeque<Bytes>,
    receiver: mpsc::Receiver<Arc<Message>>,
    heartbeat: tokio::time::Interval,
}

impl futures_core::Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.preamble) {
            return Poll::Ready(Some(Ok(Bytes::from_static(PREAMBLE.as_bytes()))));
        }
        if let Some(text) = this.backlog.pop_front() {
            return Poll::Ready(Some(Ok(text)));
        }
        match this.receiver.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                this.heartbeat.reset();
                Poll::Ready(Some(Ok(message.text.clone())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.heartbeat.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n")))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// The event kind of a progress event: its `event` tag (`attempt_started`, `step_finished`, …).
pub fn kind_of(data: &Value) -> &str {
    data.get("event").and_then(Value::as_str).unwrap_or("progress")
}

/// After a pass: `wave_started` / `wave_completed` for each wave whose record changed from
/// `before` to `after`, and `rollout_progress` for each rollout whose record changed.
pub fn publish_pass(hub: &EventHub, before: &RecordedState, after: &RecordedState) {
    for (key, rollout) in &after.rollouts {
        let old = before.rollouts.get(key);
        if old == Some(rollout) {
            continue;
        }
        let version = rollout.version.to_string();
        for wave in &rollout.waves {
            let was = old.and_then(|r| r.waves.iter().find(|w| w.name == wave.name));
            let edges = [
                ("wave_started", &wave.started, was.and_then(|w| w.started.as_ref())),
                (
                    "wave_completed",
                    &wave.completed,
                    was.and_then(|w| w.completed.as_ref()),
                ),
            ];
            for (kind, now, then) in edges {
                if let Some(at) = now
                    && then.is_none()
                {
                    hub.publish(
                        kind,
                        &json!({"event": kind, "component": rollout.component, "version": version,
                            "wave": wave.name, "at": at}),
                    );
                }
            }
        }
        let succeeded = rollout
            .targets
            .values()
            .filter(|t| t.status == crate::state::RolloutTargetStatus::Succeeded)
            .count();
        hub.publish(
            "rollout_progress",
            &json!({"event": "rollout_progress", "component": rollout.component, "version": version,
                "started": rollout.started, "targets": rollout.targets.len(), "succeeded": succeeded,
                "waves": rollout.waves.iter().map(|w| json!({"name": w.name, "started": w.started,
                    "completed": w.completed})).collect::<Vec<_>>(),
                "halted": rollout.halted.is_some()}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_core::Stream;

    /// Polls `stream` once without waiting (a no-op waker).
    fn poll(stream: &mut EventStream) -> Poll<Option<String>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(stream)
            .poll_next(&mut cx)
            .map(|item| item.map(|bytes| String::from_utf8(bytes.unwrap().to_vec()).unwrap()))
    }

    fn ids(stream: &mut EventStream) -> Vec<u64> {
        let mut out = Vec::new();
        while let Poll::Ready(Some(text)) = poll(stream) {
            if let Some(id) = text.strip_prefix("id: ").and_then(|t| t.split('\n').next()) {
                out.push(id.parse().unwrap());
            }
        }
        out
    }

    #[tokio::test]
    async fn messages_are_framed_with_an_increasing_id_kind_and_one_line_of_json() {
        let hub = EventHub::default();
        let mut stream = hub.subscribe(None).unwrap();
        hub.publish("step_finished", &json!({"event": "step_finished", "message": "a\nb"}));
        assert_eq!(poll(&mut stream), Poll::Ready(Some(PREAMBLE.to_string())));
        assert_eq!(
            poll(&mut stream),
            Poll::Ready(Some(
                "id: 1\nevent: step_finished\ndata: {\"event\":\"step_finished\",\"message\":\"a\\nb\"}\n\n".into()
            ))
        );
        assert_eq!(poll(&mut stream), Poll::Pending);
    }

    #[tokio::test]
    async fn last_event_id_resumes_after_it_and_the_ring_is_bounded() {
        let hub = EventHub::default();
        for n in 0..RING + 10 {
            hub.publish("x", &json!({"n": n}));
        }
        let last = (RING + 10) as u64;
        // Table: Last-Event-ID → the ids the new client gets first.
        for (header, want) in [
            (Some(last - 3), vec![last - 2, last - 1, last]),
            (Some(last), vec![]),
            // Older than the ring: what the ring kept.
            (Some(1), (11..=last).collect::<Vec<_>>()),
            // Never issued by this daemon (a restart): the whole ring.
            (Some(last + 100), (11..=last).collect()),
            (None, (11..=last).collect()),
        ] {
            let mut stream = hub.subscribe(header).unwrap();
            assert_eq!(ids(&mut stream), want, "Last-Event-ID {header:?}");
        }
    }

    /// A client that never reads fills its queue; the next publish drops it without waiting,
    /// and a client that reads is not affected.
    #[tokio::test]
    async fn a_client_that_does_not_read_is_dropped_not_waited_for() {
        let hub = EventHub::default();
        let mut stuck = hub.subscribe(None).unwrap();
        let mut reader = hub.subscribe(None).unwrap();
        let mut got = Vec::new();
        for n in 0..CLIENT_QUEUE as u64 * 3 {
            hub.publish("x", &json!({"n": n}));
            got.extend(ids(&mut reader));
            // Renews tokio's cooperative budget, which would make the receiver report
            // `Pending` after 128 messages taken in one poll of this task.
            tokio::task::yield_now().await;
        }
        assert_eq!(got, (1..=CLIENT_QUEUE as u64 * 3).collect::<Vec<_>>());
        assert_eq!(hub.clients(), 1, "the stuck client was dropped");
        // It still gets what it held, then its stream ends.
        assert_eq!(ids(&mut stuck), (1..=CLIENT_QUEUE as u64).collect::<Vec<_>>());
        assert_eq!(poll(&mut stuck), Poll::Ready(None));
    }

    #[tokio::test]
    async fn close_ends_streams_and_refuses_new_ones() {
        let hub = EventHub::default();
        let mut stream = hub.subscribe(None).unwrap();
        hub.close();
        hub.publish("x", &json!({}));
        assert_eq!(poll(&mut stream), Poll::Ready(Some(PREAMBLE.to_string())));
        assert_eq!(poll(&mut stream), Poll::Ready(None));
        assert!(hub.subscribe(None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_stream_carries_a_heartbeat_comment() {
        let hub = EventHub::default();
        let mut stream = hub.subscribe(None).unwrap();
        assert_eq!(poll(&mut stream), Poll::Ready(Some(PREAMBLE.to_string())));
        assert_eq!(poll(&mut stream), Poll::Pending);
        tokio::time::advance(HEARTBEAT).await;
        assert_eq!(poll(&mut stream), Poll::Ready(Some(": keep-alive\n\n".to_string())));
        assert_eq!(poll(&mut stream), Poll::Pending);
    }
}
