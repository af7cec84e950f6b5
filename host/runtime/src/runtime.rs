//! [`PluginRuntime`]: loads the plugin directory once, then serves calls, each in a fresh store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::{Plugin as Bindings, Pre, v0_1};
use super::call::{self, Job, Op, Outcome, Plugin};
use super::engine::{self, Cache, Ticker};
use super::identity;
use super::manifest::{self, Capability, ToolDef};
use super::state::{CallInfo, HostState};
use super::types::{
    CallContext, Invocation, LoadReport, LoadedPlugin, RefusedPlugin, ToolErrorKind, ToolInfo, Verdict,
};
use super::{HostServices, PluginError, PluginsConfig};
use toolgate_core::model::ToolName;
use toolgate_core::redact::Secrets;
use toolgate_policy::ToolInput;
use toolgate_telemetry::{metrics, span};

const MIB: u64 = 1024 * 1024;

/// Where the key that authenticates the compile cache is kept when the caller names none: beside
/// the cache directory, never inside it.
const KEY_SUFFIX: &str = "key";

struct ToolEntry {
    plugin: Arc<Plugin>,
    def: ToolDef,
    info: ToolInfo,
}

/// The loaded plugins and everything needed to call them.
pub struct PluginRuntime {
    engine: Engine,
    services: Arc<HostServices>,
    cache: Cache,
    tools: BTreeMap<ToolName, ToolEntry>,
    report: LoadReport,
    /// One permit per call running: calls beyond `max_concurrent_calls` wait instead of failing.
    slots: Arc<tokio::sync::Semaphore>,
    _ticker: Ticker,
}

impl PluginRuntime {
    /// Load every `*.wasm` of `config.dir`, caching compiled code under `cache_dir`.
    ///
    /// A plugin is named by its file (`docker.wasm` is `docker`) and gets that name's grants. A
    /// plugin that cannot be compiled, whose manifest is invalid or names another plugin, whose
    /// content is not its pinned digest, that needs an ungranted capability, or that claims a
    /// tool another plugin claims too (both are refused) is refused: it is logged as a security
    /// event and an audit entry, listed in [`LoadReport::refused`], and the others load. A
    /// configuration error (bad grant, bad limit, bad pin) or an unreadable directory fails the
    /// whole load.
    ///
    /// Compiled code is authenticated with the key in `<cache_dir>.key` (see
    /// [`PluginRuntime::load_with_key`]).
    pub async fn load(config: &PluginsConfig, cache_dir: &Path, services: HostServices) -> Result<Self, PluginError> {
        let key_file = cache_dir.with_extension(KEY_SUFFIX);
        Self::load_with_key(config, cache_dir, &key_file, services).await
    }

    /// [`PluginRuntime::load`], the compile cache authenticated with the key in `key_file`
    /// (created on first use), which must be outside `cache_dir`.
    pub async fn load_with_key(
        config: &PluginsConfig,
        cache_dir: &Path,
        key_file: &Path,
        services: HostServices,
    ) -> Result<Self, PluginError> {
        let mut grants = BTreeMap::new();
        for (name, settings) in &config.plugin {
            grants.insert(name.clone(), manifest::parse_grants(name, &settings.grants)?);
            if let Some(pin) = &settings.sha256
                && identity::normalize_pin(pin).is_none()
            {
                return Err(PluginError::Config(format!(
                    "plugin `{name}`: `sha256` must be `sha256:` and 64 hex digits, not `{pin}`"
                )));
            }
            for limit in [settings.timeout_ms, settings.deadline_ms, settings.memory_mib].into_iter().flatten() {
                if limit == 0 {
                    return Err(PluginError::Config(format!("plugin `{name}`: limits must be above zero")));
                }
            }
        }
        if config.timeout_ms == 0 || config.memory_mib == 0 || config.deadline_ms == 0 || config.max_output_bytes == 0 {
            return Err(PluginError::Config(
                "`timeout_ms`, `deadline_ms`, `memory_mib` and `max_output_bytes` must be above zero".into(),
            ));
        }
        let engine = engine::build(config)?;
        let ticker = Ticker::start(&engine)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        Bindings::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .and_then(|()| v0_1::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;

        let mut runtime = PluginRuntime {
            engine,
            services: Arc::new(services),
            cache: Cache::open(cache_dir, key_file)?,
            tools: BTreeMap::new(),
            report: LoadReport::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_calls.max(1) as usize)),
            _ticker: ticker,
        };
        // Every component is checked on its own first; name and tool collisions are then judged
        // over all of them together, so that the file order never decides who keeps a name.
        let mut candidates = Vec::new();
        for file in component_files(&config.dir)? {
            match runtime.load_one(&linker, config, &grants, &file).await {
                Ok(candidate) => candidates.push(candidate),
                Err(error) => runtime.refuse(file, error),
            }
        }
        let claims: Vec<identity::Claim<'_>> = candidates
            .iter()
            .map(|(_, _, info)| identity::Claim {
                file_name: info.file.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
                name: &info.name,
                tools: &info.tools,
            })
            .collect();
        let mut collisions = identity::collisions(&claims);
        for (i, (plugin, defs, info)) in candidates.into_iter().enumerate() {
            match collisions.remove(&i) {
                Some(error) => runtime.refuse(info.file, error),
                None => {
                    tracing::info!(plugin = %info.name, version = %info.version, digest = %info.digest, tools = info.tools.len(), source = ?info.source, "plugin loaded");
                    runtime.register(plugin, defs);
                    runtime.report.loaded.push(info);
                }
            }
        }
        runtime.report.refused.sort_by(|a, b| a.file.cmp(&b.file));
        for name in grants.keys() {
            if !runtime.report.loaded.iter().any(|p| p.name.as_str() == name) {
                tracing::warn!(plugin = %name, "grants configured for a plugin that is not loaded");
            }
        }
        Ok(runtime)
    }

    /// Load plugins from `config`, compiled code cached in [`PluginsConfig::cache_dir_in`] and
    /// authenticated with the key in [`PluginsConfig::cache_key_file_in`], both under
    /// `data_dir` unless configured elsewhere.
    pub async fn from_config(
        config: &PluginsConfig,
        data_dir: &Path,
        services: HostServices,
    ) -> Result<Self, PluginError> {
        Self::load_with_key(config, &config.cache_dir_in(data_dir), &config.cache_key_file_in(data_dir), services).await
    }

    async fn load_one(
        &self,
        linker: &Linker<HostState>,
        config: &PluginsConfig,
        grants: &BTreeMap<String, BTreeSet<Capability>>,
        file: &Path,
    ) -> Result<(Arc<Plugin>, Vec<ToolDef>, LoadedPlugin), PluginError> {
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let compile_err = |message: String| PluginError::Compile { file: file_name.clone(), message };
        let bytes = std::fs::read(file).map_err(PluginError::io(file))?;
        // Who the file is comes first: its grants, limits and pin are those of its file name.
        let stem = file.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let settings = config.plugin.get(&stem).cloned().unwrap_or_default();
        let id = identity::of_file(file, &bytes, settings.sha256.as_deref())?;
        let compiled = self.cache.compile(&self.engine, &bytes).map_err(|e| match e {
            PluginError::Compile { message, .. } => compile_err(message),
            other => other,
        })?;
        let pre = linker.instantiate_pre(&compiled.component).map_err(|e| compile_err(format!("{e:#}")))?;
        let pre = Pre::new(pre).map_err(|e| compile_err(format!("{e:#}")))?;
        let timeout_ms = settings.timeout_ms.unwrap_or(config.timeout_ms);
        let deadline_ms = settings.deadline_ms.unwrap_or(config.deadline_ms);
        let memory_mib = settings.memory_mib.unwrap_or(config.memory_mib);
        let plugin = Arc::new(Plugin {
            name: id.name.clone(),
            pre,
            memory_cap: mib_to_bytes(memory_mib)?,
            timeout: Duration::from_millis(timeout_ms),
            deadline: Duration::from_millis(deadline_ms),
            max_output: usize::try_from(config.max_output_bytes).unwrap_or(usize::MAX),
        });
        let job = Job {
            engine: self.engine.clone(),
            services: Arc::clone(&self.services),
            plugin: Arc::clone(&plugin),
            call: None,
            tool: file_name.clone(),
            action: String::new(),
            secrets: Secrets::default(),
            op: Op::Manifest,
        };
        let manifest = match call::run(&self.slots, job).await {
            Ok(Outcome::Manifest(manifest)) => *manifest,
            Ok(_) => return Err(PluginError::Engine("internal error: mismatched call outcome".into())),
            Err(e) => {
                return Err(PluginError::Manifest { plugin: file_name, reason: format!("`manifest` failed: {e}") });
            }
        };
        identity::check_claim(&id, &manifest.name)?;
        let granted = grants.get(id.name.as_str()).cloned().unwrap_or_default();
        let manifest = manifest::validate(&file_name, manifest, |_| Ok(granted.clone()))?;
        let info = LoadedPlugin {
            name: manifest.name,
            version: manifest.version,
            file: file.to_owned(),
            digest: id.digest,
            source: compiled.source,
            cache_file: compiled.cache_file,
            tools: manifest.tools.iter().map(|t| t.name.clone()).collect(),
            grants: granted.into_iter().collect(),
            timeout_ms,
            deadline_ms,
            memory_mib,
        };
        Ok((plugin, manifest.tools, info))
    }

    /// Add a validated plugin's tools (no other plugin claims any of their names).
    fn register(&mut self, plugin: Arc<Plugin>, defs: Vec<ToolDef>) {
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
    }

    /// Refuse a component: a log line, a security event and an audit entry naming the file.
    fn refuse(&mut self, file: PathBuf, error: PluginError) {
        let code = error.refusal_code();
        tracing::error!(file = %file.display(), code, "{error}");
        let details = serde_json::json!({ "file": file, "code": code, "reason": error.to_string() });
        toolgate_telemetry::security::emit(
            toolgate_telemetry::security::Level::Warning,
            "plugin_refused",
            None,
            None,
            details.clone(),
        );
        let mut event = toolgate_core::AuditEvent::new("plugin_refused", false, code.to_owned());
        event.detail = details;
        self.services.audit.record(event);
        self.report.refused.push(RefusedPlugin { file, error });
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
            Ok(Outcome::Verify(v)) => {
                Ok(Verdict { ok: v.ok, detail: secrets.scrub(&v.detail).into_owned(), skipped: false })
            }
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
        let mut tool_input = ToolInput::from(&entry.info);
        if let Some(category) = ctx.category {
            tool_input.category = category;
        }
        let job = Job {
            engine: self.engine.clone(),
            services: Arc::clone(&self.services),
            plugin: Arc::clone(&entry.plugin),
            call: Some(Arc::new(CallInfo {
                plugin: entry.plugin.name.to_string(),
                tool: tool_input,
                capabilities: entry.def.capabilities.clone(),
                context: ctx.clone(),
                secrets: secrets.clone(),
            })),
            tool: tool.to_owned(),
            action: ctx.action_id.clone(),
            secrets: secrets.clone(),
            op,
        };
        let result = call::run(&self.slots, job).instrument(span.clone()).await;
        let elapsed = started.elapsed();
        let status = call::status(&result);
        // Epoch interruption meters the plugin, not fuel: the duration is what it used.
        span::record_plugin(&span, status, None, elapsed);
        metrics::plugin_call(tool, op_name, status, elapsed);
        result
    }
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
}
