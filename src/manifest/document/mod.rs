//! Located documents: YAML and TOML parsed into a value tree that remembers where every node came from.
//!
//! Every manifest is first read into a [`Node`] tree. The tree converts to JSON for schema checks
//! and typed deserialization, and answers "where is `/spec/version`?" so that every error, whether
//! it comes from the parser, the schema or a semantic check, can name a line and column.
//!
//! - [`yaml`]: serde-saphyr, the reference YAML parser; [`yaml_fast`]: the event-driven fast path
//!   that gives the same tree for plain manifests (or declines); [`yaml_lines`]: the line reader
//!   in front of it for the plainest YAML (or declines);
//! - [`toml_doc`]: `gantry.toml`; [`visitor`]: the serde visitor both formats share.

mod toml_doc;
mod visitor;
mod yaml;
mod yaml_fast;
mod yaml_lines;

pub use toml_doc::parse_toml;
pub use yaml::{parse_yaml, parse_yaml_serde};
pub use yaml_fast::{FastYaml, fast_yaml, fast_yaml_single};

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

/// How deep documents may nest: far above any real manifest, far below what exhausts the stack.
pub const MAX_DEPTH: usize = 64;

#[cfg(test)]
mod tests;
