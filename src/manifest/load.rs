//! Loading: raw files of a commit → located documents → schema-checked typed manifests.
//!
//! Loading never stops at the first problem: every file is read, every document checked, and
//! all diagnostics are returned together with whatever could be understood, so one run of
//! `gantry validate` shows everything that is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::diagnostic::{Diagnostic, Severity};
use super::document::{self, Loc, Node, NodeValue};
use super::schema::{self, SchemaKind};
use super::types::*;

/// A file as read from a commit.
#[derive(Debug, Clone)]
pub struct RawFile {
    /// Path inside the repository, `/`-separated.
    pub path: String,
    pub content: RawContent,
}

/// A file's content, or why it has none we will read.
#[derive(Debug, Clone)]
pub enum RawContent {
    Bytes(Vec<u8>),
    /// A symbolic link and its target; never followed.
    Symlink(String),
    /// Larger than the manifest size limit, and mentions `gantry.dev/`.
    TooLarge(usize),
    /// Larger than the manifest size limit and never mentions `gantry.dev/`: someone else's
    /// file (an OpenAPI spec, a data dump), not read. Its size in bytes.
    Foreign(usize),
}

/// What marks a file as (possibly) a gantry manifest: `apiVersion: gantry.dev/…`.
pub const API_MARKER: &str = "gantry.dev/";

/// A file without [`API_MARKER`] larger than this is not parsed at all (outside the configured
/// `paths`). Smaller ones still are, so a broken CI workflow next to the manifests gets a
/// warning; parsing several megabytes of someone else's YAML to ignore it is not worth it.
pub const FOREIGN_PARSE_LIMIT: usize = 64 << 10;

/// Where a manifest came from: its file and its whole document, for locating any field.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: Arc<str>,
    pub doc: Arc<Node>,
}

impl Origin {
    /// The line and column of the node at `pointer` (or its closest existing parent).
    pub fn loc(&self, pointer: &str) -> Loc {
        self.doc.loc_of(pointer)
    }

    /// A diagnostic about the node at `pointer`.
    pub fn diagnostic(
        &self,
        severity: Severity,
        kind: &'static str,
        pointer: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic::new(severity, kind, &self.file, self.loc(pointer), message)
    }
}

/// One manifest of some kind.
#[derive(Debug, Clone)]
pub struct Manifest<S> {
    pub name: String,
    pub labels: Labels,
    pub spec: S,
    pub origin: Origin,
}

/// The manifest kinds of `apiVersion: gantry.dev/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Component,
    Release,
    Target,
    Policy,
    Window,
    Approval,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Component,
        Kind::Release,
        Kind::Target,
        Kind::Policy,
        Kind::Window,
        Kind::Approval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Component => "Component",
            Kind::Release => "Release",
            Kind::Target => "Target",
            Kind::Policy => "Policy",
            Kind::Window => "Window",
            Kind::Approval => "Approval",
        }
    }

    fn from_str(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    fn schema(self) -> SchemaKind {
        match self {
            Kind::Component => SchemaKind::Component,
            Kind::Release => SchemaKind::Release,
            Kind::Target => SchemaKind::Target,
            Kind::Policy => SchemaKind::Policy,
            Kind::Window => SchemaKind::Window,
            Kind::Approval => SchemaKind::Approval,
        }
    }
}

/// Every manifest of a commit that could be read, by kind, in file order.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub config: RepoConfig,
    /// Where `gantry.toml` came from, when there is one.
    pub config_origin: Option<Origin>,
    pub components: Vec<Manifest<ComponentSpec>>,
    pub releases: Vec<Manifest<ReleaseSpec>>,
    pub targets: Vec<Manifest<TargetSpec>>,
    pub policies: Vec<Manifest<PolicySpec>>,
    pub windows: Vec<Manifest<WindowSpec>>,
    pub approvals: Vec<Manifest<ApprovalSpec>>,
}

/// The API version gantry reads.
pub const API_VERSION: &str = "gantry.dev/v1";

/// Reads `gantry.toml` (absent = defaults) and every manifest file.
///
/// Returns the manifests that read cleanly and a diagnostic for every problem. Files that are
/// not gantry manifests (no `apiVersion: gantry.dev/...`) are ignored.
pub fn read_manifests(config: Option<&RawFile>, files: &[RawFile]) -> (Manifests, Vec<Diagnostic>) {
    let mut out = Manifests::default();
    let mut diagnostics = Vec::new();
    if let Some(file) = config {
        read_config(file, &mut out, &mut diagnostics);
    }
    let restricted = out.config.paths.is_some();
    for file in files {
        read_file(file, restricted, &mut out, &mut diagnostics);
    }
    (out, diagnostics)
}

/// One file's share of [`read_manifests`]: what reading `file` alone adds (its manifests, with
/// a default configuration, and its diagnostics). `read_manifests(config, files)` is the
/// configuration's part followed by these parts in file order; `restricted` is whether
/// `gantry.toml` lists manifest `paths` (the only thing of the configuration a file's reading
/// depends on).
pub fn read_one(file: &RawFile, restricted: bool) -> (Manifests, Vec<Diagnostic>) {
    let mut out = Manifests::default();
    let mut diagnostics = Vec::new();
    read_file(file, restricted, &mut out, &mut diagnostics);
    (out, diagnostics)
}

fn file_text<'a>(file: &'a RawFile, diagnostics: &mut Vec<Diagnostic>) -> Option<&'a str> {
    let invalid = |message: String| Diagnostic::new(Severity::Invalid, "file", &file.path, Loc::UNKNOWN, message);
    match &file.content {
        RawContent::Symlink(to) => {
            diagnostics.push(invalid(format!(
                "is a symbolic link (to `{to}`); gantry reads manifests only from regular files in the commit, replace the link with the file"
            )));
            None
        }
        RawContent::TooLarge(size) | RawContent::Foreign(size) => {
            diagnostics.push(invalid(format!(
                "is {size} bytes, larger than the {} byte limit for a manifest; split it into several files",
                crate::manifest::MAX_MANIFEST_BYTES
            )));
            None
        }
        RawContent::Bytes(bytes) if bytes.len() > crate::manifest::MAX_MANIFEST_BYTES => {
            diagnostics.push(invalid(format!(
                "is {} bytes, larger than the {} byte limit for a manifest; split it into several files",
                bytes.len(),
                crate::manifest::MAX_MANIFEST_BYTES
            )));
            None
        }
        RawContent::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => Some(text.strip_prefix('\u{feff}').unwrap_or(text)),
            Err(e) => {
                let before = &bytes[..e.valid_up_to()];
                let line = before.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                let column = before.iter().rev().take_while(|&&b| b != b'\n').count() as u32 + 1;
                let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
                diagnostics.push(Diagnostic::new(
                    Severity::Invalid,
                    "encoding",
                    &file.path,
                    Loc { line, column },
                    if utf16 {
                        "is UTF-16 (it starts with a UTF-16 byte-order mark); save the file as UTF-8"
                    } else {
                        "is not valid UTF-8; save the file as UTF-8"
                    },
                ));
                None
            }
        },
    }
}

fn read_config(file: &RawFile, out: &mut Manifests, diagnostics: &mut Vec<Diagnostic>) {
    let Some(text) = file_text(file, diagnostics) else {
        return;
    };
    let node = match document::parse_toml(text) {
        Ok(node) => node,
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                Severity::Invalid,
                "parse",
                &file.path,
                e.loc,
                format!("invalid TOML: {}", e.message),
            ));
            return;
        }
    };
    let origin = Origin {
        file: Arc::from(file.path.as_str()),
        doc: Arc::new(node),
    };
    let json = origin.doc.to_json();
    let violations = schema::validate(SchemaKind::Config, &json);
    if !violations.is_empty() {
        push_schema_violations(&origin, violations, diagnostics);
        return;
    }
    if let Some(config) = typed::<RepoConfig>(&origin, "", json, diagnostics) {
        out.config = config;
        out.config_origin = Some(origin);
    }
}

fn read_file(file: &RawFile, restricted: bool, out: &mut Manifests, diagnostics: &mut Vec<Diagnostic>) {
    // SPEC §2: files without `apiVersion: gantry.dev/...` are ignored, whatever their size; only
    // under the configured `paths` is every file a manifest.
    if !restricted && matches!(file.content, RawContent::Foreign(_)) {
        return;
    }
    let Some(text) = file_text(file, diagnostics) else {
        return;
    };
    if !restricted && text.len() > FOREIGN_PARSE_LIMIT && !text.contains(API_MARKER) {
        return;
    }
    let is_toml = file.path.to_ascii_lowercase().ends_with(".toml");
    let parsed = if is_toml {
        document::parse_toml(text).map(|n| vec![n])
    } else {
        document::parse_yaml(text)
    };
    let docs = match parsed {
        Ok(docs) => docs,
        Err(e) => {
            // A broken file that is not ours (a CI workflow, say) must not fail gantry; one that
            // mentions our API, or sits under the configured manifest paths, must.
            let ours = restricted || text.contains(API_MARKER);
            let format = if is_toml { "TOML" } else { "YAML" };
            let severity = if ours { Severity::Invalid } else { Severity::Warning };
            let suffix = if ours {
                ""
            } else {
                " (skipped: it does not look like a gantry manifest)"
            };
            diagnostics.push(Diagnostic::new(
                severity,
                "parse",
                &file.path,
                e.loc,
                format!("invalid {format}: {}{suffix}", e.message),
            ));
            return;
        }
    };
    // A file is ours when it sits under the configured manifest paths or names our API; then a
    // document that is not a manifest is a mistake to report, not someone else's data to skip.
    let ours = restricted || text.contains(API_MARKER);
    for doc in docs {
        read_document(file, doc, ours, out, diagnostics);
    }
}

fn read_document(file: &RawFile, doc: Node, ours: bool, out: &mut Manifests, diagnostics: &mut Vec<Diagnostic>) {
    let shape = match &doc.value {
        NodeValue::Map(_) => None,
        NodeValue::Seq(_) => Some("a list"),
        NodeValue::Null => None,
        _ => Some("a single value"),
    };
    if let Some(shape) = shape {
        if ours {
            diagnostics.push(Diagnostic::new(
                Severity::Invalid,
                "schema",
                &file.path,
                doc.loc,
                format!(
                    "this document is {shape}, not a manifest; a manifest is a mapping with apiVersion, kind, metadata and spec (put each manifest in its own `---` document)"
                ),
            ));
        }
        return;
    }
    let Some(api_version) = doc.get("apiVersion").and_then(Node::as_str).map(str::to_string) else {
        if ours && doc.get("apiVersion").is_none() && (doc.get("kind").is_some() || doc.get("spec").is_some()) {
            diagnostics.push(Diagnostic::new(
                Severity::Invalid,
                "schema",
                &file.path,
                doc.loc,
                format!("this document has no apiVersion, so it would be ignored; add `apiVersion: {API_VERSION}`"),
            ));
        }
        return;
    };
    if !api_version.starts_with("gantry.dev/") {
        return;
    }
    let origin = Origin {
        file: Arc::from(file.path.as_str()),
        doc: Arc::new(doc),
    };
    if api_version != API_VERSION {
        diagnostics.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            "/apiVersion",
            format!("unsupported apiVersion `{api_version}` (this gantry reads {API_VERSION})"),
        ));
        return;
    }
    let kind_node = origin.doc.get("kind");
    let kind_text = kind_node.and_then(Node::as_str).unwrap_or("");
    let Some(kind) = Kind::from_str(kind_text) else {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        let names = names.join(", ");
        let message = match kind_node {
            None => format!("missing `kind`; add one of {names}"),
            Some(node) if node.as_str().is_none() => format!("`kind` must be one of {names}"),
            Some(_) => match Kind::ALL.iter().find(|k| k.as_str().eq_ignore_ascii_case(kind_text)) {
                Some(close) => format!("unknown kind `{kind_text}`; did you mean `{}`?", close.as_str()),
                None => format!("unknown kind `{kind_text}` (expected one of {names})"),
            },
        };
        diagnostics.push(origin.diagnostic(Severity::Invalid, "schema", "/kind", message));
        return;
    };
    let json = origin.doc.to_json();
    let violations = schema::validate(kind.schema(), &json);
    if !violations.is_empty() {
        push_schema_violations(&origin, violations, diagnostics);
        return;
    }
    let serde_json::Value::Object(mut top) = json else {
        return;
    };
    let metadata_json = top.remove("metadata").unwrap_or_default();
    let spec_json = top.remove("spec").unwrap_or_default();
    let Some(metadata) = typed::<Metadata>(&origin, "/metadata", metadata_json, diagnostics) else {
        return;
    };
    macro_rules! push {
        ($field:ident) => {
            if let Some(spec) = typed(&origin, "/spec", spec_json, diagnostics) {
                out.$field.push(Manifest {
                    name: metadata.name,
                    labels: metadata.labels,
                    spec,
                    origin,
                });
            }
        };
    }
    match kind {
        Kind::Component => push!(components),
        Kind::Release => push!(releases),
        Kind::Target => push!(targets),
        Kind::Policy => push!(policies),
        Kind::Window => push!(windows),
        Kind::Approval => push!(approvals),
    }
}

fn push_schema_violations(
    origin: &Origin,
    violations: Vec<schema::SchemaViolation>,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for v in violations {
        // Name the field, as people do: `spec.version: ...`. An unknown field names itself in
        // the message, so it is introduced by the object that holds it.
        let named = if v.message.starts_with("unknown field") {
            let parent = v.pointer.rsplit_once('/').map_or("", |(parent, _)| parent);
            schema::SchemaViolation {
                pointer: parent.to_string(),
                message: v.message.clone(),
            }
        } else {
            v.clone()
        };
        diagnostics.push(origin.diagnostic(Severity::Invalid, "schema", &v.pointer, named.to_string()));
    }
}

/// Deserializes a JSON value into a typed manifest part, pointing at the failing field.
fn typed<T: DeserializeOwned>(
    origin: &Origin,
    base: &str,
    json: serde_json::Value,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(json) {
        Ok(value) => Some(value),
        Err(e) => {
            let mut pointer = base.to_string();
            for segment in e.path().iter() {
                use serde_path_to_error::Segment;
                match segment {
                    Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                    Segment::Map { key } | Segment::Enum { variant: key } => {
                        pointer.push('/');
                        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    }
                    Segment::Unknown => {}
                }
            }
            let field = pointer_to_dotted(&pointer);
            let message = if field.is_empty() {
                e.inner().to_string()
            } else {
                format!("{field}: {}", e.inner())
            };
            diagnostics.push(origin.diagnostic(Severity::Invalid, "schema", &pointer, message));
            None
        }
    }
}

/// `/spec/migrations/0/id` → `spec.migrations[0].id`, the way users name fields.
pub fn pointer_to_dotted(pointer: &str) -> String {
    let mut out = String::new();
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

/// Groups manifests by name, keeping the first and reporting every later duplicate.
pub(crate) fn index_by_name<'a, S>(
    kind: Kind,
    items: &'a [Manifest<S>],
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<&'a str, &'a Manifest<S>> {
    let mut by_name: BTreeMap<&str, &Manifest<S>> = BTreeMap::new();
    for item in items {
        if let Some(first) = by_name.get(item.name.as_str()) {
            let first_loc = first.origin.loc("/metadata/name");
            diagnostics.push(item.origin.diagnostic(
                Severity::Violation,
                "duplicate",
                "/metadata/name",
                format!(
                    "duplicate {} name `{}` (first defined at {}:{}:{}); names are unique per kind",
                    kind.as_str(),
                    item.name,
                    first.origin.file,
                    first_loc.line,
                    first_loc.column
                ),
            ));
        } else {
            by_name.insert(&item.name, item);
        }
    }
    by_name
}
