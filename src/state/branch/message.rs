//! State commit messages: the summary line, one line per outcome and the trailer block
//! (format in the parent module's documentation, SPEC §4).

use std::fmt::Write as _;

use crate::state::record::Outcome;

use super::write::Batch;

/// Trailer keys, in the order each outcome's block lists them. `Gantry-Target` opens a block.
pub(crate) mod trailer {
    pub const TARGET: &str = "Gantry-Target";
    pub const COMPONENT: &str = "Gantry-Component";
    pub const FROM: &str = "Gantry-From";
    pub const TO: &str = "Gantry-To";
    pub const OUTCOME: &str = "Gantry-Outcome";
    pub const DESIRED_COMMIT: &str = "Gantry-Desired-Commit";
    pub const ATTEMPT: &str = "Gantry-Attempt";
    pub const MESSAGE: &str = "Gantry-Message";
    /// `emergency` for an attempt to an emergency release (issue #16); absent otherwise.
    pub const URGENCY: &str = "Gantry-Urgency";
    /// The emergency release's reason, on one line (not `Gantry-Reason`, which a desired
    /// commit of `gantry rollback --reason` carries).
    pub const EMERGENCY_REASON: &str = "Gantry-Emergency-Reason";
    /// The value of `Gantry-Urgency` for an emergency.
    pub const EMERGENCY: &str = "emergency";
    /// Clustered (`--etcd`): the leadership the outcome was reached under (`shard/member@rev`).
    pub const FENCE: &str = "Gantry-Fence";
    /// The value of `Gantry-From` for an install.
    pub const NO_VERSION: &str = "none";
}

/// The commit message of a batch (format documented in the `state` module).
pub(crate) fn commit_message(batch: &Batch) -> String {
    let mut text = String::new();
    match batch.outcomes.as_slice() {
        [] => {
            let summary = batch.progress_summary.as_deref().map(one_line);
            text.push_str(summary.as_deref().unwrap_or("gantry: record progress"));
            text.push('\n');
            return text;
        }
        [only] => {
            text.push_str(&only.summary());
            text.push('\n');
        }
        several => {
            let counts = [Outcome::Succeeded, Outcome::Failed, Outcome::RolledBack]
                .into_iter()
                .filter_map(|kind| {
                    let n = several.iter().filter(|o| o.outcome == kind).count();
                    (n > 0).then(|| format!("{n} {}", kind.as_str()))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(text, "gantry: {} outcomes ({counts})", several.len());
            text.push('\n');
            for outcome in several {
                text.push_str(&outcome.summary());
                text.push('\n');
            }
        }
    }
    text.push('\n');
    for o in &batch.outcomes {
        let from = o
            .from
            .as_ref()
            .map_or_else(|| trailer::NO_VERSION.to_string(), ToString::to_string);
        let _ = writeln!(text, "{}: {}", trailer::TARGET, o.target);
        let _ = writeln!(text, "{}: {}", trailer::COMPONENT, o.component);
        let _ = writeln!(text, "{}: {from}", trailer::FROM);
        let _ = writeln!(text, "{}: {}", trailer::TO, o.to);
        let _ = writeln!(text, "{}: {}", trailer::OUTCOME, o.outcome.as_str());
        let _ = writeln!(text, "{}: {}", trailer::DESIRED_COMMIT, o.desired_commit);
        let _ = writeln!(text, "{}: {}", trailer::ATTEMPT, o.attempt);
        let reason = one_line(&o.message);
        if !reason.is_empty() {
            let _ = writeln!(text, "{}: {reason}", trailer::MESSAGE);
        }
        if let Some(reason) = &o.emergency {
            let _ = writeln!(text, "{}: {}", trailer::URGENCY, trailer::EMERGENCY);
            let _ = writeln!(text, "{}: {}", trailer::EMERGENCY_REASON, one_line(reason));
        }
        if let Some(fence) = crate::state::fence::trailer() {
            let _ = writeln!(text, "{}: {fence}", trailer::FENCE);
        }
    }
    text
}

/// The text on one line: control characters (newlines included) become spaces, runs of
/// whitespace collapse, and at most 200 characters are kept, so it fits a summary or a trailer.
pub(super) fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 200;
    let mut out = String::new();
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    match out.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}
