//! The Docker backend, through the Engine API (bollard), never the CLI.
//!
//! Fast path: starting a container is what costs (namespaces, the rootfs mount), so each profile
//! keeps a small pool of containers already created and started with an idle `sleep` as their
//! only process. A command takes one, runs as an exec in it, and the container is then destroyed;
//! no container ever runs two commands. The pool refills in the background.
//!
//! Cleanup, also when the host dies mid-run: every container is labelled with its owner (boot id,
//! pid and process start time) and is removed by the next host that starts and finds its owner
//! gone; its idle `sleep` also ends on its own, and `AutoRemove` then deletes it (`cleanup`).
//! The bind mounts of a container are resolved and checked again at each creation (`mounts`).

mod cleanup;
mod mounts;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount};
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::output::{Capped, finished};
use super::{ExecOutput, MANAGED_LABEL, MountConfig, ProfileConfig, SandboxConfig, SandboxError, WorkspaceAccess};
use cleanup::{OWNER_LABEL, owner_id, reap_orphans, remove};
use mounts::{bind, host_mounts};
use toolgate_core::model::Role;

/// Label holding the profile a container was made for.
const PROFILE_LABEL: &str = "toolgate.profile";
/// A pooled container older than this is not used (its `sleep` may be about to end).
const IDLE_BUDGET: Duration = Duration::from_secs(300);
/// Longest wait for a container to be created and started.
const ACQUIRE_DEADLINE: Duration = Duration::from_secs(30);

/// Everything needed to create a container for one profile and one workspace access.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    key: String,
    profile: String,
    body: ContainerCreateBody,
    user: String,
    working_dir: String,
    /// The workspace access actually granted (after the viewer rule).
    pub(crate) access: WorkspaceAccess,
    /// The profile's host mounts as configured: resolved and checked again at each creation.
    mounts: Vec<MountConfig>,
}

/// The numeric ids of a profile's supplementary `groups`: numbers as they are, names looked up in
/// the host's `/etc/group` (the container's own group file does not know the host's groups).
fn host_groups(profile: &str, groups: &[String]) -> Result<Vec<String>, SandboxError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let table = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .iter()
        .map(|group| {
            let gid = if group.bytes().all(|b| b.is_ascii_digit()) {
                Some(group.clone())
            } else {
                table.lines().find_map(|line| {
                    let mut fields = line.split(':');
                    (fields.next() == Some(group.as_str())).then(|| fields.nth(1).unwrap_or_default().to_owned())
                })
            };
            match gid {
                Some(gid) if gid.parse::<u32>().is_ok_and(|g| g != 0) => Ok(gid),
                Some(_) => Err(SandboxError::Config(format!(
                    "`sandbox.profiles.{profile}.groups`: group `{group}` is root's group or not a number"
                ))),
                None => Err(SandboxError::Unavailable(format!(
                    "profile `{profile}` needs the group `{group}`, which this host does not have (sandbox.profiles.{profile}.groups)"
                ))),
            }
        })
        .collect()
}

/// What one sandboxed run gave, with the container it used (for the audit log).
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) result: Result<ExecOutput, SandboxError>,
    pub(crate) container_id: Option<String>,
}

struct Warm {
    id: String,
    started: Instant,
}

/// The warm containers of one plan, and how many are being made for it.
struct Pool {
    warm: VecDeque<Warm>,
    pending: usize,
}

impl Pool {
    fn new() -> Self {
        Self { warm: VecDeque::new(), pending: 0 }
    }
}

/// A connected Docker engine, the resolved default image and the warm pools.
pub(crate) struct DockerSandbox {
    docker: Docker,
    config: SandboxConfig,
    default_image: String,
    /// The workspace as resolved when connecting; each container creation checks it still is.
    workspace: Result<PathBuf, String>,
    owner: String,
    lifetime: Duration,
    pools: Mutex<HashMap<String, Pool>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
}

/// Connect to the local engine and agree on an API version (the engine here speaks 1.41).
pub(crate) async fn connect_engine() -> Result<Docker, SandboxError> {
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| SandboxError::Unavailable(format!("cannot reach Docker: {e}")))?;
    let docker =
        docker.negotiate_version().await.map_err(|e| SandboxError::Unavailable(format!("cannot reach Docker: {e}")))?;
    docker.ping().await.map_err(|e| SandboxError::Unavailable(format!("Docker does not answer: {e}")))?;
    Ok(docker)
}

impl DockerSandbox {
    /// Connect, reap leftovers of dead hosts, make sure the default image exists, warm the pools.
    pub(crate) async fn connect(config: &SandboxConfig, busybox: &Path) -> Result<Arc<Self>, SandboxError> {
        let docker = connect_engine().await?;
        reap_orphans(&docker).await?;
        let default_image =
            if config.image.is_empty() { super::ensure_image(&docker, busybox).await? } else { config.image.clone() };
        let lifetime = IDLE_BUDGET + Duration::from_secs(config.max_timeout_secs) + Duration::from_secs(60);
        let workspace =
            config.workspace.canonicalize().map_err(|e| format!("workspace `{}`: {e}", config.workspace.display()));
        let sandbox = Arc::new(Self {
            docker,
            config: config.clone(),
            default_image,
            workspace,
            owner: owner_id(),
            lifetime,
            pools: Mutex::new(HashMap::new()),
            background: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        // Warm what most commands will use: each profile as an operator sees it.
        for (name, profile) in &config.profiles {
            match sandbox.plan(name, profile, Role::Operator) {
                Ok(plan) => sandbox.refill(&plan),
                // Said once here; every command of the profile then answers it.
                Err(e) => tracing::warn!(profile = %name, error = %e, "sandbox profile unavailable on this machine"),
            }
        }
        Ok(sandbox)
    }

    pub(crate) fn default_image(&self) -> &str {
        &self.default_image
    }

    /// Why profile `name` could run nothing here now: a mount or a group this host lacks (what a
    /// container creation would refuse), or its image missing from the engine.
    pub(crate) async fn profile_problem(&self, name: &str, profile: &ProfileConfig) -> Option<String> {
        let plan = match self.plan(name, profile, Role::Admin) {
            Ok(plan) => plan,
            Err(e) => return Some(e.to_string()),
        };
        let image = plan.body.image.unwrap_or_default();
        match self.docker.inspect_image(&image).await {
            Ok(_) => None,
            Err(_) => Some(format!(
                "image `{image}` of sandbox profile `{name}` is not in the engine: build it, or set `sandbox.profiles.{name}.image`"
            )),
        }
    }

    /// The container definition for `profile` run on behalf of `role`.
    pub(crate) fn plan(&self, name: &str, profile: &ProfileConfig, role: Role) -> Result<Plan, SandboxError> {
        let mut access = match profile.workspace {
            WorkspaceAccess::Default if self.config.readonly => WorkspaceAccess::Ro,
            WorkspaceAccess::Default => WorkspaceAccess::Rw,
            other => other,
        };
        // INVARIANT: a viewer never gets a writable workspace, whatever the profile says.
        if role == Role::Viewer && access == WorkspaceAccess::Rw {
            access = WorkspaceAccess::Ro;
        }
        let mounts = self.mounts_now(name, &profile.mounts, access)?;
        let groups = host_groups(name, &profile.groups)?;
        let network = if profile.network.is_empty() { &self.config.network } else { &profile.network };
        let image = [&profile.image, &self.config.image, &self.default_image]
            .into_iter()
            .find(|i| !i.is_empty())
            .cloned()
            .unwrap_or_default();
        let working_dir = if access == WorkspaceAccess::None { "/tmp" } else { "/workspace" }.to_owned();
        let labels = HashMap::from([
            (MANAGED_LABEL.to_owned(), "1".to_owned()),
            (OWNER_LABEL.to_owned(), self.owner.clone()),
            (PROFILE_LABEL.to_owned(), name.to_owned()),
        ]);
        let memory = i64::try_from(profile.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let host_config = HostConfig {
            network_mode: Some(network.clone()),
            nano_cpus: Some((profile.cpus * 1e9) as i64),
            memory: Some(memory),
            // Equal to the memory limit: no swap on top of it.
            memory_swap: Some(memory),
            pids_limit: Some(profile.pids_limit),
            readonly_rootfs: Some(true),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            privileged: Some(false),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_owned(),
                format!("rw,nosuid,nodev,noexec,size={}m,mode=1777", profile.tmp_mib),
            )])),
            mounts: Some(mounts),
            group_add: (!groups.is_empty()).then_some(groups),
            auto_remove: Some(true),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image),
            // The only process until a command is exec'd: no shell, and it ends by itself.
            entrypoint: Some(vec!["sleep".into()]),
            cmd: Some(vec![self.lifetime.as_secs().to_string()]),
            user: Some(profile.user.clone()),
            working_dir: Some(working_dir.clone()),
            labels: Some(labels),
            network_disabled: Some(network == "none"),
            host_config: Some(host_config),
            ..Default::default()
        };
        Ok(Plan {
            key: format!("{name}/{access:?}"),
            profile: name.to_owned(),
            body,
            user: profile.user.clone(),
            working_dir,
            access,
            mounts: profile.mounts.clone(),
        })
    }

    /// The bind mounts of a container about to be created: the workspace (still the directory
    /// checked at start-up) and the profile's host paths, each resolved and checked now, so that
    /// a symbolic link swapped since is refused rather than followed by the engine.
    fn mounts_now(
        &self,
        name: &str,
        mounts: &[MountConfig],
        access: WorkspaceAccess,
    ) -> Result<Vec<Mount>, SandboxError> {
        let mut resolved = Vec::new();
        if access != WorkspaceAccess::None {
            let checked = self.workspace.as_ref().map_err(|e| SandboxError::Unavailable(e.clone()))?;
            let source = super::paths::recheck_workspace(checked)?;
            resolved.push(bind(&source, "/workspace", access == WorkspaceAccess::Ro));
        }
        resolved.extend(host_mounts(name, mounts)?);
        Ok(resolved)
    }

    /// Run `argv` in a fresh container of `plan`, killing it at `timeout`.
    pub(crate) async fn run(self: &Arc<Self>, plan: &Plan, argv: &[String], timeout: Duration) -> Attempt {
        let started = Instant::now();
        let mut id = match self.acquire(plan).await {
            Ok(id) => id,
            Err(e) => return Attempt { result: Err(e), container_id: None },
        };
        let options = CreateExecOptions {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            user: Some(plan.user.clone()),
            working_dir: Some(plan.working_dir.clone()),
            privileged: Some(false),
            ..Default::default()
        };
        let exec = match self.docker.create_exec(&id, options.clone()).await {
            Ok(exec) => exec,
            Err(_) => {
                // A pooled container can have died (engine restart); one fresh try.
                self.remove_later(id);
                id = match self.create(plan).await {
                    Ok(id) => id,
                    Err(e) => return Attempt { result: Err(e), container_id: None },
                };
                match self.docker.create_exec(&id, options).await {
                    Ok(exec) => exec,
                    Err(e) => {
                        self.remove_later(id.clone());
                        let result = Err(SandboxError::Unavailable(format!("cannot exec in the sandbox: {e}")));
                        return Attempt { result, container_id: Some(id) };
                    }
                }
            }
        };
        let outcome = tokio::time::timeout(timeout, self.exec(&exec.id, started)).await;
        let outcome = outcome.map(|result| result.and_then(|output| not_in_image(plan, argv, output)));
        let result = match outcome {
            Err(_) => {
                // Killed and removed before answering, so that `timeout` means it is gone.
                remove(&self.docker, &id).await;
                Err(SandboxError::Timeout(timeout))
            }
            Ok(result) => {
                self.remove_later(id.clone());
                result.map(|mut output| {
                    output.container_id = Some(id.clone());
                    output
                })
            }
        };
        Attempt { result, container_id: Some(id) }
    }

    async fn exec(&self, exec_id: &str, started: Instant) -> Result<ExecOutput, SandboxError> {
        let failed = |e: bollard::errors::Error| SandboxError::Failed(format!("sandbox exec: {e}"));
        let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(exec_id, None).await.map_err(failed)?
        else {
            return Err(SandboxError::Failed("sandbox exec started detached".into()));
        };
        let mut stdout = Capped::new(self.config.output_limit);
        let mut stderr = Capped::new(self.config.output_limit);
        // Past the cap the rest is drained and dropped; the deadline bounds an endless writer.
        while let Some(chunk) = output.next().await {
            match chunk.map_err(failed)? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => stdout.push(&message),
                LogOutput::StdErr { message } => stderr.push(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        let exit_code = loop {
            let inspect = self.docker.inspect_exec(exec_id).await.map_err(failed)?;
            match (inspect.running, inspect.exit_code) {
                (Some(false), Some(code)) => break i32::try_from(code).unwrap_or(-1),
                // The stream can close a moment before the engine records the exit.
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        Ok(finished(exit_code, stdout, stderr, started))
    }

    /// A started container of `plan`: a warm one if the pool has it, else a new one.
    async fn acquire(self: &Arc<Self>, plan: &Plan) -> Result<String, SandboxError> {
        let warm = {
            let mut pools = self.pools.lock().map_err(|_| SandboxError::Failed("sandbox pool poisoned".into()))?;
            let pool = pools.entry(plan.key.clone()).or_insert_with(Pool::new);
            let mut found = None;
            while let Some(w) = pool.warm.pop_front() {
                if w.started.elapsed() < IDLE_BUDGET {
                    found = Some(w.id);
                    break;
                }
                self.remove_later(w.id);
            }
            found
        };
        self.refill(plan);
        match warm {
            Some(id) => Ok(id),
            None => self.create(plan).await,
        }
    }

    /// Top the pool of `plan` up to its size, in the background.
    fn refill(self: &Arc<Self>, plan: &Plan) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let missing = {
            let Ok(mut pools) = self.pools.lock() else { return };
            let pool = pools.entry(plan.key.clone()).or_insert_with(Pool::new);
            // Containers being made count: a burst of commands must not start a burst of creations.
            let missing = (self.config.pool_size as usize).saturating_sub(pool.warm.len() + pool.pending);
            pool.pending += missing;
            missing
        };
        for _ in 0..missing {
            let this = Arc::clone(self);
            let plan = plan.clone();
            self.track(tokio::spawn(async move {
                let created = this.create(&plan).await;
                if let Err(e) = &created {
                    tracing::warn!(error = %e, "cannot refill the sandbox pool");
                }
                this.park(&plan, created.ok());
            }));
        }
    }

    /// Put a container made for the pool in it (one fewer pending), or remove it if the pool is
    /// full or closed.
    fn park(&self, plan: &Plan, id: Option<String>) {
        if let Ok(mut pools) = self.pools.lock() {
            let pool = pools.entry(plan.key.clone()).or_insert_with(Pool::new);
            pool.pending = pool.pending.saturating_sub(1);
            if let Some(id) = &id
                && !self.closed.load(Ordering::SeqCst)
                && pool.warm.len() < self.config.pool_size as usize
            {
                pool.warm.push_back(Warm { id: id.clone(), started: Instant::now() });
                return;
            }
        }
        if let Some(id) = id {
            self.remove_later(id);
        }
    }

    async fn create(&self, plan: &Plan) -> Result<String, SandboxError> {
        let unavailable = |e: bollard::errors::Error| SandboxError::Unavailable(format!("cannot start a sandbox: {e}"));
        // INVARIANT: resolved here, right before the engine sees them, never only at start-up.
        let mut body = plan.body.clone();
        if let Some(host) = body.host_config.as_mut() {
            host.mounts = Some(self.mounts_now(&plan.profile, &plan.mounts, plan.access)?);
        }
        let work = async {
            let created = self.docker.create_container(None, body).await.map_err(unavailable)?;
            if let Err(e) = self.docker.start_container(&created.id, None).await {
                remove(&self.docker, &created.id).await;
                return Err(unavailable(e));
            }
            Ok(created.id)
        };
        tokio::time::timeout(ACQUIRE_DEADLINE, work)
            .await
            .map_err(|_| SandboxError::Unavailable(format!("no sandbox within {ACQUIRE_DEADLINE:?}")))?
    }

    fn remove_later(&self, id: String) {
        let docker = self.docker.clone();
        self.track(tokio::spawn(async move { remove(&docker, &id).await }));
    }

    fn track(&self, handle: JoinHandle<()>) {
        if let Ok(mut background) = self.background.lock() {
            background.retain(|h| !h.is_finished());
            background.push(handle);
        }
    }

    /// Stop refilling, remove every container this host holds, and wait for removals in flight.
    pub(crate) async fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        loop {
            let handles: Vec<JoinHandle<()>> =
                self.background.lock().map(|mut b| b.drain(..).collect()).unwrap_or_default();
            if handles.is_empty() {
                break;
            }
            for handle in handles {
                let _ = handle.await;
            }
        }
        let warm: Vec<String> = self
            .pools
            .lock()
            .map(|mut p| p.values_mut().flat_map(|pool| pool.warm.drain(..).map(|w| w.id)).collect())
            .unwrap_or_default();
        for id in warm {
            remove(&self.docker, &id).await;
        }
    }
}

/// The engine's answer to a program that is not in the image (exit 126 or 127 and its message)
/// as `unavailable`: the profile's image lacks the tool, nothing ran.
fn not_in_image(plan: &Plan, argv: &[String], output: ExecOutput) -> Result<ExecOutput, SandboxError> {
    let missing = |text: &str| text.contains("executable file not found") || text.contains("no such file or directory");
    let engine_said =
        [&output.stdout, &output.stderr].iter().any(|t| t.starts_with("OCI runtime exec failed") && missing(t));
    if (output.exit_code == 126 || output.exit_code == 127) && engine_said {
        let program = argv.first().map(String::as_str).unwrap_or_default();
        let name = &plan.profile;
        return Err(SandboxError::Unavailable(format!(
            "`{program}` is not in the image of sandbox profile `{name}`: set `sandbox.profiles.{name}.image` \
             to an image that has it"
        )));
    }
    Ok(output)
}
