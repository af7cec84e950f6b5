//! `toolgate users`. SCAFFOLD: to be replaced by its issue's implementation.

use std::process::ExitCode;

use crate::config::Config;

/// Arguments of `toolgate users`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {}

/// Run `toolgate users`.
pub async fn run(_args: Args, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toolgate users` is not built yet")
}
