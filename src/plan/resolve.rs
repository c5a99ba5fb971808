//! Which release a target's desired version resolves to: channels, policy denials, prereleases
//! matched by their release version, and when a release is old enough for its update type.

use crate::manifest::Version;
use jiff::Timestamp;

use crate::manifest::{Release, Target, VersionWanted};
use crate::policy::{self, Governing, UpdateType};

use super::model::PlanInput;

/// The releases a target may be given: channel allowed for prereleases.
pub(super) fn channel_allowed(target: &Target, release: &Release) -> bool {
    release
        .channel()
        .is_none_or(|c| target.spec().channels.iter().any(|allowed| allowed == c))
}

pub(super) fn denied_by(policy: Governing, version: &Version) -> Option<String> {
    let p = policy.policy()?;
    p.deny
        .iter()
        .zip(&p.manifest.spec.deny)
        .find(|(set, _)| set.covers(version))
        .map(|(_, text)| text.clone())
}

/// Whether a requirement matches a release, letting prereleases of allowed channels match by
/// their release version (`^2` accepts `2.1.0-beta.1` for a target on the `beta` channel).
pub(super) fn requirement_matches(req: &crate::manifest::VersionReq, release: &Release) -> bool {
    crate::manifest::values::requirement_accepts(req, &release.version)
}

/// The update type of moving from `current` to `release` ([`policy::update_type`]); for calendar
/// versions, whose numbers say nothing of compatibility, crossing a `breaking: true` release in
/// (current, release] makes it major (SPEC §2, Component `versioning`).
pub(super) fn update_type_of(releases: &[Release], current: Option<&Version>, release: &Release) -> UpdateType {
    let kind = policy::update_type(current, &release.version);
    let crosses_breaking = || {
        releases
            .iter()
            .filter(|r| current.is_none_or(|c| &r.version > c) && r.version <= release.version)
            .any(|r| r.spec().breaking)
    };
    if release.version.calver().is_some() && kind != UpdateType::Major && crosses_breaking() {
        UpdateType::Major
    } else {
        kind
    }
}

/// The release a pinned version names, or why it can never be deployed: no such release, yanked,
/// or denied by the governing policy. Independent of recorded state and time, so `validate`
/// reports exactly what `plan` would (issue #16: a denied pin passed `validate`, then `plan`
/// exited 2).
///
/// `releases` are the component's, sorted by version as [`crate::manifest::Desired`] holds
/// them ([`crate::manifest::release_in`]).
///
/// # Errors
/// The violation, naming the component, the version and what to do.
pub fn resolve_pin<'a>(
    releases: &'a [Release],
    target: &Target,
    governing: Governing,
    pin: &Version,
) -> Result<&'a Release, String> {
    let component = &target.spec().component;
    let Some(release) = crate::manifest::release_in(releases, pin) else {
        return Err(format!(
            "no Release of `{component}` has version {pin}; add the Release manifest or pin a released version"
        ));
    };
    if release.spec().yanked {
        let newest = releases
            .iter()
            .rev()
            .find(|r| !r.spec().yanked && channel_allowed(target, r) && denied_by(governing, &r.version).is_none());
        return Err(format!(
            "{component} {pin} is yanked; pin another version{}",
            newest
                .map(|r| format!(" (newest available: {})", r.version))
                .unwrap_or_default()
        ));
    }
    if let Some(rule) = denied_by(governing, pin) {
        return Err(format!(
            "{component} {pin} is denied by policy `{}` (deny: \"{rule}\"); pin another version",
            governing.name().unwrap_or("default")
        ));
    }
    Ok(release)
}

/// Resolution of a target's desired version.
pub(super) enum Resolved<'a> {
    Release(&'a Release),
    /// A requirement nothing satisfies, or a pin that can never be deployed.
    Violation(String),
}

pub(super) fn resolve<'a>(
    input: &PlanInput<'a>,
    target: &Target,
    governing: Governing,
    current: Option<&Version>,
    warnings: &mut Vec<String>,
) -> Resolved<'a> {
    let component = &target.spec().component;
    let releases: &'a [Release] = input.desired.releases.get(component).map_or(&[], Vec::as_slice);
    match &target.wanted {
        VersionWanted::Pin(pin) => match resolve_pin(releases, target, governing, pin) {
            Ok(release) => Resolved::Release(release),
            Err(why) => Resolved::Violation(why),
        },
        VersionWanted::Requirement(req) => {
            let mut too_young: Option<(&Release, Timestamp)> = None;
            for release in releases.iter().rev() {
                if release.spec().yanked
                    || !channel_allowed(target, release)
                    || !requirement_matches(req, release)
                    || denied_by(governing, &release.version).is_some()
                {
                    continue;
                }
                let kind = update_type_of(releases, current, release);
                if let Some(eligible_at) = release_eligible_at(input, governing, release, kind)
                    && eligible_at > input.now
                {
                    too_young.get_or_insert((release, eligible_at));
                    continue;
                }
                if let Some((young, at)) = too_young {
                    warnings.push(format!(
                        "{} {} matches {req} but is younger than the policy's minReleaseAge; it becomes eligible at {at}",
                        component, young.version
                    ));
                }
                return Resolved::Release(release);
            }
            let available: Vec<String> = releases.iter().rev().take(5).map(|r| r.version.to_string()).collect();
            let why = match too_young {
                Some((young, at)) => format!(" ({} matches but is too new until {at})", young.version),
                None if available.is_empty() => format!(" (`{component}` has no releases)"),
                None => format!(" (available: {})", available.join(", ")),
            };
            Resolved::Violation(format!(
                "no release of `{component}` satisfies {req}{why}; add a release or change the requirement"
            ))
        }
    }
}

/// When a release becomes old enough for the rule of its update type (`None`: no age rule).
pub(super) fn release_eligible_at(
    input: &PlanInput,
    governing: Governing,
    release: &Release,
    kind: UpdateType,
) -> Option<Timestamp> {
    let policy = governing.policy()?;
    let age = match (&policy.manifest.spec.updates.emergency, release.spec().urgency) {
        (Some(_), crate::manifest::Urgency::Emergency) => policy.emergency_min_release_age?,
        _ => policy.min_release_age[kind.index()]?,
    };
    if age.is_zero() {
        return None;
    }
    let released = release.released.unwrap_or(input.now);
    let span = jiff::SignedDuration::try_from(age).ok()?;
    released.checked_add(span).ok()
}

/// What the target's desired version, channels and governing policy say of one release of its
/// component (`gantry versions`, issue #15).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReleaseChoice {
    pub version: Version,
    pub released: Option<Timestamp>,
    pub breaking: bool,
    pub yanked: bool,
    /// The release's deprecation note.
    pub deprecated: Option<String>,
    /// The prerelease channel (none for a stable release).
    pub channel: Option<String>,
    /// The target's `spec.version` matches it (the pin itself, or a version the requirement takes).
    pub matches_version: bool,
    /// A stable release, or a prerelease of a channel the target lists.
    pub channel_allowed: bool,
    /// The governing policy's `deny` entry that covers it.
    pub denied: Option<String>,
    /// When it becomes old enough for the policy's `minReleaseAge` (only while it is too young).
    pub eligible_at: Option<Timestamp>,
    /// Everything above allows it: it matches, its channel is allowed (a pin names its release
    /// itself, so channels do not apply to it), it is not yanked or denied, and it is old enough
    /// now.
    pub allowed: bool,
}

/// Every release of `target`'s component, oldest first, with what allows or refuses each for
/// that target at `input.now`. `current` is the version the target runs (it decides the update
/// type, and so the `minReleaseAge` rule).
///
/// # Guarantees
/// Pure: the same rules `resolve` applies, so a release marked `allowed` with the highest version
/// is what a requirement resolves to.
pub fn release_choices(input: &PlanInput, target: &Target, current: Option<&Version>) -> Vec<ReleaseChoice> {
    let governing = policy::select_policy(input.desired, target).unwrap_or(Governing::BuiltIn);
    let releases: &[Release] = input
        .desired
        .releases
        .get(&target.spec().component)
        .map_or(&[], Vec::as_slice);
    releases
        .iter()
        .map(|release| {
            let matches_version = match &target.wanted {
                VersionWanted::Pin(pin) => &release.version == pin,
                VersionWanted::Requirement(req) => requirement_matches(req, release),
            };
            let channel_allowed = channel_allowed(target, release);
            let denied = denied_by(governing, &release.version);
            // A pin waits for `minReleaseAge` too (a `release_age` blocker, SPEC §2 Target).
            let kind = update_type_of(releases, current, release);
            let eligible_at = release_eligible_at(input, governing, release, kind).filter(|at| *at > input.now);
            ReleaseChoice {
                version: release.version.clone(),
                released: release.released,
                breaking: release.spec().breaking,
                yanked: release.spec().yanked,
                deprecated: release.spec().deprecated.clone(),
                channel: release.channel().map(str::to_string),
                matches_version,
                channel_allowed,
                allowed: matches_version
                    && (channel_allowed || matches!(target.wanted, VersionWanted::Pin(_)))
                    && !release.spec().yanked
                    && denied.is_none()
                    && eligible_at.is_none(),
                denied,
                eligible_at,
            }
        })
        .collect()
}
