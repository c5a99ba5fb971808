//! Located documents: YAML and TOML parsed into a value tree that remembers where every node came from.
//!
//! Every manifest is first read into a [`Node`] tree. The tree converts to JSON for schema checks
//! and typed deserialization, and answers "where is `/spec/version`?" so that every error, whether
//! it comes from the parser, the schema or a semantic check, can name a line and column.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A position in a source file, 1-based. `line == 0` means unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub const UNKNOWN: Loc = Loc { line: 0, column: 0 };
}

/// One value of a parsed document with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub value: NodeValue,
}

/// The shape of a parsed value. Maps keep their keys' locations and source order.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The node at a JSON pointer (`/spec/migrations/0/id`), if the tree has it.
    pub fn at_pointer(&self, pointer: &str) -> Option<&Node> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut node = self;
        for raw in pointer.strip_prefix('/')?.split('/') {
            let token = raw.replace("~1", "/").replace("~0", "~");
            node = match &node.value {
                NodeValue::Map(entries) => &entries.iter().find(|(k, _)| k.as_str() == Some(token.as_str()))?.1,
                NodeValue::Seq(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The location of the deepest node on the way to `pointer`: the exact node when it
    /// exists, else its closest existing parent (a missing field is reported at its map).
    pub fn loc_of(&self, pointer: &str) -> Loc {
        let mut best = self.loc;
        let mut prefix = String::new();
        for raw in pointer.split('/').skip(1) {
            prefix.push('/');
            prefix.push_str(raw);
            match self.at_pointer(&prefix) {
                Some(node) if node.loc.line > 0 => best = node.loc,
                Some(_) => {}
                None => break,
            }
        }
        best
    }

    /// The location of the key that introduces `pointer` (for "unknown field" errors).
    pub fn key_loc(&self, pointer: &str) -> Option<Loc> {
        let (parent, last) = pointer.rsplit_once('/')?;
        let token = last.replace("~1", "/").replace("~0", "~");
        match &self.at_pointer(parent)?.value {
            NodeValue::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(token.as_str()))
                .map(|(k, _)| k.loc),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a key of a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Converts to JSON. Map keys that are not strings are rendered as their scalar text, which
    /// the schemas then reject as unknown properties.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::UInt(u) => Value::from(*u),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.scalar_text(), v.to_json())).collect())
            }
        }
    }

    fn scalar_text(&self) -> String {
        match &self.value {
            NodeValue::String(s) => s.clone(),
            NodeValue::Null => "null".into(),
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Int(i) => i.to_string(),
            NodeValue::UInt(u) => u.to_string(),
            NodeValue::Float(f) => f.to_string(),
            NodeValue::Seq(_) | NodeValue::Map(_) => "<complex key>".into(),
        }
    }
}

/// Deserializes a [`NodeValue`] whose children are `C`, a format-specific spanned node.
struct ValueVisitor<C>(std::marker::PhantomData<C>);

/// A format's spanned wrapper that can be turned into a plain [`Node`].
trait IntoNode {
    fn into_node(self) -> Node;
}

impl<'de, C: Deserialize<'de> + IntoNode> Visitor<'de> for ValueVisitor<C> {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        i64::try_from(v)
            .map(NodeValue::Int)
            .map_err(|_| E::custom(format!("integer {v} is too large (at most 64 bits)")))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        u64::try_from(v)
            .map(NodeValue::UInt)
            .map_err(|_| E::custom(format!("integer {v} is too large (at most 64 bits)")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        float_value(v).map_err(E::custom)
    }
    fn visit_str<E>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<NodeValue, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<C>()? {
            items.push(item.into_node());
        }
        Ok(NodeValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some((k, v)) = map.next_entry::<C, C>()? {
            let key = k.into_node();
            // TOML rejects duplicates itself; YAML is configured to. This guards any other path.
            if let Some(name) = key.as_str()
                && entries.iter().any(|(existing, _)| existing.as_str() == Some(name))
            {
                return Err(de::Error::custom(format!("duplicate key `{name}`")));
            }
            entries.push((key, v.into_node()));
        }
        Ok(NodeValue::Map(entries))
    }
}

/// The largest magnitude at which every integer is still exact in 64 bits; YAML parsers hand
/// integer literals beyond it over as floats, silently rounding them.
const LARGEST_INTEGER: f64 = 9.2e18;

/// A float as a node, refusing values JSON and the manifest types cannot hold faithfully.
fn float_value(v: f64) -> Result<NodeValue, String> {
    if !v.is_finite() {
        return Err("this number is not finite (NaN, infinity, or too large for a 64-bit float); write a number such as 10 or 0.5".into());
    }
    if v.fract() == 0.0 && v.abs() >= LARGEST_INTEGER {
        return Err(format!(
            "the number {v:e} is beyond the 64-bit integer range (about ±9.2e18); write a smaller number, or quote it to keep it as text"
        ));
    }
    Ok(NodeValue::Float(v))
}

/// A YAML node as serde-saphyr delivers it.
struct YamlNode(serde_saphyr::Spanned<YamlValue>);
struct YamlValue(NodeValue);

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

/// Maps byte offsets to 1-based line and column (in characters).
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    pub fn loc(&self, offset: usize) -> Loc {
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Loc {
            line: line as u32,
            column: column as u32,
        }
    }
}

/// A parse failure with its position.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub loc: Loc,
    pub message: String,
}

/// The YAML parser's limits: far above any real manifest, far below what exhausts memory.
fn yaml_options() -> serde_saphyr::Options {
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

/// The serde-saphyr options a [`fast_yaml`] run stands in for: how the parser is configured
/// (so that it accepts and rejects exactly the same input) and how plain scalars resolve.
pub struct FastYaml {
    parser: serde_saphyr::granit_parser::Options,
    /// YAML 1.2 booleans only (`true`/`false`), or also the YAML 1.1 words (`yes`, `off`...).
    strict_booleans: bool,
}

impl FastYaml {
    /// Mirrors [`yaml_options`], for manifests.
    pub fn manifests() -> FastYaml {
        FastYaml::for_options(&yaml_options())
    }

    /// Mirrors `serde_saphyr::from_str`'s defaults, for state records.
    pub fn defaults() -> FastYaml {
        FastYaml::for_options(&serde_saphyr::Options::default())
    }

    /// The parser options serde-saphyr derives from `options` (its `Options::parser_options`).
    fn for_options(options: &serde_saphyr::Options) -> FastYaml {
        let budget = options.budget.clone().unwrap_or_default();
        let defaults = serde_saphyr::granit_parser::Options::default();
        let mut parser = defaults.clone();
        parser.simple_key_max_lookahead = budget.simple_key_max_lookahead;
        parser.flow_nesting_limit = budget.flow_nesting_limit;
        parser.block_nesting_limit = defaults.block_nesting_limit.max(budget.max_depth.saturating_add(1));
        parser.emit_comments = options.emit_comments;
        parser.max_buffered_comment_events = budget.max_buffered_comment_events;
        parser.strict_indentation = options.strict_indentation;
        FastYaml {
            parser,
            strict_booleans: options.strict_booleans,
        }
    }
}

/// Limits of the fast path, well inside serde-saphyr's budgets (ours and its defaults), so that
/// a document near any limit is left to serde-saphyr, which enforces and words them.
mod fast_limits {
    /// Input bytes; bounds scalar and comment bytes too (escapes expand at most 1.5×).
    pub const TEXT_BYTES: usize = 8 * 1024 * 1024;
    /// Parser events of the whole stream (serde-saphyr's default budget: 1,000,000).
    pub const EVENTS: usize = 500_000;
    /// Documents (ours: 10,000; the default: 1,024).
    pub const DOCUMENTS: usize = 1_000;
    /// Nested collections (ours and the default: 64).
    pub const DEPTH: usize = 48;
    /// Entries of one mapping, so that the duplicate-key check stays cheap.
    pub const MAP_ENTRIES: usize = 256;
}

/// A collection being built.
enum Open {
    Seq(Loc, Vec<Node>),
    /// Entries, and the key waiting for its value.
    Map(Loc, Vec<(Node, Node)>, Option<Node>),
}

/// Builds the documents of a YAML stream straight from granit-parser's events, skipping
/// serde's `Spanned` machinery (~30 µs per small document).
///
/// Returns `None` whenever the result could differ from serde-saphyr's in any way: on any parser
/// error, anchor, alias, tag, `%YAML` directive, merge key (`<<`), duplicate or non-string key,
/// a number [`float_value`] refuses, or input near a limit. The caller then parses with
/// serde-saphyr, so errors, messages and protections are exactly serde-saphyr's.
///
/// Locations are those of the node's first event, as `Spanned::referenced` reports them
/// (line, character column + 1); scalars resolve as serde-saphyr's `deserialize_any` does.
pub fn fast_yaml(text: &str, options: &FastYaml) -> Option<Vec<Node>> {
    fast_stream(text, options).map(|(docs, _)| docs)
}

/// The one document of a single-document stream, as `serde_saphyr::from_str` reads it: `None`
/// (fall back) for anything [`fast_yaml`] leaves to serde-saphyr, and for streams of no document,
/// of several documents (even empty ones), or whose document is null.
pub fn fast_yaml_single(text: &str, options: &FastYaml) -> Option<Node> {
    match fast_stream(text, options)? {
        (mut docs, 1) if docs.len() == 1 => docs.pop(),
        _ => None,
    }
}

/// [`fast_yaml`]'s documents, and how many documents the stream had (null ones included).
fn fast_stream(text: &str, options: &FastYaml) -> Option<(Vec<Node>, usize)> {
    use serde_saphyr::granit_parser::{Event, Parser};

    if text.len() > fast_limits::TEXT_BYTES {
        return None;
    }
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let (mut events, mut documents) = (0usize, 0usize);
    for item in Parser::new_from_str_with_options(text, options.parser.clone()) {
        let (event, span) = item.ok()?;
        events += 1;
        if events > fast_limits::EVENTS {
            return None;
        }
        let loc = Loc {
            line: u32::try_from(span.start.line()).ok()?,
            column: u32::try_from(span.start.col() + 1).ok()?,
        };
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::Comment(..) => continue,
            Event::DocumentStart(_, version) => {
                documents += 1;
                if version.is_some() || documents > fast_limits::DOCUMENTS || !stack.is_empty() {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                Node {
                    loc,
                    value: resolve_scalar(value, style, options.strict_booleans)?,
                }
            }
            Event::SequenceStart(_, anchor, tag) | Event::MappingStart(_, anchor, tag)
                if anchor != 0 || tag.is_some() || stack.len() >= fast_limits::DEPTH || expects_key(&stack) =>
            {
                return None;
            }
            Event::SequenceStart(..) => {
                stack.push(Open::Seq(loc, Vec::new()));
                continue;
            }
            Event::MappingStart(..) => {
                stack.push(Open::Map(loc, Vec::new(), None));
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Open::Seq(loc, items) => Node {
                    loc,
                    value: NodeValue::Seq(items),
                },
                Open::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Open::Map(loc, entries, None) => Node {
                    loc,
                    value: NodeValue::Map(entries),
                },
                _ => return None,
            },
            // Aliases, anchors' metadata, anything new.
            _ => return None,
        };
        match stack.last_mut() {
            // A document's root; a null one (empty document) is skipped, as serde-saphyr does.
            None => {
                if node.value != NodeValue::Null {
                    docs.push(node);
                }
            }
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, pending)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let name = node.as_str()?;
                    if name == "<<"
                        || entries.len() >= fast_limits::MAP_ENTRIES
                        || entries.iter().any(|(k, _)| k.as_str() == Some(name))
                    {
                        return None;
                    }
                    *pending = Some(node);
                }
            },
        }
    }
    stack.is_empty().then_some((docs, documents))
}

/// Whether the next node would be a mapping key (a collection there is a complex key).
fn expects_key(stack: &[Open]) -> bool {
    matches!(stack.last(), Some(Open::Map(_, _, None)))
}

/// Resolves a scalar as serde-saphyr's `deserialize_any` does with our options (no tag; legacy
/// octal, leading-zero and underscore options off): plain `null`-likes, booleans, integers
/// (negative ones as `Int`, others as `UInt`), floats, else a string. Quoted and block
/// scalars are strings. `None` where serde-saphyr would fail or we would refuse the number.
fn resolve_scalar(
    value: std::borrow::Cow<'_, str>,
    style: serde_saphyr::granit_parser::ScalarStyle,
    strict_booleans: bool,
) -> Option<NodeValue> {
    use serde_saphyr::granit_parser::ScalarStyle;
    if style != ScalarStyle::Plain {
        return Some(NodeValue::String(value.into_owned()));
    }
    if matches!(&*value, "" | "~" | "null" | "Null" | "NULL") {
        return Some(NodeValue::Null);
    }
    let t = yaml_trim(&value);
    let boolean = match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ if strict_booleans => None,
        _ => yaml11_bool(t),
    };
    if let Some(b) = boolean {
        return Some(NodeValue::Bool(b));
    }
    // Only text starting like a number can be one: skip the number parsers for words.
    let first = t.as_bytes().first().copied().unwrap_or(b' ');
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Some(NodeValue::String(value.into_owned()));
    }
    if let Some(rest) = t.strip_prefix('-') {
        if !leading_zero_decimal(t)
            && let Some(i) = parse_int(rest).and_then(|mag| i64::try_from(-i128::try_from(mag).ok()?).ok())
        {
            return Some(NodeValue::Int(i));
        }
    } else if let Some(u) = parse_int(t.strip_prefix('+').unwrap_or(t)).and_then(|mag| u64::try_from(mag).ok()) {
        return Some(NodeValue::UInt(u));
    }
    if let Some(f) = parse_float(t) {
        return float_value(f).ok();
    }
    Some(NodeValue::String(value.into_owned()))
}

/// serde-saphyr's `yaml_trim`: the ASCII padding its scalar conversions ignore.
fn yaml_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// The YAML 1.1 boolean words serde-saphyr accepts without `strict_booleans`.
fn yaml11_bool(t: &str) -> Option<bool> {
    let is = |words: &[&str]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
    if is(&["true", "yes", "y", "on"]) {
        Some(true)
    } else if is(&["false", "no", "n", "off"]) {
        Some(false)
    } else {
        None
    }
}

/// `0127`, `+0127`, `-0127`: a decimal integer with a redundant leading zero.
fn leading_zero_decimal(t: &str) -> bool {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The magnitude of an unsigned integer literal (sign already removed): `0x`/`0o`/`0b` prefixes,
/// single `_` separators between digits, no redundant leading zero in decimal; as serde-saphyr's
/// `parse_int_signed`/`parse_int_unsigned` without legacy octal.
fn parse_int(rest: &str) -> Option<u128> {
    let prefixed = |p: [&str; 2]| rest.strip_prefix(p[0]).or_else(|| rest.strip_prefix(p[1]));
    let (radix, digits) = if let Some(d) = prefixed(["0x", "0X"]) {
        (16, d)
    } else if let Some(d) = prefixed(["0o", "0O"]) {
        (8, d)
    } else if let Some(d) = prefixed(["0b", "0B"]) {
        (2, d)
    } else {
        if rest.starts_with('0') && rest != "0" {
            return None;
        }
        (10, rest)
    };
    let bytes = digits.as_bytes();
    let mut value: u128 = 0;
    let mut saw_digit = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            if i == 0 || bytes[i - 1] == b'_' || bytes.get(i + 1).is_none_or(|&n| n == b'_') {
                return None;
            }
            continue;
        }
        let digit = (b as char).to_digit(radix)?;
        value = value.checked_mul(u128::from(radix))?.checked_add(u128::from(digit))?;
        saw_digit = true;
    }
    saw_digit.then_some(value)
}

/// A float as serde-saphyr's `try_parse_float_incl_overflow` reads one: the YAML 1.2 `.inf` and
/// `.nan` spellings, Rust's float syntax when finite, and numeral-shaped literals that overflow.
fn parse_float(t: &str) -> Option<f64> {
    let (negative, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    match unsigned {
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        ".inf" | ".Inf" | ".INF" => return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY }),
        _ => {}
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        Ok(v) if v.is_infinite() && unsigned.as_bytes().first().is_some_and(u8::is_ascii_digit) => Some(v),
        _ => None,
    }
}
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // serde-saphyr appends " at line X column Y"; we print the position ourselves.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    friendly_limit_message(text.lines().next().unwrap_or("invalid YAML").trim())
}

/// Rewords the parsers' resource-limit errors, which name internal budgets, for people.
fn friendly_limit_message(text: &str) -> String {
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
fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// How deep documents may nest: far above any real manifest, far below what exhausts the stack.
pub const MAX_DEPTH: usize = 64;

/// Parses a TOML document.
///
/// Datetimes (`released = 2026-02-03`, `start = 02:00`) become strings in their TOML spelling,
/// which is how YAML and JSON carry them; the schema then checks their shape.
///
/// # Errors
/// The syntax error with its position, or a value gantry cannot hold (an integer beyond 64 bits,
/// nesting deeper than [`MAX_DEPTH`]).
pub fn parse_toml(text: &str) -> Result<Node, ParseError> {
    let index = LineIndex::new(text);
    let table = toml::de::DeTable::parse(text).map_err(|e| {
        let message = e.message().trim();
        // toml says only "duplicate key"; name it.
        let key = e
            .span()
            .and_then(|s| text.get(s))
            .filter(|k| !k.is_empty() && k.len() <= 100);
        let message = match key {
            Some(key) if message == "duplicate key" => format!("duplicate key `{key}`"),
            _ => friendly_limit_message(message),
        };
        ParseError {
            loc: e.span().map_or(Loc { line: 1, column: 1 }, |s| index.loc(s.start)),
            message,
        }
    })?;
    let span = table.span();
    toml_node(toml::de::DeValue::Table(table.into_inner()), span, &index, 0)
}

/// Converts one parsed TOML value, with its byte span, into a located [`Node`].
fn toml_node(
    value: toml::de::DeValue<'_>,
    span: std::ops::Range<usize>,
    index: &LineIndex,
    depth: usize,
) -> Result<Node, ParseError> {
    use toml::de::DeValue;
    let loc = index.loc(span.start);
    let error = |message: String| ParseError { loc, message };
    if depth > MAX_DEPTH {
        return Err(error(format!(
            "values are nested more than {MAX_DEPTH} levels deep; flatten the document"
        )));
    }
    let value = match value {
        DeValue::String(s) => NodeValue::String(s.into_owned()),
        DeValue::Boolean(b) => NodeValue::Bool(b),
        DeValue::Datetime(dt) => NodeValue::String(dt.to_string()),
        DeValue::Integer(int) => {
            let digits = int.as_str();
            if let Ok(i) = i64::from_str_radix(digits, int.radix()) {
                NodeValue::Int(i)
            } else if let Ok(u) = u64::from_str_radix(digits, int.radix()) {
                NodeValue::UInt(u)
            } else {
                return Err(error(format!("integer {int} is too large (at most 64 bits)")));
            }
        }
        DeValue::Float(float) => match float.as_str().replace('_', "").parse::<f64>() {
            Ok(f) => float_value(f).map_err(error)?,
            Err(_) => return Err(error(format!("`{float}` is not a number gantry can read"))),
        },
        DeValue::Array(items) => NodeValue::Seq(
            items
                .into_iter()
                .map(|item| {
                    let span = item.span();
                    toml_node(item.into_inner(), span, index, depth + 1)
                })
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(table) => {
            let mut entries = table
                .into_iter()
                .map(|(key, item)| {
                    let key_node = Node {
                        loc: index.loc(key.span().start),
                        value: NodeValue::String(key.into_inner().into_owned()),
                    };
                    let span = item.span();
                    Ok((key_node, toml_node(item.into_inner(), span, index, depth + 1)?))
                })
                .collect::<Result<Vec<_>, ParseError>>()?;
            // toml's map is sorted by key; source order reads better and matches YAML.
            entries.sort_by_key(|(key, _)| key.loc);
            NodeValue::Map(entries)
        }
    };
    Ok(Node { loc, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nodes_know_their_lines() {
        let docs = parse_yaml("a: 1\nb:\n  c: [x, y]\n---\nd: true\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].loc_of("/b/c/1"), Loc { line: 3, column: 10 });
        assert_eq!(docs[0].key_loc("/b/c"), Some(Loc { line: 3, column: 3 }));
        assert_eq!(docs[1].loc_of("/d"), Loc { line: 5, column: 4 });
        assert_eq!(docs[0].to_json(), serde_json::json!({"a": 1, "b": {"c": ["x", "y"]}}));
    }

    #[test]
    fn missing_pointer_falls_back_to_parent() {
        let docs = parse_yaml("spec:\n  x: 1\n").unwrap();
        assert_eq!(docs[0].loc_of("/spec/missing"), Loc { line: 2, column: 3 });
    }

    #[test]
    fn yaml_duplicate_keys_are_errors() {
        let err = parse_yaml("a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{}", err.message);
        assert_eq!(err.loc.line, 2);
    }

    #[test]
    fn toml_nodes_know_their_lines() {
        let node = parse_toml("a = 1\n[b]\nc = \"x\"\n").unwrap();
        assert_eq!(node.loc_of("/b/c"), Loc { line: 3, column: 5 });
        assert_eq!(node.to_json(), serde_json::json!({"a": 1, "b": {"c": "x"}}));
    }

    /// Regression: `released = 2026-02-03` in a TOML Release failed with "invalid type: string
    /// \"$__toml_private_datetime\", expected a spanned value" (toml's private datetime map).
    #[test]
    fn toml_datetimes_become_strings() {
        let cases = [
            ("d = 2026-02-03", "2026-02-03"),
            ("d = 2026-02-03T10:00:00Z", "2026-02-03T10:00:00Z"),
            ("d = 2026-02-03T10:00:00+01:00", "2026-02-03T10:00:00+01:00"),
            ("d = 2026-11-27T00:00", "2026-11-27T00:00"),
            ("d = 02:00", "02:00"),
            ("d = 02:00:30", "02:00:30"),
        ];
        for (text, want) in cases {
            let node = parse_toml(text).unwrap_or_else(|e| panic!("{text}: {}", e.message));
            assert_eq!(node.to_json(), serde_json::json!({ "d": want }), "{text}");
            assert_eq!(node.loc_of("/d"), Loc { line: 1, column: 5 }, "{text}");
        }
        let node = parse_toml("[spec]\ndates = [2026-12-24, 2026-12-25]\n").unwrap();
        assert_eq!(node.loc_of("/spec/dates/1"), Loc { line: 2, column: 22 });
        assert_eq!(node.key_loc("/spec/dates"), Some(Loc { line: 2, column: 1 }));
    }

    #[test]
    fn toml_numbers_and_limits() {
        let node = parse_toml("a = 0x10\nb = 1_000\nc = 18446744073709551615\nd = 1.5e3\ne = -7\n").unwrap();
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": 16, "b": 1000, "c": 18446744073709551615u64, "d": 1500.0, "e": -7})
        );
        let err = parse_toml("a = 1\nb = 18446744073709551616\n").unwrap_err();
        assert_eq!(err.loc, Loc { line: 2, column: 5 });
        assert!(err.message.contains("too large"), "{}", err.message);
        for depth in [70, 200, 100_000] {
            let deep = format!("a = {}{}", "[".repeat(depth), "]".repeat(depth));
            let err = parse_toml(&deep).unwrap_err();
            // Our limit, or toml's own recursion guard below it.
            assert!(
                err.message.contains("nested more than") || err.message.contains("max recursion depth"),
                "{depth}: {}",
                err.message
            );
        }
        let err = parse_toml("a = 1\na = 2\n").unwrap_err();
        assert_eq!(err.loc.line, 2, "{}", err.message);
    }

    #[test]
    fn toml_keeps_source_order() {
        let node = parse_toml("z = 1\na = 2\n").unwrap();
        let NodeValue::Map(entries) = &node.value else {
            panic!("not a map")
        };
        let keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a"]);
    }

    #[test]
    fn toml_errors_have_lines() {
        let err = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(err.loc.line, 2);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(parse_yaml(&text).is_err());
    }
}
