//! Upgrade paths: which releases are deployed in turn (stops) and which migrations run around them.

use crate::manifest::Version;

use crate::manifest::{Phase, Release};
use crate::state::AppliedMigration;

/// How a migration is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    /// No `down`: undone by the component's `restore` step from the snapshot of the attempt
    /// that applied it.
    Restore,
}

impl Direction {
    /// The name users see (the JSON value).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Restore => "restore",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One migration in a plan, in the order it runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedMigration {
    /// The version of the release the migration belongs to.
    pub release: Version,
    pub id: String,
    pub direction: Direction,
    pub phase: Phase,
    /// The stop it runs around: `pre` before deploying it, `post` after it is healthy.
    pub stop: Version,
}

/// Why no path exists.
#[derive(Debug, Clone, PartialEq)]
pub struct NoPath(pub String);

/// Computes the stops from `from` to `to` (SPEC §3): from the version reached so far, take the
/// highest eligible release ≤ `to` whose `upgradeFrom` accepts it, until `to` is reached.
///
/// `eligible` says which releases may be deployed (not yanked, not denied, channel allowed);
/// `to` itself must be eligible (the caller checks that first).
///
/// # Errors
/// [`NoPath`] with a message that says where the path breaks and what to do.
pub fn upgrade_stops<'a>(
    releases: &'a [Release],
    from: &Version,
    to: &Version,
    eligible: impl Fn(&Release) -> bool,
) -> Result<Vec<&'a Release>, NoPath> {
    let mut stops: Vec<&Release> = Vec::new();
    let mut reached = from.clone();
    while &reached < to {
        let next = releases
            .iter()
            .rev()
            .filter(|r| r.version > reached && &r.version <= to && eligible(r))
            .find(|r| r.upgrade_from.as_ref().is_none_or(|req| req.matches(&reached)));
        let Some(next) = next else {
            let target = releases.iter().find(|r| &r.version == to);
            let requirement = target
                .and_then(|r| r.upgrade_from.as_ref())
                .map_or_else(|| "an upgradeFrom".to_string(), |req| format!("{req}"));
            let via = if stops.is_empty() {
                String::new()
            } else {
                let names: Vec<String> = stops.iter().map(|s| s.version.to_string()).collect();
                format!(" (reached {reached} via {})", names.join(", "))
            };
            return Err(NoPath(format!(
                "no upgrade path from {from} to {to}: {to} requires {requirement} and no release in between accepts {reached}{via}; \
                 add an intermediate release whose upgradeFrom accepts {reached}, or widen {to}'s upgradeFrom"
            )));
        };
        stops.push(next);
        reached = next.version.clone();
    }
    Ok(stops)
}

/// The `up` migrations of every release in (`from`, `to`] (all releases up to `to` for an
/// install), each assigned to the first stop at or above its release, in run order:
/// per stop, its `pre` migrations, then (after the deploy) its `post` ones.
pub fn up_migrations(
    releases: &[Release],
    from: Option<&Version>,
    stops: &[&Release],
    included: impl Fn(&Release) -> bool,
) -> Vec<PlannedMigration> {
    let mut planned = Vec::new();
    let mut lower = from;
    for stop in stops {
        // Walked once per phase rather than collected: most stops have one or two releases.
        let in_range = || {
            releases.iter().filter(|r| {
                !r.spec().migrations.is_empty()
                    && lower.is_none_or(|l| &r.version > l)
                    && r.version <= stop.version
                    && included(r)
            })
        };
        for phase in [Phase::Pre, Phase::Post] {
            for release in in_range() {
                for migration in release.spec().migrations.iter().filter(|m| m.phase == phase) {
                    planned.push(PlannedMigration {
                        release: release.version.clone(),
                        id: migration.id.clone(),
                        direction: Direction::Up,
                        phase,
                        stop: stop.version.clone(),
                    });
                }
            }
        }
        lower = Some(&stop.version);
    }
    planned
}

/// The migrations a downgrade from `from` to `to` undoes: every migration recorded as applied
/// for a release in (`to`, `from`], newest first. Irreversible ones are [`Direction::Restore`].
pub fn down_migrations(applied: &[AppliedMigration], from: &Version, to: &Version) -> Vec<PlannedMigration> {
    applied
        .iter()
        .rev()
        .filter(|m| &m.release > to && &m.release <= from)
        .map(|m| PlannedMigration {
            release: m.release.clone(),
            id: m.id.clone(),
            direction: if m.down.is_some() {
                Direction::Down
            } else {
                Direction::Restore
            },
            phase: m.phase,
            stop: to.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Manifest, Migration, Origin, ReleaseSpec};
    use std::sync::Arc;

    fn release(version: &str, upgrade_from: Option<&str>, migrations: &[(&str, Phase)]) -> Release {
        let spec = ReleaseSpec {
            component: "billing".into(),
            version: version.into(),
            released: None,
            upgrade_from: upgrade_from.map(str::to_string),
            breaking: false,
            yanked: false,
            deprecated: None,
            migrations: migrations
                .iter()
                .map(|(id, phase)| Migration {
                    id: id.to_string(),
                    up: vec!["up".into()],
                    down: Some(vec!["down".into()]),
                    phase: *phase,
                })
                .collect(),
            artifacts: vec![],
            changelog: Default::default(),
            urgency: Default::default(),
            reason: None,
            requires: Default::default(),
        };
        let doc = crate::manifest::document::parse_yaml("a: 1").unwrap().remove(0);
        Release {
            version: Version::parse(version).unwrap(),
            released: None,
            upgrade_from: upgrade_from.map(|r| crate::manifest::VersionReq::parse(r).unwrap()),
            requires: Vec::new(),
            manifest: Manifest {
                name: format!("billing-{version}"),
                labels: Default::default(),
                spec,
                origin: Origin {
                    file: Arc::from("x.yaml"),
                    doc: Arc::new(doc),
                    generated: None,
                },
            },
        }
    }

    /// The reference fixture: 1.0.0 → 2.0.0 goes through 1.2.0 and 1.3.0.
    fn fixture() -> Vec<Release> {
        vec![
            release("1.0.0", None, &[]),
            release("1.1.0", None, &[("m1", Phase::Pre)]),
            release("1.2.0", None, &[("m2", Phase::Pre)]),
            release("1.3.0", Some(">=1.1.0"), &[("m3", Phase::Post)]),
            release("2.0.0", Some(">=1.3.0"), &[("m4", Phase::Pre)]),
        ]
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn multi_hop_stops_and_migrations() {
        let releases = fixture();
        let stops = upgrade_stops(&releases, &v("1.0.0"), &v("2.0.0"), |_| true).unwrap();
        let names: Vec<String> = stops.iter().map(|s| s.version.to_string()).collect();
        assert_eq!(names, ["1.2.0", "1.3.0", "2.0.0"]);
        let migrations = up_migrations(&releases, Some(&v("1.0.0")), &stops, |_| true);
        let order: Vec<(&str, Phase, Version)> = migrations
            .iter()
            .map(|m| (m.id.as_str(), m.phase, m.stop.clone()))
            .collect();
        assert_eq!(
            order,
            [
                ("m1", Phase::Pre, v("1.2.0")),
                ("m2", Phase::Pre, v("1.2.0")),
                ("m3", Phase::Post, v("1.3.0")),
                ("m4", Phase::Pre, v("2.0.0"))
            ]
        );
    }

    /// (from, to, expected stops or the start of the error).
    type PathCase<'a> = (&'a str, &'a str, Result<&'a [&'a str], &'a str>);

    #[test]
    fn path_table() {
        let releases = fixture();
        let cases: [PathCase; 5] = [
            ("1.2.0", "2.0.0", Ok(&["1.3.0", "2.0.0"])),
            ("1.1.0", "1.3.0", Ok(&["1.3.0"])),
            ("1.3.0", "2.0.0", Ok(&["2.0.0"])),
            ("1.0.0", "1.1.0", Ok(&["1.1.0"])),
            ("1.0.0", "1.0.0", Ok(&[])),
        ];
        for (from, to, expected) in cases {
            let got = upgrade_stops(&releases, &v(from), &v(to), |_| true)
                .map(|s| s.iter().map(|r| r.version.to_string()).collect::<Vec<_>>())
                .map_err(|e| e.0);
            match expected {
                Ok(stops) => assert_eq!(got.unwrap(), stops, "{from} → {to}"),
                Err(text) => assert!(got.unwrap_err().contains(text)),
            }
        }
    }

    #[test]
    fn no_path_message_says_what_to_do() {
        let releases = fixture();
        // Without 1.2.0 and 1.3.0 deployable, nothing accepts 1.1.0 on the way to 2.0.0.
        let err = upgrade_stops(&releases, &v("1.1.0"), &v("2.0.0"), |r| r.version == v("2.0.0")).unwrap_err();
        assert!(
            err.0.starts_with(
                "no upgrade path from 1.1.0 to 2.0.0: 2.0.0 requires >=1.3.0 and no release in between accepts 1.1.0"
            ),
            "{}",
            err.0
        );
    }

    #[test]
    fn install_runs_every_migration_up_to_the_version() {
        let releases = fixture();
        let target = releases.iter().find(|r| r.version == v("2.0.0")).unwrap();
        let migrations = up_migrations(&releases, None, &[target], |_| true);
        let ids: Vec<&str> = migrations.iter().map(|m| m.id.as_str()).collect();
        // pre ones first (m1, m2, m4), then post (m3) after the deploy.
        assert_eq!(ids, ["m1", "m2", "m4", "m3"]);
    }

    #[test]
    fn downgrade_undoes_newest_first() {
        let applied: Vec<AppliedMigration> = [
            ("1.1.0", "m1", true),
            ("1.2.0", "m2", true),
            ("1.3.0", "m3", false),
            ("2.0.0", "m4", true),
        ]
        .iter()
        .map(|(r, id, down)| AppliedMigration {
            release: v(r),
            id: id.to_string(),
            phase: Phase::Pre,
            down: down.then(|| vec!["down".into()]),
            attempt: "a1".into(),
        })
        .collect();
        let planned = down_migrations(&applied, &v("2.0.0"), &v("1.0.0"));
        let order: Vec<(&str, Direction)> = planned.iter().map(|m| (m.id.as_str(), m.direction)).collect();
        assert_eq!(
            order,
            [
                ("m4", Direction::Down),
                ("m3", Direction::Restore),
                ("m2", Direction::Down),
                ("m1", Direction::Down)
            ]
        );
        let partial = down_migrations(&applied, &v("2.0.0"), &v("1.2.0"));
        assert_eq!(partial.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m4", "m3"]);
    }
}
