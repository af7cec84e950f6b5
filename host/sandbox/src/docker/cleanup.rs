//! Cleanup that survives the host: who owns a sandbox container, and removing those whose owner
//! is gone.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};

use crate::{SANDBOX_LABEL, SandboxError};

/// Label holding the owner of a container: `<boot id>:<pid>:<process start time>`.
pub(super) const OWNER_LABEL: &str = SANDBOX_LABEL;

/// Kill and remove a container; one already gone is fine.
pub(super) async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(id, Some(options)).await {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => {}
        Err(e) => tracing::warn!(container = id, error = %e, "cannot remove sandbox container"),
    }
}

/// This process, as written in [`OWNER_LABEL`]: a pid alone could be reused.
pub(super) fn owner_id() -> String {
    format!("{}:{}:{}", boot_id(), std::process::id(), start_time("self").unwrap_or_default())
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
fn start_time(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// Whether the host process that created a container is still alive.
fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(boot), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    boot == boot_id() && start_time(pid).as_deref() == Some(start)
}

/// Remove sandbox containers whose owner is gone (a host killed mid-run), leaving those of
/// hosts still running (other processes share the engine).
pub(super) async fn reap_orphans(docker: &Docker) -> Result<usize, SandboxError> {
    let filters = HashMap::from([("label", vec![OWNER_LABEL.to_owned()])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| SandboxError::Unavailable(format!("cannot list containers: {e}")))?;
    let mut reaped = 0;
    for c in containers {
        let owner = c.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)).map(String::as_str).unwrap_or_default();
        if let Some(id) = c.id.filter(|_| !owner_alive(owner)) {
            tracing::info!(container = %id, "removing a sandbox container left by a host that is gone");
            remove(docker, &id).await;
            reaped += 1;
        }
    }
    Ok(reaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_owner_is_not() {
        assert!(owner_alive(&owner_id()));
        assert!(!owner_alive(&format!("{}:{}:1", boot_id(), std::process::id())));
        assert!(!owner_alive("other-boot:1:1"));
        assert!(!owner_alive(""));
    }
}
