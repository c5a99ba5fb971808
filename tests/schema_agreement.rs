//! The JSON Schemas in `schemas/` and the serde types in `gantry::manifest` accept and reject the same documents.
//!
//! Every file under `fixtures/schema/good/` must pass both the schema and typed deserialization.
//! Every file under `fixtures/schema/bad/` starts with `# expect: <JSON pointer>` and must fail
//! both, the schema with a violation at that pointer. Two prefixes mark the known, deliberate
//! differences:
//! - `schema-only-`: the schema is stricter than the types (name, semver, duration syntax, one
//!   form per deny rule, ...). The schema must reject it and the types must still accept it, so
//!   that this list stays the exact to-do list of semantic checks Rust validation has to make.
//!   When the types learn to reject one, drop the prefix.
//! - `rust-only-`: JSON Schema cannot express the rule (it counts `1.0` as an integer); typed
//!   deserialization must reject it and the schema accepts it.
//!
//! YAML fixtures hold one document each and are dispatched on their `kind`, as the loader does;
//! TOML fixtures are `gantry.toml` files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use gantry::manifest::document::{parse_toml, parse_yaml};
use gantry::manifest::schema::{SchemaKind, SchemaViolation, validate};
use gantry::manifest::{
    ApprovalSpec, ComponentSpec, FleetSpec, Metadata, PolicySpec, ReleaseSpec, RepoConfig, TargetSpec, WindowSpec,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A whole manifest as the loader will read it: the envelope is as strict as the spec types.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // Only deserialization matters here.
struct Envelope<S> {
    api_version: ApiVersion,
    kind: String,
    metadata: Metadata,
    spec: S,
}

#[derive(Debug, Deserialize)]
enum ApiVersion {
    #[serde(rename = "gantry.dev/v1")]
    V1,
}

/// A fixture read, parsed and classified.
struct Fixture {
    path: PathBuf,
    kind: SchemaKind,
    json: Value,
    /// From the `# expect:` line of a bad fixture.
    expected_pointer: Option<String>,
}

fn fixtures(dir: &str) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/schema").join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths.into_iter().map(|path| load(&path)).collect()
}

fn load(path: &Path) -> Fixture {
    let text = std::fs::read_to_string(path).unwrap();
    let expected_pointer = text.lines().next().and_then(|l| l.strip_prefix("# expect:")).map(|p| {
        let p = p.trim();
        p.strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or(p)
            .to_owned()
    });
    let (kind, json) = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let node = parse_toml(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            (SchemaKind::Config, node.to_json())
        }
        Some("yaml") => {
            let docs = parse_yaml(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            assert_eq!(docs.len(), 1, "{}: one document per fixture", path.display());
            let json = docs[0].to_json();
            let kind = json["kind"]
                .as_str()
                .and_then(SchemaKind::from_name)
                .filter(|k| k.manifest_kind().is_some())
                .unwrap_or_else(|| panic!("{}: no manifest kind", path.display()));
            (kind, json)
        }
        _ => panic!("{}: fixtures are .yaml or .toml", path.display()),
    };
    Fixture {
        path: path.to_owned(),
        kind,
        json,
        expected_pointer,
    }
}

fn typed<T: DeserializeOwned>(json: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(json.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Typed deserialization, as the Rust side of the agreement.
fn rust_verdict(fixture: &Fixture) -> Result<(), String> {
    let json = &fixture.json;
    match fixture.kind {
        SchemaKind::Component => typed::<Envelope<ComponentSpec>>(json),
        SchemaKind::Release => typed::<Envelope<ReleaseSpec>>(json),
        SchemaKind::Target => typed::<Envelope<TargetSpec>>(json),
        SchemaKind::Policy => typed::<Envelope<PolicySpec>>(json),
        SchemaKind::Window => typed::<Envelope<WindowSpec>>(json),
        SchemaKind::Approval => typed::<Envelope<ApprovalSpec>>(json),
        SchemaKind::Fleet => typed::<Envelope<FleetSpec>>(json),
        SchemaKind::Config => typed::<RepoConfig>(json),
        SchemaKind::Plan => panic!("plans are not fixtures"),
    }
}

fn name(fixture: &Fixture) -> &str {
    fixture.path.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}

fn list(violations: &[SchemaViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("\n      {} | {v}", v.pointer))
        .collect()
}

#[test]
fn good_fixtures_pass_the_schema_and_the_types() {
    let all = fixtures("good");
    assert!(all.len() >= 12, "only {} good fixtures", all.len());
    let mut failures = String::new();
    for fixture in &all {
        let violations = validate(fixture.kind, &fixture.json);
        if !violations.is_empty() {
            let _ = write!(
                failures,
                "\n  {}: schema rejects it:{}",
                name(fixture),
                list(&violations)
            );
        }
        if let Err(e) = rust_verdict(fixture) {
            let _ = write!(failures, "\n  {}: the types reject it: {e}", name(fixture));
        }
    }
    assert!(failures.is_empty(), "good fixtures that fail:{failures}");
}

#[test]
fn bad_fixtures_fail_the_schema_at_the_expected_place_and_the_types() {
    let all = fixtures("bad");
    let both = all
        .iter()
        .filter(|f| !name(f).starts_with("schema-only-") && !name(f).starts_with("rust-only-"));
    assert!(both.count() >= 30, "fewer than 30 fixtures that both sides reject");
    let mut failures = String::new();
    for fixture in &all {
        let file = name(fixture);
        let Some(pointer) = &fixture.expected_pointer else {
            let _ = write!(failures, "\n  {file}: first line must be `# expect: <JSON pointer>`");
            continue;
        };
        let violations = validate(fixture.kind, &fixture.json);
        let rust = rust_verdict(fixture);
        if file.starts_with("rust-only-") {
            if !violations.is_empty() {
                let _ = write!(
                    failures,
                    "\n  {file}: the schema now rejects it; drop the prefix:{}",
                    list(&violations)
                );
            }
            if rust.is_ok() {
                let _ = write!(failures, "\n  {file}: the types accept it");
            }
            continue;
        }
        if !violations.iter().any(|v| &v.pointer == pointer) {
            let got = if violations.is_empty() {
                " nothing".to_owned()
            } else {
                list(&violations)
            };
            let _ = write!(
                failures,
                "\n  {file}: expected a schema violation at {pointer:?}, got:{got}"
            );
        }
        match (file.starts_with("schema-only-"), rust) {
            (false, Ok(())) => {
                let _ = write!(
                    failures,
                    "\n  {file}: the types accept it (prefix it schema-only- if that is right)"
                );
            }
            (true, Err(e)) => {
                let _ = write!(
                    failures,
                    "\n  {file}: the types reject it now ({e}); drop the schema-only- prefix"
                );
            }
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "bad fixtures that do not fail as expected:{failures}"
    );
}

#[test]
fn every_schema_but_the_plan_has_good_and_bad_fixtures() {
    let good = fixtures("good");
    let bad = fixtures("bad");
    for &kind in SchemaKind::all().iter().filter(|k| **k != SchemaKind::Plan) {
        assert!(good.iter().any(|f| f.kind == kind), "no good fixture for {kind}");
        assert!(bad.iter().any(|f| f.kind == kind), "no bad fixture for {kind}");
    }
}
