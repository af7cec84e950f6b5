//! Issue #6 end to end: a CRITICAL `apt_install` of the built-in `apt` plugin through the real
//! binary, the HTTP pipeline, the exec policy and the real Docker sandbox. The `host-admin`
//! profile runs the fake-host image (`tests/images/fake-host/`: fake `apt-get` and `dpkg-query`
//! that record each call and keep the package state in a mounted directory) built on top of the
//! project's sandbox image, so an install, its verify and its rollback change what the next
//! container sees, and the test reads what really ran.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, USER_PASSWORD, client, code, run_cli, send};

/// Where the fake tools record calls and keep state, in the container.
const FAKE_DIR: &str = "/var/log/fake-calls";
/// Label on every image the tests build.
const TEST_LABEL: &str = "toolgate.test=1";
/// Installable in the fake host, not installed, no dependencies (`etc/fake-host/apt-available`).
const PACKAGE: &str = "tree";

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!("`docker {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The fake-host image, built for this test process alone and removed on drop, so that no other
/// test binary loses an image it is using.
struct FakeHostImage {
    tag: String,
}

impl FakeHostImage {
    /// The server builds the project's sandbox image itself on first use: `toolgate doctor` does
    /// that and names it; the fake host goes on top.
    fn build(scratch: &Path) -> anyhow::Result<FakeHostImage> {
        toolgate_tests::require_docker()?;
        let doctor = run_cli(scratch, &[], &["doctor"], "")?;
        let text = String::from_utf8_lossy(&doctor.stdout).into_owned();
        let base = text
            .lines()
            .find_map(|l| l.split_once("sandbox image ").map(|(_, image)| image.trim().to_owned()))
            .with_context(|| format!("`toolgate doctor` named no sandbox image:\n{text}"))?;
        let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("images/fake-host");
        let tag = format!("toolgate-fake-host:governance-apt-{}", std::process::id());
        let arg = format!("BASE={base}");
        let context = context.to_string_lossy();
        docker(&["build", "-q", "--build-arg", &arg, "--label", TEST_LABEL, "-t", &tag, &context])?;
        Ok(FakeHostImage { tag })
    }
}

impl Drop for FakeHostImage {
    fn drop(&mut self) {
        // A killed server may leave the container of its last command, whose removal it had only
        // scheduled: every container of this image is this test's.
        let filter = format!("ancestor={}", self.tag);
        for id in docker(&["ps", "-aq", "--filter", &filter]).unwrap_or_default().split_whitespace() {
            let _ = docker(&["rm", "-f", id]);
        }
        if let Err(e) = docker(&["rmi", &self.tag]) {
            eprintln!("cannot remove the test image: {e}");
        }
    }
}

struct Env {
    server: Server,
    admin: String,
    /// Mounted at [`FAKE_DIR`] in every `host-admin` container.
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    /// A server whose `host-admin` profile runs `image` with a fresh fake-host state mounted
    /// read-write; everything else is the embedded default (as nobody, no network, no workspace).
    async fn start(image: &str) -> anyhow::Result<Env> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("fake-calls");
        // The fake runs as nobody: it must reach the state and write there. Its subdirectories are
        // made here so that the test's user can remove what nobody writes into them.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        for sub in ["", "units", "journal", "dpkg"] {
            let path = state.join(sub);
            std::fs::create_dir_all(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        }
        let config = dir.path().join("toolgate.toml");
        let toml = format!(
            "[sandbox.profiles.host-admin]\nimage = {image:?}\n\n\
             [[sandbox.profiles.host-admin.mounts]]\nsource = {source:?}\ntarget = {FAKE_DIR:?}\nread_only = false\n",
            source = state.display().to_string(),
        );
        std::fs::write(&config, toml)?;
        let config = config.display().to_string();
        // `bob`, made by the host like `admin`, is a second person for the two-person rule.
        let server = Server::start_with_admins(
            &[("TOOLGATE_CONFIG", config.as_str()), ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000")],
            &["admin", "bob"],
        )?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin, state, _dir: dir })
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        send(client().post(self.server.url(path)).bearer_auth(token).json(&body)).await
    }

    async fn get(&self, token: &str, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        send(client().get(self.server.url(path)).bearer_auth(token)).await
    }

    /// The fake tools' record of calls, one line each.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// The audit entries of `action`, oldest first.
    async fn audit_of(&self, action: &str) -> anyhow::Result<Vec<Value>> {
        self.server.audit_of(&self.admin, action).await
    }
}

fn kinds(entries: &[Value]) -> Vec<&str> {
    entries.iter().filter_map(|e| e["kind"].as_str()).collect()
}

/// `(command, argv, exit code)` of the commands that ran, as the `exec` entries tell.
fn commands(entries: &[Value]) -> Vec<(&str, Value, Option<i64>)> {
    entries
        .iter()
        .filter(|e| e["kind"] == "exec")
        .map(|e| {
            (e["command"].as_str().unwrap_or_default(), e["detail"]["argv"].clone(), e["detail"]["exit_code"].as_i64())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_critical_apt_install_waits_for_a_second_admin_runs_once_and_rolls_back() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    // Declared before the server: dropped after it, once no container uses the image.
    let image = FakeHostImage::build(scratch.path())?;
    let env = Env::start(&image.tag).await?;
    let bob = env.server.login("bob", USER_PASSWORD).await?;
    let query = format!("dpkg-query -s {PACKAGE}");
    let install = format!("apt-get install -y -q {PACKAGE}");
    let remove = format!("apt-get remove -y -q {PACKAGE}");
    let (query, install, remove) = (query.as_str(), install.as_str(), remove.as_str());

    // 1. CRITICAL: the call waits for a second admin, and nothing touches the host meanwhile.
    let call = json!({"params": {"package": PACKAGE}, "justification": "operators need tree on web1 for the audit"});
    let (status, body) = env.post(&env.admin, "/api/v1/tools/apt_install/execute", call).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("pending_approval")), "{body}");
    let action = body["action_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(env.calls(), Vec::<String>::new(), "no apt or dpkg call before the approval");

    // 2. Not by the requester; by bob, exactly once, verified by dpkg.
    let approve = format!("/api/v1/approvals/{action}/approve");
    let (status, body) = env.post(&env.admin, &approve, json!({"comment": "lgtm"})).await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "self_approval"), "{body}");
    assert_eq!(env.calls(), Vec::<String>::new(), "a refused approval runs nothing");
    let (status, body) = env.post(&bob, &approve, json!({"comment": "tree is in the approved list"})).await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert_eq!(body["verify"]["ok"], true, "{body}");
    assert_eq!(
        (body["output"]["was_installed"].as_bool(), body["output"]["version"].as_str()),
        (Some(false), Some("2.1.0-1"))
    );
    assert_eq!(body["undo_available"], true, "{body}");
    // Before, install, after, then verify's own query.
    assert_eq!(env.calls(), [query, install, query, query]);
    assert_eq!(std::fs::read_to_string(env.state.join("dpkg").join(PACKAGE))?, "installed 2.1.0-1\n");
    let (status, body) = env.post(&bob, &approve, json!({})).await?;
    assert_eq!((status, code(&body)), (StatusCode::CONFLICT, "not_pending"), "{body}");
    assert_eq!(env.calls().len(), 4, "the second approval ran nothing: {:?}", env.calls());

    // 3. A manual rollback removes the package again.
    let rollback = format!("/api/v1/actions/{action}/rollback");
    let (status, undone) =
        env.post(&env.admin, &rollback, json!({"justification": "the audit is over, remove tree again"})).await?;
    assert_eq!((status, undone["status"].as_str()), (StatusCode::OK, Some("completed")), "{undone}");
    assert_eq!(undone["output"]["installed"], false, "{undone}");
    assert_eq!(undone["output"]["status"], "deinstall ok config-files", "{undone}");
    assert_eq!(env.calls(), [query, install, query, query, remove, query]);
    assert_eq!(std::fs::read_to_string(env.state.join("dpkg").join(PACKAGE))?, "config-files 2.1.0-1\n");
    let (_, stored) = env.get(&env.admin, &format!("/api/v1/actions/{action}")).await?;
    assert_eq!(stored["status"], "rolled_back", "{stored}");
    assert_eq!(stored["rolled_back_by"], undone["action_id"]);
    assert_eq!(stored["approval"]["decided_by"], "bob");

    // 4. The audit log tells it all: the request, bob's approval, each command with its argv and
    //    exit code (dpkg knew nothing of the package before), the outcome.
    let audit = env.audit_of(&action).await?;
    let steps: Vec<&str> = kinds(&audit).into_iter().filter(|k| !k.starts_with("exec")).collect();
    assert_eq!(steps, ["approval_requested", "approval_granted", "action_completed"], "{audit:?}");
    assert_eq!(kinds(&audit).last(), Some(&"action_completed"), "every command came before the outcome");
    assert_eq!(
        (audit[1]["actor"].as_str(), audit[1]["detail"]["comment"].as_str()),
        (Some("bob"), Some("tree is in the approved list"))
    );
    let argv = |c: &str| json!(c.split(' ').collect::<Vec<_>>());
    assert_eq!(
        commands(&audit),
        [
            (query, argv(query), Some(1)),
            (install, argv(install), Some(0)),
            (query, argv(query), Some(0)),
            (query, argv(query), Some(0)),
        ]
    );
    for exec in audit.iter().filter(|e| e["kind"] == "exec") {
        assert_eq!((exec["detail"]["profile"].as_str(), exec["actor"].as_str()), (Some("host-admin"), Some("admin")));
    }
    let undo_action = undone["action_id"].as_str().unwrap_or_default();
    let undo_audit = env.audit_of(undo_action).await?;
    let undo_kinds: Vec<&str> = kinds(&undo_audit).into_iter().filter(|k| !k.starts_with("exec")).collect();
    assert_eq!(undo_kinds, ["rollback_started", "rollback_completed"], "{undo_audit:?}");
    // dpkg keeps the configuration files of a removed package: it still knows it, exit 0.
    assert_eq!(commands(&undo_audit), [(remove, argv(remove), Some(0)), (query, argv(query), Some(0))]);
    Ok(())
}
