//! `toolgate plugins`. SCAFFOLD: to be replaced by its issue's implementation.

use std::process::ExitCode;

use crate::config::Config;

/// Arguments of `toolgate plugins`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {}

/// Run `toolgate plugins`.
pub async fn run(_args: Args, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toolgate plugins` is not built yet")
}
