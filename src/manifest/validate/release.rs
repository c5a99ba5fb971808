//! Release manifests: the component they name, their version, release date, migrations and
//! artifacts.

use std::collections::BTreeMap;

use crate::manifest::version::VersionReq;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values;

use super::template::{check_argv, program_escapes};
use super::{Release, Requires};

/// Parses `released`: a date (midnight UTC) or an RFC 3339 instant.
pub fn parse_released(text: &str) -> Result<jiff::Timestamp, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    text.parse::<jiff::civil::Date>()
        .ok()
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| format!("`{text}` is not a date (expected YYYY-MM-DD or an RFC 3339 time)"))
}

/// A requirement to show as an example in the scheme of the component it is about.
fn requirement_example(versioning: crate::manifest::Versioning, semver: &'static str) -> &'static str {
    match versioning {
        crate::manifest::Versioning::Semver => semver,
        crate::manifest::Versioning::Calver => ">=2026-01-01",
    }
}

/// Whether `component` names a Component; reports it at `/spec/component` when not.
pub(super) fn component_known(
    origin: &crate::manifest::load::Origin,
    component: &str,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let known = components.contains_key(component);
    if !known {
        diags.push(origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/component",
            format!("unknown component `{component}`; add a Component manifest or fix the name"),
        ));
    }
    known
}

pub(super) fn check_release(
    release: &Manifest<ReleaseSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Release> {
    let spec = &release.spec;
    let origin = &release.origin;
    let mut ok = component_known(origin, &spec.component, components, diags);
    let versioning_of = |name: &str| components.get(name).map(|c| c.spec.versioning).unwrap_or_default();
    let versioning = versioning_of(&spec.component);
    let version = match values::parse_release_version(&spec.version, versioning) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "semver",
                "/spec/version",
                format!("spec.version {e}"),
            ));
            None
        }
    };
    let released = spec.released.as_deref().and_then(|text| match parse_released(text) {
        Ok(ts) => Some(ts),
        Err(e) => {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "date",
                "/spec/released",
                format!("spec.released {e}"),
            ));
            ok = false;
            None
        }
    });
    // An emergency bypasses the usual rules: it must say why (issue #16).
    if spec.urgency == Urgency::Emergency && spec.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "urgency",
            "/spec/urgency",
            "spec.urgency is emergency but spec.reason is missing or empty; add `reason:` saying why it cannot wait (plans show it and state commits record it)",
        ));
        ok = false;
    }
    let upgrade_from = spec
        .upgrade_from
        .as_deref()
        .and_then(|text| match VersionReq::parse_as(text, versioning) {
            Ok(req) => Some(req),
            Err(e) => {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "semver",
                    "/spec/upgradeFrom",
                    format!(
                        "spec.upgradeFrom `{text}` is not a version requirement ({e}; expected e.g. \"{}\")",
                        requirement_example(versioning, ">=1.3.0")
                    ),
                ));
                ok = false;
                None
            }
        });
    let mut requires = Vec::new();
    for (name, requirement) in &spec.requires {
        let at = format!("/spec/requires/{}", name.replace('~', "~0").replace('/', "~1"));
        if name == &spec.component {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "cycle",
                &at,
                format!("a release of `{name}` requires `{name}` itself; remove this entry (the release is the version of `{name}`)"),
            ));
            continue;
        }
        let known = components.contains_key(name.as_str());
        if !known {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "unknown_reference",
                &at,
                format!("spec.requires names unknown component `{name}`; add a Component manifest or fix the name"),
            ));
        }
        let scope = requirement.scope();
        if let Some(problem) = values::label_problem(scope, "") {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "label",
                &format!("{at}/scope"),
                format!("spec.requires.{name}.scope: {problem}"),
            ));
            ok = false;
        }
        match VersionReq::parse_as(requirement.version(), versioning_of(name)) {
            Ok(versions) if known => requires.push(Requires {
                component: name.clone(),
                versions,
                scope: scope.to_string(),
            }),
            Ok(_) => {}
            Err(e) => {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "semver",
                    &requirement.version_pointer(&at),
                    format!(
                        "spec.requires.{name} `{}` is not a version requirement ({e}; expected e.g. \"{}\")",
                        requirement.version(),
                        requirement_example(versioning_of(name), ">=2.0.0")
                    ),
                ));
                ok = false;
            }
        }
    }
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, migration) in spec.migrations.iter().enumerate() {
        let base = format!("/spec/migrations/{i}");
        if let Some(first) = ids.insert(&migration.id, i) {
            diags.push(origin.diagnostic(
                Severity::Violation,
                "duplicate",
                &format!("{base}/id"),
                format!(
                    "migration id `{}` is used twice in this release (also at spec.migrations[{first}])",
                    migration.id
                ),
            ));
        }
        if !values::is_valid_name(&migration.id) {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "name",
                &format!("{base}/id"),
                format!(
                    "migration id `{}` is invalid (lowercase letters, digits, `.`, `_`, `-`)",
                    migration.id.escape_debug()
                ),
            ));
        }
        check_argv(origin, &format!("{base}/up"), &migration.up, diags);
        if let Some(down) = &migration.down {
            check_argv(origin, &format!("{base}/down"), down, diags);
        }
    }
    for (i, artifact) in spec.artifacts.iter().enumerate() {
        let base = format!("/spec/artifacts/{i}");
        match (&artifact.path, &artifact.url) {
            (None, None) | (Some(_), Some(_)) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &base,
                "an artifact has exactly one of `path` or `url`",
            )),
            (Some(path), None) if path.starts_with('/') || program_escapes(path) => diags.push(origin.diagnostic(
                Severity::Invalid,
                "artifact",
                &format!("{base}/path"),
                format!("artifact path `{path}` leaves the repository checkout; use a path inside the repository"),
            )),
            _ => {}
        }
        if let Some(digest) = &artifact.sha256
            && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "artifact",
                &format!("{base}/sha256"),
                "sha256 must be 64 hexadecimal digits",
            ));
        }
    }
    let version = version?;
    ok.then(|| Release {
        version,
        released,
        upgrade_from,
        requires,
        manifest: release.clone(),
    })
}

/// Requirements no release can ever meet: every `requires` entry must be satisfied by at least
/// one release of the required component in the desired state (else no target could ever run
/// the requiring release next to it).
pub(super) fn check_requirements(releases: &BTreeMap<String, Vec<Release>>, diags: &mut Vec<Diagnostic>) {
    for release in releases.values().flatten() {
        for required in &release.requires {
            let theirs = releases.get(&required.component).map_or(&[][..], Vec::as_slice);
            if theirs
                .iter()
                .any(|r| values::requirement_accepts(&required.versions, &r.version))
            {
                continue;
            }
            let available = if theirs.is_empty() {
                format!("`{}` has no releases", required.component)
            } else {
                let list: Vec<String> = theirs.iter().rev().take(5).map(|r| r.version.to_string()).collect();
                format!("releases of `{}`: {}", required.component, list.join(", "))
            };
            let requirement = &release.spec().requires[&required.component];
            diags.push(release.manifest.origin.diagnostic(
                Severity::Violation,
                "unsatisfiable",
                &requirement.version_pointer(&format!("/spec/requires/{}", required.component)),
                format!(
                    "{} {} requires {} {}, which no release satisfies ({available}); add that release or change the requirement",
                    release.spec().component,
                    release.version,
                    required.component,
                    required.versions
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{RawContent, RawFile, read_manifests, validate};

    /// Issue #16: an emergency release must say why; `freezes: override` belongs to the
    /// emergency rule only. `(manifest, expected lines)`.
    #[test]
    fn emergency_needs_a_reason_and_only_the_emergency_rule_overrides_freezes() {
        let component = "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: billing }\nspec: { steps: { deploy: [d] } }\n---\n";
        let release = |extra: &str| {
            format!(
                "{component}apiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: billing-1.0.1 }}\nspec:\n  component: billing\n  version: 1.0.1\n{extra}"
            )
        };
        let refused = "spec.urgency is emergency but spec.reason is missing or empty; add `reason:` saying why it cannot wait (plans show it and state commits record it)";
        let cases = [
            (release("  urgency: emergency\n"), vec![format!("all.yaml:12:12: {refused}")]),
            (release("  urgency: emergency\n  reason: \"  \"\n"), vec![format!("all.yaml:12:12: {refused}")]),
            (release("  urgency: emergency\n  reason: CVE-2026-0001\n"), vec![]),
            (release("  urgency: normal\n"), vec![]),
            (
                "apiVersion: gantry.dev/v1\nkind: Policy\nmetadata: { name: p }\nspec:\n  updates:\n    patch: { freezes: override }\n    emergency: { freezes: override, approvals: 1 }\n".to_string(),
                vec!["all.yaml:6:23: spec.updates.patch.freezes: only updates.emergency may override freezes; remove it here or move the rule to updates.emergency".to_string()],
            ),
        ];
        for (yaml, expected) in cases {
            let file = RawFile {
                path: "all.yaml".into(),
                content: RawContent::Bytes(yaml.clone().into_bytes()),
            };
            let (manifests, mut diags) = read_manifests(None, &[file]);
            diags.extend(validate(manifests).1);
            let shown: Vec<String> = diags.iter().map(ToString::to_string).collect();
            assert_eq!(shown, expected, "{yaml}");
        }
    }
}
