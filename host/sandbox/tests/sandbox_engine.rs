//! The container engine plugins manage host containers through, and the reaping of sandbox
//! containers left by a host that died, against the real Docker engine.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use toolgate_core::MemoryAuditSink;
use toolgate_sandbox::{ContainerEngine, DockerEngine, SandboxConfig, SecureExecutor, ensure_image};

async fn docker() -> anyhow::Result<Docker> {
    toolgate_tests::docker().await
}

/// Create and start a container of the project's image running `cmd`, with `labels`.
async fn container(docker: &Docker, name: &str, labels: &[(&str, &str)], cmd: &[&str]) -> anyhow::Result<String> {
    let image = ensure_image(docker, Path::new("/bin/busybox")).await?;
    let mut all_labels: HashMap<String, String> = HashMap::from([("toolgate.test".into(), "1".into())]);
    all_labels.extend(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let body = ContainerCreateBody {
        image: Some(image),
        cmd: Some(cmd.iter().map(|s| (*s).to_owned()).collect()),
        labels: Some(all_labels),
        // `sleep` as PID 1 ignores SIGTERM: stop with SIGKILL rather than after 10 s.
        stop_signal: Some("SIGKILL".into()),
        host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
        ..Default::default()
    };
    let options = CreateContainerOptionsBuilder::default().name(name).build();
    let id = docker.create_container(Some(options), body).await?.id;
    docker.start_container(&id, None).await?;
    Ok(id)
}

/// The owner label of a sandbox container made by this process: boot id, pid, start time.
fn live_owner() -> anyhow::Result<String> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let start = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(19)).unwrap_or_default();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    Ok(format!("{}:{}:{start}", boot.trim(), std::process::id()))
}

async fn remove(docker: &Docker, id: &str) {
    let _ = docker.remove_container(id, Some(RemoveContainerOptionsBuilder::default().force(true).build())).await;
}

#[tokio::test]
async fn plugins_see_and_manage_host_containers_but_not_sandboxes() -> anyhow::Result<()> {
    let docker = docker().await?;
    let name = format!("toolgate-test-engine-{}", std::process::id());
    let web = container(&docker, &name, &[], &["sh", "-c", "echo hello-logs; exec sleep 120"]).await?;
    let sandbox_name = format!("{name}-sandbox");
    // Owned by this (live) process, so that a start-up reaping beside this test keeps it.
    let owner = live_owner()?;
    let labels = [("toolgate.managed", "1"), ("toolgate.owner", owner.as_str())];
    let sandbox = container(&docker, &sandbox_name, &labels, &["sleep", "120"]).await?;
    let result = exercise(&name, &sandbox_name).await;
    remove(&docker, &web).await;
    remove(&docker, &sandbox).await;
    result
}

async fn exercise(name: &str, sandbox_name: &str) -> anyhow::Result<()> {
    let engine = DockerEngine::connect().await;
    let listed = engine.list(true).await?;
    let mine =
        listed.iter().find(|c| c.name == name).ok_or_else(|| anyhow::anyhow!("{name} not listed in {listed:?}"))?;
    assert_eq!(mine.state, "running");
    assert!(mine.image.starts_with("toolgate-sandbox:"), "{mine:?}");
    assert!(listed.iter().all(|c| c.name != sandbox_name), "a sandbox container is listed");
    let err = engine.inspect(sandbox_name).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no such container"), "{err}");
    assert!(engine.stop(sandbox_name).await.is_err(), "a sandbox container can be stopped");

    let before = engine.inspect(name).await?;
    assert!(before.running && before.started_at.is_some(), "{before:?}");
    let logs = engine.logs(name, 10).await?;
    assert_eq!((logs.text.as_str(), logs.truncated), ("hello-logs\n", false));

    engine.stop(name).await?;
    let stopped = engine.inspect(name).await?;
    assert!(!stopped.running && stopped.state == "exited", "{stopped:?}");
    engine.start(name).await?;
    let started = engine.inspect(name).await?;
    assert!(started.running, "{started:?}");
    engine.restart(name).await?;
    let restarted = engine.inspect(name).await?;
    assert!(restarted.running && restarted.started_at != started.started_at, "{started:?} -> {restarted:?}");

    let err = engine.inspect("../images/json").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("invalid container name"), "{err}");
    let err = engine.inspect("toolgate-test-no-such-container").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("no such container `toolgate-test-no-such-container`"), "{err}");
    Ok(())
}

#[tokio::test]
async fn sandboxes_left_by_a_dead_host_are_reaped_at_start_up_and_live_ones_kept() -> anyhow::Result<()> {
    let docker = docker().await?;
    let base = format!("toolgate-test-reap-{}", std::process::id());
    let dead = [("toolgate.managed", "1"), ("toolgate.owner", "no-such-boot:1:1"), ("toolgate.profile", "t_reap")];
    let orphan = container(&docker, &format!("{base}-orphan"), &dead, &["sleep", "120"]).await?;
    // A container of a host that is alive (this process) must survive another host's start-up.
    let owner = live_owner()?;
    let live = [("toolgate.managed", "1"), ("toolgate.owner", owner.as_str()), ("toolgate.profile", "t_reap")];
    let kept = container(&docker, &format!("{base}-live"), &live, &["sleep", "120"]).await?;

    let workspace = tempfile::tempdir()?;
    let config = SandboxConfig { workspace: workspace.path().to_owned(), pool_size: 0, ..Default::default() };
    let executor = SecureExecutor::connect(&config, Arc::new(MemoryAuditSink::default())).await;
    executor.shutdown().await;

    let orphan_gone = docker.inspect_container(&orphan, None).await.is_err();
    let kept_alive = docker.inspect_container(&kept, None).await.is_ok();
    remove(&docker, &orphan).await;
    remove(&docker, &kept).await;
    assert!(orphan_gone, "the orphan is still there");
    assert!(kept_alive, "a live host's container was reaped");
    Ok(())
}
