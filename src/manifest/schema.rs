//! The JSON Schemas of every manifest kind, of `gantry.toml` and of the JSON plan, and validation against them.
//!
//! The schemas in `schemas/` are what editors use (through a `# yaml-language-server: $schema=`
//! modeline) and what `gantry schema` prints; they are embedded here so the binary carries
//! exactly the files of its commit. Each is compiled once, on first use, as draft 2020-12 with
//! reference resolution turned off: the schemas are self-contained (`$ref`s point into their own
//! `$defs`), so validation never touches the network or the file system.
//!
//! The schemas and the serde types in [`super::types`] describe the same documents, and
//! `tests/schema_agreement.rs` checks that both accept and reject the same fixtures. Where a
//! schema is stricter than the types (name, label, semver, duration and time syntax; one form per
//! deny rule; the fields each health check type needs; ...), semantic validation must say the
//! same, because documents may reach gantry without passing through an editor.
//!
//! Violations are reported per instance location (a JSON pointer) with a message for people:
//! `spec.version: expected a string, found 2.0 (quote it)` rather than the validator's
//! `2.0 is not of type "string"`. An unknown field is reported at the field itself, not at the
//! object that contains it, so a caller can point at the offending key.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, ValidationError, Validator};
use serde_json::Value;

/// Which document a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemaKind {
    /// `kind: Component` manifests.
    Component,
    /// `kind: Release` manifests.
    Release,
    /// `kind: Target` manifests.
    Target,
    /// `kind: Policy` manifests.
    Policy,
    /// `kind: Window` manifests.
    Window,
    /// `kind: Approval` manifests.
    Approval,
    /// `kind: Fleet` manifests (issue #16).
    Fleet,
    /// `gantry.toml`, the repository settings.
    Config,
    /// The output of `gantry plan --format json`.
    Plan,
}

impl SchemaKind {
    const ALL: [SchemaKind; 9] = [
        SchemaKind::Component,
        SchemaKind::Release,
        SchemaKind::Target,
        SchemaKind::Policy,
        SchemaKind::Window,
        SchemaKind::Approval,
        SchemaKind::Fleet,
        SchemaKind::Config,
        SchemaKind::Plan,
    ];

    /// Every schema, manifest kinds first, in a fixed order.
    pub fn all() -> &'static [SchemaKind] {
        &Self::ALL
    }

    /// The schema for a name as users write it: a manifest kind in any case (`component`,
    /// `Component`), `config`, `gantry` or `gantry.toml` for the repository settings, `plan`, or a
    /// schema's file name (`target.schema.json`).
    pub fn from_name(name: &str) -> Option<SchemaKind> {
        let name = name.trim();
        let name = name.strip_suffix(".schema.json").unwrap_or(name).to_ascii_lowercase();
        let kind = match name.as_str() {
            "component" => SchemaKind::Component,
            "release" => SchemaKind::Release,
            "target" => SchemaKind::Target,
            "policy" => SchemaKind::Policy,
            "window" => SchemaKind::Window,
            "approval" => SchemaKind::Approval,
            "fleet" => SchemaKind::Fleet,
            "config" | "gantry" | "gantry.toml" => SchemaKind::Config,
            "plan" => SchemaKind::Plan,
            _ => return None,
        };
        Some(kind)
    }

    /// The short name `gantry schema` accepts and lists.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Component => "component",
            SchemaKind::Release => "release",
            SchemaKind::Target => "target",
            SchemaKind::Policy => "policy",
            SchemaKind::Window => "window",
            SchemaKind::Approval => "approval",
            SchemaKind::Fleet => "fleet",
            SchemaKind::Config => "config",
            SchemaKind::Plan => "plan",
        }
    }

    /// The file name in `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Component => "component.schema.json",
            SchemaKind::Release => "release.schema.json",
            SchemaKind::Target => "target.schema.json",
            SchemaKind::Policy => "policy.schema.json",
            SchemaKind::Window => "window.schema.json",
            SchemaKind::Approval => "approval.schema.json",
            SchemaKind::Fleet => "fleet.schema.json",
            SchemaKind::Config => "gantry.schema.json",
            SchemaKind::Plan => "plan.schema.json",
        }
    }

    /// The schema's `$id`, also what a `# yaml-language-server: $schema=` modeline names.
    pub fn id(self) -> String {
        format!("https://gantry.dev/schemas/{}", self.file_name())
    }

    /// The manifest `kind:` this schema describes; `None` for `gantry.toml` and the plan.
    pub fn manifest_kind(self) -> Option<&'static str> {
        match self {
            SchemaKind::Component => Some("Component"),
            SchemaKind::Release => Some("Release"),
            SchemaKind::Target => Some("Target"),
            SchemaKind::Policy => Some("Policy"),
            SchemaKind::Window => Some("Window"),
            SchemaKind::Approval => Some("Approval"),
            SchemaKind::Fleet => Some("Fleet"),
            SchemaKind::Config | SchemaKind::Plan => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no schema, from [`SchemaKind::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown schema `{name}`; expected one of component, release, target, policy, window, approval, fleet, config, plan"
)]
pub struct UnknownSchemaKind {
    /// The name as given.
    pub name: String,
}

impl FromStr for SchemaKind {
    type Err = UnknownSchemaKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchemaKind::from_name(s).ok_or_else(|| UnknownSchemaKind { name: s.to_owned() })
    }
}

/// The text of a schema, exactly as in `schemas/`.
pub fn schema_text(kind: SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Component => include_str!("../../schemas/component.schema.json"),
        SchemaKind::Release => include_str!("../../schemas/release.schema.json"),
        SchemaKind::Target => include_str!("../../schemas/target.schema.json"),
        SchemaKind::Policy => include_str!("../../schemas/policy.schema.json"),
        SchemaKind::Window => include_str!("../../schemas/window.schema.json"),
        SchemaKind::Approval => include_str!("../../schemas/approval.schema.json"),
        SchemaKind::Fleet => include_str!("../../schemas/fleet.schema.json"),
        SchemaKind::Config => include_str!("../../schemas/gantry.schema.json"),
        SchemaKind::Plan => include_str!("../../schemas/plan.schema.json"),
    }
}

/// A schema as a JSON value, parsed once.
pub fn schema(kind: SchemaKind) -> &'static Value {
    static PARSED: [OnceLock<Value>; 9] = [const { OnceLock::new() }; 9];
    PARSED[kind.index()].get_or_init(|| {
        serde_json::from_str(schema_text(kind)).unwrap_or_else(|e| {
            panic!(
                "invariant violated: the embedded schema {} is valid JSON (tested): {e}",
                kind.file_name()
            )
        })
    })
}

fn validator(kind: SchemaKind) -> &'static Validator {
    static COMPILED: [OnceLock<Validator>; 9] = [const { OnceLock::new() }; 9];
    COMPILED[kind.index()].get_or_init(|| {
        jsonschema::draft202012::options()
            // The schemas only refer into their own `$defs`; nothing is ever fetched.
            .offline()
            // Manifests come from pull requests: linear-time matching, no backtracking blowups.
            .with_pattern_options(PatternOptions::regex())
            .build(schema(kind))
            .unwrap_or_else(|e| {
                panic!(
                    "invariant violated: the embedded schema {} compiles as draft 2020-12 (tested): {e}",
                    kind.file_name()
                )
            })
    })
}

/// One way a document breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer of the offending value (`/spec/version`). For an unknown field, the field
    /// itself (`/spec/replicas`); for a missing field, the object that lacks it.
    pub pointer: String,
    /// What is wrong, for people, without the location (see [`SchemaViolation::path`]).
    pub message: String,
}

impl SchemaViolation {
    /// The location as people read it: `spec.migrations[0].id`; `metadata.labels["gantry.dev/ring"]`
    /// for keys that are not plain words. Empty for the document itself.
    pub fn path(&self) -> String {
        let mut path = String::new();
        for raw in self.pointer.split('/').skip(1) {
            let token = raw.replace("~1", "/").replace("~0", "~");
            if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
                path.push_str(&format!("[{token}]"));
            } else if !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&token);
            } else {
                path.push_str(&format!("[{}]", Value::String(token)));
            }
        }
        path
    }
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{path}: {}", self.message)
        }
    }
}

/// Checks a document (a manifest, `gantry.toml` or a plan, as JSON) against its schema.
///
/// Returns every violation, in the validator's order, without duplicates; empty when the
/// document is valid. A missing or wrongly-typed field inside an alternative (`oneOf`/`anyOf`)
/// is reported once, at the field, rather than again as "matches none of the forms".
///
/// # Panics
/// Only if an embedded schema does not compile, which the tests rule out.
pub fn validate(kind: SchemaKind, instance: &Value) -> Vec<SchemaViolation> {
    violations(validator(kind), schema(kind), instance)
}

/// A component's `configSchema` (issue #16): a JSON Schema (draft 2020-12) from a manifest, and
/// so from a pull request, compiled like gantry's own (offline: a `$ref` never fetches anything;
/// linear-time patterns). `validate` checks every target's `config` with it.
pub struct ConfigSchema {
    validator: Validator,
    schema: Value,
}

impl ConfigSchema {
    /// # Errors
    /// Why `schema` is not a schema this validator can use, in one line.
    pub fn compile(schema: &Value) -> Result<ConfigSchema, String> {
        let validator = jsonschema::draft202012::options()
            .offline()
            .with_pattern_options(PatternOptions::regex())
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(ConfigSchema {
            validator,
            schema: schema.clone(),
        })
    }

    /// Where `config` breaks the schema (pointers relative to `config`).
    pub fn check(&self, config: &Value) -> Vec<SchemaViolation> {
        violations(&self.validator, &self.schema, config)
    }
}

fn violations(validator: &Validator, schema: &Value, instance: &Value) -> Vec<SchemaViolation> {
    // Nearly every document is valid: answer that without collecting errors.
    if validator.is_valid(instance) {
        return Vec::new();
    }
    let mut found: Vec<(SchemaViolation, Specificity)> = Vec::new();
    for error in validator.iter_errors(instance) {
        for violation in describe(&error, schema) {
            if !found.iter().any(|(v, _)| *v == violation.0) {
                found.push(violation);
            }
        }
    }
    // "None of the forms match" says less than an error inside the value; keep it only alone.
    let specific: Vec<String> = found
        .iter()
        .filter(|(_, s)| *s == Specificity::Exact)
        .map(|(v, _)| v.pointer.clone())
        .collect();
    found
        .into_iter()
        .filter(|(v, s)| {
            *s == Specificity::Exact || !specific.iter().any(|p| p.starts_with(&format!("{}/", v.pointer)))
        })
        .map(|(v, _)| v)
        .collect()
}

/// Whether a violation is about the value itself or only says that no alternative matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Specificity {
    Exact,
    Alternatives,
}

/// The violations one validator error stands for (several for several unknown fields).
fn describe(error: &ValidationError<'_>, schema: &Value) -> Vec<(SchemaViolation, Specificity)> {
    let pointer = error.instance_path().as_str().to_owned();
    let keyword = error.schema_path().as_str();
    let exact = |pointer: String, message: String| (SchemaViolation { pointer, message }, Specificity::Exact);
    let message = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = sibling(schema, keyword, "properties")
                .and_then(Value::as_object)
                .map(|props| props.keys().map(String::as_str).collect::<Vec<_>>())
                .unwrap_or_default();
            return unexpected
                .iter()
                .map(|name| exact(child_pointer(&pointer, name), unknown_field(name, &allowed)))
                .collect();
        }
        ValidationErrorKind::PropertyNames { error: inner } => {
            let key = inner.instance().as_str().unwrap_or_default().to_owned();
            let message = match inner.kind() {
                ValidationErrorKind::Pattern { .. } => message_of(inner, schema),
                _ => format!(
                    "key {}: {}",
                    render(&Value::String(key.clone())),
                    message_of(inner, schema)
                ),
            };
            return vec![exact(child_pointer(&pointer, &key), message)];
        }
        ValidationErrorKind::OneOfNotValid { .. } | ValidationErrorKind::AnyOf { .. } => {
            let message = alternatives_message(error, schema);
            return vec![(SchemaViolation { pointer, message }, Specificity::Alternatives)];
        }
        _ => message_of(error, schema),
    };
    vec![exact(pointer, message)]
}

/// The message for an error whose location needs no adjustment.
fn message_of(error: &ValidationError<'_>, schema: &Value) -> String {
    let keyword = error.schema_path().as_str();
    let instance = error.instance();
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            match condition(schema, keyword) {
                Some(when) => format!("`{name}` is required {when}"),
                None => format!("missing required field `{name}`"),
            }
        }
        ValidationErrorKind::Type { .. } => {
            let expected = schema.pointer(keyword).map(expected_types).unwrap_or_default();
            if expected.is_empty() {
                return error.to_string();
            }
            format!(
                "expected {expected}, found {}{}",
                render(instance),
                quoting_hint(&expected, instance)
            )
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("expected {}, found {}", render(expected_value), render(instance))
        }
        ValidationErrorKind::Enum { options } => {
            let options: Vec<String> = options.as_array().into_iter().flatten().map(render).collect();
            format!("expected {}, found {}", join_or(&options), render(instance))
        }
        ValidationErrorKind::Pattern { .. } => {
            let def = parent(keyword).and_then(|p| schema.pointer(p));
            let title = def.and_then(|d| d.get("title")).and_then(Value::as_str);
            let rule = def.and_then(|d| d.get("description")).and_then(Value::as_str);
            match (title, rule) {
                (Some(title), Some(rule)) => format!("{} is not a valid {title}: {rule}", render(instance)),
                (Some(title), None) => format!("{} is not a valid {title}", render(instance)),
                _ => error.to_string(),
            }
        }
        ValidationErrorKind::MinItems { limit: 1 } | ValidationErrorKind::MinLength { limit: 1 } => {
            "must not be empty".to_owned()
        }
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters long"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            let forms = alternatives(schema, keyword);
            if forms.is_empty() {
                "matches more than one of the allowed forms; give only one".to_owned()
            } else {
                format!("give only one of {}", join_or(&forms))
            }
        }
        ValidationErrorKind::Not { .. } | ValidationErrorKind::FalseSchema => "is not allowed here".to_owned(),
        _ => error.to_string(),
    }
}

/// "give exactly one of `path` or `url`", from the titles of the failed keyword's branches.
fn alternatives_message(error: &ValidationError<'_>, schema: &Value) -> String {
    let keyword = error.schema_path().as_str();
    let forms = alternatives(schema, keyword);
    let quantity = match error.kind() {
        ValidationErrorKind::AnyOf { .. } => "at least one of",
        _ => "exactly one of",
    };
    let mut message = if forms.is_empty() {
        format!("does not match {quantity} the allowed forms")
    } else {
        format!("give {quantity} {}", join_or(&forms))
    };
    if let Some(when) = condition(schema, keyword) {
        message.push(' ');
        message.push_str(&when);
    }
    message
}

/// The titles of the branches of the `oneOf`/`anyOf` at `keyword`.
fn alternatives(schema: &Value, keyword: &str) -> Vec<String> {
    schema
        .pointer(keyword)
        .and_then(Value::as_array)
        .map(|branches| {
            branches
                .iter()
                .filter_map(|b| b.get("title").and_then(Value::as_str).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .filter(|titles: &Vec<String>| titles.len() > 1)
        .unwrap_or_default()
}

/// For a keyword inside `then`, the `if` it depends on as "when `type` is \"http\"".
fn condition(schema: &Value, keyword: &str) -> Option<String> {
    let at = keyword.rfind("/then/")?;
    let condition = schema.pointer(&format!("{}/if", &keyword[..at]))?;
    let parts: Vec<String> = condition
        .get("properties")?
        .as_object()?
        .iter()
        .filter_map(|(name, s)| s.get("const").map(|c| format!("`{name}` is {}", render(c))))
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(format!("when {}", parts.join(" and ")))
    }
}

/// `type` of a schema, as people say it: "a string", "an integer or a list". `null` is left out
/// when other types are allowed: there it only means "as if absent".
fn expected_types(type_keyword: &Value) -> String {
    let names: Vec<&str> = match type_keyword {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let described: Vec<String> = names
        .iter()
        .filter(|n| names.len() == 1 || **n != "null")
        .map(|n| {
            match *n {
                "string" => "a string",
                "integer" => "an integer",
                "number" => "a number",
                "boolean" => "true or false",
                "object" => "a mapping",
                "array" => "a list",
                "null" => "null",
                other => other,
            }
            .to_owned()
        })
        .collect();
    join_or(&described)
}

/// YAML and TOML quoting mistakes: `version: 2.0` is a number, `suspend: "false"` a string.
fn quoting_hint(expected: &str, instance: &Value) -> &'static str {
    let wants = |what: &str| expected.contains(what);
    match instance {
        Value::Number(_) | Value::Bool(_) if wants("a string") => " (quote it)",
        Value::String(s) if wants("true or false") && (s == "true" || s == "false") => " (remove the quotes)",
        Value::String(s)
            if (wants("an integer") && s.trim().parse::<i64>().is_ok())
                || (wants("a number") && s.trim().parse::<f64>().is_ok()) =>
        {
            " (remove the quotes)"
        }
        _ => "",
    }
}

fn unknown_field(name: &str, allowed: &[&str]) -> String {
    let shown = render(&Value::String(name.to_owned()));
    if let Some(close) = closest(name, allowed) {
        return format!("unknown field {shown}; did you mean `{close}`?");
    }
    if allowed.is_empty() {
        format!("unknown field {shown}")
    } else {
        let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
        format!("unknown field {shown}; expected one of {}", list.join(", "))
    }
}

/// The allowed name a typo most likely meant: same letters ignoring case, `_` and `-`, or at
/// most a third of the letters different.
fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let fold = |s: &str| {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .collect::<String>()
            .to_lowercase()
    };
    if let Some(same) = allowed.iter().find(|a| fold(a) == fold(name)) {
        return Some(same);
    }
    allowed
        .iter()
        .map(|a| (strsim::levenshtein(&fold(name), &fold(a)), *a))
        .filter(|(d, a)| *d <= (a.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// A value as it appears in a message: scalars as JSON, collections by kind.
fn render(value: &Value) -> String {
    const MAX: usize = 60;
    match value {
        Value::String(s) if s.chars().count() > MAX => {
            let quoted = Value::String(s.chars().take(MAX).collect()).to_string();
            format!("{}…\"", &quoted[..quoted.len() - 1])
        }
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
        other => other.to_string(),
    }
}

/// "a", "a or b", "a, b or c".
fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn parent(pointer: &str) -> Option<&str> {
    pointer.rsplit_once('/').map(|(p, _)| p)
}

/// The keyword `name` next to the keyword at `keyword` (e.g. `properties` beside
/// `additionalProperties`).
fn sibling<'a>(schema: &'a Value, keyword: &str, name: &str) -> Option<&'a Value> {
    schema.pointer(&format!("{}/{name}", parent(keyword)?))
}

fn child_pointer(pointer: &str, token: &str) -> String {
    format!("{pointer}/{}", token.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every schema node reachable under `properties` (the property schemas), with its pointer.
    /// Branches of `if`/`then`/`oneOf`/`anyOf`/`not` only constrain declared properties and are
    /// skipped.
    fn property_schemas<'a>(node: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
        match node {
            Value::Object(map) => {
                for (key, value) in map {
                    if matches!(key.as_str(), "if" | "then" | "else" | "oneOf" | "anyOf" | "not") {
                        continue;
                    }
                    let here = format!("{at}/{key}");
                    if key == "properties"
                        && let Some(props) = value.as_object()
                    {
                        for (name, prop) in props {
                            out.push((format!("{here}/{name}"), prop));
                        }
                    }
                    property_schemas(value, here, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    property_schemas(item, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    fn all_nodes<'a>(node: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
        out.push((at.clone(), node));
        match node {
            Value::Object(map) => map.iter().for_each(|(k, v)| all_nodes(v, format!("{at}/{k}"), out)),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, v)| all_nodes(v, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    #[test]
    fn every_schema_compiles_and_identifies_itself() {
        for &kind in SchemaKind::all() {
            let s = schema(kind);
            assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema", "{kind}");
            assert_eq!(s["$id"], kind.id().as_str(), "{kind}");
            assert!(
                s["title"].is_string() && s["description"].is_string(),
                "{kind}: title and description"
            );
            if let Err(e) = jsonschema::meta::validate(s) {
                panic!("{kind} is not a valid draft 2020-12 schema: {e}");
            }
            let _ = validator(kind);
            if let Some(manifest_kind) = kind.manifest_kind() {
                assert_eq!(s["properties"]["kind"]["const"], manifest_kind);
                assert_eq!(s["properties"]["apiVersion"]["const"], "gantry.dev/v1");
            }
        }
    }

    #[test]
    fn every_property_has_a_description_and_a_type() {
        // Values that may be any JSON on purpose.
        let any = [
            "plan.schema.json#/$defs/configChange/properties/from",
            "plan.schema.json#/$defs/configChange/properties/to",
        ];
        for &kind in SchemaKind::all() {
            let s = schema(kind);
            let mut props = Vec::new();
            property_schemas(s, String::new(), &mut props);
            assert!(!props.is_empty());
            for (at, prop) in props {
                let here = format!("{}#{at}", kind.file_name());
                assert!(prop["description"].is_string(), "{here} has no description");
                let typed = |p: &Value| p.get("type").is_some() || p.get("const").is_some() || p.get("enum").is_some();
                let target = prop["$ref"].as_str().and_then(|r| s.pointer(r.trim_start_matches('#')));
                assert!(
                    typed(prop) || target.is_some_and(typed) || any.contains(&here.as_str()),
                    "{here} says nothing about its type"
                );
            }
        }
    }

    #[test]
    fn patterns_live_in_titled_defs() {
        // Messages for pattern mismatches are built from the def's title and description.
        for &kind in SchemaKind::all() {
            let mut nodes = Vec::new();
            all_nodes(schema(kind), String::new(), &mut nodes);
            for (at, node) in nodes {
                if node.get("pattern").is_some_and(Value::is_string) {
                    let def = at.strip_prefix("/$defs/").filter(|name| !name.contains('/'));
                    assert!(def.is_some(), "{}#{at}: put the pattern in a $def", kind.file_name());
                    assert!(node["title"].is_string() && node["description"].is_string(), "{at}");
                }
            }
        }
    }

    /// Regression (issue #9): the schema, `validate`'s typed check and the daemon said three
    /// different things about one bad duration. Every malformed `poll_interval` now reads the
    /// same whichever of them rejects it.
    #[test]
    fn schema_and_parser_describe_a_bad_duration_in_the_same_words() {
        for text in ["10", "30 seconds", "1.5h", "soon"] {
            let violations = validate(SchemaKind::Config, &serde_json::json!({ "poll_interval": text }));
            let schema_says: Vec<&str> = violations.iter().map(|v| v.message.as_str()).collect();
            let parser_says = crate::manifest::values::parse_duration(text).unwrap_err();
            assert_eq!(schema_says, [parser_says.as_str()], "{text}");
        }
    }

    #[test]
    fn shared_defs_are_identical_everywhere() {
        let mut seen: std::collections::BTreeMap<String, (SchemaKind, &Value)> = Default::default();
        for &kind in SchemaKind::all() {
            for (name, def) in schema(kind)["$defs"].as_object().into_iter().flatten() {
                match seen.get(name) {
                    Some((first, other)) => {
                        assert_eq!(*other, def, "$defs/{name} differs between {first} and {kind}");
                    }
                    None => {
                        seen.insert(name.clone(), (kind, def));
                    }
                }
            }
        }
    }

    #[test]
    fn names_resolve() {
        let cases = [
            ("component", Some(SchemaKind::Component)),
            ("Component", Some(SchemaKind::Component)),
            ("RELEASE", Some(SchemaKind::Release)),
            ("target", Some(SchemaKind::Target)),
            ("Policy", Some(SchemaKind::Policy)),
            ("window", Some(SchemaKind::Window)),
            ("Approval", Some(SchemaKind::Approval)),
            ("fleet", Some(SchemaKind::Fleet)),
            ("config", Some(SchemaKind::Config)),
            ("gantry.toml", Some(SchemaKind::Config)),
            ("gantry", Some(SchemaKind::Config)),
            ("gantry.schema.json", Some(SchemaKind::Config)),
            ("plan", Some(SchemaKind::Plan)),
            (" target.schema.json ", Some(SchemaKind::Target)),
            ("widget", None),
            ("", None),
        ];
        for (name, expected) in cases {
            assert_eq!(SchemaKind::from_name(name), expected, "{name:?}");
        }
        for &kind in SchemaKind::all() {
            assert_eq!(kind.name().parse::<SchemaKind>(), Ok(kind));
            assert_eq!(SchemaKind::from_name(kind.file_name()), Some(kind));
        }
        let err = "widgets".parse::<SchemaKind>().unwrap_err();
        assert!(err.to_string().contains("unknown schema `widgets`"), "{err}");
    }

    fn target(spec: Value) -> Value {
        json!({"apiVersion": "gantry.dev/v1", "kind": "Target", "metadata": {"name": "acme-billing"}, "spec": spec})
    }

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "gantry.dev/v1", "kind": "Policy", "metadata": {"name": "prod"}, "spec": spec})
    }

    fn window(spec: Value) -> Value {
        json!({"apiVersion": "gantry.dev/v1", "kind": "Window", "metadata": {"name": "nights"}, "spec": spec})
    }

    fn shown(kind: SchemaKind, doc: &Value) -> Vec<String> {
        validate(kind, doc)
            .iter()
            .map(|v| format!("{} | {v}", v.pointer))
            .collect()
    }

    #[test]
    fn messages_name_the_place_and_the_fix() {
        use SchemaKind::*;
        let cases: Vec<(SchemaKind, Value, Vec<&str>)> = vec![
            (
                Target,
                target(json!({"component": "billing", "version": "2.0.0"})),
                vec![],
            ),
            (
                Target,
                target(json!({"component": "billing", "version": 2.0})),
                vec![r#"/spec/version | spec.version: expected a string, found 2.0 (quote it)"#],
            ),
            (
                Target,
                target(json!({"component": "billing", "version": "1", "suspend": "yes"})),
                vec![r#"/spec/suspend | spec.suspend: expected true or false, found "yes""#],
            ),
            (
                Target,
                target(json!({"component": "billing", "version": "1", "suspend": "false"})),
                vec![r#"/spec/suspend | spec.suspend: expected true or false, found "false" (remove the quotes)"#],
            ),
            (
                Policy,
                policy(
                    json!({"priority": "10", "health": {"checks": [{"name": "m", "type": "prometheus", "url": "u", "query": "q", "max": " 0.5"}]}}),
                ),
                vec![
                    r#"/spec/health/checks/0/max | spec.health.checks[0].max: expected a number, found " 0.5" (remove the quotes)"#,
                    r#"/spec/priority | spec.priority: expected an integer, found "10" (remove the quotes)"#,
                ],
            ),
            (
                Target,
                target(json!({"component": "billing", "versoin": "1"})),
                vec![
                    "/spec | spec: missing required field `version`",
                    r#"/spec/versoin | spec.versoin: unknown field "versoin"; did you mean `version`?"#,
                ],
            ),
            (
                Target,
                target(json!({"component": "billing", "version": "1", "replicas": 3, "a/b": 1})),
                vec![
                    r#"/spec/a~1b | spec["a/b"]: unknown field "a/b"; expected one of `channels`, `component`, `config`, `retry`, `suspend`, `vars`, `version`"#,
                    r#"/spec/replicas | spec.replicas: unknown field "replicas"; expected one of `channels`, `component`, `config`, `retry`, `suspend`, `vars`, `version`"#,
                ],
            ),
            (
                Target,
                json!({"apiVersion": "gantry.dev/v2", "kind": "Target", "metadata": {"name": "Acme_Billing", "labels": {"ring": 2, "bad key": "x"}}, "spec": {"component": "billing", "version": "1"}}),
                vec![
                    r#"/apiVersion | apiVersion: expected "gantry.dev/v1", found "gantry.dev/v2""#,
                    r#"/metadata/labels/bad key | metadata.labels["bad key"]: "bad key" is not a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, e.g. tenant or gantry.dev/ring"#,
                    "/metadata/labels/ring | metadata.labels.ring: expected a string, found 2 (quote it)",
                    r#"/metadata/name | metadata.name: "Acme_Billing" is not a valid manifest name: lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 63 characters, e.g. billing-2.0.0"#,
                ],
            ),
            (
                Policy,
                policy(json!({"health": {"checks": [
                    {"name": "up", "type": "http"},
                    {"name": "errors", "type": "prometheus", "url": "http://p:9090", "query": "x"},
                    {"name": "smoke", "type": "tcp"},
                ]}})),
                vec![
                    r#"/spec/health/checks/0 | spec.health.checks[0]: `url` is required when `type` is "http""#,
                    r#"/spec/health/checks/1 | spec.health.checks[1]: give at least one of `max` or `min` when `type` is "prometheus""#,
                    r#"/spec/health/checks/2/type | spec.health.checks[2].type: expected "http", "prometheus" or "command", found "tcp""#,
                ],
            ),
            (
                Policy,
                policy(
                    json!({"rollout": {"waves": [{"name": "canary", "percent": 0}, {"name": "all"}], "maxParallel": 0}, "stepTimeout": "10 minutes"}),
                ),
                vec![
                    "/spec/rollout/maxParallel | spec.rollout.maxParallel: 0 is less than the minimum of 1",
                    "/spec/rollout/waves/0/percent | spec.rollout.waves[0].percent: 0 is less than the minimum of 1",
                    "/spec/rollout/waves/1 | spec.rollout.waves[1]: give at least one of `selector` or `percent`",
                    r#"/spec/stepTimeout | spec.stepTimeout: "10 minutes" is not a valid duration: one or more <number><unit> parts with units ms, s, m, h, d, w, e.g. 30m, 1h30m, 7d or 0d"#,
                ],
            ),
            (
                Window,
                window(json!({"timezone": "Europe/Berlin", "deny": [
                    {"dates": ["2026-12-24"], "from": "2026-11-27T00:00", "to": "2026-11-30T23:59"},
                    {"dates": "2026-12-24"},
                    {"days": []},
                ], "allow": [{"start": "2:00", "end": "06:00"}]})),
                vec![
                    r#"/spec/allow/0/start | spec.allow[0].start: "2:00" is not a valid time of day: HH:MM or HH:MM:SS on a 24-hour clock, or 24:00 for the end of the day; quote it in YAML, e.g. "02:00""#,
                    "/spec/deny/0 | spec.deny[0]: give exactly one of `dates`, `from` and `to` or `start` and `end` (with optional `days`)",
                    r#"/spec/deny/1/dates | spec.deny[1].dates: expected a list, found "2026-12-24""#,
                    "/spec/deny/2/days | spec.deny[2].days: must not be empty",
                ],
            ),
        ];
        for (kind, doc, expected) in cases {
            let mut got = shown(kind, &doc);
            got.sort();
            assert_eq!(got, expected, "{doc}");
        }
    }

    #[test]
    fn config_messages() {
        let doc = json!({"executors": {"k8s": {"type": "plugin"}, "ssh": {"type": "ssh"}, "local": {"type": "shell", "command": []}}});
        let mut got = shown(SchemaKind::Config, &doc);
        got.sort();
        assert_eq!(
            got,
            vec![
                "/executors/k8s | executors.k8s: `command` is required when `type` is \"plugin\"",
                "/executors/local/command | executors.local.command: must not be empty",
                "/executors/ssh/type | executors.ssh.type: expected \"shell\" or \"plugin\", found \"ssh\"",
            ]
        );
    }

    #[test]
    fn paths_read_like_the_document() {
        let cases = [
            ("", ""),
            ("/spec", "spec"),
            ("/spec/migrations/0/id", "spec.migrations[0].id"),
            (
                "/metadata/labels/gantry.dev~1ring",
                r#"metadata.labels["gantry.dev/ring"]"#,
            ),
            ("/spec/config/max_context_gb", "spec.config.max_context_gb"),
            ("/executors/my exec", r#"executors["my exec"]"#),
        ];
        for (pointer, path) in cases {
            let v = SchemaViolation {
                pointer: pointer.into(),
                message: "m".into(),
            };
            assert_eq!(v.path(), path, "{pointer}");
        }
        let root = SchemaViolation {
            pointer: String::new(),
            message: "missing required field `spec`".into(),
        };
        assert_eq!(root.to_string(), "missing required field `spec`");
    }

    fn plan() -> Value {
        json!({
            "head": "0123456789abcdef0123456789abcdef01234567",
            "base": null,
            "now": "2026-02-10T09:00:00Z",
            "actions": [{
                "target": "acme-billing", "component": "billing", "action": "upgrade",
                "from": "1.2.0", "to": "2.0.0", "stops": ["1.4.0", "2.0.0"],
                "migrations": [{"release": "2.0.0", "id": "split", "direction": "up", "phase": "pre", "stop": "2.0.0"}],
                "wave": "canary", "status": "blocked",
                "blocked_by": [
                    {"kind": "window", "reason": "next eu-weekend-nights window", "opens_at": "2026-02-14T01:00:00Z", "until": null},
                    {"kind": "approval", "reason": "have 1 of 2", "opens_at": null, "until": null}
                ],
                "config_diff": [{"key": "timeout_s", "from": 30, "to": 60}, {"key": "new", "to": {"a": [1]}}],
                "policy": "production",
                "approvals": {"required": 2, "have": ["alice@example.com"], "missing": 1, "eligible": ["bob@example.com"]},
                "update_type": "major", "violations": [], "warnings": ["2.0.0 is deprecated: use 2.1.x"],
                "breaking": true, "releases": []
            }, {
                "target": "old", "component": "billing", "action": "remove", "from": "1.0.0", "to": null,
                "stops": [], "migrations": [], "wave": null, "status": "ready", "blocked_by": [],
                "config_diff": [], "policy": null, "approvals": null, "update_type": null,
                "violations": [], "warnings": [], "breaking": false, "releases": []
            }],
            "violations": [{"kind": "invalid_manifest", "message": "x", "file": "targets/a.yaml", "line": 4, "column": 12, "target": "a"}],
            "warnings": [],
            "summary": {"ready": 1, "blocked": 1, "violation": 0, "noop": 0},
            "rollouts": [{
                "component": "billing", "version": "2.0.0", "policy": "production",
                "waves": [
                    {"name": "canary", "targets": ["acme-billing"], "status": "soaking", "soak_until": "2026-02-10T09:30:00Z"},
                    {"name": "all", "targets": [], "status": "pending"}
                ]
            }]
        })
    }

    #[test]
    fn plan_schema_accepts_a_full_plan() {
        assert_eq!(validate(SchemaKind::Plan, &plan()), vec![]);
    }

    #[test]
    fn plan_schema_rejects_unknown_fields_and_values() {
        type Edit = fn(&mut Value);
        let cases: Vec<(Edit, &str)> = vec![
            (|p| p["actions"][0]["status"] = json!("waiting"), "/actions/0/status"),
            (
                |p| p["actions"][0]["blocked_by"][0]["kind"] = json!("weather"),
                "/actions/0/blocked_by/0/kind",
            ),
            (|p| p["actions"][0]["extra"] = json!(1), "/actions/0/extra"),
            (
                |p| p["actions"][0]["update_type"] = json!("huge"),
                "/actions/0/update_type",
            ),
            (
                |p| p["actions"][0]["migrations"][0]["direction"] = json!("sideways"),
                "/actions/0/migrations/0/direction",
            ),
            (|p| p["now"] = json!("yesterday"), "/now"),
            (|p| p["head"] = json!("HEAD"), "/head"),
            (|p| p["summary"]["ready"] = json!(-1), "/summary/ready"),
            (|p| p["violations"][0]["line"] = json!(0), "/violations/0/line"),
            (
                |p| {
                    p["actions"][0].as_object_mut().map(|a| a.remove("wave"));
                },
                "/actions/0",
            ),
        ];
        for (change, pointer) in cases {
            let mut doc = plan();
            change(&mut doc);
            let found = validate(SchemaKind::Plan, &doc);
            assert!(found.iter().any(|v| v.pointer == pointer), "{pointer}: {found:?}");
        }
    }

    #[test]
    fn long_values_are_cut_inside_their_quotes() {
        let long = "x".repeat(100);
        assert_eq!(render(&json!(long)), format!("\"{}…\"", "x".repeat(60)));
        assert_eq!(render(&json!("é\"q")), r#""é\"q""#);
        assert_eq!(render(&json!([1])), "a list");
        assert_eq!(render(&json!({"a": 1})), "a mapping");
        assert_eq!(render(&json!(null)), "null");
    }

    #[test]
    fn typo_suggestions_stay_close() {
        let allowed = ["component", "version", "channels", "config", "vars", "suspend"];
        assert_eq!(closest("versoin", &allowed), Some("version"));
        assert_eq!(closest("Suspend", &allowed), Some("suspend"));
        assert_eq!(closest("channel", &allowed), Some("channels"));
        assert_eq!(closest("replicas", &allowed), None);
        assert_eq!(closest("x", &allowed), None);
        assert_eq!(
            closest("max_parallel", &["maxParallel", "maxFailures"]),
            Some("maxParallel")
        );
    }
}
