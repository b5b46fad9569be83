//! target: the service each WebSocket is bridged to, and connecting to it: one file per kind
//! of target (TCP, Unix socket, and TLS over TCP for `--ssl-target`). The gate chooses the target per request; the connection is made before the 101,
//! so a target that cannot be reached is an HTTP error, not a WebSocket opened and closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{ProxyVersion, TargetSpec};
use crate::conninfo::{Addr, ConnInfo};
use crate::proxy_header::{self, Addrs};

mod tcp;
mod tls;
mod unix;

/// A connected target.
pub enum Target {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// `--ssl-target`: TLS over TCP (boxed: the TLS state is large).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// How targets are connected: plainly, or with TLS (`--ssl-target`) using a client
/// configuration made at start-up.
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `--target-proxy-protocol`: the PROXY header written first on every target connection.
    proxy_header: Option<ProxyVersion>,
}

impl Connector {
    /// Plain connections when `tls` is `None`, TLS over TCP with it otherwise; each starting
    /// with a PROXY header of `proxy_header`'s version, if given.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, proxy_header: Option<ProxyVersion>) -> Self {
        Connector { tls, proxy_header }
    }

    /// Connects to `spec` for `client` within `CONNECT_TIMEOUT` (TCP and TLS handshakes, and
    /// the PROXY header, together), with TCP_NODELAY and keepalive on a TCP target.
    pub async fn connect(&self, spec: &TargetSpec, client: &ConnInfo) -> io::Result<Target> {
        let header = self.proxy_header.map(|version| {
            let addrs = match (&client.peer, &client.local) {
                (Addr::Tcp(source), Addr::Tcp(destination)) => Some(Addrs {
                    source: *source,
                    destination: *destination,
                }),
                // A forwarded client has no port; its source port is given as 0.
                (Addr::Ip(ip), Addr::Tcp(destination)) => Some(Addrs {
                    source: std::net::SocketAddr::new(*ip, 0),
                    destination: *destination,
                }),
                _ => None,
            };
            match version {
                ProxyVersion::V1 => proxy_header::encode_v1(addrs),
                ProxyVersion::V2 => proxy_header::encode_v2(addrs),
            }
        });
        let connect = self.connect_unbounded(spec, header.as_deref());
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {CONNECT_TIMEOUT:?}"),
            )),
        }
    }

    /// The PROXY header goes first, before any TLS: a balancer reads it off the bare socket.
    async fn connect_unbounded(
        &self,
        spec: &TargetSpec,
        header: Option<&[u8]>,
    ) -> io::Result<Target> {
        let target = match (spec, &self.tls) {
            (TargetSpec::Tcp { host, port }, Some(config)) => {
                let mut tcp = tcp::connect(host, *port).await?;
                write_header(&mut tcp, header).await?;
                let stream = tls::handshake(tcp, host, config).await?;
                Target::Tls(Box::new(stream))
            }
            (TargetSpec::Tcp { host, port }, None) => Target::Tcp(tcp::connect(host, *port).await?),
            (TargetSpec::Unix(_), Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "--ssl-target is for TCP targets only",
                ))
            }
            (TargetSpec::Unix(path), None) => Target::Unix(unix::connect(path).await?),
            // Addresses the gate resolved and checked (`--target-allow`): connected as they
            // are, never resolved again; the host name is what TLS verifies.
            (TargetSpec::Resolved { host, addrs }, Some(config)) => {
                let mut tcp = tcp::connect_addrs(addrs).await?;
                write_header(&mut tcp, header).await?;
                let stream = tls::handshake(tcp, host, config).await?;
                Target::Tls(Box::new(stream))
            }
            (TargetSpec::Resolved { addrs, .. }, None) => {
                Target::Tcp(tcp::connect_addrs(addrs).await?)
            }
        };
        let mut target = target;
        if !matches!(target, Target::Tls(_)) {
            write_header(&mut target, header).await?;
        }
        Ok(target)
    }
}

/// Writes the PROXY header, if any, on a freshly connected socket (before TLS).
async fn write_header<S: AsyncWrite + Unpin>(
    stream: &mut S,
    header: Option<&[u8]>,
) -> io::Result<()> {
    match header {
        Some(bytes) => stream.write_all(bytes).await,
        None => Ok(()),
    }
}

/// How long connecting to a target may take. Without a bound, a target that drops SYNs would
/// hold each upgraded client for the kernel's retries (about two minutes).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl AsyncRead for Target {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Target::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Target::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
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
            Target::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
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
            Target::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Target::Tcp(s) => s.is_write_vectored(),
            Target::Unix(s) => s.is_write_vectored(),
            Target::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_flush(cx),
            Target::Unix(s) => Pin::new(s).poll_flush(cx),
            Target::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Target::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Target::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Target::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
