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

use std::sync::Arc;

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
///
/// Cloning is cheap (the values are shared): every step of every attempt holds one, and a fleet
/// may have a secret per target (issue #17).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    values: Arc<[String]>,
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
        Redactor { values: values.into() }
    }

    /// Every secret var value of every target of `desired` (strings as written, numbers and
    /// booleans as printed, and every leaf of a nested value).
    ///
    /// This reads every target: build it once per pass, not per attempt or step (issue #17: once
    /// per attempt made converging a 10,000-target fleet quadratic).
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
        for value in self.values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), REDACTED);
            }
        }
        out
    }
}

impl Redactor {
    /// `bytes` with every secret value replaced (output need not be UTF-8).
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let mut out = std::borrow::Cow::Borrowed(bytes);
        for value in self.values.iter() {
            let needle = value.as_bytes();
            if find(&out, needle).is_some() {
                out = std::borrow::Cow::Owned(replace_all(&out, needle, REDACTED.as_bytes()));
            }
        }
        out
    }

    /// The longest secret in bytes (0 when there is none).
    fn longest(&self) -> usize {
        self.values.first().map_or(0, String::len)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(at) = haystack[from..].iter().position(|&b| b == first) {
        let start = from + at;
        if haystack[start..].starts_with(needle) {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(with);
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Redacts a stream that arrives in chunks (a step's output), holding back only as many bytes
/// as the longest secret needs to be seen whole: a secret split across two chunks is still
/// replaced, and memory stays bounded whatever the stream's length.
#[derive(Debug, Clone, Default)]
pub struct StreamRedactor {
    redactor: Redactor,
    /// Redacted bytes not yet released: they may be the start of a secret.
    held: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Redactor) -> StreamRedactor {
        StreamRedactor {
            redactor,
            held: Vec::new(),
        }
    }

    /// The secrets this stream hides.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Takes the next chunk; returns what can be released now (redacted).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.redactor.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let redacted = self.redactor.redact_bytes(&self.held).into_owned();
        // An unfinished secret is a proper prefix of it at the very end: fewer than `longest`
        // bytes. Everything before that can go.
        let keep = (self.redactor.longest() - 1).min(redacted.len());
        let cut = redacted.len() - keep;
        self.held = redacted[cut..].to_vec();
        let mut out = redacted;
        out.truncate(cut);
        out
    }

    /// The end of the stream: releases what was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Query parameter names whose values are credentials (matched case-insensitively, as globs).
const CREDENTIAL_PARAMS: &[&str] = &[
    "*token*",
    "*key*",
    "*secret*",
    "*pass*",
    "*auth*",
    "*sig*",
    "*cred*",
    "*session*",
    "code",
];

/// `text` with the credentials of every `http://` or `https://` URL in it masked: the password
/// of `user:password@`, and the values of query parameters named like a credential
/// (`?token=…`, `api_key=…`, `signature=…`). For log lines and messages about requests made to
/// rendered URLs (health checks), which may carry secrets whether or not `[secrets]` names them.
pub fn mask_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = ["http://", "https://"].iter().filter_map(|s| rest.find(s)).min() {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        out.push_str(&mask_one_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn mask_one_url(url: &str) -> String {
    let (scheme, after) = url.split_once("://").unwrap_or(("", url));
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, path) = after.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((before, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, value))
                        if !value.is_empty()
                            && CREDENTIAL_PARAMS
                                .iter()
                                .any(|p| glob_match(p, &name.to_ascii_lowercase())) =>
                    {
                        format!("{name}={REDACTED}")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{before}?{}{fragment}", masked.join("&"))
        }
        None => path.to_string(),
    };
    format!("{scheme}://{authority}{path}")
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
mod url_tests {
    use super::*;

    /// Issue #18, attack 10: "health check failed" log lines carried `?token=<secret>`.
    #[test]
    fn credentials_in_urls_are_masked() {
        for (text, want) in [
            (
                "GET http://svc:8080/health?token=s3cr3t&env=prod: status 500",
                "GET http://svc:8080/health?token=***&env=prod: status 500",
            ),
            (
                "GET http://admin:hunter2@svc/h?API_KEY=abc#frag: x",
                "GET http://admin:***@svc/h?API_KEY=***#frag: x",
            ),
            (
                "query \"up\" at http://prom:9090: no data",
                "query \"up\" at http://prom:9090: no data",
            ),
            (
                "two http://a/?sig=1 and https://b/?access_token=2",
                "two http://a/?sig=*** and https://b/?access_token=***",
            ),
            ("no url here", "no url here"),
            ("http://a/?page=2&session_id=x", "http://a/?page=2&session_id=***"),
        ] {
            assert_eq!(mask_url_credentials(text), want, "{text}");
        }
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

    /// Issue #12: redaction read the whole step log into memory after the step; it now runs on
    /// the stream, so a secret cut in two by the pipe's chunking must still be caught.
    #[test]
    fn stream_redaction_catches_secrets_split_across_chunks() {
        let secret = "s3cret-value";
        let text = format!("a {secret} b {secret}{secret} c hunter2x {secret}");
        let expected = "a *** b ****** c *** ***";
        let redactor = Redactor::new([secret.to_string(), "hunter2x".to_string()]);
        // Every chunk size, so every split point of every occurrence is tried.
        for size in 1..=text.len() {
            let mut stream = StreamRedactor::new(redactor.clone());
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                out.extend(stream.push(chunk));
            }
            out.extend(stream.finish());
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunk size {size}");
        }
        // Nothing to redact: bytes pass straight through, nothing is held.
        let mut plain = StreamRedactor::new(Redactor::default());
        assert_eq!(plain.push(b"abc"), b"abc");
        assert!(plain.finish().is_empty());
    }

    #[test]
    fn byte_redaction_works_on_output_that_is_not_utf8() {
        let r = Redactor::new(["topsecret".to_string()]);
        assert_eq!(&*r.redact_bytes(b"\xff topsecret \xfe"), b"\xff *** \xfe");
    }

    #[test]
    fn nested_and_scalar_values_are_leaves() {
        let mut out = Vec::new();
        leaves(&serde_json::json!({"a": ["s3cret", 123456, true], "b": null}), &mut out);
        assert_eq!(out, ["s3cret", "123456", "true"]);
    }
}
