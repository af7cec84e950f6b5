//! A fake of the tool port ([`Tools`]): tools with a category and verify/rollback support, each
//! with a scripted behaviour, and a record of every call the pipeline made, so that a test can
//! say what ran (and what never did) without a plugin runtime, wasm or Docker.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use toolgate_core::BoxFuture;
use toolgate_core::model::{Category, ToolName};
use toolgate_runtime::{CallContext, Invocation, PluginError, ToolErrorKind, ToolInfo, Tools, Verdict};

/// What one tool does when called.
#[derive(Debug, Clone)]
pub struct Script {
    /// `invoke`: its output and undo record, or the error it answers with.
    pub invoke: Result<(Value, Option<Value>), ToolErrorKind>,
    /// `verify`: whether the effect is found.
    pub verify_ok: bool,
    /// `rollback`: what it says it restored, or the error it answers with.
    pub rollback: Result<Value, ToolErrorKind>,
}

/// One call the fake received.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `invoke`.
    Invoke {
        /// The tool.
        tool: String,
        /// The action it ran for.
        action_id: String,
        /// Who it ran as.
        caller: String,
        /// Its parameters.
        params: Value,
    },
    /// `verify`.
    Verify {
        /// The tool.
        tool: String,
        /// The action it verified.
        action_id: String,
        /// The output it was asked about.
        output: Value,
    },
    /// `rollback`.
    Rollback {
        /// The tool.
        tool: String,
        /// The rollback action it ran for.
        action_id: String,
        /// Who it ran as.
        caller: String,
        /// The undo record it was given.
        undo: Value,
    },
}

/// A tool of the fake, before it is added.
#[derive(Debug, Clone)]
pub struct FakeTool {
    info: ToolInfo,
    script: Script,
}

impl FakeTool {
    /// A tool of plugin `fake` in `category` that verifies, rolls back, succeeds, and records
    /// an undo record for any category but READ.
    pub fn new(name: &str, category: Category) -> anyhow::Result<FakeTool> {
        let undo = (category != Category::Read).then(|| json!({ "restore": name }));
        Ok(FakeTool {
            info: ToolInfo {
                name: name.parse()?,
                plugin: "fake".parse()?,
                description: format!("{name}, a fake {} tool", category.as_str()),
                category,
                params_schema: json!({ "type": "object" }),
                output_schema: json!({ "type": "object" }),
                supports_verify: true,
                supports_rollback: category != Category::Read,
                capabilities: Vec::new(),
            },
            script: Script {
                invoke: Ok((json!({ "done": name }), undo)),
                verify_ok: true,
                rollback: Ok(json!({ "restored": name })),
            },
        })
    }

    /// The tool as the runtime describes it.
    pub fn info(&self) -> &ToolInfo {
        &self.info
    }

    /// Without `verify` (and `rollback`) support.
    pub fn without_verify(mut self) -> FakeTool {
        self.info.supports_verify = false;
        self
    }
}

/// The fake tool port.
#[derive(Debug)]
pub struct FakeTools {
    tools: HashMap<ToolName, ToolInfo>,
    scripts: Mutex<HashMap<String, Script>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeTools {
    /// A port serving `tools`.
    pub fn new(tools: impl IntoIterator<Item = FakeTool>) -> FakeTools {
        let (mut infos, mut scripts) = (HashMap::new(), HashMap::new());
        for tool in tools {
            scripts.insert(tool.info.name.to_string(), tool.script);
            infos.insert(tool.info.name.clone(), tool.info);
        }
        FakeTools { tools: infos, scripts: Mutex::new(scripts), calls: Mutex::new(Vec::new()) }
    }

    /// Change what `tool` does from now on.
    pub fn script(&self, tool: &str, change: impl FnOnce(&mut Script)) -> anyhow::Result<()> {
        let mut scripts = self.scripts.lock().map_err(|_| anyhow::anyhow!("scripts poisoned"))?;
        let script = scripts.get_mut(tool).ok_or_else(|| anyhow::anyhow!("no fake tool `{tool}`"))?;
        change(script);
        Ok(())
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn scripted(&self, tool: &ToolName) -> Result<Script, PluginError> {
        self.scripts
            .lock()
            .ok()
            .and_then(|s| s.get(tool.as_str()).cloned())
            .ok_or_else(|| PluginError::UnknownTool(tool.to_string()))
    }

    fn record(&self, call: Call) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

fn failure(tool: &ToolName, kind: ToolErrorKind, what: &str) -> PluginError {
    PluginError::Tool { tool: tool.to_string(), kind, message: format!("the fake's {what} answers {kind}") }
}

impl Tools for FakeTools {
    fn tool(&self, name: &ToolName) -> Option<&ToolInfo> {
        self.tools.get(name)
    }

    fn check_params(&self, tool: &ToolName, params: &Value) -> Result<(), PluginError> {
        match (self.tools.get(tool), params.is_object()) {
            (None, _) => Err(PluginError::UnknownTool(tool.to_string())),
            (Some(_), true) => Ok(()),
            (Some(_), false) => {
                Err(PluginError::InvalidParams { tool: tool.to_string(), message: "``: not an object".into() })
            }
        }
    }

    fn invoke<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        params: Value,
    ) -> BoxFuture<'a, Result<Invocation, PluginError>> {
        Box::pin(async move {
            self.record(Call::Invoke {
                tool: tool.to_string(),
                action_id: call.action_id.clone(),
                caller: call.caller.name.clone(),
                params,
            });
            match self.scripted(tool)?.invoke {
                Ok((output, undo)) => Ok(Invocation { output, undo, duration: Duration::from_millis(1) }),
                Err(kind) => Err(failure(tool, kind, "invoke")),
            }
        })
    }

    fn verify<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        _params: &'a Value,
        output: &'a Value,
    ) -> BoxFuture<'a, Result<Verdict, PluginError>> {
        Box::pin(async move {
            self.record(Call::Verify {
                tool: tool.to_string(),
                action_id: call.action_id.clone(),
                output: output.clone(),
            });
            let ok = self.scripted(tool)?.verify_ok;
            let detail = if ok { "the effect is there" } else { "the effect is missing" };
            Ok(Verdict { ok, detail: detail.into(), skipped: false })
        })
    }

    fn rollback<'a>(
        &'a self,
        call: &'a CallContext,
        tool: &'a ToolName,
        undo: &'a Value,
    ) -> BoxFuture<'a, Result<Value, PluginError>> {
        Box::pin(async move {
            self.record(Call::Rollback {
                tool: tool.to_string(),
                action_id: call.action_id.clone(),
                caller: call.caller.name.clone(),
                undo: undo.clone(),
            });
            self.scripted(tool)?.rollback.map_err(|kind| failure(tool, kind, "rollback"))
        })
    }
}
