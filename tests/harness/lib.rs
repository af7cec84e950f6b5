//! End-to-end test support: start the real `toolgate` binary on a free port with its own data
//! directory, read what it prints, and talk HTTP to it; and the check every test that needs the
//! Docker engine makes first ([`docker`], [`require_docker`]).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

/// A signing secret long enough for production mode.
pub const SECRET: &str = "e2e-secret-0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// The password test accounts get ([`Server::add_user`], [`Server::start_with_admins`]).
pub const USER_PASSWORD: &str = "Str0ng-Passw0rd!";

/// The audit chain key every test server shares (production mode requires one).
pub const AUDIT_KEY: &str = "3f9a6c1e8b2d47f0a5c3e9b1d7f2468ace13579bdf02468ace13579bdf024681";

/// A file holding [`AUDIT_KEY`], readable by its owner only, outside every data directory:
/// `<target>/test-audit-key`, written once per test process (atomically: several test processes
/// may write it at once, always with the same content).
pub fn audit_key_file() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = plugins_dir().with_file_name("test-audit-key");
        let written = (|| -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
            let mut file =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            file.write_all(AUDIT_KEY.as_bytes())?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            eprintln!("cannot write the test audit key `{}`: {e}", path.display());
        }
        path
    })
    .clone()
}

/// The `toolgate` binary, built once per test process. `TOOLGATE_BIN` overrides it.
pub fn binary() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TOOLGATE_BIN") {
            return Ok(PathBuf::from(bin));
        }
        // target/<profile>/deps/<test> → target/<profile>
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let profile_dir = exe.parent().and_then(Path::parent).ok_or("test binary has no target directory")?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().ok_or("no workspace root")?;
        let mut cmd = Command::new(cargo);
        cmd.current_dir(root).args(["build", "--quiet", "-p", "toolgate-server", "--bin", "toolgate"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!("building toolgate failed: {status}"));
        }
        Ok(profile_dir.join("toolgate"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A running server, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The initial admin password, if this start created it: read from the file whose path it
    /// printed (never printed itself).
    pub admin_password: Option<String>,
    /// Everything printed on stdout before the listening line.
    pub stdout: String,
    data_dir: Option<tempfile::TempDir>,
    stderr_path: PathBuf,
}

/// The repository's default policy set.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A copy of the repository's policy set under `dir`, with the exec allowlists of the test
/// fixtures (`tests/fixtures/<name>/policy-data.json`, their `tools`) added to its data: the
/// shipped `data.json` names built-in tools only. Returns the copy's directory.
pub fn policies_with_fixtures(dir: &Path) -> anyhow::Result<PathBuf> {
    let copy = copy_of_policies(dir)?;
    let data_path = copy.join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    for entry in std::fs::read_dir(&fixtures)? {
        let extra = entry?.path().join("policy-data.json");
        if !extra.exists() {
            continue;
        }
        let extra: Value = serde_json::from_str(&std::fs::read_to_string(&extra)?)
            .with_context(|| format!("parsing {}", extra.display()))?;
        let tools = data["tools"].as_object_mut().context("`tools` of the shipped data")?;
        for (name, entry) in extra["tools"].as_object().into_iter().flatten() {
            tools.insert(name.clone(), entry.clone());
        }
    }
    std::fs::write(&data_path, serde_json::to_string_pretty(&data)?)?;
    Ok(copy)
}

/// A copy of the repository's policy set at `dir/policies`, to change on purpose.
pub fn copy_of_policies(dir: &Path) -> anyhow::Result<PathBuf> {
    let copy = dir.join("policies");
    copy_tree(&policies_dir(), &copy)?;
    Ok(copy)
}

/// Copy the tree `from` to `to`, readable by everyone (directories 0755, files 0644), so that a
/// server running as another user ([`service_user`]) reads it too.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
        }
    }
    Ok(())
}

/// Where `cargo xtask plugins` puts the built-in plugins: `<target>/plugins`.
pub fn plugins_dir() -> PathBuf {
    // target/<profile>/deps/<test> → target
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors().nth(3).map_or_else(|| PathBuf::from("target"), Path::to_path_buf).join("plugins")
}

/// Environment every test server gets unless overridden: production mode, a valid secret, the
/// shared audit key ([`audit_key_file`]),
/// cheap scrypt so logins do not dominate test time, the repository's policies, the built-in
/// plugins, and no warm sandbox pool (each server would otherwise keep containers running).
pub fn base_env() -> Vec<(String, String)> {
    let dirs = [
        ("TOOLGATE_POLICY_DIR".to_owned(), policies_dir().display().to_string()),
        ("TOOLGATE_PLUGINS_DIR".to_owned(), plugins_dir().display().to_string()),
        // One compile cache for every test server: each would otherwise compile every plugin.
        (
            "TOOLGATE_PLUGINS_CACHE_DIR".to_owned(),
            plugins_dir().with_file_name("test-plugin-cache").display().to_string(),
        ),
        (
            "TOOLGATE_PLUGINS_CACHE_KEY_FILE".to_owned(),
            plugins_dir().with_file_name("test-plugin-cache.key").display().to_string(),
        ),
    ];
    [
        ("TOOLGATE_MODE", "production"),
        ("TOOLGATE_JWT_SECRET", SECRET),
        ("TOOLGATE_LISTEN", "127.0.0.1:0"),
        ("TOOLGATE_AUTH_SCRYPT_LOG_N", "8"),
        ("TOOLGATE_LOG", "warn"),
        ("TOOLGATE_SANDBOX_POOL_SIZE", "0"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .chain(dirs)
    .chain([("TOOLGATE_AUDIT_KEY_FILE".to_owned(), audit_key_file().display().to_string())])
    .collect()
}

/// Run `toolgate <args>` to completion with `env` (plus the data directory) and `stdin`.
pub fn run_cli(
    data_dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: &str,
) -> anyhow::Result<std::process::Output> {
    use std::io::Write;
    let mut cmd = command(data_dir, env)?;
    let mut child = cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn command(data_dir: &Path, env: &[(&str, &str)]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(binary()?);
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(base_env());
    cmd.env("TOOLGATE_DATA_DIR", data_dir);
    cmd.env("TOOLGATE_SANDBOX_WORKSPACE", data_dir.join("workspace"));
    cmd.envs(env.iter().copied());
    Ok(cmd)
}

impl Server {
    /// Start on a fresh data directory with `env` on top of [`base_env`].
    pub fn start(env: &[(&str, &str)]) -> anyhow::Result<Server> {
        Server::start_in(tempfile::tempdir()?, env)
    }

    /// Start on a fresh data directory in which the host itself created the admins `names`
    /// (`toolgate users add`, before the server starts), each with [`USER_PASSWORD`]: accounts
    /// that owe nothing to one another, as the two-person rule needs. Include `admin` for
    /// [`Server::admin_token`].
    pub fn start_with_admins(env: &[(&str, &str)], names: &[&str]) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir()?;
        let twice = format!("{USER_PASSWORD}\n{USER_PASSWORD}\n");
        for name in names {
            let out = run_cli(dir.path(), env, &["users", "add", name, "--role", "admin"], &twice)?;
            anyhow::ensure!(out.status.success(), "users add {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut server = Server::start_in(dir, env)?;
        if names.contains(&"admin") {
            server.admin_password = Some(USER_PASSWORD.to_owned());
        }
        Ok(server)
    }

    /// Start on `data_dir` (e.g. to restart on the same store).
    pub fn start_in(data_dir: tempfile::TempDir, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let cmd = command(data_dir.path(), env)?;
        Server::spawn(cmd, data_dir)
    }

    /// Run `cmd serve`, its stderr in a file of `data_dir`, and wait for its listening line.
    fn spawn(mut cmd: Command, data_dir: tempfile::TempDir) -> anyhow::Result<Server> {
        let stderr_path = data_dir.path().join(format!("stderr-{}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path)?;
        let mut child =
            cmd.arg("serve").stdout(Stdio::piped()).stderr(stderr).spawn().context("cannot start toolgate")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut printed = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("toolgate listening on ") {
                        break url.to_owned();
                    }
                    printed.push_str(&line);
                    printed.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                    bail!("toolgate did not start; stdout:\n{printed}\nstderr:\n{log}");
                }
            }
        };
        let admin_password = match printed.lines().find_map(|l| l.trim().strip_prefix("password file: ")) {
            Some(file) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the initial password file `{file}`"))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        Ok(Server { child, base, admin_password, stdout: printed, data_dir: Some(data_dir), stderr_path })
    }

    /// The data directory.
    pub fn data_path(&self) -> &Path {
        self.data_dir.as_ref().map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the server wrote on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The security events written so far (the JSON lines of stderr).
    pub fn security_events(&self) -> Vec<Value> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("event").is_some())
            .collect()
    }

    /// Log in and return the token.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let res = client()
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("login of {username} failed: {status} {body}");
        }
        body["token"].as_str().map(str::to_owned).context("no token in login response")
    }

    /// Create `name` with `role` as `admin` (a token), with a password that meets the policy, and
    /// log them in; returns their token.
    pub async fn add_user(&self, admin: &str, name: &str, role: &str) -> anyhow::Result<String> {
        let password = USER_PASSWORD;
        let body = serde_json::json!({"username": name, "password": password, "role": role});
        let (status, body) = send(client().post(self.url("/api/v1/users")).bearer_auth(admin).json(&body)).await?;
        anyhow::ensure!(status.is_success(), "creating {name}: {status} {body}");
        self.login(name, password).await
    }

    /// The audit entries of `action` among the newest 1000, oldest first (read as `admin`).
    pub async fn audit_of(&self, admin: &str, action: &str) -> anyhow::Result<Vec<Value>> {
        let (status, body) = send(client().get(self.url("/api/v1/audit?last_n=1000")).bearer_auth(admin)).await?;
        anyhow::ensure!(status.is_success(), "{status} {body}");
        let mut entries: Vec<Value> =
            body["entries"].as_array().into_iter().flatten().filter(|e| e["action_id"] == action).cloned().collect();
        entries.reverse();
        Ok(entries)
    }

    /// Log in as the initial admin.
    pub async fn admin_token(&self) -> anyhow::Result<String> {
        let pw = self.admin_password.clone().context("this start printed no admin password")?;
        self.login("admin", &pw).await
    }

    /// Stop the server cleanly (SIGTERM, as systemd does), wait for it to exit, and hand back its
    /// data directory.
    pub fn terminate(mut self) -> anyhow::Result<tempfile::TempDir> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed: {status}");
        let exited = self.child.wait()?;
        anyhow::ensure!(exited.success(), "toolgate exited with {exited} on SIGTERM");
        self.data_dir.take().context("data directory already taken")
    }

    /// Stop the server and hand back its data directory.
    pub fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.take().context("data directory already taken")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that keeps no cookies (tests set them explicitly).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_else(|_| reqwest::Client::new())
}

/// Send `req` and read the answer: its status and its JSON body (`null` when empty). A body
/// that is not JSON is an error: the API answers JSON everywhere.
pub async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let res = req.send().await?;
    let status = res.status();
    let text = res.text().await?;
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).context(text)? };
    Ok((status, body))
}

/// The error code of an error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

pub mod debian;
mod docker;
pub mod otlp;
pub mod prometheus;
pub mod service_user;

pub use docker::{docker, require_docker};
