//! The serde visitor both parsers share: any self-describing format's values become located
//! [`Node`]s, numbers checked so that JSON and the manifest types can hold them.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Node, NodeValue};

/// Deserializes a [`NodeValue`] whose children are `C`, a format-specific spanned node.
pub(super) struct ValueVisitor<C>(pub(super) std::marker::PhantomData<C>);

/// A format's spanned wrapper that can be turned into a plain [`Node`].
pub(super) trait IntoNode {
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
pub(super) const LARGEST_INTEGER: f64 = 9.2e18;

/// A float as a node, refusing values JSON and the manifest types cannot hold faithfully.
pub(super) fn float_value(v: f64) -> Result<NodeValue, String> {
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
