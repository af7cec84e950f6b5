//! The `bindgen!` of the `toolgate:plugin` world, current version (`wit/`), and of every earlier
//! version the host still serves ([`v0_1`], frozen in `wit/v0.1.0/`). Every import is async (the
//! sandbox, container and system calls wait on I/O) and trappable: in a host function the outer
//! `Result` aborts the plugin (a trap), the inner one is the WIT `result` the plugin sees.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use toolgate::plugin::types::{Capability, Category, Error};

pub mod v0_1;

/// A component ready to instantiate, with the exports of the contract version it was built
/// against.
pub enum Pre<T: 'static> {
    /// `toolgate:plugin@0.2.0`, the current contract.
    Current(PluginPre<T>),
    /// `toolgate:plugin@0.1.0`.
    V0_1(v0_1::PluginPre<T>),
}

impl<T: Send + 'static> Pre<T> {
    /// The exports of `pre`'s component, whichever supported version it exports `tool` of.
    pub fn new(pre: wasmtime::component::InstancePre<T>) -> wasmtime::Result<Pre<T>> {
        match PluginPre::new(pre.clone()) {
            Ok(current) => Ok(Pre::Current(current)),
            Err(current_err) => v0_1::PluginPre::new(pre).map(Pre::V0_1).map_err(|_| {
                current_err.context("the component exports no supported `toolgate:plugin/tool` version (0.2.0, 0.1.0)")
            }),
        }
    }
}
