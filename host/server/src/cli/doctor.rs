//! `toolgate doctor`: the security guide's pre-deployment checklist as a command. Each check is
//! `ok`, `warn` (worth a look, not a failure) or `FAIL` with the reason; the last line says
//! whether the installation conforms, and so does the exit code (0 only when no check failed).
//! `--json` prints the same as one document: `{"conforming", "checks": [{"name", "status",
//! "message"}]}`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, Mode};
use toolgate_auth::token::SecretStrength;
use toolgate_core::MemoryAuditSink;
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_governance::audit;
use toolgate_sandbox::{
    self, Availability, ExecOrigin, ExecRequest, ExecuteMode, Executor, ProfileConfig, SecureExecutor, WorkspaceAccess,
};
use toolgate_store::{DB_FILE, Store};

/// Arguments of `toolgate doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

/// Outcome of one check.
#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    message: String,
}

fn check(name: &'static str, ok: bool, message: impl Into<String>) -> Check {
    Check { name, status: if ok { Status::Ok } else { Status::Fail }, message: message.into() }
}

fn warn(name: &'static str, message: impl Into<String>) -> Check {
    Check { name, status: Status::Warn, message: message.into() }
}

/// Run `toolgate doctor`.
pub async fn run(args: Args, config: Config) -> anyhow::Result<ExitCode> {
    let mut checks = runtime_variables(&config);
    checks.push(match toolgate_sandbox::validate(&config.sandbox, config.mode) {
        Ok(_) => check("sandbox configuration", true, "accepted at start-up"),
        Err(e) => check("sandbox configuration", false, e.to_string()),
    });
    checks.push(workspace(&config));
    checks.extend(docker_checks(&config).await);
    checks.extend(granted_profiles(&config).await);
    checks.extend(system_checks(&config).await);
    checks.push(secret(&config));
    checks.push(logging(&config, |name| std::env::var(name).ok()));
    checks.push(https(&config));
    checks.push(match crate::http::ratelimit::RateLimiters::new(&config.http.rate_limits) {
        Ok(_) => {
            let r = &config.http.rate_limits;
            let show = |l: &crate::http::ratelimit::RateLimit| format!("{}/{} s", l.requests, l.period_secs);
            let detail = format!(
                "login {}, register {}, exec {}, general {} per address and per user",
                show(&r.login),
                show(&r.register),
                show(&r.exec),
                show(&r.general)
            );
            check("rate limits", true, detail)
        }
        Err(e) => check("rate limits", false, e),
    });
    checks.push(check(
        "security events and audit",
        true,
        "always on: security events on stderr as JSON lines, every decision and command in the audit log",
    ));
    checks.push(data_dir(&config));
    checks.push(audit_chain(&config).await);
    let wildcard = config.cors_origins.iter().any(|o| o.contains('*'));
    checks.push(check(
        "cors origins",
        !wildcard,
        if wildcard {
            format!("a wildcard is allowed: {:?}", config.cors_origins)
        } else if config.cors_origins.is_empty() {
            "no cross-origin access".to_owned()
        } else {
            format!("{:?}", config.cors_origins)
        },
    ));

    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if args.json {
        let doc = serde_json::json!({ "conforming": failed == 0, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for c in &checks {
            let status = match c.status {
                Status::Ok => "ok",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{status:<5} {}: {}", c.name, c.message);
        }
        if failed == 0 {
            println!("conforming: all {} checks passed", checks.len());
        } else {
            println!("NOT CONFORMING: {failed} of {} checks failed", checks.len());
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Where the shipped polkit rules are installed (`deploy/README.md`).
const POLKIT_RULES: &str = "/etc/polkit-1/rules.d/50-toolgate.rules";

/// The host system the systemd, apt and disk tools act on: systemd over the bus, PackageKit, the
/// polkit rules for this user, the journal `systemd_logs` reads. A missing piece is a warning
/// (those tools answer `unavailable`); polkit rules that differ from what the policy's lists
/// give are a failure: they may let this user do more than the policy says.
async fn system_checks(config: &Config) -> Vec<Check> {
    use toolgate_system::{Services, SystemBus, SystemError};
    let bus = SystemBus::new(&config.system);
    let mut checks = Vec::new();
    checks.push(match bus.status("dbus.service").await {
        Ok(s) => check("system bus", true, format!("systemd answers over D-Bus (dbus.service {})", s.active_state)),
        Err(e) => warn("system bus", format!("{e}: systemd_status and systemd_restart answer `unavailable`")),
    });
    checks.push(match bus.status("packagekit.service").await {
        Ok(s) => check("packagekit", true, format!("packagekit.service {} ({})", s.load_state, s.active_state)),
        Err(SystemError::NotFound(_)) => warn(
            "packagekit",
            "packagekit.service is not installed: apt_update and apt_install answer `unavailable` \
             (apt-get install packagekit)",
        ),
        Err(e) => warn("packagekit", format!("{e}: apt_update and apt_install answer `unavailable`")),
    });
    checks.push(polkit_rules(config));
    checks.push(journal(config));
    checks
}

/// The installed polkit rules against `toolgate deploy polkit` for this user and policy.
fn polkit_rules(config: &Config) -> Check {
    const NAME: &str = "polkit rules";
    let user = std::env::var("USER").unwrap_or_else(|_| "toolgate".into());
    let wanted = std::fs::read_to_string(config.policy.dir.join("data.json"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
        .and_then(|data| super::deploy::polkit_rules(&data, &user).map_err(|e| format!("{e:#}")));
    let wanted = match wanted {
        Ok(wanted) => wanted,
        Err(e) => return warn(NAME, format!("cannot derive them from the policy's data.json: {e}")),
    };
    match std::fs::read_to_string(POLKIT_RULES) {
        Ok(installed) if installed == wanted => {
            check(NAME, true, format!("{POLKIT_RULES} matches the policy's lists for user `{user}`"))
        }
        Ok(_) => check(
            NAME,
            false,
            format!("{POLKIT_RULES} differs from the policy's lists: regenerate it with `toolgate deploy polkit`"),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warn(
            NAME,
            format!("{POLKIT_RULES} is missing: polkit refuses systemd_restart and apt_install (`permission_denied`)"),
        ),
        Err(e) => {
            warn(NAME, format!("cannot read {POLKIT_RULES} ({e}); compare it with `toolgate deploy polkit` as root"))
        }
    }
}

/// What the `journal` profile needs on this host: its group and a journal to mount.
fn journal(config: &Config) -> Check {
    const NAME: &str = "journal";
    let Some(profile) = config.sandbox.profiles.get("journal") else {
        return warn(NAME, "no `journal` sandbox profile: systemd_logs answers `unavailable`");
    };
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let missing: Vec<&String> = profile
        .groups
        .iter()
        .filter(|g| {
            !g.bytes().all(|b| b.is_ascii_digit()) && !groups.lines().any(|l| l.split(':').next() == Some(g.as_str()))
        })
        .collect();
    if !missing.is_empty() {
        return warn(NAME, format!("group {missing:?} of the `journal` profile does not exist on this host"));
    }
    let journals: Vec<String> = profile
        .mounts
        .iter()
        .filter(|m| m.target.ends_with("/journal") && m.source.is_dir())
        .map(|m| m.source.display().to_string())
        .collect();
    if journals.is_empty() {
        return warn(NAME, "no journal directory to mount (/var/log/journal, /run/log/journal)");
    }
    check(
        NAME,
        true,
        format!("{} read-only as groups {:?}, image `{}`", journals.join(", "), profile.groups, profile.image),
    )
}

/// Length and strength of the signing secret; never the secret itself.
fn secret(config: &Config) -> Check {
    let strength = SecretStrength::of(config.jwt_secret.expose());
    let shown = format!(
        "{} characters, {} distinct, about {} bits",
        strength.chars,
        strength.distinct,
        strength.bits().floor() as u64
    );
    match strength.check() {
        Ok(()) => check("jwt secret", true, shown),
        Err(e) => check("jwt secret", false, format!("{shown}: {e}")),
    }
}

/// No debug logging in production: `TOOLGATE_LOG` (and `RUST_LOG`, which other tools read) at
/// `debug` or `trace` would log what requests carry.
fn logging(config: &Config, env: impl Fn(&str) -> Option<String>) -> Check {
    let verbose = ["TOOLGATE_LOG", "RUST_LOG"].into_iter().find_map(|name| {
        let value = env(name)?;
        let lower = value.to_ascii_lowercase();
        (lower.contains("debug") || lower.contains("trace")).then(|| format!("{name}=`{value}`"))
    });
    match (verbose, config.mode) {
        (None, _) => check("logging", true, "no debug logging"),
        (Some(v), Mode::Production) => check("logging", false, format!("{v}: debug logging in production")),
        (Some(v), Mode::Development) => warn("logging", format!("{v}: debug logging (development mode)")),
    }
}

/// HTTPS: served over TLS, or behind a declared TLS proxy.
fn https(config: &Config) -> Check {
    let http = &config.http;
    if !http.tls_cert.is_empty() && !http.tls_key.is_empty() {
        return check("https", true, format!("tls with `{}`", http.tls_cert));
    }
    if !http.trusted_proxies.is_empty() {
        return check(
            "https",
            true,
            format!("behind the trusted proxies {:?}, which must terminate tls", http.trusted_proxies),
        );
    }
    check(
        "https",
        false,
        "plain http: set `http.tls_cert` and `http.tls_key`, or declare the tls proxy in `http.trusted_proxies`",
    )
}

/// The workspace as start-up will check it (not created here when missing).
fn workspace(config: &Config) -> Check {
    let path = &config.sandbox.workspace;
    if std::fs::symlink_metadata(path).is_err() {
        return warn("sandbox workspace", format!("`{}` does not exist yet (created at start-up)", path.display()));
    }
    match toolgate_sandbox::check_workspace(path, &crate::gateway::protected_dirs(config)) {
        Ok(real) => check("sandbox workspace", true, format!("`{}`", real.display())),
        Err(e) => check("sandbox workspace", false, e.to_string()),
    }
}

/// The data directory (accounts, tokens, the audit log) is its owner's only.
fn data_dir(config: &Config) -> Check {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = &config.data_dir;
    match std::fs::metadata(dir) {
        Err(e) => warn("data directory", format!("`{}`: {e} (created at start-up)", dir.display())),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            check(
                "data directory",
                mode & 0o077 == 0,
                format!("`{}` has mode {mode:04o} (0700 required: only its owner may enter it)", dir.display()),
            )
        }
    }
}

/// The audit log's hash chain, as `toolgate audit verify` checks it.
async fn audit_chain(config: &Config) -> Check {
    if !Path::new(&config.data_dir).join(DB_FILE).exists() {
        return warn("audit chain", "no store yet (nothing to verify)");
    }
    let store = match Store::open(&config.data_dir) {
        Ok(store) => store,
        Err(e) => return warn("audit chain", format!("cannot open the store (a running server holds it): {e}")),
    };
    let key = match super::audit::chain_key(config) {
        Ok(key) => key,
        Err(e) => return check("audit chain", false, format!("no key to verify it with: {e}")),
    };
    match store.call(move |store| audit::verify(store, &key, None)).await {
        Ok(report) => match report.broken {
            None => check("audit chain", true, format!("intact, {} entries", report.entries)),
            Some(b) => check("audit chain", false, format!("broken at entry {}: {}", b.seq, b.reason)),
        },
        Err(e) => check("audit chain", false, format!("cannot be read: {e}")),
    }
}

/// The security guide's runtime variables, each against its required value.
fn runtime_variables(config: &Config) -> Vec<Check> {
    let s = &config.sandbox;
    let mode = match config.mode {
        Mode::Production => check("mode", true, "production"),
        Mode::Development => check("mode", false, "development: weak settings are accepted"),
    };
    let verify = config.governance.verify_required;
    vec![
        mode,
        check(
            "EXECUTE_MODE",
            s.execute_mode == ExecuteMode::Sandbox,
            format!("{:?} (sandbox required)", s.execute_mode).to_lowercase(),
        ),
        check(
            "ALLOW_DIRECT_FALLBACK",
            !s.allow_direct_fallback,
            format!("{} (false required)", s.allow_direct_fallback),
        ),
        check("SANDBOX_NETWORK", s.network == "none", format!("{} (none required)", s.network)),
        check("SANDBOX_READONLY", s.readonly, format!("{} (true required)", s.readonly)),
        check("VERIFY_REQUIRED", verify, format!("{verify} (true required)")),
    ]
}

/// Docker reachable, then a real `echo OK` in a sandbox with no network.
/// Every sandbox profile a plugin is granted (`exec:<profile>`) must be able to run here: a
/// granted tool that cannot work fails the check, naming the plugin and what is missing.
async fn granted_profiles(config: &Config) -> Vec<Check> {
    const NAME: &str = "granted profiles";
    let mut granted: std::collections::BTreeMap<&str, Vec<&str>> = std::collections::BTreeMap::new();
    for (plugin, settings) in &config.plugins.plugin {
        for profile in settings.grants.iter().filter_map(|g| g.strip_prefix("exec:")) {
            granted.entry(profile).or_default().push(plugin);
        }
    }
    if config.sandbox.execute_mode == ExecuteMode::Direct {
        return vec![warn(NAME, "EXECUTE_MODE=direct: profiles are not used")];
    }
    let mut sandbox_config = config.sandbox.clone();
    sandbox_config.pool_size = 0;
    let executor = SecureExecutor::connect(&sandbox_config, Arc::new(MemoryAuditSink::default())).await;
    // Without a sandbox the `docker` check fails already, and says why.
    if let Availability::Unavailable(_) = executor.availability() {
        return Vec::new();
    }
    let (mut fine, mut broken) = (Vec::new(), Vec::new());
    for (profile, plugins) in granted {
        match executor.profile_problem(profile).await {
            None => fine.push(format!("`{profile}`")),
            Some(problem) => broken.push(format!("`exec:{profile}` (granted to {}): {problem}", plugins.join(", "))),
        }
    }
    executor.shutdown().await;
    if broken.is_empty() {
        vec![check(NAME, true, format!("{} can run here", fine.join(", ")))]
    } else {
        vec![check(NAME, false, format!("the tools of these grants cannot work: {}", broken.join("; ")))]
    }
}

async fn docker_checks(config: &Config) -> Vec<Check> {
    let mut sandbox_config = config.sandbox.clone();
    sandbox_config.execute_mode = ExecuteMode::Sandbox;
    sandbox_config.pool_size = 0;
    let profile = ProfileConfig {
        network: "none".into(),
        workspace: WorkspaceAccess::None,
        ..sandbox_config.profiles.get("default").cloned().unwrap_or_default()
    };
    sandbox_config.profiles = [("doctor".to_owned(), profile)].into();
    let executor = SecureExecutor::connect(&sandbox_config, Arc::new(MemoryAuditSink::default())).await;
    let image = match executor.availability() {
        Availability::Sandbox { image } => image,
        Availability::Unavailable(reason) => return vec![check("docker", false, reason)],
        Availability::Direct => return vec![check("docker", false, "sandbox mode could not be selected")],
    };
    let mut checks = vec![check("docker", true, format!("reachable, sandbox image {image}"))];
    let request = ExecRequest {
        argv: vec!["echo".into(), "OK".into()],
        profile: "doctor".into(),
        timeout: Some(Duration::from_secs(30)),
        origin: ExecOrigin {
            caller: Caller {
                name: "doctor".into(),
                role: Role::Viewer,
                auth_method: AuthMethod::Local,
                source_ip: None,
            },
            plugin: "doctor".into(),
            tool: "doctor".into(),
            action_id: "doctor".into(),
            secrets: Default::default(),
        },
    };
    checks.push(match executor.exec(request).await {
        Ok(out) if out.exit_code == 0 && out.stdout == "OK\n" => {
            check("sandboxed echo", true, format!("`echo OK` answered in {:?} with network none", out.duration))
        }
        Ok(out) => check(
            "sandboxed echo",
            false,
            format!("exit {}, stdout {:?}, stderr {:?}", out.exit_code, out.stdout, out.stderr),
        ),
        Err(e) => check("sandboxed echo", false, e.to_string()),
    });
    executor.shutdown().await;
    checks
}
