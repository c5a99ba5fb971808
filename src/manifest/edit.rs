//! Minimal text edits of manifests that keep the author's formatting and comments.

use super::document::Loc;

/// Replaces the scalar that starts at `loc` (a YAML or TOML value: plain, `"double"` or
/// `'single'` quoted) with `value`, keeping the quoting style.
///
/// # Errors
/// A message when `loc` does not point at a scalar in `text`.
pub fn replace_scalar(text: &str, loc: Loc, value: &str) -> Result<String, String> {
    let line_index = (loc.line as usize).checked_sub(1).ok_or("no location")?;
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    let line = *lines
        .get(line_index)
        .ok_or_else(|| format!("line {} is past the end", loc.line))?;
    let chars: Vec<char> = line.chars().collect();
    let start = (loc.column as usize).checked_sub(1).ok_or("no column")?;
    if start >= chars.len() {
        return Err(format!("column {} is past the end of line {}", loc.column, loc.line));
    }
    let end = match chars[start] {
        quote @ ('"' | '\'') => {
            let mut i = start + 1;
            while i < chars.len() && chars[i] != quote {
                if quote == '"' && chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err("unterminated quoted value".into());
            }
            i + 1
        }
        _ => {
            let mut i = start;
            while i < chars.len()
                && !matches!(chars[i], ',' | '}' | ']' | '\n' | '\r')
                && !(chars[i] == '#' && i > 0 && chars[i - 1] == ' ')
            {
                i += 1;
            }
            while i > start && chars[i - 1] == ' ' {
                i -= 1;
            }
            i
        }
    };
    let replacement = match chars[start] {
        '"' => format!("\"{value}\""),
        '\'' => format!("'{value}'"),
        _ => value.to_string(),
    };
    let new_line: String =
        chars[..start].iter().collect::<String>() + &replacement + &chars[end..].iter().collect::<String>();
    lines[line_index] = &new_line;
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_scalars_in_every_style() {
        let cases = [
            ("  version: 2.0.0\n", 12, "  version: 1.3.0\n"),
            (
                "  version: \"2.0.0\"  # pinned\n",
                12,
                "  version: \"1.3.0\"  # pinned\n",
            ),
            ("  version: '2.0.0'\n", 12, "  version: '1.3.0'\n"),
            (
                "spec: { component: b, version: 2.0.0 }\n",
                32,
                "spec: { component: b, version: 1.3.0 }\n",
            ),
            ("version = \"2.0.0\"\n", 11, "version = \"1.3.0\"\n"),
            ("  version: 2.0.0 # note\n", 12, "  version: 1.3.0 # note\n"),
        ];
        for (text, column, expected) in cases {
            assert_eq!(
                replace_scalar(text, Loc { line: 1, column }, "1.3.0").unwrap(),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn keeps_other_lines() {
        let text = "a: 1\r\nversion: 2.0.0\r\nb: 2\r\n";
        assert_eq!(
            replace_scalar(text, Loc { line: 2, column: 10 }, "1.0.0").unwrap(),
            "a: 1\r\nversion: 1.0.0\r\nb: 2\r\n"
        );
    }
}
