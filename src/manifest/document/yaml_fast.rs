//! The fast YAML path: documents built straight from the parser's events for the plain manifests
//! that make up nearly every repository, giving exactly what serde-saphyr gives or `None` (then
//! the reference parser runs).

use super::visitor::float_value;
use super::yaml::yaml_options;
use super::{Loc, Node, NodeValue};

/// The serde-saphyr options a [`fast_yaml`] run stands in for: how the parser is configured
/// (so that it accepts and rejects exactly the same input) and how plain scalars resolve.
pub struct FastYaml {
    parser: serde_saphyr::granit_parser::Options,
    /// YAML 1.2 booleans only (`true`/`false`), or also the YAML 1.1 words (`yes`, `off`...).
    pub(super) strict_booleans: bool,
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
pub(super) mod fast_limits {
    /// Input bytes; bounds scalar and comment bytes too (escapes expand at most 1.5×).
    pub const TEXT_BYTES: usize = 8 * 1024 * 1024;
    /// Parser events of the whole stream (serde-saphyr's default budget: 1,000,000).
    pub const EVENTS: usize = 500_000;
    /// Nodes (scalars, keys, collections) of the whole stream: serde-saphyr's default budget,
    /// which state records are read with, is 250,000 (ours: 2,000,000). Found by the line
    /// reader's fuzz test: a 250,010-item record was read here and refused by serde-saphyr.
    pub const NODES: usize = 200_000;
    /// Documents (ours: 10,000; the default: 1,024).
    pub const DOCUMENTS: usize = 1_000;
    /// Nested collections (ours and the default: 64).
    pub const DEPTH: usize = 48;
    /// Entries of one mapping (a 10,000-target rollout record has 10,000; the node budget
    /// bounds them anyway).
    pub const MAP_ENTRIES: usize = 100_000;
    /// Keys of one mapping checked for a duplicate as each is read, by a scan; a larger mapping
    /// is checked once, when it closes, by sorting its keys ([`super::distinct_keys`]), so the
    /// check stays O(n log n) (issue #17: capped at 256 entries instead, every rollout record of
    /// a larger rollout went to serde-saphyr, ten times slower).
    pub const SCANNED_KEYS: usize = 32;
}

/// Whether `name` may be the next key of a mapping holding `entries`: within the cap, and,
/// while the mapping is small, no key of it already. A larger mapping's keys are checked when it
/// closes ([`distinct_keys`]).
pub(super) fn key_fits(entries: &[(Node, Node)], name: &str) -> bool {
    entries.len() < fast_limits::MAP_ENTRIES
        && (entries.len() >= fast_limits::SCANNED_KEYS || !entries.iter().any(|(k, _)| k.as_str() == Some(name)))
}

/// At a mapping's close: whether its keys are distinct (those of a small mapping were checked as
/// they were read, by [`key_fits`]).
pub(super) fn distinct_keys(entries: &[(Node, Node)]) -> bool {
    if entries.len() <= fast_limits::SCANNED_KEYS {
        return true;
    }
    let mut keys: Vec<Option<&str>> = entries.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.windows(2).all(|pair| pair[0] != pair[1])
}

/// A collection being built.
pub(super) enum Open {
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

/// [`fast_yaml`]'s documents, and how many documents the stream had (null ones included): by
/// the line reader when the text is in its subset, else from the parser's events.
pub(super) fn fast_stream(text: &str, options: &FastYaml) -> Option<(Vec<Node>, usize)> {
    super::yaml_lines::line_stream(text, options.strict_booleans).or_else(|| event_stream(text, options))
}

/// [`fast_stream`] from the parser's events only (the line reader's reference in tests).
pub(super) fn event_stream(text: &str, options: &FastYaml) -> Option<(Vec<Node>, usize)> {
    use serde_saphyr::granit_parser::{Event, Parser};

    if text.len() > fast_limits::TEXT_BYTES {
        return None;
    }
    let mut docs = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let (mut events, mut documents, mut nodes) = (0usize, 0usize, 0usize);
    for item in Parser::new_from_str_with_options(text, options.parser.clone()) {
        let (event, span) = item.ok()?;
        events += 1;
        if events > fast_limits::EVENTS {
            return None;
        }
        if matches!(
            event,
            Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..)
        ) {
            nodes += 1;
            if nodes > fast_limits::NODES {
                return None;
            }
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
                Open::Map(loc, entries, None) if distinct_keys(&entries) => Node {
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
                    if name == "<<" || !key_fits(entries, name) {
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
pub(super) fn expects_key(stack: &[Open]) -> bool {
    matches!(stack.last(), Some(Open::Map(_, _, None)))
}

/// Resolves a scalar as serde-saphyr's `deserialize_any` does with our options (no tag; legacy
/// octal, leading-zero and underscore options off): plain `null`-likes, booleans, integers
/// (negative ones as `Int`, others as `UInt`), floats, else a string. Quoted and block
/// scalars are strings. `None` where serde-saphyr would fail or we would refuse the number.
pub(super) fn resolve_scalar(
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
pub(super) fn yaml_trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// The YAML 1.1 boolean words serde-saphyr accepts without `strict_booleans`.
pub(super) fn yaml11_bool(t: &str) -> Option<bool> {
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
pub(super) fn leading_zero_decimal(t: &str) -> bool {
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The magnitude of an unsigned integer literal (sign already removed): `0x`/`0o`/`0b` prefixes,
/// single `_` separators between digits, no redundant leading zero in decimal; as serde-saphyr's
/// `parse_int_signed`/`parse_int_unsigned` without legacy octal.
pub(super) fn parse_int(rest: &str) -> Option<u128> {
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
pub(super) fn parse_float(t: &str) -> Option<f64> {
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
