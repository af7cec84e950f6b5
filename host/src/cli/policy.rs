//! `toolgate policy`. SCAFFOLD: to be replaced by its issue's implementation.

use std::process::ExitCode;

/// Subcommands of `toolgate policy`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {}

/// Run `toolgate policy`. Needs no server configuration: it works on policy files.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toolgate policy` is not built yet")
}
