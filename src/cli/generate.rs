//! `stigmer completion SHELL` and `stigmer man`: shell completions
//! (clap_complete) and the manual page (clap_mangen), both generated from
//! the same clap definitions as the CLI itself, so they never drift from
//! it. packaging/install puts them where shells and man(1) look.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::{Cli, CliError};

/// Writes the completion script for `shell` to stdout.
pub(super) fn completion(shell: clap_complete::Shell) -> Result<ExitCode, CliError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "stigmer", &mut out);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Writes stigmer.1 to stdout, or with `dir` the whole set of pages (one per
/// command and subcommand) into it.
pub(super) fn man(dir: Option<&Path>) -> Result<ExitCode, CliError> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                CliError::Other(format!(
                    "cannot write the manual pages to {}: {e}",
                    dir.display()
                ))
            })?;
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out)?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
