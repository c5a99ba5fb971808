//! Secret redaction: the values of `vars` named secret in `gantry.toml` `[secrets]` are replaced by
//! `***` in everything gantry writes or prints about a step (state, journal, logs, progress).
//!
//! A var is secret when its name is listed in `[secrets] vars` or matches one of
//! `[secrets] patterns` (`*` any run of characters, `?` one; case-insensitive). The
//! [`Redactor`] is built from the whole desired state, so a value secret for one target is
//! hidden wherever it appears, whichever step printed it.
//!
//! # Caveats
//! Values shorter than [`MIN_SECRET_LEN`] characters are not redacted: replacing every `1` or
//! `ab` in output would hide everything and protect nothing. Redaction matches the value as
//! written; a step that prints it transformed (base64, split across lines) is not caught.

use super::types::SecretsConfig;
use super::validate::Desired;

/// What a secret value is replaced with.
pub const REDACTED: &str = "***";

/// Shorter values are not redacted (see the module docs).
pub const MIN_SECRET_LEN: usize = 4;

/// Whether the var `name` is secret under `config`.
pub fn is_secret_var(config: &SecretsConfig, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    config.vars.iter().any(|v| v.eq_ignore_ascii_case(&name))
        || config
            .patterns
            .iter()
            .any(|p| glob_match(&p.to_ascii_lowercase(), &name))
}

/// `*` matches any run of characters, `?` any one; everything else literally (shared by secret
/// patterns and allowed-signers principals).
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Replaces known secret values with [`REDACTED`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    values: Vec<String>,
}

impl Redactor {
    /// A redactor for explicit values (empty and too-short ones are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values
            .into_iter()
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
            .collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Redactor { values }
    }

    /// Every secret var value of every target of `desired` (strings as written, numbers and
    /// booleans as printed, and every leaf of a nested value).
    pub fn from_desired(desired: &Desired) -> Redactor {
        let config = &desired.config.secrets;
        let mut values = Vec::new();
        for target in desired.targets.values() {
            for (name, value) in &target.spec().vars {
                if is_secret_var(config, name) {
                    leaves(value, &mut values);
                }
            }
        }
        Redactor::new(values)
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for value in &self.values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }
}

fn leaves(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Bool(_) | serde_json::Value::Number(_) => out.push(value.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_by_list_and_pattern() {
        let config = SecretsConfig {
            vars: vec!["token".into()],
            patterns: vec!["*password*".into(), "api_?ey".into()],
        };
        for (name, secret) in [
            ("token", true),
            ("TOKEN", true),
            ("db_password", true),
            ("PasswordHash", true),
            ("api_key", true),
            ("api_keys", false),
            ("host", false),
            ("tokens", false),
        ] {
            assert_eq!(is_secret_var(&config, name), secret, "{name}");
        }
    }

    #[test]
    fn redacts_every_occurrence_longest_first() {
        let r = Redactor::new(["hunter2-long".to_string(), "hunter2".to_string(), "ab".to_string()]);
        assert_eq!(
            r.redact("pw=hunter2-long and hunter2, ab stays"),
            "pw=*** and ***, ab stays"
        );
        assert!(Redactor::new(Vec::new()).is_empty());
    }

    #[test]
    fn nested_and_scalar_values_are_leaves() {
        let mut out = Vec::new();
        leaves(&serde_json::json!({"a": ["s3cret", 123456, true], "b": null}), &mut out);
        assert_eq!(out, ["s3cret", "123456", "true"]);
    }
}
