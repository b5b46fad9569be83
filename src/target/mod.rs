//! target: the service each WebSocket is bridged to, and connecting to it: one file per kind
//! of target. The gate chooses the target per request; the connection is made before the 101,
//! so a target that cannot be reached is an HTTP error, not a WebSocket opened and closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::TargetSpec;

mod tcp;
mod unix;

/// A connected target.
pub enum Target {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// How long connecting to a target may take. Without a bound, a target that drops SYNs would
/// hold each upgraded client for the kernel's retries (about two minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `spec` within `CONNECT_TIMEOUT`, with TCP_NODELAY and keepalive on a TCP target.
pub async fn connect(spec: &TargetSpec) -> io::Result<Target> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_unbounded(spec)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

async fn connect_unbounded(spec: &TargetSpec) -> io::Result<Target> {
    match spec {
        TargetSpec::Tcp { host, port } => tcp::connect(host, *port).await.map(Target::Tcp),
        TargetSpec::Unix(path) => unix::connect(path).await.map(Target::Unix),
        TargetSpec::Resolved { addrs, .. } => tcp::connect_addrs(addrs).await.map(Target::Tcp),
    }
}

impl AsyncRead for Target {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Target::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Target {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Target::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Target::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Target::Tcp(s) => s.is_write_vectored(),
            Target::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_flush(cx),
            Target::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Target::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
