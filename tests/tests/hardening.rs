//! Holding under attack, end to end against the real binary: slow and greedy clients
//! (`[http.connections]`), a workspace that would expose the host, secrets in trace logs, and a
//! predictable signing secret.
//!
//! The deadlines of these servers are one second; the tests' own read deadlines (30 s) only keep
//! a broken server from hanging the suite, they decide nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use toolgate_tests::{Server, client, run_cli, send};

/// Guards a read against a server that never answers nor closes.
const HANG: Duration = Duration::from_secs(30);

fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

fn connect(server: &Server) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(address(server))?;
    stream.set_read_timeout(Some(HANG))?;
    Ok(stream)
}

/// Everything the server sends until it closes the connection. A read that times out is an
/// error: the server kept the connection open.
fn read_until_closed(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => anyhow::bail!("the server kept the connection open ({e}); got so far: {received:?}"),
        }
    }
    Ok(String::from_utf8_lossy(&received).into_owned())
}

async fn healthz_ok(server: &Server) -> anyhow::Result<bool> {
    Ok(client().get(server.url("/healthz")).send().await.is_ok_and(|r| r.status() == StatusCode::OK))
}

#[tokio::test]
async fn forty_half_sent_requests_are_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_HTTP_CONNECTIONS_HEADER_READ_TIMEOUT_SECS", "1")])?;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut stream = connect(&server)?;
        // The request line and one header, never the blank line that ends the headers.
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: toolgate\r\n")?;
        slow.push(stream);
    }
    let answers = tokio::task::spawn_blocking(move || {
        slow.iter_mut().map(read_until_closed).collect::<anyhow::Result<Vec<String>>>()
    })
    .await??;
    for answer in answers {
        assert!(!answer.contains("200 OK"), "a half-sent request was answered: {answer}");
    }
    assert!(healthz_ok(&server).await?, "the server still serves whole requests");
    Ok(())
}

#[tokio::test]
async fn plain_http_is_http1_only() -> anyhow::Result<()> {
    let server = Server::start(&[])?;
    let mut stream = connect(&server)?;
    // The HTTP/2 prior-knowledge preface (h2c): refused as a bad HTTP/1 request, no HTTP/2 frames.
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")?;
    let answer = read_until_closed(&mut stream)?;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer:?}");
    Ok(())
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_closed_and_requests_succeed_once_they_close() -> anyhow::Result<()>
{
    let server = Server::start(&[("TOOLGATE_HTTP_CONNECTIONS_MAX_CONNECTIONS_PER_IP", "4")])?;
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect::<anyhow::Result<_>>()?;
    // One of the four is served: being held open is not being refused.
    held[0].write_all(b"GET /healthz HTTP/1.1\r\nHost: toolgate\r\n\r\n")?;
    let mut first = [0u8; 12];
    held[0].read_exact(&mut first)?;
    assert_eq!(&first, b"HTTP/1.1 200");

    // The fifth from the same address is closed unanswered, whatever it sends.
    let mut fifth = connect(&server)?;
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: toolgate\r\n\r\n");
    assert_eq!(read_until_closed(&mut fifth)?, "", "the fifth connection was served");
    let events = server.security_events();
    assert!(events.iter().any(|e| e["event"] == "connection_refused" && e["details"]["cap"] == "per_ip"), "{events:?}");

    // Once they close, a request goes through again (the server notices each close by itself).
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        if healthz_ok(&server).await? {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "no request succeeded after the held connections closed");
    Ok(())
}

#[tokio::test]
async fn a_request_body_sent_too_slowly_is_cut_off_with_408() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_HTTP_CONNECTIONS_BODY_READ_TIMEOUT_SECS", "1")])?;
    let mut stream = connect(&server)?;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: toolgate\r\ncontent-type: application/json\r\n\
                content-length: 100\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    // Ten bytes of the hundred announced, then nothing.
    stream.write_all(br#"{"userna"#)?;
    let answer = read_until_closed(&mut stream)?;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(server.security_events().iter().any(|e| e["event"] == "request_timeout"));
    assert!(healthz_ok(&server).await?);
    Ok(())
}

/// A client over its rate limit is answered 429 before a byte of its body is read: bodies are
/// received after the limiter, not before (the body deadline here is far beyond the read
/// deadline, so a server waiting for the body fails the test).
#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_without_its_body_being_awaited() -> anyhow::Result<()> {
    let server = Server::start(&[
        ("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "1"),
        ("TOOLGATE_HTTP_CONNECTIONS_BODY_READ_TIMEOUT_SECS", "120"),
    ])?;
    let login = json!({"username": "nobody", "password": "wrong-password"});
    let (status, _) = send(client().post(server.url("/api/v1/auth/login")).json(&login)).await?;
    assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "the first attempt is within the limit");
    let mut stream = connect(&server)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: toolgate\r\ncontent-type: application/json\r\n\
                content-length: 100000\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer)?;
    assert_eq!(&answer, b"HTTP/1.1 429", "{}", String::from_utf8_lossy(&answer));
    Ok(())
}

#[test]
fn a_workspace_that_is_the_root_or_a_system_tree_refuses_to_start() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for workspace in ["/", "/etc", "/usr/lib", "/run"] {
        let out = run_cli(dir.path(), &[("TOOLGATE_SANDBOX_WORKSPACE", workspace)], &["serve"], "")?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with workspace {workspace}");
        assert!(stderr.contains("workspace_refused"), "{workspace}: {stderr}");
        assert!(stderr.contains(&format!("`{workspace}`")), "the path is not named: {stderr}");
    }
    // The workspace must not expose the data directory either.
    let parent = dir.path().to_str().unwrap_or_default();
    let out = run_cli(&dir.path().join("data"), &[("TOOLGATE_SANDBOX_WORKSPACE", parent)], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("contains the data directory"), "{stderr}");
    Ok(())
}

/// A viewer reads the workspace (`read_file`): it must not hold a file with the server's keys.
#[test]
fn a_workspace_holding_the_audit_key_or_the_configuration_file_refuses_to_start() -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = tempfile::tempdir()?;
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(workspace.join("keys"))?;
    let key = workspace.join("keys/audit.key");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&key)?;
    std::io::Write::write_all(&mut file, toolgate_tests::AUDIT_KEY.as_bytes())?;
    let (ws, key) = (workspace.display().to_string(), key.display().to_string());
    let data = dir.path().join("data");
    let out =
        run_cli(&data, &[("TOOLGATE_SANDBOX_WORKSPACE", &ws), ("TOOLGATE_AUDIT_KEY_FILE", &key)], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with the audit key in the workspace: {stderr}");
    assert!(stderr.contains("workspace_refused") && stderr.contains("the audit key file"), "{stderr}");

    let config = workspace.join("toolgate.toml");
    std::fs::write(&config, "")?;
    let out = run_cli(
        &data,
        &[("TOOLGATE_SANDBOX_WORKSPACE", &ws)],
        &["--config", &config.display().to_string(), "serve"],
        "",
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with its configuration file in the workspace: {stderr}");
    assert!(stderr.contains("workspace_refused") && stderr.contains("the configuration file"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn a_temporary_directory_is_a_workspace_the_server_starts_with() -> anyhow::Result<()> {
    let workspace = tempfile::tempdir()?;
    std::fs::write(workspace.path().join("notes.txt"), "hi\n")?;
    let path = workspace.path().to_str().unwrap_or_default().to_owned();
    let server = Server::start(&[("TOOLGATE_SANDBOX_WORKSPACE", &path)])?;
    let admin = server.admin_token().await?;
    let read = json!({"params": {"path": "notes.txt"}});
    let (status, body) =
        send(client().post(server.url("/api/v1/tools/read_file/execute")).bearer_auth(&admin).json(&read)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["output"].to_string().contains("hi"), "{body}");
    Ok(())
}

#[tokio::test]
async fn trace_logging_never_shows_a_secret_argument_or_a_token() -> anyhow::Result<()> {
    let server = Server::start(&[
        ("TOOLGATE_LOG", "trace"),
        ("RUST_LOG", "trace"),
        ("TOOLGATE_HTTP_RATE_LIMITS_EXEC_REQUESTS", "1000"),
    ])?;
    let admin = server.admin_token().await?;
    let secret = "tgsecret-Zq7vK2pX9mW4rT8n";
    let call = json!({
        "params": {"command": format!("cat {secret}")},
        "justification": "look for the rotated credential file",
    });
    let (status, body) =
        send(client().post(server.url("/api/v1/tools/run_command/execute")).bearer_auth(&admin).json(&call)).await?;
    // The command reached the sandbox (and the Docker client): `cat` of a missing file exits 1.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["argv"], json!(["cat", secret]), "{body}");
    let stderr = server.stderr();
    assert!(!stderr.contains(secret), "the argument reached the log");
    assert!(!stderr.contains(&admin), "the bearer token reached the log");
    Ok(())
}

#[test]
fn a_long_but_predictable_secret_refuses_to_start_saying_what_is_needed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let weak = "k".repeat(64);
    let out = run_cli(dir.path(), &[("TOOLGATE_JWT_SECRET", &weak)], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with {weak}");
    assert!(stderr.contains("too predictable") && stderr.contains("openssl rand"), "{stderr}");
    assert!(!stderr.contains(&weak), "the secret was printed: {stderr}");
    Ok(())
}

#[test]
fn a_zero_deadline_is_refused_naming_its_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = run_cli(dir.path(), &[("TOOLGATE_HTTP_CONNECTIONS_IDLE_TIMEOUT_SECS", "0")], &["serve"], "")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("http.connections.idle_timeout_secs"), "{stderr}");
    Ok(())
}
