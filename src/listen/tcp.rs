//! tcp: the TCP listener: binding it the way servers should, and accepting from it.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use super::{Accepted, Listener, Stream};
use crate::conninfo::Addr;
use crate::net::{tune_accepted, tune_tcp, ACCEPTED_INHERIT_OPTIONS};

/// Pending connections the kernel queues for us; bursts of browsers reconnecting are common.
const BACKLOG: i32 = 1024;

/// Resolves and binds `host:port`. The error names the address.
pub async fn bind(host: &str, port: u16, prefer_ipv6: bool) -> io::Result<Tcp> {
    let addr = resolve(host, port, prefer_ipv6).await?;
    bind_addr(addr)
        .and_then(Tcp::new)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// [`bind`] before any runtime exists (`-D` forks after binding, and a process may only fork
/// while it has one thread): resolves on this thread, gives a std listener.
pub fn bind_blocking(
    host: &str,
    port: u16,
    prefer_ipv6: bool,
) -> io::Result<std::net::TcpListener> {
    let addr = if host.is_empty() {
        any(port, prefer_ipv6)
    } else {
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?;
        pick(host, addrs.collect(), prefer_ipv6)?
    };
    bind_std(addr).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// The address to bind for `host:port`: all interfaces for an empty host (IPv6 and IPv4 with
/// `-6`), else the first address the name resolves to, IPv6 ones first with `-6`.
pub async fn resolve(host: &str, port: u16, prefer_ipv6: bool) -> io::Result<SocketAddr> {
    if host.is_empty() {
        return Ok(any(port, prefer_ipv6));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?
        .collect();
    pick(host, addrs, prefer_ipv6)
}

fn any(port: u16, prefer_ipv6: bool) -> SocketAddr {
    if prefer_ipv6 {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))
    } else {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }
}

fn pick(host: &str, addrs: Vec<SocketAddr>, prefer_ipv6: bool) -> io::Result<SocketAddr> {
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
    TcpListener::from_std(bind_std(addr)?)
}

/// [`bind_addr`] without the runtime.
fn bind_std(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
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
    /// Where accepted sockets inherit the listener's options, they are set here, once.
    pub fn new(listener: TcpListener) -> io::Result<Tcp> {
        let local = listener.local_addr()?;
        if ACCEPTED_INHERIT_OPTIONS {
            tune_tcp(&listener);
        }
        Ok(Tcp { listener, local })
    }

    /// The bound address.
    pub fn socket_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Tcp {
    /// One accept, polled: for a listener that waits on several sockets at once (`--systemd`).
    pub(super) fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Accepted<TcpStream>>> {
        let (stream, peer) = std::task::ready!(self.listener.poll_accept(cx))?;
        tune_accepted(&stream);
        std::task::Poll::Ready(Ok(Accepted {
            stream,
            peer: Addr::Tcp(peer),
            local: Addr::Tcp(self.local),
        }))
    }
}

impl Listener for Tcp {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<Accepted<TcpStream>> {
        let (stream, peer) = self.listener.accept().await?;
        tune_accepted(&stream);
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

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// Whether set on the listener (Linux) or on each socket, an accepted socket has them.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay_and_keepalive() {
        let mut listener = bind_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(Tcp::new)
            .unwrap();
        let _client = TcpStream::connect(listener.socket_addr()).await.unwrap();
        let accepted = listener.accept().await.unwrap();
        let socket = SockRef::from(&accepted.stream);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            std::time::Duration::from_secs(60)
        );
    }

    /// Only an IPv6 wildcard is made dual-stack: the option does not exist on an IPv4 socket,
    /// so asking it there would fail the bind of `0.0.0.0`.
    #[tokio::test]
    async fn the_ipv4_wildcard_binds_and_accepts() {
        let mut listener = bind_addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
            .and_then(Tcp::new)
            .unwrap();
        let port = listener.socket_addr().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let accepted = listener.accept().await.unwrap();
        assert_eq!(accepted.peer, Addr::Tcp(client.local_addr().unwrap()));
        assert_eq!(
            accepted.local,
            Addr::Tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        );
    }

    /// The sniffer looks at the first bytes through `peek`; they must still be there for the
    /// read that follows.
    #[tokio::test]
    async fn peek_shows_the_first_bytes_and_leaves_them_to_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut listener = bind_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(Tcp::new)
            .unwrap();
        let mut client = TcpStream::connect(listener.socket_addr()).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let mut accepted = listener.accept().await.unwrap().stream;
        let mut first = [0u8; 8];
        let n = Stream::peek(&mut accepted, &mut first).await.unwrap();
        assert!((1..=5).contains(&n), "peeked {n} bytes");
        assert_eq!(&first[..n], &b"hello"[..n]);
        let mut all = [0u8; 5];
        accepted.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"hello");
    }
}
