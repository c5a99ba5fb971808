//! `gantry init [DIR]`: writes the bundled example repository (see [`crate::ops::init`]) and
//! says what to try next.

use std::io::Write;
use std::path::Path;

use crate::ops::init::{INITIAL_VERSION, init};

use super::{Cli, Exit, OpsError, now_fixed};

pub fn run(cli: &Cli, dir: &Path) -> Result<Exit, OpsError> {
    let report = init(dir, now_fixed(cli)?)?;
    let shown = dir.display().to_string();
    let repo_arg = if dir == Path::new(".") {
        String::new()
    } else {
        format!("--repo {} ", shell_word(&shown))
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "Initialised an example gantry repository in {shown} (branch main):"
    )?;
    writeln!(
        out,
        "  {}  Initial fleet: billing, ledger and storefront {INITIAL_VERSION} on acme, globex and initech",
        short(report.initial_commit)
    )?;
    writeln!(
        out,
        "            reconciled once: {} targets installed at {INITIAL_VERSION} (state branch gantry/state)",
        report.installed
    )?;
    if report.blocked > 0 || report.failed > 0 {
        writeln!(
            out,
            "            note: {} blocked, {} failed; `gantry {repo_arg}status` says why",
            report.blocked, report.failed
        )?;
    }
    writeln!(
        out,
        "  {}  Upgrade billing to 2.0.0 (and ledger to ^1.0), storefront to 1.1.0 — not applied yet",
        short(report.upgrade_commit)
    )?;
    writeln!(out)?;
    writeln!(out, "Next:")?;
    writeln!(
        out,
        "  gantry {repo_arg}plan      # billing 1.0.0 → 1.2.0 → 1.3.0 → 2.0.0, 4 migrations, canary wave first"
    )?;
    writeln!(
        out,
        "                   # storefront 1.1.0 gets 25 %, 50 %, 100 % of traffic, each held 1 s under health checks"
    )?;
    writeln!(
        out,
        "  gantry {repo_arg}apply     # carry it out; the demo scripts write {shown}/deployed/<target>/"
    )?;
    writeln!(out, "  gantry {repo_arg}status    # every target converged")?;
    writeln!(
        out,
        "  gantry {repo_arg}history   # the outcomes recorded on gantry/state"
    )?;
    Ok(Exit::Ok)
}

fn short(oid: git2::Oid) -> String {
    oid.to_string()[..7].to_string()
}

/// Quotes a path for the "Next:" lines when it has characters a shell would split on.
fn shell_word(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~'))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_word_quotes_only_when_needed() {
        assert_eq!(shell_word("demo"), "demo");
        assert_eq!(shell_word("/tmp/my demo"), "'/tmp/my demo'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
