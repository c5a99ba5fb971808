//! `gantry completions SHELL` and `gantry man`: shell completions and a man page generated from
//! the same clap definitions the parser uses.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, Exit, OpsError};

/// Prints the completion script for `shell` on stdout.
///
/// Install, e.g.: `gantry completions bash > ~/.local/share/bash-completion/completions/gantry`,
/// `gantry completions zsh > "${fpath[1]}/_gantry"`,
/// `gantry completions fish > ~/.config/fish/completions/gantry.fish`.
pub fn completions(shell: clap_complete::Shell) -> Result<Exit, OpsError> {
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut command, "gantry", &mut out);
    out.flush()?;
    Ok(Exit::Ok)
}

/// Prints the man page (roff) on stdout: `gantry man > gantry.1 && man ./gantry.1`.
pub fn man() -> Result<Exit, OpsError> {
    let page = clap_mangen::Man::new(Cli::command());
    let mut out = std::io::stdout().lock();
    page.render(&mut out)?;
    out.flush()?;
    Ok(Exit::Ok)
}
