//! `toolgate users`: manage accounts on this machine (the server must be stopped: the store is
//! locked by a running server; use the API then).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use toolgate_auth::{check_name, password};
use toolgate_core::AuditEvent;
use toolgate_core::model::Role;
use toolgate_governance::Journal;
use toolgate_governance::journal::Write as JournalWrite;
use toolgate_store::{Store, UserRecord};
use toolgate_telemetry::security::{self, Level};

/// Arguments of `toolgate users`.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Create a user. The password is read from a prompt, or twice from stdin when it is not a
    /// terminal (never from a flag: flags end up in shell history and `ps`).
    Add {
        /// User name: `[a-z][a-z0-9._-]{0,63}`.
        name: String,
        /// `viewer`, `operator` or `admin`.
        #[arg(long, default_value = "viewer")]
        role: Role,
    },
    /// List users.
    List,
}

/// Run `toolgate users`.
pub async fn run(args: Args, config: Config) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.data_dir).with_context(|| {
        format!("cannot open the store in `{}` (is `toolgate serve` running?)", config.data_dir.display())
    })?;
    match args {
        Args::Add { name, role } => {
            check_name(&name)?;
            let pw = read_password()?;
            password::check_policy(&pw)?;
            let log_n = config.auth.scrypt_log_n;
            let hash = tokio::task::spawn_blocking(move || password::hash(&pw, log_n)).await??;
            // The account event is an entry of the chain, like the API's: the journal is started
            // (key checked, log continued under it) before anything is stored.
            let journal = Journal::start(store.clone(), super::audit::chain_key(&config)?)?;
            let user = UserRecord::new(name.clone(), hash, role);
            store.call(move |s| s.insert_user(&user)).await?;
            let detail = serde_json::json!({ "user": name, "role": role, "via": "cli" });
            security::emit(Level::Info, "user_created", Some(&name), None, detail.clone());
            let mut event = AuditEvent::new("user_created", true, "user_created");
            event.actor = Some("local".into());
            event.detail = detail;
            journal.submit(vec![JournalWrite::Audit(Box::new(event))]).await?;
            println!("created user `{name}` with role `{role}`");
        }
        Args::List => {
            for user in store.call(|s| s.users()).await? {
                let state = if user.disabled { "disabled" } else { "enabled" };
                println!("{}\t{}\t{}", user.username, user.role, state);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The password, typed twice: from the terminal without echo, or two lines of stdin.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let read = |prompt: &str| -> anyhow::Result<String> {
        if tty {
            eprint!("{prompt}");
            std::io::stderr().flush()?;
            set_echo(false);
        }
        let mut line = String::new();
        let n = stdin.lock().read_line(&mut line);
        if tty {
            set_echo(true);
            eprintln!();
        }
        if n? == 0 {
            anyhow::bail!("no password on stdin: send it twice, one line each");
        }
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    };
    let first = read("Password: ")?;
    let second = read("Repeat password: ")?;
    if first != second {
        anyhow::bail!("the two passwords differ");
    }
    Ok(first)
}

/// Turn terminal echo on or off with `stty`, which reads the terminal from its inherited stdin.
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty").arg(if on { "echo" } else { "-echo" }).status();
}
