//! A markdown plan that fits a pull request comment: the full plan when it fits, otherwise a
//! summary (roll-ups by component and by a chosen label, release notes, as many target rows as
//! the budget holds) that names everything it left out and where the full plan is.
//!
//! Pure: the caller renders the full plan, decides where it is written and passes its name.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::plan::{Action, Plan, ReleaseNote, Status};

use super::PlanContext;

/// GitHub holds 65,536 characters in a pull request comment (GitLab notes 1,000,000); a byte
/// budget below it is safe for both, since a character is at least one byte.
pub const DEFAULT_MAX_BYTES: usize = 60_000;

/// Room kept for the closing "left out" paragraph, which is written last.
const CLOSING_RESERVE: usize = 1_500;

/// How the markdown must fit.
#[derive(Debug, Clone, Default)]
pub struct Fit {
    /// The most bytes the output may have.
    pub max_bytes: usize,
    /// A target label to roll up by besides the component (`tenant`, `ring`, …).
    pub group_by: Option<String>,
    /// Where the full plan was written, to name in the summary.
    pub full_output: Option<String>,
}

/// The full markdown if it fits (followed by the roll-up tables when `group_by` is set and
/// they fit too), else the summary.
///
/// # Guarantees
/// The result is at most `fit.max_bytes` bytes when `fit.max_bytes` ≥ 4,000 (below that only
/// the header and counts are guaranteed), and every action, violation, rollout and diff that
/// is not shown is counted in its closing paragraph.
pub fn fit_markdown(plan: &Plan, context: &PlanContext, full: &str, fit: &Fit) -> String {
    if full.len() <= fit.max_bytes {
        let Some(label) = &fit.group_by else {
            return full.to_string();
        };
        // The whole plan with the roll-ups after it, if both fit.
        let mut tables = Budget::new(usize::MAX);
        roll_ups(&mut tables, &mut LeftOut::default(), plan, context, Some(label));
        if full.len() + tables.text.len() <= fit.max_bytes {
            return format!("{full}{}", tables.text);
        }
    }
    let too_big = full.len() > fit.max_bytes;
    let mut out = Budget::new(fit.max_bytes.saturating_sub(CLOSING_RESERVE));
    let mut left = LeftOut::default();

    out.always(&header(plan, context));
    if too_big {
        out.always(&format!(
            "\n> The full plan is {} bytes, more than the {} this comment may hold: rows are rolled up below and what was left out is listed at the end.{}\n",
            full.len(),
            fit.max_bytes,
            match &fit.full_output {
                Some(path) => format!(" The full plan is in `{path}`."),
                None => " Run `gantry plan --format markdown --full-output PATH` for the full plan as a file.".to_string(),
            }
        ));
    }

    findings(&mut out, &mut left, "❌ Violations", &plan_violations(plan));
    findings(&mut out, &mut left, "⚠️ Warnings", &plan_warnings(plan));

    roll_ups(&mut out, &mut left, plan, context, fit.group_by.as_deref());
    release_notes(&mut out, &mut left, plan);
    target_rows(&mut out, &mut left, plan);
    left.rollouts = plan
        .rollouts
        .iter()
        .filter(|r| r.waves.len() > 1 || r.halted.is_some())
        .count();
    left.diffs = context.diffs.iter().map(|d| d.path.clone()).collect();

    let mut text = out.text;
    text.push_str(&left.closing(fit, fit.max_bytes.saturating_sub(text.len())));
    text
}

/// The tables by component and, with `group_by`, by that label.
fn roll_ups(out: &mut Budget, left: &mut LeftOut, plan: &Plan, context: &PlanContext, group_by: Option<&str>) {
    out.section("\n### By component\n\n| component | targets | ready | blocked | violations | unchanged | versions |\n|---|---|---|---|---|---|---|\n");
    let by_component = roll_up(plan.actions.iter().map(|a| (a.component.clone(), a)));
    for (component, counts) in &by_component {
        let row = format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            md(component),
            counts.total,
            counts.ready,
            counts.blocked,
            counts.violation,
            counts.noop,
            counts.versions()
        );
        if !out.push(&row) {
            left.component_rows += 1;
        }
    }

    if let Some(label) = group_by {
        out.section(&format!(
            "\n### By `{}`\n\n| {} | targets | ready | blocked | violations | unchanged | components |\n|---|---|---|---|---|---|---|\n",
            md(label),
            md(label)
        ));
        let by_label = roll_up(plan.actions.iter().map(|a| {
            let value = context
                .labels
                .get(&a.target)
                .and_then(|l| l.get(label))
                .map_or_else(|| "(no label)".to_string(), Clone::clone);
            (value, a)
        }));
        for (value, counts) in &by_label {
            let row = format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                md(value),
                counts.total,
                counts.ready,
                counts.blocked,
                counts.violation,
                counts.noop,
                counts.components.len()
            );
            if !out.push(&row) {
                left.label_rows += 1;
            }
        }
    }
}

/// Markdown-safe table cell text.
fn md(value: &str) -> String {
    value.replace('|', "\\|").replace('\n', " ")
}

fn header(plan: &Plan, context: &PlanContext) -> String {
    let mut s = String::from("## gantry plan\n\n");
    if let Some(base) = &plan.base {
        let _ = write!(s, "**base** `{}` → ", &base[..base.len().min(12)]);
    }
    let head = plan.head.as_deref().map_or("none", |h| &h[..h.len().min(12)]);
    let _ = write!(s, "**head** `{head}`");
    if let Some(summary) = &context.head_summary {
        let _ = write!(s, " {}", md(summary));
    }
    let _ = writeln!(s, " · **now** {}", plan.now);
    let violations = plan.summary.violation + plan.violations.len();
    let icon = if violations > 0 {
        "❌"
    } else if plan.summary.blocked > 0 {
        "⏸️"
    } else {
        "✅"
    };
    let _ = writeln!(
        s,
        "\n{icon} **{}** ready · **{}** blocked · **{violations}** violations · {} unchanged{}",
        plan.summary.ready,
        plan.summary.blocked,
        plan.summary.noop,
        if plan.base.is_some() {
            " — only actions that differ from base"
        } else {
            ""
        }
    );
    s
}

fn plan_violations(plan: &Plan) -> Vec<String> {
    let mut lines: Vec<String> = plan.violations.iter().map(finding_line).collect();
    for a in plan.actions.iter().filter(|a| a.status == Status::Violation) {
        for v in &a.violations {
            lines.push(format!("`{}`: {}", a.target, md(v)));
        }
    }
    lines
}

fn plan_warnings(plan: &Plan) -> Vec<String> {
    plan.warnings.iter().map(finding_line).collect()
}

fn finding_line(f: &crate::plan::PlanIssue) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("`{file}:{line}:{}` {}", f.column.unwrap_or(1), md(&f.message)),
        (Some(file), None) => format!("`{file}` {}", md(&f.message)),
        _ => md(&f.message),
    }
}

fn findings(out: &mut Budget, left: &mut LeftOut, title: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.section(&format!("\n### {title}\n\n"));
    for line in lines {
        if !out.push(&format!("- {line}\n")) {
            *left
                .findings
                .entry(title.trim_start_matches(|c: char| !c.is_alphabetic()).to_string())
                .or_default() += 1;
        }
    }
}

fn release_notes(out: &mut Budget, left: &mut LeftOut, plan: &Plan) {
    let mut notes: BTreeMap<(&str, &crate::manifest::Version), &ReleaseNote> = BTreeMap::new();
    for a in &plan.actions {
        for n in a.releases.iter().filter(|n| n.worth_showing()) {
            notes.insert((&a.component, &n.version), n);
        }
    }
    if notes.is_empty() {
        return;
    }
    out.section("\n### Release notes\n\n");
    for ((component, version), n) in notes {
        let mut item = format!("- **{} {version}**", md(component));
        if n.breaking {
            item.push_str(" ⚠️ **breaking**");
        }
        if n.yanked {
            item.push_str(" · yanked");
        }
        if let Some(d) = &n.deprecated {
            let _ = write!(item, " · deprecated: {}", md(d));
        }
        if !n.irreversible.is_empty() {
            let ids: Vec<String> = n.irreversible.iter().map(|id| format!("`{id}`")).collect();
            let _ = write!(item, " · irreversible migrations: {}", ids.join(", "));
        }
        item.push('\n');
        for (section, entries) in &n.changelog {
            for e in entries {
                let _ = writeln!(item, "  - {section}: {}", md(e));
            }
        }
        if !out.push(&item) {
            left.release_notes.push(format!("{component} {version}"));
        }
    }
}

/// Target rows, most urgent first: violations, blocked, then ready; unchanged targets are only
/// counted.
fn target_rows(out: &mut Budget, left: &mut LeftOut, plan: &Plan) {
    let mut rows: Vec<&Action> = plan.actions.iter().filter(|a| a.status != Status::Noop).collect();
    rows.sort_by_key(|a| match a.status {
        Status::Violation => 0,
        Status::Blocked => 1,
        Status::Ready => 2,
        Status::Noop => 3,
    });
    if rows.is_empty() {
        return;
    }
    out.section("\n### Targets\n\n| target | component | action | version | status |\n|---|---|---|---|---|\n");
    for a in rows {
        let version = match (&a.from, &a.to) {
            (None, None) => String::new(),
            (from, to) => format!(
                "{} → {}",
                from.as_ref().map_or_else(|| "—".to_string(), ToString::to_string),
                to.as_ref().map_or_else(|| "—".to_string(), ToString::to_string)
            ),
        };
        let mut status = a.status.to_string();
        for b in &a.blocked_by {
            let _ = write!(status, "<br>{}", b.kind);
            if let Some(at) = b.lifts_at_text() {
                let _ = write!(status, " until {at}");
            }
        }
        let row = format!(
            "| `{}` | {} | {}{}{} | {version} | {status} |\n",
            a.target,
            md(&a.component),
            a.action,
            a.update_type.map(|u| format!(" ({u})")).unwrap_or_default(),
            if a.breaking { " ⚠️ **breaking**" } else { "" },
        );
        if !out.push(&row) {
            *left.targets.entry(a.status.as_str()).or_default() += 1;
        }
    }
}

/// Actions rolled up under one key.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    ready: usize,
    blocked: usize,
    violation: usize,
    noop: usize,
    components: BTreeSet<String>,
    /// `from → to` and how many actions make that move.
    moves: BTreeMap<String, usize>,
}

impl Counts {
    fn versions(&self) -> String {
        const SHOWN: usize = 3;
        let mut parts: Vec<String> = self
            .moves
            .iter()
            .take(SHOWN)
            .map(|(m, n)| format!("{m} ({n})"))
            .collect();
        if self.moves.len() > SHOWN {
            parts.push(format!("… {} more", self.moves.len() - SHOWN));
        }
        parts.join(", ")
    }
}

fn roll_up<'a>(actions: impl Iterator<Item = (String, &'a Action)>) -> BTreeMap<String, Counts> {
    let mut map: BTreeMap<String, Counts> = BTreeMap::new();
    for (key, a) in actions {
        let c = map.entry(key).or_default();
        c.total += 1;
        match a.status {
            Status::Ready => c.ready += 1,
            Status::Blocked => c.blocked += 1,
            Status::Violation => c.violation += 1,
            Status::Noop => c.noop += 1,
        }
        c.components.insert(a.component.clone());
        if a.status != Status::Noop {
            let from = a.from.as_ref().map_or_else(|| "—".to_string(), ToString::to_string);
            let to = a.to.as_ref().map_or_else(|| "—".to_string(), ToString::to_string);
            *c.moves.entry(format!("{} {from} → {to}", a.action)).or_default() += 1;
        }
    }
    map
}

/// Output that refuses what would exceed its limit.
struct Budget {
    text: String,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget {
            text: String::new(),
            limit,
        }
    }

    /// Appends whatever its size (the header: without it the comment means nothing).
    fn always(&mut self, s: &str) {
        self.text.push_str(s);
    }

    /// A section heading: written if it and one more line of about its size fit.
    fn section(&mut self, s: &str) {
        if self.text.len() + 2 * s.len() <= self.limit {
            self.text.push_str(s);
        }
    }

    /// Appends `s` if it fits; says whether it did.
    fn push(&mut self, s: &str) -> bool {
        if self.text.len() + s.len() > self.limit {
            return false;
        }
        self.text.push_str(s);
        true
    }
}

/// What the summary did not show.
#[derive(Debug, Default)]
struct LeftOut {
    /// Target rows not shown, by status.
    targets: BTreeMap<&'static str, usize>,
    component_rows: usize,
    label_rows: usize,
    findings: BTreeMap<String, usize>,
    release_notes: Vec<String>,
    /// Staged or halted rollouts (their wave tables are only in the full plan).
    rollouts: usize,
    /// Paths of changed manifests whose diffs are only in the full plan.
    diffs: Vec<String>,
}

impl LeftOut {
    /// The closing paragraph, at most `room` bytes (names are dropped before counts are).
    fn closing(&self, fit: &Fit, room: usize) -> String {
        let mut items: Vec<String> = Vec::new();
        let rows: usize = self.targets.values().sum();
        if rows > 0 {
            let by: Vec<String> = self.targets.iter().map(|(s, n)| format!("{n} {s}")).collect();
            items.push(format!("{rows} target rows ({})", by.join(", ")));
        }
        for (kind, n) in &self.findings {
            items.push(format!("{n} {}", kind.to_lowercase()));
        }
        if self.component_rows > 0 {
            items.push(format!("{} component rows", self.component_rows));
        }
        if self.label_rows > 0 {
            items.push(format!("{} label rows", self.label_rows));
        }
        if !self.release_notes.is_empty() {
            items.push(format!("release notes of {}", self.release_notes.join(", ")));
        }
        if self.rollouts > 0 {
            items.push(format!("the wave tables of {} staged rollouts", self.rollouts));
        }
        if !self.diffs.is_empty() {
            items.push(format!("the diffs of {} changed manifests", self.diffs.len()));
        }
        if items.is_empty() {
            return String::new();
        }
        let whereabouts = match &fit.full_output {
            Some(path) => format!(" They are in the full plan, `{path}`."),
            None => String::new(),
        };
        let mut text = format!("\n**Left out:** {}.{whereabouts}\n", items.join("; "));
        if text.len() > room {
            // Release note names are the only unbounded part: count them instead.
            items.retain(|i| !i.starts_with("release notes of "));
            if !self.release_notes.is_empty() {
                items.push(format!("release notes of {} releases", self.release_notes.len()));
            }
            text = format!("\n**Left out:** {}.{whereabouts}\n", items.join("; "));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_what_does_not_fit() {
        let mut b = Budget::new(10);
        assert!(b.push("12345"));
        assert!(!b.push("123456"));
        assert!(b.push("12345"));
        assert_eq!(b.text.len(), 10);
    }

    #[test]
    fn closing_counts_rows_by_status_and_names_the_full_plan() {
        let mut left = LeftOut::default();
        left.targets.insert("ready", 400);
        left.targets.insert("blocked", 80);
        left.diffs = vec!["targets/a.yaml".into()];
        let fit = Fit {
            max_bytes: 60_000,
            group_by: None,
            full_output: Some("plan-full.md".into()),
        };
        assert_eq!(
            left.closing(&fit, 10_000),
            "\n**Left out:** 480 target rows (80 blocked, 400 ready); the diffs of 1 changed manifests. They are in the full plan, `plan-full.md`.\n"
        );
        assert_eq!(LeftOut::default().closing(&fit, 10_000), "");
    }

    #[test]
    fn closing_counts_release_notes_when_names_do_not_fit() {
        let left = LeftOut {
            release_notes: (0..200).map(|i| format!("svc-{i} 2.0.0")).collect(),
            ..LeftOut::default()
        };
        let text = left.closing(&Fit::default(), 200);
        assert!(text.contains("release notes of 200 releases"), "{text}");
        assert!(text.len() <= 200, "{text}");
    }
}
