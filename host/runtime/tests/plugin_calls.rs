//! Calls into real plugins: their answers, and the limits a hostile or broken one meets (time,
//! memory, output size, the call pool, the workspace, the exec policy), after each of which the
//! runtime still serves.

#[path = "plugins_support/setup.rs"]
mod setup;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use setup::{Setup, call, still_serves, tool};
use toolgate_core::BoxFuture;
use toolgate_policy::{Decision, ExecInput, ExecPolicy, HostCallInput, Reason};
use toolgate_runtime::{PluginError, PluginSettings, ToolErrorKind};
use toolgate_sandbox::{ExecOutput, ExecRequest, Executor, SandboxError};

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

    fn decide_host_call(&self, _: &HostCallInput) -> Decision {
        let reasons = vec![Reason { code: "not_allowed".into(), message: "no host calls".into() }];
        Decision { allow: false, reasons, requirements: vec![], category: None, revision: "test".into() }
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

/// A component built against the frozen `toolgate:plugin@0.1.0` contract (raw wit-bindgen, no
/// SDK) loads beside current ones, its host calls work, and its error cases keep their meaning.
#[tokio::test]
async fn a_plugin_of_contract_0_1_0_keeps_working() -> anyhow::Result<()> {
    let mut setup = Setup::new(&["contract_v0_1", "well_behaved"])?;
    setup.config.plugin.insert("contract_v0_1".into(), setup::settings(&["workspace-read"]));
    std::fs::write(setup.workspace().join("notes.txt"), "hi")?;
    let runtime = setup.load().await?;
    let refused: Vec<String> = runtime.report().refused.iter().map(|r| format!("{:?}", r.error)).collect();
    assert!(refused.is_empty(), "{refused:?}");
    let spec = runtime.tool(&tool("v01_whoami")).context("v01_whoami listed")?;
    assert_eq!(spec.plugin.as_str(), "contract_v0_1");
    assert_eq!(spec.capabilities.iter().map(ToString::to_string).collect::<Vec<_>>(), ["workspace-read"]);
    let out = runtime.invoke(&call(), &tool("v01_whoami"), json!({})).await?.output;
    assert_eq!(out, json!({ "caller": "local", "role": "admin", "tool": "v01_whoami", "entries": ["notes.txt"] }));
    for (case, kind) in [
        ("invalid-params", ToolErrorKind::InvalidParams),
        ("denied", ToolErrorKind::Denied),
        ("unavailable", ToolErrorKind::Unavailable),
        ("timeout", ToolErrorKind::Timeout),
        ("failed", ToolErrorKind::Failed),
    ] {
        let err = runtime.invoke(&call(), &tool("v01_fail"), json!({ "case": case })).await.err();
        assert!(matches!(&err, Some(PluginError::Tool { kind: k, .. }) if *k == kind), "{case}: {err:?}");
    }
    still_serves(&runtime).await
}
