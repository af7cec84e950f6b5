//! Telemetry of the real binary: `GET /metrics` (credentials, Prometheus text, counters that move
//! with requests), the trace of one request as an OTLP collector inside the test receives it,
//! and requests that still succeed while the collector is down.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use toolgate_tests::otlp::{OtlpReceiver, ReceivedSpan, one};
use toolgate_tests::prometheus::{self, Series};
use toolgate_tests::{Server, client, code};

/// Strings that must never reach a collector: they travel in params and justifications.
const SECRET: &str = "s3cr3t-hunter2-never-exported";
const WAIT: Duration = Duration::from_secs(20);

async fn scrape(server: &Server, token: Option<&str>) -> anyhow::Result<Series> {
    let mut request = client().get(server.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await?;
    anyhow::ensure!(res.status() == StatusCode::OK, "GET /metrics: {}", res.status());
    let content_type = res.headers().get("content-type").context("no content type")?.to_str()?.to_owned();
    anyhow::ensure!(content_type.starts_with("text/plain; version=0.0.4"), "content type `{content_type}`");
    prometheus::parse(&res.text().await?)
}

#[tokio::test]
async fn metrics_need_credentials_parse_as_prometheus_text_and_move_with_requests() -> anyhow::Result<()> {
    // Two logins per address per period: the admin's, one refused, then the limit trips.
    let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_LOGIN_REQUESTS", "2")])?;

    // Fail closed: no credentials, no metrics; the refusal is traced like any request.
    let res = client().get(server.url("/metrics")).send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let trace_id = res.headers().get("x-trace-id").context("no x-trace-id on a 401")?.to_str()?.to_owned();
    assert!(trace_id.len() == 32 && trace_id.chars().all(|c| c.is_ascii_hexdigit()), "{trace_id}");

    let admin = server.admin_token().await?;
    let before = scrape(&server, Some(&admin)).await?;
    for _ in 0..3 {
        let res = client().get(server.url("/api/v1/auth/me")).bearer_auth(&admin).send().await?;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = client().get(server.url("/api/v1/auth/me")).bearer_auth("not-a-token").send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client().get(server.url("/no/such/route")).send().await?;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = client()
        .post(server.url("/api/v1/policy/evaluate"))
        .bearer_auth(&admin)
        .json(&json!({"tool": "write_file", "params": {"path": "notes.txt", "content": "x"}}))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let decision: Value = res.json().await?;
    assert_eq!(decision["decision"]["allow"], false, "{decision}");
    for _ in 0..2 {
        let res = client()
            .post(server.url("/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": "wrong"}))
            .send()
            .await?;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }

    let after = scrape(&server, Some(&admin)).await?;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        prometheus::value(&after, name, labels) - prometheus::value(&before, name, labels)
    };
    let me = ("route", "/api/v1/auth/me");
    assert_eq!(delta("toolgate_http_requests_total", &[me, ("status", "200")]), 3.0);
    assert_eq!(delta("toolgate_http_requests_total", &[me, ("status", "401")]), 1.0);
    assert_eq!(delta("toolgate_http_request_duration_seconds_count", &[me]), 4.0);
    // A probe of a random path is counted under one label, not under its path.
    assert_eq!(delta("toolgate_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "deny"), ("point", "action")]), 1.0);
    let reasons = decision["decision"]["reasons"].as_array().cloned().unwrap_or_default();
    let first = reasons.first().and_then(|r| r["code"].as_str()).context("a denial without reason")?;
    let reason = [("outcome", "deny"), ("point", "action"), ("reason", first)];
    assert_eq!(delta("toolgate_policy_decision_reasons_total", &reason), 1.0);
    assert_eq!(delta("toolgate_rate_limited_total", &[("class", "login")]), 1.0);
    // The first scrape is counted by the time of the second.
    assert!(
        prometheus::value(&after, "toolgate_http_requests_total", &[("route", "/metrics"), ("status", "200")]) >= 1.0
    );
    Ok(())
}

#[tokio::test]
async fn metrics_can_be_made_public() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_TELEMETRY_METRICS_PUBLIC", "true")])?;
    assert_eq!(client().get(server.url("/healthz")).send().await?.status(), StatusCode::OK);
    let series = scrape(&server, None).await?;
    let healthz = [("route", "/healthz"), ("status", "200")];
    assert_eq!(prometheus::value(&series, "toolgate_http_requests_total", &healthz), 1.0, "{series:?}");
    Ok(())
}

/// No attribute of any span carries `needles` (tokens, passwords, parameter values).
fn assert_no_secret(spans: &[ReceivedSpan], needles: &[&str]) {
    for span in spans {
        for (key, value) in &span.attributes {
            for needle in needles {
                assert!(!value.contains(needle), "span `{}` attribute `{key}` carries a secret: {value}", span.name);
            }
        }
    }
}

/// A server exporting its spans to `collector`, in batches sent every 50 ms.
fn exporting_to(collector: &OtlpReceiver) -> anyhow::Result<Server> {
    let endpoint = collector.endpoint();
    Server::start(&[
        ("TOOLGATE_TELEMETRY_OTLP_ENDPOINT", endpoint.as_str()),
        ("TOOLGATE_TELEMETRY_BATCH_DELAY_MS", "50"),
    ])
}

#[tokio::test]
async fn one_policy_evaluation_is_one_trace_with_auth_and_decision_and_no_secret() -> anyhow::Result<()> {
    let collector = OtlpReceiver::start()?;
    let server = exporting_to(&collector)?;
    let password = server.admin_password.clone().context("no admin password")?;
    let admin = server.admin_token().await?;

    // The client's trace context is continued: same trace id, the HTTP span its child.
    let (client_trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let res = client()
        .post(server.url("/api/v1/policy/evaluate"))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .json(&json!({
            "tool": "write_file",
            "params": {"path": "notes.txt", "content": SECRET},
            "justification": format!("rotate the notes file, key {SECRET}"),
        }))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let header = res.headers().get("x-trace-id").context("no x-trace-id")?.to_str()?.to_owned();
    assert_eq!(header, client_trace);
    let body: Value = res.json().await?;
    let revision = body["decision"]["revision"].as_str().context("no revision")?.to_owned();

    let in_trace = |s: &ReceivedSpan| s.trace_id == client_trace;
    let spans = collector.wait_for_spans(|s| s.iter().any(|s| in_trace(s) && s.name == "http.request"), WAIT);
    let spans: Vec<ReceivedSpan> = spans.into_iter().filter(in_trace).collect();

    let http = one(&spans, "http.request", |_| true)?;
    assert_eq!(http.parent_span_id, client_span);
    assert_eq!(http.attr("http.request.method"), Some("POST"));
    assert_eq!(http.attr("http.route"), Some("/api/v1/policy/evaluate"));
    assert_eq!(http.attr("http.response.status_code"), Some("200"));
    assert_eq!(http.service_name, "toolgate");

    let auth = one(&spans, "auth", |_| true)?;
    assert_eq!(auth.parent_span_id, http.span_id);
    assert_eq!(auth.attr("toolgate.auth.method"), Some("jwt"));
    assert_eq!(auth.attr("toolgate.auth.outcome"), Some("ok"));
    assert_eq!(auth.attr("toolgate.role"), Some("admin"));

    let policy = one(&spans, "policy.decision", |_| true)?;
    assert_eq!(policy.parent_span_id, http.span_id);
    assert_eq!(policy.attr("toolgate.policy.point"), Some("action"));
    assert_eq!(policy.attr("toolgate.policy.decision"), Some("allow"));
    assert_eq!(policy.attr("toolgate.policy.revision"), Some(revision.as_str()));
    let audit = one(&spans, "audit.write", |_| true)?;
    assert_eq!(audit.parent_span_id, http.span_id);
    assert_eq!(audit.attr("toolgate.audit.kind"), Some("policy_evaluate"));
    assert_eq!(spans.len(), 4, "{spans:#?}");

    // A refused credential is an `auth` span with the refusal code, and never the credential.
    let res = client().get(server.url("/api/v1/auth/me")).bearer_auth(SECRET).send().await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let refused_trace = res.headers().get("x-trace-id").context("no x-trace-id")?.to_str()?.to_owned();
    let spans = collector.wait_for_spans(|s| s.iter().any(|s| s.trace_id == refused_trace && s.name == "auth"), WAIT);
    let refused = one(&spans, "auth", |s| s.trace_id == refused_trace)?;
    assert_eq!(refused.attr("toolgate.auth.outcome"), Some("token_invalid"));
    assert_eq!(refused.status_code, 2, "an auth refusal is an error span");

    assert_no_secret(&collector.spans(), &[SECRET, &admin, &password]);
    Ok(())
}

#[tokio::test]
async fn requests_succeed_while_the_collector_is_down() -> anyhow::Result<()> {
    // A port nothing listens on: every export fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let endpoint = format!("http://{closed}");
    let server = Server::start(&[
        ("TOOLGATE_TELEMETRY_OTLP_ENDPOINT", endpoint.as_str()),
        ("TOOLGATE_TELEMETRY_BATCH_DELAY_MS", "10"),
        ("TOOLGATE_TELEMETRY_METRICS_PUBLIC", "true"),
    ])?;
    let admin = server.admin_token().await?;
    for _ in 0..20 {
        let res = client()
            .post(server.url("/api/v1/policy/evaluate"))
            .bearer_auth(&admin)
            .json(&json!({"tool": "read_file", "params": {"path": "notes.txt"}}))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        assert_eq!(status, StatusCode::OK, "{}", code(&body));
        assert_eq!(body["decision"]["allow"], true, "{body}");
    }
    let series = scrape(&server, None).await?;
    let evaluated = [("route", "/api/v1/policy/evaluate"), ("status", "200")];
    assert_eq!(prometheus::value(&series, "toolgate_http_requests_total", &evaluated), 20.0);
    Ok(())
}

#[tokio::test]
async fn one_tool_call_is_one_trace_from_http_to_sandbox_and_its_audit_entries_carry_the_trace_id() -> anyhow::Result<()>
{
    let collector = OtlpReceiver::start()?;
    let server = exporting_to(&collector)?;
    let password = server.admin_password.clone().context("no admin password")?;
    let admin = server.admin_token().await?;

    let res = client()
        .post(server.url("/api/v1/tools/network_listeners/execute"))
        .bearer_auth(&admin)
        .json(&json!({"params": {}}))
        .send()
        .await?;
    let status = res.status();
    let trace_id = res.headers().get("x-trace-id").context("no x-trace-id")?.to_str()?.to_owned();
    let body: Value = res.json().await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["trace_id"].as_str(), Some(trace_id.as_str()), "{body}");
    let action_id = body["action_id"].as_str().context("no action id")?.to_owned();

    let in_trace = |s: &ReceivedSpan| s.trace_id == trace_id;
    let spans = collector.wait_for_spans(|s| s.iter().any(|s| in_trace(s) && s.name == "http.request"), WAIT);
    let spans: Vec<ReceivedSpan> = spans.into_iter().filter(in_trace).collect();

    let http = one(&spans, "http.request", |_| true)?;
    assert!(http.parent_span_id.is_empty(), "no traceparent was sent: the HTTP span is the root");
    assert_eq!(http.attr("http.route"), Some("/api/v1/tools/{tool}/execute"));
    assert_eq!(http.attr("http.response.status_code"), Some("200"));
    let auth = one(&spans, "auth", |_| true)?;
    assert_eq!((auth.parent_span_id.as_str(), auth.attr("toolgate.auth.outcome")), (http.span_id.as_str(), Some("ok")));

    let action = one(&spans, "policy.decision", |s| s.attr("toolgate.policy.point") == Some("action"))?;
    assert_eq!(action.parent_span_id, http.span_id);
    assert_eq!(action.attr("toolgate.policy.decision"), Some("allow"));
    let revision = body["decision"]["revision"].as_str().context("no revision")?;
    assert_eq!(action.attr("toolgate.policy.revision"), Some(revision));

    let invoke = one(&spans, "plugin.invoke", |_| true)?;
    assert_eq!(invoke.parent_span_id, http.span_id);
    let plugin = [invoke.attr("toolgate.plugin"), invoke.attr("toolgate.tool"), invoke.attr("toolgate.category")];
    assert_eq!(plugin, [Some("network"), Some("network_listeners"), Some("READ")]);
    assert_eq!(invoke.attr("toolgate.tool.status"), Some("ok"));
    assert!(invoke.attr("toolgate.duration_ms").is_some(), "{invoke:?}");

    let host = one(&spans, "host.call", |s| s.attr("toolgate.host.interface") == Some("sandbox"))?;
    assert_eq!(
        (host.parent_span_id.as_str(), host.attr("toolgate.host.function")),
        (invoke.span_id.as_str(), Some("exec"))
    );
    let exec_policy = one(&spans, "policy.decision", |s| s.attr("toolgate.policy.point") == Some("exec"))?;
    assert_eq!(exec_policy.parent_span_id, host.span_id);
    assert_eq!(exec_policy.attr("toolgate.policy.decision"), Some("allow"));
    let exec = one(&spans, "sandbox.exec", |_| true)?;
    assert_eq!(exec.parent_span_id, host.span_id);
    assert_eq!(exec.attr("process.executable.name"), Some("cat"));
    assert_eq!(exec.attr("toolgate.sandbox.profile"), Some("host-net"));
    assert_eq!(exec.attr("process.exit.code"), Some("0"));
    assert!(exec.attr("container.id").is_some_and(|id| id.len() >= 12), "{exec:?}");
    assert!(exec.attr("toolgate.duration_ms").is_some(), "{exec:?}");

    // The answer waited for the durable audit write, inside the request's trace.
    let audit_write = one(&spans, "audit.write", |s| s.attr("toolgate.audit.kind") == Some("action_completed"))?;
    assert_eq!(audit_write.parent_span_id, http.span_id);
    assert_eq!(audit_write.attr("toolgate.action.id"), Some(action_id.as_str()));

    // Every audit entry of the action names the trace the client was given.
    let res = client().get(server.url("/api/v1/audit?last_n=1000")).bearer_auth(&admin).send().await?;
    let audit: Value = res.json().await?;
    let entries: Vec<&Value> =
        audit["entries"].as_array().into_iter().flatten().filter(|e| e["action_id"] == action_id.as_str()).collect();
    assert!(entries.len() >= 2, "{audit}");
    for entry in &entries {
        assert_eq!(entry["trace_id"].as_str(), Some(trace_id.as_str()), "{entry}");
    }

    // The pipeline counts the call by tool and final status.
    let text = client().get(server.url("/metrics")).bearer_auth(&admin).send().await?.text().await?;
    let series = prometheus::parse(&text)?;
    let calls = prometheus::value(
        &series,
        "toolgate_tool_calls_total",
        &[("tool", "network_listeners"), ("status", "completed")],
    );
    assert_eq!(calls, 1.0, "{text}");

    assert_no_secret(&collector.spans(), &[&admin, &password]);
    Ok(())
}
