//! `run_command` as the security guide describes it, end to end through the real binary and the
//! real Docker sandbox: the call's category follows the command it runs, as the exec policy
//! classifies it, and each flag must be allowlisted for its program.

use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::{Server, client, code, send};

struct Env {
    server: Server,
    admin: String,
}

impl Env {
    async fn start() -> anyhow::Result<Env> {
        toolgate_tests::docker().await?;
        let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "10000")])?;
        let admin = server.admin_token().await?;
        Ok(Env { server, admin })
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

#[tokio::test]
async fn a_viewer_cannot_run_an_operators_command() -> anyhow::Result<()> {
    let env = Env::start().await?;
    let viewer = env.server.add_user(&env.admin, "vera", "viewer").await?;
    let (status, body) = env.run(&viewer, "systemctl restart nginx").await?;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "role_insufficient"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("MODERATE") && message.contains("`systemctl restart nginx`"), "{message}");
    assert_eq!(body["error"]["details"]["decision"]["category"], "MODERATE", "{body}");
    assert_eq!(env.audit_kinds(&body).await?, ["decision"], "nothing reached the sandbox");

    // The same command is the operator's, at MODERATE (verify where the tool can).
    let operator = env.server.add_user(&env.admin, "otto", "operator").await?;
    let body = json!({"tool": "run_command", "params": {"command": "systemctl restart nginx"}});
    let (status, answer) =
        send(client().post(env.server.url("/api/v1/policy/evaluate")).bearer_auth(&operator).json(&body)).await?;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let decision = &answer["decision"];
    assert_eq!((decision["allow"].as_bool(), decision["category"].as_str()), (Some(true), Some("MODERATE")));
    assert_eq!(decision["requirements"], json!(["verify"]), "{answer}");
    assert_eq!(answer["input"]["command"], json!(["systemctl", "restart", "nginx"]), "{answer}");
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
