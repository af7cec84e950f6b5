//! `containers`: reading needs `containers-read`, start/stop/restart `containers-manage`.

use std::sync::Arc;

use super::{require, sandbox_error, traced};
use crate::bindings::Error;
use crate::bindings::toolgate::plugin::containers::{ContainerDetails, ContainerLogs, ContainerSummary, Host};
use crate::manifest::Capability;
use crate::state::HostState;
use toolgate_sandbox::ContainerEngine;

impl HostState {
    /// The engine, once the calling tool's grant allows `capability`.
    fn engine(&self, capability: Capability) -> wasmtime::Result<Result<Arc<dyn ContainerEngine>, Error>> {
        let call = self.call()?;
        Ok(require(&call, &capability).and_then(|()| {
            self.services
                .containers
                .clone()
                .ok_or_else(|| Error::Unavailable("no container engine is configured on this host".into()))
        }))
    }
}

/// Run one engine call in a `host.call` span of `containers`. The block owns the `&mut` state it
/// borrows (`async move`): a shared borrow would ask the state to be `Sync`, which WASI's is not.
macro_rules! engine_call {
    ($state:expr, $function:literal, $capability:expr, |$engine:ident| $call:expr) => {{
        traced("containers", $function, async move {
            let $engine = match $state.engine($capability) {
                Ok(Ok(engine)) => engine,
                Ok(Err(e)) => return wasmtime::Result::Ok(Err(e)),
                Err(trap) => return Err(trap),
            };
            let result = $call.await;
            Ok(result.map_err(sandbox_error))
        })
        .await?
    }};
}

impl Host for HostState {
    async fn list(&mut self, all: bool) -> wasmtime::Result<Result<Vec<ContainerSummary>, Error>> {
        let list = engine_call!(self, "list", Capability::ContainersRead, |engine| engine.list(all));
        Ok(list.map(|l| {
            l.into_iter()
                .map(|c| ContainerSummary { id: c.id, name: c.name, image: c.image, state: c.state, status: c.status })
                .collect()
        }))
    }

    async fn inspect(&mut self, container: String) -> wasmtime::Result<Result<ContainerDetails, Error>> {
        let details = engine_call!(self, "inspect", Capability::ContainersRead, |engine| engine.inspect(&container));
        Ok(details.map(|d| ContainerDetails {
            id: d.id,
            name: d.name,
            image: d.image,
            state: d.state,
            running: d.running,
            started_at: d.started_at,
            health: d.health,
            restart_count: d.restart_count,
        }))
    }

    async fn logs(&mut self, container: String, tail: u32) -> wasmtime::Result<Result<ContainerLogs, Error>> {
        let logs = engine_call!(self, "logs", Capability::ContainersRead, |engine| engine.logs(&container, tail));
        Ok(logs.map(|l| ContainerLogs { text: l.text, truncated: l.truncated }))
    }

    async fn start(&mut self, container: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(engine_call!(self, "start", Capability::ContainersManage, |engine| engine.start(&container)))
    }

    async fn stop(&mut self, container: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(engine_call!(self, "stop", Capability::ContainersManage, |engine| engine.stop(&container)))
    }

    async fn restart(&mut self, container: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(engine_call!(self, "restart", Capability::ContainersManage, |engine| engine.restart(&container)))
    }
}
