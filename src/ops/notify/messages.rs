//! The one-line texts of the daemon's notifications (`text` in every webhook body,
//! Slack-compatible), in one place so a reviewer sees them together and a snapshot test pins them.

/// `rollout_started`: the first target of a new (component, version) started.
pub fn rollout_started(component: &str, version: &str, action: &str, first_target: &str) -> String {
    format!("{component} {version}: rollout started ({action} on {first_target} first)")
}

/// `rollback`: an attempt is being rolled back.
pub fn rollback(component: &str, target: &str, reason: &str) -> String {
    format!("↩ {component} on {target}: rolling back ({reason})")
}

/// `failed`: an attempt ended failed or rolled back.
pub fn failed(component: &str, target: &str, action: &str, outcome: &str, message: &str) -> String {
    format!("✗ {component} on {target}: {action} {outcome}: {message}")
}

/// `invalid_commit`: the desired commit does not validate (its first error, and how many more).
pub fn invalid_commit(short_commit: &str, first_error: &str, more: usize) -> String {
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!("✗ desired commit {short_commit} is not valid; nothing applied: {first_error}{more}")
}

/// `wave_completed`.
pub fn wave_completed(component: &str, version: &str, wave: &str) -> String {
    format!("✓ {component} {version}: wave {wave} completed")
}

/// `blocked`: a target's action cannot start; `reasons` as `kind: reason (until …)`.
pub fn blocked(component: &str, target: &str, action: &str, desired: Option<&str>, reasons: &[String]) -> String {
    format!(
        "⏸ {component} on {target}: {action} to {} blocked — {}",
        desired.unwrap_or("-"),
        reasons.join("; ")
    )
}

/// One reason of [`blocked`].
pub fn blocker(blocker: &crate::plan::Blocker) -> String {
    match blocker.lifts_at_text() {
        Some(w) => format!("{}: {} (until {w})", blocker.kind, blocker.reason),
        None => format!("{}: {}", blocker.kind, blocker.reason),
    }
}

/// `converged`: every target runs what the desired commit asks.
pub fn converged(targets: usize, short_commit: &str) -> String {
    format!("✓ all {targets} targets converged on {short_commit}")
}

/// `update_available`: a target pinned below a release it could take.
pub fn update_available(component: &str, target: &str, pinned: &str, newer: &str) -> String {
    format!("{component} {newer} is available for {target}, pinned to {pinned}")
}

/// `upgrade_scheduled`: a target's change is projected to start at `start` (`when`: "in 24 h").
pub fn upgrade_scheduled(
    component: &str,
    target: &str,
    action: &str,
    from: Option<&str>,
    to: &str,
    start: &str,
    when: &str,
) -> String {
    let change = match from {
        Some(from) => format!("{from} → {to}"),
        None => to.to_string(),
    };
    format!("📅 {component} on {target}: {action} {change} projected to start {start} ({when})")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Blocker, BlockerKind};

    /// Every notification text, as receivers see it. Also guards the `releaseage` regression
    /// (issue #9): blocker kinds read as in JSON.
    #[test]
    fn notification_texts() {
        let mut age = Blocker::new(BlockerKind::ReleaseAge, "2.0.0 is younger than minReleaseAge 7d");
        age.until = Some("2026-11-25T00:00:00Z".parse().unwrap());
        let approval = Blocker::new(
            BlockerKind::Approval,
            "have 1 of 2 approvals (missing: bob@example.com)",
        );
        let reasons = [blocker(&age), blocker(&approval)];
        let texts = [
            rollout_started("billing", "2.0.0", "upgrade", "acme"),
            rollback("billing", "acme", "step health failed: exit 1"),
            failed(
                "billing",
                "acme",
                "upgrade",
                "rolled_back",
                "step health failed: exit 1",
            ),
            invalid_commit(
                "0123456789ab",
                "targets/acme.yaml:4:12: spec.version \"2.0\" is not semver",
                2,
            ),
            invalid_commit(
                "0123456789ab",
                "gantry.toml:3:17: poll_interval: \"10\" is not a valid duration",
                0,
            ),
            wave_completed("billing", "2.0.0", "canary"),
            blocked("billing", "acme", "upgrade", Some("2.0.0"), &reasons),
            converged(3, "0123456789ab"),
            update_available("billing", "acme", "1.2.0", "1.3.0"),
            upgrade_scheduled(
                "billing",
                "acme",
                "upgrade",
                Some("1.2.0"),
                "2.0.0",
                "2026-12-10T02:00:00Z",
                "in 24 h",
            ),
        ];
        insta::assert_snapshot!("notification_texts", texts.join("\n"));
    }
}
