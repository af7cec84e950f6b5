//! [`PluginRuntime`]: loads the plugin directory once, then serves calls, each in a fresh store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store};

use super::bindings::exports::toolgate::plugin::tool::{InvokeResult, Verdict as WitVerdict};
use super::bindings::{Error as WitError, Plugin as Bindings, PluginPre};
use super::engine::{self, Ticker};
use super::manifest::{self, Capability, ToolDef};
use super::state::{self, CallInfo, HostState};
use super::types::{
    CallContext, Invocation, LoadReport, LoadedPlugin, RefusedPlugin, ToolErrorKind, ToolInfo, Verdict,
};
use super::{HostServices, PluginError, PluginsConfig};
use crate::governance::redact::Secrets;
use crate::model::{PluginName, ToolName};
use crate::policy::ToolInput;
use crate::telemetry::{metrics, span};

const MIB: u64 = 1024 * 1024;

struct Plugin {
    name: PluginName,
    pre: PluginPre<HostState>,
    memory_cap: usize,
    timeout: Duration,
}

struct ToolEntry {
    plugin: Arc<Plugin>,
    def: ToolDef,
    info: ToolInfo,
}

/// The loaded plugins and everything needed to call them.
pub struct PluginRuntime {
    engine: Engine,
    services: Arc<HostServices>,
    tools: BTreeMap<ToolName, ToolEntry>,
    report: LoadReport,
    /// One permit per pool slot: calls beyond `max_concurrent_calls` wait instead of failing.
    slots: tokio::sync::Semaphore,
    _ticker: Ticker,
}

enum Op {
    Invoke(String),
    Verify(String, String),
    Rollback(String),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Invoke(_) => "invoke",
            Op::Verify(..) => "verify",
            Op::Rollback(_) => "rollback",
        }
    }
}

enum Outcome {
    Invoke(InvokeResult),
    Verify(WitVerdict),
    Rollback(String),
}

impl PluginRuntime {
    /// Load every `*.wasm` of `config.dir`, caching compiled code under `cache_dir`.
    ///
    /// A plugin that cannot be compiled, whose manifest is invalid, that needs an ungranted
    /// capability, or whose tool names collide with an earlier plugin's (in file name order) is
    /// refused: it is logged, listed in [`LoadReport::refused`], and the others load. A
    /// configuration error (bad grant, bad limit) or an unreadable directory fails the whole load.
    pub async fn load(config: &PluginsConfig, cache_dir: &Path, services: HostServices) -> Result<Self, PluginError> {
        let mut grants = BTreeMap::new();
        for (name, settings) in &config.plugin {
            grants.insert(name.clone(), manifest::parse_grants(name, &settings.grants)?);
            for limit in [settings.timeout_ms, settings.memory_mib].into_iter().flatten() {
                if limit == 0 {
                    return Err(PluginError::Config(format!("plugin `{name}`: limits must be above zero")));
                }
            }
        }
        if config.timeout_ms == 0 || config.memory_mib == 0 {
            return Err(PluginError::Config("`timeout_ms` and `memory_mib` must be above zero".into()));
        }
        let engine = engine::build(config)?;
        let ticker = Ticker::start(&engine)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        Bindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let mut runtime = PluginRuntime {
            engine,
            services: Arc::new(services),
            tools: BTreeMap::new(),
            report: LoadReport::default(),
            slots: tokio::sync::Semaphore::new(config.max_concurrent_calls.max(1) as usize),
            _ticker: ticker,
        };
        for file in component_files(&config.dir)? {
            let loaded = runtime.load_one(&linker, config, &grants, &file, cache_dir).await;
            match loaded.and_then(|(plugin, defs, info)| runtime.register(plugin, defs, info)) {
                Ok(info) => {
                    tracing::info!(plugin = %info.name, version = %info.version, tools = info.tools.len(), source = ?info.source, "plugin loaded");
                    runtime.report.loaded.push(info);
                }
                Err(error) => {
                    tracing::error!(file = %file.display(), "{error}");
                    runtime.report.refused.push(RefusedPlugin { file, error });
                }
            }
        }
        for name in grants.keys() {
            if !runtime.report.loaded.iter().any(|p| p.name.as_str() == name) {
                tracing::warn!(plugin = %name, "grants configured for a plugin that is not loaded");
            }
        }
        Ok(runtime)
    }

    /// Load with the whole configuration: plugins from `[plugins]`, compiled code cached in
    /// `plugins.cache_dir` (`<data_dir>/cache` when empty).
    pub async fn from_config(config: &crate::config::Config, services: HostServices) -> Result<Self, PluginError> {
        let cache_dir = match config.plugins.cache_dir.as_os_str().is_empty() {
            true => config.data_dir.join("cache"),
            false => config.plugins.cache_dir.clone(),
        };
        Self::load(&config.plugins, &cache_dir, services).await
    }

    async fn load_one(
        &self,
        linker: &Linker<HostState>,
        config: &PluginsConfig,
        grants: &BTreeMap<String, BTreeSet<Capability>>,
        file: &Path,
        cache_dir: &Path,
    ) -> Result<(Plugin, Vec<ToolDef>, LoadedPlugin), PluginError> {
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let compile_err = |message: String| PluginError::Compile { file: file_name.clone(), message };
        let bytes = std::fs::read(file).map_err(PluginError::io(file))?;
        let compiled = engine::compile(&self.engine, &bytes, cache_dir).map_err(|e| match e {
            PluginError::Compile { message, .. } => compile_err(message),
            other => other,
        })?;
        let pre = linker.instantiate_pre(&compiled.component).map_err(|e| compile_err(format!("{e:#}")))?;
        let pre = PluginPre::new(pre).map_err(|e| compile_err(format!("{e:#}")))?;
        let mut plugin = Plugin {
            name: PluginName::try_from("unnamed".to_owned()).map_err(|e| PluginError::Engine(e.to_string()))?,
            pre,
            memory_cap: mib_to_bytes(config.memory_mib)?,
            timeout: Duration::from_millis(config.timeout_ms),
        };
        let mut store = self.store(&plugin, None);
        let manifest = async {
            let instance = plugin.pre.instantiate_async(&mut store).await?;
            instance.toolgate_plugin_tool().call_get_manifest(&mut store).await
        }
        .await
        .map_err(|e| PluginError::Manifest {
            plugin: file_name.clone(),
            reason: format!("`manifest` failed: {}", classify("manifest", e, store.data(), &plugin)),
        })?;
        let manifest =
            manifest::validate(&file_name, manifest, |name| Ok(grants.get(name).cloned().unwrap_or_default()))?;
        let settings = config.plugin.get(manifest.name.as_str()).cloned().unwrap_or_default();
        let timeout_ms = settings.timeout_ms.unwrap_or(config.timeout_ms);
        let memory_mib = settings.memory_mib.unwrap_or(config.memory_mib);
        plugin.name = manifest.name.clone();
        plugin.memory_cap = mib_to_bytes(memory_mib)?;
        plugin.timeout = Duration::from_millis(timeout_ms);
        let info = LoadedPlugin {
            name: manifest.name,
            version: manifest.version,
            file: file.to_owned(),
            source: compiled.source,
            cache_file: compiled.cache_file,
            tools: manifest.tools.iter().map(|t| t.name.clone()).collect(),
            grants: grants.get(plugin.name.as_str()).map(|g| g.iter().cloned().collect()).unwrap_or_default(),
            timeout_ms,
            memory_mib,
        };
        Ok((plugin, manifest.tools, info))
    }

    /// Add a validated plugin's tools, refusing it whole if one of its names is taken.
    fn register(
        &mut self,
        plugin: Plugin,
        defs: Vec<ToolDef>,
        info: LoadedPlugin,
    ) -> Result<LoadedPlugin, PluginError> {
        if let Some(taken) = defs.iter().find_map(|d| self.tools.get(&d.name)) {
            return Err(PluginError::Collision {
                tool: taken.info.name.to_string(),
                first: taken.plugin.name.to_string(),
                second: plugin.name.to_string(),
            });
        }
        let plugin = Arc::new(plugin);
        for def in defs {
            let info = ToolInfo {
                name: def.name.clone(),
                plugin: plugin.name.clone(),
                description: def.description.clone(),
                category: def.category,
                params_schema: def.params_schema.clone(),
                output_schema: def.output_schema.clone(),
                supports_verify: def.supports_verify,
                supports_rollback: def.supports_rollback,
                capabilities: def.capabilities.iter().cloned().collect(),
            };
            self.tools.insert(def.name.clone(), ToolEntry { plugin: Arc::clone(&plugin), def, info });
        }
        Ok(info)
    }

    /// What the load did: loaded plugins (with cache use) and refused ones.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Every tool, by name.
    pub fn tools(&self) -> Vec<ToolInfo> {
        self.tools.values().map(|t| t.info.clone()).collect()
    }

    /// One tool.
    pub fn tool(&self, name: &ToolName) -> Option<&ToolInfo> {
        self.tools.get(name).map(|t| &t.info)
    }

    /// Check `params` against the tool's schema without running it (`invalid-params` names the
    /// offending field), as [`PluginRuntime::invoke`] does first.
    pub fn check_params(&self, tool: &ToolName, params: &serde_json::Value) -> Result<(), PluginError> {
        check_params(self.entry(tool)?, params)
    }

    /// Validate `params` against the tool's schema, then run the tool.
    pub async fn invoke(
        &self,
        call: &CallContext,
        tool: &ToolName,
        params: serde_json::Value,
    ) -> Result<Invocation, PluginError> {
        let entry = self.entry(tool)?;
        check_params(entry, &params)?;
        let secrets = secrets(entry, &params);
        self.invoke_checked(entry, call, &secrets, &params).await.map_err(|e| e.scrubbed(&secrets))
    }

    async fn invoke_checked(
        &self,
        entry: &ToolEntry,
        call: &CallContext,
        secrets: &Secrets,
        params: &serde_json::Value,
    ) -> Result<Invocation, PluginError> {
        let tool = &entry.info.name;
        let started = Instant::now();
        let Outcome::Invoke(result) = self.call(entry, call, secrets, Op::Invoke(params.to_string())).await? else {
            return Err(internal(tool));
        };
        let output = parse_json(tool, "output", &result.output)?;
        // `is_valid` allocates nothing and stops at the first failure; errors are only collected
        // (to name the failing field) for output that is invalid.
        if !entry.def.output_validator.is_valid(&output) {
            let at =
                entry.def.output_validator.iter_errors(&output).next().map_or_else(String::new, |err| {
                    format!(" at `{}`: {err}", pointer(&err.instance_path().to_string()))
                });
            return Err(PluginError::InvalidOutput {
                tool: tool.to_string(),
                message: format!("output does not match its schema{at}"),
            });
        }
        let undo = result.undo.as_deref().map(|u| parse_json(tool, "undo record", u)).transpose()?;
        Ok(Invocation { output, undo, duration: started.elapsed() })
    }

    /// Ask the tool whether the invocation that returned `output` had its effect.
    pub async fn verify(
        &self,
        call: &CallContext,
        tool: &ToolName,
        params: &serde_json::Value,
        output: &serde_json::Value,
    ) -> Result<Verdict, PluginError> {
        let entry = self.entry(tool)?;
        if !entry.def.supports_verify {
            return Err(PluginError::Tool {
                tool: tool.to_string(),
                kind: ToolErrorKind::Failed,
                message: "the tool does not support verify".into(),
            });
        }
        let secrets = secrets(entry, params);
        match self.call(entry, call, &secrets, Op::Verify(params.to_string(), output.to_string())).await {
            Ok(Outcome::Verify(v)) => Ok(Verdict { ok: v.ok, detail: secrets.scrub(&v.detail).into_owned() }),
            Ok(_) => Err(internal(tool)),
            Err(e) => Err(e.scrubbed(&secrets)),
        }
    }

    /// Undo an invocation from its undo record; returns what the plugin says it restored.
    pub async fn rollback(
        &self,
        call: &CallContext,
        tool: &ToolName,
        undo: &serde_json::Value,
    ) -> Result<serde_json::Value, PluginError> {
        let entry = self.entry(tool)?;
        if !entry.def.supports_rollback {
            return Err(PluginError::Tool {
                tool: tool.to_string(),
                kind: ToolErrorKind::Failed,
                message: "the tool does not support rollback".into(),
            });
        }
        // The undo record is the plugin's own document: no schema marks anything in it secret.
        match self.call(entry, call, &Secrets::default(), Op::Rollback(undo.to_string())).await? {
            Outcome::Rollback(text) => parse_json(tool, "rollback output", &text),
            _ => Err(internal(tool)),
        }
    }

    fn entry(&self, tool: &ToolName) -> Result<&ToolEntry, PluginError> {
        self.tools.get(tool).ok_or_else(|| PluginError::UnknownTool(tool.to_string()))
    }

    fn store(&self, plugin: &Plugin, call: Option<Arc<CallInfo>>) -> Store<HostState> {
        let state = HostState::new(Arc::clone(&self.services), call, plugin.memory_cap, plugin.timeout);
        let first_check = state.clock.next_ticks();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // INVARIANT: a new store's deadline is 0 (already expired): set it on every store.
        store.set_epoch_deadline(first_check);
        store.epoch_deadline_callback(state::on_epoch);
        store
    }

    /// One call in a fresh store inside a `plugin.invoke` span (a child of the caller's span; host
    /// calls nest under it), recorded in the plugin call metric.
    async fn call(
        &self,
        entry: &ToolEntry,
        ctx: &CallContext,
        secrets: &Secrets,
        op: Op,
    ) -> Result<Outcome, PluginError> {
        let tool = entry.info.name.as_str();
        let span = span::plugin(entry.plugin.name.as_str(), tool, entry.info.category.as_str());
        let op_name = op.name();
        let started = Instant::now();
        // Boxed: instantiating and calling a component is a large future, which would otherwise
        // be copied into every future that awaits a plugin call, each time those are moved.
        let result = Box::pin(self.call_untraced(entry, ctx, secrets, op)).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let status = status(&result);
        // Epoch interruption meters the plugin, not fuel: the duration is what it used.
        span::record_plugin(&span, status, None, elapsed);
        metrics::plugin_call(tool, op_name, status, elapsed);
        result
    }

    /// Instantiate, run `op`, turn traps into typed errors.
    async fn call_untraced(
        &self,
        entry: &ToolEntry,
        ctx: &CallContext,
        secrets: &Secrets,
        op: Op,
    ) -> Result<Outcome, PluginError> {
        let tool = entry.info.name.as_str();
        let mut tool_input = ToolInput::from(&entry.info);
        if let Some(category) = ctx.category {
            tool_input.category = category;
        }
        let info = CallInfo {
            plugin: entry.plugin.name.to_string(),
            tool: tool_input,
            capabilities: entry.def.capabilities.clone(),
            context: ctx.clone(),
            secrets: secrets.clone(),
        };
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|e| PluginError::Trap { tool: tool.to_owned(), message: e.to_string() })?;
        let mut store = self.store(&entry.plugin, Some(Arc::new(info)));
        let result = async {
            let instance = entry.plugin.pre.instantiate_async(&mut store).await?;
            let exports = instance.toolgate_plugin_tool();
            wasmtime::Result::Ok(match op {
                Op::Invoke(params) => exports.call_invoke(&mut store, tool, &params).await?.map(Outcome::Invoke),
                Op::Verify(params, output) => {
                    exports.call_verify(&mut store, tool, &params, &output).await?.map(Outcome::Verify)
                }
                Op::Rollback(undo) => exports.call_rollback(&mut store, tool, &undo).await?.map(Outcome::Rollback),
            })
        }
        .await;
        let state = store.data();
        for (stream, capture) in [("stdout", &state.stdout), ("stderr", &state.stderr)] {
            let text = capture.text();
            if !text.is_empty() {
                let text = secrets.scrub(text.trim_end());
                tracing::debug!(plugin = %entry.plugin.name, tool, action = %ctx.action_id, stream, "{text}");
            }
        }
        match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(err)) => Err(tool_error(tool, err)),
            Err(trap) => Err(classify(tool, trap, state, &entry.plugin)),
        }
    }
}

/// The `status` of a call for spans and metrics: `ok`, `denied`, `timeout`, `trap` (the plugin
/// was stopped: trap, panic, memory cap) or `error` (it answered with an error).
fn status(result: &Result<Outcome, PluginError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(PluginError::Tool { kind: ToolErrorKind::Denied, .. }) => "denied",
        Err(PluginError::Tool { kind: ToolErrorKind::Timeout, .. } | PluginError::Timeout { .. }) => "timeout",
        Err(PluginError::Trap { .. } | PluginError::Panicked { .. } | PluginError::MemoryExhausted { .. }) => "trap",
        Err(_) => "error",
    }
}

/// Name a failed call by what the store saw: the deadline, the memory cap, a panic, or a trap.
fn classify(tool: &str, trap: wasmtime::Error, state: &HostState, plugin: &Plugin) -> PluginError {
    let tool = tool.to_owned();
    if state.clock.timed_out {
        let limit_ms = u64::try_from(plugin.timeout.as_millis()).unwrap_or(u64::MAX);
        return PluginError::Timeout { tool, limit_ms };
    }
    if state.limits.exhausted {
        return PluginError::MemoryExhausted { tool, cap_mib: plugin.memory_cap as u64 / MIB };
    }
    if let Some(message) = panic_message(&state.stderr.text()) {
        return PluginError::Panicked { tool, message };
    }
    PluginError::Trap { tool, message: format!("{trap:#}") }
}

/// `src/lib.rs:3:5: boom` from Rust's `thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom`.
fn panic_message(stderr: &str) -> Option<String> {
    let (_, rest) = stderr.split_once("panicked at ")?;
    let lines: Vec<&str> = rest.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("note:")).collect();
    let mut message = lines.join(" ");
    message.truncate(message.char_indices().nth(1024).map_or(message.len(), |(i, _)| i));
    Some(message)
}

fn tool_error(tool: &str, err: WitError) -> PluginError {
    let (kind, message) = match err {
        WitError::InvalidParams(m) => (ToolErrorKind::InvalidParams, m),
        WitError::Denied(m) => (ToolErrorKind::Denied, m),
        WitError::Failed(m) => (ToolErrorKind::Failed, m),
        WitError::Unavailable(m) => (ToolErrorKind::Unavailable, m),
        WitError::Timeout(m) => (ToolErrorKind::Timeout, m),
    };
    PluginError::Tool { tool: tool.to_owned(), kind, message }
}

fn check_params(entry: &ToolEntry, params: &serde_json::Value) -> Result<(), PluginError> {
    // The allocation-free check first: valid params, the common case, cost no error collection.
    if entry.def.params_validator.is_valid(params) {
        return Ok(());
    }
    let errors: Vec<String> = entry
        .def
        .params_validator
        .iter_errors(params)
        .take(5)
        .map(|e| format!("`{}`: {e}", pointer(&e.instance_path().to_string())))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    // A schema error may quote the value, a secret one included.
    let message = secrets(entry, params).scrub(&errors.join("; ")).into_owned();
    Err(PluginError::InvalidParams { tool: entry.info.name.to_string(), message })
}

/// What to scrub from what a call of `entry` with `params` makes (argv, logs, errors).
fn secrets(entry: &ToolEntry, params: &serde_json::Value) -> Secrets {
    if entry.def.params_secrets { Secrets::of(&entry.def.params_schema, params) } else { Secrets::default() }
}

/// A JSON pointer, with the document root shown as `/`.
fn pointer(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

fn parse_json(tool: &ToolName, what: &str, text: &str) -> Result<serde_json::Value, PluginError> {
    serde_json::from_str(text)
        .map_err(|e| PluginError::InvalidOutput { tool: tool.to_string(), message: format!("{what} is not JSON: {e}") })
}

fn internal(tool: &ToolName) -> PluginError {
    PluginError::Trap { tool: tool.to_string(), message: "internal error: mismatched call outcome".into() }
}

fn mib_to_bytes(mib: u64) -> Result<usize, PluginError> {
    usize::try_from(mib.saturating_mul(MIB))
        .map_err(|_| PluginError::Config(format!("memory cap of {mib} MiB is too large")))
}

/// `*.wasm` files of `dir`, sorted by name.
fn component_files(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(PluginError::io(dir))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(PluginError::io(dir))?.path();
        if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP layer shares one runtime between tasks and awaits calls inside axum handlers.
    #[allow(dead_code)]
    fn runtime_and_calls_are_shareable(rt: &PluginRuntime, call: &CallContext, tool: &ToolName) {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: T) {}
        send_sync(rt);
        send(rt.invoke(call, tool, serde_json::Value::Null));
        send(rt.verify(call, tool, &serde_json::Value::Null, &serde_json::Value::Null));
        send(rt.rollback(call, tool, &serde_json::Value::Null));
    }

    #[test]
    fn panic_messages_are_extracted_from_stderr() {
        let stderr = "thread '<unnamed>' panicked at src/lib.rs:3:5:\nboom\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr).as_deref(), Some("src/lib.rs:3:5: boom"));
        assert_eq!(panic_message("memory allocation failed"), None);
    }
}
