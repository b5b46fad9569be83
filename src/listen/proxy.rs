//! proxy: the PROXY protocol header (`--proxy-protocol CIDR,...`) that a trusted load balancer
//! sends before a connection's own bytes to name the real client. Read first, before the
//! TLS/HTTP sniff, within the handshake time and exactly (not one byte of the client's own
//! stream is taken, so TLS and HTTP start as if the header was never there). A peer outside
//! the trusted networks gets no say: a header from it is refused, never believed.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::AllowEntry;
use crate::conninfo::{Addr, ConnInfo};
use crate::error::{Error, Kind, Side};
use crate::proxy_header::{self, Header, Step};

/// Which peers must (and alone may) send a PROXY header.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    trusted: Vec<AllowEntry>,
}

impl ProxyProtocol {
    /// `None` when no network is trusted (the option is off).
    pub fn new(trusted: &[AllowEntry]) -> Option<ProxyProtocol> {
        (!trusted.is_empty()).then(|| ProxyProtocol {
            trusted: trusted.to_vec(),
        })
    }

    /// Whether `peer` is a balancer whose header we read. Unix peers never are (no address to
    /// match; put the balancer on TCP).
    pub fn trusts(&self, peer: &Addr) -> bool {
        match peer {
            Addr::Tcp(addr) => self.trusted.iter().any(|e| e.contains_ip(addr.ip())),
            Addr::Ip(_) | Addr::Unix(_) => false,
        }
    }
}

/// Reads the header a trusted peer must send, within `timeout` for the whole header (a
/// balancer writes it in one go; a slow trickle is not one). Every failure is the client
/// side's: a missing, malformed, oversized or late header.
pub async fn read_header<S>(stream: &mut S, timeout: Duration) -> Result<Header, Error>
where
    S: AsyncRead + Unpin,
{
    match tokio::time::timeout(timeout, read_exactly(stream)).await {
        Ok(result) => result,
        Err(_) => Err(Error::new(
            Side::Client,
            Kind::Timeout,
            "no complete PROXY header in time",
        )),
    }
}

async fn read_exactly<S>(stream: &mut S) -> Result<Header, Error>
where
    S: AsyncRead + Unpin,
{
    // Grows to at most `V2_FIXED + V2_MAX_BLOCK` (2,064 bytes), and only for trusted peers.
    let mut buf = Vec::with_capacity(proxy_header::V1_MAX);
    let mut need = proxy_header::MIN_HEADER;
    loop {
        let have = buf.len();
        buf.resize(have + need, 0);
        stream
            .read_exact(&mut buf[have..])
            .await
            .map_err(|e| Error::io(Side::Client, "reading the PROXY header", e))?;
        match proxy_header::parse(&buf) {
            Ok(Step::Need(n)) => need = n,
            Ok(Step::Done(header, _)) => return Ok(header),
            Err(malformed) => return Err(Error::new(Side::Client, Kind::BadRequest, malformed.0)),
        }
    }
}

/// What a header changes: the real client becomes the peer (the balancer is kept as `via`),
/// and the address it connected to becomes `local`. A header naming no address (v1 UNKNOWN,
/// v2 LOCAL for health checks) leaves the connection as it is.
pub fn apply(info: &mut ConnInfo, header: &Header) {
    if let Some(addrs) = header.addrs {
        let balancer = std::mem::replace(&mut info.peer, Addr::Tcp(addrs.source));
        info.via = Some(balancer);
        info.local = Addr::Tcp(addrs.destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tcp_peers_in_the_networks_are_trusted() {
        let pp = ProxyProtocol::new(&[AllowEntry::parse("10.0.0.0/8").unwrap()]).unwrap();
        assert!(pp.trusts(&Addr::Tcp("10.1.2.3:5".parse().unwrap())));
        assert!(pp.trusts(&Addr::Tcp("[::ffff:10.1.2.3]:5".parse().unwrap())));
        assert!(!pp.trusts(&Addr::Tcp("11.1.2.3:5".parse().unwrap())));
        assert!(!pp.trusts(&Addr::Unix(None)));
        assert!(ProxyProtocol::new(&[]).is_none());
    }

    #[tokio::test]
    async fn the_header_is_read_exactly_and_the_rest_stays() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 192.0.2.1 5 443\r\nGET /";
        let header = read_header(&mut input, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(input, b"GET /");
        let mut info = ConnInfo {
            id: 1,
            peer: Addr::Tcp("10.0.0.1:9".parse().unwrap()),
            via: None,
            local: Addr::Tcp("0.0.0.0:80".parse().unwrap()),
            tls: None,
        };
        apply(&mut info, &header);
        assert_eq!(info.peer.to_string(), "203.0.113.7:5");
        assert_eq!(info.via.unwrap().to_string(), "10.0.0.1:9");
        assert_eq!(info.local.to_string(), "192.0.2.1:443");
    }

    #[tokio::test]
    async fn a_truncated_header_is_an_error_not_a_hang() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 192";
        let err = read_header(&mut input, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind, Kind::Closed);
    }
}
