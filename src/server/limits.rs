//! limits: who may open one more connection. `--max-connections` (all clients together),
//! `--max-connections-per-ip` and `--handshake-rate` (each client address: IPv4 /32, IPv6 /64,
//! since one IPv6 host holds a whole /64). Asked once per connection, after the PROXY header
//! (so the real client counts) and before TLS or HTTP; the answer is a [`Permit`] held for the
//! connection's life, or the [`Limit`] it hit.
//!
//! Cost and memory: an admission is an atomic add, plus one short lock and hash look-up when a
//! per-client limit is on. The per-client table holds at most [`MAX_CLIENTS`] addresses; an
//! address leaves it when its last connection closes and its rate bucket is full again (swept
//! at most once a second, when the table is full). A full table of busy addresses refuses new
//! addresses (fail closed) rather than grow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Limit;

/// The most client addresses the per-client limits keep track of: about 60 bytes each, so
/// under 8 MiB with the hash table's overhead.
pub const MAX_CLIENTS: usize = 65_536;

/// How often a full table may be swept (each sweep walks it once).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The configured limits and what they count.
#[derive(Debug)]
pub struct Limits {
    max_connections: Option<usize>,
    per_client: Option<u32>,
    /// Connections a client may begin per second (also the burst).
    rate: Option<u32>,
    open: AtomicUsize,
    clients: Mutex<Clients>,
}

#[derive(Debug)]
struct Clients {
    map: HashMap<IpAddr, Client>,
    last_sweep: Option<Instant>,
}

#[derive(Debug)]
struct Client {
    open: u32,
    /// The token bucket of `--handshake-rate`, as of `stamp`.
    tokens: f64,
    stamp: Instant,
}

impl Client {
    fn refill(&mut self, now: Instant, rate: u32) {
        let rate = f64::from(rate);
        let gained = now.saturating_duration_since(self.stamp).as_secs_f64() * rate;
        self.tokens = (self.tokens + gained).min(rate);
        self.stamp = now;
    }

    /// Whether forgetting this client loses nothing: no connection open, bucket full.
    fn idle(&mut self, now: Instant, rate: Option<u32>) -> bool {
        if self.open > 0 {
            return false;
        }
        match rate {
            Some(rate) => {
                self.refill(now, rate);
                self.tokens >= f64::from(rate)
            }
            None => true,
        }
    }
}

impl Limits {
    /// `None` when no limit is set: then nothing is counted at all.
    pub fn new(
        max_connections: Option<usize>,
        per_client: Option<u32>,
        rate: Option<u32>,
    ) -> Option<Arc<Limits>> {
        if max_connections.is_none() && per_client.is_none() && rate.is_none() {
            return None;
        }
        Some(Arc::new(Limits {
            max_connections,
            per_client,
            rate,
            open: AtomicUsize::new(0),
            clients: Mutex::new(Clients {
                map: HashMap::new(),
                last_sweep: None,
            }),
        }))
    }

    /// Admits one more connection from `client` (`None`: a Unix peer, counted globally only).
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Permit, Limit> {
        self.admit_at(client, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, client: Option<IpAddr>, now: Instant) -> Result<Permit, Limit> {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let mut permit = Permit {
            limits: self.clone(),
            client: None,
        };
        if self.max_connections.is_some_and(|max| open > max) {
            return Err(Limit::Connections);
        }
        let key = match client {
            Some(ip) if self.per_client.is_some() || self.rate.is_some() => key(ip),
            _ => return Ok(permit),
        };
        let Ok(mut clients) = self.clients.lock() else {
            return Ok(permit);
        };
        if !clients.map.contains_key(&key) && clients.map.len() >= MAX_CLIENTS {
            clients.sweep(now, self.rate);
            if clients.map.len() >= MAX_CLIENTS {
                return Err(Limit::Clients);
            }
        }
        let entry = clients.map.entry(key).or_insert(Client {
            open: 0,
            tokens: f64::from(self.rate.unwrap_or(0)),
            stamp: now,
        });
        if self.per_client.is_some_and(|max| entry.open >= max) {
            return Err(Limit::PerClient);
        }
        if let Some(rate) = self.rate {
            entry.refill(now, rate);
            if entry.tokens < 1.0 {
                return Err(Limit::Rate);
            }
            entry.tokens -= 1.0;
        }
        entry.open += 1;
        permit.client = Some(key);
        Ok(permit)
    }

    /// Connections admitted and still open.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Client addresses tracked now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.clients.lock().map_or(0, |c| c.map.len())
    }
}

impl Clients {
    fn sweep(&mut self, now: Instant, rate: Option<u32>) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.map.retain(|_, client| !client.idle(now, rate));
    }
}

/// The per-client key: the address, or an IPv6 address's /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub struct Permit {
    limits: Arc<Limits>,
    client: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits.release(self.client, Instant::now());
    }
}

impl Limits {
    /// A permit's place given back: `client` is its key in the table, if it has one.
    fn release(&self, client: Option<IpAddr>, now: Instant) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        let Some(key) = client else { return };
        let Ok(mut clients) = self.clients.lock() else {
            return;
        };
        if let Some(entry) = clients.map.get_mut(&key) {
            entry.open = entry.open.saturating_sub(1);
            if entry.idle(now, self.rate) {
                clients.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn the_global_limit_counts_open_connections() {
        let limits = Limits::new(Some(2), None, None).unwrap();
        let a = limits.admit(ip("192.0.2.1")).unwrap();
        let _b = limits.admit(None).unwrap();
        assert_eq!(
            limits.admit(ip("192.0.2.2")).unwrap_err(),
            Limit::Connections
        );
        assert_eq!(limits.tracked(), 0, "no table without a per-client limit");
        drop(a);
        assert!(limits.admit(ip("192.0.2.2")).is_ok());
    }

    #[test]
    fn the_per_client_limit_is_per_address_and_per_ipv6_64() {
        let limits = Limits::new(None, Some(1), None).unwrap();
        let a = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.admit(ip("192.0.2.1")).unwrap_err(), Limit::PerClient);
        assert_eq!(
            limits.admit(ip("::ffff:192.0.2.1")).unwrap_err(),
            Limit::PerClient
        );
        let _b = limits.admit(ip("192.0.2.2")).unwrap();
        let _c = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            limits.admit(ip("2001:db8:1:2::ffff")).unwrap_err(),
            Limit::PerClient
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok());
        drop(a);
        assert!(limits.admit(ip("192.0.2.1")).is_ok());
        assert_eq!(limits.open(), 2);
    }

    #[test]
    fn the_rate_is_a_bucket_refilled_over_time() {
        let limits = Limits::new(None, None, Some(2)).unwrap();
        let t0 = Instant::now();
        let c = ip("192.0.2.1");
        let _a = limits.admit_at(c, t0).unwrap();
        let _b = limits.admit_at(c, t0).unwrap();
        assert_eq!(limits.admit_at(c, t0).unwrap_err(), Limit::Rate);
        assert!(
            limits.admit_at(ip("192.0.2.9"), t0).is_ok(),
            "others unaffected"
        );
        assert!(limits.admit_at(c, t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(
            limits
                .admit_at(c, t0 + Duration::from_millis(500))
                .unwrap_err(),
            Limit::Rate
        );
    }

    #[test]
    fn idle_clients_leave_the_table() {
        let limits = Limits::new(None, Some(4), None).unwrap();
        let a = limits.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(limits.tracked(), 1);
        drop(a);
        assert_eq!(limits.tracked(), 0);
    }

    #[test]
    fn a_full_table_is_swept_and_then_refuses_new_addresses() {
        let limits = Limits::new(None, Some(1), None).unwrap();
        let mut held = Vec::new();
        for n in 0..MAX_CLIENTS as u32 {
            held.push(limits.admit(Some(IpAddr::from(n.to_be_bytes()))).unwrap());
        }
        assert_eq!(limits.tracked(), MAX_CLIENTS);
        assert_eq!(limits.admit(ip("203.0.113.1")).unwrap_err(), Limit::Clients);
        // A known address is still served by its own count.
        assert_eq!(limits.admit(ip("0.0.0.1")).unwrap_err(), Limit::PerClient);
        held.truncate(10);
        assert_eq!(limits.tracked(), 10);
        assert!(limits.admit(ip("203.0.113.1")).is_ok());
    }

    /// With a rate, a client whose connections closed stays in the table until its bucket is
    /// full again (forgetting it earlier would hand it a fresh bucket); a full table is swept
    /// of those, at most once per `SWEEP_EVERY`.
    #[test]
    fn a_full_table_is_swept_of_clients_whose_bucket_refilled() {
        let limits = Limits::new(None, None, Some(1)).unwrap();
        // Fills the table with clients that opened and closed a connection at `at` (not at the
        // real now, whatever the test's speed): their buckets are empty then.
        let fill = |at: Instant| {
            for n in 0u32.. {
                if limits.tracked() == MAX_CLIENTS {
                    break;
                }
                let permit = limits
                    .admit_at(Some(IpAddr::from(n.to_be_bytes())), at)
                    .unwrap();
                let key = permit.client;
                std::mem::forget(permit);
                limits.release(key, at);
            }
        };
        let t0 = Instant::now();
        fill(t0);
        assert_eq!(
            limits.tracked(),
            MAX_CLIENTS,
            "closed, but their buckets are empty"
        );
        // Swept now: nobody's bucket is full, so nobody goes.
        let newcomer = ip("203.0.113.1");
        assert_eq!(limits.admit_at(newcomer, t0).unwrap_err(), Limit::Clients);
        // SWEEP_EVERY later every bucket (1 a second) is full: the sweep frees the table.
        let t1 = t0 + SWEEP_EVERY;
        let _held = limits.admit_at(newcomer, t1).unwrap();
        assert_eq!(limits.tracked(), 1);
        // And again, longer after the last sweep.
        fill(t1);
        let t2 = t1 + 2 * SWEEP_EVERY;
        let _held = limits.admit_at(ip("203.0.113.2"), t2).unwrap();
        assert_eq!(limits.tracked(), 2, "the newcomers, held");
    }
}
