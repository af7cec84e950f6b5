//! Rate limits per route class, keyed both by client address and by user. Every trip is a
//! security event.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use toolgate_telemetry::security::{self, Level};

/// The route classes, each with its own limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// `auth/login`.
    Login,
    /// `auth/register`.
    Register,
    /// Tool execution (routes added with the tools issue).
    Exec,
    /// Everything else.
    General,
}

impl RateClass {
    /// The class's name in config, logs and error details.
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::Login => "login",
            RateClass::Register => "register",
            RateClass::Exec => "exec",
            RateClass::General => "general",
        }
    }
}

/// One limit: `requests` per `period_secs`, refilled evenly (a burst of `requests` at most).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed per period (and the largest burst).
    pub requests: u32,
    /// The period, in seconds.
    pub period_secs: u64,
}

impl Default for RateLimit {
    // Only used to fill a key missing from a partial table in a config file; the merged
    // document always carries the class's own default.
    fn default() -> Self {
        Self { requests: 600, period_secs: 60 }
    }
}

/// `[http.rate_limits]`: one limit per route class, applied per client address and per user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// `auth/login` (default 5 per minute).
    pub login: RateLimit,
    /// `auth/register` (default 3 per hour).
    pub register: RateLimit,
    /// Tool execution (default 10 per minute).
    pub exec: RateLimit,
    /// Everything else (default 600 per minute).
    pub general: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            login: RateLimit { requests: 5, period_secs: 60 },
            register: RateLimit { requests: 3, period_secs: 3600 },
            exec: RateLimit { requests: 10, period_secs: 60 },
            general: RateLimit { requests: 600, period_secs: 60 },
        }
    }
}

/// The limiters of every class. Keys are `ip:<addr>` or `user:<name>`.
pub struct RateLimiters {
    login: DefaultKeyedRateLimiter<String>,
    register: DefaultKeyedRateLimiter<String>,
    exec: DefaultKeyedRateLimiter<String>,
    general: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for RateLimiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiters").finish_non_exhaustive()
    }
}

fn quota(class: &str, limit: RateLimit) -> Result<Quota, String> {
    let burst = NonZeroU32::new(limit.requests)
        .ok_or_else(|| format!("`http.rate_limits.{class}.requests` must be at least 1"))?;
    if limit.period_secs == 0 {
        return Err(format!("`http.rate_limits.{class}.period_secs` must be at least 1"));
    }
    let per_cell = Duration::from_secs(limit.period_secs) / limit.requests;
    Quota::with_period(per_cell)
        .map(|q| q.allow_burst(burst))
        .ok_or_else(|| format!("`http.rate_limits.{class}` is too fine-grained"))
}

impl RateLimiters {
    /// Limiters for `config`; refuses zero requests or a zero period.
    pub fn new(config: &RateLimitsConfig) -> Result<RateLimiters, String> {
        Ok(RateLimiters {
            login: RateLimiter::keyed(quota("login", config.login)?),
            register: RateLimiter::keyed(quota("register", config.register)?),
            exec: RateLimiter::keyed(quota("exec", config.exec)?),
            general: RateLimiter::keyed(quota("general", config.general)?),
        })
    }

    fn limiter(&self, class: RateClass) -> &DefaultKeyedRateLimiter<String> {
        match class {
            RateClass::Login => &self.login,
            RateClass::Register => &self.register,
            RateClass::Exec => &self.exec,
            RateClass::General => &self.general,
        }
    }

    /// Count one request of `class` for `key`; refuses it when the limit is spent, logging a
    /// security event.
    pub fn check(&self, class: RateClass, key: &str, user: Option<&str>, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let key = key.to_owned();
        match self.limiter(class).check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let keyed_by = if key.starts_with("user:") { "user" } else { "ip" };
                toolgate_telemetry::metrics::rate_limited(class.as_str());
                security::emit(
                    Level::Warning,
                    "rate_limit_triggered",
                    user,
                    ip,
                    serde_json::json!({ "class": class.as_str(), "keyed_by": keyed_by, "retry_after_secs": retry_after_secs }),
                );
                Err(ApiError::RateLimited { class, retry_after_secs })
            }
        }
    }

    /// Forget keys whose buckets are full again, so memory does not grow with every address seen.
    pub fn shrink(&self) {
        for class in [RateClass::Login, RateClass::Register, RateClass::Exec, RateClass::General] {
            let limiter = self.limiter(class);
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The unit a per-address limit counts: an IPv4 address, or an IPv6 address's /64 (one host is
/// given a whole /64 and could otherwise take a fresh address for every request).
pub fn address_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The client's address: the socket peer; only when the peer is a trusted proxy
/// (`http.trusted_proxies`), the nearest untrusted address of `X-Forwarded-For` instead.
pub fn client_ip(request: &axum::http::request::Parts, trusted_proxies: &[IpAddr]) -> Option<IpAddr> {
    let peer = request.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())?;
    if !trusted_proxies.contains(&peer) {
        return Some(peer);
    }
    // Walk from the nearest hop outwards: earlier entries were written by the client itself and
    // prove nothing. A malformed entry stops the walk at the last address we can vouch for.
    let mut client = peer;
    let hops = request.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    for hop in hops.iter().rev().flat_map(|v| v.rsplit(',')) {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted_proxies.contains(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Some(client)
}

/// Middleware: count the request against its class's per-address limit, and record the class
/// for the per-user count.
pub async fn per_address(
    State((state, class)): State<(AppState, RateClass)>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let ip = client_ip(&parts, &state.trusted_proxies);
    let key = ip.map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{}", address_bucket(ip)));
    state.limits.check(class, &key, None, ip)?;
    // The authentication extractor counts the per-user limit in the same class.
    parts.extensions.insert(class);
    Ok(next.run(Request::from_parts(parts, body)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_a_mapped_ipv4_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()));
        assert_eq!(address_bucket(ip("2001:db8:1:2:aaaa::1")), address_bucket(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(address_bucket(ip("2001:db8:1:2::1")), address_bucket(ip("2001:db8:1:3::1")));
        assert_eq!(address_bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(address_bucket(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_bucket(ip("192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn a_limit_trips_after_its_burst_and_names_the_wait() -> anyhow::Result<()> {
        let config =
            RateLimitsConfig { login: RateLimit { requests: 2, period_secs: 60 }, ..RateLimitsConfig::default() };
        let limits = RateLimiters::new(&config).map_err(anyhow::Error::msg)?;
        assert!(limits.check(RateClass::Login, "ip:1", None, None).is_ok());
        assert!(limits.check(RateClass::Login, "ip:1", None, None).is_ok());
        let err = limits.check(RateClass::Login, "ip:1", None, None).err();
        assert!(matches!(err, Some(ApiError::RateLimited { retry_after_secs: 30, .. })), "{err:?}");
        // Another key and another class are unaffected.
        assert!(limits.check(RateClass::Login, "ip:2", None, None).is_ok());
        assert!(limits.check(RateClass::General, "ip:1", None, None).is_ok());
        Ok(())
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut config = RateLimitsConfig::default();
        config.exec.requests = 0;
        assert!(RateLimiters::new(&config).is_err());
    }
}
