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
#[derive(Debug, Clone)]
pub struct Node {
    pub loc: Loc,
    pub value: NodeValue,
}

/// The shape of a parsed value. Maps keep their keys' locations and source order.
#[derive(Debug, Clone)]
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
    fn visit_f64<E>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
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

/// A TOML node: toml reports byte ranges, turned into lines and columns by [`LineIndex`].
struct TomlNode(toml::Spanned<TomlValue>);
struct TomlValue(NodeValue);

impl<'de> Deserialize<'de> for TomlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor::<TomlNode>(std::marker::PhantomData))
            .map(TomlValue)
    }
}
impl<'de> Deserialize<'de> for TomlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Spanned::<TomlValue>::deserialize(d).map(TomlNode)
    }
}
impl IntoNode for TomlNode {
    fn into_node(self) -> Node {
        // Byte offsets are stored in `loc` temporarily (line = 0 marks them) and resolved
        // to lines by `resolve_toml_offsets`, which has the source text.
        let start = self.0.span().start;
        Node {
            loc: Loc {
                line: 0,
                column: u32::try_from(start).unwrap_or(u32::MAX),
            },
            value: self.0.into_inner().0,
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

fn resolve_toml_offsets(node: &mut Node, index: &LineIndex) {
    if node.loc.line == 0 {
        node.loc = index.loc(node.loc.column as usize);
    }
    match &mut node.value {
        NodeValue::Seq(items) => items.iter_mut().for_each(|n| resolve_toml_offsets(n, index)),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            resolve_toml_offsets(k, index);
            resolve_toml_offsets(v, index);
        }),
        _ => {}
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
    options.with_snippet = false;
    // YAML 1.1 booleans (`y`, `no`, `on`) silently change meaning; only true/false are booleans.
    options.strict_booleans = true;
    options
}

/// Parses every document of a YAML stream. Empty documents are skipped.
///
/// # Errors
/// The first syntax error, duplicate key or exceeded limit, with its position.
pub fn parse_yaml(text: &str) -> Result<Vec<Node>, ParseError> {
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

fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // serde-saphyr appends " at line X column Y"; we print the position ourselves.
    let text = match text.find(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    text.lines().next().unwrap_or("invalid YAML").trim().to_string()
}

/// Parses a TOML document.
///
/// # Errors
/// The syntax error with its position.
pub fn parse_toml(text: &str) -> Result<Node, ParseError> {
    let index = LineIndex::new(text);
    let mut node = toml::from_str::<TomlNode>(text)
        .map_err(|e| ParseError {
            loc: e.span().map_or(Loc { line: 1, column: 1 }, |s| index.loc(s.start)),
            message: e.message().trim().to_string(),
        })?
        .into_node();
    resolve_toml_offsets(&mut node, &index);
    Ok(node)
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
