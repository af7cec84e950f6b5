//! `GET /metrics` is valid Prometheus text and its series move as the layers record events.
//! No `telemetry::init` here: the registry is created on first use, as in other layers' tests.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use tower::ServiceExt as _;

use toolgate_host::telemetry::metrics;

/// One sample: metric name, labels, value.
type Series = HashMap<(String, BTreeMap<String, String>), f64>;

/// A strict parser of the text exposition format 0.0.4: every sample belongs to a family
/// declared by one `# TYPE` line before it, names and label names are valid, label values are
/// properly escaped, values are numbers, no series repeats, and histogram buckets are
/// cumulative and end with `+Inf` equal to `_count`.
fn parse(text: &str) -> anyhow::Result<Series> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut series = Series::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: `{line}`", n + 1);
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), _) => ensure!(valid_name(name), "bad name, {}", at()),
                (Some("TYPE"), Some(name), Some(kind)) => {
                    ensure!(valid_name(name), "bad name, {}", at());
                    ensure!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "bad type, {}",
                        at()
                    );
                    ensure!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "family declared twice, {}",
                        at()
                    );
                    current = Some(name.to_owned());
                }
                _ => bail!("bad comment, {}", at()),
            }
            continue;
        }
        ensure!(!line.trim().is_empty(), "blank line, {}", at());
        let (name, labels, value) = sample(line).with_context(at)?;
        let family = current.as_deref().with_context(|| format!("sample before any TYPE, {}", at()))?;
        let kind = types.get(family).map(String::as_str).unwrap_or_default();
        let fits = match kind {
            "histogram" => {
                [format!("{family}_bucket"), format!("{family}_sum"), format!("{family}_count")].contains(&name)
            }
            _ => name == family,
        };
        ensure!(fits, "sample `{name}` outside its family `{family}`, {}", at());
        ensure!(kind != "counter" || name.ends_with("_total"), "counter without _total, {}", at());
        ensure!(series.insert((name, labels), value).is_none(), "series repeated, {}", at());
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let count_key = format!("{family}_count");
        for ((name, labels), count) in series.iter().filter(|((n, _), _)| *n == count_key) {
            let mut buckets: Vec<(f64, f64)> = series
                .iter()
                .filter(|((n, l), _)| *n == format!("{family}_bucket") && strip_le(l) == *labels)
                .map(|((_, l), v)| Ok((le(l)?, *v)))
                .collect::<anyhow::Result<_>>()?;
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            ensure!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{labels:?}: buckets not cumulative");
            ensure!(
                buckets.last().map(|b| (b.0, b.1)) == Some((f64::INFINITY, *count)),
                "{name}{labels:?}: +Inf bucket != count"
            );
        }
    }
    Ok(series)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn sample(line: &str) -> anyhow::Result<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(valid_name(name), "bad metric name");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).context("unterminated labels")?;
            if body[start..].starts_with('}') {
                rest = &body[start + 1..];
                break;
            }
            let eq = body[start..].find("=\"").context("label without =\"")? + start;
            let key = &body[start..eq];
            ensure!(valid_name(key) && !key.starts_with("__"), "bad label name `{key}`");
            while chars.peek().is_some_and(|(i, _)| *i < eq + 2) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next().context("unterminated label value")? {
                    (_, '\\') => match chars.next().context("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => bail!("bad escape `\\{other}`"),
                    },
                    (_, '"') => break,
                    (_, '\n') => bail!("raw newline in label value"),
                    (_, c) => value.push(c),
                }
            }
            ensure!(labels.insert(key.to_owned(), value).is_none(), "label `{key}` repeated");
            match chars.next().context("unterminated labels")? {
                (_, ',') => {}
                (i, '}') => {
                    rest = &body[i + 1..];
                    break;
                }
                (_, c) => bail!("unexpected `{c}` after label"),
            }
        }
    }
    let value = rest.strip_prefix(' ').context("no space before value")?;
    ensure!(!value.contains(' '), "timestamps are not produced");
    Ok((name.to_owned(), labels, number(value)?))
}

fn number(text: &str) -> anyhow::Result<f64> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| anyhow!("bad value `{text}`")),
    }
}

fn le(labels: &BTreeMap<String, String>) -> anyhow::Result<f64> {
    number(labels.get("le").context("bucket without le")?)
}

fn strip_le(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().filter(|(k, _)| *k != "le").map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    series.get(&(name.to_owned(), labels)).copied().unwrap_or(0.0)
}

async fn scrape() -> anyhow::Result<Series> {
    let app: Router = Router::new().route("/metrics", get(metrics::handler));
    let response = app.oneshot(Request::get("/metrics").body(Body::empty())?).await?;
    ensure!(response.status() == 200, "status {}", response.status());
    let content_type = response.headers().get("content-type").map(|v| v.to_str()).transpose()?.unwrap_or_default();
    ensure!(content_type.starts_with("text/plain; version=0.0.4"), "content type `{content_type}`");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    parse(std::str::from_utf8(&body)?)
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_calls() -> anyhow::Result<()> {
    let before = scrape().await?;

    metrics::http_request("/api/v1/tools/{name}", 200, Duration::from_millis(8));
    metrics::http_request("/api/v1/tools/{name}", 200, Duration::from_millis(9));
    metrics::http_request("/api/v1/tools/{name}", 403, Duration::from_millis(1));
    metrics::decision("action", false, &["role_too_low", "needs_approval"]);
    metrics::decision("action", true, &["role_ok"]);
    metrics::tool_call("disk_usage", "ok", Duration::from_millis(40));
    metrics::tool_call("disk_usage", "error", Duration::from_millis(2));
    metrics::sandbox_exec("readonly", Some(0), Duration::from_millis(300));
    metrics::sandbox_exec("readonly", None, Duration::from_secs(60));
    metrics::rate_limited("login");
    metrics::actions_active("awaiting_approval", 2);
    metrics::actions_active("awaiting_approval", -1);
    metrics::tool_call("label\"with\\odd\nchars", "ok", Duration::ZERO);

    let after = scrape().await?;
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    let tools = [("route", "/api/v1/tools/{name}")];
    assert_eq!(delta("toolgate_http_requests_total", &[tools[0], ("status", "200")]), 2.0);
    assert_eq!(delta("toolgate_http_requests_total", &[tools[0], ("status", "403")]), 1.0);
    assert_eq!(delta("toolgate_http_request_duration_seconds_count", &tools), 3.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "deny"), ("point", "action")]), 1.0);
    assert_eq!(delta("toolgate_policy_decisions_total", &[("outcome", "allow"), ("point", "action")]), 1.0);
    assert_eq!(
        delta(
            "toolgate_policy_decision_reasons_total",
            &[("outcome", "deny"), ("point", "action"), ("reason", "needs_approval")]
        ),
        1.0
    );
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "ok"), ("tool", "disk_usage")]), 1.0);
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "error"), ("tool", "disk_usage")]), 1.0);
    assert_eq!(delta("toolgate_plugin_call_duration_seconds_count", &[("tool", "disk_usage")]), 2.0);
    let readonly_ok = [("exit_code", "0"), ("profile", "readonly")];
    assert_eq!(delta("toolgate_sandbox_exec_duration_seconds_count", &readonly_ok), 1.0);
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_bucket", &[readonly_ok[0], ("le", "0.25"), readonly_ok[1]]),
        0.0
    );
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_bucket", &[readonly_ok[0], ("le", "0.5"), readonly_ok[1]]),
        1.0
    );
    assert_eq!(
        delta("toolgate_sandbox_exec_duration_seconds_count", &[("exit_code", "none"), ("profile", "readonly")]),
        1.0
    );
    assert_eq!(delta("toolgate_rate_limited_total", &[("class", "login")]), 1.0);
    assert_eq!(delta("toolgate_actions_active", &[("state", "awaiting_approval")]), 1.0);
    // A hostile label value survives the round trip through escaping.
    assert_eq!(delta("toolgate_tool_calls_total", &[("status", "ok"), ("tool", "label\"with\\odd\nchars")]), 1.0);
    Ok(())
}

#[test]
fn the_parser_rejects_malformed_exposition() {
    for bad in [
        "toolgate_x_total 1\n",                    // no TYPE
        "# TYPE a counter\na 1\n",                 // counter without _total
        "# TYPE a gauge\na{b=\"unterminated} 1\n", // bad label
        "# TYPE a gauge\na{b=\"x\"} one\n",        // bad value
        "# TYPE a gauge\na 1\na 2\n",              // repeated series
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
    ] {
        assert!(parse(bad).is_err(), "accepted:\n{bad}");
    }
}
