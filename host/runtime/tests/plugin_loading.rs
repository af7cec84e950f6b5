//! Which plugins the runtime loads, and with what: refusals that name the file, the tool and the
//! capability; a plugin is its file name and its content, whatever its manifest says; the
//! compilation cache; and `toolgate plugins` as a user runs it.

#[path = "plugins_support/setup.rs"]
mod setup;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::json;
use setup::{Setup, call, fixture, settings, still_serves, tool};
use toolgate_runtime::{PluginError, PluginRuntime, Source};

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
