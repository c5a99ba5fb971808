//! What rendered text must not carry: `vars` values in manifest diffs (SPEC: plans show
//! `config`, never `vars`) and terminal control sequences from repository text (issue #18,
//! attacks 10 and 12).
//!
//! # Masking vars in diffs
//! Line-based, so the diff keeps its shape: inside a `vars` mapping (YAML block or flow style,
//! TOML `[spec.vars]` tables, `vars = {…}`, `vars.x = …`) every value becomes `***`. The new
//! side marks a value that differs from the old side's value under the same key `*** (changed)`,
//! so a reviewer sees *that* a var changed, never what it was or became. Keys stay visible.

use std::collections::HashMap;

use crate::manifest::secrets::REDACTED;

/// The masked text and, per masked line's key, its raw value (to compare with the other side).
pub struct Masked {
    pub text: String,
    values: HashMap<String, String>,
}

/// Masks the values under every `vars` key of a manifest file's text. `old` is the old side's
/// result when masking the new side of a diff.
pub fn mask_vars(path: &str, text: &str, old: Option<&Masked>) -> Masked {
    let toml = path.to_ascii_lowercase().ends_with(".toml");
    let mut out = String::with_capacity(text.len());
    let mut values = HashMap::new();
    let mut doc = 0usize;
    // YAML: the indentation of the `vars:` key whose block we are in. TOML: inside a vars table.
    let mut block: Option<usize> = None;
    let mut toml_table = false;
    let mut seen = 0usize;
    let mark = |id: String, value: &str, values: &mut HashMap<String, String>| -> String {
        let changed = old.is_some_and(|o| o.values.get(&id).map(String::as_str) != Some(value.trim()));
        values.insert(id, value.trim().to_string());
        if changed {
            format!("{REDACTED} (changed)")
        } else {
            REDACTED.to_string()
        }
    };
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = body.len() - body.trim_start().len();
        let trimmed = body.trim();
        if !toml && (trimmed == "---" || trimmed.starts_with("--- ")) {
            doc += 1;
            block = None;
        }
        let masked = if toml {
            if trimmed.starts_with('[') {
                let header = trimmed.trim_matches(['[', ']']).trim();
                toml_table = header == "vars" || header.ends_with(".vars") || header.contains(".vars.");
                None
            } else if let Some((key, value)) = trimmed.split_once('=')
                && (toml_table || key.trim() == "vars" || key.trim().starts_with("vars."))
            {
                seen += 1;
                let id = format!("{doc}/{}/{seen}", key.trim());
                let m = mark(id, value, &mut values);
                Some(format!("{}{}= {m}", &body[..indent], key.trim_start()))
            } else {
                None
            }
        } else if let Some(start) = block
            && !trimmed.is_empty()
            && indent > start
        {
            seen += 1;
            Some(mask_yaml_line(body, indent, doc, seen, &mut |id, v| {
                mark(id, v, &mut values)
            }))
        } else {
            if block.is_some() && !trimmed.is_empty() {
                block = None;
            }
            match yaml_vars_key(body) {
                Some(colon) => {
                    block = Some(indent);
                    let rest = body[colon + 1..].trim();
                    if rest.is_empty() || rest.starts_with('#') || rest.starts_with('|') || rest.starts_with('>') {
                        None
                    } else {
                        seen += 1;
                        let id = format!("{doc}/vars/{seen}");
                        let m = mark(id, rest, &mut values);
                        Some(format!("{} {m}", &body[..=colon]))
                    }
                }
                None => None,
            }
        };
        out.push_str(masked.as_deref().unwrap_or(body));
        out.push_str(ending);
    }
    Masked { text: out, values }
}

/// A line inside a YAML `vars` block: `key: value` keeps the key, a list item its dash,
/// anything else (continuation lines) is masked whole.
fn mask_yaml_line(
    body: &str,
    indent: usize,
    doc: usize,
    seen: usize,
    mark: &mut dyn FnMut(String, &str) -> String,
) -> String {
    let trimmed = body.trim_start();
    let (prefix, item) = match trimmed.strip_prefix("- ") {
        Some(item) => ("- ", item),
        None => ("", trimmed),
    };
    if let Some((key, value)) = item
        .split_once(": ")
        .or_else(|| item.strip_suffix(':').map(|k| (k, "")))
        && !key.contains(['{', '[', '"', '\''])
    {
        if value.trim().is_empty() {
            return body.to_string();
        }
        let id = format!("{doc}/{indent}/{}", key.trim());
        return format!("{}{prefix}{key}: {}", &body[..indent], mark(id, value));
    }
    let id = format!("{doc}/{indent}/#{seen}");
    format!("{}{prefix}{}", &body[..indent], mark(id, item))
}

/// The byte offset of the colon of a `vars:` key on this YAML line (block key, list item key,
/// or inside a flow mapping), if there is one.
fn yaml_vars_key(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut from = 0;
    while let Some(found) = body[from..].find("vars") {
        let at = from + found;
        from = at + 4;
        let before = body[..at].trim_end_matches(['"', '\'']);
        let starts_key = before.trim().is_empty()
            || before.ends_with(['{', ',', ' '])
                && (before.trim().is_empty() || before.trim_end().ends_with(['{', ',', '-']));
        if !starts_key {
            continue;
        }
        let mut end = at + 4;
        while end < bytes.len() && matches!(bytes[end], b'"' | b'\'' | b' ') {
            end += 1;
        }
        if end < bytes.len() && bytes[end] == b':' {
            return Some(end);
        }
    }
    None
}

/// `text` without terminal control sequences: ESC sequences (CSI, OSC, and two-byte ones),
/// other C0 controls but newline and tab (a carriage return can overwrite a line), C1
/// controls, and Unicode bidirectional overrides. For text printed to a terminal from
/// repository content (commit subjects, manifest strings, step messages).
pub fn strip_terminal_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "apiVersion: gantry.dev/v1\nkind: Target\nmetadata: { name: acme }\nspec:\n  component: billing\n  version: \"1.0.0\"\n  config: { replicas: 2 }\n  vars:\n    token: s3cr3t-old\n    region: eu\n    nested:\n      pw: hunter2\n    list:\n      - item-secret\n";

    /// Issue #18, attack 10: `plan` printed old and new `vars` values in manifest diffs.
    #[test]
    fn yaml_vars_values_are_masked_and_changes_marked() {
        let new = OLD.replace("s3cr3t-old", "s3cr3t-new").replace("1.0.0", "2.0.0");
        let old = mask_vars("targets/acme.yaml", OLD, None);
        let masked = mask_vars("targets/acme.yaml", &new, Some(&old));
        for text in [&old.text, &masked.text] {
            for secret in ["s3cr3t", "hunter2", "item-secret", "eu\n"] {
                assert!(!text.contains(secret), "{secret} in\n{text}");
            }
            assert!(
                text.contains("config: { replicas: 2 }"),
                "config stays visible:\n{text}"
            );
            assert!(text.contains("    nested:\n      pw: ***"), "{text}");
        }
        assert!(old.text.contains("    token: ***\n"), "{}", old.text);
        assert!(masked.text.contains("    token: *** (changed)\n"), "{}", masked.text);
        assert!(masked.text.contains("    region: ***\n"), "unchanged: {}", masked.text);
        assert!(masked.text.contains("version: \"2.0.0\""), "{}", masked.text);
    }

    #[test]
    fn flow_style_toml_and_list_items_are_masked() {
        let flow = "spec: { component: c, version: \"1\", vars: { token: abcdef } }\n---\n- vars: {a: 1}\nmetadata:\n  uservars: keep\n";
        let m = mask_vars("t.yaml", flow, None).text;
        assert!(!m.contains("abcdef") && !m.contains("a: 1"), "{m}");
        assert!(m.contains("uservars: keep"), "{m}");
        let toml =
            "[spec]\ncomponent = \"c\"\nvars.token = \"abcdef\"\n[spec.vars]\npw = \"hunter2\"\n[spec.config]\nx = 1\n";
        let m = mask_vars("t.toml", toml, None).text;
        assert!(!m.contains("abcdef") && !m.contains("hunter2"), "{m}");
        assert!(m.contains("x = 1"), "{m}");
    }

    /// Issue #18, attack 12: commit subjects with terminal escapes reached the terminal raw.
    #[test]
    fn terminal_controls_are_stripped() {
        for (text, want) in [
            ("fix \u{1b}[31mred\u{1b}[0m done", "fix red done"),
            ("title \u{1b}]0;pwned\u{7}ok", "title ok"),
            ("osc \u{1b}]8;;http://x\u{1b}\\link", "osc link"),
            ("cr\roverwrite", "croverwrite"),
            ("c1 \u{9b}31m", "c1 31m"),
            ("bidi \u{202e}txet", "bidi txet"),
            ("keep\ttabs\nand lines ✓", "keep\ttabs\nand lines ✓"),
        ] {
            assert_eq!(strip_terminal_controls(text), want, "{text:?}");
        }
    }
}
