//! `toolgate audit verify|export`: check the hash chain of the audit log, or write it out as JSON
//! lines. Both read the store in `data_dir`, which a running server holds open: stop it first (or
//! read `GET /api/v1/audit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::governance::audit;
use crate::store::Store;

/// `toolgate audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Check every entry's hash and link; names the first broken entry (exit 1 when broken).
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// An entry recorded elsewhere earlier, `SEQ:HASH` (a head this command printed): the log
        /// must still hold it, which proves no entry up to it was removed or rewritten.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<audit::Anchor>,
    },
    /// Write every entry, oldest first, as JSON lines (the stored form, hashes included).
    Export {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// Run `toolgate audit`.
pub async fn run(args: Args, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir).with_context(|| {
        format!("cannot open the store in `{}` (a running server holds it: stop it first)", config.data_dir.display())
    })?;
    match args {
        Args::Verify { json, anchor } => {
            let report = store.call(move |store| audit::verify(store, anchor.as_ref())).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                match &report.broken {
                    None => match &report.head {
                        // The head as an anchor: kept elsewhere, `--anchor` later proves the log
                        // still holds it.
                        Some(head) => writeln!(
                            out,
                            "audit log intact: {} entries, head {}:{head}",
                            report.entries, report.entries
                        )?,
                        None => writeln!(out, "audit log intact: empty")?,
                    },
                    Some(b) => writeln!(
                        out,
                        "audit log BROKEN at entry {}: {} ({} entries before it verify)",
                        b.seq, b.reason, report.entries
                    )?,
                }
            }
            Ok(if report.broken.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Args::Export { output } => {
            let count = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
                match output {
                    Some(path) => {
                        let file = std::fs::File::create(&path)
                            .with_context(|| format!("cannot create `{}`", path.display()))?;
                        Ok(audit::export(&store, &mut std::io::BufWriter::new(file))?)
                    }
                    None => Ok(audit::export(&store, &mut std::io::stdout().lock())?),
                }
            })
            .await??;
            eprintln!("exported {count} audit entries");
            Ok(ExitCode::SUCCESS)
        }
    }
}
