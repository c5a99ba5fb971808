//! Target manifests: the component and the version requirement they name, and their config.

use std::collections::BTreeMap;

use crate::manifest::Versioning;
use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values::{self, VersionWanted};

use super::Release;
use super::release::component_known;

/// What a validation pass has parsed of targets' `spec.version` texts, by text and scheme: a
/// fleet names a few versions ten thousand times (issue #17).
pub(super) type ParsedVersions<'a> = foldhash::HashMap<(&'a str, Versioning), Result<VersionWanted, String>>;

pub(super) fn check_target<'a>(
    target: &'a Manifest<TargetSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    releases: &BTreeMap<String, Vec<Release>>,
    parsed: &mut ParsedVersions<'a>,
    diags: &mut Vec<Diagnostic>,
) -> Option<VersionWanted> {
    let spec = &target.spec;
    let origin = &target.origin;
    let ok = component_known(origin, &spec.component, components, diags);
    let versioning = components
        .get(spec.component.as_str())
        .map(|c| c.spec.versioning)
        .unwrap_or_default();
    let wanted = match parsed
        .entry((spec.version.as_str(), versioning))
        .or_insert_with(|| values::parse_version_wanted(&spec.version, versioning))
    {
        Ok(w) => Some(w.clone()),
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
        && releases
            .get(&spec.component)
            .is_none_or(|rs| super::release_in(rs, pin).is_none())
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
    ok.then_some(wanted)
}

/// Each component's `configSchema`, compiled once; a schema that does not compile is an
/// `Invalid` diagnostic at the component's `spec.configSchema` (and checks nothing).
pub(super) fn compile_config_schemas(
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, crate::manifest::schema::ConfigSchema> {
    let mut out = BTreeMap::new();
    for (name, component) in components {
        let Some(schema) = &component.spec.config_schema else {
            continue;
        };
        match crate::manifest::schema::ConfigSchema::compile(schema) {
            Ok(compiled) => {
                out.insert(name.to_string(), compiled);
            }
            Err(e) => diags.push(component.origin.diagnostic(
                Severity::Invalid,
                "config_schema",
                "/spec/configSchema",
                format!("spec.configSchema is not a usable JSON Schema (draft 2020-12): {e}"),
            )),
        }
    }
    out
}

/// A target's `config` checked against its component's `configSchema` (issue #16: a bad value
/// was only refused by the reload script at apply time): each violation is `Invalid` at the
/// offending value's line, so a pull request fails `validate` before anything runs.
pub(super) fn check_config_schema(
    target: &Manifest<TargetSpec>,
    schemas: &BTreeMap<String, crate::manifest::schema::ConfigSchema>,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(schema) = schemas.get(&target.spec.component) else {
        return;
    };
    let config = serde_json::Value::Object(target.spec.config.clone());
    for violation in schema.check(&config) {
        let pointer = format!("/spec/config{}", violation.pointer);
        diags.push(target.origin.diagnostic(
            Severity::Invalid,
            "config_schema",
            &pointer,
            format!(
                "{}: {} (the configSchema of component `{}`)",
                crate::manifest::load::pointer_to_dotted(&pointer),
                violation.message,
                target.spec.component
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::{Diagnostic, RawContent, RawFile, read_manifests, validate};

    fn diagnostics(config_schema: &str, targets: &[(&str, &str)]) -> Vec<Diagnostic> {
        let mut yaml = format!(
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: {{ name: agent }}\nspec:\n  steps: {{ deploy: [d] }}\n  configSchema: {config_schema}\n---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: agent-1.0.0 }}\nspec: {{ component: agent, version: 1.0.0 }}\n"
        );
        for (name, config) in targets {
            yaml.push_str(&format!(
                "---\napiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec:\n  component: agent\n  version: 1.0.0\n  config: {config}\n"
            ));
        }
        let file = RawFile {
            path: "all.yaml".into(),
            content: RawContent::Bytes(yaml.into_bytes()),
        };
        let (manifests, mut diags) = read_manifests(None, &[file]);
        diags.extend(validate(manifests).1);
        diags
    }

    const SCHEMA: &str = "{ type: object, required: [timeout_s], additionalProperties: false, properties: { timeout_s: { type: integer, minimum: 1 }, mode: { enum: [fast, safe] } } }";

    /// Issue #16: an invalid config value was only refused by the reload script at apply time.
    /// Each violation is reported at the target's file and line, naming the key.
    #[test]
    fn every_targets_config_is_checked_against_its_components_config_schema() {
        let diags = diagnostics(
            SCHEMA,
            &[
                ("good", "{ timeout_s: 30, mode: safe }"),
                ("zero", "{ timeout_s: 0 }"),
                ("text", "{ timeout_s: \"30\" }"),
                ("missing", "{ mode: fast }"),
                ("extra", "{ timeout_s: 5, colour: red }"),
            ],
        );
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        assert_eq!(diags.len(), 4, "{text:#?}");
        for (needle, key) in [
            ("spec.config.timeout_s", "minimum"),
            ("spec.config.timeout_s", "integer"),
            ("spec.config", "timeout_s"),
            ("spec.config", "colour"),
        ] {
            assert!(
                text.iter().any(|t| t.contains(needle)
                    && t.contains(key)
                    && t.contains("the configSchema of component `agent`")),
                "{needle} {key}: {text:#?}"
            );
        }
        assert!(
            diags.iter().all(|d| d.file == "all.yaml" && d.line.is_some()),
            "{text:#?}"
        );
    }

    /// A schema from a pull request is hostile input: one that does not compile is reported at
    /// the component, and a remote `$ref` is never fetched (compiled offline).
    #[test]
    fn an_unusable_or_remote_config_schema_is_reported_at_the_component() {
        for schema in ["{ type: nonsense }", "{ $ref: \"http://127.0.0.1:9/schema.json\" }"] {
            let diags = diagnostics(schema, &[("t", "{ a: 1 }")]);
            let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
            assert!(
                text.iter()
                    .any(|t| t.contains("spec.configSchema is not a usable JSON Schema (draft 2020-12)")),
                "{schema}: {text:#?}"
            );
        }
    }

    /// Issue #17: a pin is looked up by bisection among the component's sorted releases and each
    /// version text is parsed once per validation. Pins to the first, a middle, the last and a
    /// prerelease release pass; pins between, below and above them are refused, each at its own
    /// target; a requirement and a bad text named by several targets are judged alike for each.
    #[test]
    fn pins_are_found_among_many_releases_and_texts_judged_alike_each_time() {
        let releases = ["1.0.0", "1.2.0", "1.4.0-rc.1", "1.4.0", "2.0.0", "3.1.0"];
        let mut yaml =
            "apiVersion: gantry.dev/v1\nkind: Component\nmetadata: { name: agent }\nspec: { steps: { deploy: [d] } }\n"
                .to_string();
        // Declared out of order: validation sorts them.
        for version in releases.iter().rev() {
            yaml.push_str(&format!("---\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: {{ name: agent-{version} }}\nspec: {{ component: agent, version: {version} }}\n"));
        }
        let targets = [
            ("first", "1.0.0"),
            ("middle", "1.4.0"),
            ("prerelease", "1.4.0-rc.1"),
            ("last", "3.1.0"),
            ("again", "1.4.0"),
            ("between", "1.3.0"),
            ("below", "0.9.0"),
            ("above", "3.2.0"),
            ("between-again", "1.3.0"),
            ("range", "^1.2"),
            ("range-again", "^1.2"),
            ("bad", "one.two"),
            ("bad-again", "one.two"),
        ];
        for (name, version) in targets {
            yaml.push_str(&format!("---\napiVersion: gantry.dev/v1\nkind: Target\nmetadata: {{ name: {name} }}\nspec: {{ component: agent, version: \"{version}\" }}\n"));
        }
        let file = RawFile {
            path: "all.yaml".into(),
            content: RawContent::Bytes(yaml.into_bytes()),
        };
        let (manifests, diags) = read_manifests(None, &[file]);
        assert!(diags.is_empty(), "{diags:?}");
        let (desired, diags) = validate(manifests);
        let refused = |code: &str| {
            let mut lines: Vec<String> = diags
                .iter()
                .filter(|d| d.kind == code)
                .map(|d| format!("{}: {}", d.line.unwrap_or(0), d.message))
                .collect();
            lines.sort();
            lines
        };
        let unknown = refused("unknown_reference");
        assert_eq!(unknown.len(), 4, "{unknown:#?}");
        for version in ["1.3.0", "0.9.0", "3.2.0"] {
            assert!(
                unknown.iter().any(|m| m.contains(&format!("has version {version};"))),
                "{unknown:#?}"
            );
        }
        assert_eq!(refused("semver").len(), 2, "{diags:?}");
        let accepted: Vec<&str> = desired.targets.keys().map(String::as_str).collect();
        assert_eq!(
            accepted,
            [
                "above",
                "again",
                "below",
                "between",
                "between-again",
                "first",
                "last",
                "middle",
                "prerelease",
                "range",
                "range-again"
            ]
        );
        assert_eq!(desired.targets["range"].wanted, desired.targets["range-again"].wanted);
    }
}
