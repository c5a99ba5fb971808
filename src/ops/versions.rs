//! Versions (`gantry versions TARGET`, `GET /api/versions/<target>`): the releases a target's
//! component has, what its `spec.version`, channels and policy allow of them, the version it
//! runs and the versions it can be rolled back to (issue #15).

use std::fmt;

use serde::Serialize;

use crate::plan::{self, ReleaseChoice};
use crate::reconcile::load::load_commit;
use crate::source::WatchedRepo;
use crate::state::read_recorded;

use super::{OpsError, resolve_commit};

/// What `gantry versions TARGET` reports.
#[derive(Debug, Clone, Serialize)]
pub struct VersionsReport {
    pub target: String,
    pub component: String,
    pub desired_commit: String,
    pub now: String,
    /// The target's `spec.version`: a pin or a requirement.
    pub wanted: String,
    /// `spec.channels`.
    pub channels: Vec<String>,
    /// The governing policy (null: the built-in one).
    pub policy: Option<String>,
    /// The version the state branch records (null: nothing installed).
    pub current: Option<crate::manifest::Version>,
    /// The recorded status (`converged`, `failed`, …; null: never reconciled).
    pub status: Option<String>,
    /// What the plan would deploy now (null when nothing resolves: see the plan's violations).
    pub desired: Option<crate::manifest::Version>,
    /// Every release of the component, newest first.
    pub releases: Vec<ReleaseChoice>,
    /// The versions the target ran before, newest first, at most the policy's
    /// `keepRollbackPoints` (what `gantry rollback` goes back to).
    pub rollback_points: Vec<RollbackPoint>,
}

/// One recorded rollback point.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackPoint {
    pub version: crate::manifest::Version,
    /// A Release manifest for it still exists at the desired commit.
    pub released: bool,
    /// That release is yanked now.
    pub yanked: bool,
}

/// The versions report of `target` at the desired branch's tip, at `now`.
///
/// # Errors
/// [`OpsError::UnknownTarget`] when the desired state does not declare `target`; reading the
/// repository or the state branch.
pub fn versions(repo: &WatchedRepo, target: &str, now: jiff::Timestamp) -> Result<VersionsReport, OpsError> {
    let commit = resolve_commit(repo, None)?;
    let loaded = load_commit(repo, commit)?;
    let desired = &loaded.desired;
    let Some(manifest) = desired.targets.get(target) else {
        return Err(OpsError::UnknownTarget {
            target: target.to_string(),
            commit: commit.to_string()[..12].to_string(),
        });
    };
    let recorded = read_recorded(&repo.repo, &desired.config.state_branch)?;
    let anchor = crate::reconcile::apply::anchor_of(repo, &recorded)?;
    let evidence = crate::reconcile::load::evidence(repo, &loaded, &anchor)?;
    let input = loaded.plan_input(&recorded, &evidence, now);
    let record = recorded.targets.get(target);
    let current = record.and_then(|r| r.version.clone());
    let mut releases = plan::release_choices(&input, manifest, current.as_ref());
    releases.reverse();
    let action = plan::plan(&input).actions.into_iter().find(|a| a.target == target);
    let component = manifest.spec().component.clone();
    let rollback_points = record
        .map(|r| r.rollback_points.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|version| {
            let release = desired.release(&component, &version);
            RollbackPoint {
                released: release.is_some(),
                yanked: release.is_some_and(|r| r.spec().yanked),
                version,
            }
        })
        .collect();
    Ok(VersionsReport {
        target: target.to_string(),
        component,
        desired_commit: commit.to_string(),
        now: now.to_string(),
        wanted: manifest.wanted.to_string(),
        channels: manifest.spec().channels.clone(),
        policy: action.as_ref().and_then(|a| a.policy.clone()),
        current,
        status: record.map(|r| r.status.as_str().to_string()),
        desired: action.and_then(|a| a.to),
        releases,
        rollback_points,
    })
}

/// The report as `gantry versions` prints it.
impl fmt::Display for VersionsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show =
            |v: &Option<crate::manifest::Version>| v.as_ref().map_or_else(|| "(none)".to_string(), ToString::to_string);
        writeln!(
            f,
            "{} ({}): runs {}{}, wants {}{} → {}",
            self.target,
            self.component,
            show(&self.current),
            self.status.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default(),
            self.wanted,
            if self.channels.is_empty() {
                String::new()
            } else {
                format!(" (channels {})", self.channels.join(", "))
            },
            show(&self.desired),
        )?;
        writeln!(f, "policy {}", self.policy.as_deref().unwrap_or("(built-in default)"))?;
        writeln!(f, "releases (newest first):")?;
        if self.releases.is_empty() {
            writeln!(f, "  none")?;
        }
        for r in &self.releases {
            let mut notes: Vec<String> = Vec::new();
            if r.yanked {
                notes.push("yanked".into());
            }
            if let Some(why) = &r.deprecated {
                notes.push(format!("deprecated: {why}"));
            }
            if r.breaking {
                notes.push("breaking".into());
            }
            if !r.matches_version {
                notes.push(format!("outside {}", self.wanted));
            }
            if !r.channel_allowed {
                notes.push(format!("channel {} not allowed", r.channel.as_deref().unwrap_or("?")));
            }
            if let Some(rule) = &r.denied {
                notes.push(format!("denied by policy ({rule})"));
            }
            if let Some(at) = &r.eligible_at {
                notes.push(format!("too new until {at}"));
            }
            let marks = [
                (Some(&r.version) == self.current.as_ref()).then_some("running"),
                (Some(&r.version) == self.desired.as_ref()).then_some("desired"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
            let line = format!(
                "  {} {:<12}{}{}",
                if r.allowed { "✓" } else { "✗" },
                r.version.to_string(),
                if marks.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", marks.join(", "))
                },
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" · {}", notes.join(" · "))
                },
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        write!(f, "rollback points (newest first):")?;
        if self.rollback_points.is_empty() {
            writeln!(f, " none recorded")?;
        } else {
            writeln!(f)?;
            for p in &self.rollback_points {
                writeln!(
                    f,
                    "  {}{}",
                    p.version,
                    if !p.released {
                        " · no Release manifest any more"
                    } else if p.yanked {
                        " · yanked since"
                    } else {
                        ""
                    }
                )?;
            }
        }
        Ok(())
    }
}
