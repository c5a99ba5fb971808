//! The line reader: the plainest YAML (what gantry's generated and hand-written manifests and
//! its own state records nearly always are) read line by line, several times faster than the
//! parser's events (issue #17: YAML was a third of a cold `plan`'s instructions).
//!
//! It reads a deliberately small subset and declines (`None`) everything else, whereupon the
//! event reader ([`super::yaml_fast`]) and then serde-saphyr run as before; so it can only ever
//! answer for text it understands completely, and its answer must be the event reader's (the
//! differential tests in `tests/yaml_fast_path.rs` compare both with serde-saphyr on every
//! fixture, and this module's tests compare it with the event reader on mutated fixtures).
//!
//! The subset: printable ASCII and newlines only (no tab, CR, control or non-ASCII byte);
//! `---` lines between documents (no other marker or directive); whole-line comments; block
//! mappings whose keys are plain words (`[A-Za-z0-9_][A-Za-z0-9_./-]*` resolving to a string)
//! followed by `: value` or by a nested block on the next lines; block sequences of `- value`
//! or `- key: value` (a compact mapping); values that are one-line plain scalars without
//! indicators, one-line quoted scalars without escapes, or one-line flow collections of those
//! (a flow mapping's key may also be such a quoted scalar followed by `: `, as JSON writes keys).
//! Never read: null values written as nothing, trailing comments, anchors, aliases, tags,
//! block scalars, multi-line scalars or flows, duplicate keys, and anything near a limit.

use super::yaml_fast::{distinct_keys, fast_limits, key_fits, resolve_scalar};
use super::{Loc, Node, NodeValue};

/// The longest key read (YAML's implicit keys are limited to 1024 characters).
const MAX_KEY: usize = 200;

/// One line with content: its number, indentation and the text after the indentation.
#[derive(Clone, Copy)]
struct Line<'t> {
    no: u32,
    indent: usize,
    body: &'t str,
}

/// [`super::yaml_fast::fast_stream`]'s answer (documents, and how many the stream had) for
/// text in the subset, else `None`.
pub(super) fn line_stream(text: &str, strict_booleans: bool) -> Option<(Vec<Node>, usize)> {
    if text.len() > fast_limits::TEXT_BYTES || !text.bytes().all(|b| b == b'\n' || (b' '..=b'~').contains(&b)) {
        return None;
    }
    // Documents as runs of content lines: the run before the first `---` (a document only when
    // it has content), then one per `---`.
    let mut segments: Vec<Vec<Line<'_>>> = vec![Vec::new()];
    let (mut explicit, mut content) = (0usize, 0usize);
    for (i, raw) in text.split('\n').enumerate() {
        let body = raw.trim_start_matches(' ');
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let no = u32::try_from(i + 1).ok()?;
        if raw == "---" {
            explicit += 1;
            segments.push(Vec::new());
            continue;
        }
        let indent = raw.len() - body.len();
        if indent == 0 && (body.starts_with("---") || body.starts_with("...") || body.starts_with('%')) {
            return None;
        }
        // Every content line is at least one event: more lines than events are declined
        // before they are all collected (8 MiB of one-letter lines: 130 MB of `Line`s).
        content += 1;
        if content > fast_limits::EVENTS {
            return None;
        }
        segments.last_mut()?.push(Line { no, indent, body });
    }
    let implicit = !segments[0].is_empty();
    let documents = explicit + usize::from(implicit);
    if documents > fast_limits::DOCUMENTS {
        return None;
    }
    let mut reader = Reader {
        lines: Vec::new(),
        pos: 0,
        events: 2 + 2 * documents,
        nodes: 0,
        depth: 0,
        strict_booleans,
    };
    let mut docs = Vec::new();
    for lines in segments.into_iter().skip(usize::from(!implicit)) {
        let Some(first) = lines.first().copied() else {
            continue; // an empty document: null, skipped as serde-saphyr does
        };
        reader.lines = lines;
        reader.pos = 0;
        let root = reader.block(first.indent)?;
        if reader.pos != reader.lines.len() {
            return None;
        }
        docs.push(root);
    }
    Some((docs, documents))
}

struct Reader<'t> {
    /// The current document's lines; a line may be replaced by its rest after `- `.
    lines: Vec<Line<'t>>,
    pos: usize,
    /// Parser events so far, counted as the event reader counts them.
    events: usize,
    /// Nodes so far (scalars, keys and collections).
    nodes: usize,
    /// Collections open.
    depth: usize,
    strict_booleans: bool,
}

impl<'t> Reader<'t> {
    fn event(&mut self) -> Option<()> {
        self.events += 1;
        (self.events <= fast_limits::EVENTS).then_some(())
    }

    /// The event of a node (a scalar, key or collection), counted as serde-saphyr's budget does.
    fn node(&mut self) -> Option<()> {
        self.nodes += 1;
        (self.nodes <= fast_limits::NODES).then_some(())?;
        self.event()
    }

    fn open(&mut self) -> Option<()> {
        if self.depth >= fast_limits::DEPTH {
            return None;
        }
        self.depth += 1;
        self.node()
    }

    fn close(&mut self) -> Option<()> {
        self.depth -= 1;
        self.event()
    }

    /// The block collection starting at the current line, indented by `indent`.
    fn block(&mut self, indent: usize) -> Option<Node> {
        let line = *self.lines.get(self.pos)?;
        if line.indent != indent {
            return None;
        }
        if is_item(line.body) {
            self.sequence(indent, false)
        } else {
            self.mapping(indent)
        }
    }

    fn mapping(&mut self, indent: usize) -> Option<Node> {
        let first = self.lines[self.pos];
        let loc = Loc {
            line: first.no,
            column: column(indent)?,
        };
        self.open()?;
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(&line) = self.lines.get(self.pos) {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_item(line.body) {
                return None;
            }
            let (name, rest) = split_key(line.body)?;
            let key_loc = Loc {
                line: line.no,
                column: column(indent)?,
            };
            let key = resolve_scalar(name.into(), plain(), self.strict_booleans)?;
            if !matches!(key, NodeValue::String(_)) || !key_fits(&entries, name) {
                return None;
            }
            self.node()?;
            let value_text = rest.trim_start_matches(' ');
            let value = if value_text.is_empty() {
                // The value is the block on the next lines: deeper, or a sequence at this
                // indentation. Nothing there is a null, which is left to the event reader.
                self.pos += 1;
                let next = *self.lines.get(self.pos)?;
                if next.indent > indent {
                    self.block(next.indent)?
                } else if next.indent == indent && is_item(next.body) {
                    self.sequence(indent, true)?
                } else {
                    return None;
                }
            } else {
                let at = line.body.len() - value_text.len();
                let value = self.inline(line.no, indent + at, value_text)?;
                self.pos += 1;
                self.next_not_deeper(indent)?;
                value
            };
            entries.push((
                Node {
                    loc: key_loc,
                    value: key,
                },
                value,
            ));
        }
        self.close()?;
        distinct_keys(&entries).then_some(Node {
            loc,
            value: NodeValue::Map(entries),
        })
    }

    /// The block sequence at the current line, its dashes indented by `indent`. An indentless
    /// one (a mapping value at the mapping's own indentation) starts, as the parser reports it,
    /// at its first item rather than at the dash.
    fn sequence(&mut self, indent: usize, indentless: bool) -> Option<Node> {
        let first = self.lines[self.pos];
        let first_item = first.body[1..].trim_start_matches(' ');
        let start = if indentless {
            indent + first.body.len() - first_item.len()
        } else {
            indent
        };
        let loc = Loc {
            line: first.no,
            column: column(start)?,
        };
        self.open()?;
        let mut items = Vec::new();
        while let Some(&line) = self.lines.get(self.pos) {
            if line.indent < indent || (line.indent == indent && !is_item(line.body)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let rest = line.body[1..].trim_start_matches(' ');
            let at = indent + line.body.len() - rest.len();
            if rest.is_empty() || is_item(rest) {
                return None;
            }
            if split_key(rest).is_some() {
                // `- key: value`: a mapping whose keys line up after the dash.
                self.lines[self.pos] = Line {
                    no: line.no,
                    indent: at,
                    body: rest,
                };
                items.push(self.mapping(at)?);
            } else {
                items.push(self.inline(line.no, at, rest)?);
                self.pos += 1;
                self.next_not_deeper(indent)?;
            }
        }
        self.close()?;
        Some(Node {
            loc,
            value: NodeValue::Seq(items),
        })
    }

    /// After a one-line value at `indent`: a deeper next line would continue it.
    fn next_not_deeper(&self, indent: usize) -> Option<()> {
        match self.lines.get(self.pos) {
            Some(next) if next.indent > indent => None,
            _ => Some(()),
        }
    }

    /// A one-line value starting at 0-based column `at` of line `no`: nothing but spaces may
    /// follow it.
    fn inline(&mut self, no: u32, at: usize, text: &str) -> Option<Node> {
        let bytes = text.as_bytes();
        let node = match bytes[0] {
            b'[' | b'{' => {
                let mut flow = Flow {
                    text,
                    bytes,
                    pos: 0,
                    no,
                    at,
                };
                let node = flow.node(self)?;
                if !text[flow.pos..].bytes().all(|b| b == b' ') {
                    return None;
                }
                node
            }
            b'"' | b'\'' => {
                let (node, end) = quoted(no, at, text)?;
                if !text[end..].bytes().all(|b| b == b' ') {
                    return None;
                }
                self.node()?;
                node
            }
            _ => {
                let value = text.trim_end_matches(' ');
                if !plain_ok(value, false) {
                    return None;
                }
                self.node()?;
                self.scalar(no, at, value)?
            }
        };
        Some(node)
    }

    fn scalar(&self, no: u32, at: usize, value: &str) -> Option<Node> {
        Some(Node {
            loc: Loc {
                line: no,
                column: column(at)?,
            },
            value: resolve_scalar(value.into(), plain(), self.strict_booleans)?,
        })
    }
}

/// A one-line flow collection being read.
struct Flow<'b> {
    /// The line from the collection's opening bracket on (ASCII: every byte is a character).
    text: &'b str,
    bytes: &'b [u8],
    pos: usize,
    no: u32,
    /// The 0-based column of `bytes[0]`.
    at: usize,
}

impl<'b> Flow<'b> {
    fn skip_spaces(&mut self) {
        while self.bytes.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn loc(&self) -> Option<Loc> {
        Some(Loc {
            line: self.no,
            column: column(self.at + self.pos)?,
        })
    }

    fn text(&self) -> &'b str {
        // Slicing, not `from_utf8` (which re-validated the rest of the line for every item of a
        // flow: quadratic in the line's length, seconds for one long line).
        self.text.get(self.pos..).unwrap_or("")
    }

    /// The key of a flow mapping's entry at the cursor, and its length in bytes (the `:` comes
    /// just after it): a plain word, or a one-line quoted scalar without escapes, which is how
    /// JSON writes keys (a state record's `config`). Either way the key is a string.
    fn flow_key(&self, strict_booleans: bool) -> Option<(Node, usize)> {
        let text = self.text();
        if matches!(text.as_bytes().first(), Some(b'"' | b'\'')) {
            let (key, len) = quoted(self.no, self.at + self.pos, text)?;
            return (len - 2 <= MAX_KEY).then_some((key, len));
        }
        let loc = self.loc()?;
        let (name, _) = split_key(text)?;
        let value = resolve_scalar(name.into(), plain(), strict_booleans)?;
        matches!(value, NodeValue::String(_)).then_some((Node { loc, value }, name.len()))
    }

    /// A node inside a flow collection (or the collection itself): a collection, a quoted
    /// scalar or a plain one.
    fn node(&mut self, reader: &mut Reader<'_>) -> Option<Node> {
        self.skip_spaces();
        let loc = self.loc()?;
        match *self.bytes.get(self.pos)? {
            open @ (b'[' | b'{') => {
                reader.open()?;
                self.pos += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                let mut items = Vec::new();
                let mut entries: Vec<(Node, Node)> = Vec::new();
                self.skip_spaces();
                if self.bytes.get(self.pos) == Some(&close) {
                    self.pos += 1;
                } else {
                    loop {
                        if open == b'[' {
                            items.push(self.node(reader)?);
                        } else {
                            self.skip_spaces();
                            let (key, key_len) = self.flow_key(reader.strict_booleans)?;
                            if !key.as_str().is_some_and(|name| key_fits(&entries, name))
                                || self.bytes.get(self.pos + key_len) != Some(&b':')
                                || self.bytes.get(self.pos + key_len + 1) != Some(&b' ')
                            {
                                return None;
                            }
                            reader.node()?;
                            self.pos += key_len + 1;
                            let value = self.node(reader)?;
                            entries.push((key, value));
                        }
                        self.skip_spaces();
                        match *self.bytes.get(self.pos)? {
                            b',' => {
                                self.pos += 1;
                                self.skip_spaces();
                                if self.bytes.get(self.pos) == Some(&close) {
                                    return None; // a trailing comma
                                }
                            }
                            b if b == close => {
                                self.pos += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                reader.close()?;
                let value = if open == b'[' {
                    NodeValue::Seq(items)
                } else if distinct_keys(&entries) {
                    NodeValue::Map(entries)
                } else {
                    return None;
                };
                Some(Node { loc, value })
            }
            b'"' | b'\'' => {
                let (node, end) = quoted(self.no, self.at + self.pos, self.text())?;
                self.pos += end;
                reader.node()?;
                Some(node)
            }
            _ => {
                let rest = self.text();
                let end = rest.find([',', ']', '}']).unwrap_or(rest.len());
                let value = rest[..end].trim_end_matches(' ');
                if !plain_ok(value, true) {
                    return None;
                }
                self.pos += value.len();
                reader.node()?;
                reader.scalar(self.no, self.at + self.pos - value.len(), value)
            }
        }
    }
}

/// A quoted scalar at the start of `text` (at 0-based column `at` of line `no`), and the
/// byte just after its closing quote. No escapes (`\` or `''`), no line break.
fn quoted(no: u32, at: usize, text: &str) -> Option<(Node, usize)> {
    let quote = text.as_bytes()[0];
    let len = text[1..].find(quote as char)?;
    let content = &text[1..1 + len];
    let end = len + 2;
    if content.contains('\\') || text.as_bytes().get(end) == Some(&quote) {
        return None;
    }
    Some((
        Node {
            loc: Loc {
                line: no,
                column: column(at)?,
            },
            value: NodeValue::String(content.to_string()),
        },
        end,
    ))
}

/// Whether `value` is a one-line plain scalar read the same in any context: not empty, not
/// starting with an indicator (`-` only before a digit or `.`: a negative number), and free of
/// every character that could end it, start a comment, or mean something in a flow.
fn plain_ok(value: &str, in_flow: bool) -> bool {
    let bytes = value.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    let starts_ok = match first {
        b'-' => bytes.get(1).is_some_and(|b| b.is_ascii_digit() || *b == b'.'),
        b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"'
        | b'%' | b'@' | b'`' => false,
        _ => true,
    };
    starts_ok
        && !value.ends_with(':')
        && !value.contains(": ")
        && !bytes
            .iter()
            .any(|b| matches!(b, b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'"' | b'\'') || (in_flow && *b == b':'))
}

/// `key: rest` or `key:` with a plain word as the key: the key and what follows the colon.
fn split_key(body: &str) -> Option<(&str, &str)> {
    let bytes = body.as_bytes();
    let first = *bytes.first()?;
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return None;
    }
    let len = bytes
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/')))?;
    if len > MAX_KEY || bytes[len] != b':' || bytes.get(len + 1).is_some_and(|&b| b != b' ') {
        return None;
    }
    Some((&body[..len], &body[len + 1..]))
}

/// A sequence item: `-` then a space or the end of the line.
fn is_item(body: &str) -> bool {
    body == "-" || body.starts_with("- ")
}

/// The 1-based column of 0-based byte column `at` (every byte is one ASCII character).
fn column(at: usize) -> Option<u32> {
    u32::try_from(at + 1).ok()
}

fn plain() -> serde_saphyr::granit_parser::ScalarStyle {
    serde_saphyr::granit_parser::ScalarStyle::Plain
}

#[cfg(test)]
#[path = "yaml_lines_fuzz.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::super::yaml_fast::{FastYaml, event_stream};
    use super::*;

    fn options() -> [(&'static str, FastYaml); 2] {
        [("manifests", FastYaml::manifests()), ("records", FastYaml::defaults())]
    }

    /// Where the line reader answers, the event reader answers exactly the same (documents,
    /// values, types, locations of every node and key, document count). Returns whether it
    /// answered.
    fn agree(label: &str, text: &str, options: &FastYaml) -> bool {
        let Some(lines) = line_stream(text, options.strict_booleans) else {
            return false;
        };
        match event_stream(text, options) {
            Some(events) => assert_eq!(lines, events, "{label}: {text:?}"),
            None => panic!("{label}: the line reader read what the event reader leaves to serde-saphyr: {text:?}"),
        }
        true
    }

    fn fixtures() -> Vec<(String, String)> {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).expect("read dir").flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut paths = Vec::new();
        walk(&root, &mut paths);
        paths
            .into_iter()
            .filter_map(|p| {
                let text = String::from_utf8(std::fs::read(&p).ok()?).ok()?;
                Some((p.strip_prefix(&root).unwrap_or(&p).display().to_string(), text))
            })
            .collect()
    }

    /// The line reader against the event reader on every fixture and on thousands of small
    /// mutations of them (a byte deleted, an indicator or a line break inserted, a line
    /// repeated), with the manifest and the state-record options.
    #[test]
    fn line_reader_agrees_with_the_event_reader_on_fixtures_and_their_mutations() {
        let fixtures = fixtures();
        let inserts = [
            " ", "  ", ":", ": ", "- ", "-", "#", " #", "\"", "'", "[", "]", "{", "}", ",", "\n", "\n  ", "0", "~",
            ".", "?", "&a ", "*", "!", "|", ">", "\\", "\t", "é",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        for (name, options) in options() {
            let (mut answered, mut mutated_answered) = (0, 0);
            for (label, text) in &fixtures {
                answered += usize::from(agree(&format!("{name} {label}"), text, &options));
                if text.len() > 4096 {
                    continue;
                }
                for _ in 0..12 {
                    let mut at = next(text.len() + 1);
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    let mutated = match next(3) {
                        0 if at < text.len() => {
                            let end = (at + 1..=text.len())
                                .find(|&e| text.is_char_boundary(e))
                                .unwrap_or(text.len());
                            format!("{}{}", &text[..at], &text[end..])
                        }
                        1 => {
                            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
                            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
                            format!("{}{}", &text[..line_end], &text[line_start..])
                        }
                        _ => format!("{}{}{}", &text[..at], inserts[next(inserts.len())], &text[at..]),
                    };
                    mutated_answered += usize::from(agree(&format!("{name} {label} mutated"), &mutated, &options));
                }
            }
            eprintln!("{name}: {answered} fixtures and {mutated_answered} mutations read by the line reader");
            assert!(answered > 1000, "{name}: the line reader read only {answered} fixtures");
            assert!(
                mutated_answered > 5000,
                "{name}: only {mutated_answered} mutations read"
            );
        }
    }

    /// What the benchmark fleet and gantry's own state records look like is read by the line
    /// reader (else the speed-up is quietly lost); what it leaves to the event reader is left.
    #[test]
    fn line_reader_reads_plain_manifests_and_declines_the_rest() {
        let read = [
            "apiVersion: gantry.dev/v1\nkind: Target\nmetadata:\n  name: tenant-00000-auth\n  labels: { tenant: tenant-00000, env: prod, ring: \"0\", region: eu }\nspec:\n  component: auth\n  version: \"2.4.1\"\n  config: { timeout_s: 30, replicas: 1 }\n  vars: { host: tenant-00000.eu.internal }\n",
            "apiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: auth-1.1.0 }\nspec:\n  component: auth\n  version: 1.1.0\n  released: 2026-02-15\n  migrations:\n    - id: m11-schema\n      up:   [\"migrations/auth/migrate.sh\", \"up\", \"m11-schema\", \"{{ target.name }}\"]\n    - id: m11-backfill\n      phase: post\n  changelog:\n    added: [\"feature 1.1.0\"]\n---\n# a comment\napiVersion: gantry.dev/v1\nkind: Release\nmetadata: { name: auth-1.2.0 }\nspec: { component: auth, version: 1.2.0 }\n",
            "component: auth\nversion: 1.2.1\nconfig_hash: 481d9cec\napplied_migrations: []\nstatus: converged\nrollback_points: []\nlast_attempt:\n  at: 2026-11-21T10:00:00Z\n  outcome: succeeded\n",
            "component: auth\nversion: 1.2.1\nconfig_hash: 481d9cec\nconfig: {\"replicas\": 1, \"timeout_s\": 30, \"tls\": {\"mode\": \"strict\", \"ciphers\": [\"a\", \"b\"]}}\napplied_migrations: []\nstatus: converged\nrollback_points: []\n",
            "a: {'b c': 1, \"\": x, \"on\": \"1\", \"d: e, f\": [g]}\n",
            "a:\n- 1\n- x: y\n  z:\n  - 2\nb: {}\n",
            "---\n---\na: 1\n---\n",
            "  a: 1\n  b: [ x ,  'y' , -1.5 ]\n",
            "",
            "# only a comment\n",
        ];
        let declined = [
            "a:\nb: 1\n",
            "a: 1 # trailing\n",
            "a:\t1\n",
            "a: 1\r\n",
            "a: é\n",
            "a: \"x\\ny\"\n",
            "a: 'it''s'\n",
            "a: plain\n  continued\n",
            "- - x\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: |\n  x\n",
            "a: 1\na: 2\n",
            "1: a\n",
            "a: [1, 2,]\n",
            "a: [1,\n  2]\n",
            "a: b: c\n",
            "%YAML 1.2\n---\na: 1\n",
            "--- a\n",
            "a: 1\n...\n",
            "scalar\n",
            "- a\nb: c\n",
            "a: x, y\n",
            "a: {b: c:d}\n",
            "\"a\": 1\n",
            "a: {\"b\":1}\n",
            "a: {\"b\" : 1}\n",
            "a: {\"b\"  1}\n",
            "a: {'b'x 1}\n",
            "a: {\"b\\\"c\": 1}\n",
            "a: {'it''s': 1}\n",
            "a: {\"b\": 1, \"b\": 2}\n",
            "a: -\n",
        ];
        for (name, options) in options() {
            for text in read {
                assert!(agree(name, text, &options), "{name}: not read: {text:?}");
            }
            for text in declined {
                assert!(
                    line_stream(text, options.strict_booleans).is_none(),
                    "{name}: read: {text:?}"
                );
            }
        }
        // YAML 1.1 booleans are keys only under strict booleans.
        assert!(line_stream("on: 1\n", true).is_some());
        assert!(line_stream("on: 1\n", false).is_none());
    }
}
