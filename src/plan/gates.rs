//! The per-action gates: windows, approvals, release age, in-progress attempts. Every reason an
//! action cannot start now, and the gates that can never open (violations).

use std::sync::Arc;

use crate::manifest::{Desired, Freezes, Release, Target};
use crate::policy::approvals::Tally;
use crate::policy::gates::{WindowScope, WindowVerdict};
use crate::policy::{Governing, UpdateType};
use crate::state::{Outcome, TargetRecord, TargetStatus};

use super::model::{Action, ActionKind, ApprovalState, Blocker, BlockerKind, PlanInput};
use super::resolve::release_eligible_at;
use super::{Shared, in_progress_blocker};

/// Pushes every reason the action cannot start now onto `action.blocked_by` (all of them, not
/// just the first), and onto `action.violations` a gate that can never open (a window that
/// never opens, more approvals required than approvers listed).
///
/// Waves and dependencies need every action, so [`super::rollouts::plan_rollouts`] and
/// [`super::deps::gate_dependencies`] add theirs afterwards.
pub(super) fn gates<'a>(
    input: &'a PlanInput,
    shared: &mut Shared<'a>,
    target: &'a Target,
    governing: Governing<'a>,
    record: Option<&'a TargetRecord>,
    release: &'a Release,
    action: &mut Action,
) {
    let blockers = &mut action.blocked_by;
    if target.spec().suspend {
        blockers.push(Blocker::new(
            BlockerKind::Suspended,
            "target is suspended (spec.suspend: true)",
        ));
    }
    if governing.spec().suspend {
        blockers.push(Blocker::new(
            BlockerKind::Suspended,
            format!("policy `{}` is suspended", governing.name().unwrap_or("default")),
        ));
    }
    if let Some(r) = record {
        if r.status == TargetStatus::InProgress {
            blockers.push(in_progress_blocker(r));
        }
        if let Some(last) = &r.last_attempt
            && matches!(last.outcome, Some(Outcome::Failed | Outcome::RolledBack))
            && last.to == release.version
            && (action.action != ActionKind::Config || last.config_hash.as_deref() == Some(target.config_hash.as_str()))
            // Any change to the target's spec since the attempt (e.g. `retry`) re-arms it.
            && last.spec_hash.as_ref().is_none_or(|h| *h == target.spec_hash())
        {
            let retry = format!(
                "to try again, bump its spec.retry (`gantry retry {}`) or change its spec (fix forward or revert)",
                target.name()
            );
            blockers.push(Blocker::new(
                BlockerKind::Halted,
                format!(
                    "the last attempt to {} ({}) ended {}: {}; {retry}",
                    last.to,
                    last.id,
                    last.outcome.map_or("", Outcome::as_str),
                    if last.message.is_empty() {
                        "no message"
                    } else {
                        &last.message
                    }
                ),
            ));
        }
    }
    if matches!(
        action.action,
        ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade
    ) && let Some(kind) = action.update_type
        && let Some(at) = release_eligible_at(input, governing, release, kind)
        && at > input.now
    {
        let mut b = Blocker::new(
            BlockerKind::ReleaseAge,
            format!(
                "{} {} was released too recently for a {} update under policy `{}`",
                target.spec().component,
                release.version,
                kind.as_str(),
                governing.name().unwrap_or("default")
            ),
        );
        b.until = Some(at);
        blockers.push(b);
    }

    match shared.windows.verdict(
        input.desired.labels_of(target),
        window_scope(governing, action, release),
    ) {
        WindowVerdict::Open => {}
        WindowVerdict::Closed { reason, opens_at } => {
            let mut b = Blocker::new(BlockerKind::Window, Arc::clone(reason));
            b.opens_at = Some(opens_at.clone());
            action.blocked_by.push(b);
        }
        WindowVerdict::Never { reason } => action.violations.push(reason.clone()),
    }

    // Config changes need no approvals; reverts (to a rollback point: no `update_type`) need
    // the policy's break-glass `rollback.approvals` (issue #16), none by default. Automatic
    // rollbacks of a failed attempt are no planned action and never come here.
    let gate = match (action.action, action.update_type) {
        (ActionKind::Install | ActionKind::Upgrade | ActionKind::Downgrade, Some(kind)) => {
            let rule = governing.rule_for(kind, release);
            Some((rule.approvals, &rule.approvers, Some(kind)))
        }
        (ActionKind::Downgrade, None) if governing.spec().rollback.approvals > 0 => {
            let rollback = &governing.spec().rollback;
            Some((rollback.approvals, &rollback.approvers, None))
        }
        _ => None,
    };
    if let Some((required, listed, update_type)) = gate
        && required > 0
    {
        let from_commit = input
            .evidence
            .commit_approvers
            .get(target.name())
            .into_iter()
            .flatten()
            .map(String::as_str);
        let from_manifests = shared
            .approvals
            .matching(&target.spec().component, &release.version, target.labels());
        let (approvers, notes) = crate::policy::approvals::approvers_for(
            input.evidence.trusted.as_ref(),
            target.name(),
            from_commit,
            from_manifests,
            release,
        );
        let tally = Tally::count_among(required, shared.eligible(listed), approvers);
        if tally.unreachable() {
            let what = match update_type {
                Some(kind) => format!("a {} update", kind.as_str()),
                None => "a rollback".to_string(),
            };
            action.violations.push(format!(
                    "policy `{}` requires {} approvals for {what} but lists only {} approvers ({}); lower `approvals` or add approvers",
                    governing.name().unwrap_or("default"),
                    tally.required,
                    tally.eligible.len(),
                    tally.eligible.join(", ")
                ));
        } else if tally.have.is_empty() && notes.is_empty() && tally.missing > 0 {
            // Nobody approved yet (most of a fleet waiting for approvals): the same text for
            // every action of the rule, worded once.
            let reason = shared.unapproved(&tally);
            action.blocked_by.push(Blocker::new(BlockerKind::Approval, reason));
        } else if let Some(reason) = tally.shortfall() {
            let reason = std::iter::once(reason).chain(notes).collect::<Vec<_>>().join("; ");
            action.blocked_by.push(Blocker::new(BlockerKind::Approval, reason));
        }
        action.approvals = Some(ApprovalState {
            required: tally.required,
            have: tally.have,
            missing: tally.missing,
            eligible: tally.eligible,
        });
    }
}

/// Which window rules hold an action (SPEC §2): installs and upgrades follow their update
/// type's rule (`windows: false` leaves only freezes), or `updates.emergency` for an emergency
/// release (`freezes: override` lifts freezes too), config changes the `patch` rule;
/// downgrades only freezes, unless `rollback.respectWindows` (then all of them) or
/// `rollback.respectDenyWindows: false` (then none).
pub(super) fn window_scope(governing: Governing, action: &Action, release: &Release) -> WindowScope {
    let scope_of = |rule: &crate::manifest::UpdateRule| match (rule.windows, rule.freezes) {
        (true, Freezes::Hold) => WindowScope::AllowAndDeny,
        (false, Freezes::Hold) => WindowScope::DenyOnly,
        (true, Freezes::Override) => WindowScope::AllowOnly,
        (false, Freezes::Override) => WindowScope::Ignore,
    };
    let by_rule = |kind: UpdateType| scope_of(governing.rule_for(kind, release));
    match action.action {
        ActionKind::Install | ActionKind::Upgrade => by_rule(action.update_type.unwrap_or(UpdateType::Major)),
        // A config change is no release: never the emergency rule.
        ActionKind::Config => scope_of(governing.rule(UpdateType::Patch)),
        // A downgrade to a version that never ran here follows the upgrade rules.
        ActionKind::Downgrade if action.update_type.is_some() => {
            by_rule(action.update_type.unwrap_or(UpdateType::Major))
        }
        ActionKind::Downgrade => {
            let rollback = &governing.spec().rollback;
            if rollback.respect_windows {
                WindowScope::AllowAndDeny
            } else if rollback.respect_deny_windows == Some(false) {
                WindowScope::Ignore
            } else {
                WindowScope::DenyOnly
            }
        }
        ActionKind::Noop | ActionKind::Remove => WindowScope::Ignore,
    }
}

/// The governing policy of an action, by the name the per-target pass recorded.
pub(super) fn governing_by_name<'a>(desired: &'a Desired, name: Option<&str>) -> Governing<'a> {
    name.and_then(|n| desired.policies.iter().find(|p| p.manifest.name == n))
        .map_or(Governing::BuiltIn, Governing::Declared)
}
