//! YAML through serde-saphyr: the reference parser, its limits, and its messages made readable.

use serde::de::{Deserialize, Deserializer};

use super::visitor::{IntoNode, ValueVisitor};
use super::yaml_fast::{FastYaml, fast_yaml};
use super::{Loc, MAX_DEPTH, Node, NodeValue, ParseError};

/// A YAML node as serde-saphyr delivers it.
pub(super) struct YamlNode(serde_saphyr::Spanned<YamlValue>);
pub(super) struct YamlValue(NodeValue);

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor::<YamlNode>(std::marker::PhantomData))
            .map(YamlValue)
    }
}
impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_saphyr::Spanned::<YamlValue>::deserialize(d).map(YamlNode)
    }
}
impl IntoNode for YamlNode {
    fn into_node(self) -> Node {
        let loc = self.0.referenced;
        Node {
            loc: Loc {
                line: loc.line() as u32,
                column: loc.column() as u32,
            },
            value: self.0.value.0,
        }
    }
}

/// The YAML parser's limits: far above any real manifest, far below what exhausts memory.
pub(super) fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 64;
    budget.max_aliases = 1_000;
    budget.max_nodes = 2_000_000;
    budget.max_total_scalar_bytes = 32 * 1024 * 1024;
    budget.max_documents = 10_000;
    options.budget = Some(budget);
    // An alias re-reads its anchor's events; a "billion laughs" document multiplies them. Real
    // manifests reuse a few small blocks, so a small replay budget refuses bombs in milliseconds.
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = 100_000;
    aliases.max_replay_stack_depth = 16;
    options.alias_limits = aliases;
    options.with_snippet = false;
    // YAML 1.1 booleans (`y`, `no`, `on`) silently change meaning; only true/false are booleans.
    options.strict_booleans = true;
    // `!include`, `!!python/object` and friends would otherwise be dropped silently, keeping
    // the tagged text as a plain value; say that gantry does not support them.
    options.reject_unsupported_tags = true;
    // Non-finite floats come back as errors we word ourselves (see `float_value`).
    options.non_finite_float_policy = serde_saphyr::options::NonFiniteFloatPolicy::PassThrough;
    options
}

/// Parses every document of a YAML stream. Empty documents are skipped.
///
/// Plain documents (no anchors, aliases, tags, merge keys or duplicate keys: nearly every
/// manifest) are built straight from the parser's events by [`fast_yaml`]; everything else, and
/// every error, goes through serde-saphyr, whose messages and limits are the reference.
///
/// # Errors
/// The first syntax error, duplicate key or exceeded limit, with its position.
pub fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
    match fast_yaml(text, &FastYaml::manifests()) {
        Some(docs) => Ok(docs),
        None => parse_yaml_serde(text),
    }
}

/// [`parse_yaml`] through serde-saphyr only: the reference the fast path must agree with (the
/// differential test compares the two on every fixture).
///
/// # Errors
/// As [`parse_yaml`].
#[doc(hidden)]
pub fn parse_yaml_serde(text: &str) -> Result<Vec<Node>, ParseError> {
    let docs: Vec<Option<YamlNode>> = serde_saphyr::from_multiple_with_options(text, yaml_options()).map_err(|e| {
        let loc = e.location().map_or(Loc { line: 1, column: 1 }, |l| Loc {
            line: l.line() as u32,
            column: l.column() as u32,
        });
        ParseError {
            loc,
            message: yaml_message(&e),
        }
    })?;
    Ok(docs.into_iter().flatten().map(IntoNode::into_node).collect())
}

pub(super) fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // serde-saphyr appends " at line X column Y"; we print the position ourselves.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    friendly_limit_message(text.lines().next().unwrap_or("invalid YAML").trim())
}

/// Rewords the parsers' resource-limit errors, which name internal budgets, for people.
pub(super) fn friendly_limit_message(text: &str) -> String {
    if text.contains("alias replay limit") || text.contains("Aliases {") || text.contains("alias expansion") {
        "aliases (`*name`) expand to too much data (an \"alias bomb\"?); write the values out instead of \
         repeating aliases"
            .into()
    } else if text.contains("Depth {")
        || text.contains("recursion limit")
        || text.contains("max recursion depth")
        || text.contains("nesting limit")
    {
        format!("values are nested more than {MAX_DEPTH} levels deep; flatten the document")
    } else if text.contains("recursive references") {
        "an alias refers to the node that contains it (`&a [*a]`), which would never end; remove the alias".into()
    } else if let Some(rest) = text.split("budget breached: ").nth(1) {
        let what = rest.split(' ').next().unwrap_or(rest).to_ascii_lowercase();
        format!("the file has too many {what} for one manifest file; split it into several files")
    } else {
        shorten(text)
    }
}

/// Cuts very long messages (a 400-digit number quoted back) to a readable length.
pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
