//! [`DockerEngine`]: the host's containers for the WIT `containers` interface, through the Engine
//! API. The executor's own sandbox containers are invisible here: a plugin must not be able to
//! stop, restart or read a sandbox another command runs in.

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, LogsOptionsBuilder, RestartContainerOptions, StartContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;

use super::output::Capped;
use super::{
    BoxFuture, ContainerDetails, ContainerEngine, ContainerLogs, ContainerSummary, SANDBOX_LABEL, SandboxError,
};

/// Cap of the text [`ContainerEngine::logs`] returns.
const LOG_LIMIT: u64 = 1024 * 1024;

/// The host's container engine. When Docker was unreachable at start-up every call answers
/// `unavailable` with the reason.
pub struct DockerEngine {
    docker: Result<Docker, String>,
}

impl DockerEngine {
    /// Connect to the local engine (negotiating the API version).
    pub async fn connect() -> DockerEngine {
        DockerEngine { docker: super::docker::connect_engine().await.map_err(|e| e.to_string()) }
    }

    fn docker(&self) -> Result<&Docker, SandboxError> {
        self.docker.as_ref().map_err(|reason| SandboxError::Unavailable(reason.clone()))
    }

    /// Inspect `container`, refusing bad names and hiding the executor's own containers.
    async fn find(&self, container: &str) -> Result<ContainerInspectResponse, SandboxError> {
        check_name(container)?;
        let docker = self.docker()?;
        let details = docker.inspect_container(container, None).await.map_err(|e| engine_error(container, e))?;
        let managed =
            details.config.as_ref().and_then(|c| c.labels.as_ref()).is_some_and(|l| l.contains_key(SANDBOX_LABEL));
        if managed {
            return Err(no_such(container));
        }
        Ok(details)
    }

    /// The full id of `container` once [`Self::find`] allowed it, so later calls cannot be
    /// redirected by a rename.
    async fn id_of(&self, container: &str) -> Result<String, SandboxError> {
        self.find(container).await?.id.ok_or_else(|| no_such(container))
    }
}

/// Container names and ids: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Anything else could change the path of
/// the API request it is put in.
fn check_name(container: &str) -> Result<(), SandboxError> {
    let mut chars = container.chars();
    let valid = container.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid { Ok(()) } else { Err(SandboxError::Failed(format!("invalid container name `{container}`"))) }
}

fn no_such(container: &str) -> SandboxError {
    SandboxError::Failed(format!("no such container `{container}`"))
}

fn engine_error(container: &str, e: bollard::errors::Error) -> SandboxError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => no_such(container),
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            SandboxError::Failed(format!("container `{container}`: {message}"))
        }
        other => SandboxError::Unavailable(format!("container engine: {other}")),
    }
}

fn trim_name(name: &str) -> String {
    name.trim_start_matches('/').to_owned()
}

impl ContainerEngine for DockerEngine {
    fn list(&self, all: bool) -> BoxFuture<'_, Result<Vec<ContainerSummary>, SandboxError>> {
        Box::pin(async move {
            let docker = self.docker()?;
            let options = ListContainersOptionsBuilder::default().all(all).build();
            let containers = docker
                .list_containers(Some(options))
                .await
                .map_err(|e| SandboxError::Unavailable(format!("container engine: {e}")))?;
            Ok(containers
                .into_iter()
                .filter(|c| !c.labels.as_ref().is_some_and(|l| l.contains_key(SANDBOX_LABEL)))
                .map(|c| ContainerSummary {
                    id: c.id.unwrap_or_default(),
                    name: c.names.and_then(|n| n.first().map(|n| trim_name(n))).unwrap_or_default(),
                    image: c.image.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                })
                .collect())
        })
    }

    fn inspect<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<ContainerDetails, SandboxError>> {
        Box::pin(async move {
            let d = self.find(container).await?;
            let state = d.state.unwrap_or_default();
            Ok(ContainerDetails {
                id: d.id.unwrap_or_default(),
                name: d.name.as_deref().map(trim_name).unwrap_or_default(),
                image: d.config.and_then(|c| c.image).or(d.image).unwrap_or_default(),
                state: state.status.map(|s| s.to_string()).unwrap_or_default(),
                running: state.running.unwrap_or(false),
                // The engine writes a zero time for a container never started.
                started_at: state.started_at.filter(|t| !t.starts_with("0001-")),
                health: state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty()),
                restart_count: d.restart_count.and_then(|c| u32::try_from(c).ok()).unwrap_or(0),
            })
        })
    }

    fn logs<'a>(&'a self, container: &'a str, tail: u32) -> BoxFuture<'a, Result<ContainerLogs, SandboxError>> {
        Box::pin(async move {
            let id = self.id_of(container).await?;
            let docker = self.docker()?;
            let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail(&tail.to_string()).build();
            let mut stream = docker.logs(&id, Some(options));
            let mut text = Capped::new(LOG_LIMIT);
            while let Some(chunk) = stream.next().await {
                match chunk.map_err(|e| engine_error(container, e))? {
                    LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => {
                        text.push(&message)
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok(ContainerLogs { truncated: text.truncated(), text: text.into_string() })
        })
    }

    fn start<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let id = self.id_of(container).await?;
            let docker = self.docker()?;
            match docker.start_container(&id, None::<StartContainerOptions>).await {
                // 304: already running; starting it is then done.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
                other => other.map_err(|e| engine_error(container, e)),
            }
        })
    }

    fn stop<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let id = self.id_of(container).await?;
            let docker = self.docker()?;
            match docker.stop_container(&id, None::<StopContainerOptions>).await {
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
                other => other.map_err(|e| engine_error(container, e)),
            }
        })
    }

    fn restart<'a>(&'a self, container: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move {
            let id = self.id_of(container).await?;
            let docker = self.docker()?;
            docker.restart_container(&id, None::<RestartContainerOptions>).await.map_err(|e| engine_error(container, e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_change_the_api_path_are_refused() {
        assert!(check_name("web-1").is_ok());
        assert!(check_name("0123abcdef").is_ok());
        for bad in ["", "../images/json", "a/b", "a?all=1", "-x", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
