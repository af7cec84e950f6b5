//! `toolgate audit verify|adopt|export`: check the keyed chain of the audit log, continue a log
//! chained without the key (or with another) under it, or write the log out as JSON lines. They
//! read the store in `data_dir`, which a running server holds open: stop it first (or read
//! `GET /api/v1/audit`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::{Config, Mode};
use toolgate_governance::audit::{self, ChainKey, KeyError};
use toolgate_store::Store;

/// `toolgate audit ...`
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Check every entry's link with the audit key; names the first broken entry (exit 1 when
    /// broken).
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// An entry recorded elsewhere earlier, `SEQ:HASH` (a head this command or the server
        /// printed): the log must still hold it, which proves no entry up to it was removed or
        /// rewritten, even by someone holding the key.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<audit::Anchor>,
    },
    /// Continue a log chained without the audit key (from before keyed chains) or with another
    /// key under the configured one: checks what can be checked, then appends an adoption entry
    /// signed with the key that pins every entry before it. The server refuses to start on such
    /// a log until then.
    Adopt {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The log must hold this entry, `SEQ:HASH` (an anchor exported earlier): the only check
        /// of entries chained with another key.
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

/// The audit chain's key: `audit.key_file` (checked: outside `data_dir`, private, strong), or in
/// development mode without one a key derived from the JWT secret (generated into `data_dir`
/// when none is configured, so such a key protects nothing against whoever can read it).
pub(crate) fn chain_key(config: &Config) -> anyhow::Result<ChainKey> {
    if !config.audit.key_file.as_os_str().is_empty() {
        return Ok(ChainKey::load_file(&config.audit.key_file, &config.data_dir)?);
    }
    if config.mode != Mode::Development {
        return Err(KeyError::Missing.into());
    }
    let secret = super::serve::jwt_secret(config)?;
    eprintln!(
        "toolgate: development mode: the audit chain's key is derived from the jwt secret; set `TOOLGATE_AUDIT_KEY_FILE` in production"
    );
    Ok(ChainKey::derive(secret.expose()))
}

/// Run `toolgate audit`.
pub async fn run(args: Args, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir).with_context(|| {
        format!("cannot open the store in `{}` (a running server holds it: stop it first)", config.data_dir.display())
    })?;
    match args {
        Args::Verify { json, anchor } => {
            let key = chain_key(&config)?;
            let report = store.call(move |store| audit::verify(store, &key, anchor.as_ref())).await?;
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
        Args::Adopt { json, anchor } => {
            let key = chain_key(&config)?;
            let adopted = tokio::task::spawn_blocking(move || audit::adopt(&store, &key, anchor.as_ref())).await??;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &adopted)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "audit log adopted: head {} continued, new head {}",
                    adopted.previous_head, adopted.head
                )?;
                if let Some(seq) = adopted.unchecked_from {
                    writeln!(
                        out,
                        "entries from {seq} on were chained with another key: their content could not be checked (compare them with an anchor kept elsewhere)"
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
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
