//! The Docker engine, for the tests that need it: the sandbox runs every command in a container,
//! so those tests use the real engine (as production does). When the engine is unreachable they
//! fail, with a message that says so and how to start it, rather than with a socket error or a
//! refusal of the server under test.

use std::time::Duration;

use anyhow::Context as _;
use bollard::Docker;

/// How long the engine may take to answer a version request before the tests give up on it.
const PING: Duration = Duration::from_secs(10);

/// A client of the Docker engine this test run uses (`DOCKER_HOST`, or the local socket), checked
/// to answer; the error says that the test needs the engine and how to start it.
pub async fn docker() -> anyhow::Result<Docker> {
    let reach = async {
        let docker = Docker::connect_with_local_defaults()?;
        tokio::time::timeout(PING, docker.negotiate_version())
            .await
            .map_err(|_| anyhow::anyhow!("no answer in {PING:?}"))?
            .map_err(anyhow::Error::from)
    };
    reach.await.with_context(needs_docker)
}

/// [`docker`] for code that is not async, or before starting a server that will need the engine.
pub fn require_docker() -> anyhow::Result<()> {
    // Its own thread and runtime, so that it works inside an async test as well as outside one.
    std::thread::spawn(|| tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(docker()))
        .join()
        .map_err(|_| anyhow::anyhow!("the Docker check panicked"))?
        .map(drop)
}

fn needs_docker() -> String {
    let engine = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    format!(
        "this test needs the Docker engine, which does not answer at {engine}: start it \
         (`sudo systemctl start docker`, or `sudo dockerd &` without systemd), check with \
         `docker info`, or point DOCKER_HOST at a running engine"
    )
}
