//! The real pieces of a deployment, assembled per test: the built-in plugins from
//! `<target>/plugins/` (`cargo xtask plugins`), the repo's `policies/` as the exec policy, a
//! [`SecureExecutor`] on the real Docker engine whose `default`, `systemd` and `host-admin`
//! profiles run the fake-host image (`tests/images/fake-host/`) and whose `host-net` profile is
//! the embedded default's, and a [`DockerEngine`].

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use toolgate_core::model::{AuthMethod, Caller, Role, ToolName};
use toolgate_core::{AuditSink, MemoryAuditSink};
use toolgate_policy::{PolicyConfig, PolicyEngine};
use toolgate_runtime::{
    CallContext, HostServices, Invocation, PluginError, PluginRuntime, PluginSettings, PluginsConfig, ToolErrorKind,
    Verdict,
};
use toolgate_sandbox::{
    DockerEngine, HOST_NET_TARGET, MountConfig, ProfileConfig, SandboxConfig, SecureExecutor, WorkspaceAccess,
    ensure_image,
};

/// Where the fake tools record calls and keep state, in the container.
const FAKE_DIR: &str = "/var/log/fake-calls";
/// Label on every container and image the tests create.
pub const TEST_LABEL: &str = "toolgate.test=1";

/// The grants of `plugins/README.md`, as a real deployment configures them.
const GRANTS: [(&str, &[&str]); 8] = [
    ("apt", &["exec:host-admin"]),
    ("audit", &["audit-read"]),
    ("command", &["exec:default"]),
    ("disk", &["exec:default"]),
    ("docker", &["containers-read", "containers-manage"]),
    ("files", &["workspace-read", "workspace-write"]),
    ("network", &["exec:host-net"]),
    ("systemd", &["exec:systemd"]),
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

/// The project's sandbox image (built from `/bin/busybox` if missing) and the fake-host image on
/// top of it, tagged by the hash of its context so that concurrent builds agree. Built once per
/// test process.
async fn images() -> anyhow::Result<(String, String)> {
    static IMAGES: tokio::sync::OnceCell<(String, String)> = tokio::sync::OnceCell::const_new();
    let pair = IMAGES
        .get_or_try_init(|| async {
            let docker = toolgate_tests::docker().await?;
            let base = ensure_image(&docker, Path::new("/bin/busybox")).await?;
            let context = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/images/fake-host");
            let tag = format!("toolgate-fake-host:{}", context_hash(&context, &base)?);
            if docker_cli(&["image", "inspect", "--format", "{{.Id}}", &tag]).is_err() {
                let context = context.to_string_lossy().into_owned();
                let arg = format!("BASE={base}");
                docker_cli(&["build", "-q", "--build-arg", &arg, "--label", TEST_LABEL, "-t", &tag, &context])?;
            }
            anyhow::Ok((base, tag))
        })
        .await?;
    Ok(pair.clone())
}

/// The project's sandbox image, for the containers a test starts itself.
pub async fn sandbox_image() -> anyhow::Result<String> {
    Ok(images().await?.0)
}

/// SHA-256 of the base tag and every file of the context (path, mode, content), in path order.
fn context_hash(dir: &Path, base: &str) -> anyhow::Result<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() { walk(&path, files)? } else { files.push(path) }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    files.sort();
    let mut hash = Sha256::new();
    hash.update(base.as_bytes());
    for file in files {
        hash.update(file.strip_prefix(dir)?.to_string_lossy().as_bytes());
        hash.update(std::fs::metadata(&file)?.permissions().mode().to_le_bytes());
        hash.update(std::fs::read(&file)?);
    }
    Ok(hex::encode(hash.finalize())[..12].to_owned())
}

/// Tests of this binary done with the fake-host image; the last one to finish removes it.
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// Removes the test image when every test of the binary has finished with it (a filtered run
/// leaves it: it is labelled `toolgate.test=1` and reused by content tag).
struct ImageLease {
    tag: String,
    total: usize,
}

impl Drop for ImageLease {
    fn drop(&mut self) {
        if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == self.total {
            let _ = docker_cli(&["rmi", &self.tag]);
        }
    }
}

/// A container the test started (a docker tool's target, a listener); removed on drop.
pub struct TestContainer {
    pub id: String,
}

impl TestContainer {
    /// Start `argv` in the sandbox image, as nobody, labelled for the tests. `SIGKILL` on stop so
    /// that a restart does not wait 10 s for `sleep` to ignore `SIGTERM`.
    pub fn start(image: &str, name: &str, argv: &[&str]) -> anyhow::Result<TestContainer> {
        let mut args = vec!["run", "-d", "--label", TEST_LABEL, "--name", name, "--user", "65534:65534"];
        args.extend(["--stop-signal", "SIGKILL", "--network", "none", "--entrypoint", argv[0], image]);
        args.extend(&argv[1..]);
        Ok(TestContainer { id: docker_cli(&args)? })
    }

    /// With a network namespace of its own (for a listener).
    pub fn start_networked(image: &str, name: &str, argv: &[&str]) -> anyhow::Result<TestContainer> {
        let mut args = vec!["run", "-d", "--label", TEST_LABEL, "--name", name, "--user", "65534:65534"];
        args.extend(["--stop-signal", "SIGKILL", "--network", "bridge", "--entrypoint", argv[0], image]);
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
    /// Mounted at `/var/log/fake-calls` in the fake-host profiles.
    pub state: PathBuf,
    /// The workspace, mounted by the profiles and served by the `workspace` interface.
    pub workspace: PathBuf,
    _dir: tempfile::TempDir,
    _lease: ImageLease,
}

impl Fixture {
    /// `tests` is how many tests of the binary build a fixture (for the image's removal);
    /// `host_net` is the container whose socket tables the `host-net` profile shows (the host's,
    /// pid 1's, when none).
    pub async fn new(tests: usize, host_net: Option<&TestContainer>) -> anyhow::Result<Fixture> {
        Self::with_profiles(tests, host_net, |_| Ok(())).await
    }

    /// [`Fixture::new`], with `edit` changing the profiles first (`base` is the sandbox image).
    pub async fn with_profiles(
        tests: usize,
        host_net: Option<&TestContainer>,
        edit: impl FnOnce(&mut Profiles) -> anyhow::Result<()>,
    ) -> anyhow::Result<Fixture> {
        let (base_image, fake_image) = images().await?;
        let lease = ImageLease { tag: fake_image.clone(), total: tests };
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let state = dir.path().join("fake-calls");
        let workspace = dir.path().join("workspace");
        for (path, mode) in [(dir.path(), 0o755), (&state, 0o777), (&workspace, 0o755)] {
            std::fs::create_dir_all(path)?;
            // The sandbox runs as nobody: it must reach the workspace and write the fake state.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        }
        let fake = |workspace| ProfileConfig {
            image: fake_image.clone(),
            mounts: vec![MountConfig {
                source: state.clone(),
                target: FAKE_DIR.into(),
                read_only: false,
                optional: false,
            }],
            workspace,
            ..ProfileConfig::default()
        };
        let mut profiles = BTreeMap::from([
            // The fake host's tools in `default` too, so that `run_command` can reach them.
            ("default".to_owned(), fake(WorkspaceAccess::Default)),
            ("systemd".to_owned(), fake(WorkspaceAccess::None)),
            ("host-admin".to_owned(), fake(WorkspaceAccess::None)),
        ]);
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
        Ok(Fixture { runtime, executor, audit, base_image, state, workspace, _dir: dir, _lease: lease })
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

    /// The fake tools' record of calls, one line each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls.log")).unwrap_or_default().lines().map(str::to_owned).collect()
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
