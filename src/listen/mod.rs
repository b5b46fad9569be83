//! listen: where connections come from. One file per kind of listening socket (TCP, Unix,
//! inetd's on standard input; later systemd-activated sockets), each a [`Listener`] that hands out
//! [`Stream`]s and the addresses of both ends. The server is generic over them, so a new kind
//! is a new file, not a new branch in the accept loop. Knows nothing of what travels on the
//! connections.

use std::future::Future;
use std::io;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Listen;
use crate::conninfo::Addr;

pub mod inetd;
pub mod tcp;
pub mod unix;

pub use inetd::Inetd;
pub use tcp::{bind_addr, resolve, Tcp};
pub use unix::Unix;

/// A listening socket of some kind.
pub trait Listener: Send + 'static {
    type Stream: Stream;

    /// The next connection, with its peer's and its own address.
    fn accept(&mut self) -> impl Future<Output = io::Result<Accepted<Self::Stream>>> + Send;

    /// Where this listener listens, for the start-up lines.
    fn local_addr(&self) -> io::Result<Addr>;

    /// What the start-up summary says after "Listen on".
    fn describe(&self) -> String {
        self.local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// An accepted connection and what the socket says about it.
pub struct Accepted<S> {
    pub stream: S,
    pub peer: Addr,
    pub local: Addr,
}

/// An accepted connection's byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits for the first bytes and copies some into `buf` without consuming them: the sniffer
    /// looks before TLS or HTTP read. Returns 0 at end of stream.
    fn peek(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A listener of the kind the command line asked for. `main` matches on it once and runs the
/// server generic over the kind inside.
#[derive(Debug)]
pub enum Bound {
    Tcp(Tcp),
    Unix(Unix),
    Inetd(Inetd),
}

/// Binds (or, for `--inetd`, takes) what `listen` asks for. The error names the address or the
/// file. Runs inside the runtime.
pub async fn bind(listen: &Listen, prefer_ipv6: bool) -> io::Result<Bound> {
    Ok(match listen {
        Listen::Tcp { host, port } => Bound::Tcp(tcp::bind(host, *port, prefer_ipv6).await?),
        Listen::Unix { path, mode } => Bound::Unix(Unix::bind(path, *mode)?),
        Listen::Inetd => Bound::Inetd(Inetd::from_stdin()?),
    })
}
