//! conninfo: what is known about a connection before its first HTTP byte: where it comes from,
//! where it arrived, and what its TLS handshake said. Made by the accept side (`listen`, `tls`);
//! read by the gate, the logs and the observers. Plain data: no sockets, no I/O.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    /// A Unix socket's path; `None` for an unnamed end (a connecting client's, usually).
    Unix(Option<PathBuf>),
    /// A client known by its address alone (an `X-Forwarded-For` entry names no port).
    Ip(IpAddr),
}

impl Addr {
    /// The IP address, for a TCP end or a forwarded client.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Addr::Tcp(addr) => Some(addr.ip()),
            Addr::Ip(ip) => Some(*ip),
            Addr::Unix(_) => None,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(addr) => write!(f, "{addr}"),
            Addr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Addr::Unix(None) => f.write_str("unix:(unnamed)"),
            Addr::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What the TLS handshake told us about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
    /// The subject common name (CN) of the client's certificate, verified against `--cafile`
    /// (or the system's CAs) by `--verify-client`; `None` without `--verify-client` or when the
    /// certificate has no CN. Not escaped: whoever logs it quotes it.
    pub client_cn: Option<String>,
}

/// What is known about a connection before HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Counts connections from 1 in the order they were accepted; names them in the logs.
    pub id: u64,
    /// The client: the socket's peer, or the real client that a trusted PROXY header
    /// (`--proxy-protocol`) or, for one request, a trusted `X-Forwarded-For`/`Forwarded`
    /// header (`--trusted-proxies`) named. Logs, limits and the gate use this one.
    pub peer: Addr,
    /// Who told us `peer` when it is not the socket's own peer (the load balancer or reverse
    /// proxy), kept for the logs; `None` for a direct client.
    pub via: Option<Addr>,
    /// Where the connection arrived (behind a PROXY header: the address the client connected
    /// to at the balancer).
    pub local: Addr,
    /// Set once a TLS handshake completed; `None` for a plain connection.
    pub tls: Option<TlsInfo>,
}

impl ConnInfo {
    /// `wss` when the connection is TLS, `ws` otherwise.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(peer: Addr, tls: Option<TlsInfo>) -> ConnInfo {
        ConnInfo {
            id: 1,
            peer,
            via: None,
            local: Addr::Unix(None),
            tls,
        }
    }

    #[test]
    fn tcp_ends_and_forwarded_clients_have_an_ip_and_unix_ends_none() {
        let tcp: SocketAddr = "[2001:db8::7]:56324".parse().unwrap();
        assert_eq!(Addr::Tcp(tcp).ip(), Some(tcp.ip()));
        let forwarded: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(Addr::Ip(forwarded).ip(), Some(forwarded));
        assert_eq!(Addr::Unix(Some("/run/ws.sock".into())).ip(), None);
        assert_eq!(Addr::Unix(None).ip(), None);
    }

    #[test]
    fn the_scheme_is_wss_after_a_tls_handshake_and_ws_otherwise() {
        let peer = Addr::Unix(None);
        assert_eq!(info(peer.clone(), None).scheme(), "ws");
        assert_eq!(info(peer, Some(TlsInfo::default())).scheme(), "wss");
    }
}
