//! Target manifests: the component and the version requirement they name, and their config.

use std::collections::BTreeMap;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values::{self, VersionWanted};

use super::release::component_known;
use super::{Release, config_hash};

pub(super) fn check_target(
    target: &Manifest<TargetSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    releases: &BTreeMap<String, Vec<Release>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<(VersionWanted, String)> {
    let spec = &target.spec;
    let origin = &target.origin;
    let ok = component_known(origin, &spec.component, components, diags);
    let wanted = match values::parse_version_wanted(&spec.version) {
        Ok(w) => Some(w),
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
    if let Some(VersionWanted::Pin(pin)) = &wanted
        && ok
        && !releases
            .get(&spec.component)
            .is_some_and(|rs| rs.iter().any(|r| &r.version == pin))
    {
        let known: Vec<String> = releases
            .get(&spec.component)
            .map(|rs| rs.iter().rev().take(5).map(|r| r.version.to_string()).collect())
            .unwrap_or_default();
        diags.push(origin.diagnostic(
            Severity::Violation,
            "unknown_reference",
            "/spec/version",
            format!(
                "no Release of `{}` has version {pin}; add the Release manifest or pin a released version{}",
                spec.component,
                if known.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", known.join(", "))
                }
            ),
        ));
    }
    for (i, channel) in spec.channels.iter().enumerate() {
        if channel.is_empty() || !channel.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "schema",
                &format!("/spec/channels/{i}"),
                format!("channel `{channel}` is invalid (letters, digits and `-`, like a prerelease word)"),
            ));
        }
    }
    let wanted = wanted?;
    ok.then(|| (wanted, config_hash(&spec.config)))
}
