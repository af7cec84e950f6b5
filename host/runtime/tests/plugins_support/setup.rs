//! A plugin directory of fixture components (built from `tests/fixtures/` and `sdk/template` by
//! `cargo xtask plugins`), and the calls the plugin runtime tests make.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;
use toolgate_core::model::ToolName;
use toolgate_core::{AuditSink, MemoryAuditSink};
use toolgate_runtime::{CallContext, HostServices, PluginRuntime, PluginSettings, PluginsConfig, local_admin};

/// Where `cargo xtask plugins` puts fixtures: `<target>/fixtures/`.
pub fn fixture(name: &str) -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target dir")?;
    let path = target.join("fixtures").join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("fixture `{}` is missing: run `cargo xtask plugins` first", path.display());
    }
    Ok(path)
}

/// A plugin directory holding copies of some fixtures, a workspace, and a cache directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PluginsConfig,
    pub audit: Arc<MemoryAuditSink>,
}

impl Setup {
    pub fn new(fixtures: &[&str]) -> anyhow::Result<Setup> {
        let dir = tempfile::tempdir()?;
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins)?;
        std::fs::create_dir_all(dir.path().join("workspace"))?;
        for name in fixtures {
            std::fs::copy(fixture(name)?, plugins.join(format!("{name}.wasm")))?;
        }
        let mut config = PluginsConfig { dir: plugins, ..PluginsConfig::default() };
        config.plugin.insert(
            "well_behaved".into(),
            settings(&["exec:default", "containers-read", "workspace-read", "workspace-write"]),
        );
        Ok(Setup { dir, config, audit: Arc::new(MemoryAuditSink::default()) })
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// Compiled code is shared between tests (it is keyed by content), except where a test
    /// checks the cache itself.
    pub fn shared_cache() -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
    }

    pub fn services(&self) -> HostServices {
        HostServices::new(Arc::clone(&self.audit) as Arc<dyn AuditSink>, self.workspace())
    }

    pub async fn load(&self) -> anyhow::Result<PluginRuntime> {
        self.load_with(self.services()).await
    }

    pub async fn load_with(&self, services: HostServices) -> anyhow::Result<PluginRuntime> {
        Ok(PluginRuntime::load(&self.config, &Self::shared_cache(), services).await?)
    }
}

pub fn settings(grants: &[&str]) -> PluginSettings {
    PluginSettings { grants: grants.iter().map(|g| (*g).to_owned()).collect(), ..PluginSettings::default() }
}

pub fn call() -> CallContext {
    CallContext {
        action_id: "0193-test-action".into(),
        caller: local_admin(),
        justification: Some("testing the runtime".into()),
        category: None,
    }
}

pub fn tool(name: &str) -> ToolName {
    name.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// The check after every failure: the runtime still answers a well-behaved call.
pub async fn still_serves(runtime: &PluginRuntime) -> anyhow::Result<()> {
    let out = runtime.invoke(&call(), &tool("echo"), json!({ "text": "still here" })).await?;
    assert_eq!(out.output, json!({ "text": "still here" }));
    Ok(())
}
