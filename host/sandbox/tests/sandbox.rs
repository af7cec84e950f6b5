//! The sandbox against the real Docker engine and the project's real image: what a hostile or
//! careless command can and cannot do.
//!
//! Each test uses its own profile name, so it can check that no container of its own is left,
//! while other tests run beside it on the same engine.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use toolgate_core::MemoryAuditSink;
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_sandbox::{
    Availability, ExecOrigin, ExecOutput, ExecRequest, ExecuteMode, Executor, ProfileConfig, SandboxConfig,
    SandboxError, SecureExecutor, WorkspaceAccess,
};

struct Fixture {
    executor: SecureExecutor,
    audit: Arc<MemoryAuditSink>,
    workspace: tempfile::TempDir,
    profile: String,
}

/// An executor whose only profile is `profile`, shaped by `tune`.
async fn fixture(profile: &str, tune: impl FnOnce(&mut SandboxConfig, &mut ProfileConfig)) -> anyhow::Result<Fixture> {
    docker().await?;
    let workspace = tempfile::tempdir()?;
    // The sandbox user (65534) must be able to write where a profile allows it.
    std::fs::set_permissions(workspace.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let mut config = SandboxConfig { workspace: workspace.path().to_owned(), pool_size: 1, ..Default::default() };
    let mut p = ProfileConfig::default();
    tune(&mut config, &mut p);
    config.profiles = [(profile.to_owned(), p)].into();
    let audit = Arc::new(MemoryAuditSink::default());
    let executor = SecureExecutor::connect(&config, audit.clone()).await;
    Ok(Fixture { executor, audit, workspace, profile: profile.to_owned() })
}

impl Fixture {
    async fn run(&self, role: Role, argv: &[&str], timeout: Option<Duration>) -> Result<ExecOutput, SandboxError> {
        let request = ExecRequest {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            profile: self.profile.clone(),
            timeout,
            origin: ExecOrigin {
                caller: Caller { name: "alice".into(), role, auth_method: AuthMethod::Password, source_ip: None },
                plugin: "test".into(),
                tool: "test_tool".into(),
                action_id: "action-1".into(),
                secrets: Default::default(),
            },
        };
        self.executor.exec(request).await
    }

    async fn ok(&self, role: Role, argv: &[&str]) -> anyhow::Result<ExecOutput> {
        Ok(self.run(role, argv, None).await?)
    }

    /// Shut the executor down and check that none of this test's containers is left.
    async fn finish(self) -> anyhow::Result<()> {
        self.executor.shutdown().await;
        let left = containers_of(&self.profile).await?;
        anyhow::ensure!(left.is_empty(), "containers left behind: {left:?}");
        Ok(())
    }
}

async fn docker() -> anyhow::Result<Docker> {
    toolgate_tests::docker().await
}

/// Every container (running or not) made for `profile`.
async fn containers_of(profile: &str) -> anyhow::Result<Vec<String>> {
    let filters = HashMap::from([("label", vec![format!("toolgate.profile={profile}")])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    Ok(docker().await?.list_containers(Some(options)).await?.into_iter().filter_map(|c| c.id).collect())
}

#[tokio::test]
async fn the_project_image_is_built_and_commands_run_as_nobody() -> anyhow::Result<()> {
    let f = fixture("t_basic", |_, _| {}).await?;
    let Availability::Sandbox { image } = f.executor.availability() else {
        anyhow::bail!("sandbox not available: {:?}", f.executor.availability());
    };
    assert!(image.starts_with("toolgate-sandbox:"), "{image}");
    let out = f.ok(Role::Operator, &["id", "-u"]).await?;
    assert_eq!((out.exit_code, out.stdout.trim()), (0, "65534"), "{out:?}");
    let out = f.ok(Role::Operator, &["ls", "/nonexistent"]).await?;
    assert_ne!(out.exit_code, 0);
    assert!(out.stderr.contains("No such file"), "{out:?}");
    let events = f.audit.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].role, Some(Role::Operator));
    assert_eq!(events[0].command.as_deref(), Some("id -u"));
    assert_eq!(events[0].detail["result"], "ok");
    assert_eq!(events[0].detail["direct_mode"], false);
    f.finish().await
}

#[tokio::test]
async fn every_forbidden_token_is_refused_before_any_container_exists() -> anyhow::Result<()> {
    // No pool: any container with this profile's label would come from a refused command.
    let f = fixture("t_tokens", |c, _| c.pool_size = 0).await?;
    let tokens = [";", "&&", "||", "|", "`", "$(", ">", ">>", "<", "<<", "\n", "\r", "\0"];
    for token in tokens {
        let arg = format!("a{token}b");
        let err = f.run(Role::Admin, &["echo", &arg], None).await.err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(matches!(err, Some(SandboxError::Refused(_))), "{token:?} was not refused: {err:?}");
        assert!(message.contains("argument 1"), "{message}");
    }
    assert!(matches!(f.run(Role::Admin, &[], None).await, Err(SandboxError::Refused(_))));
    assert!(containers_of("t_tokens").await?.is_empty(), "a refused command created a container");
    let events = f.audit.events();
    assert_eq!(events.len(), tokens.len() + 1, "every refusal is audited");
    assert!(events.iter().all(|e| !e.allowed && e.detail["result"] == "refused" && e.role == Some(Role::Admin)));
    assert_eq!(events[0].detail["argv"], serde_json::json!(["echo", "a;b"]));
    f.finish().await
}

#[tokio::test]
async fn network_egress_is_blocked() -> anyhow::Result<()> {
    let f = fixture("t_network", |_, _| {}).await?;
    // With a network this connects (this machine reaches 1.1.1.1:80 from Docker's bridge).
    let out = f.ok(Role::Admin, &["nc", "-w", "3", "1.1.1.1", "80"]).await?;
    assert_ne!(out.exit_code, 0, "{out:?}");
    assert!(out.stderr.contains("Network is unreachable"), "{out:?}");
    let out = f.ok(Role::Admin, &["cat", "/proc/net/dev"]).await?;
    let interfaces: Vec<&str> = out.stdout.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(interfaces, ["lo"], "{out:?}");
    f.finish().await
}

#[tokio::test]
async fn a_viewer_cannot_write_the_workspace_even_where_the_profile_allows_it() -> anyhow::Result<()> {
    let f = fixture("t_workspace", |_, p| p.workspace = WorkspaceAccess::Rw).await?;
    let out = f.ok(Role::Operator, &["touch", "/workspace/operator.txt"]).await?;
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(f.workspace.path().join("operator.txt").exists());
    let out = f.ok(Role::Viewer, &["touch", "/workspace/viewer.txt"]).await?;
    assert_ne!(out.exit_code, 0);
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!f.workspace.path().join("viewer.txt").exists());
    let out = f.ok(Role::Viewer, &["ls", "/workspace"]).await?;
    assert_eq!(out.stdout.trim(), "operator.txt", "a viewer still reads it");
    f.finish().await
}

#[tokio::test]
async fn the_workspace_is_read_only_by_default_and_the_root_filesystem_always() -> anyhow::Result<()> {
    let f = fixture("t_readonly", |_, _| {}).await?;
    for path in ["/workspace/x", "/etc/x", "/bin/x"] {
        let out = f.ok(Role::Admin, &["touch", path]).await?;
        assert!(out.stderr.contains("Read-only file system"), "{path}: {out:?}");
    }
    let out = f.ok(Role::Admin, &["touch", "/tmp/x"]).await?;
    assert_eq!(out.exit_code, 0, "/tmp is the writable scratch space: {out:?}");
    f.finish().await
}

#[tokio::test]
async fn host_secrets_and_the_docker_socket_are_not_visible() -> anyhow::Result<()> {
    let f = fixture("t_host", |_, _| {}).await?;
    let out = f.ok(Role::Admin, &["cat", "/etc/shadow"]).await?;
    assert!(out.exit_code != 0 && out.stderr.contains("No such file"), "{out:?}");
    for socket in ["/var/run/docker.sock", "/run/docker.sock"] {
        let out = f.ok(Role::Admin, &["ls", socket]).await?;
        assert!(out.exit_code != 0 && out.stderr.contains("No such file"), "{socket}: {out:?}");
    }
    let out = f.ok(Role::Admin, &["cat", "/proc/self/mounts"]).await?;
    assert!(!out.stdout.contains("docker.sock") && !out.stdout.contains("shadow"), "{}", out.stdout);
    let out = f.ok(Role::Admin, &["cat", "/proc/self/status"]).await?;
    let caps = out.stdout.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_default();
    assert!(caps.ends_with("0000000000000000"), "capabilities left: {caps}");
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{}", out.stdout);
    f.finish().await
}

#[tokio::test]
async fn a_fork_bomb_is_contained_by_the_pids_limit() -> anyhow::Result<()> {
    let f = fixture("t_forkbomb", |_, p| {
        p.pids_limit = 40;
        p.workspace = WorkspaceAccess::Ro;
    })
    .await?;
    // The bomb lives in a file: its separators would (rightly) be refused in argv. After 3 s it
    // is killed and the pids cgroup tells how many forks the limit refused (builtins only: no
    // fork is possible while the bomb runs).
    let script = "bomb() { bomb & bomb & wait; }\n\
                  sleep 3 &\n\
                  watch=$!\n\
                  bomb &\n\
                  wait $watch\n\
                  kill -9 -1\n\
                  read limit < /sys/fs/cgroup/pids/pids.max\n\
                  read refused < /sys/fs/cgroup/pids/pids.events\n\
                  echo \"limit $limit $refused\"\n";
    std::fs::write(f.workspace.path().join("bomb.sh"), script)?;
    let out = f.run(Role::Admin, &["sh", "/workspace/bomb.sh"], Some(Duration::from_secs(30))).await?;
    let words: Vec<&str> = out.stdout.split_whitespace().collect();
    let refused: u64 = match words.as_slice() {
        ["limit", "40", "max", n] => n.parse()?,
        _ => anyhow::bail!("unexpected report: {out:?}"),
    };
    assert!(refused > 0, "the limit refused no fork: {out:?}");
    assert!(out.stderr.contains("can't fork"), "{}", &out.stderr[..out.stderr.len().min(300)]);
    // The host, and the next sandbox, are fine.
    let out = f.ok(Role::Admin, &["echo", "still here"]).await?;
    assert_eq!(out.stdout, "still here\n");
    f.finish().await
}

#[tokio::test]
async fn a_2_gib_allocation_is_killed() -> anyhow::Result<()> {
    let f = fixture("t_memory", |_, _| {}).await?;
    // dd allocates its block size at once and fills it from /dev/zero.
    let out = f.ok(Role::Admin, &["dd", "if=/dev/zero", "of=/dev/null", "bs=2048M", "count=1"]).await?;
    assert_eq!(out.exit_code, 137, "killed by the OOM killer: {out:?}");
    let out = f.ok(Role::Admin, &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]).await?;
    assert_eq!(out.exit_code, 0, "a modest allocation works: {out:?}");
    f.finish().await
}

#[tokio::test]
async fn a_command_past_its_deadline_is_killed_and_its_container_removed() -> anyhow::Result<()> {
    let f = fixture("t_timeout", |_, _| {}).await?;
    let err = f.run(Role::Admin, &["sleep", "60"], Some(Duration::from_secs(1))).await.err();
    assert!(matches!(err, Some(SandboxError::Timeout(d)) if d == Duration::from_secs(1)), "{err:?}");
    let event = f.audit.events().pop().ok_or_else(|| anyhow::anyhow!("no audit event"))?;
    assert_eq!(event.detail["result"], "timeout");
    let id = event.detail["container_id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{event:?}");
    let gone = docker().await?.inspect_container(&id, None).await;
    assert!(
        matches!(gone, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })),
        "the container is still there: {gone:?}"
    );
    f.finish().await
}

#[tokio::test]
async fn output_is_capped_and_the_cut_flagged() -> anyhow::Result<()> {
    let f = fixture("t_output", |c, _| c.output_limit = 1000).await?;
    let out = f.ok(Role::Admin, &["seq", "1", "100000"]).await?;
    assert_eq!(out.exit_code, 0);
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.stdout.starts_with("1\n2\n3\n"));
    let out = f.ok(Role::Admin, &["seq", "1", "3"]).await?;
    assert!(!out.truncated);
    f.finish().await
}

#[tokio::test]
async fn an_unknown_profile_is_refused_and_audited() -> anyhow::Result<()> {
    let f = fixture("t_profile", |c, _| c.pool_size = 0).await?;
    let request = ExecRequest {
        argv: vec!["echo".into()],
        profile: "nope".into(),
        timeout: None,
        origin: ExecOrigin {
            caller: Caller { name: "bob".into(), role: Role::Viewer, auth_method: AuthMethod::ApiKey, source_ip: None },
            plugin: "p".into(),
            tool: "t".into(),
            action_id: "a".into(),
            secrets: Default::default(),
        },
    };
    let err = f.executor.exec(request).await.err();
    assert!(matches!(err, Some(SandboxError::UnknownProfile(ref p)) if p == "nope"), "{err:?}");
    assert!(f.audit.events().iter().any(|e| !e.allowed && e.actor.as_deref() == Some("bob")));
    f.finish().await
}

#[tokio::test]
async fn without_a_usable_sandbox_every_command_answers_unavailable() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    let config = SandboxConfig { workspace: workspace.path().to_owned(), ..Default::default() };
    let audit = Arc::new(MemoryAuditSink::default());
    // The image cannot be built: the executor must refuse, not run the command elsewhere.
    let executor = SecureExecutor::connect_with(&config, audit.clone(), Path::new("/nonexistent/busybox")).await;
    assert!(matches!(executor.availability(), Availability::Unavailable(ref r) if r.contains("/nonexistent/busybox")));
    let request = ExecRequest {
        argv: vec!["echo".into(), "hi".into()],
        profile: "default".into(),
        timeout: None,
        origin: ExecOrigin {
            caller: Caller { name: "a".into(), role: Role::Admin, auth_method: AuthMethod::Local, source_ip: None },
            plugin: "p".into(),
            tool: "t".into(),
            action_id: "a".into(),
            secrets: Default::default(),
        },
    };
    let err = executor.exec(request).await.err();
    assert!(matches!(err, Some(SandboxError::Unavailable(ref r)) if r.contains("/nonexistent/busybox")), "{err:?}");
    assert_eq!(audit.events()[0].detail["result"], "unavailable");
    Ok(())
}

#[tokio::test]
async fn direct_mode_runs_on_the_host_with_the_same_checks_and_says_so() -> anyhow::Result<()> {
    let f = fixture("t_direct", |c, _| c.execute_mode = ExecuteMode::Direct).await?;
    assert_eq!(f.executor.availability(), Availability::Direct);
    let out = f.ok(Role::Operator, &["pwd"]).await?;
    assert_eq!(Path::new(out.stdout.trim()), f.workspace.path().canonicalize()?);
    assert_eq!(out.container_id, None);
    let out = f.ok(Role::Operator, &["env"]).await?;
    assert!(!out.stdout.contains("CARGO"), "the host's environment leaks: {}", out.stdout);
    assert!(matches!(f.run(Role::Operator, &["echo", "a|b"], None).await, Err(SandboxError::Refused(_))));
    let err = f.run(Role::Operator, &["sleep", "20"], Some(Duration::from_millis(300))).await.err();
    assert!(matches!(err, Some(SandboxError::Timeout(_))), "{err:?}");
    assert!(f.audit.events().iter().all(|e| e.detail["direct_mode"] == true));
    f.finish().await
}
