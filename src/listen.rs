//! listen: binds the listening socket the command line asked for, and sets the per-connection
//! socket options. Knows nothing of what travels on the connections.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::settings::{Listen, Settings};

/// Pending connections the kernel queues for us; bursts of browsers reconnecting are common.
const BACKLOG: i32 = 1024;

/// Resolves and binds `settings.listen`. The error names the address.
pub async fn bind(settings: &Settings) -> io::Result<TcpListener> {
    let Listen::Tcp { host, port } = &settings.listen;
    let addr = resolve(host, *port, settings.prefer_ipv6).await?;
    bind_addr(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// The address to bind for `host:port`: all interfaces for an empty host (IPv6 and IPv4 with
/// `-6`), else the first address the name resolves to, IPv6 ones first with `-6`.
pub async fn resolve(host: &str, port: u16, prefer_ipv6: bool) -> io::Result<SocketAddr> {
    if host.is_empty() {
        return Ok(if prefer_ipv6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
        });
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
        .collect();
    let preferred = if prefer_ipv6 {
        addrs.iter().find(|a| a.is_ipv6())
    } else {
        None
    };
    preferred
        .or(addrs.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address")))
}

/// Binds a listener the way servers should: SO_REUSEADDR (restarts do not wait out
/// TIME_WAIT), a dual-stack socket for `::`, a deep backlog.
pub fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// TCP_NODELAY (frames are small and interactive: VNC input, terminal keystrokes) and
/// keepalive (notice peers that vanished) on a client or target socket. Failures are harmless
/// and ignored: the connection works without them.
pub fn tune_tcp(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new().with_time(std::time::Duration::from_secs(60));
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
