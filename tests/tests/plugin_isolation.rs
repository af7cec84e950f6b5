//! Plugins against the real binary, as an attacker would try them: a component dropped in under
//! another plugin's name or tool, and plugins spinning on every core.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, plugins_dir, run_cli, send};

/// A built fixture component.
fn fixture(name: &str) -> anyhow::Result<PathBuf> {
    let path = plugins_dir().with_file_name("fixtures").join(format!("{name}.wasm"));
    anyhow::ensure!(path.is_file(), "{} missing: run `cargo xtask plugins`", path.display());
    Ok(path)
}

/// A plugin directory holding `files` (name in the directory, fixture), and a config granting
/// `well_behaved` what its tools need.
fn setup(dir: &Path, files: &[(&str, &str)], extra_config: &str) -> anyhow::Result<(String, String)> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for (file, fixture_name) in files {
        std::fs::copy(fixture(fixture_name)?, plugins.join(file))?;
    }
    let config = dir.join("toolgate.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins.plugin.well_behaved]\ngrants = [\"exec:default\", \"containers-read\", \"workspace-read\", \
             \"workspace-write\"]\n{extra_config}"
        ),
    )?;
    Ok((plugins.display().to_string(), config.display().to_string()))
}

fn refused(listing: &Value) -> Vec<(String, String, String)> {
    listing["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let file = r["file"].as_str().and_then(|f| Path::new(f).file_name()?.to_str()).unwrap_or_default();
            (file.to_owned(), r["code"].as_str().unwrap_or_default().to_owned(), r["error"].to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_component_dropped_in_as_a_builtin_gets_none_of_its_grants_and_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // `docker.wasm` is a foreign component (it calls itself `colliding`); `evil.wasm` calls itself
    // `well_behaved`, a plugin with grants.
    let files = [("docker.wasm", "colliding"), ("evil.wasm", "well_behaved"), ("template.wasm", "template")];
    let (plugins, config) = setup(dir.path(), &files, "")?;
    let env = [("TOOLGATE_PLUGINS_DIR", plugins.as_str()), ("TOOLGATE_CONFIG", config.as_str())];
    let server = Server::start(&env)?;
    let admin = server.admin_token().await?;
    let (status, tools) = send(client().get(server.url("/api/v1/tools")).bearer_auth(&admin)).await?;
    assert_eq!(status, StatusCode::OK, "{tools}");
    let names: Vec<&str> = tools["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["greet"], "only the honest plugin serves tools");
    let (status, body) = send(
        client()
            .post(server.url("/api/v1/tools/echo/execute"))
            .bearer_auth(&admin)
            .json(&json!({"params": {"text": "x"}})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "unknown_tool"), "{body}");
    // Each refusal is a security event naming the file and the code.
    let events = server.security_events();
    for file in ["docker.wasm", "evil.wasm"] {
        assert!(
            events.iter().any(|e| e["event"] == "plugin_refused"
                && e["details"]["code"] == "plugin_identity"
                && e["details"]["file"].as_str().is_some_and(|f| f.ends_with(file))),
            "{file}: {events:?}"
        );
    }
    let data = server.stop()?;

    let out = run_cli(data.path(), &env, &["plugins", "list", "--json"], "")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    let refused = refused(&listing);
    assert_eq!(refused.len(), 2, "{listing}");
    for ((file, code, error), (want_file, claimed)) in
        refused.iter().zip([("docker.wasm", "colliding"), ("evil.wasm", "well_behaved")])
    {
        assert_eq!((file.as_str(), code.as_str()), (want_file, "plugin_identity"), "{error}");
        assert!(error.contains(&format!("calls it `{claimed}`")), "{error}");
    }
    Ok(())
}

#[test]
fn two_components_declaring_the_same_tool_are_both_refused_naming_both_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [("colliding.wasm", "colliding"), ("well_behaved.wasm", "well_behaved"), ("template.wasm", "template")];
    let (plugins, config) = setup(dir.path(), &files, "")?;
    let env = [("TOOLGATE_PLUGINS_DIR", plugins.as_str()), ("TOOLGATE_CONFIG", config.as_str())];
    let out = run_cli(dir.path(), &env, &["plugins", "list", "--json"], "")?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing: Value = serde_json::from_slice(&out.stdout)?;
    let refused = refused(&listing);
    let files: Vec<&str> = refused.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(files, ["colliding.wasm", "well_behaved.wasm"], "{listing}");
    for (_, code, error) in &refused {
        assert_eq!(code, "plugin_identity");
        assert!(error.contains("tool `echo`") && error.contains("`colliding.wasm`, `well_behaved.wasm`"), "{error}");
    }
    let loaded: Vec<&str> =
        listing["plugins"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(loaded, ["template"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_spinning_on_every_core_leave_healthz_answering_and_end_with_a_timeout() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [("infinite_loop.wasm", "infinite_loop"), ("template.wasm", "template")];
    // The plugin deadline is well above the bound /healthz is held to.
    let (plugins, config) = setup(dir.path(), &files, "[plugins.plugin.infinite_loop]\ntimeout_ms = 6000\n")?;
    let env = [
        ("TOOLGATE_PLUGINS_DIR", plugins.as_str()),
        ("TOOLGATE_CONFIG", config.as_str()),
        ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000"),
    ];
    let server = Server::start(&env)?;
    let admin = server.admin_token().await?;
    let spinners = 2 * std::thread::available_parallelism().map_or(2, usize::from);
    let calls: Vec<_> = (0..spinners)
        .map(|_| {
            let request = client()
                .post(server.url("/api/v1/tools/spin/execute"))
                .bearer_auth(&admin)
                .json(&json!({"params": {}}));
            tokio::spawn(send(request))
        })
        .collect();
    // Let every call reach the plugin and spin.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, _) = send(client().get(server.url("/healthz"))).await?;
        let took = started.elapsed();
        assert_eq!(status, StatusCode::OK);
        assert!(took < Duration::from_secs(2), "/healthz took {took:?} while plugins spin");
    }
    for call in calls {
        let (status, body) = call.await??;
        assert_eq!((status, code(&body)), (StatusCode::GATEWAY_TIMEOUT, "timeout"), "{body}");
    }
    Ok(())
}
