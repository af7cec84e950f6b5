//! The plugin runtime against real components built from `tests/fixtures/` and `sdk/template`
//! (`cargo xtask plugins`), and `toolgate plugins` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use toolgate_core::BoxFuture;
use toolgate_core::model::ToolName;
use toolgate_core::{AuditSink, MemoryAuditSink};
use toolgate_policy::{Decision, ExecInput, ExecPolicy, Reason};
use toolgate_runtime::{
    CallContext, HostServices, PluginError, PluginRuntime, PluginSettings, PluginsConfig, Source, ToolErrorKind,
    local_admin,
};
use toolgate_sandbox::{ExecOutput, ExecRequest, Executor, SandboxError};

/// Where `cargo xtask plugins` puts fixtures: `<target>/fixtures/`.
fn fixture(name: &str) -> anyhow::Result<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().context("target dir")?;
    let path = target.join("fixtures").join(format!("{name}.wasm"));
    if !path.is_file() {
        bail!("fixture `{}` is missing: run `cargo xtask plugins` first", path.display());
    }
    Ok(path)
}

/// A plugin directory holding copies of some fixtures, a workspace, and a cache directory.
struct Setup {
    dir: tempfile::TempDir,
    config: PluginsConfig,
    audit: Arc<MemoryAuditSink>,
}

impl Setup {
    fn new(fixtures: &[&str]) -> anyhow::Result<Setup> {
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

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }

    /// Compiled code is shared between tests (it is keyed by content), except where a test
    /// checks the cache itself.
    fn shared_cache() -> PathBuf {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
    }

    fn services(&self) -> HostServices {
        HostServices::new(Arc::clone(&self.audit) as Arc<dyn AuditSink>, self.workspace())
    }

    async fn load(&self) -> anyhow::Result<PluginRuntime> {
        self.load_with(self.services()).await
    }

    async fn load_with(&self, services: HostServices) -> anyhow::Result<PluginRuntime> {
        Ok(PluginRuntime::load(&self.config, &Self::shared_cache(), services).await?)
    }
}

fn settings(grants: &[&str]) -> PluginSettings {
    PluginSettings { grants: grants.iter().map(|g| (*g).to_owned()).collect(), ..PluginSettings::default() }
}

fn call() -> CallContext {
    CallContext {
        action_id: "0193-test-action".into(),
        caller: local_admin(),
        justification: Some("testing the runtime".into()),
        category: None,
    }
}

fn tool(name: &str) -> ToolName {
    name.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// The check after every failure: the runtime still answers a well-behaved call.
async fn still_serves(runtime: &PluginRuntime) -> anyhow::Result<()> {
    let out = runtime.invoke(&call(), &tool("echo"), json!({ "text": "still here" })).await?;
    assert_eq!(out.output, json!({ "text": "still here" }));
    Ok(())
}

#[tokio::test]
async fn well_behaved_tools_answer_with_their_output() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    let out = runtime.invoke(&call(), &tool("count_words"), json!({ "text": "two words" })).await?;
    assert_eq!(out.output, json!({ "words": 2, "chars": 9 }));
    assert_eq!(out.undo, None);
    let who = runtime.invoke(&call(), &tool("whoami"), json!({})).await?.output;
    assert_eq!(who["caller"], "local");
    assert_eq!(who["role"], "admin");
    assert_eq!(who["tool"], "whoami");
    assert_eq!(who["action_id"], "0193-test-action");
    assert_eq!(who["justification"], "testing the runtime");
    let logged = runtime.invoke(&call(), &tool("log_something"), json!({ "text": "hello log" })).await?;
    assert_eq!(logged.output, json!({ "records": 5 }));
    let echo = runtime.tool(&tool("echo")).context("echo listed")?;
    assert_eq!(echo.plugin.as_str(), "well_behaved");
    assert!(echo.capabilities.is_empty());
    Ok(())
}

#[tokio::test]
async fn no_call_sees_what_a_previous_call_left_in_memory() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    for secret in ["first caller's secret", "second caller's secret", "third"] {
        let out = runtime.invoke(&call(), &tool("remember"), json!({ "text": secret })).await?;
        assert_eq!(out.output, json!({ "calls": 1, "previous": null }), "state leaked between calls");
    }
    Ok(())
}

#[tokio::test]
async fn template_plugin_loads() -> anyhow::Result<()> {
    let setup = Setup::new(&["template"])?;
    let runtime = setup.load().await?;
    assert!(runtime.report().refused.is_empty(), "{:?}", runtime.report().refused);
    assert_eq!(runtime.report().loaded.len(), 1);
    assert!(!runtime.tools().is_empty());
    Ok(())
}

#[tokio::test]
async fn infinite_loop_times_out_and_the_host_keeps_serving() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["infinite_loop", "well_behaved"])?;
    setup
        .config
        .plugin
        .insert("infinite_loop".into(), PluginSettings { timeout_ms: Some(300), ..PluginSettings::default() });
    let runtime = setup.load().await?;
    let err = runtime.invoke(&call(), &tool("spin"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::Timeout { ref tool, limit_ms: 300 }) if tool == "spin"), "{err:?}");
    still_serves(&runtime).await
}

#[tokio::test]
async fn memory_bomb_hits_its_cap_and_the_host_keeps_serving() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["memory_bomb", "well_behaved"])?;
    setup
        .config
        .plugin
        .insert("memory_bomb".into(), PluginSettings { memory_mib: Some(16), ..PluginSettings::default() });
    let runtime = setup.load().await?;
    let err = runtime.invoke(&call(), &tool("hog"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::MemoryExhausted { ref tool, cap_mib: 16 }) if tool == "hog"), "{err:?}");
    still_serves(&runtime).await
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() -> anyhow::Result<()> {
    let setup = Setup::new(&["panics", "well_behaved"])?;
    let runtime = setup.load().await?;
    match runtime.invoke(&call(), &tool("boom"), json!({})).await {
        Err(PluginError::Panicked { tool, message }) => {
            assert_eq!(tool, "boom");
            assert!(message.contains("boom: this fixture panics on purpose"), "{message}");
        }
        other => bail!("expected a panic, got {other:?}"),
    }
    still_serves(&runtime).await
}

#[tokio::test]
async fn ungranted_capability_refuses_the_plugin_naming_tool_and_capability() -> anyhow::Result<()> {
    let setup = Setup::new(&["ungranted", "well_behaved"])?;
    let runtime = setup.load().await?;
    let refused = &runtime.report().refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    match &refused[0].error {
        PluginError::Ungranted { plugin, tool, capability } => {
            assert_eq!(
                (plugin.as_str(), tool.as_str(), capability.as_str()),
                ("ungranted", "admin_exec", "exec:host-admin")
            );
        }
        other => bail!("expected an ungranted refusal, got {other:?}"),
    }
    assert!(runtime.tool(&tool("admin_exec")).is_none());
    still_serves(&runtime).await
}

#[tokio::test]
async fn colliding_tool_names_refuse_both_plugins_naming_both_files() -> anyhow::Result<()> {
    let setup = Setup::new(&["colliding", "well_behaved", "panics"])?;
    let runtime = setup.load().await?;
    let refused = &runtime.report().refused;
    let files: Vec<_> = refused.iter().map(|r| r.file.file_name().unwrap_or_default().to_owned()).collect();
    assert_eq!(files, ["colliding.wasm", "well_behaved.wasm"], "{refused:?}");
    for refusal in refused {
        assert_eq!(refusal.code(), "plugin_identity");
        let message = refusal.error.to_string();
        assert!(matches!(refusal.error, PluginError::Identity { .. }), "{message}");
        assert!(
            message.contains("tool `echo`") && message.contains("`colliding.wasm`, `well_behaved.wasm`"),
            "{message}"
        );
    }
    assert!(runtime.tool(&tool("echo")).is_none(), "neither claimant serves the tool");
    assert!(runtime.tool(&tool("count_words")).is_none(), "no tool of a refused plugin is served");
    assert!(runtime.tool(&tool("boom")).is_some(), "the others load");
    let audited: Vec<_> = setup.audit.events().into_iter().filter(|e| e.kind == "plugin_refused").collect();
    assert_eq!(audited.len(), 2, "{audited:?}");
    assert!(audited.iter().all(|e| !e.allowed && e.reason == "plugin_identity"), "{audited:?}");
    Ok(())
}

#[tokio::test]
async fn a_component_dropped_in_under_another_plugins_name_gets_no_grants_and_is_refused() -> anyhow::Result<()> {
    let setup = Setup::new(&[])?;
    // A foreign component calling itself `well_behaved`, which has grants, under its own file name;
    // and another one dropped in as `docker.wasm`, whose grants are the built-in docker's.
    std::fs::copy(fixture("well_behaved")?, setup.config.dir.join("impostor.wasm"))?;
    std::fs::copy(fixture("colliding")?, setup.config.dir.join("docker.wasm"))?;
    let runtime = setup.load().await?;
    assert!(runtime.report().loaded.is_empty(), "{:?}", runtime.report().loaded);
    let refused = &runtime.report().refused;
    assert_eq!(refused.len(), 2, "{refused:?}");
    for (refusal, (file, claimed)) in
        refused.iter().zip([("docker.wasm", "colliding"), ("impostor.wasm", "well_behaved")])
    {
        assert_eq!(refusal.code(), "plugin_identity", "{}", refusal.error);
        let message = refusal.error.to_string();
        assert!(
            message.contains(&format!("`{file}`")) && message.contains(&format!("calls it `{claimed}`")),
            "{message}"
        );
    }
    assert!(runtime.tools().is_empty(), "no tool of an impostor is served");
    Ok(())
}

#[tokio::test]
async fn a_pinned_digest_refuses_any_other_content() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    let loaded = setup.load().await?;
    let digest = loaded.report().loaded[0].digest.clone();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    setup.config.plugin.get_mut("well_behaved").context("settings")?.sha256 = Some(digest.clone());
    let pinned = setup.load().await?;
    assert_eq!(pinned.report().loaded.len(), 1, "{:?}", pinned.report().refused);
    // The file is replaced by another component that calls itself by the same name.
    std::fs::copy(fixture("template")?, setup.config.dir.join("well_behaved.wasm"))?;
    let replaced = setup.load().await?;
    let refused = &replaced.report().refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].code(), "plugin_identity");
    assert!(refused[0].error.to_string().contains(&format!("not the `{digest}` pinned")), "{}", refused[0].error);
    setup.config.plugin.get_mut("well_behaved").context("settings")?.sha256 = Some("sha256:beef".into());
    let err = setup.load().await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("`sha256:beef`"), "{err}");
    Ok(())
}

#[tokio::test]
async fn malformed_manifest_is_refused_with_the_reason() -> anyhow::Result<()> {
    let setup = Setup::new(&["malformed", "well_behaved"])?;
    let runtime = setup.load().await?;
    let refused = &runtime.report().refused;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].error.to_string(),
        "plugin `malformed` refused: invalid tool name `Bad Name`: expected a lower-case letter, then lower-case \
         letters, digits or separators, at most 64 characters"
    );
    still_serves(&runtime).await
}

#[tokio::test]
async fn undeclared_exec_is_denied_and_audited() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    match runtime.invoke(&call(), &tool("sneaky_exec"), json!({})).await {
        Err(PluginError::Tool { kind: ToolErrorKind::Denied, message, .. }) => {
            assert!(message.contains("did not declare capability `exec:default`"), "{message}");
        }
        other => bail!("expected denied, got {other:?}"),
    }
    let events = setup.audit.events();
    assert!(
        events.iter().any(|e| e.kind == "exec_decision" && !e.allowed && e.command.as_deref() == Some("echo sneaky")),
        "{events:?}"
    );
    Ok(())
}

#[tokio::test]
async fn params_are_checked_against_the_schema_with_the_field_path() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    match runtime.invoke(&call(), &tool("echo"), json!({ "text": 42 })).await {
        Err(PluginError::InvalidParams { tool, message }) => {
            assert_eq!(tool, "echo");
            assert!(message.contains("`/text`"), "{message}");
        }
        other => bail!("expected invalid params, got {other:?}"),
    }
    let err = runtime.invoke(&call(), &tool("nope"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::UnknownTool(ref t)) if t == "nope"), "{err:?}");
    still_serves(&runtime).await
}

#[tokio::test]
async fn write_note_writes_verifies_and_rolls_back() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    let note = setup.workspace().join("notes/today.md");
    let params = json!({ "path": "notes/today.md", "content": "first" });
    runtime.invoke(&call(), &tool("write_note"), params).await?;
    let params = json!({ "path": "notes/today.md", "content": "second" });
    let second = runtime.invoke(&call(), &tool("write_note"), params.clone()).await?;
    assert_eq!(std::fs::read_to_string(&note)?, "second");
    assert_eq!(second.output["created"], false);
    let verdict = runtime.verify(&call(), &tool("write_note"), &params, &second.output).await?;
    assert!(verdict.ok, "{verdict:?}");
    std::fs::write(&note, "tampered")?;
    let verdict = runtime.verify(&call(), &tool("write_note"), &params, &second.output).await?;
    assert!(!verdict.ok, "{verdict:?}");
    let undo = second.undo.context("write_note returns an undo record")?;
    let restored = runtime.rollback(&call(), &tool("write_note"), &undo).await?;
    assert_eq!(restored["restored"], "previous-content");
    assert_eq!(std::fs::read_to_string(&note)?, "first");
    Ok(())
}

#[tokio::test]
async fn workspace_escapes_are_denied() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let outside = tempfile::tempdir()?;
    std::os::unix::fs::symlink(outside.path(), setup.workspace().join("out"))?;
    std::fs::write(outside.path().join("target.txt"), "outside")?;
    std::os::unix::fs::symlink(outside.path().join("target.txt"), setup.workspace().join("link.txt"))?;
    let runtime = setup.load().await?;
    for path in ["../x", "/etc/passwd", "out/x", "link.txt", "notes/../../x"] {
        let params = json!({ "path": path, "content": "escaped" });
        match runtime.invoke(&call(), &tool("write_note"), params).await {
            Err(PluginError::Tool { kind: ToolErrorKind::Denied, message, .. }) => {
                assert!(message.contains(&format!("`{path}`")), "{message}");
            }
            other => bail!("`{path}`: expected denied, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read_to_string(outside.path().join("target.txt"))?, "outside");
    assert!(!outside.path().join("x").exists());
    still_serves(&runtime).await
}

#[tokio::test]
async fn missing_services_answer_unavailable_and_missing_policy_denies() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved"])?;
    let runtime = setup.load().await?;
    let err = runtime.invoke(&call(), &tool("list_containers"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::Tool { kind: ToolErrorKind::Unavailable, .. })), "{err:?}");
    // No exec policy: fail closed, nothing runs.
    let err = runtime.invoke(&call(), &tool("run_echo"), json!({ "text": "hi" })).await.err();
    assert!(
        matches!(err, Some(PluginError::Tool { kind: ToolErrorKind::Denied, ref message, .. }) if message.contains("no exec policy")),
        "{err:?}"
    );
    Ok(())
}

/// Allows `echo` only, like a minimal policy set would.
struct EchoOnly;

impl ExecPolicy for EchoOnly {
    fn decide_exec(&self, input: &ExecInput) -> Decision {
        let allow = input.argv.first().is_some_and(|p| p == "echo");
        let reasons = if allow {
            vec![]
        } else {
            vec![Reason { code: "command_not_allowed".into(), message: "only echo".into() }]
        };
        Decision { allow, reasons, requirements: vec![], category: None, revision: "test".into() }
    }
}

/// Answers like a sandbox whose command took `delay`, to show host time is not plugin time.
struct SlowEcho {
    delay: Duration,
}

impl Executor for SlowEcho {
    fn exec(&self, request: ExecRequest) -> BoxFuture<'_, Result<ExecOutput, SandboxError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            Ok(ExecOutput {
                exit_code: 0,
                stdout: format!("{}\n", request.argv[1..].join(" ")),
                stderr: String::new(),
                duration: self.delay,
                truncated: false,
                container_id: None,
            })
        })
    }
}

#[tokio::test]
async fn exec_goes_through_policy_then_executor_and_host_time_is_not_plugin_time() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    setup.config.plugin.get_mut("well_behaved").context("settings")?.timeout_ms = Some(200);
    let mut services = setup.services();
    services.exec_policy = Some(Arc::new(EchoOnly));
    // Without an executor the allowed command cannot run.
    let runtime = setup.load_with(services.clone()).await?;
    let err = runtime.invoke(&call(), &tool("run_echo"), json!({ "text": "hi" })).await.err();
    assert!(matches!(err, Some(PluginError::Tool { kind: ToolErrorKind::Unavailable, .. })), "{err:?}");
    // A command that takes longer than the plugin's whole deadline still completes.
    services.executor = Some(Arc::new(SlowEcho { delay: Duration::from_millis(600) }));
    let runtime = setup.load_with(services).await?;
    let out = runtime.invoke(&call(), &tool("run_echo"), json!({ "text": "hi" })).await?;
    assert_eq!(out.output["stdout"], "hi\n");
    assert!(setup.audit.events().iter().any(|e| e.kind == "exec_decision" && e.allowed));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_pool_wait_for_a_slot() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    setup.config.max_concurrent_calls = 2;
    let mut services = setup.services();
    services.exec_policy = Some(Arc::new(EchoOnly));
    services.executor = Some(Arc::new(SlowEcho { delay: Duration::from_millis(50) }));
    let runtime = Arc::new(setup.load_with(services).await?);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let runtime = Arc::clone(&runtime);
            tokio::spawn(
                async move { runtime.invoke(&call(), &tool("run_echo"), json!({ "text": format!("n{i}") })).await },
            )
        })
        .collect();
    for (i, handle) in calls.into_iter().enumerate() {
        assert_eq!(handle.await??.output["stdout"], format!("n{i}\n"));
    }
    Ok(())
}

#[tokio::test]
async fn second_load_uses_the_compiled_cache() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let setup = Setup::new(&["well_behaved"])?;
    let cache = setup.dir.path().join("cache");
    let first = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    let loaded = &first.report().loaded[0];
    assert_eq!(loaded.source, Source::Compiled);
    assert!(loaded.cache_file.is_file() && loaded.cache_file.starts_with(&cache));
    assert_eq!(std::fs::metadata(&cache)?.permissions().mode() & 0o777, 0o700, "the cache is private");
    let key = setup.dir.path().join("cache.key");
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600, "the key is private");
    assert_eq!(std::fs::read(&key)?.len(), 32);
    let second = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    let reloaded = &second.report().loaded[0];
    assert_eq!(reloaded.source, Source::Cache);
    assert_eq!(reloaded.cache_file, loaded.cache_file);
    still_serves(&second).await?;
    // A damaged entry is not trusted: it is recompiled and replaced.
    std::fs::write(&loaded.cache_file, b"not a compiled component")?;
    let third = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    assert_eq!(third.report().loaded[0].source, Source::Compiled);
    still_serves(&third).await
}

#[tokio::test]
async fn a_tampered_cache_entry_is_recompiled_and_the_right_code_runs() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved", "panics"])?;
    let cache = setup.dir.path().join("cache");
    let first = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    let entries: Vec<PathBuf> = first.report().loaded.iter().map(|p| p.cache_file.clone()).collect();
    assert_eq!(entries.len(), 2);
    // Swap the two entries' files: each name now holds the other component's (genuine) code.
    let swap = setup.dir.path().join("swap");
    std::fs::rename(&entries[0], &swap)?;
    std::fs::rename(&entries[1], &entries[0])?;
    std::fs::rename(&swap, &entries[1])?;
    let swapped = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    assert!(swapped.report().loaded.iter().all(|p| p.source == Source::Compiled), "a swapped entry was trusted");
    still_serves(&swapped).await?;
    let err = swapped.invoke(&call(), &tool("boom"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::Panicked { .. })), "{err:?}");
    // Flip bytes inside the compiled code of an entry, its header intact.
    let mut bytes = std::fs::read(&entries[0])?;
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&entries[0], &bytes)?;
    let flipped = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    let sources: Vec<Source> = flipped.report().loaded.iter().map(|p| p.source).collect();
    assert!(sources.contains(&Source::Compiled) && sources.contains(&Source::Cache), "{sources:?}");
    still_serves(&flipped).await?;
    // An entry made with another key (another server's, or a forger's) is not trusted either.
    std::fs::write(setup.dir.path().join("cache.key"), [7u8; 32])?;
    let rekeyed = PluginRuntime::load(&setup.config, &cache, setup.services()).await?;
    assert!(rekeyed.report().loaded.iter().all(|p| p.source == Source::Compiled));
    still_serves(&rekeyed).await
}

#[tokio::test]
async fn an_output_above_the_cap_is_refused_before_it_is_parsed() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    setup.config.max_output_bytes = 64;
    let runtime = setup.load().await?;
    let text = "x".repeat(100);
    match runtime.invoke(&call(), &tool("echo"), json!({ "text": text })).await {
        Err(PluginError::OutputTooLarge { tool, what, size, cap }) => {
            assert_eq!((tool.as_str(), what, cap), ("echo", "output", 64));
            assert!(size > 100, "{size}");
        }
        other => bail!("expected output_too_large, got {other:?}"),
    }
    still_serves(&runtime).await
}

#[tokio::test]
async fn the_wall_clock_deadline_counts_host_calls() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    setup.config.plugin.get_mut("well_behaved").context("settings")?.deadline_ms = Some(300);
    let mut services = setup.services();
    services.exec_policy = Some(Arc::new(EchoOnly));
    // A host call that would take far longer than the whole call may.
    services.executor = Some(Arc::new(SlowEcho { delay: Duration::from_secs(3600) }));
    let runtime = setup.load_with(services).await?;
    let err = runtime.invoke(&call(), &tool("run_echo"), json!({ "text": "hi" })).await.err();
    assert!(
        matches!(err, Some(PluginError::DeadlineExceeded { ref tool, limit_ms: 300 }) if tool == "run_echo"),
        "{err:?}"
    );
    still_serves(&runtime).await
}

#[tokio::test]
async fn the_wall_clock_deadline_stops_a_spinning_plugin_too() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["infinite_loop", "well_behaved"])?;
    let settings = PluginSettings { timeout_ms: Some(60_000), deadline_ms: Some(300), ..PluginSettings::default() };
    setup.config.plugin.insert("infinite_loop".into(), settings);
    let runtime = setup.load().await?;
    let err = runtime.invoke(&call(), &tool("spin"), json!({})).await.err();
    assert!(matches!(err, Some(PluginError::DeadlineExceeded { limit_ms: 300, .. })), "{err:?}");
    still_serves(&runtime).await
}

#[tokio::test]
async fn bad_grants_fail_the_load() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["well_behaved"])?;
    setup.config.plugin.insert("well_behaved".into(), settings(&["exec"]));
    let err = setup.load().await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("plugin `well_behaved`") && err.contains("unknown capability `exec`"), "{err}");
    Ok(())
}

/// `toolgate plugins ...` with a config file pointing at `setup`'s directories.
fn toolgate(setup: &Setup, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let config = setup.dir.path().join("toolgate.toml");
    // The shipped policies allowlist no fixture: a copy adds `run_echo`'s commands.
    let policies = toolgate_tests::policies_with_fixtures(setup.dir.path())?;
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[plugins]\ndir = {:?}\n[plugins.plugin.well_behaved]\ngrants = [\"workspace-read\", \"workspace-write\", \"exec:default\", \"containers-read\"]\n[sandbox]\nworkspace = {:?}\npool_size = 0\n[policy]\ndir = {:?}\n",
            setup.dir.path().join("data"),
            setup.config.dir,
            setup.workspace(),
            policies,
        ),
    )?;
    Ok(Command::new(toolgate_tests::binary()?)
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("TOOLGATE_LOG", "error")
        .env("TOOLGATE_AUDIT_KEY_FILE", toolgate_tests::audit_key_file())
        .output()?)
}

#[test]
fn cli_lists_plugins_and_calls_a_tool() -> anyhow::Result<()> {
    let setup = Setup::new(&["well_behaved", "ungranted"])?;
    let out = toolgate(&setup, &["plugins", "list", "--json"])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let plugin = &listing["plugins"][0];
    assert_eq!(plugin["name"], "well_behaved");
    assert!(plugin["grants"].as_array().is_some_and(|g| g.contains(&json!("exec:default"))));
    let write_note =
        plugin["tools"].as_array().and_then(|t| t.iter().find(|t| t["name"] == "write_note")).context("write_note")?;
    assert_eq!(write_note["category"], "SENSITIVE");
    assert_eq!(write_note["capabilities"], json!(["workspace-read", "workspace-write"]));
    assert!(listing["refused"][0]["error"].as_str().is_some_and(|e| e.contains("exec:host-admin")), "{listing}");

    let out = toolgate(&setup, &["plugins", "list"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("well_behaved 0.1.0") && text.contains("refused"), "{text}");

    let out = toolgate(&setup, &["plugins", "call", "count_words", "--params", r#"{"text": "a b c"}"#])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout)?, json!({ "words": 3, "chars": 5 }));

    let out = toolgate(&setup, &["plugins", "call", "count_words", "--params", r#"{"text": 1}"#])?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid params for `count_words`") && stderr.contains("`/text`"), "{stderr}");

    // A call runs its commands through the real exec policy and the real sandbox.
    toolgate_tests::require_docker()?;
    let out = toolgate(&setup, &["plugins", "call", "run_echo", "--params", r#"{"text": "x"}"#])?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let output: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!((output["exit_code"].as_i64(), output["stdout"].as_str()), (Some(0), Some("x\n")), "{output}");

    let out = toolgate(&setup, &["plugins", "call", "sneaky_exec"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"));
    Ok(())
}
