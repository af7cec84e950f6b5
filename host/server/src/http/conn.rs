//! Serving connections, against slow and greedy clients: plain HTTP is HTTP/1.1 only (no h2c),
//! TLS chooses HTTP/1.1 or HTTP/2 by ALPN. Every connection is bounded in time (TLS handshake,
//! request headers, idleness between requests, a request body) and in number (over all, and per
//! client address; trusted proxies are exempt from the latter), all set in `[http.connections]`.
//!
//! A connection over a cap is closed as soon as it is accepted; one that overstays a deadline is
//! closed (a body too slow is answered `408 request_timeout` first).
//!
//! - `admission`: the caps, counted on accept.
//! - `activity`: what a connection moved and when, for its idle deadline.

mod activity;
mod admission;

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::{ApiError, HttpError};
use activity::{Activity, Busy, Tracked};
pub use admission::{Admission, Slot};
use toolgate_telemetry::security::{self, Level};

/// `[http.connections]`: deadlines and caps against slow or greedy clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// From accepting a connection (or finishing a response) to the end of the next request's
    /// headers, in seconds; a client slower than that is disconnected.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight and no byte exchanged for this long is closed, in
    /// seconds.
    pub idle_timeout_secs: u64,
    /// Longest TLS handshake, in seconds.
    pub tls_handshake_timeout_secs: u64,
    /// Longest time to receive a whole request body once its headers are in, in seconds; a
    /// slower body is answered `408 request_timeout` and the connection closed.
    pub body_read_timeout_secs: u64,
    /// Connections open at once, over all clients; more are closed on accept.
    pub max_connections: u32,
    /// Connections open at once from one client address (the socket peer); more are closed on
    /// accept. `http.trusted_proxies` are exempt: every client behind them shares their address.
    pub max_connections_per_ip: u32,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            tls_handshake_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 1024,
            max_connections_per_ip: 64,
        }
    }
}

impl ConnectionsConfig {
    /// Refuse a zero (no deadline, or no connection at all), or a per-address cap above the
    /// overall one.
    pub fn check(&self) -> Result<(), HttpError> {
        let fields = [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("tls_handshake_timeout_secs", self.tls_handshake_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("max_connections", u64::from(self.max_connections)),
            ("max_connections_per_ip", u64::from(self.max_connections_per_ip)),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, v)| *v == 0) {
            return Err(HttpError::Config(format!("`http.connections.{name}` must be at least 1")));
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(HttpError::Config(
                "`http.connections.max_connections_per_ip` must not exceed `max_connections`".into(),
            ));
        }
        Ok(())
    }

    fn secs(value: u64) -> Duration {
        Duration::from_secs(value)
    }
}

/// Serve `app` on `listener` (over TLS with `tls`) until `shutdown` completes, then let open
/// connections finish their requests for a while.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    config: ConnectionsConfig,
    exempt: Arc<[IpAddr]>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admission = Admission::new(&config, exempt);
    let (closing, closed) = watch::channel(false);
    let config = Arc::new(config);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match admission.admit(addr.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                admission.report(addr.ip(), cap);
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection { app: app.clone(), config: Arc::clone(&config), closed: closed.clone(), addr };
        let tls = tls.clone();
        tokio::spawn(async move {
            connection.run(tcp, tls).await;
            drop(slot);
        });
    }
    let _ = closing.send(true);
    admission.drained(ConnectionsConfig::secs(config.idle_timeout_secs)).await;
    Ok(())
}

/// One accepted connection and what it is served with.
struct Connection {
    app: Router,
    config: Arc<ConnectionsConfig>,
    closed: watch::Receiver<bool>,
    addr: SocketAddr,
}

impl Connection {
    async fn run(self, tcp: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
        let activity = Arc::new(Activity::new());
        let handshake = ConnectionsConfig::secs(self.config.tls_handshake_timeout_secs);
        match tls {
            None => self.http1(Tracked::new(tcp, &activity), &activity).await,
            Some(acceptor) => {
                let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => return tracing::debug!(addr = %self.addr, error = %e, "tls handshake failed"),
                    Err(_) => return tracing::debug!(addr = %self.addr, "tls handshake timed out"),
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = Tracked::new(stream, &activity);
                if h2 { self.http2(io, &activity).await } else { self.http1(io, &activity).await }
            }
        }
    }

    async fn http1<I>(self, io: Tracked<I>, activity: &Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service(self.app.clone(), self.addr, Arc::clone(activity));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(ConnectionsConfig::secs(self.config.header_read_timeout_secs))
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        self.drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), activity).await;
    }

    async fn http2<I>(self, io: Tracked<I>, activity: &Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = service(self.app.clone(), self.addr, Arc::clone(activity));
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new()).max_concurrent_streams(64).max_header_list_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        self.drive(std::pin::pin!(conn), |c| c.graceful_shutdown(), activity).await;
    }

    /// Poll `conn` to its end; ask it to close once idle too long or when the server stops, and
    /// drop it if it has not closed a while after that.
    async fn drive<C>(mut self, mut conn: Pin<&mut C>, close: impl Fn(Pin<&mut C>), activity: &Activity)
    where
        C: Future<Output = Result<(), hyper::Error>>,
    {
        let idle = ConnectionsConfig::secs(self.config.idle_timeout_secs);
        let mut hard_stop: Option<tokio::time::Instant> = None;
        loop {
            // While a request runs, look again an idle period later (its end counts as activity).
            let check = match activity.busy() {
                0 => tokio::time::Instant::from_std(activity.last() + idle),
                _ => tokio::time::Instant::now() + idle,
            };
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(addr = %self.addr, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep_until(check), if hard_stop.is_none() => {
                    if activity.busy() == 0 && activity.last().elapsed() >= idle {
                        close(conn.as_mut());
                        hard_stop = Some(tokio::time::Instant::now() + idle);
                    }
                }
                _ = self.closed.changed(), if hard_stop.is_none() => {
                    close(conn.as_mut());
                    hard_stop = Some(tokio::time::Instant::now() + idle);
                }
                () = sleep_until_some(hard_stop) => return,
            }
        }
    }
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The router as a hyper service that gives each request its client address (axum's
/// `ConnectInfo`) and counts requests in flight (a connection is idle only without one).
fn service(
    app: Router,
    addr: SocketAddr,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(addr));
        let busy = Busy::new(&activity);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(busy);
            response
        }
    })
}

/// The body limit and deadline of [`body_deadline`].
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// `http.body_limit_bytes`.
    pub limit: usize,
    /// `http.connections.body_read_timeout_secs`.
    pub deadline_secs: u64,
}

/// Middleware: receive the whole request body within its deadline (and its size limit) before
/// the handler runs. Too slow is `408 request_timeout` with `Connection: close` and a security
/// event; too large is `413 payload_too_large`, as the extractors would answer.
pub async fn body_deadline(State(rules): State<BodyRules>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let deadline = Duration::from_secs(rules.deadline_secs);
    let received = tokio::time::timeout(deadline, Limited::new(body, rules.limit).collect()).await;
    match received {
        Ok(Ok(collected)) => next.run(Request::from_parts(parts, Body::from(collected.to_bytes()))).await,
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => ApiError::PayloadTooLarge.into_response(),
        Ok(Err(e)) => ApiError::BadRequest(format!("cannot read the request body: {e}")).into_response(),
        Err(_) => {
            let ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
            security::emit(
                Level::Warning,
                "request_timeout",
                None,
                ip,
                serde_json::json!({ "path": parts.uri.path(), "body_read_timeout_secs": rules.deadline_secs }),
            );
            let mut response = ApiError::RequestTimeout(rules.deadline_secs).into_response();
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_deadlines_and_caps_are_refused_by_name() {
        let config = ConnectionsConfig { idle_timeout_secs: 0, ..ConnectionsConfig::default() };
        let err = config.check().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("http.connections.idle_timeout_secs"), "{err}");
        let config =
            ConnectionsConfig { max_connections: 4, max_connections_per_ip: 5, ..ConnectionsConfig::default() };
        assert!(config.check().is_err());
        assert!(ConnectionsConfig::default().check().is_ok());
    }
}
