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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("hung for 10 s")
    }

    trait Peer: AsyncRead + AsyncWrite + Unpin {}
    impl<T: AsyncRead + AsyncWrite + Unpin> Peer for T {}

    /// A connected TCP target and a connected Unix target, each with the service's end.
    async fn targets() -> Vec<(Target, Box<dyn Peer>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (service, _) = listener.accept().await.unwrap();
        let (unix, unix_service) = UnixStream::pair().unwrap();
        vec![
            (Target::Tcp(tcp), Box::new(service)),
            (Target::Unix(unix), Box::new(unix_service)),
        ]
    }

    /// The relay reads, writes (vectored, as it does) and finally shuts the target down while
    /// it still holds it: each goes through to the socket.
    #[tokio::test]
    async fn a_target_passes_reads_writes_and_its_shutdown_to_the_socket() {
        for (mut target, mut service) in targets().await {
            let kind = match target {
                Target::Tcp(_) => "tcp",
                _ => "unix",
            };
            service.write_all(b"RFB 003.008\n").await.unwrap();
            let mut got = [0u8; 12];
            bounded(target.read_exact(&mut got)).await.unwrap();
            assert_eq!(&got, b"RFB 003.008\n", "{kind}");

            assert!(target.is_write_vectored(), "{kind}");
            target.write_all(b"RFB ").await.unwrap();
            let rest = b"003.008\n";
            let n = target
                .write_vectored(&[io::IoSlice::new(&rest[..3]), io::IoSlice::new(&rest[3..])])
                .await
                .unwrap();
            assert!(n > 0, "{kind}");
            target.write_all(&rest[n..]).await.unwrap();
            target.flush().await.unwrap();
            target.shutdown().await.unwrap();
            let mut echoed = Vec::new();
            bounded(service.read_to_end(&mut echoed)).await.unwrap();
            assert_eq!(echoed, b"RFB 003.008\n", "{kind}");
            drop(target);
        }
    }

    /// A TLS target whose service has not read yet: what the relay wrote past the socket's
    /// buffers waits in the TLS session, and only the flush sends it on.
    #[tokio::test]
    async fn a_tls_targets_flush_sends_what_the_session_still_holds() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certified.cert.der().clone()).unwrap();
        let client = Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (written, wait_for_writes) = tokio::sync::oneshot::channel::<usize>();
        let service = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap();
            // Reads only once the writes stopped: the session had to keep bytes back.
            let total = wait_for_writes.await.unwrap();
            let mut got = vec![0u8; total];
            tls.read_exact(&mut got).await.map(|_| got)
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(4096)
            .unwrap();
        let tls = tls::handshake(tcp, "localhost", &client).await.unwrap();
        let mut target = Target::Tls(Box::new(tls));
        // Write until a write would wait: the socket is full, and so is the session's buffer.
        let chunk: Vec<u8> = (0..=255u8).cycle().take(16 * 1024).collect();
        let mut expected = Vec::new();
        loop {
            let step = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut target).poll_write(cx, &chunk))
            })
            .await;
            match step {
                Poll::Ready(Ok(n)) => expected.extend_from_slice(&chunk[..n]),
                Poll::Ready(Err(err)) => panic!("{err}"),
                Poll::Pending => break,
            }
            assert!(expected.len() < 256 << 20, "the target never filled");
        }
        written.send(expected.len()).unwrap();
        bounded(target.flush()).await.unwrap();
        let got = bounded(service).await.unwrap().unwrap();
        assert!(
            got == expected,
            "{} bytes sent, other bytes received",
            expected.len()
        );
    }
}
