//! `toolgate serve`. SCAFFOLD: to be replaced by its issue's implementation.

use std::process::ExitCode;

use crate::config::Config;

/// Arguments of `toolgate serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `toolgate serve`.
pub async fn run(_args: Args, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toolgate serve` is not built yet")
}
