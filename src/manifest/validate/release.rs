//! Release manifests: the component they name, their version, release date, migrations and
//! artifacts.

use std::collections::BTreeMap;

use semver::VersionReq;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values;

use super::Release;
use super::template::{check_argv, program_escapes};

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
    let version = match values::parse_release_version(&spec.version) {
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
        .and_then(|text| match VersionReq::parse(text) {
            Ok(req) => Some(req),
            Err(e) => {
                diags.push(origin.diagnostic(
                    Severity::Invalid,
                    "semver",
                    "/spec/upgradeFrom",
                    format!("spec.upgradeFrom `{text}` is not a version requirement ({e}; expected e.g. \">=1.3.0\")"),
                ));
                ok = false;
                None
            }
        });
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
        manifest: release.clone(),
    })
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
