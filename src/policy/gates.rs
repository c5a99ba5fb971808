//! The window gate: which windows govern a target, which of their rules apply to an action, and
//! whether it may start at `now` — computed once per distinct (windows, rules) combination.
//!
//! A fleet of 10,000 targets typically has a handful of label combinations and so a handful of
//! distinct window sets; evaluating windows per target would repeat the same arithmetic
//! thousands of times, so verdicts are cached by the set of governing windows and the scope.

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use jiff::Timestamp;

use crate::manifest::selectors::ResolvedSelector;
use crate::manifest::{LabelView, Labels, Manifest, WindowSpec, selector_matches};

use super::window::{NextOpen, Openness, SEARCH_HORIZON, TargetWindows, WindowSchedule};

/// Which rules of the governing windows hold an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowScope {
    /// Allow windows and freezes (the default, `windows: true`).
    AllowAndDeny,
    /// Freezes only (`windows: false`, or a downgrade while `rollback.respectWindows` is false).
    DenyOnly,
    /// Allow windows only: an emergency release under `updates.emergency` with
    /// `freezes: override` (and `windows: true`).
    AllowOnly,
    /// Nothing holds it (a downgrade with `rollback.respectDenyWindows: false`, an emergency
    /// with `windows: false, freezes: override`).
    Ignore,
}

/// Whether an action may start now as far as windows go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowVerdict {
    Open,
    /// Closed now; opens at `opens_at`, in the zone of the window that opens it.
    Closed {
        /// Shared by every target the verdict holds (issue #17: 10,000 copies otherwise).
        reason: Arc<str>,
        opens_at: jiff::Zoned,
    },
    /// Closed now and not open again within [`SEARCH_HORIZON`]: a violation.
    Never {
        reason: String,
    },
}

/// The compiled windows of a commit with their selectors, and a verdict cache.
pub struct WindowGate<'w> {
    windows: Vec<(&'w WindowSchedule, Option<&'w Labels>)>,
    now: Timestamp,
    /// Verdicts by scope, then by the indices of the governing windows (issue #17: looked up
    /// with [`Self::governing_scratch`], so a target whose set was seen costs no allocation).
    cache: HashMap<WindowScope, HashMap<Vec<usize>, WindowVerdict>>,
    /// The indices of the windows governing the target being judged, reused between calls.
    governing_scratch: Vec<usize>,
    /// Each window's selector resolved in the selector table of the targets judged (by the
    /// table's address; resolved again for another table; a resolution carries its table's id,
    /// so one made for a table since freed is never answered from another table's bits).
    resolved: Option<(usize, Vec<Option<ResolvedSelector<'w>>>)>,
}

impl<'w> WindowGate<'w> {
    /// Pairs each compiled schedule with its manifest's selector (by name). A schedule without
    /// a manifest governs every target; a manifest without a schedule (it did not compile, and
    /// loading reported why) governs none.
    pub fn new(schedules: &'w [WindowSchedule], manifests: &'w [Manifest<WindowSpec>], now: Timestamp) -> Self {
        let windows = schedules
            .iter()
            .map(|s| {
                let selector = manifests
                    .iter()
                    .find(|m| m.name == s.name())
                    .and_then(|m| m.spec.selector.as_ref());
                (s, selector)
            })
            .collect();
        WindowGate {
            windows,
            now,
            cache: HashMap::new(),
            governing_scratch: Vec::new(),
            resolved: None,
        }
    }

    /// The windows whose selectors match `labels`, in name order (the timeline shades them).
    pub fn governing(&self, labels: &Labels) -> Vec<&'w WindowSchedule> {
        let mut governing: Vec<&WindowSchedule> = self
            .windows
            .iter()
            .filter(|(_, selector)| selector_matches(*selector, labels))
            .map(|(w, _)| *w)
            .collect();
        governing.sort_by(|a, b| a.name().cmp(b.name()));
        governing
    }

    /// The verdict for a target with `labels` under `scope` at the gate's `now`: borrowed
    /// from the gate, which judges each distinct set of governing windows once per scope.
    pub fn verdict(&mut self, labels: LabelView, scope: WindowScope) -> &WindowVerdict {
        const OPEN: &WindowVerdict = &WindowVerdict::Open;
        if scope == WindowScope::Ignore {
            return OPEN;
        }
        let mut governing = std::mem::take(&mut self.governing_scratch);
        governing.clear();
        match labels.table() {
            Some(table) => {
                let address = std::ptr::from_ref(table) as usize;
                if self.resolved.as_ref().is_none_or(|(a, _)| *a != address) {
                    let resolved = self.windows.iter().map(|(_, s)| s.map(|s| table.resolve(s))).collect();
                    self.resolved = Some((address, resolved));
                }
                let resolved = self.resolved.as_ref().map_or(&[][..], |(_, r)| r.as_slice());
                governing.extend(
                    resolved
                        .iter()
                        .enumerate()
                        .filter(|(_, selector)| selector.as_ref().is_none_or(|s| labels.matches_resolved(s)))
                        .map(|(i, _)| i),
                );
            }
            None => governing.extend(
                self.windows
                    .iter()
                    .enumerate()
                    .filter(|(_, (_, selector))| labels.matches(*selector))
                    .map(|(i, _)| i),
            ),
        }
        let verdicts = self.cache.entry(scope).or_default();
        if governing.is_empty() {
            self.governing_scratch = governing;
            return OPEN;
        }
        if !verdicts.contains_key(governing.as_slice()) {
            let schedules = governing.iter().map(|&i| self.windows[i].0);
            let target_windows = match scope {
                WindowScope::DenyOnly => TargetWindows::deny_only(schedules),
                WindowScope::AllowOnly => TargetWindows::allow_only(schedules),
                _ => TargetWindows::new(schedules),
            };
            verdicts.insert(governing.clone(), judge(&target_windows, self.now));
        }
        let verdict = &verdicts[governing.as_slice()];
        self.governing_scratch = governing;
        verdict
    }
}

fn judge(windows: &TargetWindows, now: Timestamp) -> WindowVerdict {
    let Openness::Closed(reasons) = windows.status(now) else {
        return WindowVerdict::Open;
    };
    let reason = reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    match windows.next_open(now) {
        NextOpen::OpensAt(opens_at) => WindowVerdict::Closed {
            opens_at,
            reason: reason.into(),
        },
        // `status` said closed, so "open now" cannot happen; treat it as open to be safe.
        NextOpen::OpenNow => WindowVerdict::Open,
        NextOpen::Never => WindowVerdict::Never {
            reason: format!(
                "the target's windows never open within {} days of {now} ({reason}); change the allow or deny rules",
                SEARCH_HORIZON.as_hours() / 24
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(name: &str, yaml_allow: Vec<(&str, &str, &str)>, deny_dates: Vec<&str>) -> WindowSchedule {
        let spec: WindowSpec = serde_json::from_value(serde_json::json!({
            "timezone": "Europe/Berlin",
            "allow": yaml_allow.iter().map(|(d, s, e)| serde_json::json!({"days": [d], "start": s, "end": e})).collect::<Vec<_>>(),
            "deny": if deny_dates.is_empty() { serde_json::json!([]) } else { serde_json::json!([{"dates": deny_dates}]) },
        }))
        .unwrap();
        WindowSchedule::compile(name, &spec).unwrap()
    }

    fn now(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn closed_window_reports_exact_opening_with_offset() {
        let s = [schedule("weekend", vec![("sat", "02:00", "06:00")], vec![])];
        // Friday 2026-11-20 10:00 UTC: next opening is Saturday 02:00 CET.
        let mut gate = WindowGate::new(&s, &[], now("2026-11-20T10:00:00Z"));
        match gate.verdict(LabelView::plain(&Labels::new()), WindowScope::AllowAndDeny) {
            WindowVerdict::Closed { reason, opens_at } => {
                assert_eq!(&**reason, "outside the allow window of \"weekend\"");
                assert_eq!(crate::policy::window::rfc3339(opens_at), "2026-11-21T02:00:00+01:00");
            }
            other => panic!("{other:?}"),
        }
        // Deny-only ignores the allow rule.
        assert_eq!(
            gate.verdict(LabelView::plain(&Labels::new()), WindowScope::DenyOnly),
            &WindowVerdict::Open
        );
    }

    #[test]
    fn freezes_hold_deny_only_scope_but_not_ignore() {
        let s = [schedule("xmas", vec![], vec!["2026-12-24"])];
        let mut gate = WindowGate::new(&s, &[], now("2026-12-24T10:00:00Z"));
        match gate.verdict(LabelView::plain(&Labels::new()), WindowScope::DenyOnly) {
            WindowVerdict::Closed { opens_at, .. } => {
                assert_eq!(crate::policy::window::rfc3339(opens_at), "2026-12-25T00:00:00+01:00");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            gate.verdict(LabelView::plain(&Labels::new()), WindowScope::Ignore),
            &WindowVerdict::Open
        );
    }

    #[test]
    fn a_window_that_never_opens_is_reported_as_never() {
        let spec: WindowSpec = serde_json::from_value(serde_json::json!({
            "timezone": "UTC",
            "allow": [{"days": ["sat"], "start": "02:00", "end": "06:00"}],
            "deny": [{"days": ["sat"], "start": "00:00", "end": "24:00"}],
        }))
        .unwrap();
        let s = [WindowSchedule::compile("never", &spec).unwrap()];
        let mut gate = WindowGate::new(&s, &[], now("2026-11-20T10:00:00Z"));
        match gate.verdict(LabelView::plain(&Labels::new()), WindowScope::AllowAndDeny) {
            WindowVerdict::Never { reason } => assert!(reason.contains("never open within 400 days"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
