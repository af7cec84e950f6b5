//! The spans of one request: their names, their attribute keys, and one constructor per layer.
//!
//! Open spans with these constructors rather than `info_span!` so every layer names spans and
//! attributes the same way; record outcomes with the `record_*` helpers (or `span.record(KEY, v)`
//! with a key from [`attr`]) once they are known. The tree is documented in [`crate`].
//!
//! INVARIANT: no constructor or helper accepts a parameter value, a token or a full argv; keys
//! carry names, categories, codes and `argv[0]` only, so no secret can reach a collector.

use std::time::Duration;

use tracing::Span;
use tracing::field::Empty;

/// `http.request`: one per HTTP request, the root of its trace (or a child of the client's
/// `traceparent`).
pub const HTTP: &str = "http.request";
/// `auth`: authenticating the caller.
pub const AUTH: &str = "auth";
/// `policy.decision`: one evaluation of a Rego decision point.
pub const POLICY: &str = "policy.decision";
/// `plugin.invoke`: one tool call into a WebAssembly plugin.
pub const PLUGIN: &str = "plugin.invoke";
/// `host.call`: one host function called by a plugin.
pub const HOST_CALL: &str = "host.call";
/// `sandbox.exec`: one command run in a sandbox container.
pub const SANDBOX_EXEC: &str = "sandbox.exec";
/// `audit.write`: one event written to the audit log.
pub const AUDIT: &str = "audit.write";

/// Attribute keys. OpenTelemetry semantic-convention names where one exists, else `toolgate.*`.
pub mod attr {
    /// Span kind, read by the OpenTelemetry layer (`server` for the HTTP span).
    pub const OTEL_KIND: &str = "otel.kind";
    /// `OK` or `ERROR`, read by the OpenTelemetry layer.
    pub const OTEL_STATUS: &str = "otel.status_code";
    /// Short error description (a code, never user data), read by the OpenTelemetry layer.
    pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";

    /// HTTP method.
    pub const HTTP_METHOD: &str = "http.request.method";
    /// Route template (`/api/v1/tools/{name}`), never the concrete path.
    pub const HTTP_ROUTE: &str = "http.route";
    /// Response status code.
    pub const HTTP_STATUS: &str = "http.response.status_code";

    /// `password`, `jwt`, `api_key`.
    pub const AUTH_METHOD: &str = "toolgate.auth.method";
    /// `ok` or a refusal code (`bad_token`, `expired`, ...).
    pub const AUTH_OUTCOME: &str = "toolgate.auth.outcome";
    /// The authenticated role.
    pub const ROLE: &str = "toolgate.role";

    /// Decision point: `action` or `exec`.
    pub const POLICY_POINT: &str = "toolgate.policy.point";
    /// `allow` or `deny`.
    pub const DECISION: &str = "toolgate.policy.decision";
    /// Reason codes, comma-separated.
    pub const REASONS: &str = "toolgate.policy.reasons";
    /// Revision (hash) of the policy set that decided.
    pub const POLICY_REVISION: &str = "toolgate.policy.revision";

    /// Plugin name.
    pub const PLUGIN: &str = "toolgate.plugin";
    /// Tool name.
    pub const TOOL: &str = "toolgate.tool";
    /// Tool category (`READ` .. `CRITICAL`).
    pub const CATEGORY: &str = "toolgate.category";
    /// `ok`, `error`, `denied`, `trap`, `timeout`.
    pub const TOOL_STATUS: &str = "toolgate.tool.status";
    /// Wasmtime fuel consumed by the call.
    pub const FUEL_USED: &str = "toolgate.plugin.fuel_used";
    /// Wall-clock time of the operation, in milliseconds.
    pub const DURATION_MS: &str = "toolgate.duration_ms";

    /// WIT interface of a host call (`sandbox`, `workspace`, ...).
    pub const HOST_INTERFACE: &str = "toolgate.host.interface";
    /// Function of that interface.
    pub const HOST_FUNCTION: &str = "toolgate.host.function";

    /// `argv[0]` of a command; never the other arguments.
    pub const ARGV0: &str = "process.executable.name";
    /// Sandbox profile name.
    pub const PROFILE: &str = "toolgate.sandbox.profile";
    /// Exit code of the command, absent when it did not exit (killed, failed to start).
    pub const EXIT_CODE: &str = "process.exit.code";
    /// Docker container id.
    pub const CONTAINER_ID: &str = "container.id";

    /// Audit event kind (`decision`, `exec`, `action`, ...).
    pub const AUDIT_KIND: &str = "toolgate.audit.kind";
    /// Whether the audited event was allowed.
    pub const ALLOWED: &str = "toolgate.audit.allowed";
    /// Action id the span belongs to.
    pub const ACTION_ID: &str = "toolgate.action.id";
}

use attr::*;

/// `http.request`; opened by [`super::http::trace_request`], not by handlers.
pub fn http(method: &str, route: &str) -> Span {
    tracing::info_span!(
        HTTP,
        { OTEL_KIND } = "server",
        { HTTP_METHOD } = method,
        { HTTP_ROUTE } = route,
        { HTTP_STATUS } = Empty,
        { OTEL_STATUS } = Empty,
    )
}

/// `auth`, for `method` (`password`, `jwt`, `api_key`); record the outcome with [`record_auth`].
pub fn auth(method: &str) -> Span {
    tracing::info_span!(
        AUTH,
        { AUTH_METHOD } = method,
        { AUTH_OUTCOME } = Empty,
        { ROLE } = Empty,
        { OTEL_STATUS } = Empty
    )
}

/// `policy.decision` at decision point `point` (`action`, `exec`); record the result with
/// [`record_decision`].
pub fn policy(point: &str) -> Span {
    tracing::info_span!(
        POLICY,
        { POLICY_POINT } = point,
        { DECISION } = Empty,
        { REASONS } = Empty,
        { POLICY_REVISION } = Empty,
    )
}

/// `plugin.invoke` of `tool` in `plugin`, of `category` (`READ` .. `CRITICAL`); record the
/// outcome with [`record_plugin`].
pub fn plugin(plugin: &str, tool: &str, category: &str) -> Span {
    tracing::info_span!(
        PLUGIN,
        { attr::PLUGIN } = plugin,
        { TOOL } = tool,
        { CATEGORY } = category,
        { TOOL_STATUS } = Empty,
        { FUEL_USED } = Empty,
        { DURATION_MS } = Empty,
        { OTEL_STATUS } = Empty,
    )
}

/// `host.call` of `function` in WIT interface `interface`.
pub fn host_call(interface: &str, function: &str) -> Span {
    tracing::info_span!(
        HOST_CALL,
        { HOST_INTERFACE } = interface,
        { HOST_FUNCTION } = function,
        { OTEL_STATUS } = Empty
    )
}

/// `sandbox.exec` of `argv` under `profile`. Only `argv[0]` is kept: the other arguments may
/// carry secrets. Record the outcome with [`record_exec`].
pub fn sandbox_exec(argv: &[String], profile: &str) -> Span {
    let argv0 = argv.first().map(String::as_str).unwrap_or_default();
    tracing::info_span!(
        SANDBOX_EXEC,
        { ARGV0 } = argv0,
        { PROFILE } = profile,
        { EXIT_CODE } = Empty,
        { CONTAINER_ID } = Empty,
        { DURATION_MS } = Empty,
        { OTEL_STATUS } = Empty,
    )
}

/// `audit.write` of an event of `kind`, allowed or not, for `action_id` (empty when none).
pub fn audit(kind: &str, allowed: bool, action_id: &str) -> Span {
    tracing::info_span!(AUDIT, { AUDIT_KIND } = kind, { ALLOWED } = allowed, { ACTION_ID } = action_id)
}

/// Record the outcome of authentication: `outcome` is `ok` or a refusal code.
pub fn record_auth(span: &Span, outcome: &str, role: Option<&str>) {
    span.record(AUTH_OUTCOME, outcome);
    if let Some(role) = role {
        span.record(ROLE, role);
    }
    if outcome != "ok" {
        span.record(OTEL_STATUS, "ERROR");
    }
}

/// Record a policy decision: its result, reason codes and the policy revision.
pub fn record_decision<R: AsRef<str>>(span: &Span, allow: bool, reasons: &[R], revision: &str) {
    span.record(DECISION, if allow { "allow" } else { "deny" });
    let reasons: Vec<&str> = reasons.iter().map(AsRef::as_ref).collect();
    span.record(REASONS, reasons.join(",").as_str());
    span.record(POLICY_REVISION, revision);
}

/// Record the outcome of a plugin call: `status` (`ok`, `error`, `denied`, `trap`, `timeout`),
/// the fuel it used when metered, and its duration.
pub fn record_plugin(span: &Span, status: &str, fuel_used: Option<u64>, duration: Duration) {
    span.record(TOOL_STATUS, status);
    if let Some(fuel) = fuel_used {
        span.record(FUEL_USED, fuel);
    }
    span.record(DURATION_MS, millis(duration));
    if status != "ok" {
        span.record(OTEL_STATUS, "ERROR");
    }
}

/// Record the outcome of a sandboxed command: its exit code (`None` when it did not exit), its
/// duration, and the container it ran in (empty when none was created).
pub fn record_exec(span: &Span, exit_code: Option<i64>, duration: Duration, container_id: &str) {
    if let Some(code) = exit_code {
        span.record(EXIT_CODE, code);
    }
    if !container_id.is_empty() {
        span.record(CONTAINER_ID, container_id);
    }
    span.record(DURATION_MS, millis(duration));
    if exit_code != Some(0) {
        span.record(OTEL_STATUS, "ERROR");
    }
}

/// Mark any of these spans failed (a host call that trapped, an auth refusal).
pub fn record_error(span: &Span) {
    span.record(OTEL_STATUS, "ERROR");
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field a `record_*` helper writes must be declared by the constructor, or `tracing`
    /// silently ignores the record.
    #[test]
    fn constructors_declare_the_fields_helpers_record() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let cases: [(Span, &[&str]); 7] = [
            (http("GET", "/x"), &[HTTP_METHOD, HTTP_ROUTE, HTTP_STATUS, OTEL_STATUS]),
            (auth("jwt"), &[AUTH_METHOD, AUTH_OUTCOME, ROLE, OTEL_STATUS]),
            (policy("action"), &[POLICY_POINT, DECISION, REASONS, POLICY_REVISION]),
            (
                plugin("p", "t", "READ"),
                &[attr::PLUGIN, TOOL, CATEGORY, TOOL_STATUS, FUEL_USED, DURATION_MS, OTEL_STATUS],
            ),
            (host_call("sandbox", "exec"), &[HOST_INTERFACE, HOST_FUNCTION, OTEL_STATUS]),
            (
                sandbox_exec(&["ls".into()], "default"),
                &[ARGV0, PROFILE, EXIT_CODE, CONTAINER_ID, DURATION_MS, OTEL_STATUS],
            ),
            (audit("exec", true, "a1"), &[AUDIT_KIND, ALLOWED, ACTION_ID]),
        ];
        for (span, keys) in cases {
            let metadata = span.metadata();
            assert!(metadata.is_some(), "span disabled");
            let fields = metadata.map(|m| m.fields());
            for key in keys {
                assert!(fields.is_some_and(|f| f.field(key).is_some()), "{:?} lacks {key}", metadata.map(|m| m.name()));
            }
        }
    }
}
