//! `toolgate doctor`, run as the real binary against the real Docker engine.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output};

/// A strong signing secret (random hex).
const SECRET: &str = "7d1f0a9c3e5b82f46a0d9e1c7b3f5a28e4c6d0b9f1a37e5c2d8b4f6a09e1c3d5b7f2";

fn doctor(workspace: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    cmd.arg("doctor").args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("TOOLGATE_SANDBOX_WORKSPACE", workspace).env("TOOLGATE_LOG", "error");
    cmd.envs(env.iter().copied());
    Ok(cmd.output()?)
}

/// What the guide asks of a production installation, with `data` as its data directory.
fn conforming(data: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TOOLGATE_JWT_SECRET", SECRET.to_owned()),
        ("TOOLGATE_CORS_ORIGINS", "https://ops.example".to_owned()),
        ("VERIFY_REQUIRED", "true".to_owned()),
        ("TOOLGATE_HTTP_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ("TOOLGATE_DATA_DIR", data.to_owned()),
        ("TOOLGATE_AUDIT_KEY_FILE", toolgate_tests::audit_key_file().display().to_string()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn a_conforming_installation_passes_every_check() -> anyhow::Result<()> {
    toolgate_tests::require_docker()?;
    let workspace = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700))?;
    let env = conforming(data.path().to_str().unwrap_or_default());
    // A store with an audit log to verify: a first account created by the command line.
    let mut add = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    add.args(["users", "add", "alice", "--role", "admin"]).env_clear().envs(borrowed(&env));
    add.env("TOOLGATE_AUTH_SCRYPT_LOG_N", "8").stdin(std::process::Stdio::piped());
    let mut child = add.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(b"Str0ng-Passw0rd!\nStr0ng-Passw0rd!\n")?;
    }
    let added = child.wait_with_output()?;
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));

    let out = doctor(workspace.path(), &borrowed(&env), &[])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "ok    sandboxed echo: `echo OK` answered",
        "ok    docker: reachable",
        "ok    VERIFY_REQUIRED: true",
        "ok    https: behind the trusted proxies",
        "ok    logging: no debug logging",
        "ok    rate limits: login 5/60 s",
        "ok    security events and audit: always on",
        "ok    audit chain: intact",
        "ok    data directory: ",
        "ok    jwt secret: 68 characters",
        "ok    sandbox workspace: ",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("conforming")), "{stdout}");
    assert!(!stdout.contains(SECRET), "the secret is printed");
    Ok(())
}

#[test]
fn a_weak_installation_fails_each_weak_check_and_exits_non_zero() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755))?;
    let out = doctor(
        workspace.path(),
        &[
            ("TOOLGATE_JWT_SECRET", "short-secret"),
            ("TOOLGATE_CORS_ORIGINS", "*"),
            ("SANDBOX_NETWORK", "bridge"),
            ("SANDBOX_READONLY", "false"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
            ("TOOLGATE_DATA_DIR", data.path().to_str().unwrap_or_default()),
            ("TOOLGATE_LOG", "info,toolgate_server=debug"),
        ],
        &[],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let failed = [
        "SANDBOX_NETWORK",
        "SANDBOX_READONLY",
        "VERIFY_REQUIRED",
        "docker",
        "jwt secret",
        "logging",
        "https",
        "data directory",
        "cors origins",
    ];
    for name in failed {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("FAIL  {name}:"))), "{name} not failed:\n{stdout}");
    }
    assert!(stdout.contains("FAIL  jwt secret: 12 characters"), "{stdout}");
    assert!(stdout.contains("has mode 0755 (0700 required"), "{stdout}");
    assert!(stdout.contains("FAIL  logging: TOOLGATE_LOG=`info,toolgate_server=debug`"), "{stdout}");
    assert!(!stdout.contains("short-secret"), "the secret is printed");
    let last = format!("NOT CONFORMING: {} of", failed.len());
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with(&last)), "{stdout}");
    Ok(())
}

#[test]
fn json_output_lists_every_check_with_its_status_and_a_predictable_secret_fails() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700))?;
    let mut env = conforming(data.path().to_str().unwrap_or_default());
    env[0].1 = "ab".repeat(40);
    let out = doctor(workspace.path(), &borrowed(&env), &["--json"])?;
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["conforming"], false, "{doc}");
    let checks = doc["checks"].as_array().cloned().unwrap_or_default();
    let status = |name: &str| {
        checks.iter().find(|c| c["name"] == name).map(|c| c["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(status("jwt secret").as_deref(), Some("fail"), "{doc}");
    let secret = checks.iter().find(|c| c["name"] == "jwt secret").cloned().unwrap_or_default();
    assert!(secret["message"].as_str().is_some_and(|m| m.contains("too predictable")), "{secret}");
    // A data directory without a store yet: nothing to verify, said as a warning.
    assert_eq!(status("audit chain").as_deref(), Some("warn"), "{doc}");
    for name in ["VERIFY_REQUIRED", "https", "logging", "rate limits", "data directory", "sandbox workspace"] {
        assert_eq!(status(name).as_deref(), Some("ok"), "{name}: {doc}");
    }
    assert!(checks.iter().all(|c| c["message"].is_string()), "{doc}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&"ab".repeat(40)), "the secret is printed");
    Ok(())
}

/// A profile a plugin is granted whose image the engine lacks: `systemd_logs` could not work,
/// so the installation does not conform, and the failure names the grant, the plugin and the
/// image to build or set.
#[test]
fn a_granted_profile_whose_image_is_missing_fails_naming_it() -> anyhow::Result<()> {
    toolgate_tests::require_docker()?;
    let workspace = tempfile::tempdir()?;
    let data = tempfile::tempdir()?;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o700))?;
    let config = data.path().join("toolgate.toml");
    std::fs::write(&config, "[sandbox.profiles.journal]\nimage = \"toolgate-missing:0\"\n")?;
    let mut env = conforming(data.path().to_str().unwrap_or_default());
    env.push(("TOOLGATE_CONFIG", config.display().to_string()));
    let out = doctor(workspace.path(), &borrowed(&env), &[])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("FAIL  granted profiles:")).unwrap_or_default();
    assert!(line.contains("`exec:journal` (granted to systemd)"), "{stdout}");
    assert!(line.contains("image `toolgate-missing:0` of sandbox profile `journal` is not in the engine"), "{stdout}");
    assert!(!line.contains("exec:default"), "the default profile works: {stdout}");
    Ok(())
}
