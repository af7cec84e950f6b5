//! The host's containers. Reading needs [`Capability::ContainersRead`](crate::Capability);
//! starting, stopping and restarting need [`Capability::ContainersManage`](crate::Capability).

use crate::Error;
use crate::bindings::toolgate::plugin::containers as wit;

pub use wit::{ContainerDetails, ContainerLogs, ContainerSummary};

/// Containers on the host; stopped ones too when `all`.
pub fn list(all: bool) -> Result<Vec<ContainerSummary>, Error> {
    crate::host::call(|| wit::list(all))
}

/// One container by name or id.
pub fn inspect(container: &str) -> Result<ContainerDetails, Error> {
    crate::host::call(|| wit::inspect(container))
}

/// The last `tail` lines of a container's output.
pub fn logs(container: &str, tail: u32) -> Result<ContainerLogs, Error> {
    crate::host::call(|| wit::logs(container, tail))
}

/// Start a stopped container.
pub fn start(container: &str) -> Result<(), Error> {
    crate::host::call(|| wit::start(container))
}

/// Stop a running container.
pub fn stop(container: &str) -> Result<(), Error> {
    crate::host::call(|| wit::stop(container))
}

/// Restart a container.
pub fn restart(container: &str) -> Result<(), Error> {
    crate::host::call(|| wit::restart(container))
}
