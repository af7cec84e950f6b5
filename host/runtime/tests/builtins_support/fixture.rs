//! The real pieces of a deployment, assembled per test: the built-in plugins from
//! `<target>/plugins/` (`cargo xtask plugins`), the repo's `policies/` as the exec policy, a
//! [`SecureExecutor`] on the real Docker engine whose `default` profile runs the project's
//! busybox image and whose `host-net` profile is the embedded default's, a [`DockerEngine`], and
//! this machine's mount table. No system bus: the `services` and `packages` tools answer
//! `unavailable` here; `tests/tests/real_host.rs` runs them against a real Debian system.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, bail};
use toolgate_core::model::{AuthMethod, Caller, Role, ToolName};
use toolgate_core::{AuditSink, MemoryAuditSink};
use toolgate_policy::{PolicyConfig, PolicyEngine};
use toolgate_runtime::{
    CallContext, HostServices, Invocation, PluginError, PluginRuntime, PluginSettings, PluginsConfig, ToolErrorKind,
    Verdict,
};
use toolgate_sandbox::{
    DockerEngine, HOST_NET_TARGET, MountConfig, ProfileConfig, SandboxConfig, SecureExecutor, ensure_image,
};
use toolgate_system::HostFilesystems;

/// Label on every container and image the tests create.
pub const TEST_LABEL: &str = "toolgate.test=1";

/// The grants of `plugins/README.md`, as a real deployment configures them.
const GRANTS: [(&str, &[&str]); 8] = [
    ("apt", &["packages-read", "packages-manage"]),
    ("audit", &["audit-read"]),
    ("command", &["exec:default"]),
    ("disk", &["filesystems-read"]),
    ("docker", &["containers-read", "containers-manage"]),
    ("files", &["workspace-read", "workspace-write"]),
    ("network", &["exec:host-net"]),
    ("systemd", &["services-read", "services-manage", "exec:journal"]),
];

fn target_dir() -> anyhow::Result<PathBuf> {
    Ok(Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target dir")?.to_path_buf())
}

fn docker_cli(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output().context("running the docker CLI")?;
    if !out.status.success() {
        bail!("`docker {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The project's sandbox image, built from `/bin/busybox` if missing; once per test process.
pub async fn sandbox_image() -> anyhow::Result<String> {
    static IMAGE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let image = IMAGE
        .get_or_try_init(|| async {
            let docker = toolgate_tests::docker().await?;
            anyhow::Ok(ensure_image(&docker, Path::new("/bin/busybox")).await?)
        })
        .await?;
    Ok(image.clone())
}

/// A container the test started (a docker tool's target, a listener); removed on drop.
pub struct TestContainer {
    pub id: String,
}

impl TestContainer {
    /// Start `argv` in the sandbox image, as nobody, labelled for the tests. `SIGKILL` on stop so
    /// that a restart does not wait 10 s for `sleep` to ignore `SIGTERM`.
    pub fn start(image: &str, name: &str, argv: &[&str]) -> anyhow::Result<TestContainer> {
        TestContainer::start_with(image, name, &["--network", "none"], argv)
    }

    /// With a network namespace of its own (for a listener).
    pub fn start_networked(image: &str, name: &str, argv: &[&str]) -> anyhow::Result<TestContainer> {
        TestContainer::start_with(image, name, &["--network", "bridge"], argv)
    }

    /// With more `docker run` options (`--network` among them).
    pub fn start_with(image: &str, name: &str, options: &[&str], argv: &[&str]) -> anyhow::Result<TestContainer> {
        let mut args = vec!["run", "-d", "--label", TEST_LABEL, "--name", name, "--user", "65534:65534"];
        args.extend(["--stop-signal", "SIGKILL"]);
        args.extend(options);
        args.extend(["--entrypoint", argv[0], image]);
        args.extend(&argv[1..]);
        Ok(TestContainer { id: docker_cli(&args)? })
    }

    /// `{{.State.StartedAt}}`, `{{.State.Running}}`...
    pub fn inspect(&self, format: &str) -> anyhow::Result<String> {
        docker_cli(&["inspect", "--format", format, &self.id])
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = docker_cli(&["rm", "-f", &self.id]);
    }
}

/// The sandbox profiles of a fixture, for [`Fixture::with_profiles`] to change.
pub struct Profiles {
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// The project's sandbox image (busybox only).
    pub base: String,
    /// A directory of the test, removed with the fixture.
    pub scratch: PathBuf,
}

/// One test's deployment.
pub struct Fixture {
    pub runtime: PluginRuntime,
    pub executor: Arc<SecureExecutor>,
    pub audit: Arc<MemoryAuditSink>,
    pub base_image: String,
    /// The workspace, mounted by the profiles and served by the `workspace` interface.
    pub workspace: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// `host_net` is the container whose socket tables the `host-net` profile shows (the host's,
    /// pid 1's, when none).
    pub async fn new(host_net: Option<&TestContainer>) -> anyhow::Result<Fixture> {
        Self::with_profiles(host_net, |_| Ok(())).await
    }

    /// [`Fixture::new`], with `edit` changing the profiles first (`base` is the sandbox image).
    pub async fn with_profiles(
        host_net: Option<&TestContainer>,
        edit: impl FnOnce(&mut Profiles) -> anyhow::Result<()>,
    ) -> anyhow::Result<Fixture> {
        let base_image = sandbox_image().await?;
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let workspace = dir.path().join("workspace");
        for path in [dir.path(), &workspace] {
            std::fs::create_dir_all(path)?;
            // The sandbox runs as nobody: it must reach the workspace.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        let mut profiles = BTreeMap::from([(
            "default".to_owned(),
            ProfileConfig { image: base_image.clone(), ..ProfileConfig::default() },
        )]);
        // The embedded default, as `serve` runs it: the host's `/proc/1/net` read-only, no network.
        let mut host_net_profile =
            SandboxConfig::default().profiles.remove("host-net").context("the default config has `host-net`")?;
        if let Some(listener) = host_net {
            // Another namespace's tables: a container's with a known listener, read by the kernel
            // now and copied (a `/proc` path other than `/proc/1/net` is refused as a mount).
            let pid = docker_cli(&["inspect", "--format", "{{.State.Pid}}", &listener.id])?;
            let tables = dir.path().join("host-net-tables");
            std::fs::create_dir_all(&tables)?;
            std::fs::set_permissions(&tables, std::fs::Permissions::from_mode(0o755))?;
            for table in ["tcp", "tcp6", "udp", "udp6"] {
                let path = tables.join(table);
                std::fs::write(&path, std::fs::read(format!("/proc/{pid}/net/{table}"))?)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
            }
            host_net_profile.mounts =
                vec![MountConfig { source: tables, target: HOST_NET_TARGET.into(), read_only: true, optional: false }];
        }
        profiles.insert("host-net".into(), host_net_profile);
        let mut edited = Profiles { profiles, base: base_image.clone(), scratch: dir.path().to_path_buf() };
        edit(&mut edited)?;
        let profiles = edited.profiles;
        let sandbox =
            SandboxConfig { workspace: workspace.clone(), profiles, pool_size: 0, ..SandboxConfig::default() };
        let audit = Arc::new(MemoryAuditSink::default());
        let executor = Arc::new(SecureExecutor::connect(&sandbox, Arc::clone(&audit) as Arc<dyn AuditSink>).await);
        let policy = PolicyEngine::load(&PolicyConfig {
            dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies"),
            ..PolicyConfig::default()
        })?;
        let services = HostServices {
            executor: Some(Arc::clone(&executor) as _),
            containers: Some(Arc::new(DockerEngine::connect().await)),
            exec_policy: Some(Arc::new(policy)),
            audit: Arc::clone(&audit) as Arc<dyn AuditSink>,
            workspace: workspace.clone(),
            audit_log: None,
            systemd: None,
            packagekit: None,
            filesystems: Some(Arc::new(HostFilesystems::new("/proc/self/mountinfo"))),
        };
        let plugins = target_dir()?.join("plugins");
        if !plugins.join("systemd.wasm").is_file() {
            bail!("`{}` holds no built-in plugins: run `cargo xtask plugins` first", plugins.display());
        }
        let mut config = PluginsConfig { dir: plugins, ..PluginsConfig::default() };
        for (plugin, grants) in GRANTS {
            let grants = grants.iter().map(|g| (*g).to_owned()).collect();
            config.plugin.insert(plugin.into(), PluginSettings { grants, ..PluginSettings::default() });
        }
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
        let runtime = PluginRuntime::load(&config, &cache, services).await?;
        let refused: Vec<String> =
            runtime.report().refused.iter().map(|r| format!("{}: {}", r.file.display(), r.error)).collect();
        if !refused.is_empty() {
            bail!("built-in plugins refused: {refused:?}");
        }
        Ok(Fixture { runtime, executor, audit, base_image, workspace, _dir: dir })
    }

    pub async fn invoke(&self, role: Role, tool: &str, params: serde_json::Value) -> Result<Invocation, PluginError> {
        self.runtime.invoke(&call(role), &name(tool), params).await
    }

    pub async fn verify(
        &self,
        role: Role,
        tool: &str,
        params: &serde_json::Value,
        out: &Invocation,
    ) -> anyhow::Result<Verdict> {
        Ok(self.runtime.verify(&call(role), &name(tool), params, &out.output).await?)
    }

    pub async fn rollback(&self, role: Role, tool: &str, out: &Invocation) -> anyhow::Result<serde_json::Value> {
        let undo = out.undo.as_ref().context("the invocation returned no undo record")?;
        Ok(self.runtime.rollback(&call(role), &name(tool), undo).await?)
    }

    /// Audited commands: what the exec policy decided on and what the executor ran.
    pub fn commands(&self) -> Vec<(String, bool, String)> {
        self.audit
            .events()
            .into_iter()
            .filter(|e| e.kind == "exec" || e.kind == "exec_decision")
            .map(|e| (e.kind, e.allowed, e.command.unwrap_or_default()))
            .collect()
    }

    /// Removes the containers the executor holds (none are pooled: each command makes its own).
    pub async fn shutdown(self) {
        self.executor.shutdown().await;
    }
}

pub fn name(tool: &str) -> ToolName {
    tool.parse().unwrap_or_else(|e| panic!("tool name `{tool}`: {e}"))
}

pub fn call(role: Role) -> CallContext {
    let caller =
        Caller { name: format!("e2e-{role:?}").to_lowercase(), role, auth_method: AuthMethod::ApiKey, source_ip: None };
    CallContext {
        action_id: "0193-e2e-action".into(),
        caller,
        justification: Some("end-to-end test of the built-in tools".into()),
        category: None,
    }
}

/// The error kind and message of a failed call.
pub fn tool_error(result: Result<Invocation, PluginError>) -> (ToolErrorKind, String) {
    match result {
        Err(PluginError::Tool { kind, message, .. }) => (kind, message),
        other => panic!("expected a tool error, got {other:?}"),
    }
}
