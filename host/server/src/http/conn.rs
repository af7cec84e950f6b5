//! Serving connections, against slow and greedy clients: plain HTTP is HTTP/1.1 only (no h2c),
//! TLS chooses HTTP/1.1 or HTTP/2 by ALPN. Every connection is bounded in time (TLS handshake,
//! request headers, idleness between requests, a request body) and in number (over all, and per
//! client address; trusted proxies are exempt from the latter), all set in `[http.connections]`.
//!
//! A connection over a cap is closed as soon as it is accepted; one that overstays a deadline is
//! closed (a body too slow is answered `408 request_timeout` first).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::{ApiError, HttpError};
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

/// Counts open connections, over all and per address, and refuses those over the caps.
pub struct Admission {
    total: Arc<Semaphore>,
    max_total: u32,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    max_per_ip: u32,
    exempt: Arc<[IpAddr]>,
    refusals: AtomicU64,
    last_report: Mutex<Option<Instant>>,
}

/// One admitted connection; its place is given back when dropped.
pub struct Slot {
    admission: Arc<Admission>,
    ip: Option<IpAddr>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let (Some(ip), Ok(mut per_ip)) = (self.ip, self.admission.per_ip.lock())
            && let Some(count) = per_ip.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

impl Admission {
    /// Caps from `config`; `exempt` addresses have no per-address cap.
    pub fn new(config: &ConnectionsConfig, exempt: Arc<[IpAddr]>) -> Arc<Admission> {
        Arc::new(Admission {
            total: Arc::new(Semaphore::new(config.max_connections as usize)),
            max_total: config.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: config.max_connections_per_ip,
            exempt,
            refusals: AtomicU64::new(0),
            last_report: Mutex::new(None),
        })
    }

    /// A slot for a connection from `ip`, or why not (`total` or `per_ip`).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let permit = self.total.clone().try_acquire_owned().map_err(|_| "total")?;
        let counted = if self.exempt.contains(&ip) {
            None
        } else {
            let ip = super::ratelimit::address_bucket(ip);
            let mut per_ip = self.per_ip.lock().map_err(|_| "per_ip")?;
            let count = per_ip.entry(ip).or_default();
            if *count >= self.max_per_ip {
                return Err("per_ip");
            }
            *count += 1;
            Some(ip)
        };
        Ok(Slot { admission: Arc::clone(self), ip: counted, _permit: permit })
    }

    /// A security event for a refused connection, at most one a second (with how many were
    /// refused since): a flood must not become a flood of log lines.
    fn report(&self, ip: IpAddr, cap: &str) {
        let refused = self.refusals.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last_report.lock() else { return };
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        let limit = if cap == "total" { self.max_total } else { self.max_per_ip };
        security::emit(
            Level::Warning,
            "connection_refused",
            None,
            Some(ip),
            serde_json::json!({ "cap": cap, "limit": limit, "refused_so_far": refused }),
        );
    }

    /// Wait until every admitted connection is gone, at most `grace`.
    async fn drained(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.total.acquire_many(self.max_total)).await;
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

/// When a connection last moved a byte, and how many of its requests are in flight.
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { origin: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }
}

/// One request in flight, counted until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(Arc::clone(activity))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records each byte moved in its [`Activity`].
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I> Tracked<I> {
    fn new(inner: I, activity: &Arc<Activity>) -> Tracked<I> {
        Tracked { inner, activity: Arc::clone(activity) }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
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
    fn ipv6_connections_count_against_their_64() {
        let admission = caps(16, 1, &[]);
        let (a, b, other): (IpAddr, IpAddr, IpAddr) = (
            "2001:db8:7:7::1".parse().unwrap_or(IpAddr::V4([0, 0, 0, 1].into())),
            "2001:db8:7:7:ffff::2".parse().unwrap_or(IpAddr::V4([0, 0, 0, 2].into())),
            "2001:db8:7:8::1".parse().unwrap_or(IpAddr::V4([0, 0, 0, 3].into())),
        );
        let held = admission.admit(a);
        assert!(held.is_ok());
        assert_eq!(admission.admit(b).err(), Some("per_ip"), "a second address of the same /64");
        assert!(admission.admit(other).is_ok(), "another /64");
        drop(held);
        assert!(admission.admit(b).is_ok(), "its slot was given back to the /64");
    }

    fn caps(total: u32, per_ip: u32, exempt: &[IpAddr]) -> Arc<Admission> {
        let config = ConnectionsConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ConnectionsConfig::default()
        };
        Admission::new(&config, exempt.to_vec().into())
    }

    #[test]
    fn connections_over_the_per_address_cap_are_refused_until_one_closes() {
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let admission = caps(10, 2, &[]);
        let first = admission.admit(a);
        let _second = admission.admit(a);
        assert!(first.is_ok());
        assert_eq!(admission.admit(a).err(), Some("per_ip"));
        assert!(admission.admit(b).is_ok(), "another address has its own count");
        drop(first);
        assert!(admission.admit(a).is_ok(), "a closed connection gives its place back");
    }

    #[test]
    fn a_trusted_proxy_has_no_per_address_cap_but_counts_in_the_total() {
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let admission = caps(3, 1, &[proxy]);
        let held: Vec<_> = (0..3).map(|_| admission.admit(proxy)).collect();
        assert!(held.iter().all(Result::is_ok));
        assert_eq!(admission.admit([10, 0, 0, 1].into()).err(), Some("total"));
    }

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
