//! TOML documents (`gantry.toml`) parsed into located [`Node`]s.

use super::visitor::float_value;
use super::yaml::friendly_limit_message;
use super::{LineIndex, Loc, MAX_DEPTH, Node, NodeValue, ParseError};

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
pub(super) fn toml_node(
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
