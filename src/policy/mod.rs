//! Policies: which rules govern a target, and the gates (windows, approvals, waves) an action must pass.
//!
//! Everything here is a pure function of the desired state, the recorded state and `now`.

pub mod analysis;
pub mod approvals;
pub mod gates;
pub mod waves;
pub mod window;

use crate::manifest::Version;
use serde::Serialize;

use crate::manifest::{Desired, Policy, PolicySpec, Target, UpdateRule};

/// The kind of version change, which picks the update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum UpdateType {
    Patch,
    Minor,
    Major,
}

impl UpdateType {
    /// Index into per-type arrays (patch, minor, major).
    pub fn index(self) -> usize {
        match self {
            UpdateType::Patch => 0,
            UpdateType::Minor => 1,
            UpdateType::Major => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateType::Patch => "patch",
            UpdateType::Minor => "minor",
            UpdateType::Major => "major",
        }
    }
}

impl std::fmt::Display for UpdateType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a change by semver convention: for 0.x a minor bump counts as major, and for
/// 0.0.x every bump does (Cargo's rule: the leftmost non-zero part is the breaking one).
/// An install (no `from`) follows the rules of a major update.
///
/// Calendar versions (`versioning: calver`) carry no compatibility in their numbers: another
/// date is a minor update, the same date with another sequence a patch; the planner makes an
/// action that crosses a `breaking: true` release a major one (SPEC §2, Component).
pub fn update_type(from: Option<&Version>, to: &Version) -> UpdateType {
    let Some(from) = from else { return UpdateType::Major };
    let (Some(from), Some(to)) = (from.semver(), to.semver()) else {
        return calver_update_type(from, to);
    };
    // The breaking part is the leftmost non-zero one of `from`.
    let breaking = if from.major != 0 {
        from.major != to.major
    } else if from.minor != 0 {
        from.major != to.major || from.minor != to.minor
    } else {
        from.major != to.major || from.minor != to.minor || from.patch != to.patch
    };
    if breaking {
        UpdateType::Major
    } else if from.minor != to.minor {
        UpdateType::Minor
    } else {
        UpdateType::Patch
    }
}

/// [`update_type`] of an upgrade between calendar versions (either one calver; one read back
/// from the state branch may parse as semver, `2026.10.15`): by date, never major.
fn calver_update_type(from: &Version, to: &Version) -> UpdateType {
    let date = |v: &Version| {
        v.calver()
            .map(|c| (u64::from(c.year), u64::from(c.month), u64::from(c.day)))
            .or_else(|| v.semver().map(|s| (s.major, s.minor, s.patch)))
    };
    if date(from) == date(to) {
        UpdateType::Patch
    } else {
        UpdateType::Minor
    }
}

/// The rules that apply to a target: a declared policy or the built-in default.
#[derive(Debug, Clone, Copy)]
pub enum Governing<'a> {
    Declared(&'a Policy),
    BuiltIn,
}

/// The built-in default policy: no approvals, windows respected, one wave, `maxParallel: 1`,
/// `autoRollback: true` (every field at its serde default).
pub fn builtin_policy_spec() -> &'static PolicySpec {
    static SPEC: std::sync::OnceLock<PolicySpec> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| {
        serde_json::from_value(serde_json::json!({}))
            .unwrap_or_else(|e| unreachable!("every PolicySpec field has a default: {e}"))
    })
}

impl<'a> Governing<'a> {
    pub fn spec(&self) -> &'a PolicySpec {
        match self {
            Governing::Declared(p) => &p.manifest.spec,
            Governing::BuiltIn => builtin_policy_spec(),
        }
    }
    /// The typed `health` section (no checks for the built-in policy).
    pub fn health(&self) -> &'a crate::manifest::health::HealthSettings {
        match self {
            Governing::Declared(p) => &p.health,
            Governing::BuiltIn => &crate::manifest::health::NO_HEALTH_CHECKS,
        }
    }
    pub fn name(&self) -> Option<&'a str> {
        match self {
            Governing::Declared(p) => Some(&p.manifest.name),
            Governing::BuiltIn => None,
        }
    }
    pub fn policy(&self) -> Option<&'a Policy> {
        match self {
            Governing::Declared(p) => Some(p),
            Governing::BuiltIn => None,
        }
    }
    /// The update rule for an update type.
    pub fn rule(&self, kind: UpdateType) -> &'a UpdateRule {
        let updates = &self.spec().updates;
        match kind {
            UpdateType::Patch => &updates.patch,
            UpdateType::Minor => &updates.minor,
            UpdateType::Major => &updates.major,
        }
    }
    /// The rule that governs a change to `release` of update type `kind`: `updates.emergency`
    /// for an emergency release when the policy has that rule, else the rule of its update type
    /// (the safe default, SPEC §2: an emergency without a rule for it gets no exemption).
    pub fn rule_for(&self, kind: UpdateType, release: &crate::manifest::Release) -> &'a UpdateRule {
        match (&self.spec().updates.emergency, release.spec().urgency) {
            (Some(rule), crate::manifest::Urgency::Emergency) => rule,
            _ => self.rule(kind),
        }
    }
    /// The parsed `soak` of each declared wave, in order.
    pub fn wave_soaks(&self) -> &'a [Option<std::time::Duration>] {
        self.policy().map_or(&[], |p| p.wave_soak.as_slice())
    }
    /// The parsed `after` of each declared wave, in order.
    pub fn wave_afters(&self) -> &'a [Option<crate::manifest::WaveStage>] {
        self.policy().map_or(&[], |p| p.wave_after.as_slice())
    }
}

/// Two policies of equal priority select the same target.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTie {
    pub first: String,
    pub second: String,
    pub priority: i64,
}

impl std::fmt::Display for PolicyTie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "policies `{}` and `{}` both select this target with priority {}; give one a higher priority or narrow a selector",
            self.first, self.second, self.priority
        )
    }
}

/// Picks the policy for a target: the highest-priority match; a tie at the top is an error.
///
/// # Errors
/// [`PolicyTie`] naming both policies.
pub fn select_policy<'a>(desired: &'a Desired, target: &Target) -> Result<Governing<'a>, PolicyTie> {
    // Matched by `validate` when the commit was loaded (`desired.policies` is sorted by
    // priority, highest first); a debug build checks that nothing changed since.
    let found = target.policies;
    debug_assert_eq!(
        found,
        crate::manifest::PolicyMatch::of(&desired.policies, &target.manifest),
        "policies matched at validation no longer match target `{}`",
        target.name()
    );
    let Some(first) = found.first.and_then(|i| desired.policies.get(i)) else {
        return Ok(Governing::BuiltIn);
    };
    if let Some(second) = found.second.and_then(|i| desired.policies.get(i))
        && second.manifest.spec.priority == first.manifest.spec.priority
    {
        return Err(PolicyTie {
            first: first.manifest.name.clone(),
            second: second.manifest.name.clone(),
            priority: first.manifest.spec.priority,
        });
    }
    Ok(Governing::Declared(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_types() {
        let v = |s: &str| Version::parse(s).unwrap();
        let cases = [
            (Some("1.2.3"), "1.2.4", UpdateType::Patch),
            (Some("1.2.3"), "1.3.0", UpdateType::Minor),
            (Some("1.2.3"), "2.0.0", UpdateType::Major),
            (Some("0.2.3"), "0.2.4", UpdateType::Patch),
            (Some("0.2.3"), "0.3.0", UpdateType::Major),
            (Some("0.0.3"), "0.0.4", UpdateType::Major),
            (Some("1.2.3"), "1.2.4-rc.1", UpdateType::Patch),
            (None, "1.0.0", UpdateType::Major),
            // Calendar versions (issue #16): by date; `breaking: true` makes it major in the plan.
            (Some("2026-02-03-001"), "2026-02-03-002", UpdateType::Patch),
            (Some("2026-02-03-001"), "2026.02.04", UpdateType::Minor),
            (Some("2025-12-31-001"), "2026-01-01-001", UpdateType::Minor),
            // Read back as semver from the state branch, a date is still compared by date.
            (Some("2026.10.15"), "2026-10-15-002", UpdateType::Patch),
            (None, "2026-02-03-001", UpdateType::Major),
        ];
        for (from, to, expected) in cases {
            assert_eq!(update_type(from.map(v).as_ref(), &v(to)), expected, "{from:?} → {to}");
        }
    }

    #[test]
    fn builtin_policy_defaults() {
        let spec = builtin_policy_spec();
        assert!(spec.auto_rollback);
        assert_eq!(spec.rollout.max_parallel, 1);
        assert!(spec.updates.major.windows);
        assert_eq!(spec.updates.major.approvals, 0);
    }
}
