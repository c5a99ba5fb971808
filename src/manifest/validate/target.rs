//! Target manifests: the component and the version requirement they name, and their config.

use std::collections::BTreeMap;

use crate::manifest::diagnostic::{Diagnostic, Severity};
use crate::manifest::load::Manifest;
use crate::manifest::types::*;
use crate::manifest::values::{self, VersionWanted};

use super::Release;
use super::release::component_known;

pub(super) fn check_target(
    target: &Manifest<TargetSpec>,
    components: &BTreeMap<&str, &Manifest<ComponentSpec>>,
    releases: &BTreeMap<String, Vec<Release>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<VersionWanted> {
    let spec = &target.spec;
    let origin = &target.origin;
    let ok = component_known(origin, &spec.component, components, diags);
    let versioning = components
        .get(spec.component.as_str())
        .map(|c| c.spec.versioning)
        .unwrap_or_default();
    let wanted = match values::parse_version_wanted(&spec.version, versioning) {
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
}
