//! `toolgate serve`: check the configuration, open the store, start the gateway (sandbox
//! posture, policy set with hot reload, executor, plugins), create the first admin on an empty
//! store, and serve the API until Ctrl-C or SIGTERM.
//!
//! stdout carries exactly two kinds of line a script may read: where the initial admin password
//! was written (`  password file: <path>`, once, on the very first start: the password itself is
//! never printed nor logged, as stdout and stderr end up in journals others read) and
//! `toolgate listening on <url>`. Logs and security events go to stderr; the audit chain's head
//! (`SEQ:HASH`, an anchor to export) is logged at start and at a clean stop.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Config, Mode, Secret};
use crate::gateway::Gateway;
use crate::http::{self, AppState};
use toolgate_auth::{password, token};
use toolgate_core::AuditEvent;
use toolgate_core::model::Role;
use toolgate_governance::Journal;
use toolgate_governance::journal::Write as JournalWrite;
use toolgate_store::{Store, UserRecord};
use toolgate_telemetry::security::{self, Level};

/// File in `data_dir` holding the generated development secret.
const DEV_SECRET_FILE: &str = "jwt-secret.dev";

/// File in `data_dir` holding the initial admin password (0600), written on the first start.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";

/// Arguments of `toolgate serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `toolgate serve`.
pub async fn run(_args: Args, mut config: Config) -> anyhow::Result<ExitCode> {
    config.jwt_secret = jwt_secret(&config)?;
    let key = super::audit::chain_key(&config)?;
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("cannot open the store in `{}`", config.data_dir.display()))?;
    let listen = config.listen.clone();
    // Refuses an unsafe sandbox posture, an invalid policy set, or an audit log not signed with
    // `key`; keeps serving on a policy reload that fails (the last good set stays active).
    let gateway = Arc::new(Gateway::start(&config, &store, key).await?);
    log_audit_head(&store, "start");
    let _policy_watcher = gateway.policy.watch()?;
    // Validates the rest of the configuration before anything is written.
    let state = AppState::new(config, store.clone(), gateway.clone())?;
    // Before serving, once the whole configuration is known to be valid: actions a crash
    // interrupted are failed (and rolled back where possible).
    let recovery = gateway.governor.recover().await.context("start-up recovery of interrupted actions failed")?;
    if recovery.failed > 0 || recovery.undo_failed > 0 {
        tracing::warn!(
            failed = recovery.failed,
            rolled_back = recovery.rolled_back,
            undo_failed = recovery.undo_failed,
            "recovered actions interrupted by a previous stop"
        );
    }
    create_initial_admin(&store, &state.gateway.journal, &state.config.data_dir, state.config.auth.scrypt_log_n)
        .await?;
    let app = http::router(state.clone())?;
    let tls = match (state.config.http.tls_cert.as_str(), state.config.http.tls_key.as_str()) {
        ("", "") => None,
        (cert, key) => Some(http::tls::acceptor(Path::new(cert), Path::new(key))?),
    };
    let listener =
        tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on `{listen}`"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "serving");
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("toolgate listening on {scheme}://{addr}");
    std::io::stdout().flush()?;

    let (connections, exempt) = (state.config.http.connections.clone(), state.trusted_proxies.clone());
    tokio::spawn(maintenance(state));
    let served = http::conn::serve(listener, tls, app, connections, exempt, shutdown_signal()).await;
    gateway.shutdown().await;
    log_audit_head(&store, "stop");
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The signing secret: the configured one (at least 64 characters), or in development mode a
/// generated one kept in `data_dir` so tokens survive a restart.
pub(crate) fn jwt_secret(config: &Config) -> anyhow::Result<Secret> {
    let chars = config.jwt_secret.expose().chars().count();
    if chars >= token::MIN_SECRET_CHARS {
        return Ok(config.jwt_secret.clone());
    }
    if config.mode != Mode::Development {
        anyhow::bail!(
            "jwt secret has {chars} characters; at least {} are required: set `jwt_secret` or `TOOLGATE_JWT_SECRET` (or run with `TOOLGATE_MODE=development` to generate one)",
            token::MIN_SECRET_CHARS
        );
    }
    toolgate_store::private_dir(&config.data_dir)?;
    let path = config.data_dir.join(DEV_SECRET_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= token::MIN_SECRET_CHARS
    {
        eprintln!("toolgate: development mode: using the generated jwt secret in `{}`", path.display());
        return Ok(Secret::new(existing.trim()));
    }
    let secret = hex::encode(rand::random::<[u8; 48]>());
    write_private(&path, &secret)?;
    eprintln!(
        "toolgate: development mode: generated a jwt secret and saved it in `{}`; set `TOOLGATE_JWT_SECRET` in production",
        path.display()
    );
    Ok(Secret::new(secret))
}

/// Write a file only its owner can read, created anew (a file already there, whatever its mode,
/// is replaced rather than reused: a mode is set only when a file is created).
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace `{}`", path.display()));
        }
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Log the audit chain's newest entry as an anchor (`SEQ:HASH`) to keep elsewhere.
fn log_audit_head(store: &Store, at: &str) {
    match toolgate_governance::audit::newest(store) {
        Ok(Some(head)) => tracing::info!(at, anchor = %head, "audit chain head"),
        Ok(None) => tracing::info!(at, "audit chain empty"),
        Err(e) => tracing::warn!(at, error = %e, "cannot read the audit chain head"),
    }
}

/// On an empty store, create `admin` with a random password written to a file only this user
/// can read, in `data_dir`; the file's path is printed, never the password.
async fn create_initial_admin(store: &Store, journal: &Journal, data_dir: &Path, log_n: u8) -> anyhow::Result<()> {
    if store.call(|s| s.user_count()).await? > 0 {
        return Ok(());
    }
    let generated = password::generate();
    let pw = generated.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw, log_n)).await??;
    // Written before the account exists: an account whose password nobody has is never made.
    let file = std::path::absolute(data_dir.join(INITIAL_PASSWORD_FILE))?;
    write_private(&file, &format!("{generated}\n"))?;
    let admin = UserRecord::new("admin", hash, Role::Admin);
    store.call(move |s| s.insert_user(&admin)).await?;
    let detail = serde_json::json!({ "user": "admin", "role": "admin", "initial": true });
    security::emit(Level::Info, "user_created", Some("admin"), None, detail.clone());
    let mut event = AuditEvent::new("user_created", true, "user_created");
    event.actor = Some("system".into());
    event.detail = detail;
    journal.submit(vec![JournalWrite::Audit(Box::new(event))]).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "Initial administrator created; its password is in a file only this user can read:")?;
    writeln!(out, "  username: admin")?;
    writeln!(out, "  password file: {}", file.display())?;
    writeln!(out, "Log in, change it with POST /api/v1/auth/password, then delete the file.")?;
    out.flush()?;
    Ok(())
}

/// Every second: expire approvals past their deadline. Every minute: forget expired revocations
/// and idle rate-limit buckets.
async fn maintenance(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    for round in 0u64.. {
        tick.tick().await;
        if let Err(e) = state.gateway.governor.expire_due().await {
            tracing::warn!(error = %e, "expiring approvals failed");
        }
        if round % 60 != 0 {
            continue;
        }
        let now = token::now_secs();
        if let Err(e) = state.store.call(move |s| s.purge_revoked(now)).await {
            tracing::warn!(error = %e, "purging expired revocations failed");
        }
        state.limits.shrink();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
