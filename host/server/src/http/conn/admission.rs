//! Admission: connections counted over all and per client address (an IPv6 client per /64),
//! and refused on accept over either cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use toolgate_telemetry::security::{self, Level};

use super::ConnectionsConfig;

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
            let ip = crate::http::ratelimit::address_bucket(ip);
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
    pub(super) fn report(&self, ip: IpAddr, cap: &str) {
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
    pub(super) async fn drained(&self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.total.acquire_many(self.max_total)).await;
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
}
