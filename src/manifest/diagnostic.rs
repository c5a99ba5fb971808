//! Diagnostics: user mistakes with where they are and what to do about them.

use std::fmt;

use serde::Serialize;

use super::document::Loc;

/// How bad a diagnostic is, which decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Shown, does not fail anything.
    Warning,
    /// The input cannot be read at all (syntax, schema, types): exit 1.
    Invalid,
    /// The input reads but can never succeed as declared: exit 2.
    Violation,
}

/// One finding, rendered as `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A short machine-readable class (`parse`, `schema`, `unknown_reference`, `cycle`, ...).
    pub kind: &'static str,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(severity: Severity, kind: &'static str, file: &str, loc: Loc, message: impl Into<String>) -> Self {
        let known = loc.line > 0;
        Diagnostic {
            severity,
            kind,
            file: file.to_string(),
            line: known.then_some(loc.line),
            column: known.then_some(loc.column),
            message: message.into(),
        }
    }
}

/// `text` with control characters escaped (`\n`, `\u{1b}`), so a file name or value from a
/// repository can neither break the one-line format nor drive the terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Warning => "warning: ",
            Severity::Invalid | Severity::Violation => "",
        };
        let (file, message) = (printable(&self.file), printable(&self.message));
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{file}:{line}:{column}: {label}{message}"),
            _ => write!(f, "{file}: {label}{message}"),
        }
    }
}

/// Sorts diagnostics by file and position so output is stable and reads top to bottom.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message)));
}
