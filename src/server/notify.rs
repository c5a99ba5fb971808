//! Webhook notifications: JSON events POSTed from a background thread, with retries.
//!
//! # Guarantees
//! [`Notifier::send`] never blocks and never fails: deliveries happen on one background thread,
//! each tried [`ATTEMPTS`] times with exponential backoff, so a slow or dead webhook delays
//! only later notifications, never reconciliation. Undeliverable events are logged and dropped.

use std::sync::mpsc;
use std::time::Duration;

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
}

impl Notifier {
    /// Starts the delivery thread (none when no webhook is configured).
    pub fn new(hooks: Vec<NotifyConfig>) -> Notifier {
        if hooks.is_empty() {
            return Notifier { hooks, sender: None };
        }
        let (sender, receiver) = mpsc::channel::<Delivery>();
        let spawned = std::thread::Builder::new().name("gantry-notify".into()).spawn(move || {
            let agent = agent();
            for delivery in receiver {
                deliver(&agent, &delivery);
            }
        });
        match spawned {
            Ok(_) => Notifier {
                hooks,
                sender: Some(sender),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the notification thread; webhooks are off");
                Notifier { hooks, sender: None }
            }
        }
    }

    /// Queues `event` for every webhook that lists it (or lists no events). The body is
    /// `{"event": …, "text": <one Slack-compatible line>, …details}`.
    pub fn send(&self, event: Event, text: &str, details: Map<String, Value>) {
        let Some(sender) = &self.sender else { return };
        let mut body = Map::new();
        body.insert("event".into(), Value::from(event.as_str()));
        body.insert("text".into(), Value::from(text));
        for (k, v) in details {
            body.entry(k).or_insert(v);
        }
        let body = Value::Object(body).to_string();
        for hook in &self.hooks {
            if hook.events.is_empty() || hook.events.iter().any(|e| e == event.as_str()) {
                let _ = sender.send(Delivery {
                    url: hook.url.clone(),
                    body: body.clone(),
                    event,
                });
            }
        }
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

fn deliver(agent: &ureq::Agent, delivery: &Delivery) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let result = agent
            .post(&delivery.url)
            .header("Content-Type", "application/json")
            .send(delivery.body.as_str());
        let problem = match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(url = %delivery.url, event = delivery.event.as_str(), "notification delivered");
                return;
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
            return;
        }
        tracing::debug!(url = %delivery.url, "notification try {attempt} failed ({problem}); retrying");
        std::thread::sleep(backoff);
        backoff *= 2;
    }
}
