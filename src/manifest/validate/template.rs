//! Step templates and argv: they compile, use only the variables gantry defines (SPEC §5), reach
//! for no other template, and name programs inside the checkout.

use crate::manifest::diagnostic::{Diagnostic, Severity};

use super::TEMPLATE_VARIABLES;

/// Statements a step template has no use for: they reach for other templates (which do not
/// exist: each argv element is rendered alone) or define reusable code.
pub(super) const FORBIDDEN_STATEMENTS: [&str; 7] = ["include", "import", "from", "extends", "block", "macro", "call"];

/// The first statement tag of `template` that [`FORBIDDEN_STATEMENTS`] lists, if any.
pub(super) fn forbidden_statement(template: &str) -> Option<&'static str> {
    template.match_indices("{%").find_map(|(at, _)| {
        let rest = template[at + 2..].trim_start_matches(['-', '+']).trim_start();
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        FORBIDDEN_STATEMENTS.into_iter().find(|s| *s == word)
    })
}

/// Whether an expression of `template` names `self` (minijinja's handle on the template's own
/// blocks, which it does not count as a variable).
pub(super) fn uses_self(template: &str) -> bool {
    let bytes = template.as_bytes();
    template.match_indices("self").any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + 4).copied();
        let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        !before.is_some_and(|b| ident(b) || b == b'.') && !after.is_some_and(ident) && inside_tag(template, at)
    })
}

/// Whether byte `at` lies inside a `{{ }}` or `{% %}` tag (not in literal text).
pub(super) fn inside_tag(template: &str, at: usize) -> bool {
    let head = &template[..at];
    let open = head.rfind("{{").into_iter().chain(head.rfind("{%")).max();
    let close = head.rfind("}}").into_iter().chain(head.rfind("%}")).max();
    match (open, close) {
        (Some(open), Some(close)) => open > close,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Whether a (compiling) template refers to `weight`.
pub(super) fn uses_weight(template: &str) -> bool {
    let env = minijinja::Environment::new();
    env.template_from_str(template)
        .is_ok_and(|t| t.undeclared_variables(false).contains("weight"))
}

/// Checks that a template compiles and uses only the variables gantry provides.
///
/// Templates are only compiled here, never rendered, so nothing in them runs at validation.
pub fn template_problem(template: &str) -> Option<String> {
    if let Some(statement) = forbidden_statement(template) {
        return Some(format!(
            "template uses `{{% {statement} %}}`; a step template is one self-contained string (no include, import, extends, block, macro or call)"
        ));
    }
    if uses_self(template) {
        return Some(format!(
            "template uses unknown variable `self` (available: {})",
            TEMPLATE_VARIABLES.join(", ")
        ));
    }
    // The environment steps render in (limits, strict undefined, no loader), so what compiles
    // here is exactly what compiles when the step runs: one grammar (issue #9).
    match crate::render::sandbox::Profile::Step
        .environment()
        .template_from_str(template)
    {
        Err(e) => Some(format!(
            "template does not compile: {}",
            e.detail().unwrap_or(&e.to_string())
        )),
        Ok(compiled) => {
            let mut unknown: Vec<String> = compiled
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
                .collect();
            unknown.sort();
            (!unknown.is_empty()).then(|| {
                format!(
                    "template uses unknown variable{} `{}` (available: {})",
                    if unknown.len() > 1 { "s" } else { "" },
                    unknown.join("`, `"),
                    TEMPLATE_VARIABLES.join(", ")
                )
            })
        }
    }
}

pub(super) fn check_argv(
    origin: &crate::manifest::load::Origin,
    pointer: &str,
    argv: &[String],
    diags: &mut Vec<Diagnostic>,
) {
    if argv.is_empty() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "schema",
            pointer,
            "argv is empty: the first element names the program to run",
        ));
        return;
    }
    if argv[0].trim().is_empty() {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "argv",
            &format!("{pointer}/0"),
            "the program (first argv element) is empty",
        ));
    }
    for (i, element) in argv.iter().enumerate() {
        let checked = remembered::check(element);
        if let Some(problem) = checked.problem {
            diags.push(origin.diagnostic(Severity::Invalid, "template", &format!("{pointer}/{i}"), problem));
        } else if !pointer.ends_with("/steps/shift") && checked.uses_weight {
            diags.push(origin.diagnostic(
                Severity::Invalid,
                "template",
                &format!("{pointer}/{i}"),
                "template uses `weight`, which only a `shift` step defines",
            ));
        }
    }
    let program = &argv[0];
    if !program.contains("{{") && program_escapes(program) {
        diags.push(origin.diagnostic(
            Severity::Invalid,
            "argv",
            &format!("{pointer}/0"),
            format!("program `{program}` leaves the repository checkout; name a script inside the repository or a program on PATH"),
        ));
    }
}

/// Whether a relative program path climbs out of the checkout (`../x`, `a/../../x`).
pub(super) fn program_escapes(program: &str) -> bool {
    if program.starts_with('/') {
        return false; // an absolute program (/usr/bin/env) is a choice, not an escape
    }
    let mut depth: i32 = 0;
    for part in program.split('/') {
        match part {
            ".." => depth -= 1,
            "" | "." => {}
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// What [`check_argv`] learns of one argv element, remembered by its text across validations
/// in a process (issue #17): the daemon validates every commit it sees, its step templates are
/// the same few hundred strings, and each check compiles the template with minijinja (a tenth of
/// a daemon pass's validation). Both checks are pure functions of the text, so a remembered
/// answer is the answer.
pub(super) mod remembered {
    use std::sync::{Mutex, OnceLock};

    /// How many answers are kept; the memo is emptied when it would hold more.
    pub(in crate::manifest::validate) const MAX_REMEMBERED: usize = 4096;
    /// Elements longer than this are checked afresh each time (they would crowd the memo).
    pub(in crate::manifest::validate) const MAX_REMEMBERED_LEN: usize = 1024;

    /// [`super::template_problem`] and [`super::uses_weight`] of one element.
    #[derive(Debug, Clone, PartialEq)]
    pub(in crate::manifest::validate) struct Checked {
        pub problem: Option<String>,
        pub uses_weight: bool,
    }

    fn memo() -> &'static Mutex<foldhash::HashMap<String, Checked>> {
        static MEMO: OnceLock<Mutex<foldhash::HashMap<String, Checked>>> = OnceLock::new();
        MEMO.get_or_init(Mutex::default)
    }

    /// The element checked, from the memo when it was checked before.
    pub(in crate::manifest::validate) fn check(element: &str) -> Checked {
        let fresh = || {
            let problem = super::template_problem(element);
            let uses_weight = problem.is_none() && super::uses_weight(element);
            Checked { problem, uses_weight }
        };
        if element.len() > MAX_REMEMBERED_LEN {
            return fresh();
        }
        // A poisoned lock only means another thread panicked mid-insert: check afresh.
        if let Some(known) = memo().lock().ok().and_then(|memo| memo.get(element).cloned()) {
            return known;
        }
        let checked = fresh();
        if let Ok(mut memo) = memo().lock() {
            if memo.len() >= MAX_REMEMBERED {
                memo.clear();
            }
            memo.insert(element.to_string(), checked.clone());
        }
        checked
    }

    /// Whether the memo holds an answer for `element` (for tests).
    #[cfg(test)]
    pub(in crate::manifest::validate) fn holds(element: &str) -> bool {
        memo().lock().is_ok_and(|memo| memo.contains_key(element))
    }

    /// How many answers the memo holds (for tests).
    #[cfg(test)]
    pub(in crate::manifest::validate) fn len() -> usize {
        memo().lock().map_or(0, |memo| memo.len())
    }
}

#[cfg(test)]
mod tests {
    use super::remembered::{self, MAX_REMEMBERED, MAX_REMEMBERED_LEN};
    use super::{template_problem, uses_weight};

    /// Issue #17: a remembered answer is the one a fresh check gives, for every kind of element
    /// (the second call of each comes from the memo), and the memo never holds more than its
    /// bound nor an element over its length limit.
    #[test]
    fn remembered_checks_answer_as_fresh_ones_and_stay_bounded() {
        let long_bad = format!("{{{{ nope }}}}{}", "x".repeat(MAX_REMEMBERED_LEN));
        let elements = [
            "deploy.sh".to_string(),
            "{{ target.name }}".to_string(),
            "{{ nope }}".to_string(),
            "{% include 'x' %}".to_string(),
            "{{ weight }}".to_string(),
            "{{ target.name".to_string(),
            long_bad.clone(),
        ];
        for element in &elements {
            for _ in 0..2 {
                let checked = remembered::check(element);
                assert_eq!(checked.problem, template_problem(element), "{element}");
                assert_eq!(
                    checked.uses_weight,
                    checked.problem.is_none() && uses_weight(element),
                    "{element}"
                );
            }
        }
        assert!(remembered::check("{{ nope }}").problem.is_some());
        assert!(remembered::check("{{ weight }}").uses_weight);
        assert!(remembered::check(&long_bad).problem.is_some());
        assert!(!remembered::holds(&long_bad));
        assert!(remembered::holds("{{ nope }}"));
        for i in 0..MAX_REMEMBERED + 10 {
            remembered::check(&format!("{{{{ target.name }}}}-{i}"));
            assert!(remembered::len() <= MAX_REMEMBERED);
        }
    }
}
