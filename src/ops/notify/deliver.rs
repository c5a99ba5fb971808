//! Webhook deliveries: JSON events POSTed from a background thread, with retries.
//!
//! # Guarantees
//! [`Notifier::send`] never blocks and never fails: deliveries happen on one background thread,
//! each tried [`ATTEMPTS`] times with exponential backoff, so a slow or dead webhook delays
//! only later notifications, never reconciliation. Undeliverable events are logged and dropped.
//! A process that ends after one pass (`gantry apply`) calls [`Notifier::finish`], which waits
//! a bounded time for the queue and returns what was not delivered, for stderr.

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::manifest::NotifyConfig;

/// Tries per delivery.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second try; it doubles after each failure (0.5 s, 1 s, 2 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A webhook that does not answer within this is a failed try.
const TIMEOUT: Duration = Duration::from_secs(5);

/// What a notification is about (the `events` names of `[[notify]]` in gantry.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    RolloutStarted,
    WaveCompleted,
    Blocked,
    Failed,
    Rollback,
    Converged,
    InvalidCommit,
    UpdateAvailable,
    UpgradeScheduled,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RolloutStarted => "rollout_started",
            Event::WaveCompleted => "wave_completed",
            Event::Blocked => "blocked",
            Event::Failed => "failed",
            Event::Rollback => "rollback",
            Event::Converged => "converged",
            Event::InvalidCommit => "invalid_commit",
            Event::UpdateAvailable => "update_available",
            Event::UpgradeScheduled => "upgrade_scheduled",
        }
    }
}

struct Delivery {
    url: String,
    body: String,
    event: Event,
}

/// Sends events to the webhooks that asked for them.
pub struct Notifier {
    hooks: Vec<NotifyConfig>,
    sender: Option<mpsc::Sender<Delivery>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// One line per delivery dropped after its last try (`url: event: problem`).
    dropped: Arc<Mutex<Vec<String>>>,
}

impl Notifier {
    /// Starts the delivery thread (none when no webhook is configured).
    pub fn new(hooks: Vec<NotifyConfig>) -> Notifier {
        let dropped = Arc::new(Mutex::new(Vec::new()));
        if hooks.is_empty() {
            return Notifier {
                hooks,
                sender: None,
                thread: None,
                dropped,
            };
        }
        let (sender, receiver) = mpsc::channel::<Delivery>();
        let failures = Arc::clone(&dropped);
        let spawned = std::thread::Builder::new().name("gantry-notify".into()).spawn(move || {
            let agent = agent();
            for delivery in receiver {
                if let Err(problem) = deliver(&agent, &delivery) {
                    failures
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("{}: {}: {problem}", delivery.url, delivery.event.as_str()));
                }
            }
        });
        match spawned {
            Ok(thread) => Notifier {
                hooks,
                sender: Some(sender),
                thread: Some(thread),
                dropped,
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the notification thread; webhooks are off");
                Notifier {
                    hooks,
                    sender: None,
                    thread: None,
                    dropped,
                }
            }
        }
    }

    /// Ends deliveries: waits up to `within` for the queued ones, and returns one line per
    /// notification not delivered (dropped after its tries, or still queued at the deadline).
    pub fn finish(mut self, within: Duration) -> Vec<String> {
        drop(self.sender.take());
        let deadline = Instant::now() + within;
        let mut unfinished = false;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                unfinished = true;
            }
        }
        let mut lines = std::mem::take(&mut *self.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        if unfinished {
            lines.push(format!(
                "notifications still being delivered after {} s were abandoned",
                within.as_secs()
            ));
        }
        lines
    }

    /// The webhooks, in `gantry.toml` order.
    pub fn hooks(&self) -> &[NotifyConfig] {
        &self.hooks
    }

    /// Whether some webhook lists `event` (or lists no events).
    pub fn wants(&self, event: Event) -> bool {
        self.hooks.iter().any(|hook| Self::listens(hook, event))
    }

    fn listens(hook: &NotifyConfig, event: Event) -> bool {
        hook.events.is_empty() || hook.events.iter().any(|e| e == event.as_str())
    }

    /// Queues `event` for every webhook that lists it (or lists no events). The body is
    /// `{"event": …, "text": <one Slack-compatible line>, …details}`.
    pub fn send(&self, event: Event, text: &str, details: Map<String, Value>) {
        for index in 0..self.hooks.len() {
            self.send_to(index, event, text, details.clone());
        }
    }

    /// Queues `event` for the webhook at `index` when it lists the event (`upgrade_scheduled`
    /// goes to each webhook at its own lead times).
    pub fn send_to(&self, index: usize, event: Event, text: &str, details: Map<String, Value>) {
        let Some(sender) = &self.sender else { return };
        let Some(hook) = self.hooks.get(index).filter(|h| Self::listens(h, event)) else {
            return;
        };
        let mut body = Map::new();
        body.insert("event".into(), Value::from(event.as_str()));
        body.insert("text".into(), Value::from(text));
        for (k, v) in details {
            body.entry(k).or_insert(v);
        }
        let _ = sender.send(Delivery {
            url: hook.url.clone(),
            body: Value::Object(body).to_string(),
            event,
        });
    }
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        // Webhooks are addressed directly; a proxy meant for the internet must not apply.
        .proxy(None)
        .build();
    ureq::Agent::new_with_config(config)
}

/// One delivery with its retries; the last problem when every try failed.
fn deliver(agent: &ureq::Agent, delivery: &Delivery) -> Result<(), String> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let result = agent
            .post(&delivery.url)
            .header("Content-Type", "application/json")
            .send(delivery.body.as_str());
        let problem = match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(url = %delivery.url, event = delivery.event.as_str(), "notification delivered");
                return Ok(());
            }
            Ok(response) => format!("HTTP {}", response.status()),
            Err(e) => e.to_string(),
        };
        if attempt == ATTEMPTS {
            tracing::warn!(
                url = %delivery.url,
                event = delivery.event.as_str(),
                "notification dropped after {ATTEMPTS} tries: {problem}"
            );
            return Err(format!("not delivered after {ATTEMPTS} tries: {problem}"));
        }
        tracing::debug!(url = %delivery.url, "notification try {attempt} failed ({problem}); retrying");
        std::thread::sleep(backoff);
        backoff *= 2;
    }
    Err("no tries".to_string())
}
