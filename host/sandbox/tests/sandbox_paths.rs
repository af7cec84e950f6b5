//! The workspace and the mount sources against the real Docker engine: resolved and checked
//! again at each container creation, so that a symbolic link swapped after start-up is refused
//! rather than followed by the engine.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use toolgate_core::MemoryAuditSink;
use toolgate_core::model::{AuthMethod, Caller, Role};
use toolgate_sandbox::{
    ExecOrigin, ExecOutput, ExecRequest, Executor, MountConfig, ProfileConfig, SandboxConfig, SandboxError,
    SecureExecutor, WorkspaceAccess,
};

/// An executor with one profile, `profile`, that makes a fresh container for every command (no
/// warm pool: a pooled container was made, and checked, before the swap).
async fn executor(workspace: &Path, profile: &str, p: ProfileConfig) -> anyhow::Result<SecureExecutor> {
    toolgate_tests::docker().await?;
    let config = SandboxConfig {
        workspace: workspace.to_owned(),
        pool_size: 0,
        profiles: [(profile.to_owned(), p)].into(),
        ..Default::default()
    };
    Ok(SecureExecutor::connect(&config, Arc::new(MemoryAuditSink::default())).await)
}

async fn run(executor: &SecureExecutor, profile: &str, argv: &[&str]) -> Result<ExecOutput, SandboxError> {
    executor
        .exec(ExecRequest {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            profile: profile.to_owned(),
            timeout: None,
            origin: ExecOrigin {
                caller: Caller {
                    name: "alice".into(),
                    role: Role::Operator,
                    auth_method: AuthMethod::Password,
                    source_ip: None,
                },
                plugin: "test".into(),
                tool: "test_tool".into(),
                action_id: "action-1".into(),
                secrets: Default::default(),
            },
        })
        .await
}

/// A directory the sandbox user (65534) can read, holding `hello.txt`.
fn readable_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::write(path.join("hello.txt"), "hi\n")?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_source_link_swapped_after_start_up_is_refused_at_the_next_container() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    readable_dir(&root.path().join("data"))?;
    let link = root.path().join("source");
    std::os::unix::fs::symlink(root.path().join("data"), &link)?;
    let mount = MountConfig { source: link.clone(), target: "/m".into(), read_only: true, optional: false };
    let profile = ProfileConfig { mounts: vec![mount], workspace: WorkspaceAccess::None, ..Default::default() };
    let executor = executor(root.path(), "paths-mount", profile).await?;

    let out = run(&executor, "paths-mount", &["cat", "/m/hello.txt"]).await?;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "hi\n"), "{out:?}");

    // The link now leads into a system tree: refused, nothing of /etc shown.
    std::fs::remove_file(&link)?;
    std::os::unix::fs::symlink("/etc", &link)?;
    let err = run(&executor, "paths-mount", &["cat", "/m/hostname"]).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(err, Some(SandboxError::MountRefused(_))), "{err:?}");
    assert!(message.starts_with("mount_refused: ") && message.contains("leads to `/etc`"), "{message}");

    // ... or to a directory holding an engine's socket.
    let sockets = root.path().join("sockets");
    std::fs::create_dir(&sockets)?;
    let _socket = std::os::unix::net::UnixListener::bind(sockets.join("docker.sock"))?;
    std::fs::remove_file(&link)?;
    std::os::unix::fs::symlink(&sockets, &link)?;
    let err = run(&executor, "paths-mount", &["ls", "/m"]).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.starts_with("mount_refused: ") && err.contains("docker.sock"), "{err}");

    // Swapped back, it works again: the check is made at each creation, not remembered.
    std::fs::remove_file(&link)?;
    std::os::unix::fs::symlink(root.path().join("data"), &link)?;
    assert_eq!(run(&executor, "paths-mount", &["cat", "/m/hello.txt"]).await?.stdout, "hi\n");
    executor.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workspace_swapped_for_a_link_after_start_up_is_refused_at_the_next_container() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))?;
    let workspace = root.path().join("workspace");
    readable_dir(&workspace)?;
    let profile = ProfileConfig { workspace: WorkspaceAccess::Ro, ..Default::default() };
    let executor = executor(&workspace, "paths-workspace", profile).await?;
    let out = run(&executor, "paths-workspace", &["cat", "/workspace/hello.txt"]).await?;
    assert_eq!(out.stdout, "hi\n", "{out:?}");

    std::fs::rename(&workspace, root.path().join("moved"))?;
    std::os::unix::fs::symlink("/etc", &workspace)?;
    let err = run(&executor, "paths-workspace", &["cat", "/workspace/hostname"]).await.err();
    let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(matches!(err, Some(SandboxError::WorkspaceRefused(_))), "{err:?}");
    assert!(message.starts_with("workspace_refused: ") && message.contains("now leads to `/etc`"), "{message}");
    executor.shutdown().await;
    Ok(())
}
