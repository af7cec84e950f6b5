//! The HTTP API under `/api/v1`, served by axum over hyper.
//!
//! [`routes`] is the one route table: the router is built from it and a test checks the OpenAPI
//! document ([`openapi::ApiDoc`]) lists exactly its routes. Errors become responses only in
//! [`error`]. Every response carries the security headers; CORS allows only configured origins.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use axum::middleware;
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;
use crate::gateway::Gateway;
use toolgate_auth::token::Tokens;
use toolgate_store::Store;

pub mod account_events;
pub mod actions_api;
pub mod audit_api;
pub mod auth_api;
pub mod conn;
pub mod error;
pub mod extract;
pub mod health;
pub mod keys_api;
pub mod metrics_api;
pub mod openapi;
pub mod policy_api;
pub mod ratelimit;
pub mod tls;
pub mod tools_api;
pub mod users_api;

pub use error::ApiError;
pub use extract::{Authenticated, ClientIp};
use openapi::RoleSchema;
use ratelimit::{RateClass, RateLimiters, RateLimitsConfig};

/// `[http]`: request limits, rate limits, connection deadlines and caps, cookies and TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: u64,
    /// Mark the login cookie `Secure` (browsers then send it over HTTPS only, and to localhost).
    pub cookie_secure: bool,
    /// PEM certificate chain for TLS; `""` serves plain HTTP.
    pub tls_cert: String,
    /// PEM private key for TLS; `""` serves plain HTTP.
    pub tls_key: String,
    /// Reverse proxies whose `X-Forwarded-For` is believed (exact IP addresses). Empty: the
    /// socket peer is the client, whatever the headers say.
    pub trusted_proxies: Vec<String>,
    /// Limits per route class.
    pub rate_limits: RateLimitsConfig,
    /// Deadlines and caps of connections (slow and greedy clients).
    pub connections: conn::ConnectionsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            cookie_secure: true,
            tls_cert: String::new(),
            tls_key: String::new(),
            trusted_proxies: Vec::new(),
            rate_limits: RateLimitsConfig::default(),
            connections: conn::ConnectionsConfig::default(),
        }
    }
}

/// Why the HTTP layer cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A CORS origin is `*` (with credentials that would let any site act as the user) or invalid.
    #[error("cors origin `{0}` is refused: list exact origins such as `https://ops.example.com`")]
    CorsOrigin(String),
    /// A setting of `[http]` is unusable.
    #[error("{0}")]
    Config(String),
    /// The credential layer refused its configuration.
    #[error(transparent)]
    Auth(#[from] toolgate_auth::AuthError),
}

/// One readiness check, reported by `/readyz` under `name`.
#[derive(Clone)]
pub struct Component {
    /// Shown in `/readyz`.
    pub name: &'static str,
    /// `Ok` when ready; the error is logged, not published. Runs on the blocking pool.
    pub check: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
}

/// Everything handlers share, built once. Fields are public and cheap to clone; a new subsystem
/// is one more field (and, if it can be unready, one more [`Component`]).
#[derive(Clone)]
pub struct AppState {
    /// The configuration, as loaded.
    pub config: Arc<Config>,
    /// The redb store.
    pub store: Store,
    /// Token issuing and checking.
    pub tokens: Arc<Tokens>,
    /// Rate limiters per route class.
    pub limits: Arc<RateLimiters>,
    /// What `/readyz` checks, in order.
    pub readiness: Arc<Vec<Component>>,
    /// Parsed `http.trusted_proxies`.
    pub trusted_proxies: Arc<[std::net::IpAddr]>,
    /// Policy, plugins, sandbox and audit: what tool calls go through.
    pub gateway: Arc<Gateway>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("store", &self.store).finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `config` over `store` and `gateway`, signing tokens with the configured secret.
    pub fn new(config: Config, store: Store, gateway: Arc<Gateway>) -> Result<AppState, HttpError> {
        let tokens = Tokens::new(&config.jwt_secret, config.auth.token_ttl_secs)?
            .with_session_max(config.auth.session_max_secs)?;
        let limits = RateLimiters::new(&config.http.rate_limits).map_err(HttpError::Config)?;
        config.http.connections.check()?;
        let cookie = &config.auth.cookie_name;
        if cookie.is_empty() || !cookie.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(HttpError::Config(format!(
                "`auth.cookie_name` `{cookie}` must be letters, digits, `_` or `-`"
            )));
        }
        // The same bound verification enforces, so every hash we write can be checked later.
        if !(1..=22).contains(&config.auth.scrypt_log_n) {
            return Err(HttpError::Config("`auth.scrypt_log_n` must be between 1 and 22 (production: 15)".into()));
        }
        if config.http.tls_cert.is_empty() != config.http.tls_key.is_empty() {
            return Err(HttpError::Config("`http.tls_cert` and `http.tls_key` must be set together".into()));
        }
        let trusted_proxies = config
            .http
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse().map_err(|_| HttpError::Config(format!("`http.trusted_proxies`: `{p}` is not an IP address")))
            })
            .collect::<Result<Vec<std::net::IpAddr>, _>>()?;
        let checked = store.clone();
        let store_check =
            Component { name: "store", check: Arc::new(move || checked.health().map_err(|e| e.to_string())) };
        Ok(AppState {
            config: Arc::new(config),
            store,
            tokens: Arc::new(tokens),
            limits: Arc::new(limits),
            readiness: Arc::new(std::iter::once(store_check).chain(gateway.readiness()).collect()),
            trusted_proxies: trusted_proxies.into(),
            gateway,
        })
    }

    /// Add a component to `/readyz`.
    pub fn with_component(mut self, component: Component) -> AppState {
        Arc::make_mut(&mut self.readiness).push(component);
        self
    }
}

/// One route: method, path, rate class and handler.
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path, axum syntax (`{name}` parameters, as in OpenAPI).
    pub path: &'static str,
    /// Which per-address limit applies.
    pub class: RateClass,
    /// The handler.
    pub handler: MethodRouter<AppState>,
}

/// The route table: everything the server serves. A new endpoint is one line here plus its
/// handler in the `paths(...)` of [`openapi::ApiDoc`] (a test fails until both agree); tool
/// execution routes take [`RateClass::Exec`], which both the per-address and per-user limits use.
pub fn routes() -> Vec<Route> {
    use RateClass::{Exec, General, Login, Register};
    let r = |method: Method, path, class, handler| Route { method, path, class, handler };
    vec![
        r(Method::GET, "/healthz", General, get(health::healthz)),
        r(Method::GET, "/readyz", General, get(health::readyz)),
        r(Method::GET, "/api/v1/openapi.json", General, get(openapi::openapi_json)),
        r(Method::GET, "/metrics", General, get(metrics_api::metrics)),
        r(Method::POST, "/api/v1/auth/register", Register, post(auth_api::register)),
        r(Method::POST, "/api/v1/auth/login", Login, post(auth_api::login)),
        r(Method::POST, "/api/v1/auth/logout", General, post(auth_api::logout)),
        r(Method::POST, "/api/v1/auth/refresh", General, post(auth_api::refresh)),
        r(Method::GET, "/api/v1/auth/me", General, get(auth_api::me)),
        r(Method::POST, "/api/v1/auth/password", General, post(auth_api::change_password)),
        r(Method::GET, "/api/v1/users", General, get(users_api::list)),
        r(Method::POST, "/api/v1/users", General, post(users_api::create)),
        r(Method::PATCH, "/api/v1/users/{username}", General, patch(users_api::update)),
        r(Method::GET, "/api/v1/keys", General, get(keys_api::list)),
        r(Method::POST, "/api/v1/keys", General, post(keys_api::create)),
        r(Method::DELETE, "/api/v1/keys/{name}", General, delete(keys_api::revoke)),
        r(Method::POST, "/api/v1/policy/evaluate", General, post(policy_api::evaluate)),
        r(Method::POST, "/api/v1/policy/decide", General, post(policy_api::decide)),
        r(Method::GET, "/api/v1/tools", General, get(tools_api::list)),
        r(Method::POST, "/api/v1/tools/{tool}/execute", Exec, post(tools_api::execute)),
        r(Method::GET, "/api/v1/actions", General, get(actions_api::list)),
        r(Method::GET, "/api/v1/actions/{id}", General, get(actions_api::get_one)),
        r(Method::POST, "/api/v1/actions/{id}/rollback", Exec, post(actions_api::rollback)),
        r(Method::GET, "/api/v1/approvals", General, get(actions_api::approvals)),
        r(Method::POST, "/api/v1/approvals/{id}/approve", Exec, post(actions_api::approve)),
        r(Method::POST, "/api/v1/approvals/{id}/reject", General, post(actions_api::reject)),
        r(Method::GET, "/api/v1/audit", General, get(audit_api::list)),
    ]
}

/// Headers every response carries, errors and preflights included.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::STRICT_TRANSPORT_SECURITY, "max-age=63072000; includeSubDomains"),
    (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
    (header::REFERRER_POLICY, "no-referrer"),
];

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The W3C trace context header a browser client may send.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// CORS for exactly the configured origins; `*` is refused because the cookie is a credential.
pub fn cors(origins: &[String]) -> Result<Option<CorsLayer>, HttpError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let mut allowed = Vec::new();
    for origin in origins {
        let parsed: Option<Uri> = origin.parse().ok();
        let exact = parsed.is_some_and(|u| {
            u.scheme().is_some() && u.host().is_some() && u.path_and_query().is_none_or(|p| p.as_str() == "/")
        }) && !origin.ends_with('/');
        if origin.contains('*') || !exact {
            return Err(HttpError::CorsOrigin(origin.clone()));
        }
        allowed.push(HeaderValue::from_str(origin).map_err(|_| HttpError::CorsOrigin(origin.clone()))?);
    }
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, TRACEPARENT])
            .expose_headers([HeaderName::from_static(toolgate_telemetry::http::TRACE_ID_HEADER)])
            .max_age(Duration::from_secs(600)),
    ))
}

/// The application: routes, rate limits, body limit, CORS, security headers, JSON fallbacks, and
/// one `http.request` span per request (with `x-trace-id` in the response).
pub fn router(state: AppState) -> Result<Router, HttpError> {
    let body_limit = usize::try_from(state.config.http.body_limit_bytes)
        .map_err(|_| HttpError::Config("`http.body_limit_bytes` is too large".into()))?;
    let body_rules =
        conn::BodyRules { limit: body_limit, deadline_secs: state.config.http.connections.body_read_timeout_secs };
    let mut app: Router<AppState> = Router::new();
    for route in routes() {
        // The rate limiter first, then the body read within its deadline, then the handler: a
        // client over its limit gets its 429 before a byte of its body is received.
        let limited = route
            .handler
            .layer(middleware::from_fn_with_state(body_rules, conn::body_deadline))
            .layer(middleware::from_fn_with_state((state.clone(), route.class), ratelimit::per_address));
        app = app.route(route.path, limited);
    }
    let cors = cors(&state.config.cors_origins)?;
    let mut app = app
        .fallback(|uri: Uri| async move { ApiError::RouteNotFound(uri.path().to_owned()) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            ApiError::MethodNotAllowed { method: method.to_string(), path: uri.path().to_owned() }
        })
        // After every route and the fallbacks, so each request (404s included) gets its span with
        // the matched route template; outside the rate limiter, so 429s are traced and counted,
        // and outside the body deadline, so a body too slow is traced.
        .layer(middleware::from_fn(toolgate_telemetry::http::trace_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state);
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    // Outermost, so CORS answers and errors carry the headers too.
    Ok(app.layer(middleware::map_response(security_headers)))
}

#[cfg(test)]
mod tests;
