//! `upgrade_scheduled`: a notice at each webhook's lead times (`lead_times`, default a week, a
//! day and an hour) before a target's projected start (issue #15: customers of an installation
//! want to know a week, a day and an hour ahead).
//!
//! # Rules
//! - Only targets with a projected start after `now` are announced (one starting now is a
//!   `rollout_started`, not a notice).
//! - Each (webhook, target, version, lead time) is sent once, across passes and processes
//!   (`apply` and the daemon alike), remembered in `.git/gantry/announced-schedules`.
//! - When several lead times are due at once (a start first projected 2 h away), only the
//!   shortest due one is sent and the longer ones count as sent: one notice, not three.
//! - A projected start that moves later is not announced again for a lead time already sent;
//!   the next lead time says the new instant.
//! - [`announce`] returns the next instant a notice falls due, so the daemon wakes for it.
//!
//! The choice is pure ([`due`]); [`announce`] reads and writes the memory file and sends.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use crate::plan::ActionKind;
use crate::plan::schedule::Schedule;

use super::{Event, Notifier, details};

/// Where announced notices are remembered, relative to the git dir.
pub const ANNOUNCED_SCHEDULES: &str = "gantry/announced-schedules";

/// One remembered notice: (lead time as written, target, version, webhook URL).
pub type Announced = (String, String, String, String);

/// A webhook's lead times, as written and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Leads {
    pub hook: usize,
    pub url: String,
    pub leads: Vec<(String, Duration)>,
}

/// A notice to send now.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub hook: usize,
    pub target: String,
    pub component: String,
    pub action: ActionKind,
    pub from: Option<String>,
    pub to: String,
    pub start: Timestamp,
    pub lead: String,
}

/// What is due at `now`, what to remember afterwards (only notices of targets still projected,
/// so the memory stays as small as the fleet), and when the next notice falls due.
pub fn due(
    schedule: &Schedule,
    hooks: &[Leads],
    now: Timestamp,
    announced: &BTreeSet<Announced>,
) -> (Vec<Notice>, BTreeSet<Announced>, Option<Timestamp>) {
    let mut notices = Vec::new();
    let mut remember = BTreeSet::new();
    let mut next: Option<Timestamp> = None;
    for target in &schedule.targets {
        let (Some(start), Some(to)) = (target.projected_start, target.to.as_ref()) else {
            continue;
        };
        if start <= now || target.action == ActionKind::Noop {
            continue;
        }
        let to = to.to_string();
        for hook in hooks {
            let key = |lead: &str| (lead.to_string(), target.target.clone(), to.clone(), hook.url.clone());
            let mut shortest_due: Option<&(String, Duration)> = None;
            for lead in &hook.leads {
                let due_at = SignedDuration::try_from(lead.1)
                    .ok()
                    .and_then(|d| start.checked_sub(d).ok())
                    .unwrap_or(Timestamp::MIN);
                if due_at <= now {
                    remember.insert(key(&lead.0));
                    if shortest_due.is_none_or(|s| lead.1 < s.1) {
                        shortest_due = Some(lead);
                    }
                } else if !announced.contains(&key(&lead.0)) {
                    next = Some(next.map_or(due_at, |n| n.min(due_at)));
                }
            }
            if let Some((lead, _)) = shortest_due
                && !announced.contains(&key(lead))
            {
                notices.push(Notice {
                    hook: hook.hook,
                    target: target.target.clone(),
                    component: target.component.clone(),
                    action: target.action,
                    from: target.from.as_ref().map(ToString::to_string),
                    to: to.clone(),
                    start,
                    lead: lead.clone(),
                });
            }
            // Lead times already sent stay remembered while the target is projected.
            for lead in &hook.leads {
                if announced.contains(&key(&lead.0)) {
                    remember.insert(key(&lead.0));
                }
            }
        }
    }
    (notices, remember, next)
}

/// The webhooks that take `upgrade_scheduled`, with their lead times (unparseable ones were
/// refused by `validate`; here they are skipped).
pub fn leads_of(notifier: &Notifier) -> Vec<Leads> {
    notifier
        .hooks()
        .iter()
        .enumerate()
        .filter(|(_, h)| h.events.is_empty() || h.events.iter().any(|e| e == Event::UpgradeScheduled.as_str()))
        .map(|(hook, h)| {
            let written: Vec<String> = match &h.lead_times {
                Some(leads) => leads.clone(),
                None => crate::manifest::DEFAULT_LEAD_TIMES
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            Leads {
                hook,
                url: h.url.clone(),
                leads: written
                    .into_iter()
                    .filter_map(|text| {
                        let d = crate::manifest::values::parse_duration(&text).ok()?;
                        Some((text, d))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Sends the notices due at `now` from `schedule` and remembers them; the next instant one
/// falls due. Nothing is computed without a webhook that takes the event.
pub fn announce(notifier: &Notifier, schedule: &Schedule, git_dir: &Path, now: Timestamp) -> Option<Timestamp> {
    let hooks = leads_of(notifier);
    if hooks.is_empty() {
        return None;
    }
    let path = git_dir.join(ANNOUNCED_SCHEDULES);
    let before: BTreeSet<Announced> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(4, ' ');
            Some((
                words.next()?.to_string(),
                words.next()?.to_string(),
                words.next()?.to_string(),
                words.next()?.to_string(),
            ))
        })
        .collect();
    let (notices, remember, next) = due(schedule, &hooks, now, &before);
    for n in &notices {
        let start = n.start.to_string();
        let when = crate::render::when::relative(n.start, now);
        tracing::info!(target = %n.target, component = %n.component, to = %n.to, lead = %n.lead, "upgrade scheduled {when}");
        notifier.send_to(
            n.hook,
            Event::UpgradeScheduled,
            &super::messages::upgrade_scheduled(
                &n.component,
                &n.target,
                n.action.as_str(),
                n.from.as_deref(),
                &n.to,
                &start,
                &when,
            ),
            details(
                json!({"target": n.target, "component": n.component, "action": n.action.as_str(),
                "from": n.from, "to": n.to, "projected_start": start, "lead": n.lead}),
            ),
        );
    }
    if remember != before {
        let text: String = remember
            .iter()
            .map(|(lead, target, version, url)| format!("{lead} {target} {version} {url}\n"))
            .collect();
        let tmp = path.with_extension("tmp");
        // Losing this file only repeats notices; it never stops a pass.
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!("cannot remember announced schedules in {}: {e}", path.display());
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::schedule::TargetSchedule;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(start: Option<&str>, action: ActionKind) -> Schedule {
        Schedule {
            now: at("2026-12-01T00:00:00Z"),
            horizon: at("2027-12-01T00:00:00Z"),
            targets: vec![TargetSchedule {
                target: "acme-billing".into(),
                component: "billing".into(),
                action,
                from: Some(crate::manifest::Version::new(1, 2, 0)),
                to: Some(crate::manifest::Version::new(2, 0, 0)),
                policy: None,
                wave: None,
                projected_start: start.map(at),
                held_by: Vec::new(),
                violations: Vec::new(),
            }],
            rollouts: Vec::new(),
        }
    }

    fn hooks() -> Vec<Leads> {
        let lead = |t: &str| (t.to_string(), crate::manifest::values::parse_duration(t).unwrap());
        vec![Leads {
            hook: 0,
            url: "http://127.0.0.1:9/hook".into(),
            leads: vec![lead("7d"), lead("24h"), lead("1h")],
        }]
    }

    /// Walks a week towards a start on 2026-12-10T02:00Z: each lead time is sent once, at its
    /// instant, and the next due instant is always the next lead time.
    #[test]
    fn each_lead_time_is_sent_once_at_its_instant() {
        let s = schedule(Some("2026-12-10T02:00:00Z"), ActionKind::Upgrade);
        let mut memory = BTreeSet::new();
        let mut sent = Vec::new();
        for (now, next_want) in [
            ("2026-12-01T00:00:00Z", Some("2026-12-03T02:00:00Z")),
            ("2026-12-03T01:59:59Z", Some("2026-12-03T02:00:00Z")),
            ("2026-12-03T02:00:00Z", Some("2026-12-09T02:00:00Z")),
            ("2026-12-05T00:00:00Z", Some("2026-12-09T02:00:00Z")),
            ("2026-12-09T02:00:00Z", Some("2026-12-10T01:00:00Z")),
            ("2026-12-10T01:00:00Z", None),
            ("2026-12-10T01:30:00Z", None),
        ] {
            let (notices, remember, next) = due(&s, &hooks(), at(now), &memory);
            sent.extend(notices.iter().map(|n| format!("{now} {}", n.lead)));
            assert_eq!(next, next_want.map(at), "next after {now}");
            memory = remember;
        }
        assert_eq!(
            sent,
            [
                "2026-12-03T02:00:00Z 7d",
                "2026-12-09T02:00:00Z 24h",
                "2026-12-10T01:00:00Z 1h"
            ]
        );
        // Once it started (or is no longer projected), nothing is remembered for it.
        let (notices, remember, next) = due(&s, &hooks(), at("2026-12-10T02:00:00Z"), &memory);
        assert!(notices.is_empty() && remember.is_empty() && next.is_none());
    }

    /// A start first seen 2 h ahead: one notice (24h, the shortest due), not three; the 1 h one
    /// follows at its instant.
    #[test]
    fn lead_times_due_together_send_only_the_shortest() {
        let s = schedule(Some("2026-12-01T02:00:00Z"), ActionKind::Install);
        let (notices, remember, next) = due(&s, &hooks(), at("2026-12-01T00:00:00Z"), &BTreeSet::new());
        let leads: Vec<&str> = notices.iter().map(|n| n.lead.as_str()).collect();
        assert_eq!(leads, ["24h"]);
        assert_eq!(remember.len(), 2, "7d and 24h count as sent: {remember:?}");
        assert_eq!(next, Some(at("2026-12-01T01:00:00Z")));
        let (again, _, _) = due(&s, &hooks(), at("2026-12-01T00:30:00Z"), &remember);
        assert!(again.is_empty(), "not sent twice: {again:?}");
    }

    /// Nothing to announce: a start now, no projected start, nothing to do.
    #[test]
    fn only_future_projected_changes_are_announced() {
        for s in [
            schedule(Some("2026-12-01T00:00:00Z"), ActionKind::Upgrade),
            schedule(None, ActionKind::Upgrade),
            schedule(Some("2026-12-02T00:00:00Z"), ActionKind::Noop),
        ] {
            let (notices, remember, next) = due(&s, &hooks(), at("2026-12-01T00:00:00Z"), &BTreeSet::new());
            assert!(notices.is_empty() && remember.is_empty() && next.is_none(), "{s:?}");
        }
    }
}
