//! Approvals: who approved a change, and whether that is enough for the update rule (SPEC §2).
//!
//! Approver addresses come from two places: `Approved-by:` trailers on the commit that last
//! changed a target's desired version (read from git in `source::history`, handed in through
//! `plan::Evidence`) and `Approval` manifests. Here they are only counted: pure functions.
//!
//! # Semantics
//! - Addresses are compared **case-insensitively** (they are lowercased), and each counts once
//!   however many sources name it.
//! - Only addresses in the rule's `approvers` count. An **empty `approvers` list means anyone
//!   counts**: a team that wants "two approvals" without naming people writes no list.
//! - Downgrades (reverts) and config changes need no approvals: reverting is how a bad change is
//!   undone, and holding it for sign-off would keep the bad version running. The planner does
//!   not ask for them; this module does not decide that.
//! - With `[trust]` set, SPEC §2 counts an address only from a commit signed by its key. The
//!   signatures are checked where history is read (`source::history`); what they vouch for
//!   arrives here as [`TrustedApprovals`], and an approval is then also **bound to the release's
//!   content**: it counts only while the Release manifest it approved is unchanged
//!   ([`release_digest`] at the approving commit equals the one at head). A release added after
//!   the approval (a requirement like `^1.0` resolving to it), or an edited one, is not approved.

use foldhash::{HashMap, HashMapExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::manifest::Version;
use sha2::{Digest, Sha256};

use crate::manifest::{ApprovalSpec, Labels, Manifest, Release, UpdateRule, selector_matches};

/// A digest of a Release manifest's content (name and spec), `sha256:…`: what an approval is
/// bound to.
pub fn release_digest(release: &Release) -> String {
    let mut hasher = Sha256::new();
    hasher.update(release.manifest.name.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(&release.manifest.spec).unwrap_or_default());
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What signed history vouches for, with `[trust]` (computed in `reconcile::load::evidence`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedApprovals {
    /// Per target: the [`release_digest`] of each release of its component (by version) whose
    /// content is unchanged since the commit whose `Approved-by:` trailers approved its version.
    pub commit_releases: BTreeMap<String, BTreeMap<Version, String>>,
    /// Per Approval manifest (by name): the addresses the signed commit that added it vouches
    /// for, and the digest of the release it names when unchanged since that commit (`None`:
    /// added or changed afterwards).
    pub manifests: BTreeMap<String, ManifestApproval>,
}

/// One Approval manifest as signed history vouches for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestApproval {
    pub approvers: BTreeSet<String>,
    pub release: Option<String>,
    /// Why some or all of its `approvedBy` do not count (shown with an approval blocker).
    pub notes: Vec<String>,
}

/// The approver addresses that count for deploying `release` to a target, and why others
/// named for it do not.
///
/// Without `trusted` (no `[trust]`): every trailer address and every matching Approval's
/// `approvedBy` (SPEC §2). With it: only what signed history vouches for, and only while the
/// release's content is the one approved.
pub fn approvers_for<'a>(
    trusted: Option<&'a TrustedApprovals>,
    target: &str,
    from_commit: impl IntoIterator<Item = &'a str>,
    manifests: impl IntoIterator<Item = &'a Manifest<ApprovalSpec>>,
    release: &Release,
) -> (Vec<&'a str>, Vec<String>) {
    let Some(trusted) = trusted else {
        let mut all: Vec<&str> = from_commit.into_iter().collect();
        all.extend(
            manifests
                .into_iter()
                .flat_map(|a| a.spec.approved_by.iter().map(String::as_str)),
        );
        return (all, Vec::new());
    };
    let digest = release_digest(release);
    let mut counted = Vec::new();
    let mut notes = Vec::new();
    let from_commit: Vec<&str> = from_commit.into_iter().collect();
    if !from_commit.is_empty() {
        let approved = trusted
            .commit_releases
            .get(target)
            .and_then(|releases| releases.get(&release.version));
        if approved == Some(&digest) {
            counted.extend(from_commit);
        } else {
            notes.push(format!(
                "Approved-by {} not counted: {} {} was added or changed since the commit that approved it",
                from_commit.join(", "),
                release.spec().component,
                release.version,
            ));
        }
    }
    for approval in manifests {
        let Some(vouched) = trusted.manifests.get(&approval.name) else {
            continue;
        };
        notes.extend(vouched.notes.iter().cloned());
        if vouched.release.as_ref() != Some(&digest) {
            notes.push(format!(
                "Approval `{}` not counted: {} {} was added or changed since it was approved",
                approval.name,
                release.spec().component,
                release.version,
            ));
            continue;
        }
        counted.extend(vouched.approvers.iter().map(String::as_str));
    }
    (counted, notes)
}

/// The address in `Name <email>` (or a bare `email`), lowercased; `None` when there is none.
pub fn normalize_address(text: &str) -> Option<String> {
    let text = text.trim();
    let address = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    let address = address.trim();
    (address.contains('@') && !address.contains(char::is_whitespace)).then(|| address.to_lowercase())
}

/// How far an action is from the approvals its update rule requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub required: u32,
    /// Eligible addresses that approved, sorted, distinct.
    pub have: Vec<String>,
    /// How many more approvals are needed.
    pub missing: u32,
    /// Who may approve, sorted (empty = anyone); shared by the tallies of one rule.
    pub eligible: Arc<[String]>,
}

/// Who may approve under a rule listing `approvers`: their addresses normalized, sorted and
/// distinct (empty = anyone). The same for every action a rule governs, so the planner makes it
/// once per rule ([`Tally::count_among`]).
pub fn eligible_addresses(approvers: &[String]) -> Arc<[String]> {
    let eligible: BTreeSet<String> = approvers.iter().filter_map(|a| normalize_address(a)).collect();
    eligible.into_iter().collect()
}

impl Tally {
    /// Counts `approvers` (addresses from every source) against `rule`.
    ///
    /// # Guarantees
    /// Distinct, case-insensitive, and only eligible addresses count.
    pub fn count<'a>(rule: &UpdateRule, approvers: impl IntoIterator<Item = &'a str>) -> Tally {
        Tally::count_among(rule.approvals, &eligible_addresses(&rule.approvers), approvers)
    }

    /// [`Tally::count`] for a rule requiring `required` approvals whose
    /// [`eligible_addresses`] are `eligible`.
    pub fn count_among<'a>(
        required: u32,
        eligible: &Arc<[String]>,
        approvers: impl IntoIterator<Item = &'a str>,
    ) -> Tally {
        debug_assert!(
            eligible.is_sorted_by(|a, b| a < b),
            "eligible addresses are sorted and distinct"
        );
        let have: BTreeSet<String> = approvers
            .into_iter()
            .filter_map(normalize_address)
            .filter(|a| eligible.is_empty() || eligible.binary_search(a).is_ok())
            .collect();
        let have_count = u32::try_from(have.len()).unwrap_or(u32::MAX);
        Tally {
            required,
            missing: required.saturating_sub(have_count),
            have: have.into_iter().collect(),
            eligible: Arc::clone(eligible),
        }
    }

    /// Whether the rule asks for more approvals than it lists approvers: it can never pass.
    pub fn unreachable(&self) -> bool {
        !self.eligible.is_empty() && self.required as usize > self.eligible.len()
    }

    /// The blocker text when approvals are missing, e.g. "have 1 of 2 approvals
    /// (alice@example.com); still needed: 1 more from bob@example.com".
    pub fn shortfall(&self) -> Option<String> {
        if self.missing == 0 {
            return None;
        }
        let have = if self.have.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.have.join(", "))
        };
        let from = if self.eligible.is_empty() {
            " (anyone may approve: the rule lists no approvers)".to_string()
        } else {
            let open: Vec<&str> = self
                .eligible
                .iter()
                .filter(|e| !self.have.contains(e))
                .map(String::as_str)
                .collect();
            format!(" from {}", open.join(", "))
        };
        Some(format!(
            "have {} of {} approvals{have}; still needed: {} more{from}",
            self.have.len(),
            self.required,
            self.missing
        ))
    }
}

/// `Approval` manifests indexed by (component, version), so each action looks at only the
/// approvals of its own change.
#[derive(Debug, Default)]
pub struct ApprovalIndex<'a> {
    by_change: HashMap<&'a str, HashMap<Version, Vec<&'a Manifest<ApprovalSpec>>>>,
}

impl<'a> ApprovalIndex<'a> {
    /// Indexes `approvals`; one whose `version` is not semver matches nothing (validation
    /// reports it).
    pub fn new(approvals: &'a [Manifest<ApprovalSpec>]) -> Self {
        let mut by_change: HashMap<&'a str, HashMap<Version, Vec<&'a Manifest<ApprovalSpec>>>> = HashMap::new();
        for approval in approvals {
            if let Ok(version) = Version::parse(approval.spec.version.trim()) {
                by_change
                    .entry(approval.spec.component.as_str())
                    .or_default()
                    .entry(version)
                    .or_default()
                    .push(approval);
            }
        }
        ApprovalIndex { by_change }
    }

    /// Every Approval for `component` at `version` whose selector matches `labels` (absent
    /// selector = every target of the component).
    pub fn matching<'s>(
        &'s self,
        component: &str,
        version: &Version,
        labels: &'s Labels,
    ) -> impl Iterator<Item = &'a Manifest<ApprovalSpec>> + 's {
        self.by_change
            .get(component)
            .and_then(|versions| versions.get(version))
            .into_iter()
            .flatten()
            .copied()
            .filter(move |a| selector_matches(a.spec.selector.as_ref(), labels))
    }

    /// The `approvedBy` entries of every Approval for `component` at `version` whose selector
    /// matches `labels` (absent selector = every target of the component).
    pub fn approvers<'s>(
        &'s self,
        component: &str,
        version: &Version,
        labels: &'s Labels,
    ) -> impl Iterator<Item = &'a str> + 's {
        self.by_change
            .get(component)
            .and_then(|versions| versions.get(version))
            .into_iter()
            .flatten()
            .filter(move |a| selector_matches(a.spec.selector.as_ref(), labels))
            .flat_map(|a| a.spec.approved_by.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(approvals: u32, approvers: &[&str]) -> UpdateRule {
        UpdateRule {
            approvals,
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            ..UpdateRule::default()
        }
    }

    #[test]
    fn addresses_are_extracted_and_lowercased() {
        let cases = [
            ("Alice Smith <Alice@Example.com>", Some("alice@example.com")),
            ("bob@example.com", Some("bob@example.com")),
            ("  <carol@example.com> ", Some("carol@example.com")),
            ("Dave", None),
            ("Eve <>", None),
        ];
        for (text, expected) in cases {
            assert_eq!(normalize_address(text).as_deref(), expected, "{text}");
        }
    }

    #[test]
    fn counts_distinct_case_insensitive_eligible_approvers_only() {
        let r = rule(2, &["alice@example.com", "Bob@Example.com"]);
        let tally = Tally::count(
            &r,
            [
                "Alice <ALICE@example.com>",
                "alice@example.com",
                "mallory@example.com", // not eligible: ignored
            ],
        );
        assert_eq!(tally.have, vec!["alice@example.com"]);
        assert_eq!(tally.missing, 1);
        assert_eq!(*tally.eligible, ["alice@example.com", "bob@example.com"]);
        assert_eq!(
            tally.shortfall().as_deref(),
            Some("have 1 of 2 approvals (alice@example.com); still needed: 1 more from bob@example.com")
        );
        let both = Tally::count(&r, ["alice@example.com", "BOB@example.com"]);
        assert_eq!(both.missing, 0);
        assert_eq!(both.shortfall(), None);
    }

    #[test]
    fn empty_approvers_list_lets_anyone_count() {
        let tally = Tally::count(&rule(2, &[]), ["x@example.com", "y@example.com", "X@example.com"]);
        assert_eq!(tally.have, vec!["x@example.com", "y@example.com"]);
        assert_eq!(tally.missing, 0);
        let none = Tally::count(&rule(1, &[]), []);
        assert_eq!(
            none.shortfall().as_deref(),
            Some("have 0 of 1 approvals; still needed: 1 more (anyone may approve: the rule lists no approvers)")
        );
    }

    #[test]
    fn more_required_than_listed_is_unreachable() {
        assert!(Tally::count(&rule(3, &["a@x.io", "b@x.io"]), []).unreachable());
        assert!(!Tally::count(&rule(2, &["a@x.io", "b@x.io"]), []).unreachable());
        assert!(!Tally::count(&rule(5, &[]), []).unreachable());
    }
}
