//! The one `bindgen!` of the `toolgate:plugin` world. Every import is async (the sandbox and
//! container calls wait on I/O) and trappable: in a host function the outer `Result` aborts the
//! plugin (a trap), the inner one is the WIT `result` the plugin sees.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use toolgate::plugin::types::{Capability, Category, Error};
