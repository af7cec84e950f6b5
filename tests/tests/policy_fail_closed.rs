//! Policy evaluation fails closed and decides alike wherever it runs: the golden cases and deny
//! rules whose built-ins fail, through `toolgate policy eval` and through the running server
//! (`POST /api/v1/policy/decide`), must give identical decisions; a server whose deny rule fails
//! refuses the call with `policy_error`; `POST /api/v1/policy/evaluate` hands the policy redacted
//! parameters.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{
    Server, client, code, copy_of_policies, plugins_dir, policies_dir, policies_with_fixtures, run_cli, send,
};

/// Deny rules of the `action` package whose built-ins fail, each only for its own tool, so that
/// the golden cases (tool `some_tool`) and the set's own tests are decided as without them.
const FAILING_RULES: &str = r#"package toolgate.action

# A change freeze whose start date in data.json is malformed.
deny contains {"code": "change_freeze", "message": "changes are frozen"} if {
	input.tool.name == "disk_usage"
	time.parse_rfc3339_ns(data.freeze.start) <= time.now_ns()
}

# A message formatted over a field the input does not have.
deny contains {"code": "change_freeze", "message": msg} if {
	input.tool.name == "frozen_by_sprintf"
	msg := sprintf("frozen by %s since %s", [input.caller.user])
}

# A limit read from a field that is not a number.
deny contains {"code": "over_limit", "message": "too many"} if {
	input.tool.name == "frozen_by_number"
	to_number(input.caller.user) > 3
}
"#;

/// A copy of the default set with [`FAILING_RULES`] and a malformed freeze date in its data.
fn failing_policies(dir: &Path) -> anyhow::Result<PathBuf> {
    let policies = copy_of_policies(dir)?;
    std::fs::write(policies.join("toolgate/freeze.rego"), FAILING_RULES)?;
    let data_path = policies.join("data.json");
    let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["freeze"] = json!({"start": "next tuesday"});
    std::fs::write(&data_path, data.to_string())?;
    Ok(policies)
}

/// An action input for `tool`, as the host builds it.
fn action_input(tool: &str, role: &str) -> Value {
    json!({
        "caller": {"user": "carol", "role": role, "auth_method": "password", "source_ip": "10.0.0.7"},
        "tool": {"name": tool, "plugin": "disk", "category": "READ", "supports_verify": false, "supports_rollback": false},
        "params": {}, "justification": null, "approval": "none", "dry_run": true
    })
}

/// Every golden case as `(note, point, input)`.
fn golden_cases() -> anyhow::Result<Vec<(String, String, Value)>> {
    let mut cases = Vec::new();
    for file in ["action.json", "exec.json"] {
        let text = std::fs::read_to_string(policies_dir().join("golden").join(file))?;
        for case in serde_json::from_str::<Vec<Value>>(&text)? {
            let note = format!("{file}: {}", case["note"].as_str().unwrap_or_default());
            let point = case["point"].as_str().unwrap_or_default().to_owned();
            cases.push((note, point, case["input"].clone()));
        }
    }
    Ok(cases)
}

/// What `toolgate policy eval` answers on `input` with the set in `policies`.
fn cli_decision(data_dir: &Path, policies: &Path, point: &str, input: &Value) -> anyhow::Result<Value> {
    let dir = policies.display().to_string();
    let args = ["policy", "eval", "--input", "-", "--point", point, "--dir", dir.as_str()];
    let out = run_cli(data_dir, &[], &args, &input.to_string())?;
    anyhow::ensure!(out.status.success(), "policy eval failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// What the running server answers on `input`.
async fn server_decision(server: &Server, admin: &str, point: &str, input: &Value) -> anyhow::Result<Value> {
    let body = json!({"point": point, "input": input});
    let (status, body) =
        send(client().post(server.url("/api/v1/policy/decide")).bearer_auth(admin).json(&body)).await?;
    anyhow::ensure!(status == StatusCode::OK, "{status} {body}");
    Ok(body["decision"].clone())
}

fn reason_codes(decision: &Value) -> Vec<&str> {
    decision["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect()
}

#[tokio::test]
async fn the_cli_and_the_server_decide_golden_and_failing_cases_alike() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policies = failing_policies(dir.path())?;
    let policy_dir = policies.display().to_string();
    let server = Server::start(&[("TOOLGATE_POLICY_DIR", policy_dir.as_str())])?;
    let admin = server.admin_token().await?;

    let mut cases = golden_cases()?;
    assert!(cases.len() > 50, "golden cases went missing: {}", cases.len());
    let failing: [(&str, &[&str]); 3] = [
        ("disk_usage", &["Failed to parse datetime"]),
        ("frozen_by_sprintf", &["freeze.rego:12:", "no argument specified for format verb 1", "(in `msg := sprintf("]),
        ("frozen_by_number", &["freeze.rego:18:", "could not parse string as number", "(in `to_number("]),
    ];
    for (tool, _) in failing {
        for role in ["viewer", "admin"] {
            cases.push((format!("failing: {tool} as {role}"), "action".to_owned(), action_input(tool, role)));
        }
    }
    let mut differences = Vec::new();
    for (note, point, input) in &cases {
        let cli = cli_decision(dir.path(), &policies, point, input)?;
        let served = server_decision(&server, &admin, point, input).await?;
        if cli != served {
            differences.push(format!("{note}: the CLI gave {cli}, the server {served}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    // The failing rules denied, each naming its error, in both.
    for (tool, named) in failing {
        let served = server_decision(&server, &admin, "action", &action_input(tool, "admin")).await?;
        assert_eq!((served["allow"].as_bool(), reason_codes(&served)), (Some(false), vec!["policy_error"]), "{tool}");
        let message = served["reasons"][0]["message"].as_str().unwrap_or_default();
        for part in named {
            assert!(message.contains(part), "{tool}: `{part}` not in {message}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_server_whose_deny_rule_fails_refuses_the_call_with_policy_error() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let policy_dir = failing_policies(dir.path())?.display().to_string();
    let server = Server::start(&[("TOOLGATE_POLICY_DIR", policy_dir.as_str())])?;
    let admin = server.admin_token().await?;

    let (status, body) = send(
        client().post(server.url("/api/v1/tools/disk_usage/execute")).bearer_auth(&admin).json(&json!({"params": {}})),
    )
    .await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "policy_error"), "{body}");
    let details = &body["error"]["details"];
    assert_eq!(details["status"], "denied", "nothing ran: {body}");
    let message = details["decision"]["reasons"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Failed to parse datetime"), "the reason names the error: {body}");
    let id = details["action_id"].as_str().unwrap_or_default();
    let audit = server.audit_of(&admin, id).await?;
    assert!(audit.iter().any(|e| e["reason"] == "policy_error" && e["allowed"] == false), "{audit:?}");

    // The dry run says the same; another tool is decided as usual.
    let evaluate = |tool: &str| {
        client().post(server.url("/api/v1/policy/evaluate")).bearer_auth(&admin).json(&json!({"tool": tool}))
    };
    let (status, body) = send(evaluate("disk_usage")).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(reason_codes(&body["decision"]), ["policy_error"], "{body}");
    let (_, body) = send(evaluate("network_listeners")).await?;
    assert_eq!(body["decision"]["allow"], true, "{body}");
    Ok(())
}

#[tokio::test]
async fn only_an_admin_may_decide_a_raw_input() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let admin = server.admin_token().await?;
    let viewer = server.add_user(&admin, "vera", "viewer").await?;
    let body = json!({"point": "action", "input": action_input("some_tool", "admin")});
    let (status, refused) =
        send(client().post(server.url("/api/v1/policy/decide")).bearer_auth(&viewer).json(&body)).await?;
    assert_eq!((status, code(&refused)), (StatusCode::FORBIDDEN, "forbidden"), "{refused}");
    let (status, allowed) =
        send(client().post(server.url("/api/v1/policy/decide")).bearer_auth(&admin).json(&body)).await?;
    assert_eq!((status, allowed["decision"]["allow"].as_bool()), (StatusCode::OK, Some(true)), "{allowed}");
    Ok(())
}

/// A plugin directory with the built-ins and the `well_behaved` fixture, and a config granting it.
fn with_fixture(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for entry in std::fs::read_dir(plugins_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::os::unix::fs::symlink(&path, plugins.join(path.file_name().unwrap_or_default()))?;
        }
    }
    let fixture = plugins_dir().with_file_name("fixtures").join("well_behaved.wasm");
    anyhow::ensure!(fixture.exists(), "{} missing: run `cargo xtask plugins`", fixture.display());
    std::os::unix::fs::symlink(&fixture, plugins.join("well_behaved.wasm"))?;
    let config = dir.join("toolgate.toml");
    std::fs::write(
        &config,
        "[plugins.plugin.well_behaved]\ngrants = [\"exec:default\", \"containers-read\", \"workspace-read\", \"workspace-write\"]\n",
    )?;
    Ok((plugins, config))
}

#[tokio::test]
async fn evaluate_hands_the_policy_redacted_params() -> anyhow::Result<()> {
    const TOKEN: &str = "tok-5f1c9a0e-never-in-policy";
    let dir = tempfile::tempdir()?;
    let (plugins, config) = with_fixture(dir.path())?;
    let policies = policies_with_fixtures(dir.path())?;
    // A rule that quotes whatever params the policy is given.
    std::fs::write(
        policies.join("toolgate/quote_params.rego"),
        "package toolgate.action\n\ndeny contains {\"code\": \"params_seen\", \"message\": json.marshal(input.params)} if input.tool.name == \"run_echo\"\n",
    )?;
    let (plugins, config, policies) =
        (plugins.display().to_string(), config.display().to_string(), policies.display().to_string());
    let server = Server::start(&[
        ("TOOLGATE_PLUGINS_DIR", plugins.as_str()),
        ("TOOLGATE_CONFIG", config.as_str()),
        ("TOOLGATE_POLICY_DIR", policies.as_str()),
        ("TOOLGATE_LOG", "debug"),
    ])?;
    let admin = server.admin_token().await?;

    let body = json!({"tool": "run_echo", "params": {"text": "hello", "token": TOKEN}});
    let (status, evaluation) =
        send(client().post(server.url("/api/v1/policy/evaluate")).bearer_auth(&admin).json(&body)).await?;
    assert_eq!(status, StatusCode::OK, "{evaluation}");
    let seen = &evaluation["decision"]["reasons"][0];
    assert_eq!(seen["code"], "params_seen", "{evaluation}");
    let seen: Value = serde_json::from_str(seen["message"].as_str().unwrap_or_default())?;
    assert_eq!(seen, json!({"text": "hello", "token": "[redacted]"}), "what the policy saw");
    assert_eq!(evaluation["input"]["params"], seen, "the input returned is the one decided on");
    assert!(!evaluation.to_string().contains(TOKEN), "{evaluation}");

    let (_, audit) = send(client().get(server.url("/api/v1/audit?last_n=50")).bearer_auth(&admin)).await?;
    assert!(audit.to_string().contains("policy_evaluate"), "{audit}");
    assert!(!audit.to_string().contains(TOKEN), "{audit}");
    assert!(!server.stderr().contains(TOKEN), "the secret reached the log");
    Ok(())
}
