//! `run_command` as the security guide describes it, end to end through the real binary and the
//! real Docker sandbox: the call's category follows the command it runs, as the exec policy
//! classifies it, and each flag must be allowlisted for its program. The shipped classes are read
//! commands only; a class above READ is the operator's own.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, copy_of_policies, send};

struct Env {
    server: Server,
    admin: String,
    /// The policy set the server runs when it is not the shipped one.
    _policies: Option<tempfile::TempDir>,
}

impl Env {
    /// A server with the shipped policy set.
    async fn start() -> anyhow::Result<Env> {
        toolgate_tests::docker().await?;
        let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000")])?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin, _policies: None })
    }

    /// A server with a copy of the shipped policy set whose `run_command` classes also hold
    /// `class`: `patterns`, as an operator adds classes of their own. The shipped tests still run
    /// on it (and pass).
    async fn start_with_class(class: &str, patterns: Value) -> anyhow::Result<Env> {
        toolgate_tests::docker().await?;
        let dir = tempfile::tempdir()?;
        let policies = copy_of_policies(dir.path())?;
        let data_path = policies.join("data.json");
        let mut data: Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
        let classes = data["tools"]["run_command"]["classes"].as_object_mut();
        let classes = classes.ok_or_else(|| anyhow::anyhow!("the shipped data has no run_command classes"))?;
        anyhow::ensure!(!classes.contains_key(class), "the shipped classes already hold {class}");
        classes.insert(class.to_owned(), patterns);
        std::fs::write(&data_path, serde_json::to_string_pretty(&data)?)?;
        let policy_dir = policies.display().to_string();
        let server = Server::start(&[
            ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000"),
            ("TOOLGATE_POLICY_DIR", policy_dir.as_str()),
        ])?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin, _policies: Some(dir) })
    }

    /// `POST /api/v1/policy/evaluate` of a `run_command` call as `token`.
    async fn evaluate(&self, token: &str, command: &str) -> anyhow::Result<Value> {
        let body = json!({"tool": "run_command", "params": {"command": command}});
        let (status, answer) =
            send(client().post(self.server.url("/api/v1/policy/evaluate")).bearer_auth(token).json(&body)).await?;
        anyhow::ensure!(status == StatusCode::OK, "evaluate `{command}`: {status} {answer}");
        Ok(answer)
    }

    async fn run(&self, token: &str, command: &str) -> anyhow::Result<(StatusCode, Value)> {
        let body = json!({"params": {"command": command}});
        send(client().post(self.server.url("/api/v1/tools/run_command/execute")).bearer_auth(token).json(&body)).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = send(client().get(self.server.url(path)).bearer_auth(&self.admin)).await?;
        anyhow::ensure!(status.is_success(), "{path}: {status} {body}");
        Ok(body)
    }

    /// The kinds of the audit entries of the action an answer names.
    async fn audit_kinds(&self, answer: &Value) -> anyhow::Result<Vec<String>> {
        let id = answer["action_id"].as_str().or_else(|| answer["error"]["details"]["action_id"].as_str());
        let entries = self.server.audit_of(&self.admin, id.unwrap_or_default()).await?;
        Ok(entries.iter().filter_map(|e| e["kind"].as_str().map(str::to_owned)).collect())
    }
}

#[tokio::test]
async fn a_viewer_runs_the_guides_ls_lah_in_the_sandbox_as_a_read_call() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let workspace = env.server.data_path().join("workspace");
    std::fs::create_dir_all(&workspace)?;
    std::fs::write(workspace.join("handover.txt"), "the night shift notes\n")?;
    let viewer = env.server.add_user(&env.admin, "vera", "viewer").await?;

    // The tool list shows `run_command` to a viewer: some of its commands are READ.
    let (_, tools) = send(client().get(env.server.url("/api/v1/tools")).bearer_auth(&viewer)).await?;
    let names: Vec<&str> = tools["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"run_command"), "{names:?}");

    let (status, body) = env.run(&viewer, "ls -lah /workspace").await?;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("completed")), "{body}");
    assert_eq!(body["output"]["argv"], json!(["ls", "-lah", "/workspace"]));
    assert_eq!(body["output"]["exit_code"], 0, "{body}");
    assert!(body["output"]["stdout"].as_str().is_some_and(|s| s.contains("handover.txt")), "{body}");
    assert_eq!(body["decision"]["category"], "READ", "{body}");
    let id = body["action_id"].as_str().unwrap_or_default();
    let stored = env.get(&format!("/api/v1/actions/{id}")).await?;
    assert_eq!(stored["category"], "READ", "the action is recorded at its command's class: {stored}");
    // The exec policy saw the command at the category the action was decided at, and ran it.
    assert_eq!(env.audit_kinds(&body).await?, ["exec_decision", "exec", "action_completed"]);
    Ok(())
}

/// The shipped classes are read commands only: the sandbox has no D-Bus, network or Docker socket,
/// and restarts are the `systemd_restart` and `docker_restart` tools. A restart or a pull is an
/// unclassified command for every role, refused before anything runs.
#[tokio::test]
async fn restarts_and_pulls_are_not_run_commands_by_default() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let viewer = env.server.add_user(&env.admin, "vera", "viewer").await?;
    let operator = env.server.add_user(&env.admin, "otto", "operator").await?;
    for (who, token) in [("viewer", &viewer), ("operator", &operator), ("admin", &env.admin)] {
        for line in ["systemctl restart nginx", "git pull"] {
            let (status, body) = env.run(token, line).await?;
            assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "command_not_allowed"), "{who}: {body}");
            // The message is the policy's reason, after the action it denied.
            let action = body["error"]["details"]["action_id"].as_str().unwrap_or_default();
            let reason = format!("`{line}` is not a command tool \"run_command\" may run");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert_eq!(message, format!("action `{action}` denied: {reason}"), "{who}: {body}");
            assert_eq!(body["error"]["details"]["decision"]["category"], Value::Null, "{who}: {body}");
            assert_eq!(env.audit_kinds(&body).await?, ["decision"], "{who}: `{line}` never reached the sandbox");
        }
    }

    // What the operator is told when asking first: refused, at no category.
    let answer = env.evaluate(&operator, "systemctl restart nginx").await?;
    let decision = &answer["decision"];
    assert_eq!((decision["allow"].as_bool(), &decision["category"]), (Some(false), &Value::Null), "{answer}");
    let codes: Vec<&str> =
        decision["reasons"].as_array().into_iter().flatten().filter_map(|r| r["code"].as_str()).collect();
    assert_eq!(codes, ["command_not_allowed"], "{answer}");
    Ok(())
}

/// Classes above READ still work for an operator who adds them: here `gzip` (busybox has it) as
/// a MODERATE command.
#[tokio::test]
async fn a_viewer_cannot_run_an_operators_command() -> anyhow::Result<()> {
    let env = Env::start_with_class("MODERATE", json!([["gzip", "{PATH}"]])).await?;
    let viewer = env.server.add_user(&env.admin, "vera", "viewer").await?;
    let (status, body) = env.run(&viewer, "gzip /workspace/app.log").await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "role_insufficient"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("MODERATE") && message.contains("`gzip /workspace/app.log`"), "{message}");
    assert_eq!(body["error"]["details"]["decision"]["category"], "MODERATE", "{body}");
    assert_eq!(env.audit_kinds(&body).await?, ["decision"], "nothing reached the sandbox");

    // The same command is the operator's, at MODERATE (verify where the tool can).
    let operator = env.server.add_user(&env.admin, "otto", "operator").await?;
    let answer = env.evaluate(&operator, "gzip /workspace/app.log").await?;
    let decision = &answer["decision"];
    assert_eq!((decision["allow"].as_bool(), decision["category"].as_str()), (Some(true), Some("MODERATE")));
    assert_eq!(decision["requirements"], json!(["verify"]), "{answer}");
    assert_eq!(answer["input"]["command"], json!(["gzip", "/workspace/app.log"]), "{answer}");
    // The shipped read commands are unchanged beside it.
    let answer = env.evaluate(&viewer, "ls -lah /workspace").await?;
    assert_eq!(
        (answer["decision"]["allow"].as_bool(), answer["decision"]["category"].as_str()),
        (Some(true), Some("READ"))
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_flag_or_command_is_refused_naming_it_before_anything_runs() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let viewer = env.server.add_user(&env.admin, "vera", "viewer").await?;
    let (status, body) = env.run(&viewer, "ls -lahz /workspace").await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "flag_not_allowed"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("`-lahz`") && message.contains("`ls`"), "{message}");
    assert_eq!(env.audit_kinds(&body).await?, ["decision"], "nothing reached the sandbox");

    // Even an admin runs only classified commands.
    let (status, body) = env.run(&env.admin, "rm -f /workspace/x").await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "flag_not_allowed"), "{body}");
    let (status, body) = env.run(&env.admin, "rm /workspace/x").await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "command_not_allowed"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("`rm /workspace/x`")), "{body}");

    // A shell construct never becomes a command: refused as a parameter, before any decision.
    for line in ["ls & id", "ls ${IFS}/etc", "cat $HOME"] {
        let (status, body) = env.run(&viewer, line).await?;
        assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "invalid_params"), "{line}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("forbidden token")), "{body}");
    }
    Ok(())
}
