//! `toolgate policy test|eval|check`, run as the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn toolgate(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_toolgate")).args(args).env_remove("TOOLGATE_POLICY_DIR").output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A copy of the default policies, to break on purpose.
fn copy_of_policies() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("toolgate"))?;
    std::fs::copy(policies().join("data.json"), dir.path().join("data.json"))?;
    for entry in std::fs::read_dir(policies().join("toolgate"))? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.path().join("toolgate").join(name))?;
        }
    }
    Ok(dir)
}

#[test]
fn the_default_policies_pass_their_own_tests() -> anyhow::Result<()> {
    let dir = policies();
    let out = toolgate(&["policy", "test", dir.to_str().unwrap_or_default()])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("PASS toolgate/action_test.rego: data.toolgate.action_test.test_viewer_read_allowed"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS toolgate/exec_test.rego: data.toolgate.exec_test.test_plugin_mismatch"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.trim_end().ends_with(" passed, 0 failed"), "{stdout}");
    Ok(())
}

#[test]
fn a_failing_test_is_named_and_fails_the_run() -> anyhow::Result<()> {
    let dir = copy_of_policies()?;
    std::fs::write(
        dir.path().join("toolgate/extra_test.rego"),
        "package toolgate.extra_test\n\nimport data.toolgate.action\n\ntest_passes if true\n\ntest_viewer_may_restart if {\n\taction.decision.allow with input as {\"caller\": {\"role\": \"viewer\"}, \"tool\": {\"category\": \"MODERATE\"}}\n}\n",
    )?;
    let out = toolgate(&["policy", "test", dir.path().to_str().unwrap_or_default()])?;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL toolgate/extra_test.rego: data.toolgate.extra_test.test_viewer_may_restart"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS toolgate/extra_test.rego: data.toolgate.extra_test.test_passes"), "{stdout}");
    assert!(stdout.trim_end().ends_with(" passed, 1 failed"), "{stdout}");
    Ok(())
}

#[test]
fn coverage_is_reported_per_file() -> anyhow::Result<()> {
    let dir = policies();
    let out = toolgate(&["policy", "test", dir.to_str().unwrap_or_default(), "--coverage"])?;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for file in ["toolgate/action.rego", "toolgate/exec.rego"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("coverage {file}: "))).unwrap_or_default();
        assert!(line.contains("% ("), "no coverage line for {file}: {stdout}");
    }
    Ok(())
}

#[test]
fn check_points_at_the_error_with_a_caret() -> anyhow::Result<()> {
    let dir = copy_of_policies()?;
    let ok = toolgate(&["policy", "check", dir.path().to_str().unwrap_or_default()])?;
    assert!(
        ok.status.success() && text(&ok.stdout).starts_with("ok: 9 files, revision sha256:"),
        "{}",
        text(&ok.stderr)
    );

    std::fs::write(
        dir.path().join("toolgate/broken.rego"),
        "package toolgate.broken\n\nallow if {\n\tinput.x ==\n}\n",
    )?;
    let out = toolgate(&["policy", "check", dir.path().to_str().unwrap_or_default()])?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("toolgate/broken.rego:5:1: "), "{stderr}");
    assert_eq!(lines.get(1).map(|l| l.trim()), Some("}"), "{stderr}");
    assert_eq!(lines.get(2).map(|l| l.trim()), Some("^"), "{stderr}");
    Ok(())
}

#[test]
fn check_reports_an_unsafe_variable() -> anyhow::Result<()> {
    let dir = copy_of_policies()?;
    std::fs::write(dir.path().join("toolgate/unsafe.rego"), "package toolgate.unsafe\n\nallow if {\n\tx > 1\n}\n")?;
    let out = toolgate(&["policy", "check", dir.path().to_str().unwrap_or_default()])?;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("toolgate/unsafe.rego:4:"), "{stderr}");
    Ok(())
}

#[test]
fn eval_prints_the_decision_and_explains_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("input.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "caller": {"user": "bob", "role": "operator", "auth_method": "password", "source_ip": "10.0.0.1"},
            "tool": {"name": "apt_install", "plugin": "apt", "category": "SENSITIVE", "supports_verify": true, "supports_rollback": true},
            "params": {"package": "curl"}, "justification": null, "approval": "none", "dry_run": true
        })
        .to_string(),
    )?;
    let dir = policies();
    let args =
        ["policy", "eval", "--input", input.to_str().unwrap_or_default(), "--dir", dir.to_str().unwrap_or_default()];
    let out = toolgate(&args)?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(decision["allow"], false);
    let codes: Vec<&str> =
        decision["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect();
    // An operator has no package list: the package is out of scope too.
    assert_eq!(codes, ["justification_required", "not_allowed", "role_insufficient"]);
    assert!(decision["revision"].as_str().is_some_and(|r| r.starts_with("sha256:")));

    let out = toolgate(&[&args[..], &["--explain"]].concat())?;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("toolgate/action.rego:48: \tnot may_run(c)"), "{stdout}");
    assert!(!stdout.contains("toolgate/exec.rego:"), "exec rules took no part: {stdout}");
    Ok(())
}

#[test]
fn eval_picks_the_exec_point_for_an_argv() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let input = tmp.path().join("exec.json");
    std::fs::write(
        &input,
        serde_json::json!({
            "caller": {"user": "bob", "role": "viewer", "auth_method": "api_key", "source_ip": null},
            "tool": {"name": "run_command", "plugin": "shell", "category": "READ", "supports_verify": false, "supports_rollback": false},
            "argv": ["git", "pull"], "profile": "default"
        })
        .to_string(),
    )?;
    let dir = policies();
    let out = toolgate(&[
        "policy",
        "eval",
        "--input",
        input.to_str().unwrap_or_default(),
        "--dir",
        dir.to_str().unwrap_or_default(),
    ])?;
    let decision: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let codes: Vec<&str> =
        decision["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect();
    assert!(codes.contains(&"command_not_allowed") && decision["allow"] == false, "{decision}");
    Ok(())
}

#[test]
fn eval_refuses_a_missing_input_file() -> anyhow::Result<()> {
    let out = toolgate(&["policy", "eval", "--input", "/nonexistent/input.json"])?;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read input file `/nonexistent/input.json`"), "{}", text(&out.stderr));
    Ok(())
}
