//! `toolgate doctor`, run as the real binary against the real Docker engine.

use std::process::{Command, Output};

fn doctor(workspace: &std::path::Path, env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolgate"));
    cmd.arg("doctor").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("TOOLGATE_SANDBOX_WORKSPACE", workspace).env("TOOLGATE_LOG", "error");
    cmd.envs(env.iter().copied());
    Ok(cmd.output()?)
}

#[test]
fn a_conforming_installation_passes_every_check() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    let secret = "s".repeat(64);
    let out = doctor(
        workspace.path(),
        &[("TOOLGATE_JWT_SECRET", &secret), ("TOOLGATE_CORS_ORIGINS", "https://ops.example")],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok    sandboxed echo: `echo OK` answered"), "{stdout}");
    assert!(stdout.contains("ok    docker: reachable"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("conforming")), "{stdout}");
    assert!(!stdout.contains(&secret), "the secret is printed");
    Ok(())
}

#[test]
fn a_weak_installation_fails_each_weak_check_and_exits_non_zero() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    let out = doctor(
        workspace.path(),
        &[
            ("TOOLGATE_JWT_SECRET", "short-secret"),
            ("TOOLGATE_CORS_ORIGINS", "*"),
            ("SANDBOX_NETWORK", "bridge"),
            ("SANDBOX_READONLY", "false"),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for failed in ["SANDBOX_NETWORK", "SANDBOX_READONLY", "docker", "jwt secret", "cors origins"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("FAIL  {failed}:"))), "{failed} not failed:\n{stdout}");
    }
    assert!(stdout.contains("FAIL  jwt secret: 12 characters"), "{stdout}");
    assert!(!stdout.contains("short-secret"), "the secret is printed");
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("NOT CONFORMING: 5 of")), "{stdout}");
    Ok(())
}
