//! The plugin runtime: loads WebAssembly components that implement the `toolgate:plugin` WIT
//! world (`wit/`), and runs their tools with no authority but the host functions they were
//! granted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[plugins]`: where plugins are, their limits, and what each is granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `*.wasm` components.
    pub dir: PathBuf,
    /// Default deadline of one call, in milliseconds of plugin execution.
    pub timeout_ms: u64,
    /// Default memory cap of one instance, in MiB.
    pub memory_mib: u64,
    /// Capability grants, per plugin name: e.g. `["exec:systemd", "workspace-read"]`.
    pub grants: BTreeMap<String, Vec<String>>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("plugins"), timeout_ms: 5_000, memory_mib: 64, grants: BTreeMap::new() }
    }
}
