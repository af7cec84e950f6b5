//! `toolgate doctor`. SCAFFOLD: to be replaced by its issue's implementation.

use std::process::ExitCode;

use crate::config::Config;

/// Arguments of `toolgate doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `toolgate doctor`.
pub async fn run(_args: Args, _config: Config) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toolgate doctor` is not built yet")
}
