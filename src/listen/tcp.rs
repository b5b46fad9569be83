//! tcp: the TCP listener: binding it the way servers should, and accepting from it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use super::{Accepted, Listener, Stream};
use crate::conninfo::Addr;
use crate::net::tune_tcp;

/// Pending connections the kernel queues for us; bursts of browsers reconnecting are common.
const BACKLOG: i32 = 1024;

/// Resolves and binds `host:port`. The error names the address.
pub async fn bind(host: &str, port: u16, prefer_ipv6: bool) -> io::Result<Tcp> {
    let addr = resolve(host, port, prefer_ipv6).await?;
    bind_addr(addr)
        .and_then(Tcp::new)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
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

/// A bound TCP listener.
#[derive(Debug)]
pub struct Tcp {
    listener: TcpListener,
    /// The bound address; given as every connection's local end (a wildcard stays a wildcard),
    /// which spares a `getsockname` per connection.
    local: SocketAddr,
}

impl Tcp {
    pub fn new(listener: TcpListener) -> io::Result<Tcp> {
        let local = listener.local_addr()?;
        Ok(Tcp { listener, local })
    }

    /// The bound address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Listener for Tcp {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<Accepted<TcpStream>> {
        let (stream, peer) = self.listener.accept().await?;
        tune_tcp(&stream);
        Ok(Accepted {
            stream,
            peer: Addr::Tcp(peer),
            local: Addr::Tcp(self.local),
        })
    }

    fn local_addr(&self) -> io::Result<Addr> {
        Ok(Addr::Tcp(self.local))
    }
}

impl Stream for TcpStream {
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf).await
    }
}
